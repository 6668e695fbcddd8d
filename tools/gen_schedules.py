#!/usr/bin/env python3
"""Generate golden values for the training essentials from their reference libraries.

Writes three sets (all deterministic; data are drawn from numpy Generators seeded
from a CRC32 of each file's id):

  tests/golden/schedules/*.json   schedule values for steps 0..N-1, from the library
                                  each schedule names: optax (with jax x64 enabled, so
                                  the values are f64), torch.optim.lr_scheduler,
                                  pytorch_optimizer.lr_scheduler, transformers.
                                  torch/pytorch-optimizer/transformers schedules are run
                                  as real schedulers on a torch optimizer and the lr
                                  (and momentum) of its param group is read before
                                  every optimizer.step().
  tests/golden/essentials/*.json  replay-contract cases (shared/conformance/README.md
                                  format) that exercise the new `lr_schedule` names and
                                  the schedule-free optimizers.  The lr of each step is
                                  set from the reference schedule; schedule-free cases
                                  also hold `expected_eval`: the parameters after
                                  `optimizer.eval()` at the end (x instead of y).
  tests/golden/averaging/*.json   weight averaging: SGD steps on given gradients,
                                  with an EMA (timm ModelEmaV3) or SWA
                                  (torch.optim.swa_utils.AveragedModel) updated after
                                  every step; `expected` holds the averaged parameters
                                  after every step (null before the first average).

References (in a virtual environment outside version control, CPU is enough):

    python3 -m venv .venv-ref
    .venv-ref/bin/pip install torch==2.15.0 pytorch-optimizer==4.1.0 numpy \
        optax==0.2.8 schedulefree==1.4.1 transformers==5.24.0 timm==1.0.31

timm is only read for `timm/utils/model_ema.py`, loaded from its file (the
package's __init__ needs torchvision, which is not needed here).

Usage:

    .venv-ref/bin/python tools/gen_schedules.py [--root DIR] [--list]

Replay cases are checked for robustness as in tools/gen_cases.py: the same
replay in float64 must stay within 0.1 of the tolerance of the float32 result,
otherwise the data are re-drawn with another seed.
"""

import argparse
import importlib.util
import json
import math
import os
import sys
import zlib

import numpy as np
import torch

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
import pytorch_optimizer  # noqa: E402
from pytorch_optimizer.lr_scheduler.wsd import get_wsd_schedule  # noqa: E402
import schedulefree  # noqa: E402
import transformers  # noqa: E402
from transformers.optimization import get_inverse_sqrt_schedule  # noqa: E402

DEFAULT_TOL = {"atol": 1e-6, "rtol": 1e-5}
SCHED_TOL = {"atol": 1e-15, "rtol": 1e-12}
ROBUST_FRACTION = 0.1
MAX_ATTEMPTS = 20


def version(mod):
    return getattr(mod, "__version__", "?")


def timm_model_ema_module():
    spec = importlib.util.find_spec("timm")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("timm is not installed")
    path = os.path.join(spec.submodule_search_locations[0], "utils", "model_ema.py")
    mspec = importlib.util.spec_from_file_location("timm_model_ema", path)
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    return mod


def timm_version():
    from importlib.metadata import version as v
    return v("timm")


def seed_of(cid, attempt=0):
    return (zlib.crc32(cid.encode()) + 1_000_003 * attempt) % (2 ** 32)


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------

def torch_group_values(make_sched, base, steps, opt_kind="sgd", momentum_key=None):
    """Runs a torch scheduler and reads the group's lr (and momentum) before each step."""
    p = torch.nn.Parameter(torch.zeros(1))
    if opt_kind == "sgd":
        opt = torch.optim.SGD([p], lr=base, momentum=0.9)
    else:
        opt = torch.optim.Adam([p], lr=base)
    sched = make_sched(opt)
    lrs, moms = [], []
    for _ in range(steps):
        g = opt.param_groups[0]
        lrs.append(float(g["lr"]))
        if momentum_key == "momentum":
            moms.append(float(g["momentum"]))
        elif momentum_key == "beta1":
            moms.append(float(g["betas"][0]))
        opt.step()
        sched.step()
    return lrs, moms


