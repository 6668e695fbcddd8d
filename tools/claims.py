#!/usr/bin/env python3
"""The claims study: published optimizer claims against tuned AdamW.

    python3 tools/claims.py run    [--optimist BIN] [--out results/claims] ...
    python3 tools/claims.py report [--out results/claims]

`run` makes every result the report reads, in four parts (each skipped when
its output already exists, so an interrupted study resumes):

1. `optimist tune` of every rule in the study on digits-mlp and
   shakespeare-mini, the same budget for every rule, AdamW included
   (trials x studies, scored by steps to the validation target, which do
   not depend on the machine's load) -> tuned.json, tune-plots/.
2. `optimist bench --tuned tuned.json` on seeds the tuning never used
   (--first-seed 100) with the test split evaluated -> bench/report.json.
3. Warmup (the RAdam claim): Adam without warmup, Adam with a linear
   warmup over the first 10% of steps, and RAdam without warmup, at the
   tuned AdamW lr and betas (no weight decay) and at 3x that lr; the same
   held-out seeds -> warmup.jsonl.
4. Schedule (the schedule-free claim): AdamW at its tuned settings with a
   warmup-cosine schedule (5% warmup, decay to 0 over the budget), at lr
   multipliers 1, 2, 3, 4, 6 and 8, the best multiplier by median final validation
   loss (chosen on the same seeds, which favours the baseline) ->
   cosine.jsonl.

`report` computes, per claim, the ratio of the median steps to target of
the rule to that of its baseline, with a 95% bootstrap interval (paired
over seeds, 10,000 resamples; a seed that misses the target counts as
never, so an interval can be unbounded), and differences of final metrics
with their intervals; it writes claims.json, claims.md (the table of
docs/claims.md) and ratios.svg, and gives each claim a verdict by the rules
printed in claims.md. Verdicts come from these numbers only.
"""

import argparse
import concurrent.futures
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time

WORKLOADS = ["digits-mlp", "shakespeare-mini"]
RULES = [
    "adamw", "sgd", "adamomentum", "adabelief", "lion", "muon", "namo",
    "namo_d", "adamuon", "sophiag", "adamw_schedulefree", "cautious",
    "lookahead", "magma", "skipupdate", "lamb",
]
BATCHES = [64, 256, 1024]
COSINE_LR_MULTIPLIERS = [1, 2, 3, 4, 6, 8]
SPIKES = {"steps": [60, 120], "factor": 1000.0}
CLIPPERS = {
    "clip_grad_norm": {"name": "clip_grad_norm", "config": {"max_norm": 1.0}},
    "zclip": {"name": "zclip"},
    "adagc": {"name": "adagc"},
}
FIRST_SEED = 100
LM = "shakespeare-mini"
BUDGET = {"digits-mlp": 400, "shakespeare-mini": 200}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(cmd):
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def loss_spikes(losses, ratio=1.5, window=10):
    """Steps whose training loss exceeds `ratio` x the mean of the
    `window` steps before."""
    n = 0
    for i in range(window, len(losses)):
        if losses[i] > ratio * sum(losses[i - window:i]) / window:
            n += 1
    return n


def train(binary, workload, optimizer, hparams, seed, wrap=None, extra=()):
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as lg:
        cmd = [binary, "train", "--workload", workload, "--optimizer", optimizer,
               "--hparams", json.dumps(hparams), "--seed", str(seed), "--json",
               "--quiet", "--threads", "1", "--log", lg.name, *extra]
        if wrap is not None:
            cmd += ["--wrap", json.dumps(wrap)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out)
        losses = []
        with open(lg.name) as f:
            for line in f:
                e = json.loads(line)
                if e.get("event") == "step":
                    losses.append(e["loss"])
    r["loss_spikes"] = loss_spikes(losses)
    r["max_train_loss_after_step_10"] = max(losses[10:], default=None)
    return r


def tuned_entry(tuned, workload, optimizer):
    for e in tuned["entries"]:
        if e["workload"] == workload and e["optimizer"] == optimizer:
            return e["hparams"]
    raise SystemExit(f"{workload}/{optimizer} is not in the tuned file")


