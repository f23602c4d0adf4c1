"""The comparison's rows and the runs they are: pure lookups that name configs and runs.

Nothing here trains or writes: a row, a starting model or a whole plan is a ``pdd.runs.Run``
(a config and, for a row, its name), and ``pdd.experiments.pool`` trains what a plan lists.
Run directories follow ``pdd.runs``; every path below is the same one the runs already on disk
have (tests/test_runs.py checks the whole list against a recording).

Rows (``METHODS``): the fine-tune controls, naive distillation, static and EMA PDD, the same
with KDSR as the generalist (``KDSR_ROWS``) and the authors' HR-aware self-supervised method
(``HR_AWARE_ROWS``); ``ABLATIONS``: the paper's ablations on top of EMA PDD (notebook 05).
Starting models: under ``scratch``/``tiny`` a generalist and a bicubic specialist pretrained
here per seed; under ``paper``/``cpu`` RealESRGAN_x4plus and, as the specialist, the fine-tune
control run (one training, two roles).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import ROOT, runs
from .. import hr_aware, kdsr_train
from ..config import (FROM_SCRATCH, SCRATCH_DISC_FEAT, TrainConfig, gan_stage_iters, make_config, pretrain_config,
                      pretrain_iters as default_pretrain_iters)
from ..runs import Run

# row name -> (mode, config overrides). The control has the same supervised loss as PDD,
# GAN term included; the GAN-free control shows what the GAN term does on its own.
# "generalist"/"specialist"/"kdsr" as init_s/init_g mean that starting model's weights file.
METHODS = {
    "finetune control": ("finetune", {}),
    "finetune control, no GAN": ("finetune", {"gan": False}),
    "naive distillation": ("naive", {}),
    "static PDD": ("static", {}),
    "EMA PDD": ("ema", {}),
    # From-scratch presets: static PDD starts from a pretrained specialist, so its control is
    # that specialist trained on with the same supervised loss (under cpu the specialist IS
    # the finetune control, so the row would repeat it).
    "specialist finetune control": ("finetune", {"init_s": "specialist"}),
}
GENERALIST = "generalist"
SPECIALIST = "specialist"
# PDD with KDSR (seed paper 002) as the generalist M_G: static PDD adapts the same specialist
# against a frozen KDSR; EMA PDD adapts the KDSR student itself (M_G = its EMA), beside its
# control (the KDSR fine-tuned with the same supervised loss). "kdsr" as init_s/init_g means
# the KDSR generalist's file (``kdsr_generalist_file``): released KDSRS-GAN, or companion-trained.
KDSR_GENERALIST = "KDSR generalist"
KDSR_ROWS = {
    "static PDD, KDSR generalist": ("static", {"init_g": "kdsr", "g_arch": "kdsr"}),
    "EMA PDD, KDSR generalist": ("ema", {"init_s": "kdsr", "s_arch": "kdsr"}),
    "finetune control, KDSR generalist": ("finetune", {"init_s": "kdsr", "s_arch": "kdsr"}),
}
METHODS.update(KDSR_ROWS)
# The HR-aware paper's method and its Tab. 2 ablations (stage A + stage B each; pdd.hr_aware).
# The comparison runs the method by default; the two ablations on request (``methods=``): their
# own stage A each, about 8 CPU-minutes per row and seed under `scratch`.
HR_AWARE_ROWS = tuple(hr_aware.METHOD_ROWS)
HR_AWARE_DEFAULT = "HR-aware fine-tuning"

# Ablations of the paper (Tab. 3, 7, 8, 9; Fig. 9, 13) as (mode, overrides) on top of EMA PDD.
# "generalist" as init_s means: start S from the generalist (SingleFixed: static mode, G = S's init).
ABLATIONS = {
    "EMA PDD": ("ema", {}),
    "R_intra only": ("ema", {"pdd.lambda_inter": 0.0}),
    "R_inter only": ("ema", {"pdd.lambda_intra": 0.0}),
    "both, no GAN on X^U": ("ema", {"pdd.lambda_gan": 0.0}),
    "R_intra l1 (not CE)": ("ema", {"pdd.intra_measure": "l1"}),
    "R_inter l1 (no Gram)": ("ema", {"pdd.inter_measure": "l1"}),
    "SingleFixed": ("static", {"init_s": "generalist"}),
    "X^L random bicubic/bilinear/area": ("ema", {"down": "random"}),
    "lambda1:lambda2 = 0.1": ("ema", {"pdd.lambda_intra": 0.1}),
    "lambda1:lambda2 = 10": ("ema", {"pdd.lambda_inter": 0.1}),
    "finetune control": ("finetune", {}),
}


# ------------------------------------------------------------------ row sets

def default_methods(preset: str) -> list[str]:
    return [m for m in METHODS if preset in FROM_SCRATCH or m != "specialist finetune control"] + [HR_AWARE_DEFAULT]


def all_methods(preset: str) -> list[str]:
    """Every row the comparison knows: the default ones and the HR-aware ablations."""
    return default_methods(preset) + [m for m in HR_AWARE_ROWS if m != HR_AWARE_DEFAULT]


def pdd_methods(preset: str) -> list[str]:
    """PDD's own rows (the controls, naive distillation, static and EMA PDD): the default rows
    without the seed papers' methods (the KDSR rows, HR-aware fine-tuning). Under `make
    reproduce` they leave out about a third of the training (README)."""
    return [m for m in default_methods(preset) if m not in KDSR_ROWS and m not in HR_AWARE_ROWS]


# The named row sets a notebook parameter or `pdd.reproduce --rows` can ask for.
ROW_SETS = {"default": default_methods, "pdd": pdd_methods, "all": all_methods}


def resolve_methods(preset: str, methods=None, variants: dict | None = None) -> list[str]:
    """The rows to compare: a list of row names as given; a name of ``ROW_SETS``; None: the
    ``variants``' rows if given (05's ablations), else the default rows."""
    if isinstance(methods, str):
        if methods not in ROW_SETS:
            raise ValueError(f"unknown row set {methods!r}; valid: {', '.join(ROW_SETS)}, or a list of rows")
        return ROW_SETS[methods](preset)
    return list(methods or variants or default_methods(preset))


def seed_list(seeds) -> list[int]:
    """Seeds as a list of ints (`papermill -p seeds "[0, 1]"` passes a string)."""
    if isinstance(seeds, str):
        seeds = json.loads(seeds)
    return [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds])]


def _runs_dir(runs_dir) -> Path:
    return Path(runs_dir) if runs_dir else ROOT / "runs"


# ------------------------------------------------------------------ set-ups: how the starting models and D are made

@dataclass(frozen=True)
class Setup:
    """How the starting models and the adapted runs' D are made.

    ``DEFAULT_SETUP``, the comparison's: under ``scratch``/``tiny`` starting models pretrained
    with pixel losses (plus, under ``tiny``, its one-stage full loss), the preset's D and D-only
    warm-up. ``fair_setup(preset)``, the length study's (issue 25; the rules and the runs that
    decided them: results/Synth-ISO/scratch/fair_setup/): the starting models get a GAN stage,
    the official 300 D-only warm-up, D of the scratch generator's width, and D's start as decided.
    A row's run under a set-up other than the default carries its ``name`` in its directory's name.
    """
    name: str = ""                      # "" for the default
    gan_stage: bool = False             # the starting models' GAN stage (config.pretrain_config(stage="gan"))
    disc_feat: int | None = None        # D's features in the adapted runs (None: the preset's)
    warmup_d_iters: int | None = None   # the adapted runs' D-only warm-up (None: the preset's)
    d_from_generalist: bool = False     # the adapted runs' D starts from the generalist's GAN-stage D
    gan_weight: float | None = None     # the GAN stage's GAN weight (None: config.SCRATCH_GAN_STAGE_WEIGHT)
    gan_iters: int | None = None        # the GAN stage's length (None: config.gan_stage_iters)

    def describe(self) -> str:
        """The set-up in a sentence, its deviations named (for every result made under it)."""
        if self == DEFAULT_SETUP:
            return "the comparison's set-up (pixel-trained starting models, the preset's D and D-only warm-up)"
        parts = [f"the {self.name!r} set-up:"]
        stage = [f"GAN weight {self.gan_weight:g}"] if self.gan_weight is not None else []
        stage += [f"{self.gan_iters:,} iterations"] if self.gan_iters is not None else []
        parts.append(("starting models with a GAN stage after the pixel stage"
                      + (f" ({', '.join(stage)})" if stage else ""))
                     if self.gan_stage else "the released (GAN-trained) generalist")
        if self.warmup_d_iters is not None:
            parts.append(f"{self.warmup_d_iters} D-only warm-up iterations")
        if self.disc_feat is not None:
            parts.append(f"a {self.disc_feat}-feature D (deviation: the official D has 64)")
        parts.append("D started from the generalist's GAN-stage D (deviation: the official configs start it from "
                     "random init)" if self.d_from_generalist else "D from random init")
        return parts[0] + " " + ", ".join(parts[1:])

    def fields(self, d_file) -> dict:
        """The config fields a row's run takes from the set-up (``d_file``: a callable giving the
        generalist's GAN-stage D, asked only where D starts from it)."""
        out = {} if self.disc_feat is None else {"disc_feat": self.disc_feat}
        if self.warmup_d_iters is not None:
            out["warmup_d_iters"] = self.warmup_d_iters
        if self.d_from_generalist:
            out["init_d"] = d_file()
        return out


DEFAULT_SETUP = Setup()
# R3 of results/Synth-ISO/scratch/fair_setup/RULES.md, decided on the fine-tune control's D alone
# (decisions.md there): from random init D failed the GAN gate, from the generalist's GAN-stage D it passed
FAIR_D_FROM_GENERALIST = True


def fair_setup(preset: str) -> Setup:
    """The set-up of the fair test (issue 25): under ``scratch`` the GAN-staged starting models, a
    32-feature D, the official 300 D-only warm-up, D's start as decided (``FAIR_D_FROM_GENERALIST``);
    under ``tiny`` the same wiring at smoke size (a 4-iteration GAN stage and warm-up); under
    ``cpu``/``paper`` the released, already GAN-trained generalist and the 300 warm-up."""
    if preset == "scratch":
        return Setup("fair", True, SCRATCH_DISC_FEAT, 300, FAIR_D_FROM_GENERALIST)
    if preset == "tiny":
        return Setup("fair", True, None, 4, FAIR_D_FROM_GENERALIST)
    return Setup("fair", False, None, 300, False)


def _setup(setup: Setup | None) -> Setup:
    return DEFAULT_SETUP if setup is None else setup


def _stage(setup: Setup | None) -> dict:
    """``pretrain_run``'s stage arguments under ``setup``: whether there is a GAN stage, its weight and length."""
    s = _setup(setup)
    return {"gan_stage": s.gan_stage, "gan_weight": s.gan_weight, "gan_iters": s.gan_iters}


# ------------------------------------------------------------------ the starting models (M_G, M_S)

def pretrain_run(preset: str, domain: str, role: str, seed: int, runs_dir, data_root=None,
                 pretrain_iters: int | None = None, gan_stage: bool = False, gan_weight: float | None = None,
                 gan_iters: int | None = None) -> Run:
    """A from-scratch preset's generalist or bicubic specialist (``config.pretrain_config``); with
    ``gan_stage`` its GAN stage (at ``gan_weight`` for ``gan_iters``, None: the stage's defaults),
    which starts from the pixel stage's final snapshot."""
    out = runs.pretrain_dir(runs_dir, preset, domain, role, seed, pretrain_iters, default_pretrain_iters(preset))
    pixel = Run(pretrain_config(preset, role, domain, seed, str(out), data_root, pretrain_iters))
    if not gan_stage:
        return pixel
    n = gan_iters or gan_stage_iters(preset)
    out = runs.pretrain_dir(runs_dir, preset, domain, role, seed, pretrain_iters, default_pretrain_iters(preset), n,
                            gan_weight)
    return Run(pretrain_config(preset, role, domain, seed, str(out), data_root, n, stage="gan",
                               init_s=str(pixel.final), gan_weight=gan_weight))


def pretrain_runs(preset: str, domain: str, seeds, runs_dir, data_root=None,
                  pretrain_iters: int | None = None, setup: Setup | None = None) -> list[Run]:
    """The from-scratch presets' pretraining runs (generalist + specialist per seed, and their GAN
    stages under a set-up that has them); [] otherwise."""
    if preset not in FROM_SCRATCH:
        return []
    setup = _setup(setup)
    stages = (False, True) if setup.gan_stage else (False,)
    return [pretrain_run(preset, domain, role, s, runs_dir, data_root, pretrain_iters, gan, setup.gan_weight,
                         setup.gan_iters)
            for gan in stages for s in seed_list(seeds) for role in (GENERALIST, SPECIALIST)]


def generalist_file(preset: str, domain: str, runs_dir, seed: int = 0, pretrain_iters: int | None = None,
                    setup: Setup | None = None) -> str:
    """The generalist's weights: RealESRGAN_x4plus, or the final snapshot of the small one the
    companion pretrains from scratch under ``scratch``/``tiny`` (one per seed; its GAN stage's
    under a set-up that has one)."""
    if preset not in FROM_SCRATCH:
        return "RealESRGAN_x4plus"
    return str(pretrain_run(preset, domain, GENERALIST, seed, runs_dir, pretrain_iters=pretrain_iters,
                            **_stage(setup)).final)


def generalist_d_file(preset: str, domain: str, runs_dir, seed: int = 0, pretrain_iters: int | None = None,
                      setup: Setup | None = None) -> str:
    """The D the generalist's GAN stage leaves (``pdd.runs.d_snapshot_path``): where the fair
    set-up starts the adapted runs' D from, if it does."""
    if preset not in FROM_SCRATCH:
        raise ValueError(f"under {preset!r} the generalist is a released file without its D; the adapted runs' D "
                         f"starts from random init")
    run = pretrain_run(preset, domain, GENERALIST, seed, runs_dir, pretrain_iters=pretrain_iters,
                       **{**_stage(setup), "gan_stage": True})
    return str(runs.d_snapshot_path(run.dir, run.config.iters))


def specialist_file(preset: str, domain: str, runs_dir, seed: int, iters: int | None = None,
                    pretrain_iters: int | None = None, setup: Setup | None = None) -> str:
    """The bicubic specialist static PDD starts from: under ``scratch``/``tiny`` the one
    pretrained from scratch on bicubic X^L (its GAN stage's under a set-up that has one); under
    ``paper``/``cpu`` the fine-tune control run (RealESRGAN fine-tuned on bicubic X^L: one
    training, two roles)."""
    if preset in FROM_SCRATCH:
        return str(pretrain_run(preset, domain, SPECIALIST, seed, runs_dir, pretrain_iters=pretrain_iters,
                                **_stage(setup)).final)
    length = iters if iters is not None else make_config(preset, "finetune").iters
    return str(runs.snapshot_path(runs.row_dir(runs_dir, preset, domain, "finetune control", seed), length))


def released_kdsr(preset: str) -> str | None:
    """The released KDSRS-GAN's path where the preset uses it: always under ``paper`` (an error
    says where to download it), under ``cpu`` when it is in the hub cache; else None."""
    from ..kdsr import resolve_kdsr
    from ..weights import WeightsNotFoundError

    if preset not in ("paper", "cpu"):
        return None
    try:
        return str(resolve_kdsr("KDSRS-GAN")[0])
    except WeightsNotFoundError:
        if preset == "paper":
            raise
        return None


def _kdsr_seed(preset: str, seed: int) -> int:
    """Under the from-scratch presets one KDSR generalist per seed, as the RRDBNet one; under
    ``cpu`` one companion-trained KDSR (seed 0) stands in for the released file for every seed."""
    return seed if preset in FROM_SCRATCH else 0


def kdsr_generalist_runs(preset: str, domain: str, seeds, runs_dir, data_root=None,
                         pretrain_iters: int | None = None) -> list[Run]:
    """The KDSR generalist's training stages (teacher, student) for each seed, where no released
    file is used ([] under ``paper``, or ``cpu`` with KDSRS-GAN in the hub cache)."""
    if released_kdsr(preset):
        return []
    iters = pretrain_iters if preset in FROM_SCRATCH else None
    seeds = sorted({_kdsr_seed(preset, s) for s in seed_list(seeds)})
    return [Run(c) for s in seeds for c in kdsr_train.generalist_configs(preset, domain, runs_dir, s, data_root, iters)]


def kdsr_generalist_file(preset: str, domain: str, runs_dir, seed: int = 0, pretrain_iters: int | None = None,
                         data_root=None) -> str:
    """The KDSR generalist's weights: the released KDSRS-GAN (``paper``; ``cpu`` when in the hub
    cache), else the final snapshot of the student stage of the small KDSR the companion trains."""
    released = released_kdsr(preset)
    if released:
        return released
    return str(kdsr_generalist_runs(preset, domain, [seed], runs_dir, data_root, pretrain_iters)[-1].final)


def starting_runs(preset: str, domain: str, seeds, runs_dir=None, data_root=None, pretrain_iters: int | None = None,
                  iters: int | None = None, specialist_path: str | None = None) -> list[Run]:
    """What the paper's Table 1 (notebook 02) trains: under ``scratch``/``tiny`` the pretrained
    generalist and specialist of every seed; under ``paper``/``cpu`` the fine-tune control of
    every seed (the specialist), unless ``specialist_path`` names one for every seed."""
    runs_dir = _runs_dir(runs_dir)
    if preset in FROM_SCRATCH:
        return pretrain_runs(preset, domain, seeds, runs_dir, data_root, pretrain_iters)
    if specialist_path:
        return []
    return [row_run("finetune control", preset, domain, s, runs_dir, data_root, iters) for s in seed_list(seeds)]


# ------------------------------------------------------------------ the rows

def uses_kdsr(cfg) -> bool:
    return "kdsr" in (getattr(cfg, "s_arch", None), getattr(cfg, "g_arch", None))


def row_run(method: str, preset: str, domain: str, seed: int, runs_dir, data_root=None,
            iters: int | None = None, overrides: dict | None = None,
            pretrain_iters: int | None = None, variants: dict | None = None, setup: Setup | None = None) -> Run:
    """One row (``METHODS`` or ``variants``, e.g. ``ABLATIONS``) for one seed, as a run named
    after the row: ``runs_dir/preset/domain/<slug>_s<seed>`` (plus a digest of ``overrides``),
    so that each distinct config trains once and is reused afterwards. An HR-aware row is its
    stage B (its stage A: ``hr_aware_configs``). ``setup``: how its starting models and D are
    made (``Setup``; a set-up other than the default puts its name in the run's)."""
    setup = _setup(setup)
    if setup != DEFAULT_SETUP and (variants is not None or method in HR_AWARE_ROWS or method in KDSR_ROWS):
        raise ValueError(f"the {setup.name!r} set-up applies to the PDD rows and their controls, not to {method!r}")
    runs_dir = _runs_dir(runs_dir)
    if variants is None and method in HR_AWARE_ROWS:
        return Run(hr_aware_configs(method, preset, domain, seed, runs_dir, data_root, iters, overrides,
                                    pretrain_iters)[1], row=method)
    table = variants or METHODS
    if method not in table:
        valid = list(table) + ([] if variants else list(HR_AWARE_ROWS))
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(valid)}")
    mode, extra = table[method]
    g_file = generalist_file(preset, domain, runs_dir, seed, pretrain_iters, setup)
    merged = {**extra, **(overrides or {})}
    if mode == "static" and "init_s" not in merged:  # paper Fig. 3a: the specialist is adapted
        merged["init_s"] = "specialist"
    starts = {"generalist": lambda: g_file,
              "specialist": lambda: specialist_file(preset, domain, runs_dir, seed, iters, pretrain_iters, setup),
              "kdsr": lambda: kdsr_generalist_file(preset, domain, runs_dir, seed, pretrain_iters, data_root)}
    merged = {k: (starts[v]() if k in ("init_s", "init_g") and v in starts else v) for k, v in merged.items()}
    out = runs.row_dir(runs_dir, preset, domain, method, seed, overrides, tag=setup.name)
    own = setup.fields(lambda: generalist_d_file(preset, domain, runs_dir, seed, pretrain_iters, setup))
    cfg = make_config(preset, mode, overrides={"init_s": g_file, "init_g": g_file, **own, **merged}, domain=domain,
                      seed=seed, data_root=data_root, out=str(out))
    if iters is not None:
        cfg.iters = iters
    return Run(cfg, row=method)


def method_config(method: str, preset: str, domain: str, seed: int, runs_dir, data_root=None,
                  iters: int | None = None, overrides: dict | None = None,
                  pretrain_iters: int | None = None, variants: dict | None = None) -> TrainConfig:
    """The config of one row for one seed (``row_run``'s)."""
    return row_run(method, preset, domain, seed, runs_dir, data_root, iters, overrides, pretrain_iters, variants).config


def hr_aware_configs(method: str, preset: str, domain: str, seed: int, runs_dir, data_root=None,
                     iters: int | None = None, overrides: dict | None = None,
                     pretrain_iters: int | None = None) -> tuple[hr_aware.HRAwareConfig, hr_aware.HRAwareConfig]:
    """(stage A, stage B) of one HR-aware row. M starts from the same generalist as every PDD
    row (under `scratch`/`tiny` the small one pretrained here, else RealESRGAN_x4plus); ``iters``
    sets stage B's length, as it sets the PDD rows'; stage A keeps its preset's."""
    init_m = generalist_file(preset, domain, runs_dir, seed, pretrain_iters)
    return hr_aware.method_configs(method, preset, domain, seed, runs_dir, data_root, init_m=init_m,
                                   stage_b_iters=iters, overrides=overrides)


def row_runs(preset: str, domain: str, seeds, methods=None, runs_dir=None, data_root=None,
             iters: int | None = None, pretrain_iters: int | None = None,
             variants: dict | None = None) -> list[Run]:
    """Every row's run for every seed (``row_run``), plus what a row starts from: under
    ``paper``/``cpu`` static PDD adapts the fine-tune control, so that run is added."""
    runs_dir = _runs_dir(runs_dir)
    methods = resolve_methods(preset, methods, variants)
    out = [row_run(m, preset, domain, s, runs_dir, data_root, iters, pretrain_iters=pretrain_iters, variants=variants)
           for s in seed_list(seeds) for m in methods]
    if preset not in FROM_SCRATCH and "finetune control" not in methods and \
            any(r.config.mode == "static" and "finetune-control" in r.config.init_s for r in out):
        out += [row_run("finetune control", preset, domain, s, runs_dir, data_root, iters,
                        pretrain_iters=pretrain_iters) for s in seed_list(seeds)]
    return out


def training_plan(preset: str, domain: str, seeds, methods=None, runs_dir=None, data_root=None,
                  iters: int | None = None, pretrain_iters: int | None = None, variants: dict | None = None,
                  extra: list[Run] = ()) -> tuple[list[Run], list[Run], list[Run]]:
    """What the comparison trains, in its order: (the starting models, every job of the rows'
    pool, the rows). Starts: under ``scratch``/``tiny`` the generalist and specialist, and the
    KDSR generalist's two stages when a KDSR row is asked for and no released file is used.
    Pool: the rows, each HR-aware stage A right before its stage B, and ``extra``."""
    runs_dir = _runs_dir(runs_dir)
    starts = pretrain_runs(preset, domain, seeds, runs_dir, data_root, pretrain_iters)
    methods = resolve_methods(preset, methods, variants)
    if any(m in KDSR_ROWS for m in methods):
        starts += kdsr_generalist_runs(preset, domain, seeds, runs_dir, data_root, pretrain_iters)
    rows = row_runs(preset, domain, seeds, methods, runs_dir, data_root, iters, pretrain_iters, variants)
    # An HR-aware row's stage B starts from its stage A (rows with the same stage A share it).
    # Both go first in the queue, B right behind its A: the pool starts B as soon as A is done
    # instead of after every other row, so the longest chain does not end the run alone.
    jobs: list[Run] = []
    for r in rows:
        if variants is None and r.row in HR_AWARE_ROWS:
            a = Run(hr_aware_configs(r.row, preset, domain, r.seed, runs_dir, data_root, iters,
                                     pretrain_iters=pretrain_iters)[0])
            jobs += [j for j in (a, r) if j.dir not in {k.dir for k in jobs}]
    jobs += list(extra)
    jobs += [r for r in rows if r.dir not in {j.dir for j in jobs}]
    return starts, jobs, rows
