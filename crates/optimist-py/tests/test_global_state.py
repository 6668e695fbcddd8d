"""Optimizers with optimizer-wide state (learning-rate-free rules,
schedule-free rules, SPAM): the state lives in the parameter groups, saves
and loads with ``state_dict()``, and the schedule-free classes switch
between the training and the evaluation point with ``train()``/``eval()``
as the schedulefree package does."""

import io

import pytest
import torch

import optimist.torch as ot

GLOBAL = sorted(n for n, c in ot.CLASSES.items() if ot.SPECS[n]["global_state"])
SCHEDULE_FREE = sorted(n for n in GLOBAL if "train_mode" in ot.SPECS[n]["global_state"])


def test_global_state_classes_are_exposed():
    assert {"prodigy", "dadaptadam", "dadaptsgd", "dadaptlion", "spam", "stablespam"} <= set(GLOBAL)
    assert {"adamw_schedulefree", "sgd_schedulefree", "schedulefreeradam"} <= set(SCHEDULE_FREE)


def model():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))]


def grads(step, params):
    g = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)


def run(opt, params, steps):
    for s in steps:
        grads(s, params)
        opt.step()


def saved(opt):
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize("name", GLOBAL)
def test_save_load_continues_bit_for_bit(name):
    cls = ot.CLASSES[name]
    pa = model()
    a = cls(pa, threads=1)
    run(a, pa, range(12))
    pb = model()
    b = cls(pb, threads=1)
    run(b, pb, range(6))
    for key in ot.SPECS[name]["global_state"]:
        assert key in b.state_dict()["param_groups"][0], key
    pc = [torch.nn.Parameter(p.detach().clone()) for p in pb]
    c = cls(pc, threads=1)
    c.load_state_dict(saved(b))
    run(c, pc, range(6, 12))
    for x, y in zip(pc, pa):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("name", GLOBAL)
def test_threads_do_not_change_the_values(name):
    cls = ot.CLASSES[name]
    p1, p2 = model(), model()
    o1, o2 = cls(p1, threads=1), cls(p2, threads=2)
    run(o1, p1, range(5))
    run(o2, p2, range(5))
    for x, y in zip(p1, p2):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("name", GLOBAL)
def test_each_group_has_its_own_global_state(name):
    # Two groups step as two separate optimizers would (per-group state, as
    # the references keep it).
    cls = ot.CLASSES[name]
    pa, pb = model()
    opt = cls([{"params": [pa]}, {"params": [pb]}], threads=1)
    qa, qb = model()
    oa, ob = cls([qa], threads=1), cls([qb], threads=1)
    run(opt, [pa, pb], range(4))
    run(oa, [qa, qb], range(4))  # qb has a gradient but is not in oa: ignored
    for s in range(4):
        grads(s, [qa, qb])
        ob.step()
    keys = ot.SPECS[name]["global_state"]
    for g, lone in zip(opt.param_groups, (oa.param_groups[0], ob.param_groups[0])):
        for k in keys:
            assert float(g[k]) == float(lone[k]), (name, k)
    assert torch.equal(pa, qa) and torch.equal(pb, qb)


def reference_schedule_free(name, params):
    sf = pytest.importorskip("schedulefree")
    cls = {"adamw_schedulefree": sf.AdamWScheduleFree, "sgd_schedulefree": sf.SGDScheduleFree}[name]
    kw = {"lr": 0.01} if name == "adamw_schedulefree" else {"lr": 0.1}
    return cls(params, warmup_steps=3, weight_decay=0.01, **kw), kw


@pytest.mark.parametrize("name", ["adamw_schedulefree", "sgd_schedulefree"])
def test_train_eval_match_the_schedulefree_package(name):
    pr, po = model(), model()
    ref, kw = reference_schedule_free(name, pr)
    opt = ot.CLASSES[name](po, warmup_steps=3, weight_decay=0.01, **kw)
    ref.train()
    opt.train()
    run(ref, pr, range(8))
    run(opt, po, range(8))
    for step in range(2):
        ref.eval()
        opt.eval()
        assert opt.param_groups[0]["train_mode"] is False
        for x, y in zip(po, pr):
            torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)
        ref.train()
        opt.train()
        for x, y in zip(po, pr):
            torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)
        run(ref, pr, range(8 + 3 * step, 11 + 3 * step))
        run(opt, po, range(8 + 3 * step, 11 + 3 * step))


@pytest.mark.parametrize("name", SCHEDULE_FREE)
def test_step_in_eval_mode_is_an_error_and_changes_nothing(name):
    params = model()
    opt = ot.CLASSES[name](params)
    run(opt, params, range(3))
    opt.eval()
    before = [p.detach().clone() for p in params]
    grads(3, params)
    with pytest.raises(ValueError, match="eval mode"):
        opt.step()
    for x, y in zip(params, before):
        assert torch.equal(x, y)
    opt.eval()  # already there: no change
    for x, y in zip(params, before):
        assert torch.equal(x, y)


@pytest.mark.parametrize("name", SCHEDULE_FREE)
def test_train_eval_before_any_step_do_nothing(name):
    params = model()
    before = [p.detach().clone() for p in params]
    opt = ot.CLASSES[name](params)
    opt.eval()
    opt.train()
    for x, y in zip(params, before):
        assert torch.equal(x, y)
    run(opt, params, range(2))  # and training starts normally


def test_eval_point_is_saved_and_restored():
    params = model()
    opt = ot.AdamWScheduleFree(params, lr=0.01)
    run(opt, params, range(5))
    opt.eval()
    sd = saved(opt)
    copy = [torch.nn.Parameter(p.detach().clone()) for p in params]
    other = ot.AdamWScheduleFree(copy, lr=0.01)
    other.load_state_dict(sd)
    assert other.param_groups[0]["train_mode"] is False
    other.train()
    opt.train()
    for x, y in zip(copy, params):
        assert torch.equal(x, y)
