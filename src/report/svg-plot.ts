// A small dependency-free SVG line plot (loss curves, rank sweeps). Log-scale y optional.
export interface Series { name: string; points: [number, number][] }
export interface PlotOptions { title: string; xLabel: string; yLabel: string; logY?: boolean; logX?: boolean; width?: number; height?: number }

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

export function svgLinePlot(series: Series[], o: PlotOptions): string {
  const W = o.width ?? 640, H = o.height ?? 400, L = 70, R = 150, T = 40, B = 50;
  const fx = (x: number) => (o.logX ? Math.log2(x) : x), fy = (y: number) => (o.logY ? Math.log10(y) : y);
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(fx(x)) && Number.isFinite(fy(y)));
  if (pts.length === 0) return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}"><text x="20" y="40">${esc(o.title)}: no data</text></svg>`;
  let x0 = Math.min(...pts.map((p) => fx(p[0]))), x1 = Math.max(...pts.map((p) => fx(p[0])));
  let y0 = Math.min(...pts.map((p) => fy(p[1]))), y1 = Math.max(...pts.map((p) => fy(p[1])));
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 1; y1 += 1; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const sx = (x: number) => L + ((fx(x) - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y: number) => H - B - ((fy(y) - y0) / (y1 - y0)) * (H - T - B);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2 - R / 2}" y="22" text-anchor="middle" font-size="15">${esc(o.title)}</text>`,
    `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#333"/>`,
    `<line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#333"/>`,
    `<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">${esc(o.xLabel)}</text>`,
    `<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">${esc(o.yLabel)}${o.logY ? ' (log)' : ''}</text>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const vy = y0 + ((y1 - y0) * i) / 4, py = H - B - ((H - T - B) * i) / 4;
    const label = o.logY ? fmt(Math.pow(10, vy)) : fmt(vy);
    parts.push(`<line x1="${L - 4}" y1="${py}" x2="${W - R}" y2="${py}" stroke="#eee"/><text x="${L - 6}" y="${py + 4}" text-anchor="end">${label}</text>`);
    const vx = x0 + ((x1 - x0) * i) / 4, px = L + ((W - L - R) * i) / 4;
    parts.push(`<text x="${px}" y="${H - B + 16}" text-anchor="middle">${o.logX ? fmt(Math.pow(2, vx)) : fmt(vx)}</text>`);
  }
  series.forEach((s, k) => {
    const c = COLORS[k % COLORS.length];
    const ok = s.points.filter(([x, y]) => Number.isFinite(fx(x)) && Number.isFinite(fy(y)));
    if (ok.length) parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${ok.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(' ')}"/>`);
    if (ok.length <= 16) for (const [x, y] of ok) parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${c}"/>`);
    parts.push(`<line x1="${W - R + 10}" y1="${T + 10 + k * 18}" x2="${W - R + 30}" y2="${T + 10 + k * 18}" stroke="${c}" stroke-width="2"/><text x="${W - R + 35}" y="${T + 14 + k * 18}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n');
}

function fmt(v: number): string {
  if (Math.abs(v - Math.round(v)) < 1e-9) return String(Math.round(v));
  const a = Math.abs(v);
  return a >= 1000 ? v.toExponential(1) : a >= 10 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toPrecision(2);
}
function esc(s: string): string { return s.replace(/&/g, '&amp;').replace(/</g, '&lt;'); }
