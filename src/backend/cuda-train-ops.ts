// Typed access to the element-wise / row-wise CUDA kernels of the GPU training path (native/cuda/train_ops.cu,
// bindings native/cuda/napi_train.cc). All buffer arguments are device-buffer handles (see NativeCuda); sizes
// are checked natively. bf16 buffers hold 2 bytes per element (round-to-nearest-even), math is fp32.
// "ACC" marks an output that is accumulated into (+=); every other output is overwritten.
// Everything runs stream-ordered on the default stream: call cudaSync() before reading results on the host.
// TypeScript twins: src/model/ops/{rmsnorm,rope,swiglu,embedding,cross-entropy,mse}.ts, src/train/adamw.ts.
import type { NativeCuda } from './native.js';
import { kernelFamily } from './cuda-family.js';

/** The training-path kernels of the addon (register_cuda_train). */
export interface NativeCudaTrain extends NativeCuda {
  /**
   * HF LlamaRMSNorm over rows of C: r = 1/sqrt(mean(x²)+eps), y = x·r·w. x f32 [N,C], w f32 [C];
   * outputs (each optional): yBf16 bf16 [N,C], yF32 f32 [N,C] (may alias x), rstd f32 [N].
   */
  cudaRmsnormFwd(x: number, w: number, yBf16: number | null, yF32: number | null, rstd: number | null,
    N: number, C: number, eps: number): void;
  /** dx f32 [N,C] ACC += r·(dout·w − x·k), k = r²/C·Σ dout·w·x (no dw: the norm weights are frozen). */
  cudaRmsnormBwd(dx: number, dout: number, x: number, w: number, rstd: number, N: number, C: number): void;
  /**
   * RoPE (HF rotate_half): x f32 [B·T,H,D] → outBf16 bf16 [B·T,H,D]; cos/sin f32 [T, D/2] (row t = position t of
   * every batch row). out[i] = x[i]·c − x[i+D/2]·s, out[i+D/2] = x[i+D/2]·c + x[i]·s. D must be even.
   */
  cudaRopeFwd(x: number, outBf16: number, cos: number, sin: number, B: number, T: number, H: number, D: number): void;
  /** Inverse rotation, overwriting: dx[i] = g1·c + g2·s, dx[i+D/2] = g2·c − g1·s (dout f32, dxBf16 bf16). */
  cudaRopeBwd(dout: number, dxBf16: number, cos: number, sin: number, B: number, T: number, H: number, D: number): void;
  /** out = silu(gate)·up, all bf16 [n]. */
  cudaSwigluFwd(gate: number, up: number, out: number, n: number): void;
  /** dgate = dout·up·σ(g)·(1+g·(1−σ(g))), dup = dout·g·σ(g); all bf16 [n]; dgate/dup overwritten. */
  cudaSwigluBwd(dout: number, gate: number, up: number, dgate: number, dup: number, n: number): void;
  /** out = a + b (f32 [n]; out may alias a or b). */
  cudaAddF32(out: number, a: number, b: number, n: number): void;
  /** x *= factor in place (f32 [n]). */
  cudaScaleF32(x: number, n: number, factor: number): void;
  /** dst bf16 [n] = bf16(scale·src), src f32 [n]. */
  cudaCastF32ToBf16Scaled(dst: number, src: number, n: number, scale: number): void;
  /** dst f32 [n] ACC += scale·src, src bf16 [n]. */
  cudaAccumulateBf16ToF32(dst: number, src: number, n: number, scale: number): void;
  /**
   * out f32 [N,D] row n = table [V,D] row ids[n] (ids i32 [N]; table bf16 when tableIsBf16, else f32). Ids are the
   * caller's to validate: an id outside [0, V) yields a NaN row.
   */
  cudaEmbedding(ids: number, table: number, out: number, N: number, D: number, V: number, tableIsBf16: boolean): void;
  /**
   * Fused, chunked LM head + cross-entropy (never more than chunkRows×V logits live). Per chunk of rows:
   * logits = hidden·Wᵀ (f32, cuBLAS), lossSum[0] ACC += Σ (lse − logit[target]) over rows with target ≥ 0,
   * dlogits = bf16(scale·(softmax − onehot(target))) (zero row for target < 0), then dHidden ACC += dlogits·W.
   * hidden bf16 [N,D], W bf16 [V,D], targets i32 [N], dHidden f32 [N,D] | null, lossSum f32 [1],
   * logitsScratch f32 and dlogitsScratch bf16 each of min(chunkRows, N)·V elements (see ceScratchBytes).
   * A target ≥ V is misuse: it adds NaN to lossSum and writes a NaN dlogits row. After the call the scratch holds
   * the logits / dlogits of the last chunk.
   */
  cudaLmHeadCe(hidden: number, W: number, targets: number, dHidden: number | null, lossSum: number,
    N: number, D: number, V: number, scale: number, chunkRows: number, logitsScratch: number, dlogitsScratch: number): void;
  /** lossSum[0] ACC += Σ (a−t)² (the SUM, not the mean); da ACC += gradScale·2·(a−t)/n when given. */
  cudaMseF32(a: number, target: number, da: number | null, lossSum: number, n: number, gradScale: number): void;
  /** out[0] ACC += Σ x² (global grad-norm clipping). */
  cudaSumSquaresF32(x: number, n: number, out: number): void;
  /**
   * One AdamW step of src/train/adamw.ts (AdamW.update) on one f32 tensor of n values, with the gradient taken as
   * g·gradScale (g itself untouched). step = the step being taken (≥ 1; bias corrections 1−β^step computed in
   * double on the host). Decoupled weight decay unless coupledL2.
   */
  cudaAdamW(p: number, g: number, m: number, v: number, n: number, lr: number, beta1: number, beta2: number,
    eps: number, weightDecay: number, step: number, gradScale: number, coupledL2: boolean): void;
}

