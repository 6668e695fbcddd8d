"""``state_dtype``: bf16 and 8-bit optimizer state kept in torch tensors and
updated in place (bf16 tensors; uint8 codes with float32 block scales), as
the core's compressed state (docs/pytorch.md)."""

import io

import pytest
import torch

import optimist.torch as ot

RULES = ["adamw", "lion", "adabelief", "rmsprop"]


def model():
    torch.manual_seed(0)
    # 8192 values: above the size under which 8-bit state stays float32 (4096).
    return [torch.nn.Parameter(torch.randn(64, 128)), torch.nn.Parameter(torch.randn(10))]


def run(opt, params, steps):
    for s in steps:
        g = torch.Generator().manual_seed(100 + s)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()


def saved(opt):
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("state_dtype", [torch.bfloat16, "q8"])
def test_state_is_compressed_in_torch_tensors(name, state_dtype):
    params = model()
    opt = ot.CLASSES[name](params, lr=1e-3, state_dtype=state_dtype)
    run(opt, params, range(3))
    big, small = (opt.state[p] for p in params)
    buffers = ot.SPECS[name]["state_buffers"]
    for b in buffers:
        if b not in big:
            continue
        if state_dtype == "q8":
            assert big[b].dtype == torch.uint8 and big[b].shape == params[0].shape, b
            assert big[b + "_scales"].dtype == torch.float32
            assert big[b + "_scales"].numel() == params[0].numel() // 256
            assert small[b].dtype == torch.float32  # small buffers stay f32
        else:
            assert big[b].dtype == torch.bfloat16 and big[b].shape == params[0].shape, b
    # Updated in place from then on: the same storage after more steps.
    b = next(b for b in buffers if b in big)
    ptr = big[b].data_ptr()
    run(opt, params, range(3, 5))
    assert opt.state[params[0]][b].data_ptr() == ptr


@pytest.mark.parametrize("name", RULES)
@pytest.mark.parametrize("state_dtype", [torch.bfloat16, "q8"])
def test_close_to_float32_state(name, state_dtype):
    p32, pc = model(), model()
    a = ot.CLASSES[name](p32, lr=1e-3)
    b = ot.CLASSES[name](pc, lr=1e-3, state_dtype=state_dtype)
    run(a, p32, range(20))
    run(b, pc, range(20))
    start = model()
    for x, y, x0 in zip(pc, p32, start):
        moved = (y - x0).norm()
        assert moved > 0
        assert (x - y).norm() <= 0.1 * moved, name


@pytest.mark.parametrize("state_dtype", [torch.bfloat16, "q8"])
def test_threads_and_save_load_are_bit_exact(state_dtype):
    pa, pb = model(), model()
    a = ot.AdamW(pa, state_dtype=state_dtype, threads=1)
    b = ot.AdamW(pb, state_dtype=state_dtype, threads=2)
    run(a, pa, range(10))
    run(b, pb, range(5))
    pc = [torch.nn.Parameter(p.detach().clone()) for p in pb]
    c = ot.AdamW(pc, state_dtype=state_dtype, threads=2)
    c.load_state_dict(saved(b))
    run(c, pc, range(5, 10))
    for x, y in zip(pc, pa):
        assert torch.equal(x, y)


def test_state_bytes_shrink():
    def nbytes(opt):
        return sum(t.numel() * t.element_size() for st in opt.state.values() for k, t in st.items() if k != "step")

    sizes = {}
    for sd in (None, torch.bfloat16, "q8"):
        params = model()
        opt = ot.AdamW(params, state_dtype=sd)
        run(opt, params, range(1))
        sizes[sd] = nbytes(opt)
    assert sizes[torch.bfloat16] < 0.51 * sizes[None]
    assert sizes["q8"] < 0.27 * sizes[None]


def test_float32_state_loads_into_compressed_optimizer():
    pa = model()
    a = ot.AdamW(pa)
    run(a, pa, range(3))
    pb = [torch.nn.Parameter(p.detach().clone()) for p in pa]
    b = ot.AdamW(pb, state_dtype="q8")
    b.load_state_dict(saved(a))
    run(b, pb, range(3, 5))
    assert b.state[pb[0]]["exp_avg"].dtype == torch.uint8


@pytest.mark.parametrize("bad", ["fp8", torch.float16, 3])
def test_invalid_state_dtype_is_a_value_error(bad):
    with pytest.raises(ValueError, match="state_dtype"):
        ot.AdamW(model(), state_dtype=bad)


def test_compressed_state_needs_an_elementwise_rule():
    with pytest.raises(ValueError, match="muon"):
        ot.Muon([torch.nn.Parameter(torch.randn(8, 8))], state_dtype="q8")


def test_codes_without_scales_are_an_error():
    params = model()
    opt = ot.AdamW(params, state_dtype="q8")
    run(opt, params, range(1))
    del opt.state[params[0]]["exp_avg_scales"]
    with pytest.raises(ValueError, match="exp_avg_scales"):
        run(opt, params, range(1, 2))


def test_wrong_number_of_scales_is_an_error():
    params = model()
    opt = ot.AdamW(params, state_dtype="q8")
    run(opt, params, range(1))
    opt.state[params[0]]["exp_avg_scales"] = torch.zeros(3)
    before = [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match="scales"):
        run(opt, params, range(1, 2))
    for x, y in zip(params, before):
        assert torch.equal(x, y)
