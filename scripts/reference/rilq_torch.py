#!/usr/bin/env python3
"""PyTorch port of RILQ (aiha-lab/RILQ main.py, spec docs: /work/shared/specs/rilq.md §1-3, §10) for parity with
`lowbit compensate --method rilq`.

Inputs
  --fp DIR        full-precision HF model dir (what lowbit trains from; config.json + model.safetensors)
  --q DIR         fake-quant HF dir of the quantized model (`lowbit quantize ... --export-fake-quant DIR`,
                  or quant/format.ts exportFakeQuant): the FP architecture with dequantized weights
  --windows FILE  JSON written by `lowbit compensate ... --windows-json FILE`:
                  {"seq", "train": [[ids]...] (lowbit's trainer order), "val": [[ids]...], "heldout": [ids...]}
The recipe (authors' main.py): teacher = FP model, run once (no grad), its final post-norm hidden states
(model.model(x)[0]) cached on the CPU, then freed. Student = fake-quant model + PEFT LoRA
(r, lora_alpha=16, dropout 0, bias none, init "gaussian", all 7 projections). Loss per micro-batch of 1:
0.5*MSE(h_S, h_T) + 0.5*CE(lm_head(h_S)[:, :-1].float(), x[:, 1:]), divided by grad-accum (8) before backward;
Adam(lr 1e-4), no weight decay/schedule/clipping; training windows walked cyclically in the given order;
validation (same loss, mean over the val windows) at update 0 (logged only) and every 25 updates, the best
adapters kept, early stop after 5 validations without improvement, budget --max-steps micro-steps; the best
adapters restored at the end. Then held-out perplexity with the GPTQ protocol (non-overlapping --eval-seq windows
of the held-out token stream, exp(mean NLL)), for the bare quantized model and with the adapters.
Differences from main.py, on purpose: adapters kept in fp32 (--adapter-dtype; PEFT 0.11 trained them in bf16),
a final validation when the last update was not a validation point (main.py crashes if no validation ran).

Prints progress on stderr and one JSON line on stdout: {"ppl_fp", "ppl_quant", "ppl_rilq", "best_val", ...}.
Usage (GPU machine):
  python scripts/reference/rilq_torch.py --fp models/tiny-jargon --q out/q-fake --windows out/windows.json \
      --rank 16 --max-steps 400 --grad-accum 8 --eval-every 5 --patience 5 --eval-seq 256 [--dtype bfloat16] [--out DIR]
"""
import argparse, json, math, sys, time, copy

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM
try:
    from peft import LoraConfig, get_peft_model
    HAVE_PEFT = True
except ImportError:  # fall back to an equivalent hand-written LoRA (PEFT's LoraLayer math, gaussian init)
    HAVE_PEFT = False

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraLinear(torch.nn.Module):
    """y = base(x) + (alpha/r) * B(A x); A ~ N(0, 1/r) (PEFT init_lora_weights="gaussian"), B = 0."""

    def __init__(self, base, r, alpha, dtype):
        super().__init__()
        self.base_layer = base
        self.lora_A = torch.nn.Linear(base.in_features, r, bias=False, device=base.weight.device, dtype=dtype)
        self.lora_B = torch.nn.Linear(r, base.out_features, bias=False, device=base.weight.device, dtype=dtype)
        torch.nn.init.normal_(self.lora_A.weight, std=1 / r)
        torch.nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / r

    def forward(self, x):
        y = self.base_layer(x)
        return y + (self.lora_B(self.lora_A(x.to(self.lora_A.weight.dtype))) * self.scaling).to(y.dtype)


def add_lora_by_hand(model, r, alpha, dtype):
    for name, mod in list(model.named_modules()):
        for t in TARGETS:
            child = getattr(mod, t, None)
            if isinstance(child, torch.nn.Linear):
                setattr(mod, t, LoraLinear(child, r, alpha, dtype))
    return model


def load(path, dt):
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dt)  # transformers >= 4.56
    except TypeError:
        return AutoModelForCausalLM.from_pretrained(path, torch_dtype=dt)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


