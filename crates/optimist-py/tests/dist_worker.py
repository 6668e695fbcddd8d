"""Multi-process training runs for test_distributed.py, started with torchrun:

    torchrun --standalone --nproc-per-node 2 dist_worker.py OUT_DIR [RESUME_CKPT]

Each rank trains tiny models with DDP (gloo) on its slice of the same global
batches, with optimist.torch optimizers, plain (DDP), through
ZeroRedundancyOptimizer (ZeRO-1) and through optimist.distributed.Muon.
Rank 0 writes the final parameters and per-rank state sizes to
OUT_DIR/results.pt; ZeRO runs also write a consolidated checkpoint after
STEPS_BEFORE steps (OUT_DIR/ckpt-<opt>.pt). With RESUME_CKPT (a directory of
such checkpoints), the ZeRO runs start from them instead and take the
remaining steps. The same functions build the one-process references.
"""

import os
import sys

import torch

GLOBAL_BATCH = 12  # divisible by 1, 2 and 3 ranks
STEPS_BEFORE = 4
STEPS_AFTER = 3
OPTS = {
    "adamw": ("AdamW", dict(lr=1e-2, weight_decay=0.01)),
    "lion": ("Lion", dict(lr=1e-3, weight_decay=0.1)),
    "adafactor": ("Adafactor", dict(lr=1e-2)),
    "muon": ("Muon", dict(lr=2e-2, weight_decay=0.1)),
}


def make_model(opt):
    """Tiny MLP; all-matrix (no biases) for Muon, which takes only 2-D parameters."""
    torch.manual_seed(1234)
    bias = opt != "muon"
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16, bias=bias),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 24, bias=bias),
        torch.nn.Tanh(),
        torch.nn.Linear(24, 16, bias=bias),
        torch.nn.Tanh(),
        torch.nn.Linear(16, 4, bias=bias),
    )


def batch(step, rank=0, world=1):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(GLOBAL_BATCH, 8, generator=g)
    y = torch.randn(GLOBAL_BATCH, 4, generator=g)
    n = GLOBAL_BATCH // world
    return x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]


def optimizer_class(opt):
    import optimist.torch as ot

    name, hp = OPTS[opt]
    return getattr(ot, name), hp


def train(model, optimizer, steps, start=0, rank=0, world=1):
    for t in range(start, start + steps):
        x, y = batch(t, rank, world)
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


def params_of(model):
    m = getattr(model, "module", model)
    return [p.detach().clone() for p in m.parameters()]


def reference(opt, steps=STEPS_BEFORE + STEPS_AFTER):
    """One process, whole global batch."""
    model = make_model(opt)
    cls, hp = optimizer_class(opt)
    train(model, cls(model.parameters(), **hp), steps)
    return params_of(model)


def state_bytes(optimizer):
    return sum(
        v.numel() * v.element_size()
        for st in optimizer.state.values()
        for v in st.values()
        if isinstance(v, torch.Tensor)
    )


