#!/usr/bin/env python3
"""Generate golden replay cases ("replay contract v1") from the reference implementations.

Each case runs one optimizer on fixed f32 parameters with a fixed sequence of
gradients and stores the parameters after every step, as computed by the
trusted reference (torch.optim 2.15.0 or pytorch-optimizer 4.1.0).  The format
and the replay procedure are those of shared/conformance/README.md; the cases
are meant for `python3 shared/conformance/check.py BINARY tests/golden/cases`.

Installing the references (outside the repository, CPU is enough):

    python3 -m venv .venv-ref
    .venv-ref/bin/pip install torch==2.15.0 pytorch-optimizer==4.1.0 numpy

(PyPI's Linux torch wheel is the CUDA build; it runs on the CPU as is.)

Usage:

    .venv-ref/bin/python tools/gen_cases.py [--out DIR] [--ext-out DIR] [--only NAME ...]
                                                 [--clean] [--check-public DIR] [--list]

    --out DIR          contract cases (default tests/golden/cases)
    --ext-out DIR      cases beyond contract v1 (default tests/golden/extensions):
                       `maximize: true` for sgd/adam/adamw (the contract keeps maximize
                       false and treats it as an unknown hyperparameter),
                       `adamomentum` (not in the registry; checked against the
                       independent implementation in this file), and `adagc` and
                       `magma` (pytorch-optimizer 4.1.0 AdaGC and Magma; Magma
                       cases use mask_prob 1, so no random mask is drawn), and
                       `namo`, `namo_d`, `adamuon` with variant "official" and
                       `sophiag`, from torch transcriptions of the authors' code
                       in this file (NamoRef, NamoDRef, AdaMuonOfficialRef,
                       SophiaGRef; no installable package has them)
    --only NAME ...    only cases whose id or optimizer matches NAME (fnmatch patterns,
                       e.g. `--only adam 'error-*' lookahead-sgd-*`)
    --clean            remove *.json in the output directories first (full runs only)
    --check-public DIR rerun the reference on every numeric case of DIR (e.g. the
                       owners' shared/conformance/cases) and compare with its expected
                       values; writes nothing
    --foreach-false    take the expected values from the foreach=False path (the owners'
                       public cases were made so); default: each class's default foreach
                       setting.  The other path is always rerun and must agree within
                       ROBUST_FRACTION of the tolerance (on CPU they differ only for
                       pytorch_optimizer.Lamb, by < 0.03x tol)
    --list             print the case ids and exit

    gen_cases.py replay CASE.json
                       act as the project's binary with the reference underneath
                       (prints RESULT, or one error line and exit 1), so that
                       shared/conformance/check.py can run the references:
                       check.py ".venv-ref/bin/python tools/gen_cases.py" DIR

How each case is made (deterministic: every case draws its data from its own
numpy Generator seeded from a CRC32 of the case id, and from a new derived seed
on a retry):

  * params ~ N(0, pscale), gradients ~ N(0, gscale), rounded to f32; optional
    all-zero gradient steps and steps whose gradient is multiplied by 1e3/1e4;
    sophiah Hessian estimates at steps 1, 1+update_period, ...; sophiag estimates
    (g_hat^2, squares of normal draws) at steps first, first+every, ...
  * the reference replays it in float32 (these are the expected values) with the
    optimizer's default foreach setting, fresh gradients every step,
    torch.nn.utils.clip_grad_norm_ when grad_clip is set, and
    torch.optim.lr_scheduler.LambdaLR (warmup_cosine) stepped after every
    optimizer.step();
  * robustness: the same replay in float64 must stay within ROBUST_FRACTION of the
    tolerance of the float32 result (|f64 - f32| <= 0.1 * (atol + rtol |f32|)),
    otherwise the case is re-drawn with another seed (values near a sign flip or a
    clamp boundary), and dropped after MAX_ATTEMPTS; the run with foreach=False is
    also compared and reported;
  * error cases are kept only when the reference itself raises (constructing the
    optimizer or replaying) or when the case breaks the contract format (README:
    unknown name/hyperparameter, data not matching its shape, a step with a wrong
    number of gradients, ...).  The generator checks both and records which.

Muon and AdaMuon: the contract runs their Newton-Schulz iteration in f32, while
the libraries cast to bfloat16.  Only that cast is replaced, the rest is the
library code:
  * torch.optim.Muon: `torch.optim._muon._zeropower_via_newtonschulz` does
    `grad.to(dtype=torch.bfloat16, copy=True)`.  Its source is taken with
    inspect.getsource, that one expression is replaced by
    `grad.to(dtype=grad.dtype, copy=True)` (asserted to occur exactly once) and
    the function is re-defined in the torch.optim._muon module namespace, where
    `_single_tensor_muon` looks it up.
  * pytorch_optimizer.AdaMuon: calls
    `zero_power_via_newton_schulz_5(update, num_steps=..., weights=...)`, whose
    `dtype` argument defaults to torch.bfloat16.  The name is re-bound in
    `pytorch_optimizer.optimizer.muon.adamuon` (and `.muon.base`, used by the
    foreach path) to a wrapper that calls the original with `dtype=g.dtype`.
  Both patches count their calls and the generator asserts they were used.

SophiaH: `step(hessian=[...])` stores the given tensors as state['hessian'] and
folds them into the Hessian EMA (`hessian_moment.lerp_(hessian, 1 - beta2)`) at
that step; at the other steps `step()` is called, and because estimates are
given exactly at steps 1, 1+update_period, ... the library never computes its
own Hutchinson estimate.

AdaMomentum (`adamomentum`, extension): not in any reference library; see the
class AdaMomentum below for the formula (Wang et al. 2021, arXiv:2106.11514).
"""

import argparse
import copy
import fnmatch
import glob
import inspect
import json
import math
import os
import sys
import zlib

import numpy as np
import torch

try:
    import pytorch_optimizer
    from pytorch_optimizer.optimizer.muon import adamuon as _po_adamuon_mod
    from pytorch_optimizer.optimizer.muon import base as _po_muon_base_mod
except ImportError:  # pragma: no cover - reported in main()
    pytorch_optimizer = None

import torch.optim._muon as _torch_muon_mod

EXPECTED_VERSIONS = {"torch": "2.15.0", "pytorch-optimizer": "4.1.0"}
ROBUST_FRACTION = 0.1     # f64 vs f32 difference allowed, as a fraction of the tolerance
PRIMARY_FOREACH_FALSE = False   # --foreach-false: expected values from the foreach=False path
MAX_ATTEMPTS = 8
DEFAULT_TOL = {"atol": 1e-06, "rtol": 1e-05}
MUON_TOL = {"atol": 1e-04, "rtol": 1e-04}
F32_EPS = float(np.finfo(np.float32).eps)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --------------------------------------------------------------------------------------
# Registry (contract v1, shared/conformance/registry.json) and its extensions
# --------------------------------------------------------------------------------------

REGISTRY = {
    "sgd": {"lr": 0.001, "momentum": 0, "dampening": 0, "weight_decay": 0, "nesterov": False},
    "adam": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0, "amsgrad": False,
             "decoupled_weight_decay": False},
    "adamw": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0.01, "amsgrad": False},
    "nadam": {"lr": 0.002, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0, "momentum_decay": 0.004,
              "decoupled_weight_decay": False},
    "radam": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0, "decoupled_weight_decay": False},
    "adamax": {"lr": 0.002, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0},
    "adagrad": {"lr": 0.01, "lr_decay": 0, "weight_decay": 0, "initial_accumulator_value": 0, "eps": 1e-10},
    "rmsprop": {"lr": 0.01, "alpha": 0.99, "eps": 1e-08, "weight_decay": 0, "momentum": 0, "centered": False},
    "adadelta": {"lr": 1.0, "rho": 0.9, "eps": 1e-06, "weight_decay": 0},
    "adafactor": {"lr": 0.01, "beta2_decay": -0.8, "eps": [None, 0.001], "d": 1.0, "weight_decay": 0.0},
    "muon": {"lr": 0.001, "weight_decay": 0.1, "momentum": 0.95, "nesterov": True,
             "ns_coefficients": [3.4445, -4.775, 2.0315], "eps": 1e-07, "ns_steps": 5, "adjust_lr_fn": None},
    "lion": {"lr": 0.0001, "betas": [0.9, 0.99], "weight_decay": 0.0, "weight_decouple": True, "cautious": False},
    "adabelief": {"lr": 0.001, "betas": [0.9, 0.999], "weight_decay": 0.0, "weight_decouple": True,
                  "rectify": False, "ams_bound": False, "eps": 1e-16},
    "lamb": {"lr": 0.001, "betas": [0.9, 0.999], "weight_decay": 0.0, "weight_decouple": True,
             "grad_averaging": True, "max_grad_norm": 1.0, "adam": False, "pre_norm": False, "eps": 1e-06},
    "adabound": {"lr": 0.001, "final_lr": 0.1, "betas": [0.9, 0.999], "gamma": 0.001, "weight_decay": 0.0,
                 "weight_decouple": True, "ams_bound": False, "eps": 1e-08},
    "signsgd": {"lr": 0.001, "momentum": 0.9, "weight_decay": 0.0, "weight_decouple": True},
    "adamuon": {"lr": 0.02, "betas": [0.9, 0.95], "weight_decay": 0.0, "weight_decouple": True, "ns_steps": 5,
                "use_adjusted_lr": True, "eps": 1e-10},
    "sophiah": {"lr": 0.06, "betas": [0.96, 0.99], "weight_decay": 0.0, "weight_decouple": True, "p": 0.01,
                "update_period": 10, "eps": 1e-12},
    "lookahead": {"k": 5, "alpha": 0.5, "inner": None},
}

# Beyond contract v1: written to --ext-out only.
EXT_REGISTRY = {
    "adamomentum": {"lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, "weight_decay": 0},
    "adagc": {"lr": 0.001, "betas": [0.9, 0.999], "beta": 0.98, "lambda_abs": 1.0, "lambda_rel": 1.05,
              "warmup_steps": 100, "weight_decay": 0.1, "weight_decouple": True, "fixed_decay": False,
              "eps": 1e-08},
    "magma": {"mask_prob": 0.5, "tau": 2.0, "momentum_beta": 0.9, "alignment_ema": 0.9, "moment_key": "auto",
              "inner": None},
    "namo": {"lr": 0.01, "weight_decay": 0.1, "momentum": 0.95, "mu2": 0.99, "adamnorm_eps": 1e-08,
             "nesterov": True, "ns_steps": 5, "scale_coeff": 0.2},
    "namo_d": {"lr": 0.01, "weight_decay": 0.1, "momentum": 0.95, "mu2": 0.99, "adamnorm_eps": 1e-08,
               "nesterov": True, "ns_steps": 5, "scale_coeff": 0.2, "col_state_clamp_c": 0.75},
    "sophiag": {"lr": 0.0001, "betas": [0.965, 0.99], "rho": 0.04, "weight_decay": 0.1, "bs": 5120.0,
                "maximize": False},
    # Adam family of pytorch-optimizer 4.1.0 (hyperparameters the registry takes; kwargs included)
    "adopt": {"lr": 0.001, "betas": [0.9, 0.9999], "weight_decay": 0.0, "weight_decouple": False,
              "fixed_decay": False, "eps": 1e-06, "maximize": False, "cautious": False, "stable_adamw": False},
    "ademamix": {"lr": 0.001, "betas": [0.9, 0.999, 0.9999], "weight_decay": 0.0, "weight_decouple": False,
                 "fixed_decay": False, "alpha": 5.0, "t_alpha_beta3": None, "eps": 1e-08, "maximize": False,
                 "cautious": False, "stable_adamw": False},
    "simplifiedademamix": {"lr": 0.0001, "betas": [0.99, 0.95], "weight_decay": 0.0, "weight_decouple": True,
                           "fixed_decay": False, "alpha": 0.0, "beta1_warmup": None, "min_beta1": 0.9,
                           "eps": 1e-08, "maximize": False},
    "adan": {"lr": 0.001, "betas": [0.98, 0.92, 0.99], "weight_decay": 0.0, "weight_decouple": False,
             "max_grad_norm": 0.0, "eps": 1e-08, "maximize": False, "use_gc": False, "adanorm": False,
             "adanorm_r": 0.95},
    "laprop": {"lr": 0.0004, "betas": [0.9, 0.999], "centered": False, "steps_before_using_centered": 10,
               "weight_decay": 0.0, "weight_decouple": True, "fixed_decay": False, "ams_bound": False,
               "eps": 1e-15, "maximize": False, "cautious": False},
    "yogi": {"lr": 0.01, "betas": [0.9, 0.999], "initial_accumulator": 1e-06, "weight_decay": 0.0,
             "weight_decouple": True, "fixed_decay": False, "eps": 0.001, "maximize": False, "adam_debias": False},
    "qhadam": {"lr": 0.001, "betas": [0.9, 0.999], "nus": [1.0, 1.0], "weight_decay": 0.0, "weight_decouple": False,
               "fixed_decay": False, "eps": 1e-08, "maximize": False},
    "adamod": {"lr": 0.001, "betas": [0.9, 0.99, 0.9999], "weight_decay": 0.0, "weight_decouple": True,
               "fixed_decay": False, "eps": 1e-08, "maximize": False, "adam_debias": False},
    "diffgrad": {"lr": 0.001, "betas": [0.9, 0.999], "weight_decay": 0.0, "weight_decouple": True,
                 "fixed_decay": False, "rectify": False, "n_sma_threshold": 5, "degenerated_to_sgd": True,
                 "ams_bound": False, "eps": 1e-08, "maximize": False, "adam_debias": False, "adanorm": False,
                 "adanorm_r": 0.95},
    "mars": {"lr": 0.003, "betas": [0.95, 0.99], "gamma": 0.025, "mars_type": "adamw", "optimize_1d": False,
             "lr_1d": 0.003, "betas_1d": [0.9, 0.95], "weight_decay": 0.0, "weight_decay_1d": 0.1,
             "weight_decouple": True, "fixed_decay": False, "ams_bound": False, "cautious": False, "eps": 1e-08,
             "maximize": False},
    "stableadamw": {"lr": 0.001, "betas": [0.9, 0.99], "kahan_sum": True, "weight_decay": 0.01,
                    "weight_decouple": True, "eps": 1e-08, "maximize": False},
    "adamp": {"lr": 0.001, "betas": [0.9, 0.999], "weight_decay": 0.0, "weight_decouple": True, "fixed_decay": False,
              "delta": 0.1, "wd_ratio": 0.1, "nesterov": False, "eps": 1e-08, "maximize": False, "cautious": False,
              "adam_debias": False, "use_gc": False, "adanorm": False, "adanorm_r": 0.95},
}
# Catalogue A (torch.optim completion and the SGD family): registry names beyond
# shared/conformance/registry.json, with the reference constructors' argument names
# and defaults; contract-format cases (without `maximize`) go to --out.
CATALOGUE_A = {
    "asgd": {"lr": 0.01, "lambd": 0.0001, "alpha": 0.75, "t0": 1000000.0, "weight_decay": 0},
    "rprop": {"lr": 0.01, "etas": [0.5, 1.2], "step_sizes": [1e-06, 50]},
    "sgdw": {"lr": 0.0001, "momentum": 0.0, "weight_decay": 0.0, "weight_decouple": True, "dampening": 0.0,
             "nesterov": False},
    "qhm": {"lr": 0.001, "momentum": 0.0, "nu": 1.0, "weight_decay": 0.0, "weight_decouple": False,
            "fixed_decay": False},
    "aggmo": {"lr": 0.001, "betas": [0.0, 0.9, 0.99], "weight_decay": 0.0, "weight_decouple": False,
              "fixed_decay": False},
    "lars": {"lr": 0.001, "weight_decay": 0.0, "momentum": 0.9, "dampening": 0.0, "trust_coefficient": 0.001,
             "nesterov": False},
    "sgdp": {"lr": 0.001, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "weight_decouple": True,
             "fixed_decay": False, "delta": 0.1, "wd_ratio": 0.1, "nesterov": False, "eps": 1e-08},
    "madgrad": {"lr": 0.001, "momentum": 0.9, "weight_decay": 0.0, "weight_decouple": False, "eps": 1e-06},
    "novograd": {"lr": 0.001, "betas": [0.95, 0.98], "weight_decay": 0.0, "weight_decouple": False,
                 "fixed_decay": False, "grad_averaging": False, "eps": 1e-08, "adam_debias": False},
    "tiger": {"lr": 0.001, "beta": 0.965, "weight_decay": 0.01, "weight_decouple": True, "fixed_decay": False},
    "lbfgs": {"lr": 1, "max_iter": 20, "max_eval": None, "tolerance_grad": 1e-07, "tolerance_change": 1e-09,
              "history_size": 100, "line_search_fn": None},
}
CONTRACT_V1_NAMES = set(REGISTRY)
REGISTRY.update(CATALOGUE_A)

WRAPPERS = {"lookahead", "magma"}   # take an "inner" optimizer
EXT_HPARAMS = {"sgd": {"maximize"}, "adam": {"maximize"}, "adamw": {"maximize"},
               "adamuon": {"variant", "nesterov"}}
EXT_HPARAMS.update({name: {"maximize"} for name in CATALOGUE_A})   # catalogue A
# Catalogue C (issue 17: learning-rate-free, spike-aware, memory-light): contract cases (no maximize) in --out,
# maximize cases in --ext-out.  Not part of the owners' registry.json, so kept apart from REGISTRY.
# null stands for a default JSON cannot write (growth_rate = inf).
CAT_C_REGISTRY = {
    "prodigy": {"lr": 1.0, "betas": [0.9, 0.999], "beta3": None, "d0": 1e-06, "d_coef": 1.0, "growth_rate": None,
                "weight_decay": 0.0, "weight_decouple": True, "fixed_decay": False, "bias_correction": False,
                "safeguard_warmup": False, "eps": 1e-08},
    "dadaptadam": {"lr": 1.0, "betas": [0.9, 0.999], "d0": 1e-06, "growth_rate": None, "weight_decay": 0.0,
                   "weight_decouple": False, "fixed_decay": False, "bias_correction": False, "eps": 1e-08},
    "dadaptsgd": {"lr": 1.0, "momentum": 0.9, "d0": 1e-06, "growth_rate": None, "weight_decay": 0.0,
                  "weight_decouple": False, "fixed_decay": False},
    "dadaptlion": {"lr": 1.0, "betas": [0.9, 0.999], "d0": 1e-06, "weight_decay": 0.0, "weight_decouple": False,
                   "fixed_decay": False},
    "grokfastadamw": {"lr": 0.0001, "betas": [0.9, 0.99], "grokfast": True, "grokfast_alpha": 0.98,
                      "grokfast_lamb": 2.0, "grokfast_after_step": 0, "weight_decay": 0.0, "weight_decouple": True,
                      "fixed_decay": False, "normalize_lr": True, "eps": 1e-08},
    "ranger": {"lr": 0.001, "betas": [0.95, 0.999], "alpha": 0.5, "k": 6, "n_sma_threshold": 5,
               "degenerated_to_sgd": False, "weight_decay": 0.0, "weight_decouple": True, "fixed_decay": False,
               "use_gc": True, "gc_conv_only": False, "eps": 1e-05, "adam_debias": False},
    "came": {"lr": 0.0002, "betas": [0.9, 0.999, 0.9999], "weight_decay": 0.0, "weight_decouple": True,
             "fixed_decay": False, "clip_threshold": 1.0, "ams_bound": False, "eps1": 1e-30, "eps2": 1e-16},
    "schedulefreeradam": {"lr": 0.0025, "betas": [0.9, 0.999], "weight_decay": 0.0, "r": 0.0,
                          "weight_lr_power": 2.0, "silent_sgd_phase": True, "eps": 1e-08},
    "adammini": {"lr": 1.0, "betas": [0.9, 0.999], "weight_decay": 0.1, "model_sharding": False,
                 "num_embeds": 2048, "num_heads": 32, "num_query_groups": None, "eps": 1e-08},
    "stablespam": {"lr": 0.001, "betas": [0.9, 0.999], "gamma1": 0.7, "gamma2": 0.9, "theta": 0.999,
                   "t_max": None, "eta_min": 0.5, "weight_decay": 0.0, "update_proj_gap": 1000, "eps": 1e-08},
    "spam": {"lr": 0.001, "betas": [0.9, 0.999], "density": 1.0, "weight_decay": 0.0, "warmup_epoch": 50,
             "threshold": 5000, "grad_accu_steps": 20, "update_proj_gap": 500, "eps": 1e-06},
}
CAT_C_INF_DEFAULTS = {"growth_rate"}   # JSON null -> float('inf') for the reference
EXT_HPARAMS.update({name: {"maximize"} for name in CAT_C_REGISTRY})   # catalogue C

# registry name -> (library, class path, class getter)
REFERENCES = {
    "sgd": ("torch", "torch.optim.SGD", lambda: torch.optim.SGD),
    "adam": ("torch", "torch.optim.Adam", lambda: torch.optim.Adam),
    "adamw": ("torch", "torch.optim.AdamW", lambda: torch.optim.AdamW),
    "nadam": ("torch", "torch.optim.NAdam", lambda: torch.optim.NAdam),
    "radam": ("torch", "torch.optim.RAdam", lambda: torch.optim.RAdam),
    "adamax": ("torch", "torch.optim.Adamax", lambda: torch.optim.Adamax),
    "adagrad": ("torch", "torch.optim.Adagrad", lambda: torch.optim.Adagrad),
    "rmsprop": ("torch", "torch.optim.RMSprop", lambda: torch.optim.RMSprop),
    "adadelta": ("torch", "torch.optim.Adadelta", lambda: torch.optim.Adadelta),
    "adafactor": ("torch", "torch.optim.Adafactor", lambda: torch.optim.Adafactor),
    "muon": ("torch", "torch.optim.Muon", lambda: torch.optim.Muon),
    "lion": ("pytorch-optimizer", "pytorch_optimizer.Lion", lambda: pytorch_optimizer.Lion),
    "adabelief": ("pytorch-optimizer", "pytorch_optimizer.AdaBelief", lambda: pytorch_optimizer.AdaBelief),
    "lamb": ("pytorch-optimizer", "pytorch_optimizer.Lamb", lambda: pytorch_optimizer.Lamb),
    "adabound": ("pytorch-optimizer", "pytorch_optimizer.AdaBound", lambda: pytorch_optimizer.AdaBound),
    "signsgd": ("pytorch-optimizer", "pytorch_optimizer.SignSGD", lambda: pytorch_optimizer.SignSGD),
    "adamuon": ("pytorch-optimizer", "pytorch_optimizer.AdaMuon", lambda: pytorch_optimizer.AdaMuon),
    "sophiah": ("pytorch-optimizer", "pytorch_optimizer.SophiaH", lambda: pytorch_optimizer.SophiaH),
    "lookahead": ("pytorch-optimizer", "pytorch_optimizer.Lookahead", lambda: pytorch_optimizer.Lookahead),
    "adamomentum": ("optimist-gen", "independent implementation of the paper", lambda: AdaMomentum),
    "adagc": ("pytorch-optimizer", "pytorch_optimizer.AdaGC", lambda: pytorch_optimizer.AdaGC),
    "magma": ("pytorch-optimizer", "pytorch_optimizer.Magma", lambda: pytorch_optimizer.Magma),
    "namo": ("optimist-gen", "transcription of NAMO (minxin-zhg/namo src/namo.py @ 5f8805a)", lambda: NamoRef),
    "namo_d": ("optimist-gen", "transcription of NAMO_D (minxin-zhg/namo src/namo.py @ 5f8805a)",
               lambda: NamoDRef),
    "adamuon_official": ("optimist-gen", "transcription of the official AdaMuon update (Chongjie-Si/AdaMuon, "
                         "sign-stabilized)", lambda: AdaMuonOfficialRef),
    "sophiag": ("optimist-gen", "transcription of SophiaG (Liuhong99/Sophia sophia.py @ 195a786)",
                lambda: SophiaGRef),
    # catalogue A
    "asgd": ("torch", "torch.optim.ASGD", lambda: torch.optim.ASGD),
    "rprop": ("torch", "torch.optim.Rprop", lambda: torch.optim.Rprop),
    "sgdw": ("pytorch-optimizer", "pytorch_optimizer.SGDW", lambda: pytorch_optimizer.SGDW),
    "qhm": ("pytorch-optimizer", "pytorch_optimizer.QHM", lambda: pytorch_optimizer.QHM),
    "aggmo": ("pytorch-optimizer", "pytorch_optimizer.AggMo", lambda: pytorch_optimizer.AggMo),
    "lars": ("pytorch-optimizer", "pytorch_optimizer.LARS", lambda: pytorch_optimizer.LARS),
    "sgdp": ("pytorch-optimizer", "pytorch_optimizer.SGDP", lambda: pytorch_optimizer.SGDP),
    "madgrad": ("pytorch-optimizer", "pytorch_optimizer.MADGRAD", lambda: pytorch_optimizer.MADGRAD),
    "novograd": ("pytorch-optimizer", "pytorch_optimizer.NovoGrad", lambda: pytorch_optimizer.NovoGrad),
    "tiger": ("pytorch-optimizer", "pytorch_optimizer.Tiger", lambda: pytorch_optimizer.Tiger),
    "lbfgs": ("torch", "torch.optim.LBFGS", lambda: torch.optim.LBFGS),
    # Adam family of pytorch-optimizer 4.1.0
    "adopt": ("pytorch-optimizer", "pytorch_optimizer.ADOPT", lambda: pytorch_optimizer.ADOPT),
    "ademamix": ("pytorch-optimizer", "pytorch_optimizer.AdEMAMix", lambda: pytorch_optimizer.AdEMAMix),
    "simplifiedademamix": ("pytorch-optimizer", "pytorch_optimizer.SimplifiedAdEMAMix",
                           lambda: pytorch_optimizer.SimplifiedAdEMAMix),
    "adan": ("pytorch-optimizer", "pytorch_optimizer.Adan", lambda: pytorch_optimizer.Adan),
    "laprop": ("pytorch-optimizer", "pytorch_optimizer.LaProp", lambda: pytorch_optimizer.LaProp),
    "yogi": ("pytorch-optimizer", "pytorch_optimizer.Yogi", lambda: pytorch_optimizer.Yogi),
    "qhadam": ("pytorch-optimizer", "pytorch_optimizer.QHAdam", lambda: pytorch_optimizer.QHAdam),
    "adamod": ("pytorch-optimizer", "pytorch_optimizer.AdaMod", lambda: pytorch_optimizer.AdaMod),
    "diffgrad": ("pytorch-optimizer", "pytorch_optimizer.DiffGrad", lambda: pytorch_optimizer.DiffGrad),
    "mars": ("pytorch-optimizer", "pytorch_optimizer.MARS", lambda: pytorch_optimizer.MARS),
    "stableadamw": ("pytorch-optimizer", "pytorch_optimizer.StableAdamW", lambda: pytorch_optimizer.StableAdamW),
    "adamp": ("pytorch-optimizer", "pytorch_optimizer.AdamP", lambda: pytorch_optimizer.AdamP),
    # catalogue C
    "prodigy": ("pytorch-optimizer", "pytorch_optimizer.Prodigy", lambda: pytorch_optimizer.Prodigy),
    "dadaptadam": ("pytorch-optimizer", "pytorch_optimizer.DAdaptAdam", lambda: pytorch_optimizer.DAdaptAdam),
    "dadaptsgd": ("pytorch-optimizer", "pytorch_optimizer.DAdaptSGD", lambda: pytorch_optimizer.DAdaptSGD),
    "dadaptlion": ("pytorch-optimizer", "pytorch_optimizer.DAdaptLion", lambda: pytorch_optimizer.DAdaptLion),
    "grokfastadamw": ("pytorch-optimizer", "pytorch_optimizer.GrokFastAdamW",
                      lambda: pytorch_optimizer.GrokFastAdamW),
    "ranger": ("pytorch-optimizer", "pytorch_optimizer.Ranger", lambda: pytorch_optimizer.Ranger),
    "came": ("pytorch-optimizer", "pytorch_optimizer.CAME", lambda: pytorch_optimizer.CAME),
    "schedulefreeradam": ("pytorch-optimizer", "pytorch_optimizer.ScheduleFreeRAdam",
                          lambda: pytorch_optimizer.ScheduleFreeRAdam),
    "adammini": ("pytorch-optimizer", "pytorch_optimizer.AdamMini", lambda: pytorch_optimizer.AdamMini),
    "stablespam": ("pytorch-optimizer", "pytorch_optimizer.StableSPAM", lambda: pytorch_optimizer.StableSPAM),
    "spam": ("pytorch-optimizer", "pytorch_optimizer.SPAM", lambda: pytorch_optimizer.SPAM),
}
MATRIX_ONLY = {"muon", "adamuon", "namo", "namo_d"}
TUPLE_HPARAMS = {"betas", "eps", "ns_coefficients", "etas", "step_sizes", "nus", "betas_1d"}   # JSON arrays -> Python tuples


def library_version(library):
    if library == "torch":
        return torch.__version__.split("+")[0]
    if library == "pytorch-optimizer":
        import importlib.metadata
        return importlib.metadata.version("pytorch_optimizer")
    return "n/a"


# --------------------------------------------------------------------------------------
# Newton-Schulz in the parameter dtype (f32) instead of bfloat16
# --------------------------------------------------------------------------------------

NS_CALLS = {"torch_muon": 0, "adamuon": 0}


def _patch_torch_muon():
    fn_name = "_zeropower_via_newtonschulz"
    src = inspect.getsource(getattr(_torch_muon_mod, fn_name))
    old = "grad.to(dtype=torch.bfloat16, copy=True)"
    if src.count(old) != 1:
        raise RuntimeError(f"torch.optim._muon.{fn_name} changed: cannot find the bfloat16 cast to replace")
    new_src = src.replace(old, "grad.to(dtype=grad.dtype, copy=True)")
    namespace = {}
    exec(compile(new_src, f"<torch.optim._muon.{fn_name} without the bfloat16 cast>", "exec"),
         _torch_muon_mod.__dict__, namespace)
    patched = namespace[fn_name]

    def counted(*args, **kwargs):
        NS_CALLS["torch_muon"] += 1
        return patched(*args, **kwargs)

    setattr(_torch_muon_mod, fn_name, counted)


def _patch_adamuon():
    original = _po_adamuon_mod.zero_power_via_newton_schulz_5
    if "dtype" not in inspect.signature(original).parameters:
        raise RuntimeError("pytorch_optimizer zero_power_via_newton_schulz_5 has no dtype argument any more")

    def ns_in_input_dtype(g, *args, **kwargs):
        NS_CALLS["adamuon"] += 1
        kwargs["dtype"] = g.dtype
        return original(g, *args, **kwargs)

    _po_adamuon_mod.zero_power_via_newton_schulz_5 = ns_in_input_dtype
    if hasattr(_po_muon_base_mod, "zero_power_via_newton_schulz_5"):
        _po_muon_base_mod.zero_power_via_newton_schulz_5 = ns_in_input_dtype


# --------------------------------------------------------------------------------------
# AdaMomentum: independent implementation (no reference library has it)
# --------------------------------------------------------------------------------------

ADAMOMENTUM_FORMULA = ("m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*m^2 + eps (eps added into the state every step); "
                       "p *= 1 - lr*weight_decay (decoupled, before the update); "
                       "p -= lr * (m/(1-b1^t)) / sqrt(v/(1-b2^t)) (no eps outside the sqrt)")


class AdaMomentum(torch.optim.Optimizer):
    """AdaMomentum, Wang et al., "Rethinking Adam: A Twofold Exponential Moving Average
    Approach", arXiv:2106.11514: Adam whose second moment tracks the momentum m
    instead of the raw gradient, with eps inside the second-moment state.

        m_t = b1 m_{t-1} + (1 - b1) g_t
        v_t = b2 v_{t-1} + (1 - b2) m_t^2 + eps
        p_t = p_{t-1} - lr * (m_t / (1 - b1^t)) / sqrt(v_t / (1 - b2^t))

    Weight decay is not part of the paper's algorithm; here it is decoupled
    (AdamW style, p *= 1 - lr * weight_decay before the update), as in the
    AdaBelief-derived ports that cite the paper.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                m, v = state["m"], state["v"]
                if wd != 0:
                    p.mul_(1.0 - lr * wd)
                m.mul_(beta1).add_(p.grad, alpha=1.0 - beta1)
                v.mul_(beta2).addcmul_(m, m, value=1.0 - beta2).add_(eps)
                denom = (v / (1.0 - beta2 ** t)).sqrt()
                p.addcdiv_(m, denom, value=-lr / (1.0 - beta1 ** t))
        return None


def adamomentum_numpy(case):
    """Plain float64 numpy AdaMomentum (same formula), used as an extra check."""
    hp = dict(EXT_REGISTRY["adamomentum"])
    hp.update(case["hparams"])
    b1, b2 = hp["betas"]
    ps = [np.asarray(p["data"], dtype=np.float64).copy() for p in case["params"]]
    ms = [np.zeros_like(p) for p in ps]
    vs = [np.zeros_like(p) for p in ps]
    out = []
    base = hp["lr"]
    for t, grads in enumerate(case["grads"]):
        gs = [np.asarray(g, dtype=np.float64) for g in grads]
        if case.get("grad_clip"):
            total = math.sqrt(sum(float(np.sum(g * g)) for g in gs))
            coef = case["grad_clip"]["max_norm"] / (total + 1e-6)
            if coef < 1:
                gs = [g * coef for g in gs]
        lr = schedule_lr(case["lr_schedule"], base, t) if case.get("lr_schedule") else base
        step = t + 1
        for i in range(len(ps)):
            if hp["weight_decay"] != 0:
                ps[i] *= 1 - lr * hp["weight_decay"]
            ms[i] = b1 * ms[i] + (1 - b1) * gs[i]
            vs[i] = b2 * vs[i] + (1 - b2) * ms[i] ** 2 + hp["eps"]
            ps[i] = ps[i] - lr * (ms[i] / (1 - b1 ** step)) / np.sqrt(vs[i] / (1 - b2 ** step))
        out.append([p.copy() for p in ps])
    return out


# --------------------------------------------------------------------------------------
# Transcriptions of reference code that is not installable here (extensions):
# NAMO / NAMO-D, the official AdaMuon, the official SophiaG.  Each class follows the
# named source operation for operation; the only intended change is that the
# Newton-Schulz iteration runs in the input dtype instead of a bfloat16 cast
# (the contract's f32 rule, as for Muon above).
# --------------------------------------------------------------------------------------

KJ_NS_COEFFS = (3.4445, -4.7750, 2.0315)


def ns5_input_dtype(G, steps, eps=1e-7):
    """Keller Jordan's quintic Newton-Schulz (the form in minxin-zhg/namo and in the
    AdaMuon authors' helper), without the bfloat16 cast."""
    assert G.ndim == 2
    a, b, c = KJ_NS_COEFFS
    X = G.clone()
    tall = G.size(0) > G.size(1)
    if tall:
        X = X.T
    X = X / (X.norm() + eps)
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    if tall:
        X = X.T
    return X


def _nanmean(x):
    mask = ~torch.isnan(x)
    count = mask.sum()
    mean = torch.where(mask, x, torch.zeros_like(x)).sum() / count.clamp(min=1)
    return torch.where(count > 0, mean, torch.full_like(mean, float("nan")))


class NamoRef(torch.optim.Optimizer):
    """NAMO, transcribed from minxin-zhg/namo src/namo.py (commit 5f8805a), class NAMO,
    2-D parameters only (the use_muon path).  The reference's `wd` is `weight_decay`
    here (the project's name)."""

    def __init__(self, params, lr=1e-2, weight_decay=0.1, momentum=0.95, mu2=0.99, adamnorm_eps=1e-8,
                 nesterov=True, ns_steps=5, scale_coeff=0.2):
        super().__init__(params, dict(lr=lr, wd=weight_decay, momentum=momentum, mu2=mu2,
                                      adamnorm_eps=adamnorm_eps, nesterov=nesterov, ns_steps=ns_steps,
                                      scale_coeff=scale_coeff))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, wd, momentum, mu2 = group["lr"], group["wd"], group["momentum"], group["mu2"]
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g)
                    state["v_squared"] = torch.zeros((), dtype=g.dtype)
                    state["step"] = 0
                buf, v_squared = state["momentum_buffer"], state["v_squared"]
                gn = torch.linalg.vector_norm(g)
                buf.lerp_(g, 1 - momentum)
                g = g.lerp(buf, momentum) if group["nesterov"] else buf
                gn_m = torch.linalg.vector_norm(g)
                v_squared.mul_(mu2).add_(gn * gn, alpha=1.0 - mu2)
                u = ns5_input_dtype(g, group["ns_steps"]).view_as(p)
                state["step"] += 1
                t = state["step"]
                bc1 = 1.0 - momentum ** t
                bc2 = 1.0 - mu2 ** t
                v_t = v_squared.sqrt().add_(group["adamnorm_eps"])
                adaptive_lr = (lr * math.sqrt(bc2) / (bc1 + 1e-12)) * (gn_m / v_t)
                adaptive_lr_clamped = adaptive_lr.clamp(max=1.0)
                A, B = p.shape[:2]
                adjusted_lr = (adaptive_lr * (group["scale_coeff"] * math.sqrt(max(A, B)))).clamp(max=1.0)
                p.mul_(1.0 - wd * adaptive_lr_clamped)
                u.mul_(adjusted_lr.to(dtype=u.dtype))
                p.add_(u, alpha=-1.0)
        return None


