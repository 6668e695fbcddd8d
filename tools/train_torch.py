#!/usr/bin/env python3
"""Real training with PyTorch models: optimist.torch against torch.optim.

1. MNIST MLP (784-128-10, sigmoid; first 50,000 training images, the last
   10,000 validate; pixels/255 normalised with mean 0.1307, std 0.3081),
   batch 128, AdamW (lr 1e-3, weight_decay 0.01).
2. A character-level transformer on Tiny Shakespeare (first 90% train, last
   10% validate; 2 layers, d_model 64, 4 heads, context 64, batch 32),
   AdamW (lr 3e-3, weight_decay 0.01).

Each model trains twice from the same initialisation and the same batches,
with torch.optim.AdamW and with optimist.torch.AdamW: the script prints the
largest difference between the two loss curves and the median time per step
(whole step: forward, backward, update) and per optimizer step. Then the
transformer trains from the same initialisation with optimist's MuonAdamW
preset, Lion and Sophia-H (Hutchinson Hessian-vector products from autograd,
`loss.backward(create_graph=True)`), and the script prints the validation
loss at initialisation and after training.

    python3 tools/train_torch.py --data-dir ../shared/data --threads 2
"""

import argparse
import copy
import gzip
import json
import math
import os
import statistics
import struct
import time

import torch
import torch.nn.functional as F

import optimist.torch as ot


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    nd = struct.unpack(">I", raw[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * nd, raw[4 : 4 + 4 * nd])
    return dims, raw[4 + 4 * nd :]


def mnist(data_dir):
    d = os.path.join(data_dir, "mnist")
    (n, r, c), img = read_idx(os.path.join(d, "train-images-idx3-ubyte.gz"))
    _, lab = read_idx(os.path.join(d, "train-labels-idx1-ubyte.gz"))
    x = torch.frombuffer(bytearray(img), dtype=torch.uint8).reshape(n, r * c).float() / 255.0
    x = (x - 0.1307) / 0.3081
    y = torch.frombuffer(bytearray(lab), dtype=torch.uint8).long()
    return x[:50000], y[:50000], x[50000:], y[50000:]


class CharTransformer(torch.nn.Module):
    """Pre-norm decoder with explicit attention (twice differentiable, for
    Sophia-H's Hessian-vector products)."""

    def __init__(self, vocab, d=64, heads=4, layers=2, ctx=64):
        super().__init__()
        self.heads = heads
        self.embed = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Parameter(torch.randn(ctx, d) * 0.02)
        self.blocks = torch.nn.ModuleList()
        for _ in range(layers):
            self.blocks.append(torch.nn.ModuleDict({
                "ln1": torch.nn.LayerNorm(d), "qkv": torch.nn.Linear(d, 3 * d), "proj": torch.nn.Linear(d, d),
                "ln2": torch.nn.LayerNorm(d), "fc": torch.nn.Linear(d, 4 * d), "out": torch.nn.Linear(4 * d, d),
            }))
        self.ln = torch.nn.LayerNorm(d)
        self.lm_head = torch.nn.Linear(d, vocab)
        self.register_buffer("mask", torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)))

    def forward(self, idx):
        b, t = idx.shape
        x = self.embed(idx) + self.pos[:t]
        for blk in self.blocks:
            h = blk["ln1"](x)
            q, k, v = blk["qkv"](h).split(x.shape[-1], dim=-1)
            q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in (q, k, v))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            att = att.masked_fill(~self.mask[:t, :t], float("-inf")).softmax(-1)
            x = x + blk["proj"]((att @ v).transpose(1, 2).reshape(b, t, -1))
            x = x + blk["out"](F.gelu(blk["fc"](blk["ln2"](x))))
        return self.lm_head(self.ln(x))


def shakespeare(data_dir):
    text = open(os.path.join(data_dir, "tinyshakespeare", "input.txt"), encoding="utf-8").read()
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    cut = int(len(ids) * 0.9)
    return ids[:cut], ids[cut:], len(chars)


