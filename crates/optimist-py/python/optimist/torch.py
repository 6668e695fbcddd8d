"""optimist optimizers as ``torch.optim.Optimizer`` subclasses.

One class per optimizer of the registry, generated from it: the class name,
argument names, defaults and docstring come from the same source as
``optimist list``. Every step is one call into Rust for all tensors of all
parameter groups, with the GIL released; the parameters and the state
tensors in ``self.state[p]`` are updated in place (no copy).

>>> import torch, optimist.torch
>>> model = torch.nn.Linear(4, 2)
>>> opt = optimist.torch.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
>>> model(torch.randn(8, 4)).square().mean().backward()
>>> opt.step()
"""

import inspect
import json
import math
import re

import torch

from . import _optimist

__all__ = ["OptimistOptimizer", "load_into"]

_TYPES = (torch.float32, torch.bfloat16, torch.float16, torch.strided, torch.uint8)

_STATE_DTYPES = {
    None: "f32", torch.float32: "f32", "f32": "f32", "float32": "f32",
    torch.bfloat16: "bf16", "bf16": "bf16", "bfloat16": "bf16",
    torch.uint8: "q8", "q8": "q8", "8bit": "q8", "int8": "q8",
}


def _state_dtype(value, name):
    """The core's name of a ``state_dtype`` argument."""
    try:
        return _STATE_DTYPES[value]
    except (KeyError, TypeError):
        raise ValueError(
            f"{name}: invalid state_dtype = {value!r}: expected torch.float32, "
            "torch.bfloat16 (\"bf16\") or \"q8\" (8-bit block-wise)"
        ) from None
#: Suffix of the block scales of an 8-bit state buffer in ``self.state[p]``.
_SCALES = "_scales"

#: Registry entries by name.
SPECS = {s["name"]: s for s in json.loads(_optimist.registry_json())}
_RESERVED = ("params", "threads")


