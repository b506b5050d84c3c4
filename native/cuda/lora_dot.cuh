// LoRA B·t for one output row, shared by the decode epilogues (decode.cu) and the int8-x prep (int8x_gemv.cu).
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
