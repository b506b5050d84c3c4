// Plain C++ interface of the quantizer kernels (quantize.cu): RTN / ICQ-int ('int' layout), NormalFloat and
// bnb-style blockwise quantization, the ICQ τ search ('nf' layout), double quantization of absmax and τ, and
// the pack.ts bit stream. All pointers are device pointers; every function returns nullptr or a one-line error.
// Each kernel mirrors its TypeScript twin (src/quant/quantize-gpu-twins.ts) operation for operation, with the
// f32/f64 roundings spelled out (no FMA contraction), so the results are bit-identical.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lowbit {

// W f32 [out, in], groups of `group` inputs of one row (last one shorter), ng = ceil(in/group) per row.
// rule 0 = RTN min-max (rtn.ts rtnRule), 1 = ICQ-int range-multiplier search (icq.ts icqIntRule) over
// mults f64 [n_mults] with entropy terms ent f64 [2·(group+1)] (see quant_entropy_terms). Writes codes u8 [out·in]
// (one byte per code), scales/zeros f32 [out·ng]; stats (rule 1, optional) f64 [2·out·ng]: per group the code
// entropy of GPTQ min-max codes, then of the chosen codes.
const char* cuda_quant_int(const float* W, int out, int in, int bits, int group, int rule, const double* mults,
                           int n_mults, const double* ent, uint8_t* codes, float* scales, float* zeros, double* stats);
// normalfloat.ts quantizeBlockwise on x f32 [n] (minus *offset when offset is non-null: QLoRA's centred absmax)
// with the sorted codebook levels f32 [n_levels] (2..256): codes u8 [n], absmax f32 [ceil(n/block)].
const char* cuda_quant_blockwise(const float* x, size_t n, int block, const float* levels, int n_levels,
                                 const float* offset, uint8_t* codes, float* absmax);
// icq.ts quantizeICQ_NF's per-block search and final codes (bits 2..4, block <= 256): factors f32 [n_factors]
// (the float32 roundings of the candidates), ent f64 [2·(block+1)]; codes u8 [n], absmax and τ f32 [nb];
// stats (optional) f64 [2·nb]: per block the entropy of plain NF codes, then of the ICQ codes.
const char* cuda_icq_nf(const float* W, size_t n, int bits, int block, const float* levels, const float* factors,
                        int n_factors, const double* ent, uint8_t* codes, float* absmax, float* tau, double* stats);
// QLoRA's absmax mean (f64 sum in index order, divided, rounded to f32) into work[0] (f32; work >= 16 bytes).
const char* cuda_absmax_mean(const float* absmax, size_t nb, void* work);
// ICQ τ double quantization: per 256 blocks scale = max|τ|, q = nearest dynamic-map index of τ/scale.
const char* cuda_tau_dq(const float* tau, size_t nb, const float* dynmap, uint8_t* q, float* scale);
// pack.ts packCodes: codes u8 [n] (< 2^bits) -> the little-endian bit stream, ceil(n·bits/8) bytes.
const char* cuda_pack_codes(const uint8_t* codes, size_t n, int bits, uint8_t* packed);

}  // namespace lowbit