class NamoDRef(torch.optim.Optimizer):
    """NAMO-D, transcribed from minxin-zhg/namo src/namo.py (commit 5f8805a), class NAMO_D,
    2-D parameters only (the use_muon path)."""

    def __init__(self, params, lr=1e-2, weight_decay=0.1, momentum=0.95, mu2=0.99, adamnorm_eps=1e-8,
                 nesterov=True, ns_steps=5, scale_coeff=0.2, col_state_clamp_c=0.75):
        super().__init__(params, dict(lr=lr, wd=weight_decay, momentum=momentum, mu2=mu2,
                                      adamnorm_eps=adamnorm_eps, nesterov=nesterov, ns_steps=ns_steps,
                                      scale_coeff=scale_coeff, col_state_clamp_c=col_state_clamp_c))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, wd, momentum, mu2 = group["lr"], group["wd"], group["momentum"], group["mu2"]
            c_clamp = group["col_state_clamp_c"]
            for p in group["params"]:
                g2 = p.grad
                if g2 is None:
                    continue
                n = g2.shape[1]
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(g2)
                    state["V"] = torch.zeros(n, dtype=g2.dtype)
                    state["step"] = 0
                buf, V = state["momentum_buffer"], state["V"]
                nc_g = torch.linalg.vector_norm(g2, dim=0)
                V.mul_(mu2).addcmul_(nc_g, nc_g, value=1.0 - mu2)
                buf.lerp_(g2, 1.0 - momentum)
                m_for_update = g2.lerp(buf, momentum) if group["nesterov"] else buf
                O2 = ns5_input_dtype(m_for_update, group["ns_steps"])
                state["step"] += 1
                t = state["step"]
                bc1 = 1.0 - momentum ** t
                bc2 = 1.0 - mu2 ** t
                base_lr = lr * math.sqrt(bc2) / (bc1 + 1e-12)
                nc_m = torch.linalg.vector_norm(m_for_update, dim=0)
                denom = torch.sqrt(V)
                denom.add_(group["adamnorm_eps"])
                col_scale = nc_m / denom
                if 0.0 < float(c_clamp) <= 1.0:
                    c = float(c_clamp)
                    mu = _nanmean(col_scale)
                    ok = torch.isfinite(mu) & (mu > 0)
                    floor = torch.where(ok, mu * c, col_scale.new_zeros(()))
                    ceil = torch.where(ok, mu / c, col_scale.new_full((), float("inf")))
                    torch.clamp(col_scale, min=floor, max=ceil, out=col_scale)
                col_lr_wd = (col_scale * base_lr).clamp(max=1.0)
                decay = col_lr_wd.mul(-wd).add_(1.0).clamp_min_(0.0)
                p.mul_(decay.unsqueeze(0))
                A, B = p.shape[:2]
                shape_lr = base_lr * (group["scale_coeff"] * math.sqrt(max(A, B)))
                col_lr_up = (col_scale * shape_lr).clamp(max=1.0)
                p.addcmul_(O2, col_lr_up.unsqueeze(0), value=-1.0)
        return None


