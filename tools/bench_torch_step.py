#!/usr/bin/env python3
"""Time one optimizer step on CPU tensors, side by side in one process:
optimist.torch against torch.optim (fused where torch has a fused CPU kernel,
foreach otherwise) and pytorch-optimizer, and against `optimist bench step`
(the same step without Python) for the Python-side overhead.

    python3 tools/bench_torch_step.py --threads 2            # full table (docs/pytorch.md)
    python3 tools/bench_torch_step.py --sizes 10M --optimizers adamw,lion --repeats 5

Sizes: `10M` (10 tensors of 1M), `100M` (10 tensors of 10M), `10Mx1000`
(1000 tensors of 10k), as `optimist bench step --params P --tensors T`
(vectors; near-square matrices for adafactor and muon). Every optimizer
runs with its defaults and lr 1e-3. Reports the median seconds per step
after warm-up and each ratio (other / optimist; above 1 means optimist is
faster); prints a markdown table and, with --json, writes the raw numbers.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SIZES = {"10M": (10_000_000, 10), "100M": (100_000_000, 10), "10Mx1000": (10_000_000, 1000)}
ALL = ["adamw", "lion", "lamb", "adafactor", "radam", "nadam", "adabelief", "muon"]
MATRIX = {"adafactor", "muon"}


def shapes(total, tensors, dims):
    base, extra = divmod(total, tensors)
    out = []
    for i in range(tensors):
        n = base + (1 if i < extra else 0)
        if dims == 1:
            out.append((n,))
        else:
            r = max(1, int(math.isqrt(n)))
            out.append((r, n // r))
    return out


def make(total, tensors, dims, seed=0):
    g = torch.Generator().manual_seed(seed)
    ps = []
    for s in shapes(total, tensors, dims):
        p = torch.nn.Parameter(torch.randn(s, generator=g) * 0.1)
        p.grad = torch.randn(s, generator=g) * 0.01
        ps.append(p)
    return ps


def torch_ref(name, ps):
    """torch.optim's class: fused where it has a fused CPU kernel, else foreach."""
    if name == "adamw":
        return torch.optim.AdamW(ps, lr=1e-3, fused=True), "torch fused"
    cls = {"radam": torch.optim.RAdam, "nadam": torch.optim.NAdam, "adafactor": torch.optim.Adafactor,
           "muon": getattr(torch.optim, "Muon", None)}.get(name)
    if cls is None:
        return None, None
    if name == "muon":
        return cls(ps, lr=1e-3), "torch"
    return cls(ps, lr=1e-3, foreach=True), "torch foreach"


def po_ref(name, ps):
    try:
        import pytorch_optimizer as po
    except ImportError:
        return None, None
    cls = {"adamw": None, "lion": po.Lion, "lamb": po.Lamb, "adabelief": po.AdaBelief,
           "radam": None, "nadam": None, "adafactor": None, "muon": None}.get(name)
    if cls is None:
        return None, None
    return cls(ps, lr=1e-3), "pytorch-optimizer"


def timed(opt, warmup, repeats):
    for _ in range(warmup):
        opt.step()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        opt.step()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def cli_step(binary, name, total, tensors, dims, threads, warmup, repeats):
    cmd = [binary, "bench", "step", "--optimizer", name, "--hparams", json.dumps({"lr": 1e-3}),
           "--params", str(total), "--tensors", str(tensors), "--dims", str(dims),
           "--threads", str(threads), "--repeats", str(repeats), "--warmup", str(warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["seconds_median"]


def deepspeed_adam(ps):
    try:
        from deepspeed.ops.adam import DeepSpeedCPUAdam
        return DeepSpeedCPUAdam(ps, lr=1e-3, adamw_mode=True), None
    except Exception as e:  # noqa: BLE001 - reported verbatim
        msg = f"{type(e).__name__}: {e}".strip().splitlines()
        return None, (msg[-1] if msg else type(e).__name__)[:300]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="10M,100M,10Mx1000")
    ap.add_argument("--optimizers", default=",".join(ALL))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--muon-repeats", type=int, default=2, help="repeats for muon (Newton-Schulz is compute bound)")
    ap.add_argument("--cli", default=os.path.join(ROOT, "target", "release", "optimist"),
                    help="the optimist binary for `optimist bench step` (skipped if absent)")
    ap.add_argument("--deepspeed", action="store_true", help="also time DeepSpeedCPUAdam beside AdamW")
    ap.add_argument("--json", help="write the raw numbers here")
    args = ap.parse_args()

    import optimist.torch as ot

    torch.set_num_threads(args.threads)
    rows = []
    ds_error = None
    for size in args.sizes.split(","):
        total, tensors = SIZES[size]
        for name in args.optimizers.split(","):
            dims = 2 if name in MATRIX else 1
            reps = args.muon_repeats if name == "muon" else args.repeats
            warm = 1 if name == "muon" else args.warmup
            if name == "muon" and size == "100M":
                continue  # Newton-Schulz on 10 matrices of 10M: minutes per step on 2 cores
            row = {"size": size, "optimizer": name, "params": total, "tensors": tensors, "dims": dims}
            ps = make(total, tensors, dims)
            row["optimist"] = timed(ot.CLASSES[name](ps, lr=1e-3, threads=args.threads), warm, reps)
            del ps
            for key, build in (("torch", torch_ref), ("pytorch_optimizer", po_ref)):
                ps = make(total, tensors, dims)
                opt, label = build(name, ps)
                if opt is not None:
                    row[key] = timed(opt, warm, reps)
                    row[key + "_label"] = label
                del ps, opt
            if name == "adamw" and args.deepspeed:
                ps = make(total, tensors, dims)
                opt, err = deepspeed_adam(ps)
                if opt is not None:
                    row["deepspeed"] = timed(opt, warm, reps)
                else:
                    ds_error = err
                del ps, opt
            if os.path.exists(args.cli):
                row["cli"] = cli_step(args.cli, name, total, tensors, dims, args.threads, warm, reps)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)

    def ms(x):
        return f"{x * 1e3:.1f}" if x is not None else "-"

    def ratio(a, b):
        return f"{a / b:.2f}x" if a is not None and b else "-"

    print(f"threads {args.threads}, torch {torch.__version__}, median of {args.repeats} steps "
          f"(muon {args.muon_repeats}); ratio = other / optimist.torch (above 1: optimist faster)\n")
    head = ("| size | optimizer | optimist.torch ms | optimist bench step ms | overhead | torch.optim ms "
            "| ratio | pytorch-optimizer ms | ratio |")
    print(head)
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        o = r["optimist"]
        t = r.get("torch")
        p = r.get("pytorch_optimizer")
        c = r.get("cli")
        over = f"{(o / c - 1) * 100:+.1f}%" if c else "-"
        tl = f"{ms(t)} ({r['torch_label']})" if t is not None else "-"
        print(f"| {r['size']} | {r['optimizer']} | {ms(o)} | {ms(c)} | {over} | {tl} | {ratio(t, o)} "
              f"| {ms(p)} | {ratio(p, o)} |")
    if args.deepspeed:
        for r in rows:
            if "deepspeed" in r:
                print(f"\nDeepSpeedCPUAdam {r['size']}: {ms(r['deepspeed'])} ms "
                      f"({ratio(r['deepspeed'], r['optimist'])} of optimist AdamW)")
        if ds_error:
            print(f"\nDeepSpeedCPUAdam could not be built here: {ds_error}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "rows": rows, "deepspeed_error": ds_error}, f, indent=1)


if __name__ == "__main__":
    main()