def _jsonable(key, value, name):
    """A group value as JSON, checking numbers (JSON cannot carry NaN or inf;
    an unbounded field whose default is null, such as ``growth_rate``, takes
    +inf as null, as the core reads it)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: invalid {key} = {value!r}: must be a number")
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        if (
            isinstance(value, float)
            and value == math.inf
            and name in SPECS
            and key in SPECS[name]["defaults"]
            and SPECS[name]["defaults"][key] is None
        ):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: invalid {key} = {value}: must be a finite number")
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(f"{key}[{i}]", v, name) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _jsonable(f"{key}.{k}", v, name) for k, v in value.items()}
    raise ValueError(f"{name}: invalid {key} = {value!r}: unsupported type {type(value).__name__}")


def _state_shape(buffer, values, p):
    """Shape of a state tensor created by Rust: the parameter's shape when it
    has one value per element, torch's shapes for Adafactor's factors, a
    scalar for one value, else flat."""
    n = values.numel()
    shape = tuple(p.shape)
    if n == p.numel():
        return shape
    if buffer == "row_var" and len(shape) >= 2:
        return shape[:-1] + (1,)
    if buffer == "col_var" and len(shape) >= 2:
        return shape[:-2] + (1,) + shape[-1:]
    if buffer in ("exp_avg_sq_row", "exp_avg_res_row") and len(shape) >= 2:
        return shape[:-1]  # CAME's factors, in pytorch-optimizer's shapes
    if buffer in ("exp_avg_sq_col", "exp_avg_res_col") and len(shape) >= 2:
        return shape[:-2] + shape[-1:]
    if n == 1:
        return ()
    return (n,)


class OptimistOptimizer(torch.optim.Optimizer):
    """Base of the generated classes; see ``optimist.torch.<Name>.__doc__``."""

    _name = None
    _defaults = {}
    _buffers = ()

    def __init__(self, params, *args, threads=None, cautious=None, state_dtype=None, **kwargs):
        names = list(self._defaults)
        if len(args) > len(names):
            raise TypeError(
                f"{type(self).__name__}() takes at most {len(names) + 1} positional arguments"
            )
        hp = dict(self._defaults)
        for key, value in zip(names, args):
            hp[key] = value
        for key, value in kwargs.items():
            if key not in hp:
                raise TypeError(
                    f"{type(self).__name__}() got an unexpected keyword argument '{key}' "
                    f"(hyperparameters: {', '.join(names)}; and threads, cautious)"
                )
            hp[key] = value
        if cautious is not None:
            if "cautious" in self._defaults:
                hp["cautious"] = cautious
            else:
                # Cautious masking (optimist_core::cautious) on any rule exposing its update.
                hp["cautious"] = bool(cautious)
        elif "cautious" not in hp:
            hp["cautious"] = False
        self._check_threads(threads)
        self._threads = threads
        self._state_dtype = _state_dtype(state_dtype, self._name)
        if self._state_dtype != "f32":
            _optimist.check_state_dtype(self._name, self._state_dtype)
        self._stepper = _optimist.Stepper(_TYPES, self._state_dtype)
        layout = _LAYOUTS.get(self._name)
        if layout is not None:
            layout.defaults(hp)
        super().__init__(params, hp)

    @staticmethod
    def _check_threads(threads):
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 4096
        ):
            raise ValueError(f"threads: invalid value {threads!r}: must be an int from 1 to 4096")

    def _group_name(self, group):
        return self._name

    def _spec_defaults(self, group):
        return SPECS[self._group_name(group)]["defaults"]

    def _group_buffers(self, group):
        return SPECS[self._group_name(group)]["state_buffers"]

    def _generic_cautious(self, group):
        """Cautious masking of the engine (for rules without their own flag)."""
        if "cautious" in self._spec_defaults(group):
            return False
        return bool(group.get("cautious", False))

    def _hparams(self, group):
        name = self._group_name(group)
        return {k: _jsonable(k, group[k], name) for k in self._spec_defaults(group)}

    def _check_group(self, group):
        """Raises ValueError naming the first invalid hyperparameter."""
        name = self._group_name(group)
        cfg = {k: _jsonable(k, group[k], name) for k in self._spec_defaults(group)}
        _optimist.validate(name, json.dumps(cfg), self._generic_cautious(group))

    def add_param_group(self, param_group):
        if isinstance(param_group, dict):
            merged = dict(self.defaults)
            merged.update(param_group)
            self._check_group(merged)
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure=None):
        """One optimization step. ``closure`` re-evaluates the model and
        returns the loss; it runs with gradients enabled."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._step(None)
        return loss

    @staticmethod
    def _state_entries(st, buffers, scale_keys):
        """The state buffers as the core takes them: tensors, or (codes,
        scales) of 8-bit state, whose codes have their block scales beside
        them under ``scale_keys`` (codes without scales reach the core,
        which names the missing scales)."""
        for k in scale_keys:
            if k in st:
                return [(st[b], st[k]) if b in st and k in st else st.get(b) for b, k in zip(buffers, scale_keys)]
        return [st.get(b) for b in buffers]

    def _group_globals(self, group):
        return SPECS[self._group_name(group)]["global_state"]

    def _globals_of(self, group):
        """The group's optimizer-wide state (the distance estimate of
        learning-rate-free rules, schedule-free averaging weights), kept in
        the group under the reference's names; None before its first step."""
        names = self._group_globals(group)
        if not names or any(n not in group for n in names):
            return None
        return [float(group[n]) for n in names]

    def _set_globals(self, group, values):
        for n, v in zip(self._group_globals(group), values):
            old = group.get(n)
            if isinstance(old, torch.Tensor) and old.numel() == 1:
                old.fill_(v)  # a reference's one-element tensor stays one
            else:
                group[n] = bool(v) if n == "train_mode" else v

    def _steps_of(self, group):
        """Steps the group has taken: ours under ``step``; a state dict of the
        schedulefree package counts them under ``k``."""
        if "step" in group:
            return int(group["step"])
        if "train_mode" in self._group_globals(group):
            return int(group.get("k", 0))
        return 0

    def _call(self, group, items):
        return (
            self._group_name(group),
            json.dumps(self._hparams(group)),
            self._steps_of(group),
            self._generic_cautious(group),
            self._globals_of(group),
            items,
        )

    def _finish(self, created, globals_):
        for group, values in zip(self.param_groups, globals_):
            self._set_globals(group, values)
        for gi, index, buffer, kind, values, scales in created:
            p = self.param_groups[gi]["params"][index]
            st = self.state[p]
            dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "q8": torch.uint8}[kind]
            t = torch.frombuffer(bytearray(values), dtype=dtype) if values else torch.empty(0, dtype=dtype)
            st[buffer] = t.reshape(_state_shape(buffer, t, p))
            if kind == "q8":
                st[buffer + _SCALES] = torch.frombuffer(bytearray(scales), dtype=torch.float32)
            else:
                st.pop(buffer + _SCALES, None)

    def _state_step(self, group, st):
        step = st.get("step")
        if not (
            isinstance(step, torch.Tensor)
            and step.dtype == torch.float32
            and step.numel() == 1
            and not step.is_cuda
        ):
            # New state, or a count saved as a number (pytorch-optimizer keeps
            # it per group) or on another type: a float32 scalar, as torch.
            if step is None:
                buffers = self._group_buffers(group)
                step = self._steps_of(group) if any(b in st for b in buffers) else 0
            st["step"] = torch.tensor(float(step), dtype=torch.float32)
        return st["step"]

    def _step(self, hessians):
        calls = []
        stepped = []
        for group in self.param_groups:
            if group.get("train_mode") is False and "train_mode" in self._group_globals(group):
                raise ValueError(
                    f"{self._group_name(group)}: step called in eval mode; call "
                    "optimizer.train() first (the parameters hold the averaged point)"
                )
            items = []
            buffers = self._group_buffers(group)
            scale_keys = [b + _SCALES for b in buffers]
            names = _param_names(group)
            for index, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                st = self.state[p]
                step = self._state_step(group, st)
                h = None if hessians is None else hessians.get(p)
                item = (index, p, p.grad, self._state_entries(st, buffers, scale_keys), step, h)
                items.append(item if names is None else item + (names[index],))
            calls.append(self._call(group, items))
            stepped.append(bool(items))
        threads = self._threads or torch.get_num_threads()
        created, globals_ = self._stepper.step(calls, threads)
        for group, did in zip(self.param_groups, stepped):
            if did:
                group["step"] = self._steps_of(group) + 1
                if "train_mode" in self._group_globals(group):
                    group["k"] = group["step"]  # the schedulefree package's name
        self._finish(created, globals_)

    def _set_mode(self, train):
        """Moves every parameter with state to the training point (``train``)
        or to the evaluation point, in place (schedule-free rules)."""
        calls = []
        for group in self.param_groups:
            items = []
            buffers = self._group_buffers(group)
            scale_keys = [b + _SCALES for b in buffers]
            names = _param_names(group)
            for index, p in enumerate(group["params"]):
                st = self.state.get(p)
                if not st or not any(b in st for b in buffers):
                    continue
                step = self._state_step(group, st)
                item = (index, p, None, self._state_entries(st, buffers, scale_keys), step, None)
                items.append(item if names is None else item + (names[index],))
            calls.append(self._call(group, items))
        threads = self._threads or torch.get_num_threads()
        with torch.no_grad():
            created, globals_ = self._stepper.set_mode(calls, threads, train)
        self._finish(created, globals_)

    def _layout(self):
        return _LAYOUTS.get(self._name)

    def state_dict(self):
        """As torch's, in the reference's layout where the reference keeps
        some state in another form than the core (see ``_Layout``), so that
        the reference's ``load_state_dict`` takes it."""
        sd = super().state_dict()
        layout = self._layout()
        if layout is not None:
            sd = layout.to_reference(_shallow(sd), self)
        return sd

    def load_state_dict(self, state_dict):
        """As torch's, then state buffers back to their storage type (torch
        casts them to the parameter's dtype): float32 (half-precision
        parameters keep f32 state), bfloat16 with ``state_dtype`` bf16, and
        uint8 for 8-bit codes. Takes the reference's layout too."""
        layout = self._layout()
        if layout is not None:
            state_dict = layout.from_reference(_shallow(state_dict), self)
        super().load_state_dict(state_dict)
        # A reference's state dict lacks our keys (maximize, ...): defaults.
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        keep = torch.bfloat16 if self._state_dtype == "bf16" else torch.float32
        for st in self.state.values():
            for key, value in list(st.items()):
                if key + _SCALES in st and isinstance(value, torch.Tensor):
                    # 8-bit codes, which torch casts to the parameter's dtype (exactly).
                    if value.dtype != torch.uint8:
                        st[key] = value.to(torch.uint8).contiguous()
                    continue
                if isinstance(value, torch.Tensor) and key != "step" and value.is_floating_point():
                    want = torch.float32 if key.endswith(_SCALES) or value.dtype not in (keep, torch.float32) else value.dtype
                    if value.dtype != want or not value.is_contiguous():
                        st[key] = value.to(want).contiguous()


