// Public library API of lowbit.
export * from './tensor.js';
export * from './model/config.js';
export * from './model/linear.js';
export * from './backend/kernels.js';
export { nativeInfo, nativeAddon, setNativeThreads } from './backend/native.js'; // loading it installs the native kernels
export * from './model/weights.js';
export { LlamaModel, type ForwardOptions, type ForwardResult, type LinearHooks, type LmHeadLoss, type LayerActs } from './model/llama.js';
export * from './model/generate.js';
export * from './model/sampling.js';
export * from './model/loss.js';
export { ropeInvFreq } from './model/ops/rope.js';
