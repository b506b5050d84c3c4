// Arrays are plain typed arrays with their dimensions passed explicitly (the llm.c way).
// Float32Array is the working precision; Float64Array runs the same code as the reference
// for finite-difference gradient checks.
export type Arr = Float32Array | Float64Array;
export type ArrCtor = Float32ArrayConstructor | Float64ArrayConstructor;
export type Precision = 'f32' | 'f64';

export function ctorOf(p: Precision): ArrCtor {
  return p === 'f64' ? Float64Array : Float32Array;
}

export function like(a: Arr, n: number): Arr {
  return a instanceof Float64Array ? new Float64Array(n) : new Float32Array(n);
}

/** Deterministic PRNG (mulberry32) so every run and test is reproducible from its seed. */
export class Rng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0 || 0x9e3779b9; }
  /** uniform in [0, 1) */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** standard normal (Box-Muller) */
  normal(): number {
    let u = 0;
    while (u === 0) u = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next());
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  fillNormal(a: Arr, std = 1, mean = 0): Arr {
    for (let i = 0; i < a.length; i++) a[i] = mean + std * this.normal();
    return a;
  }
  fillUniform(a: Arr, lo: number, hi: number): Arr {
    for (let i = 0; i < a.length; i++) a[i] = lo + (hi - lo) * this.next();
    return a;
  }
}

/** Round half to even, as torch.round does (Math.round sends halves up). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