class AdaMuonOfficialRef(torch.optim.Optimizer):
    """The AdaMuon authors' sign-stabilized update, transcribed from `AdaMuon.step` in
    Chongjie-Si/AdaMuon gpt2/models/optimizers/adamuon.py (commit 5b99dd0; the update is
    written inline in `step`, there is no separate update function): momentum as a
    moving average `m.lerp_(g, 1 - beta)`, Nesterov input `g.lerp(m, beta)`, Newton-Schulz
    of sign(input), variance `v = beta v + (1 - beta) O^2` with the same beta,
    `O / (sqrt(v) + eps)`, rescale to RMS 0.2, `p *= 1 - lr wd`, `p -= lr * update`.
    Defaults as the authors' constructor: nesterov True, ns_steps 5, eps 1e-8.  The
    authors' distributed step casts the update to bfloat16 before applying it; here it
    stays f32.  (A heavy-ball buffer `m = beta m + g` is (1 - beta)^-1 times this one, so
    the sign, and the update, are the same up to rounding.)"""

    def __init__(self, params, lr=0.02, momentum=0.95, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    @staticmethod
    def _update(grad, momentum, variance, beta, ns_steps=5, nesterov=True, eps=1e-8):
        momentum.lerp_(grad, 1 - beta)
        update = grad.lerp(momentum, beta) if nesterov else momentum
        update = ns5_input_dtype(torch.sign(update), ns_steps)
        variance.mul_(beta).addcmul_(update, update, value=1 - beta)
        update = update.div(variance.view_as(update).sqrt().add(eps))
        scale = 0.2 * (min(update.shape) * max(update.shape)) ** 0.5 / (update.norm() + eps)
        update.mul_(scale)
        return update

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    state["momentum"] = torch.zeros_like(p)
                    state["variance"] = torch.zeros_like(p)
                update = self._update(p.grad, state["momentum"], state["variance"], beta=group["momentum"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(update.reshape(p.shape), alpha=-group["lr"])
        return None


class SophiaGRef(torch.optim.Optimizer):
    """SophiaG, transcribed from Liuhong99/Sophia sophia.py (commit 195a786), the
    non-capturable single-tensor path.  `bs` (an argument of the official step()) is a
    hyperparameter here.  A step given a curvature estimate `est` first folds it into
    the Hessian EMA as the official update_hessian() does with est = g_hat * g_hat
    (`hessian = beta2 hessian + (1 - beta2) est`), then steps."""

    def __init__(self, params, lr=1e-4, betas=(0.965, 0.99), rho=0.04, weight_decay=1e-1, bs=5120,
                 maximize=False):
        super().__init__(params, dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay, bs=bs,
                                      maximize=maximize))

    @torch.no_grad()
    def step(self, closure=None, hessian=None):
        k = 0
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, rho, bs, wd = group["lr"], group["rho"], group["bs"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["hessian"] = torch.zeros_like(p)
                if hessian is not None:
                    state["hessian"].mul_(beta2).add_(hessian[k], alpha=1 - beta2)
                k += 1
                grad = p.grad if not group["maximize"] else -p.grad
                exp_avg, hess = state["exp_avg"], state["hessian"]
                state["step"] += 1
                p.mul_(1 - lr * wd)
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                ratio = (exp_avg.abs() / (rho * bs * hess + 1e-15)).clamp(None, 1)
                p.addcmul_(exp_avg.sign(), ratio, value=-lr)
        return None


ADAMUON_OFFICIAL_DEFAULTS = {"betas": None, "eps": 1e-8, "nesterov": True, "ns_steps": 5,
                             "weight_decouple": True, "ns_coeffs": "original", "maximize": False}


def build_transcription(key, hparams, params):
    """The optimizer of a transcribed reference (see REFERENCES), from project hyperparameters."""
    hp = dict(hparams)
    if key == "adamuon_official":
        hp.pop("variant")
        hp.pop("use_adjusted_lr", None)   # no effect in the official variant
        betas = hp.pop("betas", [0.9, 0.95])
        if betas[0] != betas[1]:
            raise HarnessError("the official AdaMuon has one beta (momentum) for both moments")
        for k, want in ADAMUON_OFFICIAL_DEFAULTS.items():
            if k in hp and hp.pop(k) != want:
                raise HarnessError(f"the official AdaMuon code fixes {k} = {want}")
        return AdaMuonOfficialRef(params, momentum=betas[0], **hp)
    if key in ("namo", "namo_d"):
        if hp.pop("flatten", False):
            raise HarnessError("flatten cases are not generated")
        return (NamoRef if key == "namo" else NamoDRef)(params, **hp)
    if key == "sophiag":
        if "betas" in hp:
            hp["betas"] = tuple(hp["betas"])
        return SophiaGRef(params, **hp)
    raise HarnessError(f"no transcription named {key!r}")


def reference_key(name, hparams):
    """The REFERENCES entry of a case: the official AdaMuon variant has its own."""
    if name == "adamuon" and isinstance(hparams, dict) and hparams.get("variant") == "official":
        return "adamuon_official"
    return name


TRANSCRIPTION_NOTES = {
    "namo": "transcription of class NAMO of minxin-zhg/namo src/namo.py (commit 5f8805a) in this generator; "
            "Newton-Schulz in float32 instead of the bfloat16 cast; no torch.compile",
    "namo_d": "transcription of class NAMO_D of minxin-zhg/namo src/namo.py (commit 5f8805a) in this generator; "
              "Newton-Schulz in float32 instead of the bfloat16 cast; no torch.compile",
    "adamuon_official": "transcription of the AdaMuon authors' sign-stabilized update (AdaMuon.step of "
                        "Chongjie-Si/AdaMuon gpt2/models/optimizers/adamuon.py, commit 5b99dd0: moving-average "
                        "momentum with lerp_) in this generator; Newton-Schulz in float32 instead of the bfloat16 "
                        "cast; the update applied in float32, not cast to bfloat16",
    "sophiag": "transcription of SophiaG of Liuhong99/Sophia sophia.py (commit 195a786) in this generator; "
               "at a step with a 'hessian' entry, hessian = beta2 hessian + (1 - beta2) est (the official "
               "update_hessian with est = g_hat^2) before step(bs=bs)",
}


# --------------------------------------------------------------------------------------
# Contract checks (what the binary must reject even where the reference would not)
# --------------------------------------------------------------------------------------

class ContractError(Exception):
    pass


class HarnessError(Exception):
    """The case cannot even be fed to the reference (unknown name, data that does not fit)."""


def contract_check_optimizer(name, hparams, shapes, ext, where="optimizer"):
    reg = dict(REGISTRY)
    reg.update(CAT_C_REGISTRY)
    if ext:
        reg.update(EXT_REGISTRY)
    if not isinstance(name, str) or name not in reg:
        raise ContractError(f"unknown {where} {name!r}")
    if not isinstance(hparams, dict):
        raise ContractError("hparams is not an object")
    allowed = set(reg[name]) | (EXT_HPARAMS.get(name, set()) if ext else set())
    unknown = sorted(set(hparams) - allowed)
    if unknown:
        raise ContractError(f"unknown hyperparameter {unknown[0]!r} for {name}")
    if name in MATRIX_ONLY:
        for s in shapes:
            if len(s) != 2:
                raise ContractError(f"{name} takes only 2-D parameters, got shape {s}")
    if name == "lookahead":
        inner = hparams.get("inner")
        if not isinstance(inner, dict) or "optimizer" not in inner:
            raise ContractError("lookahead requires 'inner'")
        extra = sorted(set(inner) - {"optimizer", "hparams"})
        if extra:
            raise ContractError(f"unknown key {extra[0]!r} in inner")
        if inner["optimizer"] == "lookahead":
            raise ContractError("nested lookahead is not part of the contract")
        contract_check_optimizer(inner["optimizer"], inner.get("hparams", {}), shapes, ext, "inner optimizer")
    if name == "magma":
        inner = hparams.get("inner")
        if inner is None:
            return  # the reference wraps AdamW with its defaults
        if not isinstance(inner, dict) or "optimizer" not in inner:
            raise ContractError("magma's 'inner' needs 'optimizer'")
        extra = sorted(set(inner) - {"optimizer", "hparams"})
        if extra:
            raise ContractError(f"unknown key {extra[0]!r} in inner")
        if inner["optimizer"] in WRAPPERS:
            raise ContractError("magma around a wrapper is not generated")
        contract_check_optimizer(inner["optimizer"], inner.get("hparams", {}), shapes, ext, "inner optimizer")


def contract_check(case, ext=False):
    shapes = [p["shape"] for p in case["params"]]
    contract_check_optimizer(case["optimizer"], case["hparams"], shapes, ext)
    sizes = []
    for p in case["params"]:
        n = int(np.prod(p["shape"])) if len(p["shape"]) else 1
        if len(p["data"]) != n:
            raise ContractError(f"param {p['name']!r}: {len(p['data'])} values for shape {p['shape']}")
        sizes.append(n)
    for t, step in enumerate(case["grads"]):
        if len(step) != len(sizes):
            raise ContractError(f"step {t + 1}: {len(step)} gradients for {len(sizes)} parameters")
        for i, g in enumerate(step):
            if len(g) != sizes[i]:
                raise ContractError(f"step {t + 1}: gradient of {case['params'][i]['name']!r} has {len(g)} values")
    if case.get("hessian") is not None:
        if len(case["hessian"]) != len(case["grads"]):
            raise ContractError("hessian has a different number of steps")
        for t, step in enumerate(case["hessian"]):
            if step is None:
                continue
            if len(step) != len(sizes) or any(len(h) != n for h, n in zip(step, sizes)):
                raise ContractError(f"step {t + 1}: hessian does not match the parameters")


# --------------------------------------------------------------------------------------
# Reference replay
# --------------------------------------------------------------------------------------

def schedule_lr(sched, base, s):
    w, total = sched["warmup_steps"], sched["total_steps"]
    m = sched.get("min_lr", 0.0)
    if s < w:
        return base * s / w
    progress = min(1.0, (s - w) / max(1, total - w))
    return m + (base - m) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _kwargs(name, hparams, dtype, foreach_false):
    kw = {}
    for k, v in hparams.items():
        kw[k] = tuple(v) if (k in TUPLE_HPARAMS and isinstance(v, list)) else v
    for k in CAT_C_INF_DEFAULTS:
        if name in CAT_C_REGISTRY and k in kw and kw[k] is None:
            kw[k] = float("inf")
    if name == "adafactor" and dtype == torch.float64:
        # contract: eps1 null means f32 machine epsilon; keep it so in the f64 rerun
        eps = list(kw.get("eps", (None, 0.001)))
        if eps[0] is None:
            eps[0] = F32_EPS
        kw["eps"] = tuple(eps)
    if foreach_false and name not in ("muon", "adamuon", "adamomentum", "lbfgs"):
        kw["foreach"] = False
    if name in CAT_D_REGISTRY:
        kw = cat_d_kwargs(name, kw)
    if name == "kron" and dtype == torch.float64:
        kw["precondition_dtype"] = torch.float64   # the robustness rerun entirely in float64
    return kw


def build_reference(name, hparams, params, dtype, foreach_false=False):
    """Returns (optimizer to step, optimizer the scheduler drives)."""
    if name == "magma":
        hp = {k: v for k, v in hparams.items() if k != "inner"}
        if foreach_false:
            hp["foreach"] = False
        inner = hparams.get("inner") or {"optimizer": "adamw", "hparams": {}}
        inner_opt, _ = build_reference(inner["optimizer"], inner.get("hparams", {}), params, dtype, foreach_false)
        return pytorch_optimizer.Magma(inner_opt, **hp), inner_opt
    if name == "lookahead":
        hp = {k: v for k, v in hparams.items() if k != "inner"}
        inner = hparams.get("inner") if isinstance(hparams, dict) else None
        if not isinstance(inner, dict):
            # the reference needs an optimizer to wrap
            return pytorch_optimizer.Lookahead(**hp), None
        inner_opt, _ = build_reference(inner["optimizer"], inner.get("hparams", {}), params, dtype, foreach_false)
        return pytorch_optimizer.Lookahead(inner_opt, **hp), inner_opt
    key = reference_key(name, hparams)
    if key in TRANSCRIPTION_NOTES:
        opt = build_transcription(key, hparams, params)
        return opt, opt
    if name not in REFERENCES:
        raise HarnessError(f"no reference optimizer named {name!r}")
    cls = REFERENCES[name][2]()
    kw = _kwargs(name, hparams, dtype, foreach_false)
    if name == "adammini":
        kw.pop("foreach", None)
        opt = cls(adammini_model(params), **kw)
        return opt, opt
    if name in ("adamuon", "normuon"):
        opt = cls([{"params": params, "use_muon": True}], **kw)
    else:
        opt = cls(params, **kw)
    return opt, opt


def adammini_model(params):
    """A torch module whose named_parameters() are `params` under their case names (dotted names become
    submodules), for pytorch_optimizer.AdamMini."""
    root = torch.nn.Module()
    for p in params:
        *path, leaf = p.optimist_name.split(".")
        mod = root
        for part in path:
            if not hasattr(mod, part):
                mod.add_module(part, torch.nn.Module())
            mod = getattr(mod, part)
        mod.register_parameter(leaf, p)
    return root


def reference_replay(case, dtype=torch.float32, foreach_false=False):
    """Replay a case with the reference; returns [[np.ndarray per param] per step]."""
    params = []
    for p in case["params"]:
        try:
            arr = np.asarray(p["data"], dtype=np.float32).reshape(p["shape"])
        except ValueError as exc:
            raise HarnessError(f"param {p.get('name')!r}: {exc}") from None
        params.append(torch.from_numpy(arr.copy()).to(dtype).requires_grad_(True))
        if case["optimizer"] == "adammini":
            # AdamMini takes a model and picks each parameter's rule from its name
            params[-1] = torch.nn.Parameter(params[-1].detach())
            params[-1].optimist_name = p["name"]
    if case.get("optimizer") == "kron":
        kron_begin(case, dtype)
    APOLLO_CTX["active"] = False
    if case.get("optimizer") == "apollo":
        apollo_begin(case)
    opt, sched_opt = build_reference(case["optimizer"], case["hparams"], params, dtype, foreach_false)
    scheduler = None
    if case.get("lr_schedule"):
        sched = case["lr_schedule"]
        base = sched_opt.param_groups[0]["lr"]
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            sched_opt, lr_lambda=lambda s: schedule_lr(sched, base, s) / base)
    hessian = case.get("hessian")
    out = []
    for t, step in enumerate(case["grads"]):
        if len(step) != len(params):
            raise HarnessError(f"step {t + 1}: {len(step)} gradients for {len(params)} parameters")
        for p, g in zip(params, step):
            try:
                arr = np.asarray(g, dtype=np.float32).reshape(p.shape)
            except ValueError as exc:
                raise HarnessError(f"step {t + 1}: {exc}") from None
            p.grad = torch.from_numpy(arr.copy()).to(dtype)
        if case.get("grad_clip"):
            gc = case["grad_clip"]
            torch.nn.utils.clip_grad_norm_(params, max_norm=gc["max_norm"], norm_type=gc.get("norm_type", 2.0))
        if hessian is not None and hessian[t] is not None:
            hs = [torch.from_numpy(np.asarray(h, dtype=np.float32).copy()).to(dtype).reshape(p.shape)
                  for h, p in zip(hessian[t], params)]
            opt.step(hessian=hs)
        elif case["optimizer"] == "lbfgs":
            # replay contract, closure-based optimizers: every evaluation returns this step's
            # (clipped) gradient and the loss 0
            given = [p.grad.clone() for p in params]

            def closure(given=given):
                for p, g in zip(params, given):
                    p.grad = g.clone()
                return torch.zeros((), dtype=dtype)
            opt.step(closure)
        else:
            opt.step()
        if scheduler is not None:
            scheduler.step()
        out.append([p.detach().clone().numpy().reshape(-1) for p in params])
    return out


def tol_ratio(result, expected, tol):
    """max over values of |result - expected| / (atol + rtol |expected|)."""
    worst = 0.0
    for rs, es in zip(result, expected):
        for r, e in zip(rs, es):
            r = np.asarray(r, dtype=np.float64)
            e = np.asarray(e, dtype=np.float64)
            if not (np.all(np.isfinite(r)) and np.all(np.isfinite(e))):
                return math.inf
            allowed = tol["atol"] + tol["rtol"] * np.abs(e)
            worst = max(worst, float(np.max(np.abs(r - e) / allowed)) if r.size else 0.0)
    return worst


# --------------------------------------------------------------------------------------
# Case specifications
# --------------------------------------------------------------------------------------

WB = [("w", [8, 6]), ("b", [6])]


def spec(cid, optimizer, hparams, shapes, steps, desc, zero=(), big=None, clip=None, sched=None,
         pscale=0.5, gscale=1.0, zero_params=(), hess=None, ext=False):
    return dict(id=cid, optimizer=optimizer, hparams=hparams, shapes=shapes, steps=steps, desc=desc,
                zero=tuple(zero), big=dict(big or {}), clip=clip, sched=sched, pscale=pscale, gscale=gscale,
                zero_params=tuple(zero_params), hess=hess, ext=ext)


def warmup_cosine(w, total, min_lr=0.0):
    return {"name": "warmup_cosine", "warmup_steps": w, "total_steps": total, "min_lr": min_lr}


def clip_norm(m):
    return {"max_norm": m, "norm_type": 2.0}


def numeric_specs():
    S = []
    a = S.append
    # ---------------------------------------------------------------- sgd
    a(spec("sgd-defaults", "sgd", {}, WB, 8, "SGD with every hyperparameter at its default (lr 0.001, no momentum)"))
    a(spec("sgd-lr-4d", "sgd", {"lr": 0.1}, [("conv", [4, 3, 2, 2]), ("s", [1])], 7,
           "plain SGD on a 4-D tensor and a 1-element tensor", zero=[3]))
    a(spec("sgd-momentum", "sgd", {"lr": 0.05, "momentum": 0.9}, [("k", [3, 2, 4]), ("b", [5])], 10,
           "heavy-ball momentum; the buffer starts as the first gradient"))
    a(spec("sgd-momentum-dampening-wd", "sgd", {"lr": 0.03, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01},
           [("w", [6, 5]), ("s", [1])], 10,
           "momentum with dampening and L2 weight decay; the first gradient is zero, so the buffer starts as "
           "weight_decay * p", zero=[1]))
    a(spec("sgd-dampening-one", "sgd", {"lr": 0.02, "momentum": 0.5, "dampening": 1.0}, [("v", [17])], 8,
           "dampening = 1: after the first step the buffer only decays (buf = momentum * buf)"))
    a(spec("sgd-nesterov-wd", "sgd", {"lr": 0.02, "momentum": 0.95, "nesterov": True, "weight_decay": 0.001},
           [("conv", [3, 2, 3, 3]), ("b", [3])], 12, "Nesterov momentum (g + momentum * buf) with L2 weight decay"))
    a(spec("sgd-nesterov-large-grad", "sgd", {"lr": 1e-4, "momentum": 0.9, "nesterov": True}, WB, 9,
           "Nesterov momentum", big={4: 1e4}))
    a(spec("sgd-l2-only", "sgd", {"lr": 0.1, "weight_decay": 0.1},
           [("w", [5, 7]), ("k", [2, 3, 4]), ("s", [1])], 6, "SGD with L2 weight decay and no momentum",
           big={2: 1e3}, zero=[5]))
    a(spec("sgd-grad-clip", "sgd", {"lr": 0.05, "momentum": 0.9}, WB, 8,
           "momentum SGD after clip_grad_norm_", clip=clip_norm(7.5), big={3: 1e3}))
    a(spec("sgd-warmup-cosine", "sgd", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.0005},
           [("w", [4, 6]), ("b", [6])], 10, "momentum SGD with dampening under warmup_cosine",
           sched=warmup_cosine(2, 7, 0.01)))
    # ---------------------------------------------------------------- adam
    a(spec("adam-defaults-shapes", "adam", {}, [("v", [9]), ("w", [4, 5]), ("k", [2, 3, 4]), ("s", [1])], 10,
           "Adam defaults on a vector, a matrix, a 3-D tensor and a 1-element tensor"))
    a(spec("adam-betas-eps", "adam", {"lr": 0.01, "betas": [0.8, 0.95], "eps": 1e-06}, WB, 12,
           "Adam with non-default betas and eps"))
    a(spec("adam-l2-wd", "adam", {"lr": 0.003, "weight_decay": 0.05}, [("conv", [4, 3, 2, 2]), ("b", [4])], 10,
           "Adam with L2 (coupled) weight decay", zero=[2]))
    a(spec("adam-amsgrad-large-grad", "adam", {"lr": 0.005, "betas": [0.9, 0.99], "amsgrad": True}, WB, 12,
           "AMSGrad: the running max of v binds after the large step", big={3: 1e3}))
    a(spec("adam-decoupled-wd", "adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
           [("w", [7, 3]), ("b", [3])], 10, "Adam with decoupled_weight_decay (same as AdamW)"))
    a(spec("adam-amsgrad-decoupled", "adam",
           {"lr": 0.002, "betas": [0.85, 0.999], "weight_decay": 0.02, "amsgrad": True,
            "decoupled_weight_decay": True},
           [("k", [2, 2, 5]), ("s", [1])], 12, "AMSGrad with decoupled weight decay", big={5: 1e4}, zero=[8]))
    a(spec("adam-large-eps", "adam", {"lr": 0.01, "eps": 0.1}, [("v", [15])], 8,
           "Adam with a large eps, so eps matters in every denominator"))
    a(spec("adam-zero-first-step", "adam", {"lr": 0.02}, WB, 7,
           "Adam whose first gradient is zero (m = v = 0, update 0 / eps = 0)", zero=[1]))
    a(spec("adam-beta1-zero", "adam", {"lr": 0.01, "betas": [0.0, 0.99]}, [("w", [3, 8])], 9,
           "Adam with beta1 = 0 (no momentum)"))
    a(spec("adam-grad-clip", "adam", {"lr": 0.01, "amsgrad": True}, WB, 8,
           "AMSGrad after clip_grad_norm_", clip=clip_norm(7.0), big={4: 1e3}))
    a(spec("adam-warmup-cosine-min-lr", "adam", {"lr": 0.02, "weight_decay": 0.01}, [("w", [6, 4]), ("b", [4])], 13,
           "Adam with L2 weight decay under warmup_cosine with min_lr > 0", sched=warmup_cosine(3, 9, 0.002)))
    # ---------------------------------------------------------------- adamw
    a(spec("adamw-defaults-4d", "adamw", {}, [("conv", [4, 3, 3, 3]), ("b", [4])], 10,
           "AdamW defaults (weight_decay 0.01) on a 4-D tensor"))
    a(spec("adamw-high-wd", "adamw", {"lr": 0.01, "weight_decay": 0.5}, WB, 10,
           "AdamW with strong decoupled weight decay", zero=[4]))
    a(spec("adamw-no-wd", "adamw", {"lr": 0.003, "weight_decay": 0.0}, [("k", [3, 3, 3])], 8,
           "AdamW with weight_decay 0 (plain Adam)"))
    a(spec("adamw-betas-eps", "adamw", {"lr": 0.004, "betas": [0.95, 0.9], "eps": 1e-05, "weight_decay": 0.02},
           [("v", [12]), ("s", [1])], 12, "AdamW with beta1 > beta2 and a larger eps"))
    a(spec("adamw-amsgrad-zero-large", "adamw", {"lr": 0.002, "amsgrad": True, "weight_decay": 0.05}, WB, 12,
           "AdamW with AMSGrad", zero=[2], big={6: 1e4}))
    a(spec("adamw-large-first-grad", "adamw", {"lr": 0.001, "weight_decay": 0.01},
           [("w", [5, 7]), ("k", [2, 3, 4]), ("s", [1])], 9, "AdamW whose first gradient is huge", big={1: 1e3}))
    a(spec("adamw-clip-warmup-cosine", "adamw", {"lr": 0.01, "weight_decay": 0.1}, WB, 10,
           "AdamW with clip_grad_norm_ and warmup_cosine (decoupled decay uses the scheduled lr)",
           clip=clip_norm(7.5), sched=warmup_cosine(2, 6)))
    a(spec("adamw-one-element", "adamw", {"lr": 0.05, "betas": [0.5, 0.6]}, [("s", [1])], 15,
           "AdamW on a single 1-element tensor with small betas"))
    # ---------------------------------------------------------------- nadam
    a(spec("nadam-defaults-3d", "nadam", {}, [("k", [3, 2, 4]), ("b", [6])], 10, "NAdam defaults"))
    a(spec("nadam-momentum-decay-l2", "nadam", {"lr": 0.005, "momentum_decay": 0.01, "weight_decay": 0.01}, WB, 12,
           "NAdam with a larger momentum_decay and L2 weight decay", zero=[3]))
    a(spec("nadam-decoupled-wd-betas", "nadam",
           {"lr": 0.003, "betas": [0.8, 0.99], "eps": 1e-06, "weight_decay": 0.05, "decoupled_weight_decay": True},
           [("conv", [2, 3, 2, 2]), ("s", [1])], 10, "NAdam with decoupled weight decay, other betas and eps"))
    a(spec("nadam-large-grad", "nadam", {"lr": 0.002}, WB, 8, "NAdam", big={5: 1e4}))
    a(spec("nadam-warmup-cosine", "nadam", {"lr": 0.01}, [("w", [5, 5]), ("b", [5])], 11,
           "NAdam under warmup_cosine", sched=warmup_cosine(3, 8, 0.001)))
    # ---------------------------------------------------------------- radam
    a(spec("radam-defaults", "radam", {}, WB, 10, "RAdam defaults: steps 1-5 unrectified, 6+ rectified"))
    a(spec("radam-l2-betas", "radam", {"lr": 0.01, "betas": [0.9, 0.9], "weight_decay": 0.01}, [("k", [2, 3, 4])], 12,
           "RAdam with beta2 = 0.9 (rho_inf = 19) and L2 weight decay"))
    a(spec("radam-decoupled-eps", "radam",
           {"lr": 0.005, "eps": 0.0001, "weight_decay": 0.1, "decoupled_weight_decay": True},
           [("conv", [3, 2, 2, 2]), ("s", [1])], 12, "RAdam with decoupled weight decay and a larger eps", zero=[7]))
    a(spec("radam-large-grad", "radam", {"lr": 0.003, "betas": [0.8, 0.95]}, WB, 10, "RAdam", big={7: 1e3}))
    a(spec("radam-grad-clip", "radam", {"lr": 0.01}, [("w", [6, 3]), ("b", [3])], 9,
           "RAdam after clip_grad_norm_", clip=clip_norm(3.0), big={2: 1e3}))
    # ---------------------------------------------------------------- adamax
    a(spec("adamax-defaults", "adamax", {}, [("w", [5, 4]), ("k", [2, 2, 3])], 8, "Adamax defaults"))
    a(spec("adamax-options", "adamax", {"lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-06, "weight_decay": 0.01},
           [("w", [4, 4]), ("s", [1])], 10, "Adamax with every option changed", zero=[1]))
    a(spec("adamax-large-grad", "adamax", {"lr": 0.005}, [("conv", [2, 2, 3, 3])], 10,
           "Adamax: the infinity norm jumps at the large step", big={4: 1e4}))
    a(spec("adamax-warmup-cosine", "adamax", {"lr": 0.02}, WB, 9, "Adamax under warmup_cosine",
           sched=warmup_cosine(2, 6)))
    # ---------------------------------------------------------------- adagrad
    a(spec("adagrad-defaults", "adagrad", {}, WB, 10, "Adagrad defaults"))
    a(spec("adagrad-lr-decay", "adagrad", {"lr": 0.1, "lr_decay": 0.05}, [("k", [3, 2, 4])], 12,
           "Adagrad with lr_decay"))
    a(spec("adagrad-init-acc-wd-eps", "adagrad",
           {"lr": 0.05, "initial_accumulator_value": 0.5, "weight_decay": 0.01, "eps": 1e-06},
           [("v", [10]), ("s", [1])], 10, "Adagrad with initial accumulator, L2 weight decay and eps", zero=[1]))
    a(spec("adagrad-large-grad", "adagrad", {"lr": 0.05, "lr_decay": 0.01}, WB, 8, "Adagrad", big={3: 1e4}))
    a(spec("adagrad-grad-clip", "adagrad", {"lr": 0.1}, [("conv", [2, 3, 2, 2]), ("b", [2])], 8,
           "Adagrad after clip_grad_norm_", clip=clip_norm(6.0)))
    # ---------------------------------------------------------------- rmsprop
    a(spec("rmsprop-defaults", "rmsprop", {}, WB, 10, "RMSprop defaults"))
    a(spec("rmsprop-alpha-eps", "rmsprop", {"lr": 0.005, "alpha": 0.9, "eps": 0.0001}, [("k", [2, 3, 4])], 10,
           "RMSprop with alpha 0.9 and a larger eps"))
    a(spec("rmsprop-momentum-wd", "rmsprop", {"lr": 0.002, "momentum": 0.9, "weight_decay": 0.01},
           [("conv", [3, 2, 2, 2]), ("s", [1])], 12, "RMSprop with momentum and L2 weight decay", zero=[2]))
    a(spec("rmsprop-centered", "rmsprop", {"lr": 0.001, "alpha": 0.95, "centered": True}, WB, 10,
           "centered RMSprop"))
    a(spec("rmsprop-centered-momentum-large", "rmsprop",
           {"lr": 0.001, "momentum": 0.5, "centered": True, "weight_decay": 0.001}, [("v", [14])], 10,
           "centered RMSprop with momentum and L2 weight decay", big={4: 1e3}))
    a(spec("rmsprop-warmup-cosine", "rmsprop", {"lr": 0.01, "momentum": 0.8}, [("w", [4, 7]), ("b", [7])], 10,
           "RMSprop with momentum under warmup_cosine", sched=warmup_cosine(3, 7, 0.001)))
    # ---------------------------------------------------------------- adadelta
    a(spec("adadelta-defaults", "adadelta", {}, [("w", [6, 6]), ("b", [6])], 10, "Adadelta defaults"))
    a(spec("adadelta-rho-eps-lr", "adadelta", {"lr": 0.5, "rho": 0.95, "eps": 0.0001}, [("k", [3, 2, 2])], 12,
           "Adadelta with other lr, rho and eps", zero=[3]))
    a(spec("adadelta-wd-large-grad", "adadelta", {"lr": 2.0, "weight_decay": 0.05},
           [("conv", [2, 3, 2, 2]), ("s", [1])], 10, "Adadelta with L2 weight decay", big={5: 1e4}))
    a(spec("adadelta-grad-clip", "adadelta", {}, WB, 8, "Adadelta after clip_grad_norm_", clip=clip_norm(1.0)))
    # ---------------------------------------------------------------- adafactor
    a(spec("adafactor-defaults-mixed", "adafactor", {}, [("w", [8, 6]), ("v", [7]), ("s", [1])], 10,
           "torch Adafactor defaults: factored matrix, full second moment for the vectors"))
    a(spec("adafactor-4d", "adafactor", {"lr": 0.05}, [("conv", [3, 2, 4, 5])], 10,
           "Adafactor on a 4-D tensor (the last two dimensions are factored)", zero=[2]))
    a(spec("adafactor-options", "adafactor",
           {"lr": 0.02, "beta2_decay": -0.5, "eps": [1e-06, 0.01], "d": 2.0, "weight_decay": 0.1},
           [("w", [5, 9]), ("k", [2, 3, 4]), ("b", [5])], 12, "Adafactor with every option changed"))
    a(spec("adafactor-large-grad", "adafactor", {"lr": 0.01, "d": 1.5}, WB, 10,
           "Adafactor: update clipping by RMS at the large step", big={3: 1e4}))
    a(spec("adafactor-warmup-cosine", "adafactor", {"lr": 0.05, "weight_decay": 0.01}, [("w", [4, 6]), ("b", [6])],
           11, "Adafactor under warmup_cosine (rho_t = min(scheduled lr, 1/sqrt(t)))",
           sched=warmup_cosine(2, 8, 0.005)))
    a(spec("adafactor-thin-matrices", "adafactor", {"lr": 0.03}, [("row", [1, 8]), ("col", [8, 1])], 9,
           "Adafactor on 1xN and Nx1 matrices"))
    # ---------------------------------------------------------------- muon
    a(spec("muon-defaults-square-tall", "muon", {}, [("w", [6, 6]), ("tall", [9, 4])], 8,
           "torch.optim.Muon defaults on a square and a tall matrix"))
    a(spec("muon-original-no-wd", "muon", {"lr": 0.02, "adjust_lr_fn": "original", "weight_decay": 0.0},
           [("tall", [10, 4]), ("wide", [3, 7])], 10, "Muon, adjust_lr_fn 'original', no weight decay", zero=[3]))
    a(spec("muon-match-rms-adamw-large", "muon",
           {"lr": 0.01, "adjust_lr_fn": "match_rms_adamw", "weight_decay": 0.05, "momentum": 0.9},
           [("w", [8, 5]), ("row", [1, 7])], 10, "Muon with Moonlight lr adjustment", big={4: 1e4}))
    a(spec("muon-spectral-unclamped", "muon", {"lr": 0.02, "adjust_lr_fn": "spectral_unclamped", "nesterov": False},
           [("tall", [12, 3]), ("wide", [4, 9])], 9, "Muon without Nesterov, adjust_lr_fn 'spectral_unclamped'"))
    a(spec("muon-custom-ns", "muon", {"lr": 0.01, "ns_coefficients": [1.875, -1.25, 0.375], "ns_steps": 8,
                                      "momentum": 0.8}, [("w", [6, 5])], 8,
           "Muon with other Newton-Schulz coefficients and 8 iterations"))
    a(spec("muon-eps-small-grads", "muon", {"lr": 0.02, "eps": 0.01, "weight_decay": 0.0}, [("w", [5, 6])], 8,
           "Muon with gradients ~1e-4 and eps 0.01, so the Newton-Schulz input is divided by eps, not its norm",
           gscale=1e-4))
    a(spec("muon-clip-warmup-cosine", "muon", {"lr": 0.02, "weight_decay": 0.1}, [("w", [7, 5]), ("v", [5, 8])], 10,
           "Muon with clip_grad_norm_ and warmup_cosine", clip=clip_norm(9.0), sched=warmup_cosine(2, 7)))
    a(spec("muon-momentum-zero", "muon", {"lr": 0.01, "momentum": 0.0}, [("w", [4, 6])], 7,
           "Muon with momentum 0 (orthogonalised raw gradient)"))
    # ---------------------------------------------------------------- lion
    a(spec("lion-defaults-4d", "lion", {}, [("conv", [4, 2, 3, 3]), ("b", [4])], 10, "Lion defaults"))
    a(spec("lion-betas-lr", "lion", {"lr": 0.001, "betas": [0.95, 0.98]}, [("k", [2, 3, 4])], 12,
           "Lion with other betas; the first gradient is zero (sign(0) = 0)", zero=[1]))
    a(spec("lion-wd-decoupled", "lion", {"lr": 0.003, "weight_decay": 0.5}, WB, 10, "Lion with decoupled decay"))
    a(spec("lion-wd-l2", "lion", {"lr": 0.002, "weight_decay": 0.1, "weight_decouple": False},
           [("v", [16]), ("s", [1])], 10, "Lion with L2 weight decay (weight_decouple false)", zero=[4]))
    a(spec("lion-cautious-large", "lion", {"lr": 0.001, "cautious": True, "betas": [0.9, 0.999]}, WB, 10,
           "cautious Lion", big={5: 1e4}))
    a(spec("lion-cautious-l2-clip", "lion",
           {"lr": 0.002, "cautious": True, "weight_decay": 0.05, "weight_decouple": False},
           [("w", [5, 5]), ("k", [2, 2, 2])], 9, "cautious Lion with L2 decay after clip_grad_norm_",
           clip=clip_norm(5.5)))
    a(spec("lion-cautious-decoupled-wd", "lion", {"lr": 0.003, "cautious": True, "weight_decay": 0.2}, WB, 10,
           "cautious Lion with decoupled weight decay"))
    a(spec("lion-warmup-cosine", "lion", {"lr": 0.002, "weight_decay": 0.1}, WB, 11, "Lion under warmup_cosine",
           sched=warmup_cosine(3, 8, 0.0002)))
    # ---------------------------------------------------------------- adabelief
    a(spec("adabelief-defaults-mixed", "adabelief", {}, [("w", [5, 6]), ("k", [2, 2, 3]), ("s", [1])], 10,
           "AdaBelief defaults"))
    a(spec("adabelief-rectify", "adabelief", {"lr": 0.01, "rectify": True}, WB, 12,
           "AdaBelief with rectification: SGD-like steps until n_sma >= 5"))
    a(spec("adabelief-ams-bound", "adabelief", {"lr": 0.005, "ams_bound": True, "eps": 1e-08, "betas": [0.85, 0.99]},
           [("conv", [3, 2, 2, 2])], 12, "AdaBelief with ams_bound and eps 1e-8", big={3: 1e3}))
    a(spec("adabelief-wd-decoupled", "adabelief", {"lr": 0.003, "weight_decay": 0.1}, WB, 10,
           "AdaBelief with decoupled weight decay", zero=[2]))
    a(spec("adabelief-wd-l2-rectify", "adabelief",
           {"lr": 0.002, "weight_decay": 0.01, "weight_decouple": False, "rectify": True, "betas": [0.9, 0.99]},
           [("v", [11])], 12, "rectified AdaBelief with L2 weight decay"))
    a(spec("adabelief-large-grad", "adabelief", {"lr": 0.001}, WB, 8, "AdaBelief", big={6: 1e4}))
    # ---------------------------------------------------------------- lamb
    a(spec("lamb-defaults-mixed", "lamb", {}, [("w", [6, 5]), ("k", [2, 3, 2]), ("b", [5])], 10, "LAMB defaults"))
    a(spec("lamb-norm-clamp", "lamb", {"lr": 0.01}, [("w", [8, 6]), ("b", [6])], 10,
           "LAMB with large weights: ||w|| > 10, so the trust-ratio numerator is clamped at 10", pscale=3.0))
    a(spec("lamb-pre-norm", "lamb", {"lr": 0.005, "pre_norm": True, "max_grad_norm": 0.5}, WB, 10,
           "LAMB with pre_norm (global gradient scaling by max_grad_norm)", big={3: 1e3}))
    a(spec("lamb-adam-mode-wd", "lamb", {"lr": 0.002, "adam": True, "weight_decay": 0.05},
           [("conv", [2, 2, 3, 3])], 10, "LAMB with adam=True (trust ratio 1) and decoupled decay"))
    a(spec("lamb-l2-no-grad-averaging", "lamb",
           {"lr": 0.003, "weight_decay": 0.01, "weight_decouple": False, "grad_averaging": False,
            "betas": [0.8, 0.99], "eps": 0.0001}, WB, 12,
           "LAMB with L2 decay inside the update, grad_averaging false, other betas and eps", zero=[2]))
    a(spec("lamb-zero-param", "lamb", {"lr": 0.01, "weight_decay": 0.01}, [("w", [4, 5]), ("b", [5])], 8,
           "LAMB with a parameter that starts at zero (||p|| = 0 gives trust ratio 1)", zero_params=["b"]))
    a(spec("lamb-large-grad", "lamb", {"lr": 0.001, "pre_norm": True}, [("v", [13]), ("s", [1])], 8,
           "LAMB with pre_norm", big={4: 1e4}))
    # ---------------------------------------------------------------- adabound
    a(spec("adabound-defaults", "adabound", {}, [("k", [3, 2, 4]), ("b", [4])], 10, "AdaBound defaults"))
    a(spec("adabound-tight-bounds", "adabound", {"lr": 0.01, "final_lr": 0.01, "gamma": 0.1}, WB, 12,
           "AdaBound with gamma 0.1 and final_lr 0.01: the bounds bind within a few steps"))
    a(spec("adabound-ams-wd", "adabound",
           {"lr": 0.003, "ams_bound": True, "weight_decay": 0.01, "betas": [0.8, 0.99], "eps": 1e-06},
           [("conv", [2, 3, 2, 2]), ("s", [1])], 10, "AdaBound with ams_bound and decoupled decay", big={4: 1e3}))
    a(spec("adabound-l2-zero", "adabound",
           {"lr": 0.002, "weight_decay": 0.05, "weight_decouple": False, "final_lr": 0.05}, WB, 10,
           "AdaBound with L2 decay", zero=[1]))
    a(spec("adabound-large-grad", "adabound", {"lr": 0.001, "gamma": 0.01}, [("v", [18])], 8, "AdaBound",
           big={5: 1e4}))
    # ---------------------------------------------------------------- signsgd
    a(spec("signsgd-defaults", "signsgd", {}, WB, 8, "SignSGD defaults (Signum, momentum 0.9)"))
    a(spec("signsgd-no-momentum-zero", "signsgd", {"lr": 0.01, "momentum": 0.0}, [("k", [2, 3, 4]), ("s", [1])], 6,
           "signSGD without momentum; step 2 is zero (sign(0) = 0)", zero=[2]))
    a(spec("signsgd-wd-decoupled", "signsgd", {"lr": 0.005, "momentum": 0.5, "weight_decay": 0.1},
           [("conv", [3, 2, 2, 2])], 10, "Signum with decoupled weight decay"))
    a(spec("signsgd-wd-l2-large", "signsgd",
           {"lr": 0.002, "momentum": 0.9, "weight_decay": 0.01, "weight_decouple": False}, WB, 10,
           "Signum with L2 weight decay", big={3: 1e4}))
    a(spec("signsgd-warmup-cosine", "signsgd", {"lr": 0.01}, [("w", [5, 4])], 9, "Signum under warmup_cosine",
           sched=warmup_cosine(2, 6)))
    # ---------------------------------------------------------------- adamuon
    a(spec("adamuon-defaults-square-tall", "adamuon", {}, [("w", [6, 6]), ("tall", [10, 3])], 8,
           "AdaMuon defaults on a square and a tall matrix"))
    a(spec("adamuon-no-adjusted-lr", "adamuon", {"lr": 0.01, "use_adjusted_lr": False, "betas": [0.85, 0.9]},
           [("tall", [9, 4]), ("wide", [4, 7])], 10, "AdaMuon with Keller Jordan's lr scaling", zero=[2]))
    a(spec("adamuon-wd-decoupled-ns3", "adamuon", {"lr": 0.02, "weight_decay": 0.1, "ns_steps": 3},
           [("w", [5, 8])], 10, "AdaMuon with decoupled weight decay and 3 Newton-Schulz steps"))
    a(spec("adamuon-wd-l2-eps-large", "adamuon",
           {"lr": 0.01, "weight_decay": 0.01, "weight_decouple": False, "eps": 1e-06},
           [("w", [7, 5]), ("row", [1, 6])], 8, "AdaMuon with L2 weight decay and eps 1e-6", big={4: 1e4}))
    a(spec("adamuon-clip-warmup-cosine", "adamuon", {"lr": 0.02}, [("w", [6, 4]), ("v", [4, 6])], 10,
           "AdaMuon with clip_grad_norm_ and warmup_cosine", clip=clip_norm(3.0), sched=warmup_cosine(2, 7, 0.002)))
    # ---------------------------------------------------------------- sophiah
    a(spec("sophiah-period-3", "sophiah", {"update_period": 3}, WB, 10,
           "SophiaH, update_period 3: Hessian estimates at steps 1, 4, 7, 10", hess=(300.0, 300.0)))
    a(spec("sophiah-options", "sophiah",
           {"lr": 0.03, "betas": [0.9, 0.5], "p": 0.05, "update_period": 4, "eps": 0.0001},
           [("k", [2, 3, 4]), ("s", [1])], 12,
           "SophiaH with other betas, p and eps, update_period 4: estimates at steps 1, 5, 9", hess=(100.0, 150.0)))
    a(spec("sophiah-wd-decoupled", "sophiah", {"lr": 0.05, "weight_decay": 0.1, "update_period": 5},
           [("conv", [2, 2, 3, 3])], 11, "SophiaH with decoupled decay: estimates at steps 1, 6, 11", zero=[3],
           hess=(500.0, 400.0)))
    a(spec("sophiah-wd-l2-large", "sophiah",
           {"weight_decay": 0.01, "weight_decouple": False, "update_period": 2, "p": 0.1}, WB, 9,
           "SophiaH with L2 decay, update_period 2", big={4: 1e3}, hess=(50.0, 60.0)))
    a(spec("sophiah-defaults", "sophiah", {}, [("w", [4, 5]), ("b", [5])], 12,
           "SophiaH defaults (update_period 10): estimates at steps 1 and 11", hess=(400.0, 300.0)))
    # ---------------------------------------------------------------- lookahead
    a(spec("lookahead-adam-k3", "lookahead", {"k": 3, "alpha": 0.5, "inner": {"optimizer": "adam",
                                                                            "hparams": {"lr": 0.01}}},
           WB, 10, "Lookahead k 3 around Adam: sync at steps 3, 6, 9"))
    a(spec("lookahead-adamw-k4", "lookahead",
           {"k": 4, "alpha": 0.3, "inner": {"optimizer": "adamw", "hparams": {"lr": 0.005, "weight_decay": 0.1}}},
           [("k", [2, 3, 4])], 12, "Lookahead k 4, alpha 0.3 around AdamW", zero=[4]))
    a(spec("lookahead-sgd-nesterov-k2", "lookahead",
           {"k": 2, "alpha": 0.8,
            "inner": {"optimizer": "sgd", "hparams": {"lr": 0.05, "momentum": 0.9, "nesterov": True}}},
           [("conv", [2, 3, 2, 2]), ("s", [1])], 9, "Lookahead k 2, alpha 0.8 around Nesterov SGD "
           "(the momentum buffer is not touched by the sync)", big={3: 1e3}))
    a(spec("lookahead-lion", "lookahead",
           {"inner": {"optimizer": "lion", "hparams": {"lr": 0.001, "weight_decay": 0.1}}}, WB, 12,
           "Lookahead defaults (k 5, alpha 0.5) around Lion: sync at steps 5 and 10"))
    a(spec("lookahead-sgd-alpha-zero", "lookahead",
           {"k": 3, "alpha": 0.0, "inner": {"optimizer": "sgd", "hparams": {"lr": 0.1, "momentum": 0.5}}},
           [("v", [9])], 8, "Lookahead alpha 0: every 3rd step resets the weights to the initial ones"))
    a(spec("lookahead-adam-clip-warmup-cosine", "lookahead",
           {"k": 2, "alpha": 0.6, "inner": {"optimizer": "adam", "hparams": {"lr": 0.02, "amsgrad": True}}},
           WB, 9, "Lookahead around AMSGrad with clip_grad_norm_ and warmup_cosine (schedule on the inner lr)",
           clip=clip_norm(6.0), sched=warmup_cosine(2, 6)))
    a(spec("lookahead-radam-k1", "lookahead",
           {"k": 1, "alpha": 0.5, "inner": {"optimizer": "radam", "hparams": {"lr": 0.01}}},
           [("w", [4, 4])], 8, "Lookahead k 1 around RAdam: every step is pulled half way back"))
    # ---------------------------------------------------------------- extensions (not contract v1)
    a(spec("sgd-maximize-nesterov", "sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "maximize": True}, WB, 8,
           "EXTENSION (maximize is not a contract v1 hyperparameter): Nesterov SGD maximizing", ext=True))
    a(spec("adam-maximize-amsgrad", "adam", {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01, "maximize": True},
           [("k", [2, 3, 4]), ("s", [1])], 8,
           "EXTENSION (maximize is not a contract v1 hyperparameter): AMSGrad with L2 decay, maximizing", ext=True))
    a(spec("adamw-maximize", "adamw", {"lr": 0.01, "weight_decay": 0.1, "maximize": True}, WB, 8,
           "EXTENSION (maximize is not a contract v1 hyperparameter): AdamW maximizing (decay still shrinks p)",
           ext=True, zero=[3]))
    formula = "; formula: " + ADAMOMENTUM_FORMULA
    a(spec("adamomentum-defaults", "adamomentum", {}, WB, 10, "AdaMomentum defaults" + formula, ext=True))
    a(spec("adamomentum-betas-eps", "adamomentum", {"lr": 0.005, "betas": [0.8, 0.99], "eps": 1e-06},
           [("k", [2, 3, 4]), ("s", [1])], 12, "AdaMomentum with other betas and eps" + formula, ext=True, zero=[1]))
    a(spec("adamomentum-wd-large-grad", "adamomentum", {"lr": 0.002, "weight_decay": 0.1},
           [("conv", [3, 2, 2, 2])], 10, "AdaMomentum with decoupled weight decay" + formula, ext=True,
           big={4: 1e4}))
    a(spec("adamomentum-clip-warmup-cosine", "adamomentum", {"lr": 0.01}, [("w", [5, 6]), ("b", [6])], 10,
           "AdaMomentum with clip_grad_norm_ and warmup_cosine" + formula, ext=True, clip=clip_norm(6.0),
           sched=warmup_cosine(2, 7, 0.001)))
    return S


def frontier_specs():
    """Extension cases for AdaGC and Magma (pytorch-optimizer 4.1.0)."""
    S = []
    a = S.append
    three = [("w", [5, 4]), ("k", [2, 3, 2]), ("b", [4])]
    a(spec("adagc-defaults", "adagc", {}, WB, 8,
           "AdaGC defaults: every step is in warm-up (global clipping to lambda_abs 1)", ext=True))
    a(spec("adagc-warmup-3", "adagc", {"lr": 0.01, "warmup_steps": 3}, three, 12,
           "AdaGC with a 3-step warm-up, then relative per-tensor clipping against the norm EMA", ext=True,
           big={6: 10.0, 9: 0.1}))
    a(spec("adagc-l2-wd", "adagc", {"lr": 0.01, "weight_decay": 0.05, "weight_decouple": False, "warmup_steps": 4},
           three, 10, "AdaGC with L2 decay: the warm-up global norm is recomputed per tensor on partly decayed "
           "gradients", ext=True, zero=[2], big={7: 30.0}))
    a(spec("adagc-options", "adagc",
           {"lr": 0.005, "betas": [0.8, 0.95], "beta": 0.9, "lambda_abs": 0.5, "lambda_rel": 1.2, "warmup_steps": 2,
            "eps": 1e-06, "weight_decay": 0.0},
           [("v", [11]), ("s", [1])], 12, "AdaGC with other clipping constants and no weight decay", ext=True,
           big={5: 100.0}))
    a(spec("adagc-fixed-decay", "adagc", {"lr": 0.02, "weight_decay": 0.1, "fixed_decay": True, "warmup_steps": 1},
           [("conv", [3, 2, 2, 2])], 9, "AdaGC with fixed (lr-independent) decoupled decay; warmup_steps 1 "
           "(only the first step is global)", ext=True, gscale=0.2))
    a(spec("adagc-clip-warmup-cosine", "adagc", {"lr": 0.01, "warmup_steps": 3}, WB, 10,
           "AdaGC after clip_grad_norm_ under warmup_cosine", ext=True, clip=clip_norm(5.0),
           sched=warmup_cosine(2, 7)))
    a(spec("magma-adam-keep", "magma",
           {"mask_prob": 1.0, "inner": {"optimizer": "adam", "hparams": {"lr": 0.01}}}, WB, 8,
           "Magma around Adam, mask_prob 1: every update kept, scaled by the alignment EMA of "
           "sigmoid(cos(exp_avg, g) / tau)", ext=True))
    a(spec("magma-adamw-tau-ema", "magma",
           {"mask_prob": 1.0, "tau": 0.5, "alignment_ema": 0.5,
            "inner": {"optimizer": "adamw", "hparams": {"lr": 0.01, "weight_decay": 0.1}}},
           three, 10, "Magma around AdamW with a sharper sigmoid and a faster alignment EMA (the decay is masked "
           "too)", ext=True, zero=[4]))
    a(spec("magma-sgd-momentum-buffer", "magma",
           {"mask_prob": 1.0, "inner": {"optimizer": "sgd", "hparams": {"lr": 0.05, "momentum": 0.9}}},
           [("k", [2, 3, 4]), ("s", [1])], 9, "Magma around momentum SGD: the moment is SGD's momentum_buffer",
           ext=True))
    a(spec("magma-sgd-fallback-momentum", "magma",
           {"mask_prob": 1.0, "momentum_beta": 0.8, "inner": {"optimizer": "sgd", "hparams": {"lr": 0.1}}},
           WB, 8, "Magma around plain SGD (no moment buffer): Magma's own momentum EMA", ext=True))
    a(spec("magma-moment-key-null", "magma",
           {"mask_prob": 1.0, "moment_key": None, "momentum_beta": 0.5,
            "inner": {"optimizer": "adam", "hparams": {"lr": 0.02, "amsgrad": True}}},
           [("w", [6, 3])], 9, "Magma with moment_key null: its own momentum even though Adam has exp_avg",
           ext=True))
    a(spec("magma-adamw-clip-warmup-cosine", "magma",
           {"mask_prob": 1.0, "inner": {"optimizer": "adamw", "hparams": {"lr": 0.02}}}, WB, 10,
           "Magma around AdamW with clip_grad_norm_ and warmup_cosine (schedule on the inner lr)", ext=True,
           clip=clip_norm(6.0), sched=warmup_cosine(2, 7)))
    return S


def transcription_specs():
    """Extension cases from the transcribed reference code: NAMO, NAMO-D, the official
    AdaMuon variant, SophiaG."""
    S = []
    a = S.append
    mats = [("w", [8, 6]), ("v", [4, 10])]
    a(spec("namo-defaults", "namo", {}, mats, 10, "NAMO defaults (Nesterov, one adaptive scalar per matrix); "
           "a tall and a wide matrix", ext=True))
    a(spec("namo-heavy-ball-wd", "namo",
           {"lr": 0.05, "nesterov": False, "weight_decay": 0.5, "momentum": 0.9, "mu2": 0.9, "scale_coeff": 0.3,
            "adamnorm_eps": 1e-06, "ns_steps": 4},
           [("w", [5, 5]), ("k", [3, 7])], 10, "NAMO without Nesterov, strong weight decay, other constants",
           ext=True, big={6: 30.0}))
    a(spec("namo-clamped", "namo", {"lr": 1.5, "weight_decay": 0.1}, mats, 8,
           "NAMO with lr 1.5: the adaptive step and the shaped step hit their cap of 1", ext=True))
    a(spec("namo-clip-warmup-cosine", "namo", {"lr": 0.02}, mats, 10,
           "NAMO after clip_grad_norm_ under warmup_cosine", ext=True, clip=clip_norm(4.0),
           sched=warmup_cosine(2, 7)))
    a(spec("namo-small-grads", "namo", {}, mats, 10, "NAMO with gradients of norm about 3e-5: adamnorm_eps "
           "outside the square root (authors' fix 5f8805a) changes the step tenfold here", ext=True, gscale=1e-5))
    a(spec("namo_d-defaults", "namo_d", {}, mats, 10, "NAMO-D defaults: per-column scales clamped to "
           "[0.75 mean, mean / 0.75]", ext=True))
    a(spec("namo_d-no-clamp", "namo_d", {"lr": 0.02, "col_state_clamp_c": 0.0, "weight_decay": 0.3},
           [("w", [6, 9])], 10, "NAMO-D with the clamp disabled (c = 0): raw column scales", ext=True,
           big={4: 20.0}))
    a(spec("namo_d-paper-clamp-heavy-ball", "namo_d",
           {"lr": 0.009, "col_state_clamp_c": 0.01, "nesterov": False, "momentum": 0.9, "mu2": 0.95},
           [("w", [7, 4]), ("v", [3, 5])], 10, "NAMO-D with the paper's c = 0.01 and heavy-ball momentum",
           ext=True))
    a(spec("namo_d-clamped-clip-warmup-cosine", "namo_d", {"lr": 1.2, "weight_decay": 0.2}, mats, 10,
           "NAMO-D with lr 1.2 (column steps capped at 1) after clip_grad_norm_ under warmup_cosine", ext=True,
           clip=clip_norm(4.0), sched=warmup_cosine(2, 7)))
    a(spec("namo_d-small-grads", "namo_d", {"col_state_clamp_c": 0.0}, mats, 10, "NAMO-D without the clamp, "
           "gradients of column norm about 1e-5: adamnorm_eps outside the square root (authors' fix 5f8805a) "
           "sets the column scales here", ext=True, gscale=1e-5))
    off = {"variant": "official", "nesterov": True, "eps": 1e-08}
    a(spec("adamuon-official-defaults", "adamuon", dict(off, betas=[0.95, 0.95], weight_decay=0.01), mats, 10,
           "AdaMuon, the authors' sign-stabilized variant with their defaults (momentum 0.95, wd 0.01)", ext=True))
    a(spec("adamuon-official-beta-lr", "adamuon", dict(off, lr=0.05, betas=[0.8, 0.8], weight_decay=0.1),
           [("w", [5, 5]), ("k", [3, 7])], 12, "official AdaMuon with another beta, lr and weight decay",
           ext=True, big={5: 100.0}))
    a(spec("adamuon-official-clip-warmup-cosine", "adamuon", dict(off, betas=[0.95, 0.95]), mats, 10,
           "official AdaMuon after clip_grad_norm_ under warmup_cosine", ext=True, clip=clip_norm(4.0),
           sched=warmup_cosine(2, 7)))
    a(spec("sophiag-defaults", "sophiag", {}, WB, 10, "SophiaG defaults (bs 5120); estimates g_hat^2 at steps "
           "1, 4, 7, 10", ext=True))
    a(spec("sophiag-small-bs", "sophiag", {"lr": 0.01, "bs": 2.0, "rho": 0.5, "weight_decay": 0.0},
           [("k", [2, 3, 4]), ("s", [1])], 12, "SophiaG with rho bs = 1: ratios both below and at the cap 1",
           ext=True, hess=(1, 4, 0.3)))
    a(spec("sophiag-late-estimate-maximize", "sophiag",
           {"lr": 0.003, "betas": [0.9, 0.95], "bs": 8.0, "maximize": True}, WB, 10,
           "SophiaG maximizing, first estimate at step 3 (before it the EMA is 0: sign steps)", ext=True,
           hess=(3, 2, 1.0)))
    a(spec("sophiag-clip-warmup-cosine", "sophiag", {"lr": 0.01, "bs": 16.0}, WB, 10,
           "SophiaG after clip_grad_norm_ under warmup_cosine", ext=True, clip=clip_norm(4.0),
           sched=warmup_cosine(2, 7), hess=(1, 2, 0.5)))
    return S


def adam_family_specs():
    """Extension cases for the Adam family of pytorch-optimizer 4.1.0 (default foreach path of each class)."""
    S = []

    def a(s):
        s["ext"] = True
        S.append(s)

    three = [("w", [5, 4]), ("k", [2, 3, 2]), ("b", [4])]
    M = "EXTENSION (maximize is not a contract v1 hyperparameter): "
    # ---------------------------------------------------------------- adopt
    a(spec("adopt-defaults", "adopt", {}, WB, 10, "ADOPT defaults (step 1 only fills v; clip t^0.25)"))
    a(spec("adopt-l2-betas", "adopt", {"lr": 0.01, "weight_decay": 0.05, "betas": [0.8, 0.99]}, three, 10,
           "ADOPT with L2 weight decay and other betas", zero=[4]))
    a(spec("adopt-decoupled-eps", "adopt", {"lr": 0.01, "weight_decay": 0.1, "weight_decouple": True, "eps": 0.01},
           WB, 10, "ADOPT with decoupled weight decay and a large eps"))
    a(spec("adopt-fixed-decay", "adopt", {"lr": 0.01, "weight_decay": 0.1, "weight_decouple": True,
                                          "fixed_decay": True}, WB, 8, "ADOPT with fixed decoupled decay"))
    a(spec("adopt-cautious", "adopt", {"lr": 0.01, "cautious": True}, three, 10,
           "ADOPT with cautious masking against the normalised gradient (per-parameter path)"))
    a(spec("adopt-maximize", "adopt", {"lr": 0.01, "maximize": True, "weight_decay": 0.01}, WB, 8,
           M + "ADOPT maximizing with L2 decay"))
    a(spec("adopt-large-grad-clip", "adopt", {"lr": 0.005, "betas": [0.9, 0.9]}, WB, 10,
           "ADOPT: the normalised gradient is clipped at the large step", big={5: 1e3}))
    a(spec("adopt-clip-warmup-cosine", "adopt", {"lr": 0.02}, WB, 10, "ADOPT with clip_grad_norm_ and warmup_cosine",
           clip=clip_norm(5.0), sched=warmup_cosine(2, 7)))
    a(spec("adopt-stable-adamw", "adopt", {"lr": 0.01, "stable_adamw": True, "weight_decay": 0.05}, three, 10,
           "ADOPT with the StableAdamW RMS (previous v) dividing the update (per-parameter path)", big={5: 30.0}))
    a(spec("adopt-stable-adamw-cautious", "adopt", {"lr": 0.01, "stable_adamw": True, "cautious": True}, WB, 10,
           "ADOPT with StableAdamW scaling and cautious masking", big={4: 30.0}))
    # ---------------------------------------------------------------- ademamix
    a(spec("ademamix-cautious", "ademamix", {"lr": 0.01, "cautious": True}, three, 10,
           "AdEMAMix with cautious masking of the fast EMA"))
    a(spec("ademamix-stable-adamw", "ademamix", {"lr": 0.01, "stable_adamw": True, "weight_decay": 0.1,
                                                 "weight_decouple": True}, WB, 10,
           "AdEMAMix with the StableAdamW RMS division", big={5: 30.0}))
    a(spec("ademamix-cautious-stable-adamw", "ademamix", {"lr": 0.01, "stable_adamw": True, "cautious": True,
                                                          "t_alpha_beta3": 4.0}, WB, 10,
           "AdEMAMix with cautious masking, StableAdamW scaling and the alpha/beta3 warm-up"))
    a(spec("ademamix-defaults", "ademamix", {}, WB, 10, "AdEMAMix defaults"))
    a(spec("ademamix-warmup-t", "ademamix", {"lr": 0.01, "t_alpha_beta3": 6.0}, three, 10,
           "AdEMAMix with the alpha/beta3 warm-up over 6 steps"))
    a(spec("ademamix-decoupled-alpha", "ademamix", {"lr": 0.005, "weight_decay": 0.1, "weight_decouple": True,
                                                    "alpha": 2.0, "betas": [0.8, 0.99, 0.999]}, WB, 10,
           "AdEMAMix with decoupled decay, alpha 2 and other betas"))
    a(spec("ademamix-l2-fixed", "ademamix", {"lr": 0.005, "weight_decay": 0.05}, WB, 8, "AdEMAMix with L2 decay",
           zero=[3]))
    a(spec("ademamix-fixed-decay", "ademamix", {"lr": 0.005, "weight_decay": 0.1, "weight_decouple": True,
                                                "fixed_decay": True}, WB, 8, "AdEMAMix with fixed decoupled decay"))
    a(spec("ademamix-maximize", "ademamix", {"lr": 0.005, "maximize": True}, WB, 8, M + "AdEMAMix maximizing"))
    a(spec("ademamix-large-grad-warmup-cosine", "ademamix", {"lr": 0.01}, WB, 10, "AdEMAMix under warmup_cosine",
           big={4: 1e3}, sched=warmup_cosine(2, 8)))
    # ---------------------------------------------------------------- simplifiedademamix
    a(spec("simplifiedademamix-defaults", "simplifiedademamix", {}, WB, 10, "Simplified AdEMAMix defaults"))
    a(spec("simplifiedademamix-alpha", "simplifiedademamix", {"lr": 0.001, "alpha": 2.0, "betas": [0.9, 0.99]},
           three, 10, "Simplified AdEMAMix mixing in the gradient with alpha 2"))
    a(spec("simplifiedademamix-warmup", "simplifiedademamix",
           {"lr": 0.001, "beta1_warmup": 6, "min_beta1": 0.5, "weight_decay": 0.1}, WB, 10,
           "Simplified AdEMAMix with the beta1 warm-up and decoupled decay"))
    a(spec("simplifiedademamix-l2", "simplifiedademamix", {"lr": 0.001, "weight_decay": 0.05,
                                                           "weight_decouple": False}, WB, 8,
           "Simplified AdEMAMix with L2 decay", zero=[2]))
    a(spec("simplifiedademamix-maximize-fixed", "simplifiedademamix",
           {"lr": 0.001, "maximize": True, "weight_decay": 0.1, "fixed_decay": True}, WB, 8,
           M + "Simplified AdEMAMix maximizing, fixed decay"))
    # ---------------------------------------------------------------- adan
    a(spec("adan-defaults", "adan", {}, WB, 10, "Adan defaults"))
    a(spec("adan-max-grad-norm", "adan", {"lr": 0.01, "max_grad_norm": 1.0}, three, 10,
           "Adan with global gradient-norm clipping at 1", big={5: 10.0}))
    a(spec("adan-decoupled", "adan", {"lr": 0.01, "weight_decay": 0.1, "weight_decouple": True}, WB, 10,
           "Adan with decoupled weight decay"))
    a(spec("adan-proximal-wd", "adan", {"lr": 0.01, "weight_decay": 0.1, "betas": [0.9, 0.9, 0.95]}, WB, 10,
           "Adan with the default (proximal, division) weight decay and other betas", zero=[3]))
    a(spec("adan-maximize-clip", "adan", {"lr": 0.01, "maximize": True, "max_grad_norm": 2.0}, WB, 8,
           M + "Adan maximizing with clipping (first-step difference -2 g c as the reference)"))
    a(spec("adan-warmup-cosine", "adan", {"lr": 0.02}, WB, 10, "Adan with clip_grad_norm_ and warmup_cosine",
           clip=clip_norm(5.0), sched=warmup_cosine(2, 7)))
    a(spec("adan-use-gc-clip", "adan", {"lr": 0.01, "use_gc": True, "max_grad_norm": 1.0}, three, 10,
           "Adan with gradient centralization (per-parameter path; the vector is left alone) after global "
           "clipping", big={5: 10.0}))
    a(spec("adan-adanorm", "adan", {"lr": 0.01, "adanorm": True, "weight_decay": 0.1}, WB, 10,
           "Adan with AdaNorm and proximal decay: gradients 10x larger at steps 1-3, so the running norm exceeds "
           "the later gradients' and rescales them", big={1: 10.0, 2: 10.0, 3: 10.0}))
    a(spec("adan-adanorm-gc-maximize", "adan", {"lr": 0.01, "adanorm": True, "adanorm_r": 0.5, "use_gc": True,
                                                "maximize": True, "weight_decay": 0.1, "weight_decouple": True},
           three, 10, M + "Adan with AdaNorm (adanorm_r 0.5) of the centralized gradient, decoupled decay, "
           "maximizing", big={2: 5.0, 6: 5.0}, zero=[8]))
    # ---------------------------------------------------------------- laprop
    a(spec("laprop-defaults", "laprop", {}, WB, 10, "LaProp defaults"))
    a(spec("laprop-cautious-decoupled", "laprop", {"lr": 0.005, "cautious": True, "weight_decay": 0.1}, three, 10,
           "LaProp with its cautious option (per-parameter path): the masked step, then the decoupled decay"))
    a(spec("laprop-cautious-centered-maximize", "laprop", {"lr": 0.005, "cautious": True, "centered": True,
                                                          "steps_before_using_centered": 3, "ams_bound": True,
                                                          "maximize": True, "weight_decay": 0.1,
                                                          "fixed_decay": True}, WB, 10,
           "EXTENSION (maximize is not a contract v1 hyperparameter): LaProp cautious, centered from step 4, "
           "AMSBound, fixed decay, maximizing"))
    a(spec("laprop-centered", "laprop", {"lr": 0.005, "centered": True, "steps_before_using_centered": 3}, three,
           10, "LaProp centered from step 4"))
    a(spec("laprop-ams-bound", "laprop", {"lr": 0.005, "ams_bound": True, "eps": 1e-08}, WB, 10,
           "LaProp with AMSBound", big={3: 1e3}))
    a(spec("laprop-decoupled", "laprop", {"lr": 0.005, "weight_decay": 0.1}, WB, 10,
           "LaProp with decoupled decay (after the step)"))
    a(spec("laprop-l2-noop-fixed", "laprop", {"lr": 0.005, "weight_decay": 0.1, "weight_decouple": False}, WB, 8,
           "LaProp with L2 decay (the reference adds it after use: no effect)"))
    a(spec("laprop-fixed-decay", "laprop", {"lr": 0.005, "weight_decay": 0.1, "fixed_decay": True}, WB, 8,
           "LaProp with fixed decoupled decay"))
    a(spec("laprop-maximize-warmup-cosine", "laprop", {"lr": 0.01, "maximize": True}, WB, 10,
           M + "LaProp maximizing under warmup_cosine (the lr EMA follows the schedule)",
           sched=warmup_cosine(2, 7)))
    # ---------------------------------------------------------------- yogi
    a(spec("yogi-defaults", "yogi", {}, WB, 10, "Yogi defaults"))
    a(spec("yogi-l2-init", "yogi", {"lr": 0.01, "weight_decay": 0.05, "weight_decouple": False,
                                    "initial_accumulator": 0.01}, three, 10,
           "Yogi with L2 decay and initial accumulator 0.01"))
    a(spec("yogi-decoupled-debias", "yogi", {"lr": 0.01, "weight_decay": 0.1, "adam_debias": True, "eps": 1e-06},
           WB, 10, "Yogi with decoupled decay, adam_debias and a small eps"))
    a(spec("yogi-maximize-fixed", "yogi", {"lr": 0.01, "maximize": True, "weight_decay": 0.1, "fixed_decay": True},
           WB, 8, M + "Yogi maximizing, fixed decay", big={4: 1e3}))
    # ---------------------------------------------------------------- qhadam
    a(spec("qhadam-defaults", "qhadam", {}, WB, 10, "QHAdam defaults (nus 1, 1: Adam-like)"))
    a(spec("qhadam-nus", "qhadam", {"lr": 0.01, "nus": [0.7, 1.0]}, three, 10, "QHAdam with nu1 0.7"))
    a(spec("qhadam-nus-both-l2", "qhadam", {"lr": 0.01, "nus": [0.8, 0.9], "weight_decay": 0.05}, WB, 10,
           "QHAdam with both nus and L2 decay", zero=[3]))
    a(spec("qhadam-decoupled-fixed", "qhadam", {"lr": 0.01, "weight_decay": 0.1, "weight_decouple": True,
                                               "fixed_decay": True, "betas": [0.8, 0.95]}, WB, 8,
           "QHAdam with fixed decoupled decay and other betas"))
    a(spec("qhadam-maximize", "qhadam", {"lr": 0.01, "maximize": True, "nus": [0.7, 0.7]}, WB, 8,
           M + "QHAdam maximizing"))
    # ---------------------------------------------------------------- adamod
    a(spec("adamod-defaults", "adamod", {}, WB, 10, "AdaMod defaults"))
    a(spec("adamod-betas-wd", "adamod", {"lr": 0.01, "betas": [0.9, 0.99, 0.5], "weight_decay": 0.1}, three, 10,
           "AdaMod with a fast step-size EMA (beta3 0.5) and decoupled decay", big={6: 1e3}))
    a(spec("adamod-l2-debias", "adamod", {"lr": 0.01, "weight_decay": 0.05, "weight_decouple": False,
                                          "adam_debias": True}, WB, 10, "AdaMod with L2 decay and adam_debias"))
    a(spec("adamod-maximize-fixed", "adamod", {"lr": 0.01, "maximize": True, "weight_decay": 0.1,
                                               "fixed_decay": True, "betas": [0.9, 0.99, 0.9]}, WB, 8,
           M + "AdaMod maximizing, fixed decay"))
    # ---------------------------------------------------------------- diffgrad
    a(spec("diffgrad-defaults", "diffgrad", {}, WB, 10, "diffGrad defaults"))
    a(spec("diffgrad-rectify", "diffgrad", {"lr": 0.01, "rectify": True}, three, 10,
           "diffGrad rectified: momentum steps 1-5, rectified from step 6"))
    a(spec("diffgrad-rectify-no-sgd", "diffgrad", {"lr": 0.01, "rectify": True, "degenerated_to_sgd": False,
                                                  "n_sma_threshold": 4, "betas": [0.9, 0.99]}, WB, 10,
           "diffGrad rectified with threshold 4 and no update below it"))
    a(spec("diffgrad-ams-l2", "diffgrad", {"lr": 0.01, "ams_bound": True, "weight_decay": 0.05,
                                           "weight_decouple": False}, WB, 10, "diffGrad with AMSBound and L2 decay",
           big={3: 1e3}))
    a(spec("diffgrad-decoupled-debias", "diffgrad", {"lr": 0.01, "weight_decay": 0.1, "adam_debias": True}, WB, 8,
           "diffGrad with decoupled decay and adam_debias"))
    a(spec("diffgrad-maximize-fixed", "diffgrad", {"lr": 0.01, "maximize": True, "weight_decay": 0.1,
                                                   "fixed_decay": True}, WB, 8, M + "diffGrad maximizing, fixed decay"))
    a(spec("diffgrad-adanorm", "diffgrad", {"lr": 0.01, "adanorm": True}, WB, 10,
           "diffGrad with AdaNorm (per-parameter path): gradients 10x larger at steps 1-3, so the running norm "
           "exceeds the later gradients' and rescales them", big={1: 10.0, 2: 10.0, 3: 10.0}))
    a(spec("diffgrad-adanorm-r-l2-rectify", "diffgrad", {"lr": 0.01, "adanorm": True, "adanorm_r": 0.5,
                                                        "weight_decay": 0.05, "weight_decouple": False,
                                                        "rectify": True, "maximize": True}, WB, 10,
           M + "diffGrad with AdaNorm (adanorm_r 0.5) on the L2-decayed gradient, rectified, maximizing",
           big={2: 5.0, 6: 5.0}, zero=[8]))
    # ---------------------------------------------------------------- mars
    a(spec("mars-defaults", "mars", {}, three, 10,
           "MARS defaults: corrected AdamW step on the matrices, AdamW with betas_1d and weight_decay_1d on the "
           "vector"))
    a(spec("mars-lion", "mars", {"lr": 0.001, "mars_type": "lion"}, three, 10,
           "MARS-Lion: sign of the corrected momentum on the matrices, AdamW on the vector"))
    a(spec("mars-optimize-1d-gamma", "mars", {"lr": 0.01, "optimize_1d": True, "gamma": 0.1,
                                              "betas": [0.9, 0.99]}, WB, 10,
           "MARS with the correction on every parameter and gamma 0.1", big={4: 10.0}))
    a(spec("mars-ams-wd", "mars", {"lr": 0.01, "ams_bound": True, "weight_decay": 0.1, "lr_1d": 0.02,
                                   "betas_1d": [0.8, 0.9], "weight_decay_1d": 0.0}, WB, 10,
           "MARS with AMSBound, weight decay, other 1-D settings"))
    a(spec("mars-l2-fixed", "mars", {"lr": 0.01, "weight_decay": 0.05, "weight_decouple": False}, WB, 10,
           "MARS with L2 decay (enters only the stored previous gradient)"))
    a(spec("mars-fixed-decay", "mars", {"lr": 0.01, "weight_decay": 0.1, "fixed_decay": True}, WB, 8,
           "MARS with fixed decoupled decay"))
    a(spec("mars-cautious", "mars", {"lr": 0.01, "cautious": True}, three, 10, "MARS with cautious masking"))
    a(spec("mars-cautious-lion-optimize-1d", "mars", {"lr": 0.001, "cautious": True, "mars_type": "lion",
                                                      "optimize_1d": True}, WB, 10,
           "MARS-Lion with cautious masking on every parameter"))
    a(spec("mars-maximize-warmup-cosine", "mars", {"lr": 0.01, "maximize": True}, WB, 10,
           M + "MARS maximizing under warmup_cosine (the 1-D lr follows lr * lr_1d / lr at construction)",
           sched=warmup_cosine(2, 7)))
    # ---------------------------------------------------------------- stableadamw
    a(spec("stableadamw-defaults", "stableadamw", {}, three, 10, "StableAdamW defaults"))
    a(spec("stableadamw-large-grad", "stableadamw", {"lr": 0.01, "betas": [0.9, 0.999]}, WB, 10,
           "StableAdamW: the RMS clipping acts at the large step", big={5: 1e3}))
    a(spec("stableadamw-l2", "stableadamw", {"lr": 0.01, "weight_decay": 0.05, "weight_decouple": False}, WB, 8,
           "StableAdamW with L2 decay", zero=[3]))
    a(spec("stableadamw-no-wd-eps-kahan", "stableadamw", {"lr": 0.01, "weight_decay": 0.0, "eps": 1e-04,
                                                          "kahan_sum": False}, WB, 8,
           "StableAdamW without decay, a larger eps, kahan_sum false"))
    a(spec("stableadamw-maximize", "stableadamw", {"lr": 0.01, "maximize": True, "weight_decay": 0.1}, WB, 8,
           M + "StableAdamW maximizing"))
    # ---------------------------------------------------------------- adamp
    a(spec("adamp-defaults", "adamp", {}, three, 10, "AdamP defaults (random data: projection rarely triggered)"))
    a(spec("adamp-projection", "adamp", {"lr": 0.01, "weight_decay": 0.1, "delta": 1.0}, three, 10,
           "AdamP with delta 1, so the channel projection and wd_ratio act"))
    a(spec("adamp-layer-projection", "adamp", {"lr": 0.01, "weight_decay": 0.1, "delta": 3.0, "wd_ratio": 0.5},
           [("w", [2, 20]), ("b", [4])], 10, "AdamP: two long rows, projection by channel or by layer"))
    a(spec("adamp-nesterov-cautious", "adamp", {"lr": 0.01, "nesterov": True, "cautious": True, "delta": 1.0},
           three, 10, "AdamP with Nesterov momentum and cautious masking"))
    a(spec("adamp-nesterov-l2-debias", "adamp", {"lr": 0.01, "nesterov": True, "weight_decay": 0.05,
                                                 "weight_decouple": False, "adam_debias": True}, WB, 10,
           "AdamP with Nesterov momentum, L2 decay (no effect) and adam_debias"))
    a(spec("adamp-maximize-fixed", "adamp", {"lr": 0.01, "maximize": True, "weight_decay": 0.1,
                                             "fixed_decay": True, "delta": 1.0}, WB, 8,
           M + "AdamP maximizing, fixed decay"))
    a(spec("adamp-use-gc", "adamp", {"lr": 0.01, "use_gc": True, "delta": 1.0, "weight_decay": 0.1},
           [("w", [4, 6]), ("k", [3, 2, 2]), ("b", [5])], 10,
           "AdamP with gradient centralization (rows of the matrix and of the 3-D tensor; the vector is left "
           "alone) and the channel projection"))
    a(spec("adamp-adanorm", "adamp", {"lr": 0.01, "adanorm": True, "nesterov": True}, three, 10,
           "AdamP with AdaNorm and Nesterov momentum: gradients 10x larger at steps 1-3, so the running norm "
           "exceeds the later gradients' and rescales them", big={1: 10.0, 2: 10.0, 3: 10.0}))
    a(spec("adamp-adanorm-gc-cautious", "adamp", {"lr": 0.01, "adanorm": True, "adanorm_r": 0.6, "use_gc": True,
                                                  "cautious": True, "maximize": True, "delta": 1.0}, three, 10,
           M + "AdamP with AdaNorm (adanorm_r 0.6) of the centralized gradient, cautious masking, maximizing",
           big={2: 5.0, 6: 5.0}, zero=[8]))
    return S


def adam_family_error_specs():
    E = []

    def e(cid, desc, optimizer, hparams, shapes=WB, steps=3):
        E.append(dict(id=cid, desc=desc, optimizer=optimizer, hparams=hparams, shapes=shapes, steps=steps,
                      mutate=None, hess=None, ext=True))

    for name in ("adopt", "ademamix", "simplifiedademamix", "adan", "laprop", "yogi", "qhadam", "adamod",
                 "diffgrad"):
        e(f"error-negative-lr-{name}", "negative lr", name, {"lr": -0.001})
        e(f"error-beta1-one-{name}", "beta1 = 1 is outside [0, 1)",
          name, {"betas": [1.0, 0.99, 0.99] if name in ("ademamix", "adan", "adamod") else [1.0, 0.99]})
        e(f"error-negative-eps-{name}", "negative eps", name, {"eps": -1e-08})
        e(f"error-negative-wd-{name}", "negative weight_decay", name, {"weight_decay": -0.1})
    for name in ("ademamix", "adan", "adamod"):
        e(f"error-beta3-large-{name}", "beta3 = 1.5 is outside [0, 1]", name, {"betas": [0.9, 0.99, 1.5]})
    e("error-unknown-hparam-adopt-clip-lambda", "clip_lambda (a callable) is not a hyperparameter", "adopt",
      {"clip_lambda": None})
    e("error-ademamix-negative-alpha", "negative alpha", "ademamix", {"alpha": -1.0})
    e("error-ademamix-t-alpha-beta3-zero", "t_alpha_beta3 0: the reference divides by it at the first step",
      "ademamix", {"t_alpha_beta3": 0.0})
    e("error-simplifiedademamix-negative-min-beta1", "negative min_beta1", "simplifiedademamix",
      {"min_beta1": -0.5})
    e("error-adan-negative-max-grad-norm", "negative max_grad_norm", "adan", {"max_grad_norm": -1.0})
    e("error-qhadam-nu-large", "nu1 = 1.5 is outside [0, 1]", "qhadam", {"nus": [1.5, 1.0]})
    for name in ("mars", "stableadamw", "adamp"):
        e(f"error-negative-lr-{name}", "negative lr", name, {"lr": -0.001})
        e(f"error-beta2-one-{name}", "beta2 = 1 is outside [0, 1)", name, {"betas": [0.9, 1.0]})
        e(f"error-negative-wd-{name}", "negative weight_decay", name, {"weight_decay": -0.1})
    e("error-mars-unknown-type", "mars_type must be adamw, lion or shampoo", "mars", {"mars_type": "sgd"})
    e("error-mars-negative-gamma", "negative gamma", "mars", {"gamma": -0.1})
    e("error-mars-lr-zero", "lr 0: the reference divides lr_1d by it", "mars", {"lr": 0.0})
    e("error-mars-betas-1d", "betas_1d with beta1 = 1", "mars", {"betas_1d": [1.0, 0.95]})
    e("error-mars-negative-wd-1d", "negative weight_decay_1d", "mars", {"weight_decay_1d": -0.1})
    e("error-adamp-wd-ratio-one", "wd_ratio = 1 is outside [0, 1)", "adamp", {"wd_ratio": 1.0})
    e("error-qhadam-unknown-cautious", "QHAdam takes no cautious (no **kwargs)", "qhadam", {"cautious": True})
    return E


def error_specs():
    """(id, description, mutate(case) -> None, base kwargs for the numeric part)."""
    E = []

    def e(cid, desc, optimizer, hparams, shapes=WB, steps=3, mutate=None, hess=None, ext=False):
        E.append(dict(id=cid, desc=desc, optimizer=optimizer, hparams=hparams, shapes=shapes, steps=steps,
                      mutate=mutate, hess=hess, ext=ext))

    e("error-unknown-optimizer-sgd-nesterov", "unknown optimizer name", "sgd_nesterov", {})
    e("error-unknown-optimizer-lookbehind", "unknown optimizer name", "lookbehind", {"k": 5})
    e("error-unknown-hparam-adam", "unknown hyperparameter (learning_rate instead of lr)", "adam",
      {"learning_rate": 0.001})
    e("error-unknown-hparam-adamw-weight-decouple", "unknown hyperparameter for torch AdamW (weight_decouple)",
      "adamw", {"weight_decouple": True})
    e("error-unknown-hparam-sgd", "unknown hyperparameter for SGD (decoupled_weight_decay)", "sgd",
      {"lr": 0.01, "decoupled_weight_decay": True})
    e("error-unknown-hparam-lion", "unknown hyperparameter for Lion (amsgrad)", "lion", {"amsgrad": True})
    e("error-unknown-hparam-inner", "unknown hyperparameter inside lookahead's inner optimizer", "lookahead",
      {"k": 3, "inner": {"optimizer": "adam", "hparams": {"momentum": 0.9}}})
    e("error-unknown-inner-optimizer", "unknown optimizer inside lookahead", "lookahead",
      {"inner": {"optimizer": "adamz", "hparams": {}}})
    e("error-negative-lr-sgd", "negative lr", "sgd", {"lr": -0.01})
    e("error-negative-lr-adamw", "negative lr", "adamw", {"lr": -0.001})
    e("error-negative-lr-lion", "negative lr", "lion", {"lr": -0.0001})
    e("error-negative-lr-sophiah", "negative lr", "sophiah", {"lr": -0.06})
    e("error-negative-lr-muon", "negative lr", "muon", {"lr": -0.02}, shapes=[("w", [4, 6])])
    e("error-negative-lr-inner", "negative lr inside lookahead's inner optimizer", "lookahead",
      {"inner": {"optimizer": "sgd", "hparams": {"lr": -0.1}}})
    e("error-beta2-one-adam", "beta2 = 1 is outside [0, 1)", "adam", {"betas": [0.9, 1.0]})
    e("error-beta1-negative-adamw", "beta1 < 0", "adamw", {"betas": [-0.1, 0.999]})
    e("error-beta1-one-lion", "beta1 = 1 is outside [0, 1)", "lion", {"betas": [1.0, 0.99]})
    e("error-beta2-large-adabelief", "beta2 = 1.5", "adabelief", {"betas": [0.9, 1.5]})
    e("error-beta1-one-nadam", "beta1 = 1", "nadam", {"betas": [1.0, 0.999]})
    e("error-betas-one-value", "betas with a single value", "adam", {"betas": [0.9]})
    e("error-negative-eps-adam", "negative eps", "adam", {"eps": -1e-08})
    e("error-negative-eps-rmsprop", "negative eps", "rmsprop", {"eps": -1e-08})
    e("error-negative-eps-adabelief", "negative eps", "adabelief", {"eps": -1e-16})
    e("error-negative-eps-sophiah", "negative eps", "sophiah", {"eps": -1e-12})
    e("error-negative-wd-sgd", "negative weight_decay", "sgd", {"weight_decay": -0.1})
    e("error-negative-wd-adamw", "negative weight_decay", "adamw", {"weight_decay": -0.01})
    e("error-negative-wd-lamb", "negative weight_decay", "lamb", {"weight_decay": -0.01})
    e("error-negative-wd-adafactor", "negative weight_decay", "adafactor", {"weight_decay": -0.1})
    e("error-sgd-nesterov-no-momentum", "nesterov needs momentum > 0", "sgd", {"nesterov": True})
    e("error-sgd-nesterov-dampening", "nesterov needs dampening 0", "sgd",
      {"momentum": 0.9, "dampening": 0.1, "nesterov": True})
    e("error-negative-momentum-sgd", "negative momentum", "sgd", {"momentum": -0.5})
    e("error-signsgd-momentum-one", "signsgd momentum must be in [0, 1)", "signsgd", {"momentum": 1.0})
    e("error-adagrad-negative-lr-decay", "negative lr_decay", "adagrad", {"lr_decay": -0.1})
    e("error-adagrad-negative-initial-accumulator", "negative initial_accumulator_value", "adagrad",
      {"initial_accumulator_value": -0.1})
    e("error-adadelta-rho-large", "rho > 1", "adadelta", {"rho": 1.5})
    e("error-adafactor-d-below-one", "Adafactor d must be >= 1", "adafactor", {"d": 0.5})
    e("error-adafactor-positive-beta2-decay", "Adafactor beta2_decay must be <= 0", "adafactor",
      {"beta2_decay": 0.5})
    e("error-nadam-negative-momentum-decay", "negative momentum_decay", "nadam", {"momentum_decay": -0.004})
    e("error-lamb-negative-max-grad-norm", "negative max_grad_norm", "lamb", {"max_grad_norm": -1.0})
    e("error-adabound-negative-gamma", "negative gamma", "adabound", {"gamma": -0.1})
    e("error-sophiah-update-period-zero", "update_period must be >= 1", "sophiah", {"update_period": 0})
    e("error-sophiah-negative-p", "negative p", "sophiah", {"p": -0.01})
    e("error-muon-bad-adjust-lr-fn", "unknown adjust_lr_fn", "muon", {"adjust_lr_fn": "sqrt"},
      shapes=[("w", [4, 6])])
    e("error-muon-ns-steps-100", "torch Muon rejects ns_steps >= 100 (at the first step)", "muon",
      {"ns_steps": 100}, shapes=[("w", [4, 6])])
    e("error-adamuon-ns-steps-zero", "ns_steps must be positive", "adamuon", {"ns_steps": 0},
      shapes=[("w", [4, 6])])
    e("error-lookahead-alpha-one", "lookahead alpha must be in [0, 1)", "lookahead",
      {"alpha": 1.0, "inner": {"optimizer": "adam", "hparams": {}}})
    e("error-lookahead-k-zero", "lookahead k must be positive", "lookahead",
      {"k": 0, "inner": {"optimizer": "adam", "hparams": {}}})
    e("error-lookahead-no-inner", "lookahead without inner", "lookahead", {"k": 5, "alpha": 0.5})
    e("error-muon-1d-param", "Muon takes only 2-D parameters (a 1-D parameter)", "muon", {},
      shapes=[("w", [4, 6]), ("b", [6])])
    e("error-muon-3d-param", "Muon takes only 2-D parameters (a 3-D parameter)", "muon", {},
      shapes=[("k", [2, 3, 4])])
    e("error-adamuon-1d-param", "AdaMuon takes only 2-D parameters (a 1-D parameter)", "adamuon", {},
      shapes=[("w", [4, 6]), ("b", [6])])
    e("error-adamuon-3d-param", "AdaMuon takes only 2-D parameters in the contract (a 3-D parameter)", "adamuon", {},
      shapes=[("k", [2, 3, 4])])
    e("error-string-lr", "a string where a number is expected (lr)", "adam", {"lr": "0.001"})
    e("error-string-momentum", "a string where a number is expected (momentum)", "sgd", {"momentum": "0.9"})
    e("error-null-lr", "lr null (the reference compares it with 0 and fails)", "adam", {"lr": None})

    def short_data(case):
        case["params"][0]["data"] = case["params"][0]["data"][:-1]
    e("error-data-length-mismatch", "param 'w' has 47 values for shape [8, 6]", "adam", {}, mutate=short_data)

    def long_data(case):
        case["params"][1]["data"] = list(case["params"][1]["data"]) + [0.25]
    e("error-data-length-too-long", "param 'b' has 7 values for shape [6]", "sgd", {"lr": 0.01}, mutate=long_data)

    def missing_grad(case):
        case["grads"][1] = case["grads"][1][:1]
    e("error-step-missing-gradient", "step 2 has 1 gradient for 2 parameters", "adam", {}, mutate=missing_grad)

    def extra_grad(case):
        case["grads"][0] = list(case["grads"][0]) + [case["grads"][0][1]]
    e("error-step-extra-gradient", "step 1 has 3 gradients for 2 parameters", "sgd", {"lr": 0.01},
      mutate=extra_grad)

    def short_grad(case):
        case["grads"][2][1] = case["grads"][2][1][:5]
    e("error-gradient-wrong-length", "step 3: gradient of 'b' has 5 values for shape [6]", "adamw", {},
      mutate=short_grad)

    def short_hess(case):
        case["hessian"][0][0] = case["hessian"][0][0][:-2]
    e("error-sophiah-hessian-wrong-length", "the step-1 Hessian estimate of 'w' has 46 values for shape [8, 6]",
      "sophiah", {"update_period": 2}, mutate=short_hess, hess=(300.0, 300.0))
    return E


def catalogue_c_specs():
    """Catalogue C (issue 17): learning-rate-free, spike-aware and memory-light optimizers of
    pytorch-optimizer 4.1.0.  Cases with maximize go to --ext-out."""
    S = []
    a = S.append
    conv = [("conv", [4, 2, 3, 3]), ("b", [4])]
    three = [("w", [5, 4]), ("k", [2, 3, 2]), ("b", [4])]
    # ---------------------------------------------------------------- prodigy
    a(spec("prodigy-defaults", "prodigy", {}, WB, 12, "Prodigy defaults (lr 1, d0 1e-6: d grows from the sums)"))
    a(spec("prodigy-4d-zero-grad", "prodigy", {}, conv, 10, "Prodigy defaults on a 4-D tensor", zero=[4]))
    a(spec("prodigy-wd-decoupled", "prodigy", {"weight_decay": 0.1, "d0": 1e-3}, WB, 10,
           "Prodigy with decoupled weight decay scaled by d * lr"))
    a(spec("prodigy-wd-fixed", "prodigy", {"weight_decay": 0.01, "fixed_decay": True, "d0": 1e-3}, three, 10,
           "Prodigy with fixed (lr-free) decoupled decay"))
    a(spec("prodigy-wd-l2", "prodigy", {"weight_decay": 0.1, "weight_decouple": False, "d0": 1e-3}, WB, 10,
           "Prodigy with weight_decouple false (the L2 term is added after the moments: no effect)"))
    a(spec("prodigy-bias-correction-safeguard", "prodigy",
           {"bias_correction": True, "safeguard_warmup": True, "d0": 1e-4}, three, 12,
           "Prodigy with bias correction and safeguard warm-up"))
    a(spec("prodigy-beta3-dcoef-growth", "prodigy",
           {"lr": 0.5, "betas": [0.8, 0.99], "beta3": 0.9, "d_coef": 2.0, "growth_rate": 1.5, "d0": 1e-4}, WB, 12,
           "Prodigy with beta3, d_coef and a growth rate limit"))
    a(spec("prodigy-eps-null", "prodigy", {"eps": None, "d0": 1e-3}, WB, 10,
           "Prodigy with eps null: atan2 update"))
    a(spec("prodigy-warmup-cosine", "prodigy", {"d0": 1e-3}, WB, 10, "Prodigy under warmup_cosine",
           sched=warmup_cosine(2, 8, 0.1), clip=clip_norm(5.0)))
    a(spec("prodigy-maximize", "prodigy", {"maximize": True, "weight_decay": 0.05, "d0": 1e-3}, WB, 10,
           "EXTENSION (maximize): Prodigy maximizing", ext=True))
    # ---------------------------------------------------------------- dadaptadam
    a(spec("dadaptadam-defaults", "dadaptadam", {}, WB, 12, "D-Adapt Adam defaults"))
    a(spec("dadaptadam-4d-zero-grad", "dadaptadam", {"d0": 1e-3}, conv, 10, "D-Adapt Adam on a 4-D tensor",
           zero=[3]))
    a(spec("dadaptadam-wd-l2", "dadaptadam", {"weight_decay": 0.1, "d0": 1e-3}, WB, 10,
           "D-Adapt Adam with L2 weight decay (the default coupling)"))
    a(spec("dadaptadam-wd-decoupled", "dadaptadam", {"weight_decay": 0.1, "weight_decouple": True, "d0": 1e-3},
           three, 10, "D-Adapt Adam with decoupled decay scaled by d * lr"))
    a(spec("dadaptadam-wd-fixed", "dadaptadam",
           {"weight_decay": 0.01, "weight_decouple": True, "fixed_decay": True, "d0": 1e-3}, WB, 10,
           "D-Adapt Adam with fixed decoupled decay"))
    a(spec("dadaptadam-bias-correction-growth", "dadaptadam",
           {"bias_correction": True, "growth_rate": 2.0, "lr": 0.5, "betas": [0.8, 0.99], "eps": 1e-6}, three, 12,
           "D-Adapt Adam with bias correction, a growth limit, other betas and eps"))
    a(spec("dadaptadam-warmup-cosine", "dadaptadam", {"d0": 1e-3}, WB, 10,
           "D-Adapt Adam under warmup_cosine (lr 0 at the first step: d stays)", sched=warmup_cosine(2, 8, 0.1)))
    a(spec("dadaptadam-maximize", "dadaptadam", {"maximize": True, "weight_decay": 0.05, "d0": 1e-3}, WB, 10,
           "EXTENSION (maximize): D-Adapt Adam maximizing", ext=True))
    # ---------------------------------------------------------------- dadaptsgd
    a(spec("dadaptsgd-defaults", "dadaptsgd", {}, WB, 12, "D-Adapt SGD defaults"))
    a(spec("dadaptsgd-4d", "dadaptsgd", {"d0": 1e-3, "momentum": 0.5}, conv, 10,
           "D-Adapt SGD on a 4-D tensor with momentum 0.5", zero=[4]))
    a(spec("dadaptsgd-first-zero-grad", "dadaptsgd", {"d0": 1e-3}, WB, 8,
           "D-Adapt SGD whose first gradient is zero (nothing happens; g0 is taken at step 2)", zero=[1]))
    a(spec("dadaptsgd-wd-l2", "dadaptsgd", {"weight_decay": 0.1, "d0": 1e-2}, WB, 10,
           "D-Adapt SGD with L2 weight decay"))
    a(spec("dadaptsgd-wd-decoupled", "dadaptsgd", {"weight_decay": 0.1, "weight_decouple": True, "d0": 1e-2},
           three, 10, "D-Adapt SGD with decoupled decay"))
    a(spec("dadaptsgd-wd-fixed-growth", "dadaptsgd",
           {"weight_decay": 0.01, "weight_decouple": True, "fixed_decay": True, "growth_rate": 1.2, "momentum": 0.0},
           WB, 10, "D-Adapt SGD with fixed decay, a growth limit and no momentum"))
    a(spec("dadaptsgd-warmup-cosine", "dadaptsgd", {"d0": 1e-2}, WB, 10, "D-Adapt SGD under warmup_cosine",
           sched=warmup_cosine(2, 8, 0.1)))
    a(spec("dadaptsgd-maximize", "dadaptsgd", {"maximize": True, "weight_decay": 0.05, "d0": 1e-2}, WB, 10,
           "EXTENSION (maximize): D-Adapt SGD maximizing", ext=True))
    # ---------------------------------------------------------------- dadaptlion
    a(spec("dadaptlion-defaults", "dadaptlion", {}, WB, 12, "D-Adapt Lion defaults"))
    a(spec("dadaptlion-4d", "dadaptlion", {"d0": 1e-3, "betas": [0.95, 0.98]}, conv, 10,
           "D-Adapt Lion on a 4-D tensor with other betas", zero=[4]))
    a(spec("dadaptlion-wd-l2", "dadaptlion", {"weight_decay": 0.1, "d0": 1e-3}, WB, 10,
           "D-Adapt Lion with L2 weight decay"))
    a(spec("dadaptlion-wd-decoupled", "dadaptlion", {"weight_decay": 0.5, "weight_decouple": True, "d0": 1e-3},
           three, 10, "D-Adapt Lion with decoupled decay"))
    a(spec("dadaptlion-wd-fixed", "dadaptlion",
           {"weight_decay": 0.01, "weight_decouple": True, "fixed_decay": True, "d0": 1e-3}, WB, 10,
           "D-Adapt Lion with fixed decoupled decay"))
    a(spec("dadaptlion-warmup-cosine", "dadaptlion", {"d0": 1e-3}, WB, 10, "D-Adapt Lion under warmup_cosine",
           sched=warmup_cosine(2, 8, 0.1)))
    a(spec("dadaptlion-maximize", "dadaptlion", {"maximize": True, "weight_decay": 0.05, "d0": 1e-3}, WB, 10,
           "EXTENSION (maximize): D-Adapt Lion maximizing", ext=True))
    # ---------------------------------------------------------------- grokfastadamw
    a(spec("grokfastadamw-defaults", "grokfastadamw", {}, WB, 10, "GrokFast-AdamW defaults (lr normalized by 3)"))
    a(spec("grokfastadamw-4d-after-step", "grokfastadamw",
           {"lr": 0.01, "grokfast_after_step": 3, "grokfast_alpha": 0.9, "grokfast_lamb": 1.0}, conv, 10,
           "GrokFast-AdamW: filter from step 4 on, other alpha and lambda", zero=[5]))
    a(spec("grokfastadamw-wd-decoupled", "grokfastadamw", {"lr": 0.01, "weight_decay": 0.1}, WB, 10,
           "GrokFast-AdamW with decoupled decay (normalized lr)"))
    a(spec("grokfastadamw-wd-l2-fixed", "grokfastadamw",
           {"lr": 0.01, "weight_decay": 0.01, "weight_decouple": False, "betas": [0.8, 0.95]}, three, 10,
           "GrokFast-AdamW with L2 decay and other betas"))
    a(spec("grokfastadamw-wd-fixed", "grokfastadamw",
           {"lr": 0.01, "weight_decay": 0.01, "fixed_decay": True}, WB, 10, "GrokFast-AdamW with fixed decay"))
    a(spec("grokfastadamw-no-filter", "grokfastadamw", {"lr": 0.01, "grokfast": False, "eps": 0.01}, WB, 10,
           "GrokFast-AdamW with the filter off (plain AdamW with the eps floor)"))
    a(spec("grokfastadamw-no-normalize", "grokfastadamw", {"lr": 0.003, "normalize_lr": False}, WB, 10,
           "GrokFast-AdamW without lr normalization"))
    a(spec("grokfastadamw-warmup-cosine", "grokfastadamw", {"lr": 0.01}, WB, 10,
           "GrokFast-AdamW under warmup_cosine (min_lr 0: the reference schedules its normalized lr)",
           sched=warmup_cosine(2, 8), clip=clip_norm(5.0)))
    a(spec("grokfastadamw-maximize", "grokfastadamw", {"lr": 0.01, "maximize": True, "weight_decay": 0.1}, WB, 10,
           "EXTENSION (maximize): GrokFast-AdamW maximizing (the EMA starts at -g)", ext=True))
    # ---------------------------------------------------------------- ranger
    a(spec("ranger-defaults", "ranger", {}, WB, 14,
           "Ranger defaults: gradient centralization of w, lookahead at steps 6 and 12, first 5 steps unrectified"))
    a(spec("ranger-4d-gc-conv-only", "ranger", {"lr": 0.01, "gc_conv_only": True, "k": 3}, conv + [("m", [3, 4])],
           10, "Ranger centralizing only the 4-D tensor, lookahead every 3 steps", zero=[4]))
    a(spec("ranger-no-gc-degenerated", "ranger",
           {"lr": 0.01, "use_gc": False, "degenerated_to_sgd": True, "alpha": 0.8, "k": 4}, WB, 10,
           "Ranger without centralization, SGD steps below the threshold"))
    a(spec("ranger-rectified-early", "ranger", {"lr": 0.01, "betas": [0.9, 0.9], "n_sma_threshold": 4}, three, 10,
           "Ranger with beta2 0.9 and threshold 4: rectified from step 5"))
    a(spec("ranger-wd-decoupled", "ranger", {"lr": 0.01, "weight_decay": 0.1}, WB, 10,
           "Ranger with decoupled decay"))
    a(spec("ranger-wd-l2-fixed", "ranger", {"lr": 0.01, "weight_decay": 0.05, "weight_decouple": False, "eps": 1e-8},
           WB, 10, "Ranger with L2 decay"))
    a(spec("ranger-wd-fixed-debias", "ranger",
           {"lr": 0.01, "weight_decay": 0.01, "fixed_decay": True, "adam_debias": True}, WB, 10,
           "Ranger with fixed decay and adam_debias"))
    a(spec("ranger-warmup-cosine", "ranger", {"lr": 0.01}, WB, 12, "Ranger under warmup_cosine",
           sched=warmup_cosine(2, 10, 0.001)))
    a(spec("ranger-maximize", "ranger", {"lr": 0.01, "maximize": True, "weight_decay": 0.1}, WB, 10,
           "EXTENSION (maximize): Ranger maximizing", ext=True))
    # ---------------------------------------------------------------- came
    a(spec("came-defaults", "came", {}, WB, 10, "CAME defaults: w factored, b with the full moment"))
    a(spec("came-4d-3d", "came", {"lr": 0.01}, conv + [("k", [2, 3, 4])], 10,
           "CAME on 4-D and 3-D tensors (factored over the last two dims per batch entry)", zero=[4]))
    a(spec("came-clip-active", "came", {"lr": 0.01, "clip_threshold": 0.05, "betas": [0.8, 0.99, 0.999]}, three, 10,
           "CAME with a small clip_threshold (the RMS clipping acts) and other betas"))
    a(spec("came-ams-bound", "came", {"lr": 0.01, "ams_bound": True}, three, 10, "CAME with ams_bound",
           big={6: 10.0}))
    a(spec("came-wd-decoupled", "came", {"lr": 0.01, "weight_decay": 0.1}, WB, 10, "CAME with decoupled decay"))
    a(spec("came-wd-l2", "came", {"lr": 0.01, "weight_decay": 0.1, "weight_decouple": False}, WB, 10,
           "CAME with L2 decay"))
    a(spec("came-wd-fixed-eps", "came",
           {"lr": 0.01, "weight_decay": 0.01, "fixed_decay": True, "eps1": 1e-10, "eps2": 1e-8}, WB, 10,
           "CAME with fixed decay and larger eps1, eps2"))
    a(spec("came-warmup-cosine", "came", {"lr": 0.01}, WB, 10, "CAME under warmup_cosine",
           sched=warmup_cosine(2, 8, 0.001), clip=clip_norm(5.0)))
    a(spec("came-maximize", "came", {"lr": 0.01, "maximize": True, "weight_decay": 0.1}, WB, 10,
           "EXTENSION (maximize): CAME maximizing", ext=True))
    # ---------------------------------------------------------------- schedulefreeradam
    a(spec("schedulefreeradam-defaults", "schedulefreeradam", {}, WB, 12,
           "schedule-free RAdam defaults: silent until rectification starts (step 6), then averaging"))
    a(spec("schedulefreeradam-4d", "schedulefreeradam", {"lr": 0.01, "betas": [0.9, 0.9]}, conv, 12,
           "schedule-free RAdam with beta2 0.9 on a 4-D tensor", zero=[7]))
    a(spec("schedulefreeradam-sgd-phase", "schedulefreeradam",
           {"lr": 0.01, "silent_sgd_phase": False, "betas": [0.95, 0.99]}, WB, 10,
           "schedule-free RAdam without the silent phase (the reference's lr 1.0 before rectification)",
           gscale=0.01))
    a(spec("schedulefreeradam-wd-r-power", "schedulefreeradam",
           {"lr": 0.01, "weight_decay": 0.1, "r": 1.0, "weight_lr_power": 1.0, "eps": 1e-6}, three, 12,
           "schedule-free RAdam with decay at y, r 1 and weight_lr_power 1"))
    a(spec("schedulefreeradam-warmup-cosine", "schedulefreeradam", {"lr": 0.01}, WB, 12,
           "schedule-free RAdam under warmup_cosine", sched=warmup_cosine(2, 10, 0.001)))
    a(spec("schedulefreeradam-maximize", "schedulefreeradam", {"lr": 0.01, "maximize": True, "weight_decay": 0.1},
           WB, 12, "EXTENSION (maximize): schedule-free RAdam maximizing", ext=True))
    # ---------------------------------------------------------------- adammini
    llm = [("model.embed_tokens.weight", [10, 8]), ("model.layers.0.self_attn.q_proj.weight", [8, 8]),
           ("model.layers.0.self_attn.k_proj.weight", [4, 8]), ("model.layers.0.mlp.up_proj.weight", [6, 8]),
           ("model.layers.0.input_layernorm.weight", [8]), ("lm_head.weight", [10, 8])]
    a(spec("adammini-defaults", "adammini", {}, WB, 10,
           "Adam-mini defaults on unnamed-role tensors: one second moment per tensor, decoupled decay 0.1 at lr 1"))
    a(spec("adammini-llm-blocks", "adammini", {"lr": 0.01, "num_embeds": 8, "num_heads": 4}, llm, 10,
           "Adam-mini on a small transformer layer: embeddings per element, q/k per head (16 values), "
           "norm without decay, the rest per tensor", zero=[4]))
    a(spec("adammini-gqa-fused-attn", "adammini",
           {"lr": 0.01, "num_embeds": 8, "num_heads": 4, "num_query_groups": 2, "weight_decay": 0.0,
            "betas": [0.8, 0.99], "eps": 1e-6},
           [("h.0.attn.qkv.weight", [12, 8]), ("h.0.attn.attn.weight", [24, 4]), ("wte.weight", [6, 4]),
            ("h.0.ln_f.bias", [4]), ("k", [2, 3, 4])], 10,
           "Adam-mini with grouped-query attention: fused attention weights as 2 x 4 x rest blocks"))
    a(spec("adammini-warmup-cosine", "adammini", {"lr": 0.01, "num_embeds": 8, "num_heads": 4}, llm, 10,
           "Adam-mini under warmup_cosine", sched=warmup_cosine(2, 8, 0.001)))
    a(spec("adammini-maximize", "adammini", {"lr": 0.01, "maximize": True, "num_embeds": 8, "num_heads": 4},
           llm, 10, "EXTENSION (maximize): Adam-mini maximizing", ext=True))
    # ---------------------------------------------------------------- stablespam
    a(spec("stablespam-defaults", "stablespam", {}, WB, 10, "Stable-SPAM defaults"))
    a(spec("stablespam-spike-clipping", "stablespam", {"lr": 0.01}, conv, 10,
           "Stable-SPAM: a gradient spike clipped against the running maximum", big={5: 1e3}, zero=[3]))
    a(spec("stablespam-reset", "stablespam", {"lr": 0.01, "update_proj_gap": 4, "gamma1": -1.0}, three, 11,
           "Stable-SPAM with moment resets every 4 steps and gamma1 = beta1"))
    a(spec("stablespam-wd-other-constants", "stablespam",
           {"lr": 0.01, "weight_decay": 0.1, "gamma1": 0.5, "gamma2": 0.8, "theta": 0.9, "betas": [0.8, 0.99],
            "eps": 1e-6}, WB, 10, "Stable-SPAM with decoupled decay and other constants"))
    a(spec("stablespam-warmup-cosine", "stablespam", {"lr": 0.01}, WB, 10, "Stable-SPAM under warmup_cosine",
           sched=warmup_cosine(2, 8, 0.001)))
    a(spec("stablespam-cosine-decay", "stablespam", {"lr": 0.01, "t_max": 6}, WB, 10,
           "Stable-SPAM with the cosine decay of beta1 and gamma1 (t_max 6: the factor reaches eta_min 0.5 at "
           "step 6 and stays there)"))
    a(spec("stablespam-cosine-decay-eta-min", "stablespam",
           {"lr": 0.01, "t_max": 5, "eta_min": 0.2, "gamma1": -1.0, "update_proj_gap": 4, "weight_decay": 0.1},
           three, 11, "Stable-SPAM with the cosine decay to eta_min 0.2 over t_max 5, gamma1 = beta1 (both "
           "decayed), moment resets every 4 steps"))
    a(spec("stablespam-cosine-decay-t-max-one", "stablespam", {"lr": 0.01, "t_max": 1, "eta_min": 0.8}, WB, 6,
           "Stable-SPAM with t_max 1: beta1 and gamma1 are scaled by eta_min 0.8 from the first step"))
    a(spec("stablespam-maximize", "stablespam", {"lr": 0.01, "maximize": True, "weight_decay": 0.1}, WB, 10,
           "EXTENSION (maximize): Stable-SPAM maximizing", ext=True))
    # ---------------------------------------------------------------- spam
    a(spec("spam-defaults", "spam", {}, WB, 10, "SPAM defaults (density 1: the masks select every entry)"))
    a(spec("spam-reset-warmup-clip", "spam",
           {"lr": 0.01, "update_proj_gap": 5, "warmup_epoch": 3, "grad_accu_steps": 2, "threshold": 3},
           three, 14, "SPAM with moment resets at steps 5, 10, cosine warm-up of the step after each and spike "
           "clipping (threshold 3)", big={7: 100.0}))
    a(spec("spam-4d-wd", "spam", {"lr": 0.01, "weight_decay": 0.1, "betas": [0.8, 0.99], "eps": 1e-8}, conv, 10,
           "SPAM on a 4-D tensor with decoupled decay after the update", zero=[3]))
    a(spec("spam-no-clip-warmup-cosine", "spam", {"lr": 0.01, "threshold": 0, "update_proj_gap": 6,
                                                  "warmup_epoch": 2, "grad_accu_steps": 0}, WB, 12,
           "SPAM without clipping under warmup_cosine", sched=warmup_cosine(2, 10, 0.001)))
    a(spec("spam-maximize", "spam", {"lr": 0.01, "maximize": True, "weight_decay": 0.1}, WB, 10,
           "EXTENSION (maximize): SPAM maximizing", ext=True))
    return S


def catalogue_c_error_specs():
    """Error cases of catalogue C: where the reference constructor (or first step) raises."""
    E = []

    def e(cid, desc, optimizer, hparams):
        E.append(dict(id=cid, desc=desc, optimizer=optimizer, hparams=hparams, shapes=WB, steps=3,
                      mutate=None, hess=None))

    for name in ("prodigy", "dadaptadam", "dadaptsgd", "dadaptlion"):
        e(f"error-negative-lr-{name}", "negative lr", name, {"lr": -1.0})
        e(f"error-negative-weight-decay-{name}", "negative weight_decay", name, {"weight_decay": -0.1})
        e(f"error-unknown-hparam-{name}", "unknown hyperparameter (amsgrad)", name, {"amsgrad": True})
    for name in ("prodigy", "dadaptadam", "dadaptlion"):
        e(f"error-beta1-one-{name}", "beta1 = 1 is outside [0, 1)", name, {"betas": [1.0, 0.999]})
        e(f"error-beta2-negative-{name}", "beta2 < 0", name, {"betas": [0.9, -0.1]})
    e("error-beta3-above-one-prodigy", "beta3 > 1", "prodigy", {"beta3": 1.5})
    e("error-negative-eps-prodigy", "negative eps", "prodigy", {"eps": -1e-8})
    e("error-d0-zero-prodigy", "d0 = 0 (the first step divides by it)", "prodigy", {"d0": 0.0})
    e("error-negative-eps-dadaptadam", "negative eps", "dadaptadam", {"eps": -1e-8})
    e("error-momentum-one-dadaptsgd", "momentum = 1 is outside [0, 1)", "dadaptsgd", {"momentum": 1.0})
    for name in ("grokfastadamw", "ranger"):
        e(f"error-negative-lr-{name}", "negative lr", name, {"lr": -0.001})
        e(f"error-beta1-one-{name}", "beta1 = 1 is outside [0, 1)", name, {"betas": [1.0, 0.999]})
        e(f"error-negative-weight-decay-{name}", "negative weight_decay", name, {"weight_decay": -0.1})
        e(f"error-negative-eps-{name}", "negative eps", name, {"eps": -1e-8})
    e("error-unknown-hparam-grokfastadamw", "unknown hyperparameter (amsgrad)", "grokfastadamw", {"amsgrad": True})
    e("error-grokfast-alpha-one-grokfastadamw", "grokfast_alpha = 1 is outside [0, 1)", "grokfastadamw",
      {"grokfast_alpha": 1.0})
    e("error-alpha-above-one-ranger", "alpha > 1", "ranger", {"alpha": 1.5})
    e("error-k-zero-ranger", "k = 0 is not positive", "ranger", {"k": 0})
    e("error-negative-lr-came", "negative lr", "came", {"lr": -0.001})
    e("error-beta1-one-came", "beta1 = 1 is outside [0, 1)", "came", {"betas": [1.0, 0.999, 0.9999]})
    e("error-beta3-above-one-came", "beta3 > 1", "came", {"betas": [0.9, 0.999, 1.5]})
    e("error-negative-weight-decay-came", "negative weight_decay", "came", {"weight_decay": -0.1})
    e("error-negative-eps1-came", "negative eps1", "came", {"eps1": -1e-30})
    e("error-negative-eps2-came", "negative eps2", "came", {"eps2": -1e-16})
    e("error-unknown-hparam-came", "unknown hyperparameter (eps)", "came", {"eps": 1e-8})
    e("error-negative-lr-schedulefreeradam", "negative lr", "schedulefreeradam", {"lr": -0.001})
    e("error-beta1-zero-schedulefreeradam", "beta1 = 0 is outside (0, 1)", "schedulefreeradam",
      {"betas": [0.0, 0.999]})
    e("error-beta2-one-schedulefreeradam", "beta2 = 1 is outside [0, 1)", "schedulefreeradam",
      {"betas": [0.9, 1.0]})
    e("error-negative-weight-decay-schedulefreeradam", "negative weight_decay", "schedulefreeradam",
      {"weight_decay": -0.1})
    e("error-unknown-hparam-schedulefreeradam", "unknown hyperparameter (warmup_steps)", "schedulefreeradam",
      {"warmup_steps": 10})
    e("error-negative-lr-adammini", "negative lr", "adammini", {"lr": -1.0})
    e("error-negative-weight-decay-adammini", "negative weight_decay", "adammini", {"weight_decay": -0.1})
    e("error-num-heads-zero-adammini", "num_heads = 0 is not positive", "adammini", {"num_heads": 0})
    e("error-num-embeds-not-divisible-adammini", "num_embeds not divisible by num_heads", "adammini",
      {"num_embeds": 10, "num_heads": 4})
    e("error-query-groups-not-divisible-adammini", "num_heads not divisible by num_query_groups", "adammini",
      {"num_heads": 4, "num_query_groups": 3, "num_embeds": 8})
    e("error-unknown-hparam-adammini", "unknown hyperparameter (amsgrad)", "adammini", {"amsgrad": True})
    e("error-negative-lr-stablespam", "negative lr", "stablespam", {"lr": -0.001})
    e("error-beta1-one-stablespam", "beta1 = 1 is outside [0, 1)", "stablespam", {"betas": [1.0, 0.999]})
    e("error-negative-weight-decay-stablespam", "negative weight_decay", "stablespam", {"weight_decay": -0.1})
    e("error-update-proj-gap-zero-stablespam", "update_proj_gap = 0 is not positive", "stablespam",
      {"update_proj_gap": 0})
    e("error-negative-eps-stablespam", "negative eps", "stablespam", {"eps": -1e-8})
    e("error-negative-lr-spam", "negative lr", "spam", {"lr": -0.001})
    e("error-beta1-one-spam", "beta1 = 1 is outside [0, 1)", "spam", {"betas": [1.0, 0.999]})
    e("error-negative-weight-decay-spam", "negative weight_decay", "spam", {"weight_decay": -0.1})
    e("error-negative-density-spam", "negative density", "spam", {"density": -0.5})
    e("error-negative-threshold-spam", "negative threshold", "spam", {"threshold": -1})
    e("error-update-proj-gap-zero-spam", "update_proj_gap = 0 is not positive", "spam", {"update_proj_gap": 0})
    e("error-negative-eps-spam", "negative eps", "spam", {"eps": -1e-6})
    e("error-unknown-hparam-adanorm-ranger", "adanorm is not implemented (unknown hyperparameter)", "ranger",
      {"adanorm": True})
    return E


# --------------------------------------------------------------------------------------
# Catalogue A: torch.optim ASGD and Rprop; pytorch-optimizer SGDW, QHM, AggMo, LARS, SGDP,
# MADGRAD, NovoGrad, Tiger
# --------------------------------------------------------------------------------------

def catalogue_a_specs():
    S = []
    a = S.append
    three = [("w", [5, 4]), ("k", [2, 3, 2]), ("b", [4])]
    conv = [("conv", [4, 3, 2, 2]), ("b", [4])]
    # ---------------------------------------------------------------- asgd
    a(spec("asgd-defaults", "asgd", {}, WB, 8, "ASGD defaults (eta = lr / (1 + lambd lr t)^0.75, t0 = 1e6)"))
    a(spec("asgd-strong-decay", "asgd", {"lr": 0.05, "lambd": 0.5, "alpha": 1.5, "t0": 3.0}, three, 10,
           "ASGD with a fast eta decay and t0 = 3 (mu < 1 after step 4)", zero=[3]))
    a(spec("asgd-weight-decay", "asgd", {"lr": 0.02, "weight_decay": 0.1, "lambd": 0.01}, conv, 9,
           "ASGD with L2 weight decay", big={5: 1e3}))
    a(spec("asgd-clip-warmup-cosine", "asgd", {"lr": 0.05, "lambd": 0.1}, WB, 10,
           "ASGD after clip_grad_norm_ under warmup_cosine (eta follows the scheduled lr one step late)",
           clip=clip_norm(5.0), sched=warmup_cosine(2, 7, 0.001)))
    a(spec("asgd-maximize", "asgd", {"lr": 0.02, "lambd": 0.05, "weight_decay": 0.01, "maximize": True}, WB, 8,
           "ASGD maximizing, with L2 weight decay", ext=True))
    # ---------------------------------------------------------------- rprop
    a(spec("rprop-defaults", "rprop", {}, WB, 10, "Rprop defaults (step sizes start at lr 0.01)", zero=[4]))
    a(spec("rprop-clamped", "rprop", {"lr": 0.01, "etas": [0.3, 1.6], "step_sizes": [0.004, 0.02]}, three, 12,
           "Rprop with step sizes clamped to [0.004, 0.02] both ways"))
    a(spec("rprop-clip-warmup-cosine", "rprop", {"lr": 0.005}, WB, 10,
           "Rprop after clip_grad_norm_ under warmup_cosine (lr only sets the initial step size)",
           clip=clip_norm(5.0), sched=warmup_cosine(2, 7)))
    a(spec("rprop-maximize", "rprop", {"lr": 0.02, "etas": [0.4, 1.3], "maximize": True}, conv, 9,
           "Rprop maximizing", ext=True))
    # ---------------------------------------------------------------- sgdw
    a(spec("sgdw-defaults", "sgdw", {}, WB, 8, "SGDW defaults (lr 1e-4, no momentum)"))
    a(spec("sgdw-momentum-decoupled", "sgdw", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1}, three, 10,
           "SGDW with momentum (the buffer starts as the first gradient) and decoupled weight decay"))
    a(spec("sgdw-nesterov-l2-dampening", "sgdw",
           {"lr": 0.03, "momentum": 0.8, "dampening": 0.2, "nesterov": True, "weight_decay": 0.05,
            "weight_decouple": False}, conv, 10, "SGDW with Nesterov momentum, dampening and L2 weight decay",
           zero=[1]))
    a(spec("sgdw-clip-warmup-cosine", "sgdw", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, WB, 10,
           "SGDW after clip_grad_norm_ under warmup_cosine", clip=clip_norm(5.0), sched=warmup_cosine(2, 7)))
    a(spec("sgdw-maximize", "sgdw", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1, "maximize": True}, WB, 8,
           "SGDW maximizing", ext=True))
    # ---------------------------------------------------------------- qhm
    a(spec("qhm-defaults", "qhm", {}, WB, 8, "QHM defaults (momentum 0, nu 1: plain SGD)"))
    a(spec("qhm-momentum-nu", "qhm", {"lr": 0.05, "momentum": 0.9, "nu": 0.7}, three, 10,
           "QHM with momentum 0.9 and nu 0.7", big={6: 1e3}))
    a(spec("qhm-l2-wd", "qhm", {"lr": 0.02, "momentum": 0.8, "nu": 0.5, "weight_decay": 0.1}, conv, 10,
           "QHM with L2 weight decay", zero=[2]))
    a(spec("qhm-decoupled-fixed", "qhm",
           {"lr": 0.02, "momentum": 0.95, "nu": 0.3, "weight_decay": 0.05, "weight_decouple": True,
            "fixed_decay": True}, WB, 10, "QHM with fixed decoupled weight decay (p *= 1 - wd)"))
    a(spec("qhm-decoupled-clip-warmup-cosine", "qhm",
           {"lr": 0.05, "momentum": 0.9, "nu": 0.7, "weight_decay": 0.1, "weight_decouple": True}, WB, 10,
           "QHM with decoupled weight decay after clip_grad_norm_ under warmup_cosine", clip=clip_norm(5.0),
           sched=warmup_cosine(2, 7)))
    a(spec("qhm-maximize", "qhm", {"lr": 0.05, "momentum": 0.9, "nu": 0.7, "maximize": True}, WB, 8,
           "QHM maximizing", ext=True))
    # ---------------------------------------------------------------- aggmo
    a(spec("aggmo-defaults", "aggmo", {}, WB, 8, "AggMo defaults (betas 0, 0.9, 0.99)"))
    a(spec("aggmo-two-betas-l2", "aggmo", {"lr": 0.01, "betas": [0.5, 0.95], "weight_decay": 0.1}, three, 10,
           "AggMo with two buffers and L2 weight decay", big={5: 1e3}))
    a(spec("aggmo-four-betas-decoupled", "aggmo",
           {"lr": 0.02, "betas": [0.0, 0.5, 0.9, 0.999], "weight_decay": 0.05, "weight_decouple": True}, conv, 10,
           "AggMo with four buffers and decoupled weight decay", zero=[3]))
    a(spec("aggmo-fixed-decay-clip-warmup-cosine", "aggmo",
           {"lr": 0.05, "weight_decay": 0.01, "weight_decouple": True, "fixed_decay": True}, WB, 10,
           "AggMo with fixed decoupled decay after clip_grad_norm_ under warmup_cosine", clip=clip_norm(5.0),
           sched=warmup_cosine(2, 7)))
    a(spec("aggmo-maximize", "aggmo", {"lr": 0.01, "maximize": True}, WB, 8, "AggMo maximizing", ext=True))
    # ---------------------------------------------------------------- lars
    a(spec("lars-defaults", "lars", {}, WB, 8, "LARS defaults (momentum 0.9, trust coefficient 1e-3; the "
           "vector takes plain momentum SGD)"))
    a(spec("lars-wd-lr", "lars", {"lr": 1.0, "weight_decay": 0.01, "trust_coefficient": 0.02}, conv + [("s", [1])],
           10, "LARS with weight decay on a 4-D tensor, a vector and a 1-element tensor", big={4: 1e3}))
    a(spec("lars-nesterov-dampening", "lars",
           {"lr": 2.0, "momentum": 0.8, "dampening": 0.3, "nesterov": True, "weight_decay": 0.1,
            "trust_coefficient": 0.01}, three, 10, "LARS with Nesterov momentum and dampening"))
    a(spec("lars-no-momentum-zero-param", "lars", {"lr": 0.5, "momentum": 0.0, "trust_coefficient": 0.01},
           [("w", [4, 5]), ("z", [3, 3])], 6, "LARS without momentum; the all-zero matrix takes trust ratio 1",
           zero_params=["z"]))
    a(spec("lars-clip-warmup-cosine", "lars", {"lr": 1.0, "weight_decay": 0.005, "trust_coefficient": 0.02}, WB,
           10, "LARS after clip_grad_norm_ under warmup_cosine", clip=clip_norm(5.0), sched=warmup_cosine(2, 7)))
    a(spec("lars-maximize", "lars", {"lr": 1.0, "weight_decay": 0.01, "trust_coefficient": 0.02,
                                     "maximize": True}, WB, 8, "LARS maximizing", ext=True))
    # ---------------------------------------------------------------- sgdp
    wide = [("w", [4, 64]), ("b", [8])]
    a(spec("sgdp-defaults", "sgdp", {}, WB, 8, "SGDP defaults (no momentum; delta 0.1 rarely finds a "
           "scale-invariant view here)"))
    a(spec("sgdp-projected-channel", "sgdp",
           {"lr": 0.05, "momentum": 0.9, "delta": 5.0, "weight_decay": 0.1}, wide, 10,
           "SGDP with delta 5: every step projects per channel (wd_ratio applies, divided by 1 - momentum)"))
    a(spec("sgdp-projected-mixed-nesterov", "sgdp",
           {"lr": 0.05, "momentum": 0.8, "dampening": 0.1, "nesterov": True, "delta": 1.0, "weight_decay": 0.05,
            "fixed_decay": True}, wide + [("k", [3, 2, 5])], 10,
           "SGDP with delta 1 (channel, layer or no projection by step) and Nesterov momentum, fixed decay"))
    a(spec("sgdp-l2-no-effect", "sgdp", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.5,
                                         "weight_decouple": False, "delta": 5.0}, wide, 8,
           "SGDP with weight_decouple false: the reference's L2 term is added to a gradient it no longer reads"))
    a(spec("sgdp-clip-warmup-cosine", "sgdp", {"lr": 0.1, "momentum": 0.9, "delta": 5.0, "weight_decay": 0.01},
           wide, 10, "SGDP after clip_grad_norm_ under warmup_cosine", clip=clip_norm(5.0),
           sched=warmup_cosine(2, 7)))
    a(spec("sgdp-maximize", "sgdp", {"lr": 0.05, "momentum": 0.9, "delta": 5.0, "weight_decay": 0.1,
                                     "maximize": True}, wide, 8, "SGDP maximizing", ext=True))
    # ---------------------------------------------------------------- madgrad
    a(spec("madgrad-defaults", "madgrad", {}, WB, 8, "MADGRAD defaults (momentum 0.9 toward the dual point)"))
    a(spec("madgrad-no-momentum-l2", "madgrad", {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.1}, three, 10,
           "MADGRAD without momentum (x0 recomputed every step) and L2 weight decay", big={6: 1e3}))
    a(spec("madgrad-decoupled", "madgrad", {"lr": 0.02, "weight_decay": 0.05, "weight_decouple": True}, conv, 10,
           "MADGRAD with decoupled weight decay (scaled by lr + eps)", zero=[3]))
    a(spec("madgrad-eps-zero", "madgrad", {"lr": 0.01, "momentum": 0.0, "eps": 0.0}, WB, 8,
           "MADGRAD with eps 0 and a zero first gradient (0 / inf = 0 at the start)", zero=[1]))
    a(spec("madgrad-clip-warmup-cosine", "madgrad", {"lr": 0.02}, WB, 10,
           "MADGRAD after clip_grad_norm_ under warmup_cosine", clip=clip_norm(5.0), sched=warmup_cosine(2, 7)))
    a(spec("madgrad-maximize", "madgrad", {"lr": 0.01, "weight_decay": 0.01, "maximize": True}, WB, 8,
           "MADGRAD maximizing", ext=True))
    # ---------------------------------------------------------------- novograd
    a(spec("novograd-defaults", "novograd", {}, WB, 8, "NovoGrad defaults"))
    a(spec("novograd-grad-averaging-l2", "novograd",
           {"lr": 0.01, "betas": [0.9, 0.99], "grad_averaging": True, "weight_decay": 0.1}, three, 10,
           "NovoGrad with gradient averaging and L2 weight decay (after normalization)", big={5: 1e3}))
    a(spec("novograd-decoupled-fixed", "novograd",
           {"lr": 0.02, "weight_decay": 0.05, "weight_decouple": True, "fixed_decay": True}, conv, 10,
           "NovoGrad with fixed decoupled weight decay", zero=[4]))
    a(spec("novograd-adam-debias", "novograd", {"lr": 0.01, "adam_debias": True, "eps": 1e-4}, WB, 10,
           "NovoGrad with adam_debias (read from the reference's **kwargs): step lr sqrt(1 - beta2^t)"))
    a(spec("novograd-clip-warmup-cosine", "novograd", {"lr": 0.02, "weight_decay": 0.01, "weight_decouple": True},
           WB, 10, "NovoGrad after clip_grad_norm_ under warmup_cosine", clip=clip_norm(5.0),
           sched=warmup_cosine(2, 7)))
    a(spec("novograd-maximize", "novograd", {"lr": 0.01, "grad_averaging": True, "maximize": True}, WB, 8,
           "NovoGrad maximizing", ext=True))
    # ---------------------------------------------------------------- tiger
    a(spec("tiger-defaults", "tiger", {}, WB, 8, "Tiger defaults (decoupled weight decay 0.01)"))
    a(spec("tiger-l2-beta", "tiger", {"lr": 0.01, "beta": 0.8, "weight_decay": 0.1, "weight_decouple": False},
           three, 10, "Tiger with L2 weight decay and beta 0.8", big={5: 1e3}))
    a(spec("tiger-fixed-decay", "tiger", {"lr": 0.01, "weight_decay": 0.05, "fixed_decay": True}, conv, 10,
           "Tiger with fixed decoupled weight decay", zero=[1]))
    a(spec("tiger-clip-warmup-cosine", "tiger", {"lr": 0.01}, WB, 10,
           "Tiger after clip_grad_norm_ under warmup_cosine", clip=clip_norm(5.0), sched=warmup_cosine(2, 7)))
    a(spec("tiger-maximize", "tiger", {"lr": 0.01, "maximize": True}, WB, 8, "Tiger maximizing", ext=True))
    # ---------------------------------------------------------------- lbfgs (closure returns the step's gradient)
    lb = ("; torch's closure returns this step's gradient and the loss 0 at every evaluation")
    a(spec("lbfgs-max-iter-1", "lbfgs", {"lr": 0.1, "max_iter": 1}, WB, 8,
           "L-BFGS with max_iter 1: one quasi-Newton step per gradient, the exactly defined case" + lb))
    a(spec("lbfgs-history-2", "lbfgs", {"lr": 0.05, "max_iter": 1, "history_size": 2}, three, 10,
           "L-BFGS with max_iter 1 and a history of 2 pairs (the oldest dropped)" + lb, zero=[4]))
    a(spec("lbfgs-max-iter-20", "lbfgs", {"lr": 0.1}, WB, 8,
           "L-BFGS with max_iter 20: the second evaluation returns the same loss, so each step stops after one "
           "update (|loss - prev_loss| < tolerance_change)" + lb))
    a(spec("lbfgs-defaults", "lbfgs", {}, WB, 6, "L-BFGS defaults (lr 1, max_iter 20)" + lb, gscale=0.1))
    a(spec("lbfgs-clip-warmup-cosine", "lbfgs", {"lr": 0.1, "max_iter": 1}, WB, 10,
           "L-BFGS (max_iter 1) after clip_grad_norm_ under warmup_cosine" + lb, clip=clip_norm(5.0),
           sched=warmup_cosine(2, 7)))
    a(spec("lbfgs-maximize", "lbfgs", {"lr": 0.1, "max_iter": 1, "maximize": True}, WB, 8,
           "L-BFGS maximizing (max_iter 1)" + lb, ext=True))
    return S


