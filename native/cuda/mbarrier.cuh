// Shared-memory mbarriers and the bulk-copy engine (sm_90): the pieces the decode GEMV (decode.cu) and the fused GEMM
// (qgemm_wgmma.cu) both use to stream data into shared memory without per-thread copies; and the gpu-scope acquire load
// / release store both use for flags between blocks.
#pragma once
#include <cstdint>

namespace lowbit {

__device__ __forceinline__ uint32_t mbar_smem(const void* ptr) { return (uint32_t)__cvta_generic_to_shared(ptr); }
__device__ __forceinline__ void mbar_init(uint64_t* b, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(mbar_smem(b)), "r"(count) : "memory");
}
// One arrival that also announces `bytes` of transactions for the current phase.
__device__ __forceinline__ void mbar_expect_tx(uint64_t* b, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(mbar_smem(b)), "r"(bytes) : "memory");
}
// Spins until the phase of the given parity has completed.
__device__ __forceinline__ void mbar_wait(uint64_t* b, uint32_t parity) {
  const uint32_t a = mbar_smem(b);
  uint32_t done = 0;
  while (!done) {
    asm volatile("{\n .reg .pred q;\n mbarrier.try_wait.parity.shared::cta.b64 q, [%1], %2;\n selp.u32 %0, 1, 0, q;\n}\n"
                 : "=r"(done) : "r"(a), "r"(parity) : "memory");
  }
}
// `bytes` (a multiple of 16, both addresses 16-byte aligned) global → shared at address dst, completing on bar.
__device__ __forceinline__ void bulk_g2s(uint32_t dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n"
               ::"r"(dst), "l"(src), "r"(bytes), "r"(mbar_smem(bar)) : "memory");
}

// Flags between blocks of one launch: a gpu-scope acquire load (spin on it) and release store.
__device__ __forceinline__ unsigned ld_acquire_gpu(const unsigned* a) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(a) : "memory");
  return v;
}
__device__ __forceinline__ void st_release_gpu(unsigned* a, unsigned v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(a), "r"(v) : "memory");
}
// A relaxed gpu-scope load (no caching in L1, no ordering): a spin on a value another block stores.
__device__ __forceinline__ unsigned ld_relaxed_gpu(const unsigned* a) {
  unsigned v;
  asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(a) : "memory");
  return v;
}
// A bounded spin for the waits on other blocks of the same launch: one that never ends (a t never stored, a block that
// never became resident) traps after 2^22 polls (seconds; real waits are microseconds), so the launch fails with an
// error the host reports instead of hanging the GPU.
__device__ __forceinline__ void spin_guard(unsigned& n) {
  if (++n == (1u << 22)) __trap();
}
// A counter add that publishes this thread's earlier writes (no return value, no full fence).
__device__ __forceinline__ void red_release_add_gpu(unsigned* a, unsigned v) {
  asm volatile("red.release.gpu.global.add.u32 [%0], %1;\n" ::"l"(a), "r"(v) : "memory");
}

// A shared-memory counter add with acquire + release at CTA scope (returns the old value): the last of a block's warps
// to arrive has seen every other warp's earlier writes, so ONE gpu-scope release by it publishes them all (cumulativity).
__device__ __forceinline__ unsigned atom_add_acq_rel_cta(unsigned* a, unsigned v) {
  unsigned old;
  asm volatile("atom.acq_rel.cta.shared::cta.add.u32 %0, [%1], %2;\n" : "=r"(old) : "r"(mbar_smem(a)), "r"(v) : "memory");
  return old;
}

}  // namespace lowbit
