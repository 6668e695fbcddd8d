"""optimist.torch optimizers under torch.distributed (gloo on CPU), with real
multi-process runs started by torchrun (dist_worker.py): DDP, ZeRO-1
(ZeroRedundancyOptimizer) with a checkpoint written at 2 ranks and resumed
at 3 and 1, optimist.distributed.Muon (whole matrices per rank) and FSDP2
(fully_shard on a CPU mesh, local shards stepped by LocalShards), each
compared with one process on the same global batches."""

import os
import subprocess
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dist_worker as W  # noqa: E402

import optimist.distributed  # noqa: E402

LAUNCH_TIMEOUT = 180
ELEMENTWISE = ["adamw", "lion", "adafactor"]
# The replay contract's tolerances (docs/replay.md): Muon's is 1e-4 / 1e-4.
TOL = {"adamw": (1e-6, 1e-5), "lion": (1e-6, 1e-5), "adafactor": (1e-6, 1e-5), "muon": (1e-4, 1e-4)}


def launch(nproc, out, resume=None):
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            os.path.join(HERE, "dist_worker.py"), str(out)]
    if resume is not None:
        args.append(str(resume))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(args, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT, env=env)
    assert proc.returncode == 0, f"torchrun --nproc-per-node={nproc} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return torch.load(os.path.join(out, "results.pt"), weights_only=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """World size 2 (writes the checkpoints), then 3 and 1 (also resume them)."""
    base = tmp_path_factory.mktemp("dist")
    out = {}
    for world in (2, 3, 1):
        d = base / f"w{world}"
        d.mkdir()
        out[world] = launch(world, d, None if world == 2 else base / "w2")
    return out


@pytest.fixture(scope="module")
def refs():
    return {opt: W.reference(opt) for opt in W.OPTS}


def assert_close(got, want, opt, what):
    atol, rtol = TOL[opt]
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        err = ((a - b).abs() - (atol + rtol * b.abs())).max().item()
        assert err <= 0, f"{what}: parameter {i} differs from one process by more than atol={atol}, rtol={rtol}: max|d|={(a - b).abs().max().item():.3e}"


def assert_equal(got, want, what):
    for i, (a, b) in enumerate(zip(got, want)):
        assert torch.equal(a, b), f"{what}: parameter {i} not bit for bit equal: max|d|={(a - b).abs().max().item():.3e}"


def state_bytes_unsharded(opt, steps=1):
    model = W.make_model(opt)
    cls, hp = W.optimizer_class(opt)
    o = cls(model.parameters(), **hp)
    W.train(model, o, steps)
    return W.state_bytes(o), len(o.state)


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("opt", list(W.OPTS))
def test_ddp_equals_one_process(runs, refs, world, opt):
    assert_close(runs[world][f"ddp/{opt}"], refs[opt], opt, f"DDP at {world} ranks, {opt}")


def test_ddp_one_rank_is_bit_exact(runs, refs):
    # One rank sees the whole batch: the same float sums as one process. With
    # several ranks the averaged per-rank gradients round differently, so
    # those runs are checked within the tolerance only (above).
    for opt in W.OPTS:
        assert_equal(runs[1][f"ddp/{opt}"], refs[opt], f"DDP at 1 rank, {opt}")


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("opt", list(W.OPTS))
def test_zero_equals_ddp_bit_for_bit(runs, refs, world, opt):
    r = runs[world]
    assert_equal(r[f"zero/{opt}"], r[f"ddp/{opt}"], f"ZeRO-1 vs DDP at {world} ranks, {opt}")
    assert_close(r[f"zero/{opt}"], refs[opt], opt, f"ZeRO-1 at {world} ranks, {opt}")


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("opt", list(W.OPTS))
def test_zero_shards_state(runs, world, opt):
    r = runs[world]
    full_bytes, full_entries = state_bytes_unsharded(opt)
    entries = r[f"zero_state_entries/{opt}"]
    sizes = r[f"zero_state_bytes/{opt}"]
    assert len(entries) == world and sum(entries) == full_entries, entries
    assert all(0 < e < full_entries for e in entries), entries
    assert sum(sizes) == full_bytes, (sizes, full_bytes)
    assert max(sizes) < full_bytes, sizes


@pytest.mark.parametrize("world", [3, 1])
@pytest.mark.parametrize("opt", list(W.OPTS))
def test_zero_checkpoint_from_2_ranks_resumes(runs, refs, world, opt):
    r = runs[world]
    got = r[f"resume/{opt}"]
    assert_close(got, refs[opt], opt, f"ZeRO-1 checkpoint at 2 ranks resumed at {world}, {opt}")
    entries = r[f"resume_state_entries/{opt}"]
    assert sum(entries) == state_bytes_unsharded(opt)[1]
    # The loaded state matters: restarting the optimizer from scratch at the
    # checkpoint lands far outside the tolerance.
    model = W.make_model(opt)
    cls, hp = W.optimizer_class(opt)
    W.train(model, cls(model.parameters(), **hp), W.STEPS_BEFORE)
    W.train(model, cls(model.parameters(), **hp), W.STEPS_AFTER, start=W.STEPS_BEFORE)
    fresh = W.params_of(model)
    atol, _ = TOL[opt]
    assert max((a - b).abs().max().item() for a, b in zip(fresh, refs[opt])) > 20 * atol


def test_assign_round_robin():
    # largest first, dealt round-robin; ties keep their order
    assert optimist.distributed.assign_round_robin([10, 40, 20, 30], 2) == [1, 0, 0, 1]
    assert optimist.distributed.assign_round_robin([5, 5, 5], 3) == [0, 1, 2]
    assert optimist.distributed.assign_round_robin([1, 2], 1) == [0, 0]
    with pytest.raises(ValueError, match="world_size"):
        optimist.distributed.assign_round_robin([1], 0)


def test_muon_helper_needs_process_group():
    import torch.distributed as dist

    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="not initialized"):
        optimist.distributed.Muon([torch.nn.Parameter(torch.zeros(2, 2))])


@pytest.mark.parametrize("world", [1, 2, 3])
def test_muon_helper_whole_matrices(runs, refs, world):
    r = runs[world]
    model = W.make_model("muon")
    sizes = [p.numel() for p in model.parameters()]
    assert r["muon_helper_owners"] == optimist.distributed.assign_round_robin(sizes, world)
    entries = r["muon_helper_state_entries"]
    assert len(entries) == world and sum(entries) == len(sizes), entries
    assert r["muon_helper_replicas_equal"]
    assert_close(r["muon_helper"], refs["muon"], "muon", f"optimist.distributed.Muon at {world} ranks")
    # Newton-Schulz on the owner runs the same code on the same matrix as DDP.
    assert_equal(r["muon_helper"], r["ddp/muon"], f"optimist.distributed.Muon vs DDP Muon at {world} ranks")


@pytest.mark.parametrize("world", [3, 1])
def test_muon_helper_full_state_resumes(runs, refs, world):
    r = runs[world]
    assert sum(r["resume_muon_helper_state_entries"]) == 4
    assert_close(r["resume/muon_helper"], refs["muon"], "muon", f"Muon helper state from 2 ranks resumed at {world}")


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("variant", ["fsdp", "fsdp_offload"])
@pytest.mark.parametrize("opt", ["adamw", "lion"])
def test_fsdp2_local_shards(runs, refs, world, variant, opt):
    r = runs[world]
    assert r[f"{variant}_dtensor/{opt}"], "parameters are not DTensors: fully_shard did not shard"
    assert_close(r[f"{variant}/{opt}"], refs[opt], opt, f"FSDP2 ({variant}) at {world} ranks, {opt}")


def test_fsdp2_pinned_offload_needs_cuda(runs):
    # CPUOffloadPolicy() pins host memory; without a CUDA driver fully_shard
    # fails at once with this error (pin_memory=False runs, tested above).
    err = runs[2]["fsdp_offload_pinned_error"]
    if torch.cuda.is_available():
        assert err is None, err
    else:
        assert err is not None and "NVIDIA driver" in err, err