def _param_names(group):
    """The names of a group's parameters where it has them: torch's
    ``param_names`` (an optimizer built from ``model.named_parameters()``),
    or the ``name`` of a one-parameter group (pytorch-optimizer's AdamMini
    groups); None otherwise (the core names parameters by their index)."""
    names = group.get("param_names")
    if names is not None:
        return names
    name = group.get("name")
    if isinstance(name, str) and len(group["params"]) == 1:
        return [name]
    return None


def _shallow(sd):
    """A copy of a state dict whose dicts (top level, groups, per-parameter
    state) may be changed without touching the optimizer's own."""
    out = dict(sd)
    out["state"] = {k: dict(v) if isinstance(v, dict) else v for k, v in sd["state"].items()}
    out["param_groups"] = [dict(g) for g in sd["param_groups"]]
    return out


def _params_by_index(groups):
    """The parameters in the order of a state dict's indices."""
    return [p for g in groups for p in g["params"]]


def _scalar_tensor(value):
    """An optimizer-wide sum as pytorch-optimizer keeps it: a one-element
    float32 tensor (the core rounds these sums to float32)."""
    if isinstance(value, torch.Tensor):
        return value
    return torch.tensor([float(value)], dtype=torch.float32)


class _Layout:
    """How the reference keeps an optimizer's state where it differs from
    the core's buffers and group scalars. ``state_dict()`` writes the
    reference's layout, so that the reference loads it; ``load_state_dict()``
    reads either. ``defaults`` adjusts the constructor's defaults as the
    reference's constructor does."""

    def defaults(self, hp):
        pass

    def to_reference(self, sd, opt):
        return sd

    def from_reference(self, sd, opt):
        return sd

    @staticmethod
    def _unbounded(groups, key="growth_rate"):
        # The core reads an unbounded growth rate as null; the references use inf.
        for g in groups:
            if key in g and g[key] is None:
                g[key] = math.inf


class _AggMo(_Layout):
    """pytorch_optimizer.AggMo: ``momentum_buffer`` is a dict from each beta
    to its buffer; the core's buffers are ``momentum_buffer_<i>`` in the
    order of ``betas``."""

    def to_reference(self, sd, opt):
        for g in sd["param_groups"]:
            betas = list(g["betas"])
            for i in g["params"]:
                st = sd["state"].get(i)
                if st and "momentum_buffer_0" in st:
                    st["momentum_buffer"] = {b: st.pop(f"momentum_buffer_{k}") for k, b in enumerate(betas)}
        return sd

    def from_reference(self, sd, opt):
        for g in sd["param_groups"]:
            betas = list(g["betas"])
            for i in g["params"]:
                st = sd["state"].get(i)
                buffers = st.get("momentum_buffer") if st else None
                if isinstance(buffers, dict):
                    if len(buffers) != len(betas) or any(b not in buffers for b in betas):
                        raise ValueError(
                            f"aggmo: state of parameter {i}: momentum_buffer has betas "
                            f"{sorted(buffers)}, the group's betas are {betas}"
                        )
                    del st["momentum_buffer"]
                    for k, b in enumerate(betas):
                        st[f"momentum_buffer_{k}"] = buffers[b]
        return sd


class _GrokFastAdamW(_Layout):
    """pytorch_optimizer.GrokFastAdamW divides the constructor's ``lr`` by
    ``1 + grokfast_lamb`` (with ``grokfast`` and ``normalize_lr``) and keeps
    the divided rate in the groups; so does this class, and the core then
    takes ``normalize_lr = False`` from the group. A group given with its own
    ``lr`` keeps it undivided, as in the reference."""

    def defaults(self, hp):
        if hp.get("grokfast") and hp.get("normalize_lr"):
            hp["lr"] = hp["lr"] / (1.0 + hp["grokfast_lamb"])
        hp["normalize_lr"] = False


class _MADGRAD(_Layout):
    """pytorch_optimizer.MADGRAD counts steps in ``state["k"]`` (a long
    tensor kept beside the parameters' state), not in the groups."""

    def to_reference(self, sd, opt):
        steps = [int(g.get("step", 0)) for g in sd["param_groups"]]
        sd["state"]["k"] = torch.tensor([max(steps, default=0)], dtype=torch.long)
        return sd

    def from_reference(self, sd, opt):
        k = sd["state"].pop("k", None)
        if k is not None:
            for g in sd["param_groups"]:
                g["step"] = int(k.item() if isinstance(k, torch.Tensor) else k)
        return sd


class _DAdapt(_Layout):
    """pytorch-optimizer's D-Adaptation and Prodigy keep their running sums
    (``numerator_weighted``, ``d_numerator``) as one-element float32 tensors
    and an unbounded ``growth_rate`` as inf. D-Adapt SGD counts its steps
    (the core's ``k``) in the group's ``step``."""

    def __init__(self, sums, counts_k=False):
        self.sums = sums
        self.counts_k = counts_k

    def to_reference(self, sd, opt):
        self._unbounded(sd["param_groups"])
        for g in sd["param_groups"]:
            for key in self.sums:
                if key in g:
                    g[key] = _scalar_tensor(g[key])
            if self.counts_k and "k" in g:
                g["step"] = int(g["k"])
        return sd

    def from_reference(self, sd, opt):
        if self.counts_k:
            for g in sd["param_groups"]:
                if "numerator_weighted" in g and "k" not in g:
                    g["k"] = float(g.get("step", 0))
        return sd


class _CosineDecay:
    """pytorch-optimizer's ``CosineDecay(start, t_max, eta_min)``, which SPAM
    and StableSPAM save in their state dicts: a torch SGD and
    ``CosineAnnealingLR`` pair, stepped the same way."""

    def __init__(self, start, t_max, eta_min):
        self.sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=start)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.sgd, t_max + 1, eta_min)

    def step(self, epoch):
        self.sched.last_epoch = epoch
        self.sgd.step()
        self.sched.step()

    def set_rate(self, value):
        self.sgd.param_groups[0]["lr"] = value
        self.sched._last_lr = [value]

    def state_dict(self):
        return {"optimizer": self.sgd.state_dict(), "scheduler": self.sched.state_dict()}


