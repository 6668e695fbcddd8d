#!/usr/bin/env python3
"""Side-by-side optimizer step times: PyTorch, pytorch-optimizer and optimist.

Runs the same cases (parameter count, tensor count, thread count) with
torch.optim (fused, foreach and for-loop AdamW; SGD with momentum; RAdam;
NAdam; Adafactor; Muon), pytorch-optimizer (Lion, AdaBelief, LAMB) and
`optimist bench step`, alternating between them round by round so that a
change in machine load hits all of them alike, and prints a Markdown table
with the median time per step, the effective bandwidth and the ratio
(reference time / optimist time; > 1 means optimist is faster).

Effective GB/s uses optimist's byte count per parameter for every
implementation of an optimizer: 12 bytes (read p and g, write p) plus twice
the optimizer's state bytes (read and write), or, for the rules that pass
over the memory twice (PATTERNS below), their whole traffic; see
docs/performance.md.
Optimizers that optimist does not have are measured on the reference side
and reported as "not implemented".

Needs torch and pytorch-optimizer (`pip install torch pytorch-optimizer`)
and a release build (`cargo build --release`). Example:

    python3 tools/bench_vs_torch.py --threads 2 --rounds 3
    python3 tools/bench_vs_torch.py --cases 10M --only adamw,sgd
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

CASES = {
    "10M": [10_000_000],
    "100M": [100_000_000],
    "10Mx1000": [10_000] * 1000,
}

MUON_CASE = ("10x1024x1024", [1024 * 1024] * 10)

# The whole memory traffic (f32 arrays read, written per parameter) of the
# rules that pass over the memory more than once, for `bench step
# --pattern`: their "optimist / bandwidth" is against the same-run
# bandwidth of that traffic (docs/performance.md, Benchmarks).
PATTERNS = {"mars": "7,4", "prodigy": "8,5"}


def shape_of(n, dims):
    """Same rule as `optimist bench step --dims 2`: near-square matrices."""
    if dims < 2:
        return (n,)
    rows = int(math.isqrt(n))
    while rows > 1 and n % rows != 0:
        rows -= 1
    return (rows, n // rows)


def optimizers(torch, po):
    """(key, label, optimist name, optimist hparams, torch factory, dims, state bytes/param)."""
    o = torch.optim
    out = [
        ("adamw", "AdamW", "adamw", {}, {
            "torch fused": lambda ps: o.AdamW(ps, fused=True),
            "torch foreach": lambda ps: o.AdamW(ps, foreach=True),
            "torch for-loop": lambda ps: o.AdamW(ps, foreach=False),
        }, 1, 8),
        ("sgd", "SGD momentum 0.9", "sgd", {"lr": 1e-3, "momentum": 0.9}, {
            "torch foreach": lambda ps: o.SGD(ps, lr=1e-3, momentum=0.9, foreach=True),
            "torch fused": lambda ps: o.SGD(ps, lr=1e-3, momentum=0.9, fused=True),
        }, 1, 4),
        ("radam", "RAdam", "radam", {}, {
            "torch foreach": lambda ps: o.RAdam(ps, foreach=True),
        }, 1, 8),
        ("nadam", "NAdam", "nadam", {}, {
            "torch foreach": lambda ps: o.NAdam(ps, foreach=True),
        }, 1, 8),
        ("adafactor", "Adafactor (matrices)", "adafactor", {}, {
            "torch": lambda ps: o.Adafactor(ps),
        }, 2, 0),
    ]
    if po is not None:
        out += [
            ("lion", "Lion", "lion", {}, {"pytorch-optimizer": lambda ps: po.Lion(ps)}, 1, 4),
            ("adabelief", "AdaBelief", "adabelief", {}, {"pytorch-optimizer": lambda ps: po.AdaBelief(ps)}, 1, 8),
            ("lamb", "LAMB", "lamb", {}, {"pytorch-optimizer": lambda ps: po.Lamb(ps)}, 1, 8),
            # Adam family (pytorch-optimizer 4.1.0, default foreach path)
            ("adopt", "ADOPT", "adopt", {}, {"pytorch-optimizer": lambda ps: po.ADOPT(ps)}, 1, 8),
            ("ademamix", "AdEMAMix", "ademamix", {}, {"pytorch-optimizer": lambda ps: po.AdEMAMix(ps)}, 1, 12),
            ("mars", "MARS (matrices)", "mars", {}, {"pytorch-optimizer": lambda ps: po.MARS(ps)}, 2, 12),
            ("adan", "Adan", "adan", {}, {"pytorch-optimizer": lambda ps: po.Adan(ps)}, 1, 16),
            ("prodigy", "Prodigy", "prodigy", {}, {"pytorch-optimizer": lambda ps: po.Prodigy(ps)}, 1, 16),
        ]
    return out


def torch_time(torch, factory, sizes, dims, warmup, repeats):
    """Median seconds per step of a torch optimizer (fresh parameters and state)."""
    gen = torch.Generator().manual_seed(0)
    ps = []
    for n in sizes:
        p = torch.nn.Parameter(torch.randn(shape_of(n, dims), generator=gen) * 0.1)
        p.grad = torch.randn(p.shape, generator=gen) * 0.01
        ps.append(p)
    opt = factory(ps)
    with torch.no_grad():
        for _ in range(warmup):
            opt.step()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            opt.step()
            times.append(time.perf_counter() - t0)
    del opt, ps
    return statistics.median(times)


def optimist_time(binary, name, hparams, sizes, dims, threads, warmup, repeats):
    """Runs `optimist bench step`; returns its JSON line."""
    n = sum(sizes)
    cmd = [
        binary, "bench", "step", "--optimizer", name, "--hparams", json.dumps(hparams),
        "--params", str(n), "--tensors", str(len(sizes)), "--dims", str(dims),
        "--threads", str(threads), "--warmup", str(warmup), "--repeats", str(repeats),
        "--bandwidth",
    ]
    if name in PATTERNS:
        cmd += ["--pattern", PATTERNS[name]]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def fmt_ms(s):
    return "—" if s is None else f"{s * 1e3:.2f}"


def fmt_gbps(bytes_per_param, n, s):
    return "—" if s is None else f"{bytes_per_param * n / s / 1e9:.1f}"


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--optimist", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "optimist"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median over rounds is reported")
    ap.add_argument("--repeats", type=int, default=10, help="timed steps per round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--cases", default="10M,100M,10Mx1000,muon")
    ap.add_argument("--only", default="", help="comma-separated optimizer keys (adamw,sgd,radam,nadam,adafactor,lion,adabelief,lamb,muon,adopt,ademamix,mars,adan,prodigy,soap,kron,shampoo)")
    ap.add_argument("--json", default="", help="also write every measurement to this JSON-lines file")
    args = ap.parse_args()

    import torch
    try:
        import pytorch_optimizer as po
    except ImportError:
        po = None
        print("pytorch-optimizer not installed: Lion, AdaBelief and LAMB skipped", file=sys.stderr)
    torch.set_num_threads(args.threads)
    os.environ["OPTIMIST_NUM_THREADS"] = str(args.threads)

    listing = json.loads(subprocess.run([args.optimist, "list", "--json"], capture_output=True, text=True, check=True).stdout)
    have = {o["name"] for o in listing}
    only = {s for s in args.only.split(",") if s}
    cases = [c for c in args.cases.split(",") if c]
    log = open(args.json, "w") if args.json else None

    print(f"CPU: {cpu_model()}; threads: {args.threads}; torch {torch.__version__}"
          + (f"; pytorch-optimizer {po.__version__}" if po is not None and hasattr(po, "__version__") else ""))
    print()
    print("| case | optimizer | reference | ref ms/step | ref GB/s | optimist ms/step | optimist GB/s | optimist / bandwidth | speedup |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")

    def run_case(case_name, sizes, entries):
        n = sum(sizes)
        for key, label, oname, ohp, refs, dims, state_bytes in entries:
            if only and key not in only:
                continue
            bpp = 12 + 2 * state_bytes
            ref_times = {r: [] for r in refs}
            opt_runs = []
            failed = {}
            for _ in range(args.rounds):
                for rname, factory in refs.items():
                    if rname in failed:
                        continue
                    try:
                        ref_times[rname].append(torch_time(torch, factory, sizes, dims, args.warmup, args.repeats))
                    except Exception as e:  # an unsupported variant (e.g. fused on this build)
                        failed[rname] = str(e).splitlines()[0][:80]
                if oname in have:
                    opt_runs.append(optimist_time(args.optimist, oname, ohp, sizes, dims, args.threads, args.warmup, args.repeats))
            o_s = statistics.median(r["seconds_median"] for r in opt_runs) if opt_runs else None
            o_bpp = opt_runs[0]["bytes_per_param"] if opt_runs else bpp
            frac = statistics.median(r["fraction_of_bandwidth"] for r in opt_runs) if opt_runs else None
            for rname in refs:
                if rname in failed:
                    o_cells = ("not implemented | — | —" if o_s is None
                               else f"{fmt_ms(o_s)} | {fmt_gbps(o_bpp, n, o_s)} | {frac:.0%}")
                    print(f"| {case_name} | {label} | {rname} | failed: {failed[rname]} | — | {o_cells} | — |")
                    continue
                r_s = statistics.median(ref_times[rname])
                if o_s is None:
                    o_cells = "not implemented | — | — | —"
                else:
                    o_cells = f"{fmt_ms(o_s)} | {fmt_gbps(o_bpp, n, o_s)} | {frac:.0%} | {r_s / o_s:.2f}x"
                print(f"| {case_name} | {label} | {rname} | {fmt_ms(r_s)} | {fmt_gbps(o_bpp, n, r_s)} | {o_cells} |", flush=True)
                if log:
                    log.write(json.dumps({"case": case_name, "optimizer": key, "reference": rname,
                                          "ref_seconds": ref_times[rname], "optimist": opt_runs}) + "\n")
                    log.flush()

    all_opts = optimizers(torch, po)
    for c in cases:
        if c == "muon":
            ref = {"torch": lambda ps: torch.optim.Muon(ps)}
            # optimist's default f32 products (the replay contract) and its
            # bf16 products (ns_dtype), the precision torch uses.
            muon = [("muon", "Muon", "muon", {}, ref, 2, 4),
                    ("muon", "Muon, ns_dtype bfloat16", "muon", {"ns_dtype": "bfloat16"}, ref, 2, 4)]
            run_case(MUON_CASE[0], MUON_CASE[1], muon)
        elif c == "matrix":
            # The preconditioned rules at ten 1024x1024 matrices (pytorch-optimizer's
            # defaults on both sides; the byte count is p, g and p again only).
            entries = [("soap", "SOAP", "soap", {}, {"pytorch-optimizer": lambda ps: po.SOAP(ps)}, 2, 0),
                       ("kron", "PSGD-Kron", "kron", {}, {"pytorch-optimizer": lambda ps: po.Kron(ps)}, 2, 0),
                       ("shampoo", "Shampoo", "shampoo", {}, {"pytorch-optimizer": lambda ps: po.Shampoo(ps)}, 2, 0)]
            if po is None:
                sys.exit("the matrix case needs pytorch-optimizer")
            run_case(MUON_CASE[0], MUON_CASE[1], entries)
        elif c in CASES:
            run_case(c, CASES[c], all_opts)
        else:
            sys.exit(f"unknown case {c!r} (known: {', '.join(CASES)}, muon, matrix)")
    if log:
        log.close()


if __name__ == "__main__":
    main()
