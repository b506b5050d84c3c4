// `lowbit env`: what this machine gives lowbit (native addon, threads, SIMD, CUDA device, cuBLAS).
import type { CommandSpec } from '../args.js';
import { flag } from '../args.js';
import { makeOut } from '../output.js';
import { nativeInfo } from '../../backend/native.js';
import { gpuUnavailable } from '../../model/gpu/engine.js';

export const command: CommandSpec = {
  name: 'env',
  summary: 'what lowbit found: native addon, threads, SIMD, CUDA device, cuBLAS',
  usage: 'lowbit env [--json]',
  options: [{ name: 'json', flag: true, help: 'print one JSON object' }],
  async run(a) {
    const out = makeOut(flag(a, 'json'));
    const n = nativeInfo();
    const gpu = gpuUnavailable();
    const info = { node: process.version, platform: `${process.platform}-${process.arch}`, ...n, gpuEngine: gpu };
    if (!out.json) {
      console.log(`node        ${info.node} (${info.platform})`);
      console.log(`native      ${n.loaded ? 'loaded' : `not loaded (${n.reason ?? 'unknown'})`}`);
      console.log(`threads     ${n.threads}`);
      console.log(`simd        ${n.simd}`);
      const c = n.cuda;
      console.log(`cuda        ${c.compiled ? 'compiled in' : 'not compiled in'}; ${c.deviceCount} device(s)` +
        (c.deviceName ? `: ${c.deviceName} (compute capability ${c.computeCapability})` : ''));
      if (c.cublas) console.log(`cublas      ${c.cublas.loaded ? `libcublas.so.13 version ${c.cublas.version}` : `not loaded (${c.cublas.error ?? ''})`}`);
      console.log(`gpu engine  ${gpu === 'available' ? 'available (--device cuda)' : `unavailable: ${gpu}`}`);
    }
    out.result(info as unknown as Record<string, unknown>);
  },
};
