// Bad-input errors: one line, naming the file and the problem. The CLI prints only the message.
import { readFileSync } from 'node:fs';
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

/** Parse a JSON file; a missing, unreadable or malformed file is a one-line `LowbitError` naming it. */
export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw fileError(path, code === 'ENOENT' ? 'file not found' : `cannot read (${code ?? String(e)})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw fileError(path, `not valid JSON (${(e as Error).message})`);
  }
}