def catalogue_a_error_specs():
    E = []

    def e(cid, desc, optimizer, hparams, shapes=WB, steps=3):
        E.append(dict(id=cid, desc=desc, optimizer=optimizer, hparams=hparams, shapes=shapes, steps=steps,
                      mutate=None, hess=None))

    for name in CATALOGUE_A:
        e(f"error-negative-lr-{name}", "negative lr", name, {"lr": -0.01})
    e("error-asgd-negative-lambd", "negative lambd", "asgd", {"lambd": -0.1})
    e("error-asgd-negative-alpha", "negative alpha", "asgd", {"alpha": -0.5})
    e("error-asgd-negative-wd", "negative weight_decay", "asgd", {"weight_decay": -0.1})
    e("error-unknown-hparam-asgd-capturable", "capturable is an execution flag, not a hyperparameter here",
      "asgd", {"capturable": False})
    e("error-rprop-etaminus-above-one", "etas must satisfy 0 < etaminus < 1 < etaplus", "rprop",
      {"etas": [1.5, 2.0]})
    e("error-rprop-etaplus-below-one", "etas must satisfy 0 < etaminus < 1 < etaplus", "rprop",
      {"etas": [0.5, 0.9]})
    e("error-rprop-etaminus-zero", "etas must satisfy 0 < etaminus < 1 < etaplus", "rprop", {"etas": [0.0, 1.2]})
    e("error-sgdw-momentum-one", "momentum must be in [0, 1)", "sgdw", {"momentum": 1.0})
    e("error-sgdw-negative-wd", "negative weight_decay", "sgdw", {"weight_decay": -0.1})
    e("error-qhm-nu-above-one", "nu must be in [0, 1]", "qhm", {"nu": 1.5})
    e("error-qhm-negative-momentum", "momentum must be in [0, 1)", "qhm", {"momentum": -0.1})
    e("error-aggmo-beta1-one", "betas[0] must be in [0, 1)", "aggmo", {"betas": [1.0, 0.9, 0.99]})
    e("error-aggmo-beta3-above-one", "betas[2] must be in [0, 1]", "aggmo", {"betas": [0.0, 0.9, 1.5]})
    e("error-aggmo-one-beta", "AggMo reads betas[1]: a single beta is an error", "aggmo", {"betas": [0.9]})
    e("error-lars-dampening-one", "dampening must be in [0, 1)", "lars", {"dampening": 1.0})
    e("error-lars-negative-trust-coefficient", "negative trust_coefficient", "lars", {"trust_coefficient": -0.001})
    e("error-sgdp-wd-ratio-one", "wd_ratio must be in [0, 1)", "sgdp", {"wd_ratio": 1.0})
    e("error-sgdp-negative-eps", "negative eps", "sgdp", {"eps": -1e-08})
    e("error-sgdp-momentum-one", "momentum 1 divides by zero in the decay ratio", "sgdp", {"momentum": 1.0})
    e("error-madgrad-momentum-one", "momentum must be in [0, 1)", "madgrad", {"momentum": 1.0})
    e("error-madgrad-negative-eps", "negative eps", "madgrad", {"eps": -1e-06})
    e("error-novograd-beta2-one", "beta2 must be in [0, 1)", "novograd", {"betas": [0.95, 1.0]})
    e("error-novograd-negative-wd", "negative weight_decay", "novograd", {"weight_decay": -0.01})
    e("error-tiger-beta-one", "beta must be in [0, 1)", "tiger", {"beta": 1.0})
    e("error-tiger-negative-wd", "negative weight_decay", "tiger", {"weight_decay": -0.01})
    e("error-lbfgs-line-search-fn", "only line_search_fn null or 'strong_wolfe' (torch raises at the step)",
      "lbfgs", {"line_search_fn": "backtracking"})
    return E


