// Public library API of lowbit.
export * from './tensor.js';
export * from './model/config.js';
export * from './model/linear.js';
export * from './backend/kernels.js';
