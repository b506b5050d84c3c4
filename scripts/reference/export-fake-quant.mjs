#!/usr/bin/env node
// Write the fake-quant HF directory (dequantized weights) of a lowbit packed directory for the PyTorch reference
// scripts. float32 by default so transformers sees exactly lowbit's dequantized base (the CLI's
// --export-fake-quant writes bf16, which rounds the RTN values s·(q − z) with f16 scales).
//   node scripts/reference/export-fake-quant.mjs PACKED_DIR OUT_DIR [F32|BF16|F16]
import { exportFakeQuant } from '../../dist/src/quant/format.js';
const [src, out, dtype = 'F32'] = process.argv.slice(2);
if (!src || !out) { console.error('usage: node scripts/reference/export-fake-quant.mjs PACKED_DIR OUT_DIR [F32|BF16|F16]'); process.exit(2); }
exportFakeQuant(src, out, dtype);
console.error(`fake-quant ${dtype} → ${out}`);