def optax_values(sched, steps):
    return [float(sched(jnp.asarray(t, dtype=jnp.int64))) for t in range(steps)]


def schedule_files():
    """(id, description, spec, base, values, reference)."""
    out = []
    ov = version(optax)

    def optax_ref(fn):
        return {"library": "optax", "version": ov, "function": f"optax.{fn}"}

    b = 0.1
    n = 40
    out.append(("constant", "optax.constant_schedule(base)", {"name": "constant"}, b,
                optax_values(optax.constant_schedule(b), n), optax_ref("constant_schedule")))
    out.append(("constant-value", "optax.constant_schedule(0.25) (value overrides the base)",
                {"name": "constant", "value": 0.25}, b,
                optax_values(optax.constant_schedule(0.25), n), optax_ref("constant_schedule")))
    out.append(("linear", "optax.linear_schedule(base, 0.001, 25)",
                {"name": "linear", "end_value": 0.001, "transition_steps": 25}, b,
                optax_values(optax.linear_schedule(b, 0.001, 25), n), optax_ref("linear_schedule")))
    out.append(("linear-begin", "optax.linear_schedule(0.0, 0.5, 17, transition_begin=6)",
                {"name": "linear", "init_value": 0.0, "end_value": 0.5, "transition_steps": 17,
                 "transition_begin": 6}, b,
                optax_values(optax.linear_schedule(0.0, 0.5, 17, transition_begin=6), n),
                optax_ref("linear_schedule")))
    out.append(("cosine", "optax.cosine_decay_schedule(base, 30)",
                {"name": "cosine", "decay_steps": 30}, b,
                optax_values(optax.cosine_decay_schedule(b, 30), n), optax_ref("cosine_decay_schedule")))
    out.append(("cosine-alpha-exponent", "optax.cosine_decay_schedule(base, 23, alpha=0.1, exponent=2.0)",
                {"name": "cosine", "decay_steps": 23, "alpha": 0.1, "exponent": 2.0}, 0.03,
                optax_values(optax.cosine_decay_schedule(0.03, 23, alpha=0.1, exponent=2.0), n),
                optax_ref("cosine_decay_schedule")))
    out.append(("warmup-cosine", "optax.warmup_cosine_decay_schedule(0, base, 7, 31, 0.004) (the v1 schedule)",
                {"name": "warmup_cosine", "warmup_steps": 7, "total_steps": 31, "min_lr": 0.004}, b,
                optax_values(optax.warmup_cosine_decay_schedule(0.0, b, 7, 31, 0.004), n),
                optax_ref("warmup_cosine_decay_schedule")))
    out.append(("warmup-constant", "optax.warmup_constant_schedule(0.01, base, 9)",
                {"name": "warmup_constant", "init_value": 0.01, "warmup_steps": 9}, b,
                optax_values(optax.warmup_constant_schedule(0.01, b, 9), n),
                optax_ref("warmup_constant_schedule")))

    pv = version(pytorch_optimizer)
    for cooldown, extra in [("1-sqrt", {}), ("linear", {}), ("cosine", {"min_lr_ratio": 0.1}),
                            ("cosine", {"min_lr_ratio": 0.05, "num_cycles": 0.25}),
                            ("1-square", {}), ("1-sqrt", {"min_lr_ratio": 0.2})]:
        w, s, d = 5, 12, 15
        kw = dict(extra)
        spec = {"name": "wsd", "warmup_steps": w, "stable_steps": s, "decay_steps": d,
                "cooldown_type": cooldown, **kw}
        lrs, _ = torch_group_values(
            lambda o: get_wsd_schedule(o, w, s, d, cooldown_type=cooldown, **kw), b, n)
        cid = "wsd-" + cooldown + "".join(f"-{k}" for k in kw)
        out.append((cid, f"pytorch_optimizer.get_wsd_schedule(opt, {w}, {s}, {d}, cooldown_type={cooldown!r}, {kw})",
                    spec, b, lrs, {"library": "pytorch_optimizer", "version": pv,
                                   "function": "pytorch_optimizer.get_wsd_schedule"}))

    tv = torch.__version__.split("+")[0]
    for cid, kw, opt_kind, mkey in [
        ("one-cycle", {}, "sgd", "momentum"),
        ("one-cycle-linear", {"anneal_strategy": "linear", "pct_start": 0.25, "div_factor": 10.0,
                              "final_div_factor": 100.0}, "sgd", "momentum"),
        ("one-cycle-three-phase", {"three_phase": True, "pct_start": 0.35}, "adam", "beta1"),
    ]:
        total = 37
        lrs, moms = torch_group_values(
            lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=b, total_steps=total, **kw),
            b, total, opt_kind, mkey)
        spec = {"name": "one_cycle", "total_steps": total, **kw}
        ref = {"library": "torch", "version": tv, "class": "torch.optim.lr_scheduler.OneCycleLR"}
        out.append((cid, f"torch OneCycleLR(max_lr=base, total_steps={total}, {kw}): lr", spec, b, lrs, ref))
        mspec = {"name": "one_cycle_momentum", "total_steps": total}
        for k in ("pct_start", "anneal_strategy", "three_phase"):
            if k in kw:
                mspec[k] = kw[k]
        out.append((cid + "-momentum",
                    f"torch OneCycleLR(total_steps={total}, {kw}): the {mkey} of the group", mspec, 0.5,
                    moms, ref))

    hv = transformers.__version__
    for cid, w, ts in [("inverse-sqrt", 6, None), ("inverse-sqrt-timescale", 4, 11),
                       ("inverse-sqrt-no-warmup", 0, None)]:
        lrs, _ = torch_group_values(lambda o: get_inverse_sqrt_schedule(o, w, timescale=ts), b, n)
        spec = {"name": "inverse_sqrt", "warmup_steps": w}
        if ts is not None:
            spec["timescale"] = ts
        out.append((cid, f"transformers.get_inverse_sqrt_schedule(opt, {w}, timescale={ts})", spec, b, lrs,
                    {"library": "transformers", "version": hv,
                     "function": "transformers.get_inverse_sqrt_schedule"}))

    for cid, kw in [("exponential", {"transition_steps": 4, "decay_rate": 0.8}),
                    ("exponential-staircase", {"transition_steps": 5, "decay_rate": 0.5, "staircase": True,
                                               "transition_begin": 3}),
                    ("exponential-end-value", {"transition_steps": 2, "decay_rate": 0.7, "end_value": 0.01}),
                    ("exponential-growth-ceiling", {"transition_steps": 3, "decay_rate": 1.3,
                                                    "end_value": 0.5, "init_value": 0.02})]:
        kw2 = dict(kw)
        init = kw2.pop("init_value", b)
        sched = optax.exponential_decay(init, **kw2)
        spec = {"name": "exponential", **kw}
        out.append((cid, f"optax.exponential_decay({init}, {kw2})", spec, b, optax_values(sched, n),
                    optax_ref("exponential_decay")))

    for cid, ss, gamma in [("step", 7, 0.5), ("step-default-gamma", 10, None)]:
        kw = {} if gamma is None else {"gamma": gamma}
        lrs, _ = torch_group_values(lambda o: torch.optim.lr_scheduler.StepLR(o, ss, **kw), b, n)
        spec = {"name": "step", "step_size": ss, **kw}
        out.append((cid, f"torch StepLR(step_size={ss}, {kw})", spec, b, lrs,
                    {"library": "torch", "version": tv, "class": "torch.optim.lr_scheduler.StepLR"}))

    out.append(("polynomial", "optax.polynomial_schedule(base, 0.001, 2.0, 30, transition_begin=4)",
                {"name": "polynomial", "end_value": 0.001, "power": 2.0, "transition_steps": 30,
                 "transition_begin": 4}, b,
                optax_values(optax.polynomial_schedule(b, 0.001, 2.0, 30, transition_begin=4), n),
                optax_ref("polynomial_schedule")))
    out.append(("polynomial-sqrt", "optax.polynomial_schedule(0.5, 0.0, 0.5, 20)",
                {"name": "polynomial", "init_value": 0.5, "end_value": 0.0, "power": 0.5,
                 "transition_steps": 20}, b,
                optax_values(optax.polynomial_schedule(0.5, 0.0, 0.5, 20), n),
                optax_ref("polynomial_schedule")))
    out.append(("piecewise-constant", "optax.piecewise_constant_schedule(base, {5: 0.5, 12: 0.1, 30: 3.0})",
                {"name": "piecewise_constant", "boundaries_and_scales": [[12, 0.1], [5, 0.5], [30, 3.0]]}, b,
                optax_values(optax.piecewise_constant_schedule(b, {5: 0.5, 12: 0.1, 30: 3.0}), n),
                optax_ref("piecewise_constant_schedule")))
    j1 = optax.join_schedules([optax.linear_schedule(0.0, b, 8), optax.cosine_decay_schedule(b, 20, alpha=0.05)], [8])
    out.append(("join-warmup-cosine",
                "optax.join_schedules([linear_schedule(0, base, 8), cosine_decay_schedule(base, 20, alpha=0.05)], [8])",
                {"name": "join", "boundaries": [8],
                 "schedules": [{"name": "linear", "init_value": 0.0, "end_value": b, "transition_steps": 8},
                               {"name": "cosine", "decay_steps": 20, "alpha": 0.05}]}, b,
                optax_values(j1, n), optax_ref("join_schedules")))
    j2 = optax.join_schedules([optax.constant_schedule(0.01), optax.exponential_decay(b, 3, 0.9),
                               optax.linear_schedule(0.05, 0.0, 10)], [5, 19])
    out.append(("join-three",
                "optax.join_schedules([constant(0.01), exponential_decay(base, 3, 0.9), linear(0.05, 0, 10)], [5, 19])",
                {"name": "join", "boundaries": [5, 19],
                 "schedules": [{"name": "constant", "value": 0.01},
                               {"name": "exponential", "transition_steps": 3, "decay_rate": 0.9},
                               {"name": "linear", "init_value": 0.05, "end_value": 0.0, "transition_steps": 10}]},
                b, optax_values(j2, n), optax_ref("join_schedules")))
    return out


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = json.dumps(obj, indent=1)
    json.loads(text)
    with open(path, "w") as f:
        f.write(text + "\n")