@torch.no_grad()
def perplexity(model, ids, seq, dev, max_windows=None, batch=4):
    n = len(ids) // seq
    if max_windows is not None:
        n = min(n, max_windows)
    x = torch.tensor(ids[: n * seq], dtype=torch.long).view(n, seq)
    nll, cnt = 0.0, 0
    for i in range(0, n, batch):
        xb = x[i:i + batch].to(dev)
        logits = model(input_ids=xb).logits.float()
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), xb[:, 1:].reshape(-1), reduction="sum")
        nll += loss.item()
        cnt += xb[:, 1:].numel()
    return math.exp(nll / cnt)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fp", required=True)
    ap.add_argument("--q", required=True)
    ap.add_argument("--windows", required=True)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--grad-accum", type=int, default=8)
    ap.add_argument("--max-steps", type=int, default=10000, help="micro-steps (approx_total_steps)")
    ap.add_argument("--eval-every", type=int, default=25, help="updates")
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--mse-weight", type=float, default=0.5)
    ap.add_argument("--ce-weight", type=float, default=0.5)
    ap.add_argument("--eval-seq", type=int, default=None)
    ap.add_argument("--eval-max-windows", type=int, default=None)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="model compute dtype (authors: bfloat16)")
    ap.add_argument("--adapter-dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=None, help="save the best adapters here (PEFT dir)")
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dt = getattr(torch, a.dtype)
    W = json.load(open(a.windows))
    train = [torch.tensor(w, dtype=torch.long).view(1, -1) for w in W["train"]]
    val = [torch.tensor(w, dtype=torch.long).view(1, -1) for w in W["val"]]
    heldout = W.get("heldout")
    eval_seq = a.eval_seq or W["seq"]
    t0 = time.time()

    # 1. teacher: cache final post-norm hidden states (the lm_head input) on the CPU, then free the FP model
    fp = load(a.fp, dt).to(dev).eval()
    ppl_fp = perplexity(fp, heldout, eval_seq, dev, a.eval_max_windows) if heldout else None
    with torch.no_grad():
        h_train = [fp.model(input_ids=x.to(dev))[0].to("cpu") for x in train]
        h_val = [fp.model(input_ids=x.to(dev))[0].to("cpu") for x in val]
    del fp
    if dev == "cuda":
        torch.cuda.empty_cache()
    log(f"teacher cached: {len(h_train)} train + {len(h_val)} val windows, {time.time() - t0:.1f}s; ppl_fp={ppl_fp}")

    # 2. student: fake-quant model + PEFT LoRA, gaussian init (A ~ N(0, 1/r), B = 0)
    q = load(a.q, dt).to(dev)
    ppl_quant = perplexity(q.eval(), heldout, eval_seq, dev, a.eval_max_windows) if heldout else None
    if HAVE_PEFT:
        cfg = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0, bias="none", init_lora_weights="gaussian",
                         target_modules=TARGETS, task_type="CAUSAL_LM")
        model = get_peft_model(q, cfg)
        inner = model.base_model.model  # LlamaForCausalLM with LoRA injected
    else:
        log("peft not installed: using the hand-written LoRA wrapper (same math)")
        model = inner = add_lora_by_hand(q, a.rank, a.alpha, getattr(torch, a.adapter_dtype))
    params = []
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.data = p.data.to(getattr(torch, a.adapter_dtype))
            p.requires_grad_(True)
            params.append((n, p))
        else:
            p.requires_grad_(False)
    model.train()
    opt = torch.optim.Adam([p for _, p in params], lr=a.lr)

    def loss_of(x, h_t):
        x = x.to(dev)
        h = inner.model(input_ids=x)[0]
        mse = F.mse_loss(h.float(), h_t.to(dev).float())
        logits = inner.lm_head(h).float()
        ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))
        return a.mse_weight * mse + a.ce_weight * ce, mse, ce

    @torch.no_grad()
    def validate():
        model.eval()
        tot = 0.0
        for x, h in zip(val, h_val):
            tot += loss_of(x, h)[0].item()
        model.train()
        return tot / max(1, len(val))

    best, best_state, best_update, bad, update = None, None, -1, 0, 0
    v0 = validate()
    log(f"update 0: val {v0:.5f} (logged only)")
    history = [{"update": 0, "val": v0}]
    stopped = False
    last_eval = 0
    opt.zero_grad(set_to_none=True)
    micro = 0
    run_loss = 0.0
    while micro < a.max_steps and not stopped:
        i = micro % len(train)
        loss, mse, ce = loss_of(train[i], h_train[i])
        (loss / a.grad_accum).backward()
        run_loss += loss.item()
        micro += 1
        if micro % a.grad_accum == 0:
            opt.step()
            opt.zero_grad(set_to_none=True)
            update += 1
            entry = {"update": update, "train": run_loss / a.grad_accum}
            run_loss = 0.0
            if update % a.eval_every == 0:
                v = validate()
                last_eval = update
                entry["val"] = v
                if best is None or v < best:
                    best, best_update, bad = v, update, 0
                    best_state = {n: p.detach().clone() for n, p in params}
                else:
                    bad += 1
                    if bad >= a.patience:
                        stopped = True
                log(f"update {update}: train {entry['train']:.5f} val {v:.5f} best {best:.5f}@{best_update} ({time.time() - t0:.0f}s)")
            history.append(entry)
    if update > 0 and last_eval != update:
        v = validate()
        history.append({"update": update, "val": v})
        if best is None or v < best:
            best, best_update = v, update
            best_state = {n: p.detach().clone() for n, p in params}
    if best_state is not None:
        with torch.no_grad():
            for n, p in params:
                p.copy_(best_state[n])
    model.eval()
    ppl_rilq = perplexity(model, heldout, eval_seq, dev, a.eval_max_windows) if heldout else None
    if a.out and HAVE_PEFT:
        model.save_pretrained(a.out)
    res = {"ppl_fp": ppl_fp, "ppl_quant": ppl_quant, "ppl_rilq": ppl_rilq, "best_val": best, "best_update": best_update,
           "initial_val": v0, "updates": update, "micro_steps": micro, "early_stop": stopped, "rank": a.rank, "alpha": a.alpha,
           "lr": a.lr, "grad_accum": a.grad_accum, "eval_seq": eval_seq, "dtype": a.dtype, "seconds": time.time() - t0,
           "torch": torch.__version__, "peft": HAVE_PEFT, "device": dev, "history": history}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