/** The function names of NativeCudaTrain the addon must export. */
export const CUDA_TRAIN_FUNCTIONS = [
  'cudaRmsnormFwd', 'cudaRmsnormBwd', 'cudaRopeFwd', 'cudaRopeBwd', 'cudaSwigluFwd', 'cudaSwigluBwd',
  'cudaAddF32', 'cudaScaleF32', 'cudaCastF32ToBf16Scaled', 'cudaAccumulateBf16ToF32', 'cudaEmbedding',
  'cudaLmHeadCe', 'cudaMseF32', 'cudaSumSquaresF32', 'cudaAdamW',
] as const satisfies readonly (keyof NativeCudaTrain)[];

const family = kernelFamily<NativeCudaTrain>('training kernels', CUDA_TRAIN_FUNCTIONS);

/** The addon's CUDA object with the training kernels when a device is usable; otherwise null (see cudaTrainOpsUnavailable). */
export function cudaTrainOps(): NativeCudaTrain | null { return family.get(); }

/** Why cudaTrainOps() is null ('available' when it is not). */
export function cudaTrainOpsUnavailable(): string { return family.unavailable(); }

/** Bytes of the two scratch buffers of cudaLmHeadCe for chunks of `chunkRows` rows over a vocabulary of V. */
export function ceScratchBytes(chunkRows: number, V: number): { logits: number; dlogits: number } {
  return { logits: chunkRows * V * 4, dlogits: chunkRows * V * 2 };
}

/**
 * Rows per cudaLmHeadCe chunk so that its scratch (6 bytes per logit) fits `budgetBytes`: the largest count
 * ≤ N (at least 1, at most N), rounded down to a multiple of 8 when that leaves at least 8 rows (tidier GEMM
 * shapes). N ≥ 1, V ≥ 1.
 */
export function ceChunkRows(N: number, V: number, budgetBytes: number): number {
  if (!(Number.isInteger(N) && N >= 1 && Number.isInteger(V) && V >= 1)) {
    throw new RangeError(`src/backend/cuda-train-ops.ts: ceChunkRows needs positive integer N and V (got ${N}, ${V})`);
  }
  let r = Math.floor(Math.max(0, budgetBytes) / (6 * V));
  if (r >= N) return N;
  if (r >= 8) r -= r % 8;
  return Math.max(1, r);
}
