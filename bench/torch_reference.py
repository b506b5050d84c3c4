#!/usr/bin/env python3
"""PyTorch/HF/PEFT reference stack that the lowbit CUDA engine is compared with (timing and memory only).

What it measures, on random weights of a LLaMA-2-7B-shaped LlamaForCausalLM (bf16, sdpa attention):
  1. the base's decoder linears fake-quantized in place (RTN asymmetric min-max, 2 bits, groups of 64 inputs,
     the same rule as src/quant/rtn.ts), PEFT LoRA r=64 alpha=16 on all 7 projections (adapters fp32), Adam;
  2. one RILQ micro-step = batch 1 x --seq tokens: forward, 0.5*MSE(final post-norm hidden, teacher) + 0.5*CE,
     backward, Adam step: median/min ms over --steps timed steps after --warmup, peak CUDA memory;
  3. greedy decode, batch 1, 8-token prompt, --decode-tokens new tokens (HF generate, KV cache): with the
     unmerged adapter, with the adapter disabled, and the plain transformers model (adapter unloaded).
Weights and data are random: the loss values are sanity numbers only, not a quality measurement.
Writes <out>/torch_reference.json (every number, plus an "errors" map; exit code 0 even when a part fails).
Usage (GPU machine): python3 bench/torch_reference.py --out $OUT      [--tiny for a quick check]
"""
import argparse
import json
import os
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GiB = float(2 ** 30)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def err_str(e):
    return f"{type(e).__name__}: {e}\n{traceback.format_exc()[-3000:]}"


DEV = torch.device("cuda")  # --device cpu only exists to smoke-test this script on a machine without a GPU


def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def mem(fn):
    """A torch.cuda memory statistic in GiB (None off CUDA)."""
    return fn() / GiB if DEV.type == "cuda" else None


def reset_peak():
    if DEV.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


# ---------------------------------------------------------------------------------------------- fake-quant
@torch.no_grad()
def _rtn_groups(x, bits):
    """x: [rows, ngroups, g] fp32 -> fake-quantized copy. lowbit's rule (src/quant/rtn.ts rtnParams):
    s = max(max-min, 1e-5)/(2^b-1) (rounded to f16, its storage precision), z = clamp(round(-min/s), 0, M),
    q = clamp(round(w/s)+z, 0, M), w_hat = (q-z)*s. torch.round is round-half-even like lowbit's."""
    M = 2 ** bits - 1
    mn = x.amin(dim=-1, keepdim=True)
    mx = x.amax(dim=-1, keepdim=True)
    s = ((mx - mn).clamp_min(1e-5) / M).half().float().clamp_min(2 ** -24)
    z = torch.round(-mn / s).clamp_(0, M)
    q = (torch.round(x / s) + z).clamp_(0, M)
    return (q - z) * s


