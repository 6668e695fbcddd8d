#!/usr/bin/env python3
"""Time to target on mnist-mlp: PyTorch (CPU) against `optimist train`.

Both train the same workload: MNIST, first 50,000 training images train,
the last 10,000 validate; pixels/255 normalised with mean 0.1307 and std
0.3081; a 784-128-10 MLP with sigmoid hidden units and torch's default
initialisation; cross-entropy; batch 128 from a fresh shuffle every epoch;
AdamW (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01); the
validation accuracy is evaluated every 250 steps and the run stops at the
first evaluation with accuracy >= 0.97. The clock runs only while training
(batch assembly, forward, backward, update), as in AlgoPerf; evaluations
are not timed. Both use the same number of compute threads.

The two runs draw different initial weights and data orders (different
generators), so steps to target can differ by an evaluation interval or
two; the time per training step is the like-for-like number.

Usage (from the repository root, after `cargo build --release`):

    python3 tools/torch_mnist_speed.py --data-dir ../shared/data --threads 1
"""

import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import time


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = struct.unpack(">I", raw[:4])[0]
    nd = magic & 0xFF
    dims = struct.unpack(">" + "I" * nd, raw[4 : 4 + 4 * nd])
    return dims, raw[4 + 4 * nd :]


def torch_run(args):
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    d = os.path.join(args.data_dir, "mnist")
    (n, r, c), img = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
    _, lab = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
    x = torch.frombuffer(bytearray(img), dtype=torch.uint8).reshape(n, r * c).float() / 255.0
    x = (x - 0.1307) / 0.3081
    y = torch.frombuffer(bytearray(lab), dtype=torch.uint8).long()
    xt, yt, xv, yv = x[:50000], y[:50000], x[50000:], y[50000:]
    model = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.Sigmoid(), torch.nn.Linear(128, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    bs, eval_every = 128, 250
    train_time, step, reached = 0.0, 0, None
    perm, cursor = None, len(xt)
    while step < args.steps:
        t0 = time.perf_counter()
        if cursor + bs > len(xt):
            perm, cursor = torch.randperm(len(xt)), 0
        idx = perm[cursor : cursor + bs]
        cursor += bs
        xb, yb = xt[idx], yt[idx]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        train_time += time.perf_counter() - t0
        step += 1
        if step % eval_every == 0:
            with torch.no_grad():
                acc = (model(xv).argmax(1) == yv).float().mean().item()
            if acc >= 0.97:
                reached = (step, train_time)
                break
    return {"steps": step, "train_time": train_time, "reached": reached}


def optimist_run(args):
    cmd = [
        args.optimist, "train", "--workload", "mnist-mlp", "--optimizer", "adamw",
        "--threads", str(args.threads), "--seed", str(args.seed), "--steps", str(args.steps),
        "--data-dir", args.data_dir, "--stop-at-target", "--quiet", "--json",
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    reached = (r["steps_to_target"], r["time_to_target"]) if r["steps_to_target"] is not None else None
    return {"steps": r["steps"], "train_time": r["train_time"], "reached": reached}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("OPTIMIST_DATA_DIR", "data"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--optimist", default=os.path.join("target", "release", "optimist"))
    args = p.parse_args()
    if not os.path.exists(args.optimist):
        sys.exit(f"{args.optimist} not found: run `cargo build --release` first")
    rows = [("pytorch", torch_run(args)), ("optimist", optimist_run(args))]
    print(f"mnist-mlp to validation accuracy 0.97, AdamW lr 1e-3, batch 128, {args.threads} thread(s)")
    print(f"{'':<10} {'steps':>7} {'time to target (s)':>19} {'ms/step':>9}")
    for name, r in rows:
        per = 1e3 * r["train_time"] / max(r["steps"], 1)
        if r["reached"]:
            print(f"{name:<10} {r['reached'][0]:>7} {r['reached'][1]:>19.2f} {per:>9.3f}")
        else:
            print(f"{name:<10} {'-':>7} {'not reached':>19} {per:>9.3f}")
    (_, t), (_, o) = rows
    if t["reached"] and o["reached"]:
        print(f"time to target, optimist / pytorch: {o['reached'][1] / t['reached'][1]:.2f}")
    print(
        "time per step, optimist / pytorch: "
        f"{(o['train_time'] / max(o['steps'], 1)) / (t['train_time'] / max(t['steps'], 1)):.2f}"
    )


if __name__ == "__main__":
    main()
