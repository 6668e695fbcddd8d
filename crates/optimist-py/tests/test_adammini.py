"""optimist.torch.AdamMini against pytorch_optimizer.AdamMini, which takes a
model and picks each parameter's rule from its name: a small transformer-like
module with every kind of block (embedding, query/key projections, a fused
qkv weight, norms, plain weights and biases, an output head), 20 steps with
the same gradients, for each option; state dicts saved in one and continued
in the other, both ways; names from ``named_parameters()`` pairs; errors."""

import io

import pytest
import torch

import optimist.torch as ot

pytorch_optimizer = pytest.importorskip("pytorch_optimizer")

STEPS = 20
TOL = {"atol": 1e-6, "rtol": 1e-5}
# num_embeds 16 with 4 heads: a query/key head is 16 * 16 / 4 = 64 values;
# the fused qkv weight (48 x 16) is viewed as (num_query_groups, 4 / groups + 2, rest).
BASE = dict(num_embeds=16, num_heads=4)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = torch.nn.Linear(16, 16, bias=False)
        self.k_proj = torch.nn.Linear(16, 16, bias=False)
        self.v_proj = torch.nn.Linear(16, 16)
        self.input_layernorm = torch.nn.LayerNorm(16)


class Attn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(16, 48, bias=False)


class Model(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed_tokens = torch.nn.Embedding(10, 16)
        self.layers = torch.nn.ModuleList([Block(), Block()])
        self.attn = Attn()
        self.mlp = torch.nn.Linear(16, 24)
        self.ln_f = torch.nn.LayerNorm(16)
        self.lm_head = torch.nn.Linear(16, 10, bias=False)
        self.frozen = torch.nn.Parameter(torch.ones(3), requires_grad=False)


def set_grads(model, step):
    g = torch.Generator().manual_seed(1000 + step)
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.randn(p.shape, generator=g)


def run(opt, model, steps):
    for s in steps:
        set_grads(model, s)
        opt.step()


def values(model):
    return [p.detach().clone() for p in model.parameters()]


def assert_close(a, b):
    for x, y in zip(values(a), values(b)):
        torch.testing.assert_close(x, y, **TOL)


OPTIONS = [
    dict(lr=0.01),
    dict(lr=0.01, weight_decay=0.0),
    dict(lr=0.003, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3),
    dict(lr=0.01, num_query_groups=2),
    dict(lr=0.01, num_query_groups=1),
    dict(lr=0.01, maximize=True),
]


@pytest.mark.parametrize("hp", OPTIONS, ids=lambda hp: ",".join(f"{k}={v}" for k, v in hp.items()))
def test_steps_match_the_reference(hp):
    hp = {**BASE, **hp}
    ref_model, our_model = Model(), Model()
    ref = pytorch_optimizer.AdamMini(ref_model, **hp)
    ours = ot.AdamMini(our_model, **hp)
    for s in range(STEPS):
        for m, o in ((ref_model, ref), (our_model, ours)):
            set_grads(m, s)
            o.step()
        assert_close(our_model, ref_model)
    # The rules really differ by name: a whole-tensor block is not Adam.
    plain_model = Model()
    plain = ot.AdamMini(list(plain_model.parameters()), **hp)
    run(plain, plain_model, range(STEPS))
    assert any(not torch.allclose(x, y, **TOL) for x, y in zip(values(plain_model), values(ref_model)))


def test_groups_as_the_reference():
    ref = pytorch_optimizer.AdamMini(Model(), lr=0.01, **BASE)
    ours = ot.AdamMini(Model(), lr=0.01, **BASE)
    assert len(ours.param_groups) == len(ref.param_groups) == sum(1 for p in Model().parameters() if p.requires_grad)
    for g, r in zip(ours.param_groups, ref.param_groups):
        assert g["name"] == r["name"]
        assert g["weight_decay"] == r["weight_decay"]
        assert g.get("parameter_per_head") == r.get("parameter_per_head")


@pytest.mark.parametrize("save_at", [1, 7])
@pytest.mark.parametrize("direction", ["ours_to_ref", "ref_to_ours"])
def test_state_dicts_cross_load(direction, save_at):
    hp = {**BASE, "lr": 0.01, "num_query_groups": 2}
    whole_model = Model()
    whole = pytorch_optimizer.AdamMini(whole_model, **hp)
    run(whole, whole_model, range(STEPS))

    first_model = Model()
    first = (ot.AdamMini if direction == "ours_to_ref" else pytorch_optimizer.AdamMini)(first_model, **hp)
    run(first, first_model, range(save_at))
    buf = io.BytesIO()
    torch.save({"model": first_model.state_dict(), "opt": first.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=False)

    second_model = Model(seed=1)
    second_model.load_state_dict(saved["model"])
    if direction == "ours_to_ref":
        second = pytorch_optimizer.AdamMini(second_model, **hp)
        ot.load_into(second, saved["opt"])
        st = second.state[second_model.layers[0].q_proj.weight]
        assert st["m"].shape == (4, 64) and st["head"] == 4 and st["v_mean"].shape == (4,)
        st = second.state[second_model.attn.qkv.weight]
        assert st["m"].shape == (2, 4, 96) and st["v_mean"].shape == (2, 4)
        st = second.state[second_model.mlp.weight]
        assert st["v_mean"].dim() == 0 and float(st["dimension"]) == 16 * 24 and st["reduced"] is False
    else:
        second = ot.AdamMini(second_model, **hp)
        second.load_state_dict(saved["opt"])
    run(second, second_model, range(save_at, STEPS))
    assert_close(second_model, whole_model)


def test_own_round_trip_is_exact():
    hp = {**BASE, "lr": 0.01}
    a_model, b_model = Model(), Model()
    a = ot.AdamMini(a_model, **hp)
    run(a, a_model, range(5))
    b_model.load_state_dict(a_model.state_dict())
    b = ot.AdamMini(b_model, **hp)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # torch shares the tensors of a live state dict
    buf.seek(0)
    b.load_state_dict(torch.load(buf))
    run(a, a_model, range(5, 12))
    run(b, b_model, range(5, 12))
    for x, y in zip(values(a_model), values(b_model)):
        assert torch.equal(x, y)


def test_named_parameters_pairs_pick_the_same_rules():
    hp = {**BASE, "lr": 0.01}
    ref_model, our_model = Model(), Model()
    ref = pytorch_optimizer.AdamMini(ref_model, **hp)
    pairs = [(n, p) for n, p in our_model.named_parameters() if p.requires_grad]
    ours = ot.AdamMini(pairs, **hp)
    assert len(ours.param_groups) == 1 and ours.param_groups[0]["param_names"][0] == "embed_tokens.weight"
    run(ref, ref_model, range(10))
    run(ours, our_model, range(10))
    assert_close(our_model, ref_model)


def test_errors_name_the_input():
    with pytest.raises(ValueError, match="num_heads"):
        ot.AdamMini(Model(), num_embeds=16, num_heads=3)
    # A query/key projection whose size is not a whole number of heads.
    model = Model()
    opt = ot.AdamMini(model, num_embeds=16, num_heads=4)
    bad = torch.nn.Parameter(torch.zeros(5, 7))
    bad.grad = torch.ones(5, 7)
    opt.add_param_group({"name": "extra.q_proj.weight", "params": [bad]})
    with pytest.raises(ValueError, match="q_proj.weight"):
        opt.step()
    assert torch.equal(bad, torch.zeros(5, 7))  # nothing changed
    # Two parameters under one name in a group.
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    a.grad, b.grad = torch.ones(3), torch.ones(3)
    opt = ot.AdamMini([("x.weight", a), ("x.weight", b)])
    with pytest.raises(ValueError, match="appears twice"):
        opt.step()
    # A reference state reduced across processes.
    model = Model()
    opt = ot.AdamMini(model, **BASE)
    run(opt, model, range(2))
    sd = opt.state_dict()
    for st in sd["state"].values():
        if "reduced" in st:
            st["reduced"] = True
    with pytest.raises(ValueError, match="model_sharding"):
        ot.AdamMini(Model(), **BASE).load_state_dict(sd)
