"""Distributed step benchmark and paper model for optimist.torch optimizers.

Measured run (start with torchrun; gloo on CPU):

    torchrun --standalone --nproc-per-node 2 tools/bench_distributed.py --opt adamw --params 100e6

A stack of square bias-free matrices (about --params parameters, all 2-D so
that Muon takes them) gets the same synthetic gradients on every rank; each
step times, per rank:
  - allreduce: the gradient all-reduce (what DDP does after backward),
  - compute:   the optimizer's own step (rank's shard only for ZeRO-1 and
               for optimist.distributed.Muon),
  - sync:      the parameter broadcast from the owners (ZeRO-1 / Muon only),
and prints the optimizer state bytes held by each rank and the payload
bytes each rank passes to the collectives per step (tensor sizes, not bytes
on the wire). Modes: --mode ddp (full replicas), zero (ZeroRedundancyOptimizer
with optimizer_class), muon-helper (optimist.distributed.Muon, --opt muon).

Paper model (no torchrun needed):

    python3 tools/bench_distributed.py --model --ranks 8 64 --params 100e6 1e9 7e9

prints per-rank state bytes and bytes exchanged per step for AdamW and Muon
under DDP and under sharded state (ZeRO-1 / whole matrices per rank), fp32,
ring all-reduce (2(W-1)/W of the tensor sent and received per rank) and
broadcast from owners ((W-1)/W of the parameters received per rank).
"""

import argparse
import os
import statistics
import time


def paper_model(ranks, sizes):
    rows = []
    for P in sizes:
        for W in ranks:
            grad = 4 * P
            allreduce = 2 * (W - 1) / W * grad
            bcast = (W - 1) / W * grad
            for opt, slots in (("adamw", 2), ("muon", 1)):
                rows.append((opt, "ddp", P, W, slots * 4 * P, allreduce))
                rows.append((opt, "sharded", P, W, slots * 4 * P / W, allreduce + bcast))
    print("| optimizer | state | params | ranks | state per rank | received per rank per step (and sent, with ring collectives) |")
    print("|---|---|---:|---:|---:|---:|")
    for opt, mode, P, W, st, comm in rows:
        print(f"| {opt} | {mode} | {P:.3g} | {W} | {st / 2**30:.3f} GiB | {comm / 2**30:.3f} GiB |")


def measured(args):
    import torch
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer

    import optimist.distributed
    import optimist.torch as ot

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    d = args.dim
    layers = max(1, round(args.params / (d * d)))
    params = [torch.nn.Parameter(torch.randn(d, d) * d**-0.5) for _ in range(layers)]
    n = sum(p.numel() for p in params)
    cls = {"adamw": ot.AdamW, "lion": ot.Lion, "adafactor": ot.Adafactor, "muon": ot.Muon}[args.opt]
    hp = {"lr": 1e-3}
    if args.mode == "ddp":
        opt, local = cls(params, **hp), None
    elif args.mode == "zero":
        opt = ZeroRedundancyOptimizer(params, optimizer_class=cls, **hp)
        local = opt.optim
    else:
        if args.opt != "muon":
            raise SystemExit("--mode muon-helper needs --opt muon")
        opt = optimist.distributed.Muon(params, **hp)
        local = opt
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(d, d, generator=g) for _ in params]
    times = {"allreduce": [], "compute": [], "sync": []}
    for step in range(args.warmup + args.steps):
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        dist.barrier()
        t0 = time.perf_counter()
        works = [dist.all_reduce(p.grad, async_op=True) for p in params]
        for w in works:
            w.wait()
        for p in params:
            p.grad.div_(world)
        t1 = time.perf_counter()
        if args.mode == "ddp":
            opt.step()
            t2 = t3 = time.perf_counter()
        elif args.mode == "zero":
            opt._local_step()  # the rank's shard (torch's ZeRO step = _local_step + _sync_params)
            t2 = time.perf_counter()
            opt._sync_params()
            t3 = time.perf_counter()
        else:
            opt.step_owned()
            t2 = time.perf_counter()
            opt.sync()
            t3 = time.perf_counter()
        if step >= args.warmup:
            times["allreduce"].append(t1 - t0)
            times["compute"].append(t2 - t1)
            times["sync"].append(t3 - t2)
    state = local.state if local is not None else opt.state
    state_bytes = sum(
        v.numel() * v.element_size() for st in state.values() for v in st.values() if isinstance(v, torch.Tensor)
    )
    if args.mode == "ddp":
        owned = n
    elif args.mode == "zero":
        owned = sum(p.numel() for g in local.param_groups for p in g["params"])
    else:
        owned = sum(p.numel() for p in params if opt.owner(p) == opt._rank)
    # Payload per step: every rank all-reduces all gradients; in the sharded
    # modes it then sends its own parameters to world-1 ranks and receives
    # the others'.
    payload_allreduce = 4 * n
    payload_recv = 0 if args.mode == "ddp" else 4 * (n - owned)
    payload_sent = 0 if args.mode == "ddp" else 4 * owned * (world - 1)
    row = dict(
        rank=rank,
        state_bytes=state_bytes,
        owned=owned,
        allreduce_ms=1e3 * statistics.median(times["allreduce"]),
        compute_ms=1e3 * statistics.median(times["compute"]),
        sync_ms=1e3 * statistics.median(times["sync"]),
        allreduce_payload=payload_allreduce,
        bcast_sent=payload_sent,
        bcast_recv=payload_recv,
    )
    rows = [None] * world
    dist.all_gather_object(rows, row)
    if rank == 0:
        print(
            f"{args.opt} {args.mode}: {n / 1e6:.1f}M params ({layers} x {d}x{d}), world {world}, "
            f"torch threads {torch.get_num_threads()}, median of {args.steps} steps after {args.warmup} warm-up"
        )
        print("| rank | params stepped | state MiB | allreduce ms | compute ms | sync ms | allreduce payload MiB | bcast sent MiB | bcast recv MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(
                f"| {r['rank']} | {r['owned'] / 1e6:.1f}M | {r['state_bytes'] / 2**20:.1f} | {r['allreduce_ms']:.1f} | "
                f"{r['compute_ms']:.1f} | {r['sync_ms']:.1f} | {r['allreduce_payload'] / 2**20:.1f} | "
                f"{r['bcast_sent'] / 2**20:.1f} | {r['bcast_recv'] / 2**20:.1f} |"
            )
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--opt", default="adamw", choices=["adamw", "lion", "adafactor", "muon"])
    ap.add_argument("--mode", default="zero", choices=["ddp", "zero", "muon-helper"])
    ap.add_argument("--params", type=float, nargs="+", default=[100e6], help="parameter count(s)")
    ap.add_argument("--dim", type=int, default=2048, help="matrix side (measured run)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--model", action="store_true", help="print the paper model instead of measuring")
    ap.add_argument("--ranks", type=int, nargs="+", default=[8, 64], help="world sizes of the paper model")
    args = ap.parse_args()
    if args.model:
        paper_model(args.ranks, args.params)
        return
    if "RANK" not in os.environ:
        raise SystemExit("start the measured run with torchrun (see --help), or pass --model")
    args.params = args.params[0]
    measured(args)


if __name__ == "__main__":
    main()
