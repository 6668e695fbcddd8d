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

_TYPES = (torch.float32, torch.bfloat16, torch.float16, torch.strided)
_RESERVED = ("params", "threads")


def _jsonable(key, value, name):
    """A group value as JSON, checking numbers (JSON cannot carry NaN or inf)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name}: invalid {key} = {value!r}: must be a number")
        value = value.item()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
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
    if n == 1:
        return ()
    return (n,)


class OptimistOptimizer(torch.optim.Optimizer):
    """Base of the generated classes; see ``optimist.torch.<Name>.__doc__``."""

    _name = None
    _defaults = {}
    _buffers = ()

    def __init__(self, params, *args, threads=None, **kwargs):
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
                    f"(hyperparameters: {', '.join(names)}; and threads)"
                )
            hp[key] = value
        if threads is not None and (not isinstance(threads, int) or not 1 <= threads <= 4096):
            raise ValueError(f"threads: invalid value {threads!r}: must be an int from 1 to 4096")
        self._check(hp)
        self._threads = threads
        self._stepper = _optimist.Stepper(_TYPES)
        super().__init__(params, hp)

    def _hparams(self, group):
        return {k: _jsonable(k, group[k], self._name) for k in self._defaults}

    def _check(self, hp):
        """Raises ValueError naming the first invalid hyperparameter."""
        cfg = {k: _jsonable(k, v, self._name) for k, v in hp.items()}
        _optimist.validate(self._name, json.dumps(cfg))

    def add_param_group(self, param_group):
        if isinstance(param_group, dict):
            self._check({k: param_group.get(k, self.defaults[k]) for k in self._defaults})
        super().add_param_group(param_group)

    def _group_name(self, group):
        return self._name

    def _hessians(self):
        """Hessian-diagonal estimates by parameter (Sophia-H); none by default."""
        return None

    @torch.no_grad()
    def step(self, closure=None):
        """One optimization step. ``closure`` re-evaluates the model and
        returns the loss; it runs with gradients enabled."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        hessians = self._hessians()
        calls = []
        stepped = []
        for group in self.param_groups:
            items = []
            for index, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                st = self.state[p]
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
                        step = group.get("step", 0) if any(b in st for b in self._buffers) else 0
                    st["step"] = torch.tensor(float(step), dtype=torch.float32)
                h = None if hessians is None else hessians.get(p)
                items.append((index, p, p.grad, [st.get(b) for b in self._buffers], st["step"], h))
            calls.append(
                (
                    self._group_name(group),
                    json.dumps(self._hparams(group)),
                    int(group.get("step", 0)),
                    items,
                )
            )
            stepped.append(bool(items))
        threads = self._threads or torch.get_num_threads()
        created = self._stepper.step(calls, threads)
        for group, did in zip(self.param_groups, stepped):
            if did:
                group["step"] = int(group.get("step", 0)) + 1
        for gi, index, buffer, values in created:
            p = self.param_groups[gi]["params"][index]
            t = torch.frombuffer(bytearray(values), dtype=torch.float32)
            self.state[p][buffer] = t.reshape(_state_shape(buffer, t, p))
        return loss

    def load_state_dict(self, state_dict):
        """As torch's, then state buffers back to float32 (torch casts them to
        the parameter's dtype, and half-precision parameters keep f32 state)."""
        super().load_state_dict(state_dict)
        # A reference's state dict lacks our keys (maximize, ...): defaults.
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
        for st in self.state.values():
            for key, value in list(st.items()):
                if isinstance(value, torch.Tensor) and key != "step" and value.is_floating_point():
                    if value.dtype != torch.float32 or not value.is_contiguous():
                        st[key] = value.to(torch.float32).contiguous()


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
    optimizer.load_state_dict({"state": state_dict["state"], "param_groups": groups})


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
        "",
        f"State per parameter in ``self.state[p]``: ``step``, "
        + ", ".join(f"``{b}``" for b in spec["state_buffers"])
        + " (float32 tensors, created at the first step, updated in place).",
    ]
    return "\n".join(lines)


def _default(v):
    return tuple(v) if isinstance(v, list) else v


def _make_class(spec):
    name = _class_name(spec)
    defaults = {k: _default(v) for k, v in spec["defaults"].items()}
    cls = type(
        name,
        (OptimistOptimizer,),
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
