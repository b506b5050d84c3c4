// Bad-input errors: one line, naming the file and the problem. The CLI prints only the message.
import { basename } from 'node:path';

export class LowbitError extends Error {
  constructor(message: string) {
    // keep it to one line whatever the caller interpolated
    super(message.replace(/\s*[\r\n]+\s*/g, ' '));
    this.name = 'LowbitError';
  }
}

/** `LowbitError` whose message starts with the file's base name: `model.safetensors: <problem>`. */
export function fileError(file: string, problem: string): LowbitError {
  return new LowbitError(`${basename(file)}: ${problem}`);
}

/** Format a shape the way the messages show it: `[4096, 11008]`. */
export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
