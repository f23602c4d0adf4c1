"""One plan per training notebook: which runs it trains, as a function both the notebook and
``make reproduce`` call (reproduce trains every plan's runs in one pool first, so that the
notebooks find them finished; no notebook cell is ever executed to learn what it trains).

``DEFAULTS`` holds what each notebook's parameters cell sets (tests/test_plans.py checks them
against the notebooks at both sizes); ``plan_for("04", parameters)`` is the plan at those
values with ``parameters`` over them, as ``papermill -p`` would run it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from .. import ROOT
from ..runs import Run
from . import catalogue as C
from .pool import dependencies_first, train_runs


def smoke_default() -> bool:
    """The notebooks' smoke switch (make test / nbval shrink everything with PDD_SMOKE=1)."""
    return os.environ.get("PDD_SMOKE", "0") == "1"


def runs_root(runs_dir=None, smoke: bool = False) -> Path:
    """Where a notebook's runs go: ``runs_dir``, else ``<repo>/runs`` (``<repo>/runs/smoke`` at smoke size)."""
    return Path(runs_dir) if runs_dir else ROOT / "runs" / ("smoke" if smoke else "")


def results_root(runs: Path, smoke: bool = False) -> Path:
    """Where a notebook's tables go: ``<repo>/results``; at smoke size ``<runs>/results`` (the
    committed results stay as they are)."""
    return Path(runs) / "results" if smoke else ROOT / "results"


def notebook_dirs(runs_dir, results_dir, domain: str, preset: str, smoke: bool = False) -> tuple[Path, Path]:
    """(runs, results) of a notebook: ``runs_root``, and ``results_dir``, else
    ``results_root``/<domain>/<preset>."""
    runs = runs_root(runs_dir, smoke)
    return runs, Path(results_dir) if results_dir else results_root(runs, smoke) / domain / preset


@dataclass
class Plan:
    """What a notebook trains, in ``waves`` (one pool each, the later ones starting from the
    earlier ones' runs: the starting models, then the rows), and the runs it shows by name
    (``named``: e.g. "static PDD"). ``runs``: every run once, what others start from first."""
    waves: list[list[Run]]
    named: dict[str, Run] = field(default_factory=dict)

    @property
    def runs(self) -> list[Run]:
        return dependencies_first([j for wave in self.waves for j in wave])

    def __getitem__(self, name: str) -> Run:
        return self.named[name]


def _plan(*waves: list[Run], **named: Run) -> Plan:
    return Plan([list(w) for w in waves if w], named)


def _loss_overrides(lambda_intra=1.0, lambda_inter=1.0, device="auto", ema_decay=None) -> dict:
    """The config changes a notebook's parameters make (a changed config runs under its own name)."""
    out = {} if ema_decay is None else {"ema_decay": ema_decay}
    if (lambda_intra, lambda_inter) != (1.0, 1.0):
        out.update({"pdd.lambda_intra": lambda_intra, "pdd.lambda_inter": lambda_inter})
    if device != "auto":
        out["device"] = device
    return out


def pretrain_check_plan(preset, domain, seeds, specialist_path=None, pretrain_iters=None, iters=None, data_root=None,
                        runs_dir=None, smoke=None, **_) -> Plan:
    """02: the generalist and the bicubic specialist of every seed (``catalogue.starting_runs``)."""
    runs = runs_root(runs_dir, smoke_default() if smoke is None else smoke)
    return _plan(C.starting_runs(preset, domain, seeds, runs, data_root, pretrain_iters, iters, specialist_path))


def static_plan(preset, domain, seed=0, iters=None, lambda_intra=1.0, lambda_inter=1.0, specialist_path=None,
                pretrain_iters=None, train_naive=False, device="auto", data_root=None, runs_dir=None, smoke=None,
                **_) -> Plan:
    """03: static PDD (the adapted specialist), what it starts from, and naive distillation on request."""
    runs = runs_root(runs_dir, smoke_default() if smoke is None else smoke)
    static = C.row_run("static PDD", preset, domain, seed, runs, data_root, iters,
                       _loss_overrides(lambda_intra, lambda_inter, device), pretrain_iters)
    if specialist_path:
        static.config.init_s = specialist_path
    named = {"static PDD": static}
    if train_naive:
        named["naive distillation"] = C.row_run("naive distillation", preset, domain, seed, runs, data_root, iters,
                                                pretrain_iters=pretrain_iters)
    starts = C.starting_runs(preset, domain, [seed], runs, data_root, pretrain_iters, iters, specialist_path)
    return _plan(starts, list(named.values()), **named)


