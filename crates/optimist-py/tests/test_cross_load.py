"""State dicts crossing between optimist and pytorch-optimizer where the two
keep state in different layouts (optimist.torch._LAYOUTS): saved at several
points of a run (before and after SPAM's moment resets and inside its
warm-up, before and after StableSPAM's cosine decay ends, ...) in one
implementation, loaded into the other, continued, and compared with an
uninterrupted reference run. The same with the two roles swapped, and a
round trip through optimist alone (bit for bit)."""

import io

import pytest
import torch

import optimist.torch as ot

pytorch_optimizer = pytest.importorskip("pytorch_optimizer")

STEPS = 30
TOL = {"atol": 1e-6, "rtol": 1e-5}

RUNS = [
    # (registry name, reference class, hyperparameters, save points)
    ("spam", "SPAM", dict(lr=0.01, warmup_epoch=3, update_proj_gap=5, grad_accu_steps=2), (3, 7, 10, 16, 24)),
    ("spam", "SPAM", dict(lr=0.01, weight_decay=0.1, warmup_epoch=6, update_proj_gap=4, grad_accu_steps=1), (5, 9, 13)),
    ("stablespam", "StableSPAM", dict(lr=0.01, t_max=12, eta_min=0.3, update_proj_gap=7), (1, 5, 11, 12, 20)),
    ("stablespam", "StableSPAM", dict(lr=0.01, gamma1=-1.0, update_proj_gap=6), (4, 13)),
    ("aggmo", "AggMo", dict(lr=0.01, betas=(0.0, 0.5, 0.9, 0.99)), (1, 9)),
    ("madgrad", "MADGRAD", dict(lr=0.01, weight_decay=0.01, weight_decouple=True), (1, 14)),
    ("grokfastadamw", "GrokFastAdamW", dict(lr=0.01, grokfast_after_step=5), (3, 12)),
    ("dadaptsgd", "DAdaptSGD", dict(lr=1.0, weight_decay=0.01), (1, 9)),
    ("dadaptadam", "DAdaptAdam", dict(lr=1.0, growth_rate=1.5), (6,)),
    ("dadaptlion", "DAdaptLion", dict(lr=1.0), (6,)),
    ("prodigy", "Prodigy", dict(lr=1.0, safeguard_warmup=True), (6,)),
    ("came", "CAME", dict(lr=0.01), (6,)),
]


def make_params():
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 3), (2, 3, 2, 2), (5,)]
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]


def grads(step):
    g = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(s, generator=g) for s in [(4, 3), (2, 3, 2, 2), (5,)]]


def build(which, name, ref_name, hp, params):
    if which == "ref":
        return getattr(pytorch_optimizer, ref_name)(params, **hp)
    return ot.CLASSES[name](params, **hp)


def run(opt, params, steps):
    for s in steps:
        for p, g in zip(params, grads(s)):
            p.grad = g.clone()
        opt.step()


def saved(opt):
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def worst(a, b):
    return max(((x - y).abs() / (TOL["atol"] + TOL["rtol"] * y.abs())).max().item() for x, y in zip(a, b))


CASES = [
    (name, ref, hp, cut, first, second)
    for name, ref, hp, cuts in RUNS
    for cut in cuts
    for first, second in (("opt", "ref"), ("ref", "opt"), ("opt", "opt"))
]


@pytest.mark.parametrize(
    "name,ref,hp,cut,first,second",
    CASES,
    ids=[f"{n}-{i}-{c}-{f}-to-{s}" for i, (n, _, _, c, f, s) in enumerate(CASES)],
)
def test_cross_load_at_each_phase(name, ref, hp, cut, first, second):
    pr = make_params()
    whole = build("ref" if second != "opt" or first != "opt" else "opt", name, ref, hp, pr)
    run(whole, pr, range(STEPS))
    p1 = make_params()
    o1 = build(first, name, ref, hp, p1)
    run(o1, p1, range(cut))
    sd = saved(o1)
    p2 = [torch.nn.Parameter(p.detach().clone()) for p in p1]
    o2 = build(second, name, ref, hp, p2)
    if second == "ref":
        ot.load_into(o2, sd)
    else:
        o2.load_state_dict(sd)
    run(o2, p2, range(cut, STEPS))
    if first == second == "opt":
        # optimist's own round trip: bit for bit against its uninterrupted run
        assert all(torch.equal(a, b) for a, b in zip(p2, pr)), f"{name}: save/load changed the run"
    else:
        assert worst(p2, pr) <= 1.0, f"{name}: {worst(p2, pr):.3g} x tolerance after loading at step {cut}"


def test_state_dict_is_in_the_reference_layout():
    p = make_params()
    opt = ot.SPAM(p, lr=0.01)
    run(opt, p, range(2))
    sd = opt.state_dict()
    assert sd["state"]["total_step"] == 2 and "warmup" in sd
    assert sd["state"][0]["mask"].all() and sd["state"][0]["exp_avg"].shape == (12,)
    # The optimizer's own state keeps the parameter's shape.
    assert opt.state[p[0]]["exp_avg"].shape == (4, 3)
    p = make_params()
    opt = ot.AggMo(p, lr=0.01, betas=(0.0, 0.9))
    run(opt, p, range(2))
    assert set(opt.state_dict()["state"][0]["momentum_buffer"]) == {0.0, 0.9}
    p = make_params()
    opt = ot.DAdaptAdam(p)
    run(opt, p, range(2))
    g = opt.state_dict()["param_groups"][0]
    assert isinstance(g["numerator_weighted"], torch.Tensor) and g["growth_rate"] == float("inf")


def test_reference_layout_errors():
    p = make_params()
    opt = ot.AggMo(p, lr=0.01, betas=(0.0, 0.9))
    run(opt, p, range(2))
    sd = saved(opt)
    sd["state"][0]["momentum_buffer"] = {0.5: sd["state"][0]["momentum_buffer"][0.0]}
    with pytest.raises(ValueError, match="aggmo: state of parameter 0: momentum_buffer"):
        ot.AggMo(make_params(), lr=0.01, betas=(0.0, 0.9)).load_state_dict(sd)
    p = make_params()
    opt = ot.SPAM(p, lr=0.01)
    run(opt, p, range(2))
    sd = saved(opt)
    sd["state"][0]["mask"][0, 0] = False
    with pytest.raises(ValueError, match="spam: .*density < 1"):
        ot.SPAM(make_params(), lr=0.01).load_state_dict(sd)


def test_grokfast_divides_only_the_default_lr_as_the_reference():
    p = make_params()
    opt = ot.GrokFastAdamW([{"params": p[:1]}, {"params": p[1:], "lr": 0.3}], lr=0.03, grokfast_lamb=2.0)
    ref = pytorch_optimizer.GrokFastAdamW(
        [{"params": make_params()[:1]}, {"params": make_params()[1:], "lr": 0.3}], lr=0.03, grokfast_lamb=2.0
    )
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref.param_groups] == [0.01, 0.3]
