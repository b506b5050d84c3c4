// LoRA B·t, shared by the decode epilogues and attention (decode.cu) and the int8-x prep (int8x_gemv.cu): lora_dot for
// one row, group_bt for 64 rows by one warp.
#pragma once
#include <cstdint>

namespace lowbit {

// The adapters' t vectors are staged in shared memory once per block; a row of B (bf16, already scaled by the
// adapter's s) is loaded whole before it is used (up to 128 values: 16 loads in flight instead of a dependent chain).
// The sum runs k = 0 … r − 1 in order with fmaf (the TypeScript twins add in the same order).
__device__ __forceinline__ float lora_dot(const uint16_t* B, const float* ts, int r, int row) {
  if (!B) return 0.f;
  const uint16_t* b = B + (size_t)row * r;
  float a = 0.f;
  if ((r & 7) == 0 && r <= 128) {  // rows of B start 16-byte aligned when r % 8 == 0
    const int r8 = r >> 3;
    uint4 w[16];
#pragma unroll
    for (int k = 0; k < 16; k++) if (k < r8) w[k] = __ldg(reinterpret_cast<const uint4*>(b) + k);
#pragma unroll
    for (int k = 0; k < 16; k++) {
      if (k < r8) {
        const float* tk = ts + 8 * k;
        a = fmaf(__uint_as_float(w[k].x << 16), tk[0], a); a = fmaf(__uint_as_float(w[k].x & 0xffff0000u), tk[1], a);
        a = fmaf(__uint_as_float(w[k].y << 16), tk[2], a); a = fmaf(__uint_as_float(w[k].y & 0xffff0000u), tk[3], a);
        a = fmaf(__uint_as_float(w[k].z << 16), tk[4], a); a = fmaf(__uint_as_float(w[k].z & 0xffff0000u), tk[5], a);
        a = fmaf(__uint_as_float(w[k].w << 16), tk[6], a); a = fmaf(__uint_as_float(w[k].w & 0xffff0000u), tk[7], a);
      }
    }
  } else {
    for (int k = 0; k < r; k++) a = fmaf(__uint_as_float((uint32_t)b[k] << 16), ts[k], a);
  }
  return a;
}

// B·t for 64 consecutive rows of B (bf16 [rows, r], B pointing at the first of them) into bt[64], one warp, with r = 8·cpr and cpr a power of two ≤ 32: the
// rows are one contiguous span of 64·r values, read as 16-byte words in order, word u = 32·step + lane holding
// k = 8·(u % cpr) … + 7 of row u / cpr — every load instruction is 512 contiguous bytes. A lane's eight products are
// summed in order, the cpr lanes of a row by a shuffle tree (fixed: deterministic). Run 84 priced lora_dot's per-row
// loads in the int8-x prep (a lane per row, each warp load touching 32 rows' lines) at ≈ 16 µs of hand-offs per layer
// at rank 64.
__device__ __forceinline__ void group_bt(const uint16_t* __restrict__ B, const float* ts, int r, float* bt, int lane) {
  const int cpr = r >> 3, lg = __ffs(cpr) - 1, steps = 2 * cpr;
  const uint4* src = reinterpret_cast<const uint4*>(B) + lane;
  for (int j0 = 0; j0 < steps; j0 += 16) {
    uint4 w[16];
#pragma unroll
    for (int j = 0; j < 16; j++)
      if (j0 + j < steps) w[j] = __ldg(src + 32 * (j0 + j));
#pragma unroll
    for (int j = 0; j < 16; j++) {
      if (j0 + j < steps) {  // warp-uniform
        const int u = 32 * (j0 + j) + lane, c = u & (cpr - 1);
        const float* tk = ts + 8 * c;
        float s = 0.f;
        s = fmaf(__uint_as_float(w[j].x << 16), tk[0], s); s = fmaf(__uint_as_float(w[j].x & 0xffff0000u), tk[1], s);
        s = fmaf(__uint_as_float(w[j].y << 16), tk[2], s); s = fmaf(__uint_as_float(w[j].y & 0xffff0000u), tk[3], s);
        s = fmaf(__uint_as_float(w[j].z << 16), tk[4], s); s = fmaf(__uint_as_float(w[j].z & 0xffff0000u), tk[5], s);
        s = fmaf(__uint_as_float(w[j].w << 16), tk[6], s); s = fmaf(__uint_as_float(w[j].w & 0xffff0000u), tk[7], s);
        for (int o = 1; o < cpr; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (c == 0) bt[u >> lg] = s;
      }
    }
  }
  __syncwarp();
}
__host__ __device__ __forceinline__ bool group_bt_fits(int r) { return (r & 7) == 0 && r <= 256 && ((r >> 3) & ((r >> 3) - 1)) == 0; }


// Copies t vectors (null: skipped) into shared memory at the given offsets; every thread of the block takes part.
__device__ __forceinline__ void stage_t(float* sm, const float* a, int ra, const float* b, int rb, const float* c, int rc) {
  for (int i = threadIdx.x; i < ra + rb + rc; i += blockDim.x) {
    if (i < ra) sm[i] = a ? a[i] : 0.f;
    else if (i < ra + rb) sm[i] = b ? b[i - ra] : 0.f;
    else sm[i] = c ? c[i - ra - rb] : 0.f;
  }
  __syncthreads();
}

}  // namespace lowbit
