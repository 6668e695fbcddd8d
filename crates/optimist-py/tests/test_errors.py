"""The drop-in contract: construction, validation, in-place state, skipped
parameters, closures, parameter groups and every input error."""

import inspect

import pytest
import torch

import optimist
import optimist.torch as ot


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2))


def backward(m, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(7, 6, generator=g)
    m(x).square().mean().backward()


def test_one_class_per_registry_optimizer_with_torch_state():
    names = {s["name"] for s in optimist.registry() if s["state_buffers"] is not None}
    # L-BFGS keeps its state in the engine (torch's layout in state_dict()).
    assert set(ot.CLASSES) == names | {"lbfgs"}
    assert {"adamw", "lion", "lamb", "adafactor", "muon", "sophiah", "adagc"} <= names
    for name, cls in ot.CLASSES.items():
        assert issubclass(cls, torch.optim.Optimizer)
        spec = next(s for s in optimist.registry() if s["name"] == name)
        sig = inspect.signature(cls)
        positional = [k for k, v in sig.parameters.items() if v.kind != v.KEYWORD_ONLY]
        assert positional[1:] == list(spec["defaults"])
        if name != "lbfgs":
            assert "threads" in sig.parameters and "cautious" in sig.parameters
        assert spec["summary"] in cls.__doc__


def test_reference_names_and_defaults():
    m = model()
    opt = ot.AdamW(m.parameters(), 2e-3, betas=(0.8, 0.99))
    g = opt.param_groups[0]
    assert g["lr"] == 2e-3 and g["betas"] == (0.8, 0.99) and g["weight_decay"] == 0.01
    assert g["eps"] == 1e-8 and g["amsgrad"] is False


@pytest.mark.parametrize(
    "kwargs, field, value",
    [
        ({"lr": -1.0}, "lr", "-1"),
        ({"betas": (0.9, 1.5)}, "betas[1]", "1.5"),
        ({"eps": -1e-3}, "eps", "-0.001"),
        ({"weight_decay": float("nan")}, "weight_decay", "nan"),
    ],
)
def test_invalid_hyperparameters_are_value_errors(kwargs, field, value):
    with pytest.raises(ValueError) as e:
        ot.AdamW(model().parameters(), **kwargs)
    assert field in str(e.value) and value in str(e.value)


def test_invalid_hyperparameter_set_in_a_group_fails_at_step():
    m = model()
    opt = ot.Lion(m.parameters(), lr=1e-3)
    opt.param_groups[0]["betas"] = (1.0, 0.99)
    backward(m)
    with pytest.raises(ValueError, match=r"betas\[0\] = 1"):
        opt.step()


def test_unknown_argument_is_a_type_error():
    with pytest.raises(TypeError, match="momentum"):
        ot.AdamW(model().parameters(), momentum=0.9)
    with pytest.raises(ValueError, match="threads"):
        ot.AdamW(model().parameters(), threads=0)


def test_state_is_torch_tensors_updated_in_place():
    m = model()
    opt = ot.AdamW(m.parameters(), lr=1e-2)
    backward(m)
    opt.step()
    w = m[0].weight
    st = opt.state[w]
    assert set(st) == {"step", "exp_avg", "exp_avg_sq"}
    assert st["exp_avg"].shape == w.shape and st["exp_avg"].dtype == torch.float32
    held = st["exp_avg"]
    ptr = held.data_ptr()
    before = held.clone()
    wptr = w.data_ptr()
    opt.zero_grad()
    backward(m, 2)
    opt.step()
    assert opt.state[w]["exp_avg"] is held and held.data_ptr() == ptr
    assert not torch.equal(held, before)
    assert w.data_ptr() == wptr
    assert st["step"].item() == 2.0 and opt.param_groups[0]["step"] == 2


def test_grad_none_is_skipped():
    m = model()
    opt = ot.Adam(m.parameters(), lr=1e-2)
    backward(m)
    m[2].bias.grad = None
    b = m[2].bias.detach().clone()
    opt.step()
    assert torch.equal(m[2].bias.detach(), b)
    assert m[2].bias not in opt.state
    assert not torch.equal(m[0].weight.detach(), model()[0].weight.detach())


def test_step_closure_runs_with_grad_and_returns_loss():
    m = model()
    opt = ot.SGD(m.parameters(), lr=0.1)
    seen = {}

    def closure():
        seen["grad"] = torch.is_grad_enabled()
        opt.zero_grad()
        x = torch.ones(3, 6)
        loss = m(x).square().mean()
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    assert seen["grad"] and isinstance(loss, torch.Tensor)


def test_hyperparameters_reread_from_param_groups():
    m = model()
    opt = ot.AdamW(m.parameters(), lr=1e-2, weight_decay=0.0)
    backward(m)
    opt.step()
    opt.param_groups[0]["lr"] = 0.0
    before = [p.detach().clone() for p in m.parameters()]
    backward(m, 3)
    opt.step()
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, m.parameters()))
    # weight decay alone (lr as a tensor, as some schedulers set it)
    opt.param_groups[0]["lr"] = torch.tensor(0.5)
    opt.param_groups[0]["weight_decay"] = 1.0
    for p in m.parameters():
        p.grad.zero_()
    w = m[0].weight.detach().clone()
    m_state = opt.state[m[0].weight]
    m_state["exp_avg"].zero_()
    opt.step()
    assert torch.allclose(m[0].weight.detach(), w * 0.5, atol=1e-7)