# --------------------------------------------------------------------------------------
# Closure cases (docs/replay.md, "Extension: closure-based optimizers"): L-BFGS on the
# built-in test functions of crates/optimist-core/src/problems.rs, re-implemented here in
# float64 exactly as there (the closure reads the float32 parameter, computes in float64,
# rounds the gradient to float32 and returns the float64 loss); written to --closure-out
# --------------------------------------------------------------------------------------

def problem_rosenbrock(x):
    a, b = 1.0, 100.0
    x0, x1 = x[0], x[1]
    r = x1 - x0 * x0
    g = [-2.0 * (a - x0) - 4.0 * b * x0 * r, 2.0 * b * r]
    return (a - x0) ** 2 + b * r * r, g


def problem_quadratic(condition):
    def f(x):
        dim = len(x)
        loss, g = 0.0, []
        for i, xi in enumerate(x):
            c = 1.0 if dim <= 1 else condition ** (i / (dim - 1))
            d = xi - 1.0
            g.append(c * d)
            loss += 0.5 * c * d * d
        return loss, g
    return f


def problem_lstsq(k, m, n, seed):
    mod = 2 ** 64
    st = [(seed * 6364136223846793005 + 1) % mod]

    def nxt():
        st[0] = (st[0] * 6364136223846793005 + 1442695040888963407) % mod
        return ((st[0] >> 11) / float(1 << 53)) * 2.0 - 1.0
    a = [nxt() for _ in range(k * m)]
    w = [nxt() for _ in range(m * n)]
    b = [0.0] * (k * n)
    for i in range(k):
        for l in range(m):
            for j in range(n):
                b[i * n + j] += a[i * m + l] * w[l * n + j]

    def f(x):
        r = [-v for v in b]
        for i in range(k):
            for l in range(m):
                ail = a[i * m + l]
                for j in range(n):
                    r[i * n + j] += ail * x[l * n + j]
        scale = 1.0 / k
        g = [0.0] * (m * n)
        for l in range(m):
            for j in range(n):
                acc = 0.0
                for i in range(k):
                    acc += a[i * m + l] * r[i * n + j]
                g[l * n + j] = acc * scale
        total = 0.0
        for v in r:
            total += v * v
        return 0.5 * scale * total, g
    return f


