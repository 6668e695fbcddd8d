#!/usr/bin/env python3
"""Time `optimist bench step` of two builds side by side, alternating them.

Each round runs every optimizer once with binary A, then once with binary B
(the order flips every round, so drift in the host's bandwidth or load hits
both alike). The report gives, per optimizer, the median over rounds of each
binary's per-step median and the ratio B/A (below 1: B is faster).

Example (an old build against the current one):

    python3 tools/bench_ab.py --a old/optimist --b target/release/optimist \
        --optimizers adamw,lamb,adafactor,muon --rounds 7
"""
import argparse
import json
import statistics
import subprocess
import sys

# Per optimizer: extra `bench step` flags. Matrices (dims 2) so that
# Adafactor factors its second moment and Muon orthogonalizes.
DEFAULT_CASES = {
    "adamw": ["--params", "10000000", "--tensors", "10", "--dims", "2"],
    "lamb": ["--params", "10000000", "--tensors", "10", "--dims", "2"],
    "adafactor": ["--params", "10000000", "--tensors", "10", "--dims", "2"],
    "muon": ["--params", "2000000", "--tensors", "8", "--dims", "2", "--repeats", "5"],
}


def run(binary, name, extra, threads):
    cmd = [binary, "bench", "step", "--optimizer", name, "--threads", str(threads)] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return rows[-1]["seconds_median"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--a", required=True, help="first optimist binary (the baseline)")
    p.add_argument("--b", required=True, help="second optimist binary")
    p.add_argument("--optimizers", default=",".join(DEFAULT_CASES), help="comma-separated registry names")
    p.add_argument("--rounds", type=int, default=7, help="alternations of A and B (default 7)")
    p.add_argument("--threads", type=int, default=2, help="threads per step (default 2)")
    p.add_argument("--json", help="also write the raw timings here")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    names = [n for n in args.optimizers.split(",") if n]
    times = {n: {"a": [], "b": []} for n in names}
    for r in range(args.rounds):
        order = ("a", "b") if r % 2 == 0 else ("b", "a")
        for n in names:
            extra = DEFAULT_CASES.get(n, ["--params", "10000000", "--tensors", "10", "--dims", "2"])
            for which in order:
                times[n][which].append(run(getattr(args, which), n, extra, args.threads))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"{'optimizer':<12} {'A ms':>9} {'B ms':>9} {'B/A':>6}")
    for n in names:
        a = statistics.median(times[n]["a"]) * 1e3
        b = statistics.median(times[n]["b"]) * 1e3
        print(f"{n:<12} {a:9.3f} {b:9.3f} {b / a:6.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"a": args.a, "b": args.b, "threads": args.threads, "seconds": times}, f, indent=1)


if __name__ == "__main__":
    main()
