"""torch.distributed.checkpoint (DCP) saves and loads an optimist.torch
optimizer as it does a torch.optim one: through
``get_optimizer_state_dict``/``set_optimizer_state_dict`` (the FQN-keyed
form FSDP2 and DCP use), in one process."""

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

import optimist.torch as ot


def make_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def train(model, opt, steps):
    for s in steps:
        g = torch.Generator().manual_seed(s)
        x = torch.randn(16, 6, generator=g)
        y = torch.randn(16, 3, generator=g)
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("name", ["adamw", "lion", "adafactor", "prodigy", "adamw_schedulefree"])
def test_dcp_save_load_continues_identically(name, tmp_path):
    cls = ot.CLASSES[name]
    ma = make_model()
    oa = cls(ma.parameters())
    train(ma, oa, range(8))

    mb = make_model()
    ob = cls(mb.parameters())
    train(mb, ob, range(4))
    dcp.save(
        {"model": mb.state_dict(), "optim": get_optimizer_state_dict(mb, ob)},
        checkpoint_id=str(tmp_path / "ckpt"),
    )

    mc = make_model()
    oc = cls(mc.parameters())
    state = {"model": mc.state_dict(), "optim": get_optimizer_state_dict(mc, oc)}
    dcp.load(state, checkpoint_id=str(tmp_path / "ckpt"))
    mc.load_state_dict(state["model"])
    set_optimizer_state_dict(mc, oc, state["optim"])
    train(mc, oc, range(4, 8))
    for x, y in zip(mc.parameters(), ma.parameters()):
        assert torch.equal(x, y), name