class _StableSPAM(_Layout):
    """pytorch_optimizer.StableSPAM keeps ``total_step`` (and the cosine
    decay's scheduler, ``warmup``, with ``t_max``) at the top of the state
    dict, and the steps since the last moment reset in the group's ``step``;
    the core keeps ``total_step``, ``group_step`` and the decay factor
    ``decay`` in each group."""

    def to_reference(self, sd, opt):
        groups = sd["param_groups"]
        if groups and "total_step" in groups[0]:
            g0 = groups[0]
            total = int(g0["total_step"])
            sd["total_step"] = total
            for g in groups:
                if "group_step" in g:
                    g["step"] = int(g["group_step"])
            t_max = g0.get("t_max")
            if t_max is not None:
                # The reference steps its scheduler at total steps 1, 2, ...
                # below t_max; the core's decay is the rate of the last one.
                t_max = int(t_max)
                stepped = total >= 1 and t_max > 1
                warmup = _CosineDecay(1.0, t_max, float(g0["eta_min"]))
                if stepped:
                    warmup.step(min(total, t_max - 1))
                    warmup.set_rate(float(g0.get("decay", 1.0)))
                sd["warmup"] = warmup.state_dict()
        return sd

    def from_reference(self, sd, opt):
        if "total_step" not in sd:
            return sd
        total = int(sd.pop("total_step"))
        warmup = sd.pop("warmup", None)
        for g in sd["param_groups"]:
            if "group_step" in g or total == 0:
                continue
            g["total_step"] = float(total)
            g["group_step"] = float(g.get("step", 0))
            # The reference keeps t_max and eta_min out of its groups.
            t_max = g.get("t_max", opt.defaults["t_max"])
            if t_max is None:
                g["decay"] = 1.0
            elif total >= t_max:
                g["decay"] = float(g.get("eta_min", opt.defaults["eta_min"]))
            elif warmup is not None:
                g["decay"] = float(warmup["optimizer"]["param_groups"][0]["lr"])
            else:
                raise ValueError(
                    "stablespam: the state dict has total_step but no 'warmup' (the cosine "
                    "decay of t_max); it cannot continue the reference's run"
                )
        return sd


class _SPAM(_Layout):
    """pytorch_optimizer.SPAM keeps ``total_step`` and ``current_step`` in
    the optimizer's state beside the parameters', a boolean ``mask`` for
    every 2-D parameter (all True at ``density = 1``, the density the core
    supports) with its moments flattened to the masked entries, and its
    warm-up scheduler in ``warmup``."""

    def to_reference(self, sd, opt):
        groups = sd["param_groups"]
        if not groups or "total_step" not in groups[0]:
            return sd
        g0 = groups[0]
        total, current = int(g0["total_step"]), int(g0["current_step"])
        sd["state"]["total_step"] = total
        sd["state"]["current_step"] = current
        # The reference makes a new CosineDecay(0.99, warmup_epoch) at each
        # reset and steps it at current_step 0, 1, ... below warmup_epoch;
        # before the first reset current_step starts at warmup_epoch + 1.
        we = int(g0["warmup_epoch"])
        warmup = _CosineDecay(0.99, we, 0.0)
        if current < we + 1 + total:
            for c in range(min(current, we)):
                warmup.step(c)
        sd["warmup"] = warmup.state_dict()
        params = _params_by_index(opt.param_groups)
        for g in groups:
            for i in g["params"]:
                st = sd["state"].get(i)
                if st and "exp_avg" in st and params[i].dim() == 2:
                    st["mask"] = torch.ones(params[i].shape, dtype=torch.bool)
                    st["exp_avg"] = st["exp_avg"].reshape(-1)
                    st["exp_avg_sq"] = st["exp_avg_sq"].reshape(-1)
        return sd

    def from_reference(self, sd, opt):
        state = sd["state"]
        total = state.pop("total_step", None)
        current = state.pop("current_step", None)
        sd.pop("warmup", None)
        for key, st in state.items():
            mask = st.pop("mask", None) if isinstance(st, dict) else None
            if mask is not None and not bool(mask.all()):
                raise ValueError(
                    f"spam: state of parameter {key}: a mask with density < 1 "
                    "(optimist's SPAM supports density = 1)"
                )
            if mask is not None:
                for name in ("exp_avg", "exp_avg_sq"):
                    if name in st:
                        st[name] = st[name].reshape(mask.shape)
        if total is not None and int(total) > 0:
            for g in sd["param_groups"]:
                g.setdefault("total_step", float(int(total)))
                g.setdefault("current_step", float(int(current)))
        return sd


#: Reference layouts by registry name (optimizers whose reference keeps
#: state in another form than the core).
# pytorch_optimizer.AdamMini's name rules (optimist_core::optim::adammini).
_ADAMMINI_EMBED = ("embed", "embd", "wte", "lm_head.weight", "output.weight")
_ADAMMINI_QK = ("k_proj.weight", "q_proj.weight", "wq.weight", "wk.weight")
_ADAMMINI_ATTN = ("attn.attn.weight", "attn.qkv.weight")


class _AdamMini(_Layout):
    """pytorch_optimizer.AdamMini: one group per named parameter, with the
    step count in the group only; ``m`` viewed per block (a query/key
    projection as (heads, parameter_per_head), a fused attention weight as
    (num_query_groups, q_per_kv + 2, rest)), ``v_mean`` in the block's shape
    (0-dim for a whole-tensor block), and beside them ``head`` (query/key)
    or ``dimension`` and ``reduced`` (whole tensor). Groups without a
    ``name`` (an optimizer built from tensors, not from a model) have no
    reference layout and keep the core's."""

    def to_reference(self, sd, opt):
        for g in sd["param_groups"]:
            name = g.get("name")
            if not isinstance(name, str):
                continue
            for i in g["params"]:
                st = sd["state"].get(i)
                if not st or "m" not in st:
                    continue
                st.pop("step", None)
                if "v" in st:
                    continue  # an embedding: Adam per element
                m, v = st["m"], st["v_mean"]
                if any(b in name for b in _ADAMMINI_QK):
                    per_head = g.get("parameter_per_head") or g["num_embeds"] * g["num_embeds"] // g["num_heads"]
                    st["m"] = m.reshape(-1, per_head)
                    st["head"] = st["m"].shape[0]
                elif any(b in name for b in _ADAMMINI_ATTN):
                    groups = g.get("num_query_groups") or g["num_heads"]
                    rows = g["num_heads"] // groups + 2
                    st["m"] = m.reshape(groups, rows, -1)
                    st["v_mean"] = v.reshape(groups, rows)
                else:
                    st["v_mean"] = v.reshape(())
                    st["dimension"] = torch.tensor(float(m.numel()), dtype=torch.float32)
                    st["reduced"] = False
        return sd

    def from_reference(self, sd, opt):
        params = _params_by_index(opt.param_groups)
        for i, st in sd["state"].items():
            if not isinstance(st, dict) or "m" not in st or not isinstance(i, int) or i >= len(params):
                continue
            if st.get("reduced"):
                raise ValueError(
                    "adammini: this state was saved with model_sharding across processes "
                    "(reduced over ranks), which optimist does not support"
                )
            for key in ("head", "dimension", "reduced"):
                st.pop(key, None)
            st["m"] = st["m"].reshape(params[i].shape)
            if "v_mean" in st and st["v_mean"].numel() > 1:
                st["v_mean"] = st["v_mean"].reshape(-1)
        return sd