def test_add_param_group():
    m = model()
    opt = ot.Lamb(list(m[0].parameters()), lr=1e-2)
    opt.add_param_group({"params": list(m[2].parameters()), "lr": 0.0})
    with pytest.raises(ValueError, match="weight_decay"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(3))], "weight_decay": -1.0})
    backward(m)
    b0 = m[0].bias.detach().clone()
    b2 = m[2].bias.detach().clone()
    opt.step()
    assert not torch.equal(b0, m[0].bias.detach())
    assert torch.equal(b2, m[2].bias.detach())
    assert m[2].bias in opt.state


def test_results_do_not_depend_on_threads():
    torch.manual_seed(3)
    shapes = [(300, 70), (70,), (1000,)]
    runs = []
    for threads in (1, 2, 3):
        ps = [torch.nn.Parameter(torch.linspace(-1, 1, int(torch.tensor(s).prod())).reshape(s)) for s in shapes]
        opt = ot.AdamW(ps, lr=1e-2, threads=threads)
        for step in range(3):
            g = torch.Generator().manual_seed(step)
            for p in ps:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        runs.append(torch.cat([p.detach().flatten() for p in ps]))
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


def leaf(t):
    return torch.nn.Parameter(t)


def test_non_contiguous_parameter_is_an_error():
    base = torch.randn(4, 6)
    p = leaf(base.t())  # a transposed view: strides (1, 6)
    assert not p.is_contiguous()
    opt = ot.AdamW([p])
    p.grad = torch.ones(6, 4)
    with pytest.raises(ValueError, match="not contiguous"):
        opt.step()


def test_non_contiguous_gradient_is_an_error():
    p = leaf(torch.randn(6, 4))
    opt = ot.AdamW([p])
    p.grad = torch.ones(4, 6).t()
    with pytest.raises(ValueError, match="gradient .*not contiguous"):
        opt.step()


def test_sparse_gradient_is_an_error():
    emb = torch.nn.Embedding(10, 3, sparse=True)
    opt = ot.Adam(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    assert emb.weight.grad.is_sparse
    with pytest.raises(ValueError, match="sparse"):
        opt.step()


def test_non_cpu_tensor_is_an_error():
    p = leaf(torch.zeros(3, device="meta"))
    opt = ot.AdamW([p])
    p.grad = torch.zeros(3, device="meta")
    with pytest.raises(ValueError, match="device 'meta'"):
        opt.step()


def test_unsupported_dtype_is_an_error():
    p = leaf(torch.zeros(3, dtype=torch.float64))
    opt = ot.AdamW([p])
    p.grad = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="float64"):
        opt.step()


def test_shared_state_memory_is_an_error():
    a, b = leaf(torch.zeros(4)), leaf(torch.zeros(4))
    opt = ot.AdamW([a, b])
    a.grad, b.grad = torch.ones(4), torch.ones(4)
    opt.step()
    opt.state[b]["exp_avg"] = opt.state[a]["exp_avg"]
    with pytest.raises(ValueError, match="share memory"):
        opt.step()


def test_wrong_state_size_is_an_error():
    a = leaf(torch.zeros(4))
    opt = ot.AdamW([a])
    a.grad = torch.ones(4)
    opt.step()
    opt.state[a]["exp_avg"] = torch.zeros(5)
    with pytest.raises(ValueError, match="exp_avg"):
        opt.step()


def test_wrong_state_dtype_is_an_error():
    a = leaf(torch.zeros(4))
    opt = ot.AdamW([a])
    a.grad = torch.ones(4)
    opt.step()
    opt.state[a]["exp_avg_sq"] = torch.zeros(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="exp_avg_sq"):
        opt.step()


def test_muon_rejects_vectors_by_name():
    p = leaf(torch.zeros(4))
    opt = ot.Muon([p])
    p.grad = torch.ones(4)
    with pytest.raises(ValueError, match="muon"):
        opt.step()