# --------------------------------------------------------------------------------------
# Replay cases (contract format) with the new schedules and the schedule-free optimizers
# --------------------------------------------------------------------------------------

def f32_str(x):
    v = np.float32(x)
    if not np.isfinite(v):
        raise ValueError(f"non-finite value {v}")
    s = str(v)
    if np.float32(float(s)).tobytes() != v.tobytes():
        raise AssertionError(f"{s} does not round-trip to f32 {v!r}")
    return s


def arr_str(a):
    return "[" + ",".join(f32_str(x) for x in a) + "]"


def step_str(step):
    return "[" + ",".join(arr_str(a) for a in step) + "]"


def case_text(case):
    d = json.dumps
    lines = ["{"]
    for key in ("version", "id", "description", "optimizer", "hparams", "lr_schedule", "grad_clip"):
        lines.append(f"  {d(key)}: {d(case[key])},")
    lines.append('  "params": [')
    lines.append(",\n".join(
        f'    {{"name": {d(p["name"])}, "shape": {d(p["shape"])}, "data": {arr_str(p["data"])}}}'
        for p in case["params"]))
    lines.append("  ],")
    lines.append('  "grads": [')
    lines.append(",\n".join("    " + step_str(s) for s in case["grads"]))
    lines.append("  ],")
    lines.append('  "expected": [')
    lines.append(",\n".join("    " + step_str(s) for s in case["expected"]))
    lines.append("  ],")
    if "expected_eval" in case:
        lines.append(f'  "expected_eval": {step_str(case["expected_eval"])},')
    lines.append(f'  "tolerance": {d(case["tolerance"])},')
    lines.append(f'  "reference": {d(case["reference"])}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def build_torch_opt(name, hparams, params):
    hp = dict(hparams)
    if "betas" in hp:
        hp["betas"] = tuple(hp["betas"])
    if name == "sgd":
        return torch.optim.SGD(params, **hp)
    if name == "adam":
        return torch.optim.Adam(params, **hp)
    if name == "adamw":
        return torch.optim.AdamW(params, **hp)
    if name == "adamw_schedulefree":
        return schedulefree.AdamWScheduleFree(params, **hp)
    if name == "sgd_schedulefree":
        return schedulefree.SGDScheduleFree(params, **hp)
    raise KeyError(name)


def lr_values(spec_ref, base, steps):
    """The per-step lr of the reference schedule, read from the reference library."""
    kind, arg = spec_ref
    if kind == "optax":
        return optax_values(arg(base), steps)
    lrs, _ = torch_group_values(arg, base, steps)
    return lrs


def replay(case, lrs, dtype):
    params = [torch.nn.Parameter(torch.tensor(np.asarray(p["data"], dtype=np.float64), dtype=dtype)
                                 .reshape(p["shape"])) for p in case["params"]]
    opt = build_torch_opt(case["optimizer"], case["hparams"], params)
    sf = case["optimizer"].endswith("_schedulefree")
    if sf:
        opt.train()
    out = []
    for t, step in enumerate(case["grads"]):
        for p, g in zip(params, step):
            p.grad = torch.tensor(np.asarray(g, dtype=np.float64), dtype=dtype).reshape(p.shape)
        if lrs is not None:
            for group in opt.param_groups:
                group["lr"] = lrs[t]
        opt.step()
        out.append([p.detach().reshape(-1).to(torch.float64).numpy().copy() for p in params])
    ev = None
    if sf:
        opt.eval()
        ev = [p.detach().reshape(-1).to(torch.float64).numpy().copy() for p in params]
    return out, ev


def within(a32, a64, tol, frac):
    for s32, s64 in zip(a32, a64):
        for x, y in zip(s32, s64):
            lim = frac * (tol["atol"] + tol["rtol"] * np.abs(x))
            if np.any(np.abs(x - y) > lim):
                return False
    return True


def replay_specs():
    """(id, optimizer, hparams, lr_schedule JSON or None, reference schedule or None, steps, description)."""
    tv = torch.__version__.split("+")[0]
    S = []
    S.append(("sched-adamw-wsd-1sqrt", "adamw", {"lr": 0.01, "weight_decay": 0.1},
              {"name": "wsd", "warmup_steps": 3, "stable_steps": 5, "decay_steps": 6},
              ("torch", lambda o: get_wsd_schedule(o, 3, 5, 6)), 16,
              "AdamW with pytorch_optimizer.get_wsd_schedule (1-sqrt cooldown), past the end of the decay"))
    S.append(("sched-adam-wsd-cosine", "adam", {"lr": 0.02, "amsgrad": True},
              {"name": "wsd", "warmup_steps": 2, "stable_steps": 3, "decay_steps": 7,
               "cooldown_type": "cosine", "min_lr_ratio": 0.1},
              ("torch", lambda o: get_wsd_schedule(o, 2, 3, 7, min_lr_ratio=0.1, cooldown_type="cosine")), 14,
              "AMSGrad with a WSD schedule, cosine cooldown to min_lr_ratio 0.1"))
    S.append(("sched-sgd-one-cycle", "sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True},
              {"name": "one_cycle", "total_steps": 15},
              ("torch", lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=15,
                                                                      cycle_momentum=False)), 15,
              "Nesterov SGD with OneCycleLR's learning rate (cycle_momentum=False)"))
    S.append(("sched-adam-inverse-sqrt", "adam", {"lr": 0.01, "weight_decay": 0.01},
              {"name": "inverse_sqrt", "warmup_steps": 4},
              ("torch", lambda o: get_inverse_sqrt_schedule(o, 4)), 14,
              "Adam (L2) with transformers.get_inverse_sqrt_schedule"))
    S.append(("sched-sgd-step", "sgd", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.01},
              {"name": "step", "step_size": 4, "gamma": 0.3},
              ("torch", lambda o: torch.optim.lr_scheduler.StepLR(o, 4, gamma=0.3)), 13,
              "SGD with momentum and torch StepLR"))
    S.append(("sched-adamw-cosine", "adamw", {"lr": 0.003},
              {"name": "cosine", "decay_steps": 9, "alpha": 0.1},
              ("optax", lambda b: optax.cosine_decay_schedule(b, 9, alpha=0.1)), 12,
              "AdamW with optax.cosine_decay_schedule, past decay_steps"))
    S.append(("sched-adamw-exponential-staircase", "adamw", {"lr": 0.01, "weight_decay": 0.05},
              {"name": "exponential", "transition_steps": 3, "decay_rate": 0.5, "staircase": True},
              ("optax", lambda b: optax.exponential_decay(b, 3, 0.5, staircase=True)), 12,
              "AdamW with optax.exponential_decay(staircase)"))
    S.append(("sched-sgd-polynomial", "sgd", {"lr": 0.2},
              {"name": "polynomial", "end_value": 0.01, "power": 2.0, "transition_steps": 8},
              ("optax", lambda b: optax.polynomial_schedule(b, 0.01, 2.0, 8)), 11,
              "plain SGD with optax.polynomial_schedule(power 2)"))
    S.append(("sched-adam-piecewise", "adam", {"lr": 0.01},
              {"name": "piecewise_constant", "boundaries_and_scales": [[3, 0.5], [7, 0.2]]},
              ("optax", lambda b: optax.piecewise_constant_schedule(b, {3: 0.5, 7: 0.2})), 10,
              "Adam with optax.piecewise_constant_schedule"))
    S.append(("sched-adamw-join", "adamw", {"lr": 0.005},
              {"name": "join", "boundaries": [4],
               "schedules": [{"name": "warmup_constant", "init_value": 0.0005, "warmup_steps": 4},
                             {"name": "linear", "end_value": 0.0, "transition_steps": 8}]},
              ("optax", lambda b: optax.join_schedules(
                  [optax.warmup_constant_schedule(0.0005, b, 4), optax.linear_schedule(b, 0.0, 8)], [4])), 12,
              "AdamW with optax.join_schedules(warmup_constant, linear)"))
    S.append(("sf-adamw-defaults", "adamw_schedulefree", {}, None, None, 10,
              "AdamWScheduleFree with its defaults (train mode), then eval()"))
    S.append(("sf-adamw-warmup-wd", "adamw_schedulefree",
              {"lr": 0.01, "betas": [0.95, 0.98], "eps": 1e-6, "weight_decay": 0.05, "warmup_steps": 4,
               "r": 0.5, "weight_lr_power": 1.0}, None, None, 12,
              "AdamWScheduleFree with warmup, weight decay, polynomial weighting r and weight_lr_power"))
    S.append(("sf-adamw-scheduled", "adamw_schedulefree", {"lr": 0.02},
              {"name": "cosine", "decay_steps": 10, "alpha": 0.2},
              ("optax", lambda b: optax.cosine_decay_schedule(b, 10, alpha=0.2)), 12,
              "AdamWScheduleFree with a decaying lr (lr_max keeps the peak)"))
    S.append(("sf-sgd-defaults", "sgd_schedulefree", {"lr": 0.1}, None, None, 10,
              "SGDScheduleFree (train mode), then eval()"))
    S.append(("sf-sgd-warmup-wd", "sgd_schedulefree",
              {"lr": 0.05, "momentum": 0.8, "weight_decay": 0.01, "warmup_steps": 3, "r": 1.0,
               "weight_lr_power": 2.0}, None, None, 11,
              "SGDScheduleFree with warmup, weight decay and r = 1"))
    return S


