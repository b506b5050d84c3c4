// lowbit quantization: quantizers, packing, the packed model format.
export * from './types.js';
export * from './pack.js';
export { quantizeRTN, dequantizeInt, rtnParams } from './rtn.js';
export { nfLevels, dynamicMap, quantizeNF, dequantizeNF, doubleQuantize, doubleDequantize, normPpf } from './normalfloat.js';
export { quantizeICQ_NF, quantizeICQ_Int, icqSearchBlock, meanGroupEntropy, type IcqStats } from './icq.js';
export { quantizeGPTQ, HessianAccumulator, type GptqOpts } from './gptq.js';
export { quantizeWeight, dequantize, type QuantContext } from './quantizer.js';
export { PackedLinear, DequantCache, dequantCache } from './packed-linear.js';
export {
  isPackedDir, loadPackedModel, loadPackedWeights, readPackedTensor, packedEntries, exportFakeQuant, formatBitStats,
  metadataBits, QUANT_FILE, type BitStats, type QuantRecord, type PackedModel,
} from './format.js';
export { quantizeModel, calibrationWindows, type ModelQuantOpts, type QuantizeStats } from './model.js';