def fsdp(results, rank, world):
    """FSDP2 fully_shard on a CPU device mesh (gloo), with and without
    CPUOffloadPolicy(pin_memory=False); elementwise optimizers step the local
    shards through optimist.distributed.LocalShards."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    import optimist.distributed

    mesh = init_device_mesh("cpu", (world,))
    for variant, kw in (("fsdp", {}), ("fsdp_offload", {"offload_policy": CPUOffloadPolicy(pin_memory=False)})):
        for opt in ("adamw", "lion"):
            cls, hp = optimizer_class(opt)
            model = make_model(opt)
            for layer in model:
                if isinstance(layer, torch.nn.Linear):
                    fully_shard(layer, mesh=mesh, **kw)
            fully_shard(model, mesh=mesh, **kw)
            optim = optimist.distributed.LocalShards(model.parameters(), cls, **hp)
            train(model, optim, STEPS_BEFORE + STEPS_AFTER, rank=rank, world=world)
            results[f"{variant}/{opt}"] = [p.full_tensor().detach().clone() for p in model.parameters()]
            results[f"{variant}_dtensor/{opt}"] = all(type(p).__name__ == "DTensor" for p in model.parameters())
    # The default policy pins host memory, which needs a CUDA driver.
    try:
        fully_shard(make_model("adamw"), mesh=mesh, offload_policy=CPUOffloadPolicy())
        results["fsdp_offload_pinned_error"] = None
    except Exception as e:  # the error is the result here
        results["fsdp_offload_pinned_error"] = f"{type(e).__name__}: {e}"


def main():
    import torch.distributed as dist
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel as DDP

    import optimist.distributed

    out = sys.argv[1]
    resume = sys.argv[2] if len(sys.argv) > 2 else None
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    total = STEPS_BEFORE + STEPS_AFTER
    results = {"world": world}

    def gather(x):
        box = [None] * world
        dist.all_gather_object(box, x)
        return box

    for opt in OPTS:
        cls, hp = optimizer_class(opt)
        if True:
            # plain DDP, every rank steps full replicas
            model = DDP(make_model(opt))
            train(model, cls(model.parameters(), **hp), total, rank=rank, world=world)
            results[f"ddp/{opt}"] = params_of(model)

            # ZeRO-1, checkpoint after STEPS_BEFORE steps
            model = DDP(make_model(opt))
            zero = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=cls, **hp)
            train(model, zero, STEPS_BEFORE, rank=rank, world=world)
            zero.consolidate_state_dict(to=0)
            if rank == 0:
                torch.save(
                    {"model": model.module.state_dict(), "optim": zero.state_dict()},
                    os.path.join(out, f"ckpt-{opt}.pt"),
                )
            results[f"zero_state_bytes/{opt}"] = gather(state_bytes(zero.optim))
            results[f"zero_state_entries/{opt}"] = gather(len(zero.optim.state))
            train(model, zero, STEPS_AFTER, start=STEPS_BEFORE, rank=rank, world=world)
            results[f"zero/{opt}"] = params_of(model)
        if resume is not None:
            ckpt = torch.load(os.path.join(resume, f"ckpt-{opt}.pt"), weights_only=False)
            model = make_model(opt)
            model.load_state_dict(ckpt["model"])
            model = DDP(model)
            zero = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=cls, **hp)
            zero.load_state_dict(ckpt["optim"])
            results[f"resume_state_entries/{opt}"] = gather(len(zero.optim.state))
            train(model, zero, STEPS_AFTER, start=STEPS_BEFORE, rank=rank, world=world)
            results[f"resume/{opt}"] = params_of(model)

    if True:
        # Muon with whole matrices per rank (round-robin by size), broadcast from the owner
        _, hp = optimizer_class("muon")
        model = DDP(make_model("muon"))
        opt = optimist.distributed.Muon(model.parameters(), **hp)
        train(model, opt, STEPS_BEFORE, rank=rank, world=world)
        results["muon_helper_owners"] = [opt.owner(p) for p in model.parameters()]
        results["muon_helper_state_entries"] = gather(len(opt.state))
        full = opt.full_state_dict()
        if rank == 0:
            torch.save({"model": model.module.state_dict(), "optim": full}, os.path.join(out, "ckpt-muon-helper.pt"))
        train(model, opt, STEPS_AFTER, start=STEPS_BEFORE, rank=rank, world=world)
        results["muon_helper"] = params_of(model)
        results["muon_helper_replicas_equal"] = all(
            all(torch.equal(a, b) for a, b in zip(ps, params_of(model))) for ps in gather(params_of(model))
        )
    if resume is not None:
        _, hp = optimizer_class("muon")
        ckpt = torch.load(os.path.join(resume, "ckpt-muon-helper.pt"), weights_only=False)
        model = make_model("muon")
        model.load_state_dict(ckpt["model"])
        model = DDP(model)
        opt = optimist.distributed.Muon(model.parameters(), **hp)
        opt.load_state_dict(ckpt["optim"])
        results["resume_muon_helper_state_entries"] = gather(len(opt.state))
        train(model, opt, STEPS_AFTER, start=STEPS_BEFORE, rank=rank, world=world)
        results["resume/muon_helper"] = params_of(model)

    fsdp(results, rank, world)
    if rank == 0:
        torch.save(results, os.path.join(out, "results.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
