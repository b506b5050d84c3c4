// One family of CUDA kernels in the addon (training ops, decode, quantizers, GPTQ, KL + CE): present when the addon was
// built with CUDA, exports every function of the family and sees a device. Each typed wrapper (cuda-*.ts) is one of these.
import { nativeAddon, nativeReason, type NativeCuda } from './native.js';

export interface KernelFamily<T> {
  /** the addon's CUDA object typed as the family, or null (see unavailable()) */
  get(): T | null;
  /** 'available', or one line saying why get() is null */
  unavailable(): string;
}

/** `what` names the family in messages ("training kernels"); `names` are the functions it needs. */
export function kernelFamily<T>(what: string, names: readonly string[]): KernelFamily<T> {
  const missing = (c: object) => names.filter((f) => typeof (c as Record<string, unknown>)[f] !== 'function');
  return {
    get(): T | null {
      const a = nativeAddon();
      if (!a?.cuda || missing(a.cuda).length) return null;
      return a.cuda.cudaInfo().deviceCount > 0 ? (a.cuda as unknown as T) : null;
    },
    unavailable(): string {
      const a = nativeAddon();
      if (!a) return `native addon not built: ${nativeReason()}`;
      if (!a.cuda) return 'native addon built without CUDA (no nvcc at build time, or LOWBIT_NO_CUDA=1)';
      const m = missing(a.cuda);
      if (m.length) return `addon predates the ${what} (missing ${m.join(', ')}; rebuild it)`;
      const info = (a.cuda as NativeCuda).cudaInfo();
      return info.deviceCount > 0 ? 'available' : `no CUDA device: ${info.error ?? 'deviceCount is 0'}`;
    },
  };
}
