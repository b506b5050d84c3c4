// Learning-rate schedules.
/** Linear warmup then cosine decay from `lr` to `minLr` over `total` steps. */
export function cosineLr(step: number, total: number, lr: number, warmup: number, minLr = lr * 0.1): number {
  if (step < warmup) return (lr * (step + 1)) / warmup;
  const p = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  return minLr + 0.5 * (lr - minLr) * (1 + Math.cos(Math.PI * p));
}
