"""optimist optimizers under torch.distributed.

The Rust kernels do no communication: every collective here runs through the
caller's ``torch.distributed`` process group (gloo on CPU, NCCL on GPUs).

- DDP and ``torch.distributed.optim.ZeroRedundancyOptimizer`` need nothing
  from this module: any ``optimist.torch`` class works as the optimizer or
  as ``optimizer_class`` (see docs/distributed.md).
- :class:`Muon` is Muon with whole matrices per rank: each 2-D parameter is
  owned by one rank (round-robin over the matrices sorted by size, largest
  first), which keeps its momentum and runs Newton-Schulz on it; the updated
  matrix is then broadcast from its owner to every rank of the group.
- :class:`LocalShards` steps FSDP2 (``fully_shard``) parameters, which are
  DTensors, through their local shards (``DTensor.to_local()``) with an
  elementwise optimist optimizer.

>>> import torch.distributed as dist, optimist.distributed
>>> opt = optimist.distributed.Muon(model.parameters(), lr=0.02, process_group=None)
"""

import torch
import torch.distributed as dist

from . import torch as _ot

__all__ = ["Muon", "LocalShards", "assign_round_robin"]


def assign_round_robin(sizes, world_size):
    """Owner rank (0 .. world_size-1) of each matrix, given their element
    counts: sorted by size, largest first (ties by position), then dealt
    round-robin, as the reference Muon implementation does for DDP."""
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size: invalid value {world_size!r}: must be an int >= 1")
    order = sorted(range(len(sizes)), key=lambda i: (-int(sizes[i]), i))
    owners = [0] * len(sizes)
    for k, i in enumerate(order):
        owners[i] = k % world_size
    return owners


class Muon(_ot.Muon):
    """Muon (``optimist.torch.Muon``, exact to torch.optim.Muon) with whole
    matrices per rank of ``process_group`` (default: the world group).

    Use it after the gradients are the same on every rank (DDP, or an
    all-reduce of your own). At each step the rank steps only the matrices it
    owns (:func:`assign_round_robin`), so it keeps the momentum of those
    only, then every matrix is broadcast from its owner. The result equals
    one process stepping all matrices (within Muon's tolerance of the replay
    contract; in practice bit for bit, as Newton-Schulz runs the same code on
    the same matrix).

    All parameters must be 2-D (Muon's rule); give the others to another
    optimizer. ``state_dict()`` holds this rank's matrices only;
    :meth:`full_state_dict` gathers every matrix's state on every rank, and
    ``load_state_dict`` of such a full state dict keeps the owned matrices'
    state only, at any world size.
    """

    def __init__(self, params, *args, process_group=None, **kwargs):
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "optimist.distributed.Muon: torch.distributed is not initialized "
                "(call torch.distributed.init_process_group first)"
            )
        self.process_group = process_group
        self._owners = {}
        super().__init__(params, *args, **kwargs)
        self._assign()

    def _params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def _assign(self):
        params = self._params()
        world = dist.get_world_size(self.process_group)
        owners = assign_round_robin([p.numel() for p in params], world)
        self._owners = {p: o for p, o in zip(params, owners)}
        self._rank = dist.get_rank(self.process_group)

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        if hasattr(self, "_owners"):
            self._assign()

    def owner(self, p):
        """Rank (in the process group) that steps parameter ``p``."""
        return self._owners[p]

    def _src(self, owner):
        if self.process_group is None:
            return owner
        return dist.get_global_rank(self.process_group, owner)

    @torch.no_grad()
    def step(self, closure=None):
        """:meth:`step_owned`, then :meth:`sync`."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.step_owned()
        self.sync()
        return loss

    @torch.no_grad()
    def step_owned(self):
        """Steps the matrices this rank owns (no communication)."""
        hidden = {}
        for p in self._params():
            if p.grad is not None and self._owners[p] != self._rank:
                hidden[p] = p.grad
                p.grad = None
        try:
            self._step(None)
        finally:
            for p, g in hidden.items():
                p.grad = g

    @torch.no_grad()
    def sync(self):
        """Broadcasts every matrix with a gradient from its owner (collective)."""
        works = [
            dist.broadcast(p.data, src=self._src(self._owners[p]), group=self.process_group, async_op=True)
            for p in self._params()
            if p.grad is not None
        ]
        for w in works:
            w.wait()

    def full_state_dict(self):
        """The state dict of all matrices (collective: every rank calls it),
        as one process stepping all of them would save it."""
        sd = self.state_dict()
        index = {}
        i = 0
        for g in self.param_groups:
            for p in g["params"]:
                index[i] = p
                i += 1
        state = {}
        for i, p in index.items():
            owner = self._owners[p]
            mine = sd["state"].get(i) if owner == self._rank else None
            box = [mine]
            dist.broadcast_object_list(box, src=self._src(owner), group=self.process_group)
            if box[0] is not None:
                state[i] = box[0]
        return {"state": state, "param_groups": sd["param_groups"]}

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self._assign()
        for p in list(self.state):
            if self._owners.get(p, self._rank) != self._rank:
                del self.state[p]


def _local(p):
    to_local = getattr(p, "to_local", None)
    return to_local() if to_local is not None else p


class LocalShards(torch.optim.Optimizer):
    """An ``optimist.torch`` optimizer stepping the local shards of FSDP2
    parameters: ``LocalShards(model.parameters(), optimist.torch.AdamW,
    lr=...)``. Each DTensor parameter is stepped through
    ``p.to_local()`` (which shares its storage) with ``p.grad.to_local()``;
    plain tensors are stepped as they are.

    Only elementwise rules give the same result as unsharded training
    (AdamW, Adam, Lion, SGD, ...): a rule that looks at a whole tensor
    (Adafactor's factors, LAMB's trust ratio, Muon's Newton-Schulz) would
    see one shard. ``param_groups`` and ``state`` are the inner optimizer's
    (state of the local shards; its ``state_dict()`` is this rank's)."""

    def __init__(self, params, optimizer_class, **defaults):
        groups = list(params)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self._dtensors = []
        inner_groups = []
        with torch.no_grad():
            for g in groups:
                ps = list(g["params"])
                self._dtensors.extend(ps)
                inner_groups.append({**g, "params": [_local(p) for p in ps]})
        self.optimizer = optimizer_class(inner_groups, **defaults)
        self._locals = [p for g in self.optimizer.param_groups for p in g["params"]]
        self._built = False
        torch.optim.Optimizer.__init__(self, [{"params": []}], self.optimizer.defaults)
        self._built = True
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state

    def add_param_group(self, param_group):
        if not getattr(self, "_built", True):
            return super().add_param_group(param_group)
        raise ValueError("LocalShards: add_param_group is not supported; build a new LocalShards")

    def zero_grad(self, set_to_none=True):
        for p in self._dtensors:
            if p.grad is not None:
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for i, (p, local) in enumerate(zip(self._dtensors, self._locals)):
            if _local(p).data_ptr() != local.data_ptr():
                raise RuntimeError(
                    f"LocalShards: parameter {i}: its local shard moved to new storage "
                    "since the optimizer was built; build the optimizer after fully_shard"
                )
            local.grad = None if p.grad is None else _local(p.grad)
        try:
            self.optimizer.step()
        finally:
            for local in self._locals:
                local.grad = None
        return loss

    def state_dict(self):
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict):
        self.optimizer.load_state_dict(state_dict)
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state