def ema_plan(preset, domain, seed=0, iters=None, lambda_intra=1.0, lambda_inter=1.0, ema_decay=None,
             train_naive=False, compare_seeds=(), compare_rows=None, pretrain_iters=None, device="auto",
             data_root=None, runs_dir=None, smoke=None, **_) -> Plan:
    """04: EMA PDD, and the method comparison's runs for ``compare_seeds`` (its rows:
    ``compare_rows``), trained in one pool beside it."""
    runs = runs_root(runs_dir, smoke_default() if smoke is None else smoke)
    ema = C.row_run("EMA PDD", preset, domain, seed, runs, data_root, iters,
                    _loss_overrides(lambda_intra, lambda_inter, device, ema_decay), pretrain_iters)
    named = {"EMA PDD": ema}
    if compare_seeds:
        starts, pool, _ = C.training_plan(preset, domain, compare_seeds, compare_rows, runs, data_root, iters,
                                          pretrain_iters, extra=[ema])
    else:
        starts, pool = C.pretrain_runs(preset, domain, [seed], runs, data_root, pretrain_iters), [ema]
    if train_naive:
        named["naive distillation"] = C.row_run("naive distillation", preset, domain, seed, runs, data_root, iters,
                                                pretrain_iters=pretrain_iters)
        pool = pool + [named["naive distillation"]]
    return _plan(starts, pool, **named)


def chosen_ablations(variants=None) -> dict:
    """05's rows: every one of ``catalogue.ABLATIONS``, or those named in ``variants``."""
    return {k: v for k, v in C.ABLATIONS.items() if variants is None or k in variants}


def ablations_plan(preset, domain, seeds=(0,), iters=None, pretrain_iters=None, variants=None, data_root=None,
                   runs_dir=None, smoke=None, **_) -> Plan:
    """05: the chosen ablations for every seed, and what they start from."""
    runs = runs_root(runs_dir, smoke_default() if smoke is None else smoke)
    chosen = chosen_ablations(variants)
    starts, pool, _ = C.training_plan(preset, domain, seeds, list(chosen), runs, data_root, iters, pretrain_iters,
                                      variants=chosen)
    return _plan(starts, pool)


def tsne_plan(preset, domain, seed=0, iters=None, pretrain_iters=None, data_root=None, runs_dir=None, smoke=None,
              **_) -> Plan:
    """06: static and EMA PDD of one seed, whose features it embeds beside the starting models'."""
    runs = runs_root(runs_dir, smoke_default() if smoke is None else smoke)
    named = {m: C.row_run(m, preset, domain, seed, runs, data_root, iters, pretrain_iters=pretrain_iters)
             for m in ("static PDD", "EMA PDD")}
    starts = C.starting_runs(preset, domain, [seed], runs, data_root, pretrain_iters, iters)
    return _plan(starts, list(named.values()), **named)


def evidence_plan(preset, domain, seeds=(0,), methods=None, iters=None, pretrain_iters=None, patch_check=False,
                  data_root=None, runs_dir=None, smoke=None, **_) -> Plan:
    """07: the comparison's runs for ``seeds`` and ``methods`` (04's, at the same values), and EMA
    PDD at LR patch 48 with ``patch_check``."""
    runs = runs_root(runs_dir, smoke_default() if smoke is None else smoke)
    starts, pool, _ = C.training_plan(preset, domain, seeds, methods, runs, data_root, iters, pretrain_iters)
    named = {}
    if patch_check:
        named["EMA PDD, LR patch 48"] = C.row_run("EMA PDD", preset, domain, C.seed_list(seeds)[0], runs, data_root,
                                                  iters, {"patch": 48}, pretrain_iters)
    return _plan(starts, pool, list(named.values()), **named)