def run_train_jobs(binary, jobs, path, jobs_at_once):
    """Runs `jobs` (dicts of train arguments plus a `tag`), appending one
    JSON line per finished run to `path`; runs already there are skipped."""
    done = set()
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                done.add((r["tag"], r["seed"]))
    todo = [j for j in jobs if (j["tag"], j["seed"]) not in done]
    total, t0 = len(todo), time.time()
    with open(path, "a") as f, concurrent.futures.ThreadPoolExecutor(jobs_at_once) as ex:
        futs = {ex.submit(train, binary, j["workload"], j["optimizer"], j["hparams"],
                          j["seed"], j.get("wrap"), j.get("extra", ())): j for j in todo}
        for i, fut in enumerate(concurrent.futures.as_completed(futs), 1):
            j = futs[fut]
            r = fut.result()
            r["tag"] = j["tag"]
            r["lr_multiplier"] = j["lr_multiplier"]
            f.write(json.dumps(r) + "\n")
            f.flush()
            log(f"[{i}/{total}] {j['tag']} seed {j['seed']}: steps to target "
                f"{r['steps_to_target']}, final valid {r['final_valid']['loss']:.4f} "
                f"({time.time() - t0:.0f} s)")


def compact(path):
    """Drops the per-run loss curves and evaluation lists from a bench
    report (the plots keep the curves), keeping `evals_count`."""
    with open(path) as f:
        r = json.load(f)
    changed = False
    for c in r.get("cells", []):
        for run in c.get("runs", []):
            if "evals" in run:
                run["evals_count"] = len(run.pop("evals"))
                changed = True
            if "losses" in run:
                run.pop("losses")
                changed = True
    if changed:
        with open(path, "w") as f:
            json.dump(r, f, indent=1)