_LAYOUTS = {
    "adammini": _AdamMini(),
    "aggmo": _AggMo(),
    "grokfastadamw": _GrokFastAdamW(),
    "madgrad": _MADGRAD(),
    "dadaptadam": _DAdapt(("numerator_weighted",)),
    "dadaptlion": _DAdapt(("numerator_weighted",)),
    "dadaptsgd": _DAdapt(("numerator_weighted",), counts_k=True),
    "prodigy": _DAdapt(("d_numerator",)),
    "spam": _SPAM(),
    "stablespam": _StableSPAM(),
}


def load_into(optimizer, state_dict):
    """Loads ``state_dict`` (from an optimist class) into another optimizer,
    such as its pytorch-optimizer reference, whose ``load_state_dict`` does
    not fill in hyperparameters missing from the saved groups: those keep the
    target's current values. torch.optim classes need no helper."""
    groups = []
    for saved, current in zip(state_dict["param_groups"], optimizer.param_groups):
        merged = {k: v for k, v in current.items() if k != "params"}
        merged.update(saved)
        groups.append(merged)
    merged = dict(state_dict)  # with any other top-level entries (SPAM's warmup, ...)
    merged["param_groups"] = groups
    optimizer.load_state_dict(merged)


def _class_name(spec):
    m = re.match(r"(?:torch\.optim|pytorch_optimizer|schedulefree)\.([A-Za-z]\w*)", spec["reference"])
    if m:
        return m.group(1)
    m = re.match(r"([A-Z][A-Za-z0-9_]*)\b", spec["reference"])
    if m:
        return m.group(1)
    return "".join(part.capitalize() for part in spec["name"].split("_"))


def _doc(spec, cls_name):
    lines = [
        f"{spec['summary']}",
        "",
        f"optimist optimizer ``{spec['name']}``, exact to {spec['reference']}.",
        f"Paper: {spec['paper']}.",
        "",
        "Arguments (reference names and defaults):",
        "",
        "- params: iterable of tensors or parameter groups (dicts)",
    ]
    for key, value in spec["defaults"].items():
        lines.append(f"- {key} = {value!r}")
    lines += [
        "- threads: threads for the step (default: torch.get_num_threads() at each step)",
        "- cautious: cautious masking of the update (keyword; where the rule exposes its update)",
        "- state_dtype: storage of the state buffers (keyword): torch.float32 (default),"
        " torch.bfloat16 (stochastic rounding) or \"q8\" (8-bit block-wise: uint8 codes in"
        " ``state[p][name]`` and float32 block scales in ``state[p][name + '_scales']``);"
        " elementwise rules only",
        "",
        f"State per parameter in ``self.state[p]``: ``step``, "
        + ", ".join(f"``{b}``" for b in spec["state_buffers"])
        + " (float32 tensors, created at the first step, updated in place).",
    ]
    if spec["global_state"]:
        lines += [
            "",
            "Optimizer-wide state, per parameter group in ``param_groups`` (saved with"
            " ``state_dict()``): " + ", ".join(f"``{g}``" for g in spec["global_state"]) + ".",
        ]
    if "train_mode" in spec["global_state"]:
        lines += [
            "",
            "Schedule-free: call ``eval()`` before evaluating or saving the model and"
            " ``train()`` before training again.",
        ]
    return "\n".join(lines)


class _ScheduleFree:
    """``train()`` and ``eval()`` of the schedule-free classes, as the
    reference's: the parameters hold the gradient point ``y`` in training
    mode and the averaged point ``x`` in eval mode (evaluate and save the
    model in eval mode). A new optimizer is in training mode; stepping in
    eval mode raises ``ValueError``. HF Trainer calls both."""

    def train(self):
        """Parameters to the training point ``y``; no-op if already there."""
        self._set_mode(True)

    def eval(self):
        """Parameters to the evaluation point ``x``; no-op if already there."""
        self._set_mode(False)


def _default(v):
    return tuple(v) if isinstance(v, list) else v


def _make_class(spec):
    name = _class_name(spec)
    defaults = {k: _default(v) for k, v in spec["defaults"].items()}
    bases = (OptimistOptimizer,)
    if "train_mode" in spec["global_state"]:
        bases = (_ScheduleFree, OptimistOptimizer)
    cls = type(
        name,
        bases,
        {
            "__doc__": _doc(spec, name),
            "__module__": __name__,
            "_name": spec["name"],
            "_defaults": defaults,
            "_buffers": tuple(spec["state_buffers"]),
        },
    )
    P = inspect.Parameter
    params = [P("params", P.POSITIONAL_OR_KEYWORD)]
    params += [P(k, P.POSITIONAL_OR_KEYWORD, default=v) for k, v in defaults.items()]
    params.append(P("threads", P.KEYWORD_ONLY, default=None))
    params.append(P("state_dtype", P.KEYWORD_ONLY, default=None))
    if "cautious" not in defaults:
        params.append(P("cautious", P.KEYWORD_ONLY, default=None))
    cls.__signature__ = inspect.Signature(params)
    return cls


#: Generated class by registry name.
CLASSES = {}
for _spec in json.loads(_optimist.registry_json()):
    if _spec["state_buffers"] is None:
        continue
    _cls = _make_class(_spec)
    CLASSES[_spec["name"]] = _cls
    globals()[_cls.__name__] = _cls
    __all__.append(_cls.__name__)
