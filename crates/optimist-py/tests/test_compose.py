"""Composition: cautious masking, Lookahead around any optimizer, the
Muon + AdamW preset, Sophia-H with Hessian-vector products from autograd."""

import pytest
import pytorch_optimizer
import torch

import optimist.torch as ot
from test_exact import CASE_LIST, compare, grads_for, kwargs_of, make_params, run, saved, STEPS


def test_lion_cautious_matches_reference():
    case = next(c for c in CASE_LIST if c["optimizer"] == "lion")
    kw = dict(kwargs_of(case), cautious=True)
    pr, po = make_params(case), make_params(case)
    ref = pytorch_optimizer.Lion(pr, **kw)
    opt = ot.Lion(po, **kw)
    for s in range(STEPS):
        run(ref, pr, case, [s])
        run(opt, po, case, [s])
        compare(case, po, pr)


def test_generic_cautious_masks_disagreeing_elements():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = ot.SGD([p], lr=0.1, momentum=0.9, cautious=True)
    p.grad = torch.tensor([1.0, 1.0, 1.0, 1.0])
    opt.step()
    after1 = p.detach().clone()
    # momentum 0.9 keeps the update positive where the new gradient is a small negative
    p.grad = torch.tensor([-0.1, 1.0, -0.1, 1.0])
    opt.step()
    moved = p.detach() != after1
    assert moved.tolist() == [False, True, False, True]
    with pytest.raises(ValueError, match="cautious"):
        ot.Adafactor([torch.nn.Parameter(torch.zeros(3))], cautious=True)




def lookahead_cases():
    import glob
    import json
    import os

    from test_exact import CASES

    out = []
    for path in sorted(glob.glob(os.path.join(CASES, "lookahead-*.json"))):
        c = json.load(open(path))
        if c.get("lr_schedule") or c.get("grad_clip"):
            continue
        inner = c["hparams"].get("inner") or {}
        if inner.get("optimizer") in ot.CLASSES and hasattr(torch.optim, ot.CLASSES[inner["optimizer"]].__name__):
            out.append(c)
    return out


LA_CASES = lookahead_cases()


def test_lookahead_cases_present():
    assert len(LA_CASES) >= 3


@pytest.mark.parametrize("case", LA_CASES, ids=[c["id"] for c in LA_CASES])
def test_lookahead_matches_reference(case):
    hp = dict(case["hparams"])
    inner = hp.pop("inner")
    ikw = {k: tuple(v) if isinstance(v, list) else v for k, v in inner.get("hparams", {}).items()}
    pr, po = make_params(case), make_params(case)
    cls = ot.CLASSES[inner["optimizer"]]
    ref = pytorch_optimizer.Lookahead(getattr(torch.optim, cls.__name__)(pr, **ikw), **hp)
    opt = ot.Lookahead(cls(po, **ikw), **hp)
    for s in range(STEPS):
        run(ref, pr, case, [s])
        run(opt, po, case, [s])
        compare(case, po, pr)
    # state dict in the reference's layout: loads into the reference and continues identically
    sd = saved(opt)
    p2 = [torch.nn.Parameter(p.detach().clone()) for p in po]
    ref2 = pytorch_optimizer.Lookahead(getattr(torch.optim, cls.__name__)(p2, **ikw), **hp)
    ref2.load_state_dict(sd)
    run(ref2, p2, case, range(STEPS, STEPS + 7))
    run(opt, po, case, range(STEPS, STEPS + 7))
    compare(case, po, p2)


def test_lookahead_validates_like_the_core():
    with pytest.raises(ValueError, match="alpha"):
        ot.Lookahead(ot.AdamW([torch.nn.Parameter(torch.zeros(2))]), alpha=1.0)