def cmd_run(a):
    os.makedirs(a.out, exist_ok=True)
    tuned_path = os.path.join(a.out, "tuned.json")
    if not os.path.exists(tuned_path):
        sh([a.optimist, "tune", "--workloads", ",".join(WORKLOADS), "--optimizers",
            ",".join(RULES), "--trials", str(a.trials), "--studies", str(a.studies),
            "--score", "steps", "--jobs", str(a.jobs), "--threads", "1",
            "--out", tuned_path, "--plots", os.path.join(a.out, "tune-plots")])
    bench = os.path.join(a.out, "bench")
    if not os.path.exists(os.path.join(bench, "report.json")):
        sh([a.optimist, "bench", "--workloads", ",".join(WORKLOADS), "--optimizers",
            ",".join(RULES), "--tuned", tuned_path, "--first-seed", str(FIRST_SEED),
            "--seeds", str(a.seeds), "--eval-test", "--jobs", str(a.jobs),
            "--threads", "1", "--out", bench])
    compact(os.path.join(bench, "report.json"))
    with open(tuned_path) as f:
        tuned = json.load(f)
    seeds = range(FIRST_SEED, FIRST_SEED + a.seeds)
    base = tuned_entry(tuned, LM, "adamw")
    adam = {"lr": base["lr"], "betas": base["betas"]}
    warm = max(1, BUDGET[LM] // 10)
    jobs = []
    for m in (1, 3):
        hp = dict(adam, lr=adam["lr"] * m)
        for s in seeds:
            jobs.append(dict(tag=f"adam x{m}", workload=LM, optimizer="adam", hparams=hp,
                             seed=s, lr_multiplier=m))
            jobs.append(dict(tag=f"adam+warmup x{m}", workload=LM, optimizer="adam",
                             hparams=hp, seed=s, lr_multiplier=m,
                             wrap={"wrapper": "scheduled", "schedules": [{"hparam": "lr", "schedule": {
                                 "name": "warmup_constant", "warmup_steps": warm}}]}))
            jobs.append(dict(tag=f"radam x{m}", workload=LM, optimizer="radam", hparams=hp,
                             seed=s, lr_multiplier=m))
    run_train_jobs(a.optimist, jobs, os.path.join(a.out, "warmup.jsonl"), a.jobs)
    jobs = []
    for m in COSINE_LR_MULTIPLIERS:
        hp = dict(base, lr=base["lr"] * m)
        for s in seeds:
            jobs.append(dict(tag=f"adamw+cosine x{m}", workload=LM, optimizer="adamw",
                             hparams=hp, seed=s, lr_multiplier=m,
                             wrap={"wrapper": "scheduled", "schedules": [{"hparam": "lr", "schedule": {
                                 "name": "warmup_cosine", "warmup_steps": max(1, BUDGET[LM] // 20),
                                 "total_steps": BUDGET[LM]}}]}))
    run_train_jobs(a.optimist, jobs, os.path.join(a.out, "cosine.jsonl"), a.jobs)
    jobs = []
    for rule in ("adamw", "lamb"):
        hp0 = tuned_entry(tuned, "digits-mlp", rule)
        for b in BATCHES:
            m = math.sqrt(b / BATCHES[0])
            hp = dict(hp0, lr=hp0["lr"] * m)
            for s in seeds:
                jobs.append(dict(tag=f"{rule} batch {b}", workload="digits-mlp", optimizer=rule,
                                 hparams=hp, seed=s, lr_multiplier=m,
                                 extra=("--batch-size", str(b))))
    run_train_jobs(a.optimist, jobs, os.path.join(a.out, "batch.jsonl"), a.jobs)
    jobs = []
    spikes = ("--grad-spikes", json.dumps(SPIKES))
    for s in seeds:
        jobs.append(dict(tag="adamw no spikes", workload=LM, optimizer="adamw", hparams=base,
                         seed=s, lr_multiplier=1))
        jobs.append(dict(tag="adamw spikes", workload=LM, optimizer="adamw", hparams=base,
                         seed=s, lr_multiplier=1, extra=spikes))
        for name, stage in CLIPPERS.items():
            jobs.append(dict(tag=f"adamw+{name} spikes", workload=LM, optimizer="adamw",
                             hparams=base, seed=s, lr_multiplier=1,
                             extra=spikes + ("--stage", json.dumps(stage))))
    run_train_jobs(a.optimist, jobs, os.path.join(a.out, "spikes.jsonl"), a.jobs)
    log("done; now: python3 tools/claims.py report --out " + a.out)


# ---------------------------------------------------------------- statistics

def median(xs):
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def ratio(a, b):
    ma, mb = median(a), median(b)
    if math.isinf(ma) and math.isinf(mb):
        return float("nan")
    if math.isinf(mb):
        return 0.0
    return ma / mb


def bootstrap(stat, a, b, n=10000, seed=0):
    """95% percentile interval of stat(a*, b*) over paired resamples of the
    seeds (a[i] and b[i] ran with the same seed)."""
    rng = random.Random(seed)
    k = len(a)
    vals = []
    for _ in range(n):
        idx = [rng.randrange(k) for _ in range(k)]
        v = stat([a[i] for i in idx], [b[i] for i in idx])
        if not math.isnan(v):
            vals.append(v)
    if not vals:
        return (float("nan"), float("nan"))
    vals.sort()
    return (vals[int(0.025 * (len(vals) - 1))], vals[int(0.975 * (len(vals) - 1))])


def diff_of_medians(a, b):
    return median(a) - median(b)


# ---------------------------------------------------------------- report

def steps(run):
    s = run.get("steps_to_target")
    return float("inf") if s is None or run.get("diverged") else float(s)


def final(run, split="final_valid", key="metric"):
    e = run.get(split)
    return float("nan") if e is None else float(e[key])


class Study:
    def __init__(self, out):
        with open(os.path.join(out, "bench", "report.json")) as f:
            self.bench = json.load(f)
        with open(os.path.join(out, "tuned.json")) as f:
            self.tuned = json.load(f)
        self.cells = {(c["workload"], c["optimizer"]): c for c in self.bench["cells"]}
        self.extra = {}
        for name in ("warmup.jsonl", "cosine.jsonl", "batch.jsonl", "spikes.jsonl"):
            p = os.path.join(out, name)
            if os.path.exists(p):
                with open(p) as f:
                    for line in f:
                        r = json.loads(line)
                        self.extra.setdefault(r["tag"], []).append(r)
        for runs in self.extra.values():
            runs.sort(key=lambda r: r["seed"])

    def runs(self, workload, rule):
        if rule in self.extra:
            return self.extra[rule]
        c = self.cells.get((workload, rule))
        if c is None or not c["runs"]:
            return []
        return sorted(c["runs"], key=lambda r: r["seed"])


def paired(ra, rb):
    sa = {r["seed"]: r for r in ra}
    sb = {r["seed"]: r for r in rb}
    seeds = sorted(set(sa) & set(sb))
    return [sa[s] for s in seeds], [sb[s] for s in seeds]


def fmt_steps(xs):
    return ", ".join("-" if math.isinf(x) else str(int(x)) for x in xs)


def fmt_num(x, d=2):
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    if isinstance(x, float) and math.isnan(x):
        return "n/a"
    return f"{x:.{d}f}"


def compare_steps(st, workload, rule, base):
    ra, rb = paired(st.runs(workload, rule), st.runs(workload, base))
    a, b = [steps(r) for r in ra], [steps(r) for r in rb]
    r = ratio(a, b)
    lo, hi = bootstrap(ratio, a, b)
    return {"kind": "steps ratio", "workload": workload, "rule": rule, "baseline": base,
            "seeds": [x["seed"] for x in ra], "rule_steps": a, "baseline_steps": b,
            "ratio": r, "ci": [lo, hi]}


def compare_final(st, workload, rule, base, split="final_valid", key="metric"):
    ra, rb = paired(st.runs(workload, rule), st.runs(workload, base))
    a, b = [final(r, split, key) for r in ra], [final(r, split, key) for r in rb]
    d = diff_of_medians(a, b)
    lo, hi = bootstrap(diff_of_medians, a, b)
    return {"kind": f"difference of medians ({split} {key})", "workload": workload,
            "rule": rule, "baseline": base, "seeds": [x["seed"] for x in ra],
            "rule_values": a, "baseline_values": b, "diff": d, "ci": [lo, hi]}


def faster(c, claimed=None):
    """Verdict for "faster than the baseline" (by `claimed` x steps, if given)."""
    lo, hi = c["ci"]
    if math.isnan(lo):
        return "inconclusive"
    if claimed is not None and lo > claimed:
        if hi < 1:
            return "does not hold (faster, but by less than claimed)"
        return "does not hold"
    if hi < 1:
        return "holds"
    if lo >= 1:
        return "does not hold"
    return "inconclusive"


def matches(c, tol=1.1):
    """Verdict for "as fast as the baseline": the ratio at most `tol`."""
    lo, hi = c["ci"]
    if math.isnan(lo):
        return "inconclusive"
    if hi <= tol:
        return "holds"
    if lo > tol:
        return "does not hold"
    return "inconclusive"


def not_worse(c, margin, higher_is_better=True):
    """Verdict for "final metric no worse than the baseline by more than
    `margin`"."""
    lo, hi = c["ci"]
    if math.isnan(lo):
        return "inconclusive"
    if not higher_is_better:
        lo, hi = -hi, -lo
    if lo >= -margin:
        return "holds"
    if hi < -margin:
        return "does not hold"
    return "inconclusive"


def better(c, higher_is_better=True):
    lo, hi = c["ci"]
    if math.isnan(lo):
        return "inconclusive"
    if not higher_is_better:
        lo, hi = -hi, -lo
    if lo > 0:
        return "holds"
    if hi <= 0:
        return "does not hold"
    return "inconclusive"


def combine(vs):
    if all(v == "holds" for v in vs):
        return "holds"
    if any(v == "does not hold" for v in vs):
        return "does not hold"
    return "inconclusive"


def describe(c):
    if c["kind"] == "steps ratio":
        return (f"{c['workload']}: {c['rule']} / {c['baseline']} steps to target "
                f"{fmt_num(c['ratio'])} [{fmt_num(c['ci'][0])}, {fmt_num(c['ci'][1])}] "
                f"({fmt_steps(c['rule_steps'])} vs {fmt_steps(c['baseline_steps'])})")
    return (f"{c['workload']}: {c['rule']} - {c['baseline']} {c['kind'].split('(')[1][:-1]} "
            f"{c['diff']:+.4f} [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]")


def best_cosine(st):
    tags = [t for t in st.extra if t.startswith("adamw+cosine")]
    if not tags:
        return None
    return min(tags, key=lambda t: median([final(r, "final_valid", "loss") for r in st.extra[t]]))


def claims(st):
    out = []

    def add(name, source, workloads, comparisons, verdict, rule_text, note=""):
        out.append({"claim": name, "source": source, "workloads": workloads,
                    "comparisons": comparisons, "verdict": verdict, "rule": rule_text,
                    "note": note})

    c = compare_steps(st, LM, "adamomentum", "adamw")
    add("AdaMomentum: up to 30% faster training of transformer LMs", "AdaMomentum paper", LM,
        [c], faster(c), "holds if the ratio's interval lies below 1")
    cs = [compare_steps(st, w, "lion", "adamw") for w in WORKLOADS]
    mem = {w: (st.cells[(w, "lion")]["state_bytes"], st.cells[(w, "adamw")]["state_bytes"]) for w in WORKLOADS}
    note = "; ".join(f"{w}: state {a:,} vs {b:,} bytes ({a / b:.2f}x)" for w, (a, b) in mem.items())
    memv = "holds" if all(a * 2 <= b for a, b in mem.values()) else "does not hold"
    add("Lion matches AdamW with half the optimizer memory", "Lion paper", ", ".join(WORKLOADS),
        cs, combine([memv] + [matches(c) for c in cs]),
        "memory: Lion's state at most half of AdamW's; speed: the ratio's interval at most 1.1 on every workload",
        note)
    cs = [compare_steps(st, w, "adabelief", "adamw") for w in WORKLOADS]
    g = compare_final(st, "digits-mlp", "adabelief", "sgd", "final_test", "metric")
    add("AdaBelief: Adam-like speed with SGD-like generalisation", "AdaBelief paper",
        ", ".join(WORKLOADS), cs + [g], combine([matches(c) for c in cs] + [not_worse(g, 0.01)]),
        "speed: ratio to AdamW at most 1.1 on every workload; generalisation: digits test accuracy at most 1 point below SGD with momentum (interval)")
    wu = []
    verdicts = []
    for m in (1, 3):
        if f"radam x{m}" in st.extra:
            c1 = compare_steps(st, LM, f"radam x{m}", f"adam+warmup x{m}")
            c2 = compare_steps(st, LM, f"radam x{m}", f"adam x{m}")
            wu += [c1, c2]
            verdicts.append(matches(c1))
    add("RAdam removes the need for warmup", "RAdam paper", LM, wu,
        combine(verdicts) if verdicts else "not measured",
        "RAdam without warmup at most 1.1x the steps of Adam with a 10% linear warmup, at the tuned lr and at 3x it (Adam without warmup shown for scale)")
    cs = [compare_final(st, "digits-mlp", "lookahead", "adamw", "final_test", "metric"),
          compare_final(st, LM, "lookahead", "adamw", "final_valid", "loss")]
    add("Lookahead improves stability and final accuracy", "Lookahead paper", ", ".join(WORKLOADS),
        cs, combine([better(cs[0]), better(cs[1], False)]),
        "final digits test accuracy higher and final shakespeare validation loss lower than AdamW (intervals exclude 0); every run of both is finite",
        "divergences: " + ", ".join(f"{w} {sum(r['diverged'] for r in st.runs(w, 'lookahead'))}/{len(st.runs(w, 'lookahead'))}" for w in WORKLOADS))
    c = compare_steps(st, LM, "muon", "adamw")
    add("Muon: about 2x more efficient than AdamW on language models", "Muon (K. Jordan et al.)", LM,
        [c], faster(c, 0.5), "holds if the ratio's interval lies below 1 and reaches 0.5; does not hold if it lies above 0.5 or above 1")
    cs = [compare_steps(st, LM, r, b) for r in ("namo", "namo_d") for b in ("muon", "adamw")]
    add("NAMO / NAMO-D improve on Muon and AdamW", "NAMO paper", LM, cs,
        combine([faster(c) for c in cs]), "each of NAMO and NAMO-D: ratio interval below 1 against both Muon and AdamW")
    c = compare_steps(st, LM, "adamuon", "muon")
    add("AdaMuon improves on Muon", "AdaMuon paper", LM, [c], faster(c), "ratio interval below 1")
    c = compare_steps(st, LM, "sophiag", "adamw")
    add("Sophia: about 2x fewer steps than AdamW for language models", "Sophia paper", LM, [c],
        faster(c, 0.5), "as for Muon: below 1 and reaching 0.5")
    cos = best_cosine(st)
    if cos:
        c1 = compare_final(st, LM, "adamw_schedulefree", cos, "final_valid", "loss")
        c2 = compare_steps(st, LM, "adamw_schedulefree", cos)
        add("Schedule-free matches a tuned cosine schedule", "schedule-free paper", LM, [c1, c2],
            combine([not_worse(c1, 0.02, False), matches(c2)]),
            "final validation loss at most 0.02 nats/char above AdamW with warmup-cosine (best of lr x1 to x8 of tuned AdamW), and steps ratio at most 1.1",
            f"cosine baseline: `{cos}`")
    else:
        add("Schedule-free matches a tuned cosine schedule", "schedule-free paper", LM, [], "not measured", "")
    cs = [compare_steps(st, w, "cautious", "adamw") for w in WORKLOADS]
    fs = [compare_final(st, "digits-mlp", "cautious", "adamw", "final_test", "metric"),
          compare_final(st, LM, "cautious", "adamw", "final_valid", "loss")]
    add("Cautious masking: faster training at no cost", "Cautious optimizers paper",
        ", ".join(WORKLOADS), cs + fs,
        combine([faster(c) for c in cs] + [not_worse(fs[0], 0.01), not_worse(fs[1], 0.02, False)]),
        "cautious(AdamW) ratio interval below 1 on every workload, final metric no worse (1 point of accuracy, 0.02 nats/char)")
    for rule in ("magma", "skipupdate"):
        cs = [compare_final(st, LM, rule, "adamw", "final_valid", "loss"), compare_steps(st, LM, rule, "adamw")]
        add(f"{'Magma' if rule == 'magma' else 'SkipUpdate'} (masked updates of Adam): lower LM loss than dense Adam",
            "Joo et al., arXiv:2602.15322", LM, cs, better(cs[0], False),
            "final validation loss below AdamW's (interval excludes 0); steps ratio shown")
    if "lamb batch 64" in st.extra:
        cs = [compare_steps(st, "digits-mlp", f"lamb batch {b}", f"adamw batch {b}") for b in BATCHES]
        runs = {t: st.extra[f"{t} batch {BATCHES[-1]}"] for t in ("lamb", "adamw")}
        div = ", ".join(f"batch {b}: lamb {sum(r['diverged'] for r in st.extra[f'lamb batch {b}'])}, "
                        f"adamw {sum(r['diverged'] for r in st.extra[f'adamw batch {b}'])}" for b in BATCHES)
        stable = {t: all(not r["diverged"] and r["steps_to_target"] is not None for r in rs)
                  for t, rs in runs.items()}
        v = faster(cs[-1])
        if not stable["lamb"]:
            v = "does not hold"
        elif v != "holds" and stable["adamw"]:
            v += " (LAMB is stable at the largest batch, and so is AdamW)"
        add("LAMB: stable training at much larger batch sizes", "LAMB paper", "digits-mlp", cs, v,
            f"at the largest batch ({BATCHES[-1]}, lr scaled by sqrt(batch/64)) every LAMB run reaches the target without diverging, and LAMB needs fewer steps than AdamW (ratio interval below 1)",
            "diverged runs: " + div)
    else:
        add("LAMB: stable training at much larger batch sizes", "LAMB paper", "-", [], "not measured", "")
    if "adamw spikes" in st.extra:
        hurt = compare_final(st, LM, "adamw spikes", "adamw no spikes", "final_valid", "loss")
        cs = [hurt]
        vs = []
        for name in CLIPPERS:
            c = compare_final(st, LM, f"adamw+{name} spikes", "adamw no spikes", "final_valid", "loss")
            cs.append(c)
            vs.append(not_worse(c, 0.02, False))
        counts = "; ".join(
            f"{t}: loss spikes per run {median([r['loss_spikes'] for r in st.extra[t]])} (median), diverged "
            f"{sum(r['diverged'] for r in st.extra[t])}/{len(st.extra[t])}"
            for t in ["adamw no spikes", "adamw spikes"] + [f"adamw+{n} spikes" for n in CLIPPERS])
        spiked_hurts = better(hurt, True) == "holds"  # the spiked run's loss is higher
        verdict = ", ".join(f"{n}: {v if spiked_hurts else 'inconclusive'}" for n, v in zip(CLIPPERS, vs))
        add("Global-norm clipping, AdaGC, ZClip prevent loss spikes", "their papers", LM, cs, verdict,
            "the injected spikes raise unclipped AdamW's final validation loss (interval above 0), and with the clipper the final loss is at most 0.02 above AdamW without spikes",
            counts)
    else:
        add("Global-norm clipping, AdaGC, ZClip prevent loss spikes", "their papers", "-", [], "not measured", "")
    return out


def svg_ratios(rows, path):
    items = [c for r in rows for c in r["comparisons"] if c["kind"] == "steps ratio"]
    longest = max((len(f"{c['rule']} / {c['baseline']} ({c['workload']})") for c in items), default=20)
    left = 20 + 6.5 * longest
    w, top, rowh = left + 460, 40, 20
    h = top + rowh * len(items) + 50
    xmin, xmax = 0.25, 4.0

    def x(v):
        v = min(max(v, xmin), xmax)
        return left + (math.log(v) - math.log(xmin)) / (math.log(xmax) - math.log(xmin)) * (w - left - 20)

    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">',
         f'<rect width="{w}" height="{h}" fill="white"/>',
         f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="13">Steps to target: rule / baseline (median over seeds, 95% bootstrap interval; log scale)</text>']
    for t in (0.25, 0.5, 1, 2, 4):
        s.append(f'<line x1="{x(t):.1f}" y1="{top - 5}" x2="{x(t):.1f}" y2="{h - 40}" stroke="{"#444" if t == 1 else "#ddd"}"/>')
        s.append(f'<text x="{x(t):.1f}" y="{h - 25}" text-anchor="middle">{t:g}</text>')
    s.append(f'<text x="{(left + w) / 2}" y="{h - 8}" text-anchor="middle">ratio (below 1: the rule needs fewer steps)</text>')
    for i, c in enumerate(items):
        y = top + rowh * i + rowh / 2
        label = f"{c['rule']} / {c['baseline']} ({c['workload']})"
        s.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        lo, hi = c["ci"]
        if not math.isnan(lo):
            s.append(f'<line x1="{x(lo):.1f}" y1="{y:.1f}" x2="{x(hi):.1f}" y2="{y:.1f}" stroke="#1f77b4" stroke-width="2"/>')
            if math.isinf(hi):
                s.append(f'<text x="{x(xmax) + 2:.1f}" y="{y + 4:.1f}">→</text>')
        r = c["ratio"]
        if not math.isnan(r):
            s.append(f'<circle cx="{x(r):.1f}" cy="{y:.1f}" r="3.5" fill="#d62728"/>')
    s.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(s) + "\n")


def jsonable(v):
    if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    return v


def cmd_report(a):
    st = Study(a.out)
    rows = claims(st)
    with open(os.path.join(a.out, "claims.json"), "w") as f:
        json.dump(jsonable({"bench_version": st.bench.get("version"), "machine": st.bench.get("machine"),
                            "tuned": {k: st.tuned.get(k) for k in ("command", "trials", "studies", "score", "version")},
                            "claims": rows}), f, indent=1)
    lines = ["| claim | source | workload | measured (ratio or difference [95% interval]; per-seed steps) | verdict | verdict rule |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        meas = "<br>".join(describe(c) for c in r["comparisons"]) or "-"
        if r["note"]:
            meas += ("<br>" if meas != "-" else "") + r["note"]
        lines.append(f"| {r['claim']} | {r['source']} | {r['workloads']} | {meas} | **{r['verdict']}** | {r['rule']} |")
    with open(os.path.join(a.out, "claims.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    svg_ratios(rows, os.path.join(a.out, "ratios.svg"))
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the study (resumes where it stopped)")
    r.add_argument("--optimist", default="target/release/optimist", help="the optimist binary")
    r.add_argument("--out", default="results/claims")
    r.add_argument("--trials", type=int, default=3, help="tuning trials per study")
    r.add_argument("--studies", type=int, default=3, help="tuning studies (seeds 0, 1, ...)")
    r.add_argument("--seeds", type=int, default=10, help="held-out seeds (100, 101, ...)")
    r.add_argument("--jobs", type=int, default=2, help="runs at the same time")
    q = sub.add_parser("report", help="compute the ratios, intervals and verdicts")
    q.add_argument("--out", default="results/claims")
    a = p.parse_args()
    (cmd_run if a.cmd == "run" else cmd_report)(a)


if __name__ == "__main__":
    main()