del _spec, _cls


class SophiaH(CLASSES["sophiah"]):
    __doc__ = CLASSES["sophiah"].__doc__ + """

Hessian diagonal: pass ``hessian=[...]`` (one tensor per parameter with a
gradient, in parameter-group order) to ``step``, as the reference; otherwise
at steps 1, 1 + update_period, ... the step takes Hutchinson estimates
``z * (H z)`` from torch autograd, which needs the gradients' graph: call
``loss.backward(create_graph=True)`` (in the closure or before ``step``).
Keyword arguments ``num_samples`` (1) and ``hessian_distribution``
(``"gaussian"`` or ``"rademacher"``) configure the estimate, as in
pytorch-optimizer.
"""

    def __init__(self, params, *args, num_samples=1, hessian_distribution="gaussian", **kwargs):
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"sophiah: invalid num_samples = {num_samples!r}: must be an int >= 1")
        if hessian_distribution not in ("gaussian", "rademacher"):
            raise ValueError(
                f"sophiah: invalid hessian_distribution = {hessian_distribution!r}: "
                "must be 'gaussian' or 'rademacher'"
            )
        self.num_samples = num_samples
        self.hessian_distribution = hessian_distribution
        super().__init__(params, *args, **kwargs)

    def _with_grad(self):
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    def hutchinson(self):
        """Hutchinson estimates of the Hessian diagonal of every parameter with
        a gradient, from the gradients' autograd graph."""
        params = self._with_grad()
        grads = [p.grad for p in params]
        if not params:
            return {}
        if any(g.grad_fn is None for g in grads):
            raise ValueError(
                "sophiah: the gradients have no autograd graph for Hessian-vector products; "
                "call loss.backward(create_graph=True), or pass hessian=[...] to step"
            )
        est = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        for i in range(self.num_samples):
            if self.hessian_distribution == "rademacher":
                zs = [torch.randint_like(p, 0, 2) * 2.0 - 1.0 for p in params]
            else:
                zs = [torch.randn_like(p) for p in params]
            with torch.enable_grad():
                hz = torch.autograd.grad(grads, params, grad_outputs=zs, retain_graph=i < self.num_samples - 1)
            for e, h, z in zip(est, hz, zs):
                e.addcmul_(h.float(), z.float(), value=1.0 / self.num_samples)
        return dict(zip(params, est))

    @torch.no_grad()
    def step(self, closure=None, hessian=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        step = int(self.param_groups[0].get("step", 0)) + 1
        period = int(self.param_groups[0]["update_period"])
        if hessian is not None:
            params = self._with_grad()
            if len(hessian) != len(params):
                raise ValueError(
                    f"sophiah: hessian has {len(hessian)} tensors, expected {len(params)} "
                    "(one per parameter with a gradient)"
                )
            hessians = {p: h.detach().float().contiguous() for p, h in zip(params, hessian)}
        elif (step - 1) % period == 0:
            hessians = self.hutchinson()
        else:
            hessians = None
        self._step(hessians)
        # The graph kept by create_graph=True is not needed any more.
        for p in self._with_grad():
            if p.grad.grad_fn is not None:
                p.grad = p.grad.detach()
        return loss


CLASSES["sophiah"] = SophiaH


class AdamMini(CLASSES["adammini"]):
    __doc__ = CLASSES["adammini"].__doc__.replace(
        "- params: iterable of tensors or parameter groups (dicts)",
        "- model: an ``nn.Module``, as the reference takes; or ``named_parameters()``"
        " pairs; or tensors or parameter groups (named by their index: one second"
        " moment per tensor)",
    ) + """

Each parameter's rule comes from its name, as in the reference: embeddings
(``embed``, ``embd``, ``wte``, ``lm_head.weight``, ``output.weight``) take
Adam per element, query/key projections one second moment per head, fused
attention weights (``attn.attn.weight``, ``attn.qkv.weight``) one per row of
(num_query_groups, q_per_kv + 2), everything else one per tensor; names with
``norm`` or ``ln_f`` get no weight decay. From a model, as the reference,
there is one parameter group per named parameter that requires a gradient,
with its ``name``, so that state dicts cross-load with
``pytorch_optimizer.AdamMini``. ``foreach`` is accepted for the reference's
signature; the step is the reference's per-tensor (CPU) path either way.
``model_sharding`` with more than one process is not supported (an error).
"""

    def __init__(self, model, *args, foreach=None, **kwargs):
        if isinstance(model, torch.nn.Module):
            self.model = model
            params = [{"name": n, "params": [p]} for n, p in model.named_parameters() if p.requires_grad]
        else:
            self.model = None
            params = model
        super().__init__(params, *args, **kwargs)
        self.foreach = foreach
        dist = torch.distributed
        if self.defaults["model_sharding"] and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            raise ValueError(
                "adammini: model_sharding = True across processes (the reference all-reduces the "
                "block sums) is not supported; shard with torch.distributed's own wrappers instead"
            )

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        self._name_group(self.param_groups[-1])

    @staticmethod
    def _name_group(g):
        """The reference's per-group entries of a named group."""
        name = g.get("name")
        if not isinstance(name, str):
            return
        if "norm" in name or "ln_f" in name:
            g["weight_decay"] = 0.0
        if any(b in name for b in _ADAMMINI_QK):
            g["parameter_per_head"] = g["num_embeds"] * g["num_embeds"] // g["num_heads"]


class LBFGS(torch.optim.Optimizer):
    __doc__ = _doc(dict(SPECS["lbfgs"], state_buffers=[]), "LBFGS").split("\n- threads:")[0] + """

``step(closure)`` needs the closure (it re-evaluates the model, calls
``backward`` and returns the loss), as torch.optim.LBFGS; it runs with
gradients enabled and may be called many times in one step. One parameter
group, float32 parameters. The state (direction, step, history, previous
gradient and loss, counts) is kept by the engine and saved by
``state_dict()`` in torch.optim.LBFGS's layout (``d``, ``t``, ``old_dirs``,
``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``, ``prev_loss``,
``n_iter``, ``func_evals``, ``al`` under the first parameter), so state
dicts cross-load with torch both ways.
"""

    _name = "lbfgs"

    def __init__(self, params, *args, **kwargs):
        spec_defaults = {k: _default(v) for k, v in SPECS["lbfgs"]["defaults"].items()}
        names = list(spec_defaults)
        if len(args) > len(names):
            raise TypeError(f"LBFGS() takes at most {len(names) + 1} positional arguments")
        hp = dict(spec_defaults)
        hp.update(zip(names, args))
        for key, value in kwargs.items():
            if key not in hp:
                raise TypeError(
                    f"LBFGS() got an unexpected keyword argument '{key}' (hyperparameters: {', '.join(names)})"
                )
            hp[key] = value
        if hp.get("max_eval") is None and isinstance(hp.get("max_iter"), int):
            hp["max_eval"] = hp["max_iter"] * 5 // 4  # as torch.optim.LBFGS's constructor
        super().__init__(params, hp)
        if len(self.param_groups) != 1:
            raise ValueError("lbfgs: one parameter group only (L-BFGS steps all parameters as one vector)")
        self._check(self.param_groups[0])
        self._engine = _optimist.ClosureStepper(_TYPES, "lbfgs")

    def _hparams(self, group):
        return {k: _jsonable(k, group[k], "lbfgs") for k in SPECS["lbfgs"]["defaults"]}

    def _check(self, group):
        _optimist.validate("lbfgs", json.dumps(self._hparams(group)), False)

    def add_param_group(self, param_group):
        if getattr(self, "_engine", None) is not None or self.param_groups:
            raise ValueError("lbfgs: one parameter group only (L-BFGS steps all parameters as one vector)")
        super().add_param_group(param_group)

    @torch.no_grad()
    def step(self, closure=None):
        """One L-BFGS step; returns the loss of the closure's first call."""
        if closure is None:
            raise ValueError("lbfgs: step needs a closure that re-evaluates the model and returns the loss")
        group = self.param_groups[0]
        self._check(group)
        grad_closure = torch.enable_grad()(closure)
        first = []

        def evaluate():
            out = grad_closure()
            if not first:
                first.append(out)
            return out.detach() if isinstance(out, torch.Tensor) else out

        self._engine.step(json.dumps(self._hparams(group)), list(group["params"]), evaluate)
        # As torch.optim.LBFGS: the closure's first result, as it returned it.
        return first[0] if first else None

    def state_dict(self):
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(self.param_groups[0]["params"])))
        tensors, scalars = self._engine.state_dict()
        sc = dict(scalars)
        st = {}
        if tensors or any(k.startswith("lbfgs/") for k in sc):
            buf = {name: torch.frombuffer(bytearray(b), dtype=torch.float32) for _, name, b in tensors}
            st["func_evals"] = int(sc.get("lbfgs/func_evals", 0))
            st["n_iter"] = int(sc.get("lbfgs/n_iter", 0))
            for key, name in (("t", "t"), ("H_diag", "h_diag")):
                if f"lbfgs/{name}" in sc:
                    v = sc[f"lbfgs/{name}"]
                    st[key] = torch.tensor(v, dtype=torch.float32) if sc.get(f"lbfgs/{name}_is_f32") else float(v)
            for name in ("d", "prev_flat_grad"):
                if name in buf:
                    st[name] = buf[name]
            st["old_dirs"] = [buf[k] for k in sorted(k for k in buf if k.startswith("old_dirs."))]
            st["old_stps"] = [buf[k] for k in sorted(k for k in buf if k.startswith("old_stps."))]
            st["ro"] = [v.reshape(()) for v in buf["ro"].unbind()] if "ro" in buf else []
            if "lbfgs/prev_loss" in sc:
                st["prev_loss"] = sc["lbfgs/prev_loss"]
            st["al"] = [None] * int(group["history_size"])
        return {"state": {0: st} if st else {}, "param_groups": [group]}

    def load_state_dict(self, state_dict):
        """Loads a state dict of this class or of torch.optim.LBFGS."""
        groups = state_dict["param_groups"]
        if len(groups) != 1:
            raise ValueError(f"lbfgs: the state dict has {len(groups)} parameter groups, expected 1")
        states = state_dict["state"]
        st = states.get(groups[0]["params"][0], {}) if groups[0]["params"] else {}
        tensors, scalars = [], []

        def flat(v, what):
            if not isinstance(v, torch.Tensor):
                raise ValueError(f"lbfgs: state '{what}' is {type(v).__name__}, expected a tensor")
            return v.detach().to(torch.float32).contiguous().reshape(-1).numpy().tobytes()

        if st:
            for name in ("d", "prev_flat_grad"):
                if st.get(name) is not None:
                    tensors.append(("0", name, flat(st[name], name)))
            dirs, stps, ro = st.get("old_dirs", []), st.get("old_stps", []), st.get("ro", [])
            for i, (y, s_) in enumerate(zip(dirs, stps)):
                tensors.append(("0", f"old_dirs.{i:05}", flat(y, f"old_dirs[{i}]")))
                tensors.append(("0", f"old_stps.{i:05}", flat(s_, f"old_stps[{i}]")))
            if len(dirs) != len(stps):
                raise ValueError(f"lbfgs: {len(dirs)} old_dirs and {len(stps)} old_stps")
            if ro:
                tensors.append(("0", "ro", b"".join(flat(r, "ro") for r in ro)))
            for key in ("func_evals", "n_iter"):
                scalars.append((f"lbfgs/{key}", float(st.get(key, 0))))
            for key, name in (("t", "t"), ("H_diag", "h_diag")):
                v = st.get(key)
                if v is not None:
                    scalars.append((f"lbfgs/{name}", float(v)))
                    scalars.append((f"lbfgs/{name}_is_f32", 1.0 if isinstance(v, torch.Tensor) else 0.0))
            if st.get("prev_loss") is not None:
                scalars.append(("lbfgs/prev_loss", float(st["prev_loss"])))
            if st.get("d") is not None:
                scalars.append(("lbfgs/numel", float(st["d"].numel())))
            scalars.append(("step", float(st.get("n_iter", 0))))
        # Hyperparameters first (checked), then the state; nothing changes on error.
        group = dict(self.param_groups[0])
        group.update({k: v for k, v in groups[0].items() if k != "params"})
        if len(groups[0]["params"]) != len(self.param_groups[0]["params"]):
            raise ValueError(
                f"lbfgs: the state dict has {len(groups[0]['params'])} parameters, this optimizer "
                f"{len(self.param_groups[0]['params'])}"
            )
        self._check(group)
        fresh = _optimist.ClosureStepper(_TYPES, "lbfgs")
        hp = self._hparams(group)
        # The engine checks the history against history_size.
        fresh_cfg = json.dumps(hp)
        _optimist.validate("lbfgs", fresh_cfg, False)
        fresh.configure(fresh_cfg)
        fresh.load_state_dict(tensors, scalars)
        self._engine = fresh
        self.param_groups[0].update({k: v for k, v in group.items() if k != "params"})


