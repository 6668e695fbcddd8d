"""DeepSpeed ZeRO with an optimist.torch optimizer as the client optimizer
(zero_force_ds_cpu_optimizer: false), compared with one process.

    DS_ACCELERATOR=cpu torchrun --standalone --nproc-per-node 2 tools/deepspeed_zero.py --stage 1

Each rank trains a tiny MLP on its slice of the same global batches; rank 0
prints the largest difference of the parameters from one process running
the same optimizer on the whole batches, and exits 1 when it exceeds
atol 1e-6 + rtol 1e-5.
"""

import argparse
import os

import torch


def make_model():
    torch.manual_seed(1234)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 4))


def batch(step, rank=0, world=1, size=12):
    g = torch.Generator().manual_seed(1000 + step)
    x, y = torch.randn(size, 8, generator=g), torch.randn(size, 4, generator=g)
    n = size // world
    return x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", type=int, default=1, choices=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()

    import deepspeed

    import optimist.torch as ot

    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    hp = dict(lr=1e-2, weight_decay=0.01)
    model = make_model()
    config = {
        "train_batch_size": 12,
        "train_micro_batch_size_per_gpu": 12 // world,
        "zero_optimization": {"stage": args.stage},
        "zero_force_ds_cpu_optimizer": False,
        "zero_allow_untested_optimizer": True,
    }
    engine, opt, _, _ = deepspeed.initialize(model=model, optimizer=ot.AdamW(model.parameters(), **hp), config=config)
    for t in range(args.steps):
        x, y = batch(t, rank, world)
        loss = torch.nn.functional.mse_loss(engine(x), y)
        engine.backward(loss)
        engine.step()
    ref = make_model()
    ropt = ot.AdamW(ref.parameters(), **hp)
    for t in range(args.steps):
        x, y = batch(t)
        ropt.zero_grad()
        torch.nn.functional.mse_loss(ref(x), y).backward()
        ropt.step()
    worst = 0.0
    for a, b in zip(engine.module.parameters(), ref.parameters()):
        worst = max(worst, ((a.detach() - b.detach()).abs() - (1e-6 + 1e-5 * b.detach().abs())).max().item())
    diff = max((a.detach() - b.detach()).abs().max().item() for a, b in zip(engine.module.parameters(), ref.parameters()))
    if rank == 0:
        print(f"deepspeed ZeRO stage {args.stage}, {world} ranks, optimizer {type(opt).__name__} "
              f"around {type(getattr(opt, 'optimizer', opt)).__name__}: max|d| vs one process = {diff:.3e}")
    raise SystemExit(0 if worst <= 0 else 1)


if __name__ == "__main__":
    main()
