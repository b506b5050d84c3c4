#!/usr/bin/env python3
"""PyTorch side of bench/cuda-gemm.mjs: torch.matmul on bf16 CUDA tensors, same shapes, transposes and
timing method (warmup, then back-to-back calls with a CUDA event between each, median per call).
Usage: python3 bench/cuda_gemm_torch.py --json torch.json"""
import argparse
import json
import statistics

import torch

# Same list as SHAPES in bench/cuda-gemm.mjs (names must match for the report).
SHAPES = [
    ("square 4096", 4096, 4096, 4096, False, False),
    ("square 8192", 8192, 8192, 8192, False, False),
    ("LLaMA-7B q/k/v/o: 512 x (4096x4096)ᵀ", 512, 4096, 4096, False, True),
    ("LLaMA-7B gate/up: 512 x (11008x4096)ᵀ", 512, 11008, 4096, False, True),
    ("LLaMA-7B down: 512 x (4096x11008)ᵀ", 512, 4096, 11008, False, True),
]
ITERS = 100


def time_matmul(a, b, out, iters):
    for _ in range(max(3, iters // 4)):
        torch.matmul(a, b, out=out)
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(iters + 1)]
    ev[0].record()
    for i in range(iters):
        torch.matmul(a, b, out=out)
        ev[i + 1].record()
    torch.cuda.synchronize()
    return statistics.median(ev[i].elapsed_time(ev[i + 1]) for i in range(iters))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default="cuda-gemm-torch.json")
    args = ap.parse_args()
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    results = []
    for name, M, N, K, ta, tb in SHAPES:
        # Physical layouts as in lowbit: A stored [K,M] when transposed, B stored [N,K] when transposed.
        A = torch.rand((K, M) if ta else (M, K), generator=g, device=dev).mul_(2).sub_(1).to(torch.bfloat16)
        B = torch.rand((N, K) if tb else (K, N), generator=g, device=dev).mul_(2).sub_(1).to(torch.bfloat16)
        a = A.t() if ta else A
        b = B.t() if tb else B
        out = torch.empty((M, N), dtype=torch.bfloat16, device=dev)
        runs = sorted(time_matmul(a, b, out, ITERS) for _ in range(3))
        ms = runs[1]
        tflops = 2 * M * N * K / (ms * 1e-3) / 1e12
        results.append(dict(name=name, M=M, N=N, K=K, ta=ta, tb=tb, ms=ms, tflops=tflops))
        print(f"{name:40s} {ms:.4f} ms  {tflops:.1f} TFLOP/s", flush=True)
    with open(args.json, "w") as f:
        json.dump(dict(torch=torch.__version__, cuda=torch.version.cuda, device=torch.cuda.get_device_name(0),
                       results=results), f, indent=2)


if __name__ == "__main__":
    main()