_P = inspect.Parameter
LBFGS.__signature__ = inspect.Signature(
    [_P("params", _P.POSITIONAL_OR_KEYWORD)]
    + [_P(k, _P.POSITIONAL_OR_KEYWORD, default=_default(v)) for k, v in SPECS["lbfgs"]["defaults"].items()]
)
del _P
CLASSES["lbfgs"] = LBFGS


class MuonAdamW(OptimistOptimizer):
    """Muon for the hidden weight matrices, AdamW for everything else, in one
    optimizer (the preset ``optimist_core::presets::muon_adamw``).

    ``params`` are ``model.named_parameters()`` (names select embeddings and
    heads by the patterns of ``exclude``, default the core's
    ``EMBEDDINGS_AND_HEADS``) or plain tensors. A parameter goes to Muon when
    it is 2-D and its name matches no pattern; every other one to AdamW.
    ``muon`` and ``adamw`` are the two optimizers' hyperparameters (reference
    names). The groups carry ``"optimizer": "muon"`` or ``"adamw"`` with their
    own hyperparameters, so schedulers and per-group overrides work as for
    any torch optimizer; ``add_param_group`` needs the ``optimizer`` key.
    """

    _name = None
    _defaults = {}

    def __init__(self, params, muon=None, adamw=None, exclude=None, threads=None):
        muon_hp = dict(SPECS["muon"]["defaults"])
        muon_hp.update(muon or {})
        adamw_hp = dict(SPECS["adamw"]["defaults"])
        adamw_hp.update(adamw or {})
        patterns = list(_optimist.embeddings_and_heads() if exclude is None else exclude)
        mats, rest = [], []
        for i, item in enumerate(params):
            name, p = item if isinstance(item, tuple) else (f"param{i}", item)
            matrix = p.dim() == 2 and not any(_optimist.glob_match(pat, name) for pat in patterns)
            (mats if matrix else rest).append(p)
        groups = []
        if mats:
            groups.append({"params": mats, "optimizer": "muon", **muon_hp})
        if rest:
            groups.append({"params": rest, "optimizer": "adamw", **adamw_hp})
        self._check_threads(threads)
        self._threads = threads
        self._state_dtype = "f32"
        self._stepper = _optimist.Stepper(_TYPES)
        torch.optim.Optimizer.__init__(self, groups, {})

    def _group_name(self, group):
        name = group.get("optimizer")
        if name not in SPECS or SPECS[name]["state_buffers"] is None:
            raise ValueError(f"param group: invalid optimizer = {name!r}: expected a registry name")
        return name


