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
// I/O
export * from './io/errors.js';
export * from './io/safetensors.js';
export * from './io/config.js';
export * from './io/tokenizer.js';
export * from './io/hf-dir.js';
export { trainByteLevelBpe, saveBpeTokenizer, type BpeTrainOptions, type TrainedBpe } from './io/bpe-train.js';
// quantization, adapters, training, compensation, evaluation, serving
export * as quant from './quant/index.js';
export * from './adapters/lora.js';
export * from './adapters/init.js';
export * from './adapters/peft-io.js';
export * from './adapters/merge.js';
export { AdamW, type AdamOptions } from './train/adamw.js';
export { cosineLr } from './train/schedule.js';
export * from './train/data.js';
export { pretrain, type PretrainOptions, type PretrainResult } from './train/pretrain.js';
export * as compensation from './compensate/index.js';
export * from './eval/ppl.js';
export * from './serve/load.js';