def closure_problem_fn(spec, shape):
    name = spec["problem"]
    if name == "rosenbrock":
        return problem_rosenbrock
    if name == "quadratic":
        return problem_quadratic(spec.get("condition", 100.0))
    if name == "lstsq":
        return problem_lstsq(spec.get("k", 32), shape[0], shape[1], spec.get("seed", 7))
    raise HarnessError(f"unknown closure problem {name!r}")


def closure_replay(case, dtype=torch.float32):
    p = case["params"][0]
    x = torch.tensor(np.asarray(p["data"], dtype=np.float32)).to(dtype).reshape(p["shape"]).requires_grad_(True)
    fn = closure_problem_fn(case["closure"], p["shape"])
    opt, _ = build_reference(case["optimizer"], case["hparams"], [x], dtype)

    def closure():
        loss, g = fn([float(v) for v in x.detach().reshape(-1).tolist()])
        x.grad = torch.tensor(g, dtype=torch.float64).to(dtype).reshape(x.shape)
        return loss
    out = []
    for _ in range(case["steps"]):
        opt.step(closure)
        out.append([x.detach().clone().numpy().reshape(-1)])
    return out


def closure_specs():
    C = []

    def c(cid, hparams, problem, name, shape, data, steps, desc):
        C.append(dict(id=cid, optimizer="lbfgs", hparams=hparams, closure=problem,
                      params=[{"name": name, "shape": shape, "data": data}], steps=steps, desc=desc))
    rb = [-1.5, 2.0]
    c("lbfgs-closure-rosenbrock-strong-wolfe", {"line_search_fn": "strong_wolfe", "max_iter": 2}, {"problem": "rosenbrock"},
      "x", [2], rb, 2, "L-BFGS with the strong-Wolfe line search (2 iterations per step) on Rosenbrock from (-1.5, 2)")
    c("lbfgs-closure-rosenbrock-fixed-step", {"lr": 0.02, "max_iter": 10}, {"problem": "rosenbrock"},
      "x", [2], rb, 4, "L-BFGS without line search (lr 0.02, 10 iterations per step) on Rosenbrock")
    c("lbfgs-closure-quadratic-strong-wolfe-history-3", {"line_search_fn": "strong_wolfe", "history_size": 3,
                                                         "max_iter": 4},
      {"problem": "quadratic", "condition": 100.0}, "x", [16], [0.0] * 16, 2,
      "L-BFGS with line search and a history of 3 pairs on a 16-D quadratic of condition 100")
    c("lbfgs-closure-quadratic-fixed-step", {"lr": 0.5, "max_iter": 6}, {"problem": "quadratic", "condition": 10.0},
      "x", [8], [0.0] * 8, 3, "L-BFGS without line search (lr 0.5, 6 iterations per step) on an 8-D quadratic")
    c("lbfgs-closure-quadratic-max-eval", {"line_search_fn": "strong_wolfe", "max_iter": 10, "max_eval": 4},
      {"problem": "quadratic"}, "x", [16], [0.0] * 16, 2,
      "L-BFGS with line search limited by max_eval 4 evaluations per step")
    c("lbfgs-closure-quadratic-tolerance-grad", {"max_iter": 50, "tolerance_grad": 1e-3, "lr": 0.5},
      {"problem": "quadratic", "condition": 4.0}, "x", [6], [0.0] * 6, 3,
      "L-BFGS stopping on tolerance_grad 1e-3 (later steps return after one evaluation)")
    c("lbfgs-closure-lstsq-strong-wolfe", {"line_search_fn": "strong_wolfe", "max_iter": 3},
      {"problem": "lstsq", "k": 8, "seed": 3}, "w", [4, 3], [0.0] * 12, 2,
      "L-BFGS with line search on least squares over a 4 x 3 matrix (k 8, seed 3)")
    return C


def make_closure_case(s, log):
    tol = dict(DEFAULT_TOL)
    case = {"version": 1, "id": s["id"], "description": s["desc"] + "; closure case (docs/replay.md)",
            "optimizer": s["optimizer"], "hparams": copy.deepcopy(s["hparams"]), "lr_schedule": None,
            "grad_clip": None, "closure": s["closure"], "steps": s["steps"],
            "params": [dict(p, data=np.asarray(p["data"], dtype=np.float32)) for p in s["params"]], "grads": []}
    contract_check_optimizer(case["optimizer"], case["hparams"], [p["shape"] for p in case["params"]], False)
    r32 = closure_replay(case, torch.float32)
    r64 = closure_replay(case, torch.float64)
    robust = tol_ratio(r64, r32, tol)
    finite = all(np.all(np.isfinite(x)) for step in r32 for x in step)
    if not finite or robust > ROBUST_FRACTION:
        return None, dict(error=f"finite={finite} f64={robust:.3g}")
    case["expected"] = [[x.astype(np.float32) for x in step] for step in r32]
    case["tolerance"] = tol
    lib, cls, _ = REFERENCES["lbfgs"]
    case["reference"] = {"library": lib, "version": library_version(lib), "class": cls, "notes": (
        "closure case: optimizer.step(closure) each step, the closure computing the built-in problem in float64 "
        "from the float32 parameter (gradient rounded to float32, loss returned as a float64 Python float); "
        f"float64 rerun within {robust:.2g} of the tolerance; generated by tools/gen_cases.py")}
    return case, dict(robust=robust)


def closure_case_json(case):
    text = case_json(case)
    head, rest = text.split('  "params": [', 1)
    extra = f'  "closure": {json.dumps(case["closure"])},\n  "steps": {case["steps"]},\n'
    return head + extra + '  "params": [' + rest


# --------------------------------------------------------------------------------------
# Case construction
# --------------------------------------------------------------------------------------