@torch.no_grad()
def rtn_fake_quant_(w, bits=2, group=64, max_chunk_elems=1 << 24):
    """In place on a [out, in] weight (any float dtype): row chunks converted to fp32, quantized, written back."""
    out_f, in_f = w.shape
    g = min(group, in_f) if group > 0 else in_f
    n_full = in_f // g
    rows = max(1, max_chunk_elems // in_f)
    for r0 in range(0, out_f, rows):
        blk = w[r0:r0 + rows].float()
        r = blk.shape[0]
        res = torch.empty_like(blk)
        if n_full > 0:
            res[:, :n_full * g] = _rtn_groups(blk[:, :n_full * g].reshape(r, n_full, g), bits).reshape(r, n_full * g)
        if n_full * g < in_f:  # shorter last group (lowbit does the same when g does not divide in)
            tail = blk[:, n_full * g:]
            res[:, n_full * g:] = _rtn_groups(tail.reshape(r, 1, tail.shape[1]), bits).reshape(r, -1)
        w[r0:r0 + rows].copy_(res.to(w.dtype))
        del blk, res


# ---------------------------------------------------------------------------------------------- model
def make_config(a):
    from transformers import LlamaConfig
    kw = dict(vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.inter, num_hidden_layers=a.layers,
              num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, max_position_embeddings=4096,
              rms_norm_eps=1e-5, hidden_act="silu", tie_word_embeddings=False, initializer_range=0.02,
              attention_bias=False, use_cache=True)
    # rope_theta left at its default (10000 for LLaMA-2; transformers 5 keeps it under config.rope_parameters)
    try:
        return LlamaConfig(attn_implementation="sdpa", **kw)
    except TypeError:
        cfg = LlamaConfig(**kw)
        try:
            cfg._attn_implementation = "sdpa"
        except Exception:
            pass
        return cfg


def build_model(cfg, seed):
    from transformers import LlamaForCausalLM
    bf16 = torch.bfloat16
    old_default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(bf16)
    except Exception:
        pass
    model, tried = None, []
    try:
        with torch.device(DEV):
            # transformers 5 renamed torch_dtype -> dtype; try both, then the plain constructor
            for kw in (dict(attn_implementation="sdpa", dtype=bf16), dict(attn_implementation="sdpa", torch_dtype=bf16),
                       dict(dtype=bf16), dict(torch_dtype=bf16)):
                try:
                    model = LlamaForCausalLM._from_config(cfg, **kw)
                    tried.append(f"_from_config({', '.join(kw)}) ok")
                    break
                except (TypeError, AttributeError) as e:
                    tried.append(f"_from_config({', '.join(kw)}): {e}")
            if model is None:
                model = LlamaForCausalLM(cfg)
                tried.append("LlamaForCausalLM(cfg) ok")
    finally:
        torch.set_default_dtype(old_default)
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        try:
            model.set_attn_implementation("sdpa")
        except Exception:
            try:
                model.config._attn_implementation = "sdpa"
            except Exception:
                pass
    # Explicit, seeded random init (whatever transformers did): N(0, 0.02) for linears/embeddings, ones for norms.
    gen = torch.Generator(device=DEV).manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.device.type != DEV.type or p.dtype != bf16:
                p.data = p.data.to(device=DEV, dtype=bf16)
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                m.weight.normal_(0.0, 0.02, generator=gen)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
            elif "RMSNorm" in type(m).__name__ and getattr(m, "weight", None) is not None:
                m.weight.fill_(1.0)
    return model, tried


def fake_quant_decoder_(model, bits, group):
    """Every nn.Linear inside the decoder layers (not lm_head/embeddings); returns (count, rel. error of the first)."""
    n, rel = 0, None
    for layer in model.model.layers:
        for name, m in layer.named_modules():
            if isinstance(m, torch.nn.Linear):
                if rel is None:
                    w0 = m.weight.detach().float().clone()
                rtn_fake_quant_(m.weight.data, bits, group)
                if rel is None:
                    rel = ((m.weight.float() - w0).norm() / w0.norm()).item()
                    del w0
                n += 1
        if DEV.type == "cuda":
            torch.cuda.empty_cache()
    return n, rel


# ---------------------------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--inter", type=int, default=11008)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=32)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--bits", type=int, default=2)
    ap.add_argument("--group", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--decode-runs", type=int, default=3, help="timed generate calls per variant (after 1 warmup)")
    ap.add_argument("--prompt", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tiny", action="store_true", help="hidden 256, inter 688, layers 4, heads 8, kv 4, vocab 2048, seq 256")
    ap.add_argument("--out", default=os.environ.get("OUT") or ".")
    ap.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    a = ap.parse_args()
    global DEV
    DEV = torch.device(a.device)
    if a.tiny:
        a.hidden, a.inter, a.layers, a.heads, a.kv_heads, a.vocab, a.seq = 256, 688, 4, 8, 4, 2048, 256
    os.makedirs(a.out, exist_ok=True)
    out_path = os.path.join(a.out, "torch_reference.json")

    R = {"args": vars(a), "env": {}, "model": {}, "train": {}, "decode": {}, "errors": {}}

    def save():
        try:
            with open(out_path, "w") as f:
                json.dump(R, f, indent=2, default=str)
        except Exception as e:
            log(f"could not write {out_path}: {e}")

    def attempt(key, fn):
        try:
            return fn()
        except Exception as e:
            R["errors"][key] = err_str(e)
            log(f"[{key}] FAILED: {type(e).__name__}: {e}")
            return None
        finally:
            save()

    # ---- environment
    def env():
        R["env"]["torch"] = torch.__version__
        R["env"]["cuda"] = torch.version.cuda
        R["env"]["gpu"] = torch.cuda.get_device_name(0) if DEV.type == "cuda" else str(DEV)
        R["env"]["python"] = sys.version.split()[0]
        import transformers
        R["env"]["transformers"] = transformers.__version__
        import peft
        R["env"]["peft"] = peft.__version__
    attempt("env", env)

    torch.manual_seed(a.seed)
    dev = DEV
    gen = torch.Generator(device=dev).manual_seed(a.seed + 1)
    ids = torch.randint(0, a.vocab, (1, a.seq), generator=gen, device=dev)
    prompt = torch.randint(0, a.vocab, (1, a.prompt), generator=gen, device=dev)
    st = {}  # objects shared between the phases

    # ---- model: random bf16 LLaMA, decoder linears fake-quantized (RTN W2 g64)
    def build():
        t0 = time.time()
        cfg = make_config(a)
        model, tried = build_model(cfg, a.seed)
        sync()
        R["model"]["build_s"] = time.time() - t0
        R["model"]["build_attempts"] = tried
        R["model"]["attn_implementation"] = getattr(model.config, "_attn_implementation", None)
        R["model"]["base_dtype"] = str(next(model.parameters()).dtype)
        R["model"]["params_base"] = sum(p.numel() for p in model.parameters())
        R["model"]["mem_after_build_gib"] = mem(torch.cuda.memory_allocated)
        t0 = time.time()
        n, rel = fake_quant_decoder_(model, a.bits, a.group)
        sync()
        R["model"]["fake_quant_s"] = time.time() - t0
        R["model"]["fake_quant_linears"] = n
        R["model"]["fake_quant_rel_err_first"] = rel
        R["model"]["mem_after_quant_gib"] = mem(torch.cuda.memory_allocated)
        log(f"model built ({R['model']['params_base'] / 1e9:.3f}B params, attn={R['model']['attn_implementation']}), "
            f"{n} linears fake-quantized W{a.bits} g{a.group} (rel err {rel})")
        st["model"] = model
    attempt("build", build)

    # ---- teacher hidden: the final post-norm hidden of the fake-quant model itself, before LoRA. RILQ's teacher is
    # the FP model; for timing/memory any fixed tensor of that shape is equivalent (this script measures only those).
    def teacher():
        model = st["model"]
        model.eval()
        with torch.no_grad():
            st["teacher"] = model.model(input_ids=ids, use_cache=False).last_hidden_state.detach().clone()
        sync()
        R["model"]["teacher_shape"] = list(st["teacher"].shape)
    if "model" in st:
        attempt("teacher", teacher)

    # ---- PEFT LoRA on all 7 projections + Adam
    def wrap():
        from peft import LoraConfig, get_peft_model
        cfg = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0, bias="none", target_modules=TARGETS,
                         init_lora_weights="gaussian", task_type="CAUSAL_LM")
        pm = get_peft_model(st["model"], cfg)
        st.pop("model")
        lora = [(n, p) for n, p in pm.named_parameters() if "lora_" in n]
        R["model"]["lora_dtype_from_peft"] = str(lora[0][1].dtype) if lora else None
        # PEFT's autocast_adapter_dtype keeps adapters fp32 on a bf16 base; enforce it if it did not
        for n, p in lora:
            if p.dtype != torch.float32:
                p.data = p.data.float()
        R["model"]["lora_dtype"] = str(lora[0][1].dtype) if lora else None
        R["model"]["lora_tensors"] = len(lora)
        R["model"]["params_trainable"] = sum(p.numel() for p in pm.parameters() if p.requires_grad)
        R["model"]["params_total_with_lora"] = sum(p.numel() for p in pm.parameters())
        R["model"]["peft_config"] = dict(r=a.rank, lora_alpha=a.alpha, lora_dropout=0.0, bias="none",
                                         target_modules=TARGETS, init_lora_weights="gaussian")
        st["pm"] = pm
        st["inner"] = pm.base_model.model  # LlamaForCausalLM with the LoRA layers injected
        log(f"PEFT: {len(lora)} LoRA tensors, {R['model']['params_trainable'] / 1e6:.2f}M trainable, "
            f"adapter dtype {R['model']['lora_dtype_from_peft']} -> {R['model']['lora_dtype']}")
    if "model" in st and "teacher" in st:
        attempt("peft", wrap)

    # ---- RILQ micro-steps
    def train():
        pm, inner, h_t = st["pm"], st["inner"], st["teacher"]
        pm.train()
        params = [p for p in pm.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=a.lr)
        st["opt"] = opt

        def micro_step():
            h = inner.model(input_ids=ids, use_cache=False).last_hidden_state
            mse = F.mse_loss(h.float(), h_t.float())
            logits = inner.lm_head(h).float()
            ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))
            loss = 0.5 * mse + 0.5 * ce
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss.detach(), mse.detach(), ce.detach()

        t0 = time.time()
        for _ in range(a.warmup):
            micro_step()
        sync()
        R["train"]["warmup_s"] = time.time() - t0
        reset_peak()
        times, last = [], None
        for _ in range(a.steps):
            if DEV.type == "cuda":
                e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                e0.record()
                last = micro_step()
                e1.record()
                e1.synchronize()
                times.append(e0.elapsed_time(e1))
            else:
                t1 = time.perf_counter()
                last = micro_step()
                times.append((time.perf_counter() - t1) * 1e3)
        sync()
        R["train"]["ms_all"] = times
        if times:
            R["train"]["ms_median"] = statistics.median(times)
            R["train"]["ms_min"] = min(times)
            R["train"]["tokens_per_s"] = a.seq / (statistics.median(times) / 1e3)
        R["train"]["peak_allocated_gib"] = mem(torch.cuda.max_memory_allocated)
        R["train"]["peak_reserved_gib"] = mem(torch.cuda.max_memory_reserved)
        if last is not None:
            R["train"]["last_loss"] = last[0].item()
            R["train"]["last_mse"] = last[1].item()
            R["train"]["last_ce"] = last[2].item()
        R["train"]["steps_timed"] = len(times)
        log(f"micro-step: median {R['train'].get('ms_median')} ms, min {R['train'].get('ms_min')} ms, "
            f"peak {R['train']['peak_allocated_gib']} GiB allocated / {R['train']['peak_reserved_gib']} reserved, "
            f"last loss {R['train'].get('last_loss')}")
    if "pm" in st:
        attempt("train", train)

    # ---- free the optimizer state and grads before decoding
    def free():
        st.pop("opt", None)
        st.pop("teacher", None)
        if "pm" in st:
            for p in st["pm"].parameters():
                p.grad = None
        if DEV.type == "cuda":
            torch.cuda.empty_cache()
        R["decode"]["mem_before_gib"] = mem(torch.cuda.memory_allocated)
    attempt("free", free)

    # ---- greedy decode, batch 1
    def decode(model, key):
        cfg = model.config
        eos = getattr(cfg, "eos_token_id", None)
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        pad = getattr(cfg, "pad_token_id", None)
        pad = pad if pad is not None else (eos if eos is not None else 0)
        kw = dict(input_ids=prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=a.decode_tokens,
                  min_new_tokens=a.decode_tokens, do_sample=False, use_cache=True, pad_token_id=pad)
        with torch.no_grad():
            model.generate(**kw)  # warmup
            sync()
            reset_peak()
            runs, new = [], None
            for _ in range(max(1, a.decode_runs)):
                sync()
                t0 = time.perf_counter()
                out = model.generate(**kw)
                sync()
                dt = time.perf_counter() - t0
                new = out.shape[1] - prompt.shape[1]
                runs.append(new / dt)
        res = {"new_tokens": new, "tokens_per_s_all": runs, "tokens_per_s": statistics.median(runs),
               "tokens_per_s_best": max(runs), "ms_per_token": 1e3 / statistics.median(runs),
               "peak_allocated_gib": mem(torch.cuda.max_memory_allocated)}
        R["decode"][key] = res
        log(f"decode [{key}]: {res['tokens_per_s']:.2f} tok/s (best {res['tokens_per_s_best']:.2f}), {new} new tokens")

    if "pm" in st:
        pm = st["pm"]
        pm.eval()
        attempt("decode_peft_adapter", lambda: decode(pm, "peft_adapter"))

        def no_adapter():
            with pm.disable_adapter():
                decode(pm, "peft_adapter_disabled")
        attempt("decode_peft_adapter_disabled", no_adapter)

        def plain():  # last: removes the LoRA layers, leaving the plain transformers LlamaForCausalLM
            base = pm.base_model.unload()
            base.eval()
            decode(base, "plain_transformers")
        attempt("decode_plain_transformers", plain)

    # ---- summary
    m, t, d = R["model"], R["train"], R["decode"]
    print(f"torch {R['env'].get('torch')} / transformers {R['env'].get('transformers')} / peft {R['env'].get('peft')} "
          f"on {R['env'].get('gpu')}")
    print(f"shape: hidden {a.hidden} inter {a.inter} layers {a.layers} heads {a.heads}/{a.kv_heads} vocab {a.vocab}; "
          f"base params {m.get('params_base')}, trainable {m.get('params_trainable')} ({m.get('lora_dtype')}), "
          f"attn {m.get('attn_implementation')}")
    print(f"RILQ micro-step 1x{a.seq}: median {t.get('ms_median')} ms, min {t.get('ms_min')} ms, "
          f"peak {t.get('peak_allocated_gib')} GiB alloc / {t.get('peak_reserved_gib')} GiB reserved, "
          f"last loss {t.get('last_loss')}")
    for k in ("peft_adapter", "peft_adapter_disabled", "plain_transformers"):
        if k in d:
            print(f"decode {k}: {d[k]['tokens_per_s']:.2f} tok/s")
    if R["errors"]:
        print(f"errors in: {', '.join(R['errors'])}")
    print(f"wrote {out_path}")
    save()


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
    sys.exit(0)
