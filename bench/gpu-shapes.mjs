// The model shapes and random adapters the GPU-engine benches share (bench/cuda-rilq.mjs, bench/cuda-decode.mjs).
import { PROJECTIONS, projectionShape } from '../dist/src/model/config.js';

/** LLaMA-2-7B, or the shipped model's size with --tiny (intermediate size as given). */
export function benchConfig(tiny, tinyIntermediate = 688) {
  const cfg = tiny
    ? { vocabSize: 2048, hiddenSize: 256, intermediateSize: tinyIntermediate, numLayers: 4, numHeads: 8, numKvHeads: 4, headDim: 32 }
    : { vocabSize: 32000, hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128 };
  return Object.assign(cfg, { rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: { type: 'default' }, tieWordEmbeddings: false, maxPositionEmbeddings: 4096 });
}

/** One adapter of rank r (scale alpha/r) on every projection of every layer, in loraParams order. */
export function allSiteSpecs(cfg, rank, alpha = 16) {
  const specs = [];
  for (let l = 0; l < cfg.numLayers; l++) for (const p of PROJECTIONS) { const s = projectionShape(cfg, p); specs.push({ layer: l, proj: p, r: rank, scale: alpha / rank, in: s.in, out: s.out }); }
  return specs;
}

/**
 * Non-zero adapter values (so every gradient path is exercised): A ~ aScale/√in·U(±0.5), B ~ bScale·U(±0.5), from a
 * xorshift seeded with `seed`, A then B per site.
 */
export function randomLoraParams(specs, seed, aScale, bScale) {
  let x = seed;
  const rnd = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 4294967296 - 0.5; };
  return specs.flatMap((s) => {
    const a = aScale / Math.sqrt(s.in);
    return [Float32Array.from({ length: s.r * s.in }, () => a * rnd()), Float32Array.from({ length: s.out * s.r }, () => bScale * rnd())];
  });
}