def case_seed(cid, attempt):
    return (zlib.crc32(cid.encode()) + 1_000_003 * attempt) % (2 ** 32)


def draw_case(s, attempt):
    seed = case_seed(s["id"], attempt)
    rng = np.random.default_rng(seed)
    params = []
    for name, shape in s["shapes"]:
        n = int(np.prod(shape))
        data = (rng.standard_normal(n) * s.get("pscale", 0.5)).astype(np.float32)
        if name in s.get("zero_params", ()):
            data = np.zeros(n, dtype=np.float32)
        params.append({"name": name, "shape": list(shape), "data": data})
    grads = []
    for t in range(1, s["steps"] + 1):
        step = []
        for name, shape in s["shapes"]:
            n = int(np.prod(shape))
            g = rng.standard_normal(n) * s.get("gscale", 1.0)
            if t in s.get("zero", ()):
                g = np.zeros(n)
            if t in s.get("big", {}):
                g = g * s["big"][t]
            step.append(g.astype(np.float32))
        grads.append(step)
    hessian = None
    if s["optimizer"] == "sophiah":
        period = s["hparams"].get("update_period", REGISTRY["sophiah"]["update_period"])
        hmean, hstd = s.get("hess") or (300.0, 300.0)
        if not isinstance(period, int) or period < 1:
            period = 1
        hessian = []
        for t in range(s["steps"]):
            if t % period == 0:
                hessian.append([(hmean + hstd * rng.standard_normal(int(np.prod(shape)))).astype(np.float32)
                                for _, shape in s["shapes"]])
            else:
                hessian.append(None)
    if s["optimizer"] in CAT_D_HESSIAN:
        hessian = cat_d_hessian(s, rng)
    if s["optimizer"] == "sophiag":
        # Gauss-Newton-Bartlett estimates g_hat^2 >= 0 at steps first, first + every, ...
        first, every, hscale = s.get("hess") or (1, 3, 1.0)
        hessian = []
        for t in range(1, s["steps"] + 1):
            if t >= first and (t - first) % every == 0:
                hessian.append([((hscale * rng.standard_normal(int(np.prod(shape)))) ** 2).astype(np.float32)
                                for _, shape in s["shapes"]])
            else:
                hessian.append(None)
    return seed, params, grads, hessian


def describe(s, grads=None):
    parts = [s["desc"]]
    for t in sorted(s.get("zero", ())):
        parts.append(f"step {t} has a zero gradient")
    for t, f in sorted(s.get("big", {}).items()):
        parts.append(f"step {t} gradient is {f:.0e} times larger".replace("e+0", "e"))
    if s.get("clip") and grads is not None:
        m = s["clip"]["max_norm"]
        norms = [math.sqrt(sum(float(np.sum(np.asarray(g, dtype=np.float64) ** 2)) for g in step)) for step in grads]
        clipped = [t + 1 for t, n in enumerate(norms) if m / (n + 1e-6) < 1]
        if len(clipped) == len(norms):
            which = "every step is clipped"
        elif not clipped:
            which = "no step is clipped"
        else:
            which = "clips step" + ("s " if len(clipped) > 1 else " ") + ", ".join(map(str, clipped)) + \
                f" of {len(norms)}"
        parts.append(f"grad_clip max_norm={m}: {which}")
    if s.get("sched"):
        sc = s["sched"]
        past = s["steps"] - sc["total_steps"]
        text = (f"warmup_cosine warmup {sc['warmup_steps']}, total {sc['total_steps']}, min_lr {sc['min_lr']}")
        if past > 0:
            text += f" (the last {past} steps run past total_steps at min_lr)"
        parts.append(text)
    return "; ".join(parts)


def reference_info(s, notes):
    name = s["optimizer"]
    lib, cls, _ = REFERENCES[reference_key(name, s["hparams"])]
    ref = {"library": lib, "version": library_version(lib), "class": cls}
    if name in WRAPPERS:
        inner = wrapped_name(s)
        ilib, icls, _ = REFERENCES[inner]
        ref["inner"] = {"library": ilib, "version": library_version(ilib), "class": icls}
    ref["notes"] = notes
    return ref


def wrapped_name(s):
    """The optimizer a wrapper case wraps (magma's default is AdamW)."""
    inner = s["hparams"].get("inner") or {"optimizer": "adamw"}
    return inner["optimizer"]


def tolerance_for(s):
    name = s["optimizer"]
    if name in WRAPPERS:
        name = wrapped_name(s)
    return dict(MUON_TOL if name in MATRIX_ONLY or name in CAT_D_NS else DEFAULT_TOL)


def base_notes(s):
    name = s["optimizer"]
    inner = wrapped_name(s) if name in WRAPPERS else name
    notes = []
    if name == "adamomentum":
        notes.append("no reference library implements AdaMomentum; " + ADAMOMENTUM_FORMULA +
                     "; checked against a separate float64 numpy implementation of the same formula")
    elif reference_key(name, s["hparams"]) in TRANSCRIPTION_NOTES:
        notes.append(TRANSCRIPTION_NOTES[reference_key(name, s["hparams"])])
    elif inner in ("muon",):
        notes.append("Newton-Schulz run in float32 instead of the library's bfloat16 cast "
                     "(torch.optim._muon._zeropower_via_newtonschulz re-defined without the cast)")
    elif inner in CAT_D_NS:
        notes.append(("all parameters in one group with use_muon=True; " if inner == "normuon" else "") +
                     "Newton-Schulz run in float32 instead of the library's bfloat16 default "
                     "(zero_power_via_newton_schulz_5 called with dtype=float32)")
    elif inner in ("adamuon",):
        notes.append("all parameters in one group with use_muon=True; Newton-Schulz run in float32 instead of the "
                     "library's bfloat16 cast (zero_power_via_newton_schulz_5 called with dtype=float32)")
    elif PRIMARY_FOREACH_FALSE:
        notes.append("run with foreach=False")
    else:
        notes.append("default foreach setting")
    if name == "lookahead":
        notes.append("pullback_momentum='none'")
    if name == "magma":
        notes.append("mask_prob 0 or 1, so torch.bernoulli draws no random masks; per-parameter path "
                     "(the default for CPU tensors)")
    if s.get("clip"):
        notes.append("torch.nn.utils.clip_grad_norm_ on all gradients before each step")
    if s.get("sched"):
        notes.append("torch.optim.lr_scheduler.LambdaLR, scheduler.step() after each optimizer.step()")
    if name in ("sophiah",) or name in CAT_D_HESSIAN:
        notes.append("step(hessian=[...]) at the steps with a non-null 'hessian' entry, step() otherwise")
    if name == "kron":
        notes.append("probes and balancing draws from optimist's seeded SplitMix64 streams (torch.randn_like and "
                     "np.random.random re-bound in pytorch_optimizer.optimizer.psgd); precondition_dtype float32")
    if name == "apollo" and apollo_projects(s):
        notes.append("random projections from optimist's seeded SplitMix64 streams (torch.randn re-bound in "
                     "pytorch_optimizer.optimizer.utils.galore)")
    if name in ("soap", "shampoo", "galore"):
        notes.append("the reference's eigh/qr/svd run in float32 (LAPACK); the update does not depend on the "
                     "signs of the eigen/singular vectors")
    return notes


def make_numeric(s, log):
    tol = tolerance_for(s)
    last_err = None
    for attempt in range(MAX_ATTEMPTS):
        seed, params, grads, hessian = draw_case(s, attempt)
        case = {
            "version": 1, "id": s["id"], "description": describe(s, grads), "optimizer": s["optimizer"],
            "hparams": copy.deepcopy(s["hparams"]), "lr_schedule": s.get("sched"), "grad_clip": s.get("clip"),
            "params": params, "grads": grads,
        }
        if hessian is not None:
            case["hessian"] = hessian
        contract_check(case, ext=s["ext"])
        before = dict(NS_CALLS)
        r32 = reference_replay(case, torch.float32, foreach_false=PRIMARY_FOREACH_FALSE)
        ns_used = {k: NS_CALLS[k] - before[k] for k in NS_CALLS}
        inner = wrapped_name(s) if s["optimizer"] in WRAPPERS else s["optimizer"]
        if inner == "muon" and ns_used["torch_muon"] == 0:
            raise RuntimeError("patched torch Muon Newton-Schulz was not called")
        if inner == "adamuon" and ns_used["adamuon"] == 0 and reference_key(inner, s["hparams"]) == "adamuon":
            raise RuntimeError("patched AdaMuon Newton-Schulz was not called")
        if inner == "kron" and KRON_CTX["draws"] == 0:
            raise RuntimeError("the re-bound Kron probe generator was not called")
        if inner == "apollo" and apollo_projects(s) and APOLLO_CTX["draws"] == 0:
            raise RuntimeError("the re-bound APOLLO projection generator was not called")
        if inner in CAT_D_NS and sum(ns_used.values()) == 0 and _cat_d_uses_ns(s):
            raise RuntimeError(f"patched {inner} Newton-Schulz was not called")
        r64 = reference_replay(case, torch.float64, foreach_false=PRIMARY_FOREACH_FALSE)
        robust = tol_ratio(r64, r32, tol)
        rfe = reference_replay(case, torch.float32, foreach_false=not PRIMARY_FOREACH_FALSE)
        fe_ratio = tol_ratio(rfe, r32, tol)
        extra = None
        if s["optimizer"] == "adamomentum":
            extra = tol_ratio(adamomentum_numpy(case), r32, tol)
        moved = any(np.any(r32[-1][i] != params[i]["data"]) for i in range(len(params)))
        finite = all(np.all(np.isfinite(x)) for step in r32 for x in step)
        ok = finite and moved and robust <= ROBUST_FRACTION and fe_ratio <= ROBUST_FRACTION and \
            (extra is None or extra <= ROBUST_FRACTION)
        if not ok:
            last_err = (f"attempt {attempt}: finite={finite} moved={moved} f64={robust:.3g} "
                        f"foreach_false={fe_ratio:.3g}" + (f" numpy={extra:.3g}" if extra is not None else ""))
            log(f"  retry {s['id']}: {last_err}")
            continue
        notes = base_notes(s)
        notes.append(f"float64 rerun within {robust:.2g} of the tolerance")
        if REFERENCES[reference_key(s["optimizer"], s["hparams"])][0] != "optimist-gen":
            other = "default foreach" if PRIMARY_FOREACH_FALSE else "foreach=False"
            notes.append(f"{other} rerun within {fe_ratio:.2g} of the tolerance")
        if extra is not None:
            notes.append(f"numpy float64 implementation within {extra:.2g} of the tolerance")
        notes.append(f"generated by tools/gen_cases.py, seed {seed}")
        case["expected"] = [[x.astype(np.float32) for x in step] for step in r32]
        case["tolerance"] = tol
        case["reference"] = reference_info(s, "; ".join(notes))
        return case, dict(attempt=attempt, robust=robust, foreach=fe_ratio, extra=extra)
    return None, dict(error=last_err)


def make_error(es, log):
    s = dict(es)
    s.setdefault("zero", ())
    s.setdefault("big", {})
    seed, params, grads, hessian = draw_case(s, 0)
    case = {
        "version": 1, "id": s["id"], "description": s["desc"], "optimizer": s["optimizer"],
        "hparams": copy.deepcopy(s["hparams"]), "lr_schedule": None, "grad_clip": None,
        "params": params, "grads": grads,
    }
    if hessian is not None:
        case["hessian"] = hessian
    if s.get("mutate"):
        s["mutate"](case)
    contract_msg = None
    try:
        contract_check(case, ext=s.get("ext", False))
    except ContractError as exc:
        contract_msg = str(exc)
    ref_msg = harness_msg = None
    try:
        reference_replay(case, torch.float32)
    except HarnessError as exc:  # cannot even be given to the reference
        harness_msg = str(exc)
    except Exception as exc:  # the reference rejects the case
        ref_msg = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
    if contract_msg is None and ref_msg is None:
        log(f"  DROP {s['id']}: neither the contract nor the reference rejects it")
        return None, dict(error="accepted")
    notes = ["error case: exit non-zero, nothing on stdout"]
    if contract_msg:
        notes.append(f"contract: {contract_msg}")
    if ref_msg:
        notes.append(f"the reference raises {ref_msg}")
    elif harness_msg:
        notes.append(f"a contract-format error: the input cannot be given to the reference ({harness_msg})")
    else:
        notes.append("the reference itself accepts this; it is an error by the contract (README)")
    case["expect_error"] = True
    case["expected"] = None
    case["tolerance"] = dict(DEFAULT_TOL)
    case["reference"] = {"library": "n/a", "version": "", "class": "", "notes": "; ".join(notes)}
    return case, dict(contract=contract_msg, reference=ref_msg or harness_msg)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------

def f32_str(x):
    """Shortest decimal that reads back as the same f32 (numpy's float32 repr)."""
    v = np.float32(x)
    if not np.isfinite(v):
        raise ValueError(f"non-finite value {v}")
    s = str(v)
    if np.float32(float(s)).tobytes() != v.tobytes():
        raise AssertionError(f"{s} does not round-trip to f32 {v!r}")
    return s


def arr_str(a):
    if isinstance(a, np.ndarray) and a.dtype != np.float32 and a.dtype != np.float64:
        a = a.astype(np.float64)
    return "[" + ",".join(f32_str(x) for x in a) + "]"


def step_str(step):
    return "[" + ",".join(arr_str(a) for a in step) + "]"