def make_replay(spec):
    cid, name, hp, sched_json, sched_ref, steps, desc = spec
    shapes = [("w", [4, 3]), ("b", [3])]
    base = hp.get("lr", {"adamw_schedulefree": 0.0025, "sgd_schedulefree": 1.0, "sgd": 1e-3}.get(name, 1e-3))
    lrs = lr_values(sched_ref, base, steps) if sched_ref else None
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng(seed_of(cid, attempt))
        params = [{"name": n, "shape": s,
                   "data": (rng.standard_normal(int(np.prod(s))) * 0.5).astype(np.float32)} for n, s in shapes]
        grads = [[rng.standard_normal(int(np.prod(s))).astype(np.float32) for _, s in shapes]
                 for _ in range(steps)]
        case = {"version": 1, "id": cid, "description": desc, "optimizer": name, "hparams": hp,
                "lr_schedule": sched_json, "grad_clip": None, "params": params, "grads": grads}
        r32, e32 = replay(case, lrs, torch.float32)
        r64, e64 = replay(case, lrs, torch.float64)
        if not within(r32, r64, DEFAULT_TOL, ROBUST_FRACTION):
            continue
        if e32 is not None and not within([e32], [e64], DEFAULT_TOL, ROBUST_FRACTION):
            continue
        case["expected"] = r32
        if e32 is not None:
            case["expected_eval"] = e32
        case["tolerance"] = dict(DEFAULT_TOL)
        if name.endswith("_schedulefree"):
            cls = "AdamWScheduleFree" if name.startswith("adamw") else "SGDScheduleFree"
            ref = {"library": "schedulefree", "version": version(schedulefree), "class": f"schedulefree.{cls}"}
        else:
            cls = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}[name]
            ref = {"library": "torch", "version": torch.__version__.split("+")[0], "class": f"torch.optim.{cls}"}
        if sched_ref:
            ref["schedule"] = ("optax " + version(optax)) if sched_ref[0] == "optax" else "torch-side scheduler"
        ref["notes"] = (f"seed attempt {attempt}; lr set from the reference schedule before every step"
                        if sched_ref else f"seed attempt {attempt}")
        case["reference"] = ref
        return case
    raise SystemExit(f"{cid}: no robust draw in {MAX_ATTEMPTS} attempts")


