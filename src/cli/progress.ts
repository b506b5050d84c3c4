// A progress bar with rate and ETA for long jobs. Draws on stderr (so --json stdout stays clean),
// redraws at most ~10×/s, and degrades to occasional plain lines when stderr is not a TTY.
export class Progress {
  private start = Date.now();
  private lastDraw = 0;
  private done = 0;
  private extra = '';
  private readonly tty = process.stderr.isTTY === true;
  private lastLinePct = -1;

  constructor(private label: string, private total: number, private unit = 'it', private quiet = false) {}

  /** For jobs whose size is known only once they start. */
  setTotal(total: number): void { this.total = total; }

  tick(n = 1, extra?: string): void { this.update(this.done + n, extra); }

  update(done: number, extra?: string): void {
    this.done = done;
    if (extra !== undefined) this.extra = extra;
    const now = Date.now();
    if (now - this.lastDraw < 100 && done < this.total) return;
    this.lastDraw = now;
    this.draw(false);
  }

  finish(extra?: string): void {
    if (extra !== undefined) this.extra = extra;
    this.done = Math.max(this.done, this.total);
    this.draw(true);
  }

  private draw(final: boolean): void {
    if (this.quiet) return;
    const el = (Date.now() - this.start) / 1000;
    const rate = this.done / Math.max(el, 1e-9);
    const frac = this.total > 0 ? Math.min(1, this.done / this.total) : 0;
    const eta = rate > 0 ? (this.total - this.done) / rate : 0;
    const width = 24, fill = Math.round(frac * width);
    const bar = '█'.repeat(fill) + '░'.repeat(width - fill);
    const line = `${this.label} ${bar} ${this.done}/${this.total} ${fmtRate(rate)} ${this.unit}/s ` +
      `${fmtTime(el)}<${fmtTime(eta)}${this.extra ? ' ' + this.extra : ''}`;
    if (this.tty) {
      process.stderr.write('\r\x1b[K' + line + (final ? '\n' : ''));
    } else {
      const pct = Math.floor(frac * 10);
      if (final || pct !== this.lastLinePct) { this.lastLinePct = pct; process.stderr.write(line + '\n'); }
    }
  }
}

function fmtRate(r: number): string { return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2); }
export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60), sec = Math.floor(s % 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m` : `${m}:${String(sec).padStart(2, '0')}`;
}