def case_json(case):
    d = json.dumps
    lines = ["{"]
    for key in ("version", "id", "description", "optimizer", "hparams", "lr_schedule", "grad_clip"):
        lines.append(f"  {d(key)}: {d(case[key])},")
    lines.append('  "params": [')
    ps = [f'    {{"name": {d(p["name"])}, "shape": {d(p["shape"])}, "data": {arr_str(p["data"])}}}'
          for p in case["params"]]
    lines.append(",\n".join(ps))
    lines.append("  ],")
    lines.append('  "grads": [')
    lines.append(",\n".join("    " + step_str(s) for s in case["grads"]))
    lines.append("  ],")
    if "hessian" in case:
        lines.append('  "hessian": [')
        lines.append(",\n".join("    " + ("null" if h is None else step_str(h)) for h in case["hessian"]))
        lines.append("  ],")
    if case.get("expect_error"):
        lines.append('  "expect_error": true,')
        lines.append('  "expected": null,')
    else:
        lines.append('  "expected": [')
        lines.append(",\n".join("    " + step_str(s) for s in case["expected"]))
        lines.append("  ],")
    lines.append(f'  "tolerance": {d(case["tolerance"])},')
    lines.append(f'  "reference": {d(case["reference"])}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_case(case, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, case["id"] + ".json")
    text = case_json(case)
    json.loads(text)  # must be valid JSON
    with open(path, "w") as f:
        f.write(text)
    return path


# --------------------------------------------------------------------------------------
# Cross-check against existing cases (e.g. the owners' public ones)
# --------------------------------------------------------------------------------------

def check_public(directory):
    files = sorted(glob.glob(os.path.join(directory, "*.json")))
    if not files:
        print(f"no cases in {directory}")
        return 2
    bad = 0
    for path in files:
        with open(path) as f:
            case = json.load(f)
        name = os.path.basename(path)
        if case.get("expect_error"):
            contract_msg = ref_msg = None
            try:
                contract_check(case)
            except ContractError as exc:
                contract_msg = str(exc)
            try:
                reference_replay(case)
            except Exception as exc:
                ref_msg = f"{type(exc).__name__}: {exc}"
            rejected = contract_msg is not None or ref_msg is not None
            bad += not rejected
            print(f"{'PASS' if rejected else 'FAIL'}  {name:34s} error case: contract={contract_msg!r} "
                  f"reference={ref_msg!r}")
            continue
        tol = case.get("tolerance") or DEFAULT_TOL
        expected = [[np.asarray(x, dtype=np.float32) for x in step] for step in case["expected"]]
        r_default = reference_replay(case)
        r_nofe = reference_replay(case, foreach_false=True)
        r64 = reference_replay(case, torch.float64)
        w_default = tol_ratio(r_default, expected, tol)
        w_nofe = tol_ratio(r_nofe, expected, tol)
        w64 = tol_ratio(r64, expected, tol)
        ok = w_default <= 1.0 and w_nofe <= 1.0
        bad += not ok
        exact = all(np.array_equal(a, b) for sa, sb in zip(r_nofe, expected) for a, b in zip(sa, sb))
        print(f"{'PASS' if ok else 'FAIL'}  {name:34s} default={w_default:.3g}x tol  foreach=False={w_nofe:.3g}x tol"
              f"{' (bit-identical)' if exact else ''}  f64={w64:.3g}x tol")
    print(f"{len(files) - bad} passed, {bad} failed")
    return 0 if bad == 0 else 1


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------

def _check_versions():
    msgs = []
    for lib, want in EXPECTED_VERSIONS.items():
        have = library_version(lib)
        if have != want:
            msgs.append(f"warning: {lib} {have} installed, the cases are meant for {want}")
    return msgs


def _check_registry():
    for cand in (os.path.join(REPO_ROOT, "shared", "conformance", "registry.json"),
                 os.path.join(os.path.dirname(REPO_ROOT), "shared", "conformance", "registry.json")):
        if os.path.isfile(cand):
            with open(cand) as f:
                reg = json.load(f)["optimizers"]
            for name, entry in reg.items():
                if name not in REGISTRY or entry["hparams"] != REGISTRY[name]:
                    raise RuntimeError(f"embedded registry differs from {cand} for {name!r}")
            if set(reg) != CONTRACT_V1_NAMES:
                raise RuntimeError(f"embedded registry names differ from {cand}")
            return cand
    return None


def matches(patterns, s):
    if not patterns:
        return True
    return any(fnmatch.fnmatchcase(s["id"], p) or fnmatch.fnmatchcase(s["optimizer"], p) for p in patterns)


def replay_main(path):
    """`gen_cases.py replay CASE.json`: behave like the project's binary, using the reference.

    Lets the owners' checker run the references themselves:
        python3 shared/conformance/check.py ".venv-ref/bin/python tools/gen_cases.py" tests/golden/cases
    Extensions (maximize, adamomentum) are accepted here.
    """
    _patch_torch_muon()
    _patch_adamuon()
    try:
        with open(path) as f:
            case = json.load(f)
        contract_check(case, ext=True)
        result = reference_replay(case, torch.float32, foreach_false=PRIMARY_FOREACH_FALSE)
        text = '{"params": [' + ",".join(step_str(step) for step in result) + "]}"
    except Exception as exc:
        print(f"error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", file=sys.stderr)
        return 1
    print(text)
    return 0


# --------------------------------------------------------------------------------------
# Catalogue D: preconditioned, second-order, matrix and low-rank (pytorch-optimizer 4.1.0)
# --------------------------------------------------------------------------------------
#
# All cases are extensions (tests/golden/extensions): none of these optimizers is in contract v1.
#   * soap, shampoo, galore: the references run eigh / qr / svd in float32 (LAPACK); optimist runs them in
#     float64 and rounds.  The updates are invariant to the sign of each eigen/singular vector (every vector
#     enters twice: projection and back-projection, and the second moments are squares), so sign conventions
#     do not matter.  Cases use square matrices for SOAP (the init eigh of G G^T is then non-degenerate),
#     and GaLore cases refresh the projection once (update_proj_gap > steps) or at steps where the low-rank
#     moments are still consistent with it (see the descriptions).
#   * scion, normuon: Newton-Schulz in float32 instead of the library's bfloat16 default (the functions
#     `zero_power_via_newton_schulz_5` bound in pytorch_optimizer.optimizer.scion / .muon.normuon / .muon.base
#     are called with dtype=float32), as for muon/adamuon; tolerance 1e-4 as for the Muon family.
#   * adahessian: Hessian-diagonal estimates given through step(hessian=[...]) at steps 1, 1+update_period,
#     ..., exactly when the library would otherwise compute its own Hutchinson estimate.

from pytorch_optimizer.optimizer import scion as _po_scion_mod  # noqa: E402
from pytorch_optimizer.optimizer.muon import normuon as _po_normuon_mod  # noqa: E402

CAT_D_REGISTRY = {
    "soap": {"lr": 0.003, "betas": [0.95, 0.95], "shampoo_beta": None, "weight_decay": 0.01,
             "precondition_frequency": 10, "max_precondition_dim": 10000, "merge_dims": False,
             "precondition_1d": False, "correct_bias": True, "normalize_gradient": False,
             "data_format": "channels_first", "eps": 1e-08, "maximize": False},
    "shampoo": {"lr": 0.001, "momentum": 0.0, "weight_decay": 0.0, "weight_decouple": False, "fixed_decay": False,
                "preconditioning_compute_steps": 1, "matrix_eps": 1e-06, "maximize": False},
    "adahessian": {"lr": 0.1, "betas": [0.9, 0.999], "weight_decay": 0.0, "weight_decouple": True,
                   "fixed_decay": False, "hessian_power": 1.0, "update_period": 1, "eps": 1e-16,
                   "adam_debias": False, "maximize": False},
    "sm3": {"lr": 0.1, "momentum": 0.0, "beta": 0.0, "eps": 1e-30, "maximize": False},
    "normuon": {"lr": 0.02, "momentum": 0.95, "beta2": 0.95, "weight_decay": 0.0, "weight_decouple": True,
                "nesterov": True, "ns_steps": 5, "ns_coeffs": "original", "update_scale": "preserve_norm",
                "use_adjusted_lr": False, "eps": 1e-10, "maximize": False},
    "scion": {"lr": 0.001, "momentum": 0.1, "constraint": False, "norm_type": 1, "norm_kwargs": None,
              "scale": 1.0, "weight_decay": 0.0, "weight_decouple": True, "maximize": False},
    "kron": {"lr": 0.001, "momentum": 0.9, "weight_decay": 0.0, "weight_decouple": True,
             "pre_conditioner_update_probability": None, "max_size_triangular": 8192, "min_ndim_triangular": 2,
             "memory_save_mode": None, "momentum_into_precondition_update": True, "balance_prob": 0.01,
             "maximize": False, "seed": 0},
    "galore": {"lr": 0.001, "betas": [0.9, 0.999], "weight_decay": 0.0, "eps": 1e-06, "rank": None,
               "update_proj_gap": None, "scale": None, "projection_type": None, "maximize": False},
    "apollo": {"lr": 0.01, "betas": [0.9, 0.999], "scale_type": "tensor", "weight_decay": 0.0,
               "weight_decouple": True, "fixed_decay": False, "correct_bias": True, "eps": 1e-06, "rank": None,
               "update_proj_gap": None, "scale": None, "projection_type": None, "maximize": False, "seed": 0},
}
EXT_REGISTRY.update(CAT_D_REGISTRY)
for _name in CAT_D_REGISTRY:
    _cls = {"soap": "SOAP", "shampoo": "Shampoo", "adahessian": "AdaHessian", "sm3": "SM3", "normuon": "NorMuon",
            "scion": "SCION", "galore": "GaLore", "kron": "Kron", "apollo": "APOLLO"}[_name]
    REFERENCES[_name] = ("pytorch-optimizer", f"pytorch_optimizer.{_cls}",
                         (lambda c: (lambda: getattr(pytorch_optimizer, c)))(_cls))
CAT_D_NS = {"scion", "normuon"}      # Newton-Schulz patched to float32; Muon-family tolerance
CAT_D_HESSIAN = {"adahessian"}
NS_CALLS.update({"scion": 0, "normuon": 0})


def _patch_cat_d_ns():
    for key, mod in (("scion", _po_scion_mod), ("normuon", _po_normuon_mod)):
        original = mod.zero_power_via_newton_schulz_5
        if "dtype" not in inspect.signature(original).parameters:
            raise RuntimeError("pytorch_optimizer zero_power_via_newton_schulz_5 has no dtype argument any more")

        def ns_in_input_dtype(g, *args, _orig=original, _key=key, **kwargs):
            NS_CALLS[_key] += 1
            kwargs["dtype"] = g.dtype
            return _orig(g, *args, **kwargs)

        mod.zero_power_via_newton_schulz_5 = ns_in_input_dtype


# Kron (PSGD): the reference draws its probes with torch.randn_like and the balancing decision with
# np.random.random() inside pytorch_optimizer.optimizer.psgd.  For the golden cases both names are re-bound
# there to draws from the streams optimist uses (SplitMix64 keyed by seed, step and parameter name; see
# optim/kron.rs), so that the reference and optimist see the same random numbers.
from pytorch_optimizer.optimizer import psgd as _po_psgd_mod  # noqa: E402

M64 = (1 << 64) - 1
KRON_CTX = {"seed": 0, "names": [], "step": 0, "calls": 0, "draws": 0}


def _fnv1a64(text):
    h = 0xcbf29ce484222325
    for b in text.encode():
        h ^= b
        h = (h * 0x100000001b3) & M64
    return h


def kron_stream_key(seed, step, text):
    return (seed ^ ((step * 0xD1B54A32D192ED03) & M64) ^ _fnv1a64(text)) & M64


class _SplitMix64:
    def __init__(self, state):
        self.state = state & M64

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def normal(self):
        u1 = 1.0 - self.uniform()
        u2 = self.uniform()
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


class _KronRandom:
    def random(self):
        KRON_CTX["step"] += 1
        KRON_CTX["calls"] = 0
        return _SplitMix64(kron_stream_key(KRON_CTX["seed"], KRON_CTX["step"], "#balance")).uniform()


class _KronNumpy:
    random = _KronRandom()

    def __getattr__(self, name):
        return getattr(np, name)


class _KronTorch:
    @staticmethod
    def randn_like(t, dtype=None, **kwargs):
        name = KRON_CTX["names"][KRON_CTX["calls"]]
        KRON_CTX["calls"] += 1
        KRON_CTX["draws"] += 1
        rng = _SplitMix64(kron_stream_key(KRON_CTX["seed"], KRON_CTX["step"], name))
        vals = np.array([rng.normal() for _ in range(t.numel())], dtype=np.float32).reshape(tuple(t.shape))
        return torch.from_numpy(vals).to(dtype=dtype or t.dtype)

    def __getattr__(self, name):
        return getattr(torch, name)


_po_psgd_mod.np = _KronNumpy()
_po_psgd_mod.torch = _KronTorch()


def kron_begin(case, dtype):
    hp = case.get("hparams") or {}
    KRON_CTX.update(seed=int(hp.get("seed", 0)) if isinstance(hp, dict) else 0,
                    names=[p["name"] for p in case["params"]], step=0, calls=0, draws=0)


def cat_d_kwargs(name, kw):
    """Constructor keyword arguments of a catalogue-D case (None means the reference default: left out)."""
    if name == "galore":
        return {k: v for k, v in kw.items() if v is not None}
    if name == "apollo":
        # rank, update_proj_gap, scale and projection_type go to the group through **kwargs
        return {k: v for k, v in kw.items() if v is not None and k != "seed"}
    if name == "scion" and kw.get("norm_kwargs") is None:
        kw.pop("norm_kwargs", None)
    if name == "kron":
        kw.pop("seed", None)
        kw.pop("foreach", None)
    return kw


# APOLLO: the reference draws its random projections with torch.randn inside
# pytorch_optimizer.optimizer.utils.galore (GaLoreProjector.get_orthogonal_matrix with from_random_matrix=True:
# first P of rows x rank, then Q of rank x cols, both divided by sqrt(rank)).  For the golden cases torch is
# re-bound there to a wrapper whose randn returns optimist's draws (see optim/apollo.rs): P from the stream
# key(seed, step, name + "#left"), Q from key(seed, step, name + "#right"), Box-Muller normals rounded to f32,
# row-major.  GaLoreProjector.project is wrapped to know the step and the parameter (projectors are created in
# parameter order at the first step, one per 2-D parameter).
from pytorch_optimizer.optimizer.utils import galore as _po_galore_utils  # noqa: E402

APOLLO_CTX = {"active": False, "seed": 0, "names": [], "projectors": {}, "current": None, "calls": 0, "draws": 0}
_po_galore_project = _po_galore_utils.GaLoreProjector.project


def _apollo_project(self, grad, num_steps, svd_basis_matrix=None, from_random_matrix=False):
    if APOLLO_CTX["active"] and from_random_matrix:
        known = APOLLO_CTX["projectors"]
        if id(self) not in known:
            known[id(self)] = APOLLO_CTX["names"][len(known)]
        APOLLO_CTX["current"] = (known[id(self)], num_steps)
        APOLLO_CTX["calls"] = 0
    return _po_galore_project(self, grad, num_steps, svd_basis_matrix=svd_basis_matrix,
                              from_random_matrix=from_random_matrix)


class _ApolloTorch:
    @staticmethod
    def randn(size, *args, device=None, dtype=None, **kwargs):
        if not APOLLO_CTX["active"]:
            return torch.randn(size, *args, device=device, dtype=dtype, **kwargs)
        name, step = APOLLO_CTX["current"]
        suffix = ("#left", "#right")[APOLLO_CTX["calls"]]
        APOLLO_CTX["calls"] += 1
        APOLLO_CTX["draws"] += 1
        n = int(np.prod(size))
        rng = _SplitMix64(kron_stream_key(APOLLO_CTX["seed"], step, name + suffix))
        vals = np.array([rng.normal() for _ in range(n)], dtype=np.float32).reshape(tuple(size))
        return torch.from_numpy(vals).to(dtype=dtype or torch.float32)

    def __getattr__(self, name):
        return getattr(torch, name)


_po_galore_utils.GaLoreProjector.project = _apollo_project
_po_galore_utils.torch = _ApolloTorch()


def apollo_begin(case):
    hp = case.get("hparams") or {}
    hp = hp if isinstance(hp, dict) else {}
    APOLLO_CTX.update(active=True, seed=int(hp.get("seed", 0) or 0),
                      names=[p["name"] for p in case["params"] if len(p["shape"]) == 2],
                      projectors={}, current=None, calls=0, draws=0)


def apollo_projects(s):
    """Whether an apollo case projects anything (rank set and a 2-D parameter)."""
    return s["hparams"].get("rank") is not None and any(len(shape) == 2 for _, shape in s["shapes"])


def cat_d_hessian(s, rng):
    """AdaHessian estimates at steps 1, 1 + update_period, ... (any sign: they are squared)."""
    period = s["hparams"].get("update_period", CAT_D_REGISTRY["adahessian"]["update_period"])
    if not isinstance(period, int) or period < 1:
        period = 1
    hmean, hstd = s.get("hess") or (0.0, 2.0)
    out = []
    for t in range(s["steps"]):
        if t % period == 0:
            out.append([(hmean + hstd * rng.standard_normal(int(np.prod(shape)))).astype(np.float32)
                        for _, shape in s["shapes"]])
        else:
            out.append(None)
    return out


def _cat_d_uses_ns(s):
    """Whether a scion/normuon case runs Newton-Schulz at all (SCION's sign/bias/col/row/none oracles do not)."""
    if s["optimizer"] == "normuon":
        return True
    nt = s["hparams"].get("norm_type", 1)
    return nt in (2, 3) or (nt == 1 and any(len(shape) >= 2 for _, shape in s["shapes"]))


def cat_d_specs():
    S = []
    a = S.append
    sq = [("w", [6, 6]), ("v", [5, 5])]
    # ---------------------------------------------------------------- sm3
    a(spec("sm3-defaults", "sm3", {}, [("w", [5, 4]), ("b", [4])], 8,
           "SM3 defaults (lr 0.1, no momentum, beta 0): per-row and per-column max accumulators", ext=True))
    a(spec("sm3-momentum-beta", "sm3", {"lr": 0.05, "momentum": 0.9, "beta": 0.5},
           [("k", [2, 3, 4]), ("s", [1])], 10, "SM3 with momentum and an EMA of the squared gradient (beta > 0: "
           "accumulators keep their running max)", ext=True, big={5: 100.0}))
    a(spec("sm3-eps-maximize", "sm3", {"lr": 0.02, "eps": 0.01, "maximize": True, "beta": 0.9},
           [("w", [4, 7]), ("v", [9])], 8, "SM3 maximizing with a large eps", ext=True, zero=[3]))
    a(spec("sm3-clip-warmup-cosine", "sm3", {"lr": 0.1, "momentum": 0.5}, [("conv", [3, 2, 2, 2]), ("b", [3])],
           10, "SM3 on a 4-D tensor after clip_grad_norm_ under warmup_cosine", ext=True, clip=clip_norm(4.0),
           sched=warmup_cosine(2, 7)))
    # ---------------------------------------------------------------- adahessian
    a(spec("adahessian-defaults", "adahessian", {}, WB, 8,
           "AdaHessian defaults (update_period 1: an estimate every step)", ext=True))
    a(spec("adahessian-period-3-power", "adahessian", {"lr": 0.05, "update_period": 3, "hessian_power": 0.5},
           [("k", [2, 3, 4]), ("s", [1])], 10, "AdaHessian, update_period 3 (estimates at 1, 4, 7, 10), "
           "hessian_power 0.5", ext=True, hess=(1.0, 3.0)))
    a(spec("adahessian-wd-decoupled-debias", "adahessian",
           {"lr": 0.02, "weight_decay": 0.1, "adam_debias": True, "betas": [0.8, 0.99], "eps": 1e-4}, WB, 8,
           "AdaHessian with decoupled decay, adam_debias (step size lr, no 1/(1-beta1^t)) and a larger eps",
           ext=True, zero=[3]))
    a(spec("adahessian-wd-l2-fixed-maximize", "adahessian",
           {"lr": 0.03, "weight_decay": 0.05, "weight_decouple": False, "maximize": True, "update_period": 2},
           [("w", [5, 3]), ("b", [3])], 8, "AdaHessian with L2 decay, maximizing, update_period 2", ext=True))
    a(spec("adahessian-fixed-decay", "adahessian",
           {"lr": 0.03, "weight_decay": 0.05, "fixed_decay": True, "update_period": 2},
           [("w", [4, 4])], 8, "AdaHessian with fixed (lr-independent) decoupled decay", ext=True))
    a(spec("adahessian-clip-warmup-cosine", "adahessian", {"lr": 0.05}, WB, 10,
           "AdaHessian after clip_grad_norm_ under warmup_cosine", ext=True, clip=clip_norm(4.0),
           sched=warmup_cosine(2, 7)))
    # ---------------------------------------------------------------- scion
    mixed = [("w", [6, 4]), ("b", [4])]
    a(spec("scion-defaults", "scion", {}, mixed, 8, "SCION defaults: norm_type AUTO (spectral for the matrix, "
           "bias RMS for the vector), momentum 0.1", ext=True))
    a(spec("scion-constraint-scale", "scion", {"lr": 0.05, "constraint": True, "scale": 3.0, "momentum": 0.5},
           [("w", [4, 7]), ("t", [7, 3])], 8, "SCION with constraint (p *= 1 - lr) and scale 3", ext=True))
    a(spec("scion-wd-decoupled", "scion", {"lr": 0.02, "weight_decay": 0.1}, mixed, 8,
           "SCION with decoupled weight decay", ext=True))
    a(spec("scion-wd-l2-maximize", "scion", {"lr": 0.02, "weight_decay": 0.1, "weight_decouple": False,
                                             "maximize": True}, mixed, 8, "SCION with L2 decay, maximizing",
           ext=True))
    a(spec("scion-spectral-options", "scion",
           {"lr": 0.01, "norm_type": 2, "norm_kwargs": {"max_scale": True, "normalize": False, "num_steps": 3}},
           [("w", [5, 8]), ("t", [8, 3])], 8, "SCION, norm_type SPECTRAL with max_scale, normalize false, "
           "3 Newton-Schulz steps", ext=True))
    a(spec("scion-spectral-conv", "scion", {"lr": 0.01}, [("conv", [4, 3, 2, 2]), ("k", [3, 2, 3])], 8,
           "SCION AUTO on 4-D and 3-D tensors (spectral conv: flattened, scaled by sqrt(d_out/d_in)/kernel size)",
           ext=True))
    a(spec("scion-sign", "scion", {"lr": 0.01, "norm_type": 4}, [("w", [4, 6])], 8,
           "SCION, norm_type SIGN (sign / d_in)", ext=True))
    a(spec("scion-sign-unnormalized", "scion", {"lr": 0.01, "norm_type": 4, "norm_kwargs": {"normalize": False}},
           [("w", [4, 6])], 8, "SCION, norm_type SIGN without normalization", ext=True))
    a(spec("scion-bias", "scion", {"lr": 0.01, "norm_type": 5}, [("w", [5, 3]), ("b", [7])], 8,
           "SCION, norm_type BIAS (RMS over dim 0)", ext=True))
    a(spec("scion-col", "scion", {"lr": 0.01, "norm_type": 6, "norm_kwargs": {"normalized": True}},
           [("w", [5, 3])], 8, "SCION, norm_type COL, normalized", ext=True))
    a(spec("scion-col-transpose", "scion", {"lr": 0.01, "norm_type": 6, "norm_kwargs": {"transpose": True}},
           [("w", [5, 3])], 8, "SCION, norm_type COL, transposed", ext=True))
    a(spec("scion-row", "scion", {"lr": 0.01, "norm_type": 7}, [("w", [5, 3])], 8,
           "SCION, norm_type ROW (normalized by default)", ext=True))
    a(spec("scion-row-transpose", "scion",
           {"lr": 0.01, "norm_type": 7, "norm_kwargs": {"transpose": True, "normalized": False}},
           [("w", [5, 3])], 8, "SCION, norm_type ROW, transposed, not normalized", ext=True))
    a(spec("scion-none", "scion", {"lr": 0.01, "norm_type": 0, "momentum": 1.0}, mixed, 6,
           "SCION, norm_type NONE (identity oracle), momentum 1 (no averaging)", ext=True))
    a(spec("scion-clip-warmup-cosine", "scion", {"lr": 0.02}, mixed, 10,
           "SCION after clip_grad_norm_ under warmup_cosine", ext=True, clip=clip_norm(4.0),
           sched=warmup_cosine(2, 7)))
    # ---------------------------------------------------------------- normuon
    mats = [("w", [8, 6]), ("v", [4, 10])]
    a(spec("normuon-defaults", "normuon", {}, mats, 8, "NorMuon defaults (preserve_norm), a tall and a wide "
           "matrix", ext=True))
    a(spec("normuon-match-rms", "normuon", {"update_scale": "match_rms", "lr": 0.01}, mats, 8,
           "NorMuon with update_scale match_rms (Frobenius norm 0.2 sqrt(m n))", ext=True))
    a(spec("normuon-adjusted-lr-wd", "normuon", {"use_adjusted_lr": True, "weight_decay": 0.1, "beta2": 0.9},
           mats, 8, "NorMuon with the Moonlight lr adjustment and decoupled decay", ext=True))
    a(spec("normuon-l2-heavy-ball-maximize", "normuon",
           {"weight_decay": 0.05, "weight_decouple": False, "nesterov": False, "maximize": True, "momentum": 0.9},
           mats, 8, "NorMuon with L2 decay, no Nesterov, maximizing", ext=True))
    a(spec("normuon-quintic-ns3", "normuon", {"ns_coeffs": "quintic", "ns_steps": 3, "eps": 1e-6},
           [("w", [5, 5])], 8, "NorMuon with the quintic coefficient schedule, 3 steps", ext=True))
    a(spec("normuon-flat", "normuon", {"lr": 0.01}, [("conv", [4, 2, 2, 2]), ("b", [5])], 8,
           "NorMuon on a 4-D tensor (as a 4 x 8 matrix) and a vector (as a 5 x 1 matrix), as the library does",
           ext=True))
    a(spec("normuon-clip-warmup-cosine", "normuon", {"lr": 0.02}, mats, 10,
           "NorMuon after clip_grad_norm_ under warmup_cosine", ext=True, clip=clip_norm(4.0),
           sched=warmup_cosine(2, 7)))
    # ---------------------------------------------------------------- shampoo
    a(spec("shampoo-defaults", "shampoo", {}, [("w", [4, 4]), ("b", [4])], 8,
           "Shampoo defaults: inverse 4th roots (2-D) and inverse square root (1-D) of the statistics every step",
           ext=True))
    a(spec("shampoo-momentum-l2", "shampoo", {"lr": 0.01, "momentum": 0.5, "weight_decay": 0.01},
           [("w", [5, 3])], 8, "Shampoo with momentum (mixed into the gradient, buffer = preconditioned "
           "gradient) and L2 decay", ext=True))
    a(spec("shampoo-decoupled-fixed", "shampoo", {"lr": 0.01, "weight_decay": 0.1, "weight_decouple": True,
                                                  "fixed_decay": True, "matrix_eps": 0.01},
           [("w", [3, 4])], 8, "Shampoo with fixed decoupled decay and a larger matrix_eps", ext=True))
    a(spec("shampoo-compute-steps-maximize", "shampoo",
           {"lr": 0.01, "preconditioning_compute_steps": 3, "maximize": True, "momentum": 0.3},
           [("w", [4, 5]), ("b", [3])], 9, "Shampoo recomputing the roots every 3rd step (zero before step 3), "
           "maximizing with momentum (the buffer starts as the raw gradient)", ext=True))
    a(spec("shampoo-3d", "shampoo", {"lr": 0.01, "matrix_eps": 0.1}, [("k", [2, 3, 2])], 8,
           "Shampoo on a 3-D tensor: inverse 6th roots along each mode", ext=True))
    # ---------------------------------------------------------------- soap
    a(spec("soap-defaults", "soap", {}, sq, 12,
           "SOAP defaults: step 1 only sets up the eigenbases; QR refresh at (internal) step 10", ext=True))
    a(spec("soap-frequency-3", "soap", {"lr": 0.01, "precondition_frequency": 3, "betas": [0.9, 0.95]},
           [("w", [5, 5])], 10, "SOAP with a QR refresh every 3 steps", ext=True))
    a(spec("soap-shampoo-beta-wd", "soap",
           {"lr": 0.005, "shampoo_beta": 0.8, "weight_decay": 0.1, "precondition_frequency": 4}, sq, 9,
           "SOAP with shampoo_beta 0.8 and weight decay", ext=True))
    a(spec("soap-no-bias-normalize", "soap",
           {"lr": 0.01, "correct_bias": False, "normalize_gradient": True, "eps": 1e-6}, sq, 8,
           "SOAP without bias correction, normalized update", ext=True))
    a(spec("soap-1d-maximize", "soap", {"lr": 0.01, "precondition_1d": True, "maximize": True,
                                        "precondition_frequency": 3}, [("w", [4, 4]), ("s", [1])], 8,
           "SOAP with precondition_1d, maximizing (the 1-element vector gets a 1 x 1 basis; a longer vector's "
           "first basis is the eigh of a rank-1 matrix, ill-defined)", ext=True))
    a(spec("soap-merge-dims-3d", "soap",
           {"lr": 0.01, "merge_dims": True, "max_precondition_dim": 6, "precondition_frequency": 3},
           [("k", [2, 3, 6]), ("h", [7, 2, 2]), ("b", [7])], 10,
           "SOAP with merge_dims, max_precondition_dim 6: (2, 3, 6) merges to (6, 6); (7, 2, 2) to (1, 7, 4) "
           "(a 1 x 1 basis, none for 7, a 4 x 4 one); the 7-vector is left as it is", ext=True))
    a(spec("soap-merge-dims-4d-1d", "soap",
           {"lr": 0.01, "merge_dims": True, "precondition_1d": True, "max_precondition_dim": 4,
            "precondition_frequency": 3, "weight_decay": 0.1},
           [("conv", [2, 2, 3, 3]), ("s", [1]), ("b", [5])], 10,
           "SOAP with merge_dims and precondition_1d, max_precondition_dim 4: (2, 2, 3, 3) merges to (4, 3, 3); "
           "the 1-element vector gets a 1 x 1 basis, the 5-vector (above 4) none", ext=True))
    a(spec("soap-merge-dims-channels-last", "soap",
           {"lr": 0.01, "merge_dims": True, "data_format": "channels_last", "max_precondition_dim": 4,
            "precondition_frequency": 3},
           [("conv", [2, 3, 3, 2])], 10,
           "SOAP with merge_dims on a channels_last (N, H, W, C) = (2, 3, 3, 2) tensor: merged as "
           "(N, C, H, W) = (2, 2, 3, 3) to (4, 3, 3)", ext=True))
    a(spec("soap-max-dim", "soap", {"lr": 0.01, "max_precondition_dim": 4, "precondition_frequency": 3},
           [("w", [4, 9]), ("b", [6])], 8, "SOAP with max_precondition_dim 4: only the 4-long dimension is "
           "rotated; vectors are not", ext=True))
    # ---------------------------------------------------------------- kron
    a(spec("kron-defaults", "kron", {}, [("w", [5, 4]), ("b", [4])], 8,
           "Kron defaults: triangular factors for the matrix, a diagonal one for the vector; a preconditioner "
           "update every step (the default schedule is 1 for 500 steps)", ext=True))
    a(spec("kron-seed-momentum-grad", "kron", {"lr": 0.01, "seed": 7, "momentum": 0.5,
                                               "momentum_into_precondition_update": False},
           [("w", [4, 6])], 8, "Kron fitting the preconditioner to the gradient, another seed and momentum",
           ext=True))
    a(spec("kron-balance-wd", "kron", {"lr": 0.01, "balance_prob": 1.0, "weight_decay": 0.1},
           [("w", [3, 5]), ("b", [5])], 8, "Kron balancing the factors at every step, decoupled weight decay "
           "(matrices only)", ext=True))
    a(spec("kron-l2-maximize-prob", "kron", {"lr": 0.01, "weight_decay": 0.1, "weight_decouple": False,
                                             "maximize": True, "pre_conditioner_update_probability": 0.5},
           [("w", [4, 4])], 9, "Kron with L2 decay, maximizing, preconditioner updated every second step",
           ext=True))
    a(spec("kron-one-diag", "kron", {"lr": 0.01, "memory_save_mode": "one_diag"}, [("w", [6, 3])], 8,
           "Kron with a diagonal factor for the largest dimension", ext=True))
    a(spec("kron-triangular-vector", "kron", {"lr": 0.01, "min_ndim_triangular": 1, "max_size_triangular": 5},
           [("v", [5]), ("w", [7, 3])], 8, "Kron with a triangular factor for a vector; dimensions above 5 "
           "diagonal", ext=True))
    # ---------------------------------------------------------------- galore
    g = {"rank": 2, "update_proj_gap": 50, "scale": 1.0, "projection_type": "std"}
    a(spec("galore-defaults", "galore", {}, WB, 8, "GaLore without a projection (no rank): AdamW-like with "
           "decoupled decay after the update", ext=True))
    a(spec("galore-std-tall-wide", "galore", dict(g, lr=0.01), [("w", [8, 5]), ("v", [3, 7]), ("b", [4])], 8,
           "GaLore std projection rank 2 (right for the tall, left for the wide matrix); projection from the "
           "step-1 gradient only", ext=True))
    a(spec("galore-reverse-std-wd", "galore", dict(g, lr=0.01, projection_type="reverse_std", weight_decay=0.1,
                                                   scale=0.5), [("w", [8, 5]), ("v", [3, 7])], 8,
           "GaLore reverse_std projection, scale 0.5, weight decay", ext=True))
    a(spec("galore-left-right", "galore", dict(g, lr=0.01, projection_type="left", rank=3), [("w", [6, 5])], 8,
           "GaLore left projection rank 3", ext=True))
    a(spec("galore-right", "galore", dict(g, lr=0.01, projection_type="right", rank=3), [("w", [6, 5])], 8,
           "GaLore right projection rank 3", ext=True))
    a(spec("galore-full-maximize", "galore", dict(g, lr=0.01, projection_type="full", maximize=True, rank=3, eps=0.1),
           [("w", [7, 4])], 8, "GaLore full (two-sided) projection, maximizing; eps 0.1 because the step-1 "
           "projection U^T G V of the gradient that defined U and V is diagonal up to rounding noise, which "
           "Adam's first step m / (sqrt(v) + eps) would otherwise amplify", ext=True))
    a(spec("galore-refresh", "galore", dict(g, lr=0.01, update_proj_gap=4, rank=5, betas=[0.0, 0.999]),
           [("w", [5, 5])], 8, "GaLore full-rank (rank 5 of 5) with a refresh at step 4: beta1 0 keeps no "
           "first moment across the refresh", ext=True))
    # ---------------------------------------------------------------- apollo
    ap = {"rank": 2, "update_proj_gap": 50, "scale": 1.0, "projection_type": "std"}
    a(spec("apollo-defaults", "apollo", {}, WB, 8, "APOLLO without a projection (no rank): AdamW with the "
           "bias correction in the step size and decoupled decay after the update", ext=True))
    a(spec("apollo-no-bias-l2-maximize", "apollo", {"lr": 0.003, "weight_decay": 0.1, "weight_decouple": False,
                                                    "correct_bias": False, "maximize": True, "eps": 1e-8},
           [("w", [4, 5]), ("b", [5])], 8, "APOLLO without projection: L2 decay on the gradient, no bias "
           "correction, maximizing", ext=True))
    a(spec("apollo-fixed-decay", "apollo", {"lr": 0.02, "weight_decay": 0.05, "fixed_decay": True,
                                            "betas": [0.8, 0.99]}, WB, 8,
           "APOLLO without projection, decoupled decay not scaled by the step size", ext=True))
    a(spec("apollo-std-tall-wide", "apollo", dict(ap, lr=0.01), [("w", [8, 5]), ("v", [3, 7]), ("b", [4])], 8,
           "APOLLO std projection rank 2 (right for the tall, left for the wide matrix), tensor scaling; the "
           "vector gets plain Adam", ext=True))
    a(spec("apollo-channel", "apollo", dict(ap, lr=0.01, rank=3, scale_type="channel"),
           [("w", [8, 5]), ("v", [3, 7])], 8, "APOLLO channel scaling: row norms of the 8 x 3 projected tall "
           "matrix, column norms of the 3 x 7 projected wide one", ext=True, big={3: 1e2}))
    a(spec("apollo-reverse-std-wd", "apollo", dict(ap, lr=0.01, projection_type="reverse_std", weight_decay=0.1,
                                                   scale=0.5), [("w", [8, 5]), ("v", [3, 7])], 8,
           "APOLLO reverse_std projection, scale 0.5 (sqrt(scale) * scale on the update), decoupled decay",
           ext=True))
    a(spec("apollo-left", "apollo", dict(ap, lr=0.01, projection_type="left", rank=3), [("w", [6, 5])], 8,
           "APOLLO left projection rank 3", ext=True))
    a(spec("apollo-right-channel", "apollo", dict(ap, lr=0.01, projection_type="right", rank=4,
                                                  scale_type="channel"), [("w", [3, 6])], 8,
           "APOLLO right projection rank 4 of a 3 x 6 matrix, channel scaling over the 3 x 4 projection's "
           "columns", ext=True))
    a(spec("apollo-full-maximize", "apollo", dict(ap, lr=0.01, projection_type="full", maximize=True, rank=3),
           [("w", [7, 4])], 8, "APOLLO full (two-sided) projection, maximizing", ext=True))
    a(spec("apollo-random-refresh-seed", "apollo", dict(ap, lr=0.01, projection_type="random", update_proj_gap=3,
                                                        seed=11, betas=[0.5, 0.9]),
           [("w", [6, 4]), ("v", [2, 5])], 9, "APOLLO random projection (as std) drawn anew at steps 3, 6 and 9 "
           "with another seed; the moments carry over each refresh", ext=True))
    a(spec("apollo-rank-above-dims-l2", "apollo", dict(ap, lr=0.01, rank=6, weight_decay=0.1,
                                                      weight_decouple=False, correct_bias=False, scale=2.0),
           [("w", [4, 3])], 8, "APOLLO rank 6 on a 4 x 3 matrix (random projections are not capped by the "
           "shape), L2 decay before the projection, no bias correction, scale 2", ext=True))
    return S


def cat_d_error_specs():
    E = []

    def e(cid, desc, optimizer, hparams, shapes=WB, steps=3):
        E.append(dict(id=cid, desc=desc, optimizer=optimizer, hparams=hparams, shapes=shapes, steps=steps,
                      mutate=None, hess=None, ext=True))

    e("error-soap-negative-lr", "negative lr", "soap", {"lr": -0.01}, shapes=[("w", [3, 3])])
    e("error-soap-beta-one", "betas[1] = 1", "soap", {"betas": [0.9, 1.0]}, shapes=[("w", [3, 3])])
    e("error-soap-frequency-zero", "precondition_frequency 0", "soap", {"precondition_frequency": 0},
      shapes=[("w", [3, 3])])
    e("error-soap-negative-shampoo-beta", "negative shampoo_beta", "soap", {"shampoo_beta": -0.5},
      shapes=[("w", [3, 3])])
    e("error-soap-merge-dims-single", "merge_dims: a 3 x 3 matrix merges into [1] (max_precondition_dim "
      "10000), which cannot hold it", "soap", {"merge_dims": True}, shapes=[("w", [3, 3])])
    e("error-soap-merge-dims-vector", "merge_dims: a 3-vector (3 <= max_precondition_dim 4) is reshaped to [1] "
      "at its first update", "soap", {"merge_dims": True, "max_precondition_dim": 4},
      shapes=[("w", [3, 3]), ("b", [3])])
    e("error-shampoo-momentum-above-one", "momentum 1.5", "shampoo", {"momentum": 1.5})
    e("error-shampoo-compute-steps-zero", "preconditioning_compute_steps 0", "shampoo",
      {"preconditioning_compute_steps": 0})
    e("error-shampoo-negative-matrix-eps", "negative matrix_eps", "shampoo", {"matrix_eps": -1e-6})
    e("error-adahessian-power-zero", "hessian_power 0 (must be in (0, 1])", "adahessian", {"hessian_power": 0.0})
    e("error-adahessian-power-above-one", "hessian_power 1.5", "adahessian", {"hessian_power": 1.5})
    e("error-adahessian-negative-wd", "negative weight_decay", "adahessian", {"weight_decay": -0.1})
    e("error-sm3-momentum-one", "momentum 1 (must be in [0, 1))", "sm3", {"momentum": 1.0})
    e("error-sm3-beta-above-one", "beta 1.5", "sm3", {"beta": 1.5})
    e("error-sm3-negative-eps", "negative eps", "sm3", {"eps": -1.0})
    e("error-normuon-beta2-one", "beta2 1", "normuon", {"beta2": 1.0}, shapes=[("w", [3, 4])])
    e("error-normuon-bad-update-scale", "unknown update_scale", "normuon", {"update_scale": "rms"},
      shapes=[("w", [3, 4])])
    e("error-normuon-ns-steps-zero", "ns_steps 0", "normuon", {"ns_steps": 0}, shapes=[("w", [3, 4])])
    e("error-normuon-bad-ns-coeffs", "unknown ns_coeffs preset", "normuon", {"ns_coeffs": "cubic"},
      shapes=[("w", [3, 4])])
    e("error-scion-momentum-zero", "momentum 0 (must be in (0, 1])", "scion", {"momentum": 0.0})
    e("error-scion-scale-zero", "scale 0", "scion", {"scale": 0.0})
    e("error-scion-spectral-vector", "SPECTRAL oracle on a vector", "scion", {"norm_type": 2})
    e("error-scion-5d", "AUTO oracle on a 5-D tensor", "scion", {}, shapes=[("k", [2, 2, 2, 2, 2])])
    e("error-scion-bad-norm-kwargs", "unknown norm_kwargs key for SIGN", "scion",
      {"norm_type": 4, "norm_kwargs": {"num_steps": 3}}, shapes=[("w", [3, 4])])
    e("error-kron-negative-lr", "negative lr", "kron", {"lr": -0.001})
    e("error-kron-momentum-one", "momentum 1", "kron", {"momentum": 1.0})
    e("error-kron-bad-memory-save-mode", "unknown memory_save_mode", "kron", {"memory_save_mode": "half_diag"})
    e("error-galore-negative-eps", "negative eps", "galore", {"eps": -1e-6})
    e("error-galore-rank-without-gap", "rank without update_proj_gap (the library reads it from the group)",
      "galore", {"rank": 2}, shapes=[("w", [4, 3])])
    e("error-galore-bad-projection-type", "unknown projection_type", "galore",
      {"rank": 2, "update_proj_gap": 5, "scale": 1.0, "projection_type": "diagonal"}, shapes=[("w", [4, 3])])
    e("error-apollo-negative-lr", "negative lr", "apollo", {"lr": -0.01})
    e("error-apollo-beta1-one", "betas[0] = 1", "apollo", {"betas": [1.0, 0.999]})
    e("error-apollo-negative-wd", "negative weight_decay", "apollo", {"weight_decay": -0.1})
    e("error-apollo-negative-eps", "negative eps", "apollo", {"eps": -1e-6})
    e("error-apollo-rank-without-scale", "rank without scale (the library reads it from the group)", "apollo",
      {"rank": 2, "update_proj_gap": 5, "projection_type": "std"}, shapes=[("w", [4, 3])])
    e("error-apollo-gap-zero", "update_proj_gap 0 (the library divides by it)", "apollo",
      {"rank": 2, "update_proj_gap": 0, "scale": 1.0, "projection_type": "std"}, shapes=[("w", [4, 3])])
    e("error-apollo-bad-projection-type", "unknown projection_type", "apollo",
      {"rank": 2, "update_proj_gap": 5, "scale": 1.0, "projection_type": "diagonal"}, shapes=[("w", [4, 3])])
    return E



def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "replay":
        torch.set_num_threads(1)
        return replay_main(argv[1])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO_ROOT, "tests", "golden", "cases"))
    ap.add_argument("--ext-out", default=os.path.join(REPO_ROOT, "tests", "golden", "extensions"))
    ap.add_argument("--only", nargs="+", metavar="NAME")
    ap.add_argument("--clean", action="store_true")
    ap.add_argument("--check-public", metavar="DIR")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--foreach-false", action="store_true",
                    help="expected values from the foreach=False path (as the owners' public cases)")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--closure-out", default=os.path.join(REPO_ROOT, "tests", "golden", "closure"))
    args = ap.parse_args(argv)

    global PRIMARY_FOREACH_FALSE
    PRIMARY_FOREACH_FALSE = args.foreach_false
    if pytorch_optimizer is None:
        print("error: pytorch_optimizer is not installed (see the module docstring)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    for m in _check_versions():
        print(m, file=sys.stderr)
    reg_path = _check_registry()
    _patch_torch_muon()
    _patch_adamuon()
    _patch_cat_d_ns()

    if args.check_public:
        return check_public(args.check_public)

    all_numeric = (numeric_specs() + frontier_specs() + transcription_specs() + catalogue_a_specs()
                   + adam_family_specs() + catalogue_c_specs() + cat_d_specs())
    all_errors = (error_specs() + catalogue_a_error_specs() + adam_family_error_specs() + catalogue_c_error_specs()
                  + cat_d_error_specs())
    numeric = [s for s in all_numeric if matches(args.only, s)]
    errors = [s for s in all_errors if matches(args.only, s)]
    ids = [s["id"] for s in all_numeric] + [s["id"] for s in all_errors]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise RuntimeError(f"duplicate case ids: {sorted(dup)}")
    if args.list:
        for s in numeric + errors:
            print(s["id"])
        return 0
    if args.clean and not args.only:
        for d in (args.out, args.ext_out):
            for p in glob.glob(os.path.join(d, "*.json")):
                os.remove(p)

    log = (lambda m: None) if args.quiet else (lambda m: print(m, flush=True))
    if reg_path:
        log(f"registry matches {reg_path}")
    written, dropped, retried = [], [], []
    per_opt = {}
    worst = {"robust": 0.0, "foreach": 0.0}
    for s in numeric:
        case, info = make_numeric(s, log)
        if case is None:
            dropped.append((s["id"], info["error"]))
            log(f"DROP  {s['id']}: {info['error']}")
            continue
        path = write_case(case, args.ext_out if s["ext"] else args.out)
        written.append(path)
        if info["attempt"]:
            retried.append((s["id"], info["attempt"]))
        key = s["optimizer"] + (" (ext)" if s["ext"] else "")
        per_opt[key] = per_opt.get(key, 0) + 1
        worst["robust"] = max(worst["robust"], info["robust"])
        worst["foreach"] = max(worst["foreach"], info["foreach"])
        log(f"ok    {s['id']:40s} f64 {info['robust']:.2g}x tol  foreach=False {info['foreach']:.2g}x tol"
            + (f"  numpy {info['extra']:.2g}x tol" if info["extra"] is not None else "")
            + (f"  (seed attempt {info['attempt']})" if info["attempt"] else ""))
    for es in errors:
        case, info = make_error(es, log)
        if case is None:
            dropped.append((es["id"], info["error"]))
            continue
        written.append(write_case(case, args.ext_out if es.get("ext") else args.out))
        per_opt["error"] = per_opt.get("error", 0) + 1
        log(f"ok    {es['id']:40s} contract={info['contract']!r} reference={info['reference']!r}")

    for cs in [c for c in closure_specs() if matches(args.only, c)]:
        case, info = make_closure_case(cs, log)
        if case is None:
            dropped.append((cs["id"], info["error"]))
            log(f"DROP  {cs['id']}: {info['error']}")
            continue
        os.makedirs(args.closure_out, exist_ok=True)
        path = os.path.join(args.closure_out, cs["id"] + ".json")
        text = closure_case_json(case)
        json.loads(text)
        with open(path, "w") as f:
            f.write(text)
        written.append(path)
        per_opt["lbfgs (closure)"] = per_opt.get("lbfgs (closure)", 0) + 1
        log(f"ok    {cs['id']:40s} f64 {info['robust']:.2g}x tol")

    print("\nsummary")
    for k in sorted(per_opt):
        print(f"  {k:22s} {per_opt[k]}")
    print(f"  written {len(written)} files; worst f64/f32 difference {worst['robust']:.3g}x tol, "
          f"worst foreach=False difference {worst['foreach']:.3g}x tol")
    if retried:
        print("  re-seeded: " + ", ".join(f"{i} (attempt {a})" for i, a in retried))
    if dropped:
        print("  DROPPED: " + "; ".join(f"{i}: {e}" for i, e in dropped))
    return 1 if dropped else 0


if __name__ == "__main__":
    sys.exit(main())
