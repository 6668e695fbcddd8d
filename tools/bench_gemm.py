#!/usr/bin/env python3
"""Side-by-side matrix products: optimist's GEMM and torch.matmul.

Times `optimist bench gemm` (the GEMM behind the Muon family's
Newton-Schulz iteration) and `torch.matmul` on the same shapes, in f32 and
bf16, at each thread count, alternating between them round by round so that
a change in machine load hits both alike, and prints a Markdown table of
the median GFLOP/s (2 m k n flops per product) and the ratio optimist /
torch (> 1 means optimist is faster).

The bf16 rows compare different things on purpose: torch.matmul on bf16
tensors rounds its output to bf16 (oneDNN, AMX where the CPU has it);
optimist rounds the f32 inputs to bf16 inside the product and returns f32
(the precision of Muon's `ns_dtype = "bfloat16"`). The conversion of the
inputs is part of optimist's time and not of torch's.

Needs torch and a release build (`cargo build --release -p optimist-cli`).

    python3 tools/bench_gemm.py
    python3 tools/bench_gemm.py --shapes 1024x1024x1024 --threads 2 --rounds 5
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def torch_gflops(torch, m, k, n, dtype, threads, warmup, repeats):
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    a = (torch.rand(m, k, generator=gen) * 2 - 1).to(dtype)
    b = ((torch.rand(k, n, generator=gen) * 2 - 1) / k ** 0.5).to(dtype)
    c = torch.empty(m, n, dtype=dtype)
    for _ in range(warmup):
        torch.matmul(a, b, out=c)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return 2.0 * m * k * n / statistics.median(times) / 1e9


def optimist_run(binary, shape, prec, threads, warmup, repeats):
    cmd = [binary, "bench", "gemm", "--shapes", shape, "--precisions", prec,
           "--threads", str(threads), "--warmup", str(warmup), "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    fl = set(line.split(":", 1)[1].split())
                    return [x for x in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if x in fl]
    except OSError:
        pass
    return []


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--optimist", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "optimist"))
    ap.add_argument("--shapes", default="1024x1024x1024,4096x1024x1024", help="MxKxN, comma-separated")
    ap.add_argument("--precisions", default="f32,bf16")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median over rounds is reported")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("torch is not installed (pip install torch)")
    if not os.path.exists(args.optimist):
        sys.exit(f"{args.optimist} not found: cargo build --release -p optimist-cli")

    dtypes = {"f32": torch.float32, "bf16": torch.bfloat16}
    rows = []
    for shape in args.shapes.split(","):
        m, k, n = (int(x) for x in shape.split("x"))
        for prec in args.precisions.split(","):
            for threads in (int(t) for t in args.threads.split(",")):
                ours, theirs, kernel = [], [], ""
                for _ in range(args.rounds):
                    r = optimist_run(args.optimist, shape, prec, threads, args.warmup, args.repeats)
                    ours.append(r["gflops"])
                    kernel = r["kernel"]
                    theirs.append(torch_gflops(torch, m, k, n, dtypes[prec], threads, args.warmup, args.repeats))
                o, t = statistics.median(ours), statistics.median(theirs)
                rows.append((shape, prec, threads, kernel, o, t))
                print(f"{shape} {prec} {threads}t: optimist {o:.0f} ({kernel}), torch {t:.0f} GFLOP/s",
                      file=sys.stderr, flush=True)

    print(f"CPU: {cpu_model()} ({', '.join(cpu_flags())}); torch {torch.__version__}; "
          f"{args.rounds} rounds x {args.repeats} products, median")
    print()
    print("| M x K x N | inputs | threads | optimist kernel | optimist GFLOP/s | torch.matmul GFLOP/s | optimist / torch |")
    print("|---|---|---|---|---|---|---|")
    for shape, prec, threads, kernel, o, t in rows:
        print(f"| {shape} | {prec} | {threads} | {kernel} | {o:.0f} | {t:.0f} | {o / t:.2f} |")


if __name__ == "__main__":
    main()