# --------------------------------------------------------------------------------------
# Weight averaging
# --------------------------------------------------------------------------------------

class Tiny(torch.nn.Module):
    def __init__(self, params):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(params[0]).reshape(4, 3))
        self.b = torch.nn.Parameter(torch.tensor(params[1]).reshape(3))


def averaging_specs():
    return [
        ("ema-decay", "ema", {"decay": 0.9}, 12),
        ("ema-warmup", "ema", {"decay": 0.9999, "use_warmup": True}, 12),
        ("ema-warmup-after-min", "ema",
         {"decay": 0.95, "min_decay": 0.5, "update_after_step": 3, "use_warmup": True,
          "warmup_gamma": 2.0, "warmup_power": 0.75}, 14),
        ("swa-every-step", "swa", {}, 10),
        ("swa-start-every", "swa", {"swa_start": 3, "swa_freq": 2}, 14),
    ]


def make_averaging(spec, timm_ema):
    cid, kind, cfg, steps = spec
    rng = np.random.default_rng(seed_of(cid))
    p0 = [(rng.standard_normal(12) * 0.5).astype(np.float32), (rng.standard_normal(3) * 0.5).astype(np.float32)]
    grads = [[rng.standard_normal(12).astype(np.float32), rng.standard_normal(3).astype(np.float32)]
             for _ in range(steps)]
    lr = 0.1
    model = Tiny(p0)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    if kind == "ema":
        ema = timm_ema.ModelEmaV3(model, **cfg)
        ref = {"library": "timm", "version": timm_version(), "class": "timm.utils.ModelEmaV3",
               "notes": "update(model, step=t) after optimizer step t (1-based), as timm's train script"}
    else:
        swa = torch.optim.swa_utils.AveragedModel(model)
        ref = {"library": "torch", "version": torch.__version__.split("+")[0],
               "class": "torch.optim.swa_utils.AveragedModel",
               "notes": "update_parameters(model) after step t when t > swa_start and (t - swa_start) % swa_freq == 0"}
    expected, params_after = [], []
    for t in range(1, steps + 1):
        model.w.grad = torch.tensor(grads[t - 1][0]).reshape(4, 3)
        model.b.grad = torch.tensor(grads[t - 1][1]).reshape(3)
        opt.step()
        params_after.append([model.w.detach().reshape(-1).numpy().copy(), model.b.detach().reshape(-1).numpy().copy()])
        if kind == "ema":
            ema.update(model, step=t)
            expected.append([ema.module.w.detach().reshape(-1).numpy().copy(),
                             ema.module.b.detach().reshape(-1).numpy().copy()])
        else:
            start, freq = cfg.get("swa_start", 0), cfg.get("swa_freq", 1)
            if t > start and (t - start) % freq == 0:
                swa.update_parameters(model)
            if int(swa.n_averaged) == 0:
                expected.append(None)
            else:
                expected.append([swa.module.w.detach().reshape(-1).numpy().copy(),
                                 swa.module.b.detach().reshape(-1).numpy().copy()])
    d = json.dumps
    lines = ["{", f'  "id": {d(cid)},', f'  "kind": {d(kind)},', f'  "config": {d(cfg)},',
             f'  "optimizer": "sgd",', f'  "hparams": {d({"lr": lr})},',
             '  "params": [' + ", ".join(
                 f'{{"name": {d(n)}, "shape": {d(s)}, "data": {arr_str(a)}}}'
                 for (n, s), a in zip([("w", [4, 3]), ("b", [3])], p0)) + "],",
             '  "grads": [', ",\n".join("    " + step_str(s) for s in grads), "  ],",
             '  "expected_params": [', ",\n".join("    " + step_str(s) for s in params_after), "  ],",
             '  "expected": [', ",\n".join("    " + ("null" if s is None else step_str(s)) for s in expected), "  ],",
             f'  "tolerance": {d(DEFAULT_TOL)},', f'  "reference": {d(ref)}', "}"]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    root = os.path.abspath(args.root)
    scheds = schedule_files()
    rspecs = replay_specs()
    aspecs = averaging_specs()
    if args.list:
        for s in scheds:
            print("schedules/" + s[0])
        for s in rspecs:
            print("essentials/" + s[0])
        for s in aspecs:
            print("averaging/" + s[0])
        return 0
    for cid, desc, spec, base, values, ref in scheds:
        assert all(math.isfinite(v) for v in values), cid
        write_json(os.path.join(root, "tests/golden/schedules", cid + ".json"),
                   {"id": cid, "description": desc, "schedule": spec, "base": base, "values": values,
                    "tolerance": SCHED_TOL, "reference": ref})
    print(f"{len(scheds)} schedule files")
    edir = os.path.join(root, "tests/golden/essentials")
    os.makedirs(edir, exist_ok=True)
    for spec in rspecs:
        case = make_replay(spec)
        text = case_text(case)
        json.loads(text)
        with open(os.path.join(edir, case["id"] + ".json"), "w") as f:
            f.write(text)
    print(f"{len(rspecs)} replay cases")
    timm_ema = timm_model_ema_module()
    adir = os.path.join(root, "tests/golden/averaging")
    os.makedirs(adir, exist_ok=True)
    for spec in aspecs:
        text = make_averaging(spec, timm_ema)
        json.loads(text)
        with open(os.path.join(adir, spec[0] + ".json"), "w") as f:
            f.write(text)
    print(f"{len(aspecs)} averaging files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
