// Minimal, typed argument parsing: `--key value`, `--flag`, repeated keys collect into lists.
import { LowbitError } from './usage-error.js';

export interface ParsedArgs {
  positional: string[];
  /** last value per key; flags are 'true' */
  opts: Map<string, string>;
  /** all values per key, in order (for repeated options such as --adapter) */
  multi: Map<string, string[]>;
}

export interface OptionSpec {
  name: string;
  help: string;
  flag?: boolean;
  repeat?: boolean;
  default?: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  options: OptionSpec[];
  run(args: ParsedArgs): Promise<void>;
}

export function parseArgs(argv: string[], spec: CommandSpec): ParsedArgs {
  const known = new Map(spec.options.map((o) => [o.name, o]));
  const out: ParsedArgs = { positional: [], opts: new Map(), multi: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) { out.positional.push(a); continue; }
    let key = a.slice(2), val: string | undefined;
    const eq = key.indexOf('=');
    if (eq >= 0) { val = key.slice(eq + 1); key = key.slice(0, eq); }
    const o = known.get(key);
    if (!o) throw new LowbitError(`lowbit ${spec.name}: unknown option --${key} (see --help)`);
    if (o.flag) val = val ?? 'true';
    else if (val === undefined) {
      if (i + 1 >= argv.length) throw new LowbitError(`lowbit ${spec.name}: --${key} needs a value`);
      val = argv[++i];
    }
    out.opts.set(key, val);
    const m = out.multi.get(key) ?? [];
    m.push(val);
    out.multi.set(key, m);
  }
  for (const o of spec.options) if (o.default !== undefined && !out.opts.has(o.name)) out.opts.set(o.name, o.default);
  return out;
}

export function helpText(spec: CommandSpec): string {
  const w = Math.max(...spec.options.map((o) => o.name.length + (o.flag ? 0 : 6)), 8);
  const lines = [`lowbit ${spec.name} — ${spec.summary}`, '', `usage: ${spec.usage}`, '', 'options:'];
  for (const o of spec.options) {
    const left = `--${o.name}${o.flag ? '' : ' VALUE'}`;
    const def = o.default !== undefined ? ` (default ${o.default})` : '';
    lines.push(`  ${left.padEnd(w + 4)} ${o.help}${def}${o.repeat ? ' [repeatable]' : ''}`);
  }
  return lines.join('\n');
}

// Typed getters with one-line errors.
export function str(a: ParsedArgs, k: string): string | undefined { return a.opts.get(k); }
export function req(a: ParsedArgs, k: string, cmd: string): string {
  const v = a.opts.get(k);
  if (v === undefined) throw new LowbitError(`lowbit ${cmd}: --${k} is required`);
  return v;
}
export function num(a: ParsedArgs, k: string, cmd: string): number | undefined {
  const v = a.opts.get(k);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new LowbitError(`lowbit ${cmd}: --${k} expects a number, got '${v}'`);
  return n;
}
export function int(a: ParsedArgs, k: string, cmd: string): number | undefined {
  const n = num(a, k, cmd);
  if (n !== undefined && !Number.isInteger(n)) throw new LowbitError(`lowbit ${cmd}: --${k} expects an integer, got '${n}'`);
  return n;
}
export function flag(a: ParsedArgs, k: string): boolean { return a.opts.get(k) === 'true'; }
export function list(a: ParsedArgs, k: string): string[] { return a.multi.get(k) ?? []; }