def train_plan(plan: Plan, parallel: int = 2, progress: bool = True) -> float:
    """Train what is missing of ``plan`` in the pool, wave after wave (``pool.train_runs``).
    Returns the wall seconds."""
    return sum(train_runs(wave, parallel=parallel, progress=progress) for wave in plan.waves)


PLANS = {"02": pretrain_check_plan, "03": static_plan, "04": ema_plan, "05": ablations_plan, "06": tsne_plan,
         "07": evidence_plan}


def _sized(smoke: bool, small, full):
    return small if smoke else full


# What each training notebook's parameters cell sets, at smoke size or not (tests/test_plans.py
# checks these against the cells).
DEFAULTS = {
    "02": lambda smoke: dict(smoke=smoke, domain="Synth-ISO", preset=_sized(smoke, "tiny", "scratch"), seeds=[0],
                             specialist_path=None, pretrain_iters=_sized(smoke, 12, None),
                             iters=_sized(smoke, 12, None), margin=0.5, n_boot=2000, data_root=None, runs_dir=None,
                             results_dir=None),
    "03": lambda smoke: dict(smoke=smoke, domain="Synth-ISO", preset=_sized(smoke, "tiny", "scratch"), seed=0,
                             iters=_sized(smoke, 12, None), lambda_intra=1.0, lambda_inter=1.0, specialist_path=None,
                             pretrain_iters=_sized(smoke, 12, None), train_naive=False, device="auto",
                             data_root=None, runs_dir=None, results_dir=None),
    "04": lambda smoke: dict(smoke=smoke, domain="Synth-ISO", preset=_sized(smoke, "tiny", "scratch"), seed=0,
                             iters=_sized(smoke, 12, None), lambda_intra=1.0, lambda_inter=1.0, ema_decay=None,
                             train_naive=False, compare_seeds=[0], compare_rows=None,
                             compare_last_k=_sized(smoke, 1, 2), pretrain_iters=_sized(smoke, 12, None),
                             device="auto", data_root=None, runs_dir=None, results_dir=None),
    "05": lambda smoke: dict(smoke=smoke, domain="Synth-ISO", preset="tiny", seeds=[0], iters=_sized(smoke, 8, None),
                             pretrain_iters=_sized(smoke, 12, None),
                             variants=_sized(smoke, ["EMA PDD", "R_intra only", "SingleFixed", "finetune control"],
                                             None),
                             last_k=_sized(smoke, 1, 2), parallel=2, data_root=None, runs_dir=None, results_dir=None),
    "06": lambda smoke: dict(smoke=smoke, domain="Synth-ISO", preset=_sized(smoke, "tiny", "scratch"), seed=0,
                             iters=_sized(smoke, 12, None), pretrain_iters=_sized(smoke, 12, None), layer="conv_first",
                             max_images=_sized(smoke, 2, None), pca_dims=_sized(smoke, 10, 50),
                             kl_dims=_sized(smoke, 5, 10), data_root=None, runs_dir=None, results_dir=None),
    "07": lambda smoke: dict(smoke=smoke, domain="Synth-ISO", preset=_sized(smoke, "tiny", "scratch"), seeds=[0],
                             methods=None, last_k=_sized(smoke, 1, 2), iters=_sized(smoke, 12, None),
                             pretrain_iters=_sized(smoke, 12, None), n_boot=2000, patch_check=False, data_root=None,
                             runs_dir=None, results_dir=None),
}


def notebook_values(key: str, parameters: dict | None = None, smoke: bool | None = None) -> dict:
    """The values notebook ``key`` runs with: its parameters cell's (``DEFAULTS``) at this size,
    with ``parameters`` over them as ``papermill -p`` injects them."""
    smoke = smoke_default() if smoke is None else smoke
    return {**DEFAULTS[key](smoke), **(parameters or {})}


def plan_for(key: str, parameters: dict | None = None, smoke: bool | None = None) -> Plan:
    """The plan of notebook ``key`` ("02".."07") at the values it runs with (``notebook_values``)."""
    if key not in PLANS:
        raise ValueError(f"notebook {key!r} has no training plan; these do: {', '.join(PLANS)}")
    return PLANS[key](**notebook_values(key, parameters, smoke))