class Lookahead(torch.optim.Optimizer):
    """Lookahead (Zhang et al., 2019) around any torch optimizer, optimist's
    or torch's: every ``k`` inner steps the weights move to
    ``slow + alpha * (fast - slow)`` (``lerp(fast, slow, 1 - alpha)``) and
    the slow weights take that value; exact to pytorch_optimizer.Lookahead
    (``pullback_momentum="none"``), whose state dict layout it shares
    (``lookahead_state`` keyed by (group, index) with ``slow_params``, and
    ``base_optimizer``). ``k`` and ``alpha`` are checked by the core's rules.
    The synchronisation runs as torch ``foreach`` ops every ``k`` steps.
    """

    def __init__(self, optimizer, k=5, alpha=0.5):
        cfg = {"k": k, "alpha": alpha, "inner": {"optimizer": "sgd", "hparams": {}}}
        _optimist.validate("lookahead", json.dumps({kk: _jsonable(kk, v, "lookahead") for kk, v in cfg.items()}))
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"lookahead: invalid inner optimizer {optimizer!r}: not a torch.optim.Optimizer")
        self.optimizer = optimizer
        self.k = int(k)
        self.alpha = float(alpha)
        self._initialized = False
        torch.optim.Optimizer.__init__(self, optimizer.param_groups, optimizer.defaults)
        for group in self.param_groups:
            group.setdefault("counter", 0)

    def add_param_group(self, param_group):
        if getattr(self, "_initialized", True) is False and param_group in self.optimizer.param_groups:
            # construction: share the inner optimizer's group dicts
            self.param_groups.append(param_group)
            return
        self.optimizer.add_param_group(param_group)
        self.param_groups = self.optimizer.param_groups
        self.param_groups[-1].setdefault("counter", 0)

    def zero_grad(self, set_to_none=True):
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def _sync(self, group):
        params, slows = [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            st = self.state[p]
            if "slow_params" not in st:
                st["slow_params"] = p.detach().clone()
            params.append(p.data)
            slows.append(st["slow_params"])
        if params:
            torch._foreach_lerp_(params, slows, weight=1.0 - self.alpha)
            torch._foreach_copy_(slows, params)

    def step(self, closure=None):
        self._initialized = True
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and "slow_params" not in self.state[p]:
                    self.state[p]["slow_params"] = p.detach().clone()
        loss = self.optimizer.step(closure)
        with torch.no_grad():
            for group in self.param_groups:
                group["counter"] = group.get("counter", 0) + 1
                if group["counter"] >= self.k:
                    group["counter"] = 0
                    self._sync(group)
        return loss

    def state_dict(self):
        look = {}
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if p in self.state:
                    look[(gi, pi)] = dict(self.state[p])
        return {"lookahead_state": look, "base_optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state_dict):
        look = state_dict["lookahead_state"]
        self.optimizer.load_state_dict(state_dict["base_optimizer"])
        self.param_groups = self.optimizer.param_groups
        self.state.clear()
        for gi, group in enumerate(self.param_groups):
            group.setdefault("counter", 0)
            for pi, p in enumerate(group["params"]):
                if (gi, pi) in look:
                    self.state[p] = {
                        key: v.to(device=p.device, dtype=p.dtype).clone() if isinstance(v, torch.Tensor) else v
                        for key, v in look[(gi, pi)].items()
                    }


__all__ += ["MuonAdamW", "Lookahead", "LBFGS"]
