// Output conventions: human text goes to stderr when --json is set, so that stdout's last line is
// exactly one JSON object for every command that reports numbers.
export interface Out {
  json: boolean;
  /** human-readable line (stdout normally, stderr under --json) */
  info(msg: string): void;
  /** the final result: a JSON line under --json, else nothing (the command prints its own text) */
  result(obj: Record<string, unknown>): void;
}

export function makeOut(json: boolean): Out {
  return {
    json,
    info: (msg) => (json ? process.stderr : process.stdout).write(msg + '\n'),
    result: (obj) => { if (json) process.stdout.write(JSON.stringify(obj) + '\n'); },
  };
}
