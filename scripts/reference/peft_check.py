#!/usr/bin/env python3
"""Load a lowbit-written PEFT LoRA adapter with HF PEFT on the fake-quant base and dump logits, for comparison
with `lowbit logits --model Q_PACKED_DIR --adapter ADAPTER_DIR --ids ... --json`.

  python scripts/reference/peft_check.py --base out/q-fake --adapter out/rilq-r16 --ids 5,17,300,42 \
      [--lowbit-json lowbit_logits.json] [--dtype float32|bfloat16] [--out logits.json]

Prints one JSON line: {"max_abs_diff_no_adapter_vs_adapter", "max_abs_diff_vs_lowbit", "rel_diff_vs_lowbit", ...};
with --lowbit-json (the stdout JSON of `lowbit logits --json`), also compares against lowbit's logits.
Within bf16 tolerance means: max |Δ| / max |logit| < ~1e-2 with --dtype bfloat16, < ~1e-4 with float32.
"""
import argparse, json
import torch
from transformers import AutoModelForCausalLM
from peft import PeftModel


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="fake-quant HF dir (dequantized weights)")
    ap.add_argument("--adapter", required=True, help="PEFT dir written by lowbit compensate")
    ap.add_argument("--ids", required=True)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--lowbit-json", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dt = getattr(torch, a.dtype)
    ids = torch.tensor([[int(s) for s in a.ids.split(",")]], device=dev)
    try:
        base = AutoModelForCausalLM.from_pretrained(a.base, dtype=dt)
    except TypeError:
        base = AutoModelForCausalLM.from_pretrained(a.base, torch_dtype=dt)
    base = base.to(dev).eval()
    with torch.no_grad():
        plain = base(input_ids=ids).logits.float()[0]
    model = PeftModel.from_pretrained(base, a.adapter).to(dev).eval()
    cfg = model.peft_config["default"]
    n_lora = sum(1 for n, _ in model.named_parameters() if "lora_A" in n)
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()[0]
    res = {"positions": ids.shape[1], "vocab": logits.shape[1], "lora_modules": n_lora, "r": cfg.r, "lora_alpha": cfg.lora_alpha,
           "use_rslora": cfg.use_rslora, "max_abs_diff_no_adapter_vs_adapter": (logits - plain).abs().max().item(),
           "max_abs_logit": logits.abs().max().item(), "dtype": a.dtype}
    if a.lowbit_json:
        lines = [l for l in open(a.lowbit_json).read().splitlines() if l.strip().startswith("{")]
        lb = torch.tensor(json.loads(lines[-1])["logits"], device=dev, dtype=torch.float32)
        d = (lb - logits).abs().max().item()
        res["max_abs_diff_vs_lowbit"] = d
        res["rel_diff_vs_lowbit"] = d / max(1e-12, logits.abs().max().item())
        res["argmax_agree"] = (lb.argmax(-1) == logits.argmax(-1)).float().mean().item()
    if a.out:
        json.dump({"logits": logits.tolist()}, open(a.out, "w"))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