def test_muon_adamw_preset_equals_two_optimizers():
    torch.manual_seed(0)
    model = torch.nn.ModuleDict({
        "embed": torch.nn.Embedding(11, 8),
        "hidden": torch.nn.Linear(8, 8),
        "lm_head": torch.nn.Linear(8, 11),
    })
    twin = {k: v.detach().clone() for k, v in model.state_dict().items()}
    muon_hp = {"lr": 0.02, "weight_decay": 0.05}
    adamw_hp = {"lr": 3e-3, "weight_decay": 0.01}
    opt = ot.MuonAdamW(model.named_parameters(), muon=muon_hp, adamw=adamw_hp)
    names = {g["optimizer"]: [n for n, p in model.named_parameters() if any(p is q for q in g["params"])]
             for g in opt.param_groups}
    assert names["muon"] == ["hidden.weight"]
    m2 = torch.nn.ModuleDict({
        "embed": torch.nn.Embedding(11, 8),
        "hidden": torch.nn.Linear(8, 8),
        "lm_head": torch.nn.Linear(8, 11),
    })
    m2.load_state_dict(twin)
    mats = [m2["hidden"].weight]
    rest = [p for n, p in m2.named_parameters() if n != "hidden.weight"]
    o_muon, o_adamw = ot.Muon(mats, **muon_hp), ot.AdamW(rest, **adamw_hp)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    for s in range(6):
        x = torch.tensor([s % 11, (3 * s) % 11, 5])
        for m, opts in ((model, [opt]), (m2, [o_muon, o_adamw])):
            for o in opts:
                o.zero_grad()
            m["lm_head"](torch.relu(m["hidden"](m["embed"](x)))).square().mean().backward()
            for o in opts:
                o.step()
        sched.step()
        for o in (o_muon, o_adamw):
            for g in o.param_groups:
                g["lr"] = g.setdefault("initial_lr", g["lr"]) / (1 + s + 1)
    for (n, a), b in zip(model.named_parameters(), m2.parameters()):
        assert torch.equal(a.detach(), b.detach()), n


def sophia_case():
    import glob
    import json
    import os

    from test_exact import CASES

    return json.load(open(sorted(glob.glob(os.path.join(CASES, "sophiah-*.json")))[0]))


def test_sophiah_explicit_hessian_matches_reference():
    case = sophia_case()
    kw = dict(kwargs_of(case), update_period=3)
    pr, po = make_params(case), make_params(case)
    ref = pytorch_optimizer.SophiaH(pr, **kw)
    opt = ot.SophiaH(po, **kw)
    for s in range(STEPS):
        gs = grads_for(case, s)
        for p, g in zip(pr, gs):
            p.grad = g.clone()
        for p, g in zip(po, gs):
            p.grad = g.clone()
        if s % 3 == 0:  # the steps where an estimate is due (1, 4, 7, ...)
            hs = [g.abs() * 0.5 + 0.01 for g in grads_for(case, s + 100)]
            ref.step(hessian=[h.clone() for h in hs])
            opt.step(hessian=[h.clone() for h in hs])
        else:
            ref.step()
            opt.step()
        compare(case, po, pr)


def test_sophiah_hutchinson_from_autograd_matches_reference():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))
    twin = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1))
    twin.load_state_dict(net.state_dict())
    kw = {"lr": 0.05, "update_period": 2, "weight_decay": 0.01}
    ref = pytorch_optimizer.SophiaH(twin.parameters(), **kw, num_samples=2, hessian_distribution="rademacher")
    opt = ot.SophiaH(net.parameters(), **kw, num_samples=2, hessian_distribution="rademacher")
    x = torch.randn(16, 5)
    y = torch.randn(16, 1)
    for s in range(8):
        for model, o in ((twin, ref), (net, opt)):
            def closure(model=model, o=o):
                o.zero_grad()
                loss = (model(x) - y).square().mean()
                loss.backward(create_graph=True)
                return loss

            torch.manual_seed(100 + s)  # same probes for both
            o.step(closure)
        for a, b in zip(net.parameters(), twin.parameters()):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), s
    assert "hessian_moment" in opt.state[net[0].weight]


def test_sophiah_without_graph_is_a_clear_error():
    p = torch.nn.Parameter(torch.ones(3))
    opt = ot.SophiaH([p])
    p.grad = torch.ones(3)
    with pytest.raises(ValueError, match="create_graph=True"):
        opt.step()
