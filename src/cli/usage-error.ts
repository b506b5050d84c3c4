// Re-export so CLI code has one error type for bad input; io/errors.ts owns the class.
export { LowbitError } from '../io/errors.js';
