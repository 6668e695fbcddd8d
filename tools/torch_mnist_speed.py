#!/usr/bin/env python3
"""Time to target and time per training step: PyTorch (CPU) against `optimist train`.

Both train the same workload with the same model, batch, data split and
AdamW (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0.01), evaluate
every 250 steps and stop at the first evaluation that reaches the target.
The clock runs only while training (batch assembly, forward, backward,
update), as in AlgoPerf; evaluations are not timed. Both use the same
number of compute threads. `--workload`:

- `mnist-mlp` (default): MNIST, first 50,000 training images train, the
  last 10,000 validate; pixels/255 normalised with mean 0.1307 and std
  0.3081; a 784-128-10 MLP with sigmoid hidden units; batch 128 from a
  fresh shuffle every epoch; target validation accuracy 0.97.
- `fashion-cnn`: Fashion-MNIST, same split, mean 0.2860 and std 0.3530;
  conv 5x5x8 (padding 2), ReLU, max-pool 2, conv 5x5x16, ReLU, max-pool 2,
  dense 64, ReLU, dense 10; batch 128; target validation accuracy 0.895.
- `shakespeare-char`: Tiny Shakespeare bytes, the first 90% train, the
  rest validates; a character GPT (token and position embeddings N(0,
  0.02), two pre-norm blocks of 4-head causal attention and a 4x GELU
  (tanh) MLP, d = 64, context 64, final LayerNorm, linear head); batch 32
  windows at uniformly drawn starts; validation loss over 512 evenly
  spaced windows; target 1.85.

Linear and convolution layers use torch's default initialisation in both.
The runs draw different initial weights and data orders (different
generators), so steps to target can differ by an evaluation interval or
two; the time per training step is the like-for-like number.

Usage (from the repository root, after `cargo build --release`):

    python3 tools/torch_mnist_speed.py --data-dir ../shared/data --threads 1
    python3 tools/torch_mnist_speed.py --workload fashion-cnn --threads 2
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


TARGETS = {
    # workload: (metric, target, higher is better, default step budget)
    "mnist-mlp": ("accuracy", 0.97, True, 8000),
    "fashion-cnn": ("accuracy", 0.895, True, 8000),
    "shakespeare-char": ("valid_loss", 1.85, False, 4000),
}


def image_data(args, torch, folder, mean, std):
    d = os.path.join(args.data_dir, folder)
    (n, r, c), img = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
    _, lab = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
    x = torch.frombuffer(bytearray(img), dtype=torch.uint8).reshape(n, r * c).float() / 255.0
    x = (x - mean) / std
    y = torch.frombuffer(bytearray(lab), dtype=torch.uint8).long()
    return x[:50000], y[:50000], x[50000:], y[50000:]


def image_task(args, torch):
    nn = torch.nn
    if args.workload == "mnist-mlp":
        xt, yt, xv, yv = image_data(args, torch, "mnist", 0.1307, 0.3081)
        model = nn.Sequential(nn.Linear(784, 128), nn.Sigmoid(), nn.Linear(128, 10))
    else:
        xt, yt, xv, yv = image_data(args, torch, "fashion-mnist", 0.2860, 0.3530)
        model = nn.Sequential(
            nn.Unflatten(1, (1, 28, 28)),
            nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10),
        )
    loss_fn = nn.CrossEntropyLoss()
    state = {"perm": None, "cursor": len(xt)}
    bs = 128

    def batch_loss():
        if state["cursor"] + bs > len(xt):
            state["perm"], state["cursor"] = torch.randperm(len(xt)), 0
        idx = state["perm"][state["cursor"] : state["cursor"] + bs]
        state["cursor"] += bs
        return loss_fn(model(xt[idx]), yt[idx])

    def evaluate():
        return (model(xv).argmax(1) == yv).float().mean().item()

    return model, batch_loss, evaluate


def shakespeare_task(args, torch):
    nn, F = torch.nn, torch.nn.functional
    with open(os.path.join(args.data_dir, "tinyshakespeare", "input.txt"), "rb") as f:
        raw = f.read()
    vocab = sorted(set(raw))
    index = {b: i for i, b in enumerate(vocab)}
    tokens = torch.tensor([index[b] for b in raw], dtype=torch.long)
    split = len(raw) * 9 // 10
    train, valid = tokens[:split], tokens[split:]
    ctx, d, heads, layers, bs = 64, 64, 4, 2, 32

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc, self.out = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x, mask):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).reshape(b, t, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            att = (q @ k.transpose(-1, -2)) * (1.0 / (d // heads) ** 0.5) + mask[:t, :t]
            y = (att.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
            x = x + self.proj(y)
            return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class CharLm(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Parameter(torch.randn(len(vocab), d) * 0.02)
            self.pos = nn.Parameter(torch.randn(ctx, d) * 0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(layers))
            self.ln_f, self.head = nn.LayerNorm(d), nn.Linear(d, len(vocab))
            self.register_buffer("mask", torch.full((ctx, ctx), float("-inf")).triu(1))

        def forward(self, x):
            h = self.tok[x] + self.pos[: x.shape[1]]
            for b in self.blocks:
                h = b(h, self.mask)
            return self.head(self.ln_f(h))

    model = CharLm()

    def windows(tok, starts):
        x = torch.stack([tok[s : s + ctx] for s in starts])
        y = torch.stack([tok[s + 1 : s + ctx + 1] for s in starts])
        return x, y

    def loss_of(x, y):
        return F.cross_entropy(model(x).reshape(-1, len(vocab)), y.reshape(-1))

    def batch_loss():
        starts = torch.randint(0, len(train) - ctx - 1, (bs,)).tolist()
        return loss_of(*windows(train, starts))

    span = len(valid) - ctx - 1
    n_eval = min(512, max(span, 1))
    eval_starts = [i * span // n_eval for i in range(n_eval)]

    def evaluate():
        total = 0.0
        for i in range(0, n_eval, 64):
            chunk = eval_starts[i : i + 64]
            total += loss_of(*windows(valid, chunk)).item() * len(chunk)
        return total / n_eval

    return model, batch_loss, evaluate


def torch_run(args):
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    _, target, higher, _ = TARGETS[args.workload]
    if args.workload == "shakespeare-char":
        model, batch_loss, evaluate = shakespeare_task(args, torch)
    else:
        model, batch_loss, evaluate = image_task(args, torch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    eval_every = 250
    train_time, step, reached = 0.0, 0, None
    while step < args.steps:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = batch_loss()
        loss.backward()
        opt.step()
        train_time += time.perf_counter() - t0
        step += 1
        if step % eval_every == 0:
            with torch.no_grad():
                m = evaluate()
            if (m >= target) if higher else (m <= target):
                reached = (step, train_time)
                break
    return {"steps": step, "train_time": train_time, "reached": reached}


def optimist_run(args):
    cmd = [
        args.optimist, "train", "--workload", args.workload, "--optimizer", "adamw",
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
    p.add_argument("--workload", choices=sorted(TARGETS), default="mnist-mlp")
    p.add_argument("--steps", type=int, default=None, help="step budget (default: 8000, 4000 for shakespeare-char)")
    p.add_argument("--optimist", default=os.path.join("target", "release", "optimist"))
    args = p.parse_args()
    metric, target, higher, budget = TARGETS[args.workload]
    if args.steps is None:
        args.steps = budget
    if not os.path.exists(args.optimist):
        sys.exit(f"{args.optimist} not found: run `cargo build --release` first")
    rows = [("pytorch", torch_run(args)), ("optimist", optimist_run(args))]
    bs = 32 if args.workload == "shakespeare-char" else 128
    print(
        f"{args.workload} to {metric} {'>=' if higher else '<='} {target}, AdamW lr 1e-3, "
        f"batch {bs}, {args.threads} thread(s)"
    )
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