def char_batches(ids, steps, bs, ctx, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        s = torch.randint(0, len(ids) - ctx - 1, (bs,), generator=g)
        yield torch.stack([ids[i : i + ctx] for i in s]), torch.stack([ids[i + 1 : i + ctx + 1] for i in s])


def train(model, opt, batches, loss_of, create_graph=False):
    losses, step_t, opt_t = [], [], []
    for xb, yb in batches:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_of(model, xb, yb)
        loss.backward(create_graph=create_graph)
        t1 = time.perf_counter()
        opt.step()
        t2 = time.perf_counter()
        losses.append(loss.item())
        step_t.append(t2 - t0)
        opt_t.append(t2 - t1)
    return losses, statistics.median(step_t), statistics.median(opt_t)


def compare(name, init, make_torch, make_ours, batches_fn, loss_of, out):
    runs = {}
    for label, make in (("torch.optim.AdamW", make_torch), ("optimist.torch.AdamW", make_ours)):
        model = copy.deepcopy(init)
        runs[label] = train(model, make(model), batches_fn(), loss_of)
    (lt, st, ot_), (lo, so, oo) = runs["torch.optim.AdamW"], runs["optimist.torch.AdamW"]
    diff = max(abs(a - b) for a, b in zip(lt, lo))
    rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(lt, lo))
    r = {"workload": name, "steps": len(lt), "first_loss": lt[0], "last_loss_torch": lt[-1],
         "last_loss_optimist": lo[-1], "max_abs_loss_diff": diff, "max_rel_loss_diff": rel,
         "step_ms_torch": st * 1e3, "step_ms_optimist": so * 1e3,
         "opt_step_ms_torch": ot_ * 1e3, "opt_step_ms_optimist": oo * 1e3}
    print(json.dumps(r), flush=True)
    out.append(r)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mnist-steps", type=int, default=400)
    ap.add_argument("--char-steps", type=int, default=300)
    ap.add_argument("--other-steps", type=int, help="steps for Muon, Lion, Sophia-H (default: --char-steps)")
    ap.add_argument("--skip-compare", action="store_true", help="only the Muon, Lion and Sophia-H runs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = []

    if not args.skip_compare:
        mnist_compare(args, out)
    char_runs(args, out)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


def mnist_compare(args, out):
    xt, yt, xv, yv = mnist(args.data_dir)
    torch.manual_seed(args.seed)
    mlp = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.Sigmoid(), torch.nn.Linear(128, 10))

    def mnist_batches():
        g = torch.Generator().manual_seed(args.seed + 1)
        for _ in range(args.mnist_steps):
            idx = torch.randint(0, len(xt), (128,), generator=g)
            yield xt[idx], yt[idx]

    def ce(model, xb, yb):
        return F.cross_entropy(model(xb), yb)

    compare("mnist-mlp", mlp,
            lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01),
            lambda m: ot.AdamW(m.parameters(), lr=1e-3, weight_decay=0.01),
            mnist_batches, ce, out)


def char_runs(args, out):
    tr, va, vocab = shakespeare(args.data_dir)
    torch.manual_seed(args.seed)
    net = CharTransformer(vocab)

    def lm(model, xb, yb):
        return F.cross_entropy(model(xb).reshape(-1, vocab), yb.reshape(-1))

    def batches():
        return char_batches(tr, args.char_steps, 32, 64, args.seed + 2)

    if not args.skip_compare:
        compare("char-transformer", net,
                lambda m: torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.01),
                lambda m: ot.AdamW(m.parameters(), lr=3e-3, weight_decay=0.01),
                batches, lm, out)
    steps = args.other_steps or args.char_steps

    val = list(char_batches(va, 8, 32, 64, args.seed + 3))

    def val_loss(model):
        with torch.no_grad():
            return statistics.mean(lm(model, x, y).item() for x, y in val)

    init_val = val_loss(net)
    others = {
        "MuonAdamW": (lambda m: ot.MuonAdamW(m.named_parameters(), muon={"lr": 0.02}, adamw={"lr": 3e-3}), False),
        "Lion": (lambda m: ot.Lion(m.parameters(), lr=3e-4, weight_decay=0.01), False),
        "SophiaH": (lambda m: ot.SophiaH(m.parameters(), lr=0.01, update_period=10), True),
    }
    for label, (make, graph) in others.items():
        model = copy.deepcopy(net)
        losses, st, ost = train(model, make(model), char_batches(tr, steps, 32, 64, args.seed + 2), lm,
                                create_graph=graph)
        r = {"workload": "char-transformer", "optimizer": label, "steps": len(losses),
             "val_loss_init": init_val, "val_loss_final": val_loss(model),
             "step_ms": st * 1e3, "opt_step_ms": ost * 1e3}
        print(json.dumps(r), flush=True)
        out.append(r)


if __name__ == "__main__":
    main()
