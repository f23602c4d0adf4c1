"""The method comparison: generalist, fine-tune control(s), naive distillation, static
and EMA PDD, the same with KDSR as the generalist (``KDSR_ROWS``), and the authors' HR-aware
self-supervised fine-tuning (``HR_AWARE_ROWS``), over seeds and the last checkpoints, on a
domain's target test set and on the source protocol for the same images.

Training jobs run as separate ``python -m pdd.train --config`` (``pdd.hr_aware`` for the
HR-aware rows' two stages) processes, by default two at a time with one thread each (on a 2-core CPU two single-thread jobs beat one
two-thread job, DESIGN.md). Finished runs are reused; evaluations are cached per
(run, checkpoint, test set) in ``<run>/eval/``, so a rerun only computes what is missing.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import ROOT, cli
from . import hr_aware, kdsr_train
from .config import FROM_SCRATCH, TrainConfig, make_config, pretrain_config, pretrain_run_name
from .procenv import job_env
from .train import last_weights, load_rrdbnet_like, load_run_model, train

# row name -> (mode, config overrides). The control has the same supervised loss as PDD,
# GAN term included; the GAN-free control shows what the GAN term does on its own.
# "generalist"/"specialist" as init_s mean the starting model's weights file.
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


def uses_kdsr(cfg) -> bool:
    return "kdsr" in (getattr(cfg, "s_arch", None), getattr(cfg, "g_arch", None))


def _released_kdsr(preset: str) -> str | None:
    """The released KDSRS-GAN's path where the preset uses it: always under ``paper`` (an error
    says where to download it), under ``cpu`` when it is in the hub cache; else None."""
    from .kdsr import resolve_kdsr
    from .weights import WeightsNotFoundError

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


def kdsr_generalist_configs(preset: str, domain: str, seeds, runs_dir, data_root=None,
                            pretrain_iters: int | None = None) -> list:
    """The KDSR generalist's training stages (teacher, student) for each seed, where no released
    file is used ([] under ``paper``, or ``cpu`` with KDSRS-GAN in the hub cache)."""
    if _released_kdsr(preset):
        return []
    iters = pretrain_iters if preset in FROM_SCRATCH else None
    seeds = sorted({_kdsr_seed(preset, s) for s in seeds})
    return [c for s in seeds for c in kdsr_train.generalist_configs(preset, domain, runs_dir, s, data_root, iters)]


def kdsr_generalist_file(preset: str, domain: str, runs_dir, seed: int = 0, pretrain_iters: int | None = None,
                         data_root=None) -> str:
    """The KDSR generalist's weights file: the released KDSRS-GAN (``paper``; ``cpu`` when in the
    hub cache), else the student stage of the small KDSR the companion trains (trained here if
    missing; ``compare_methods`` trains it in its pretraining pool first)."""
    released = _released_kdsr(preset)
    if released:
        return released
    seed = _kdsr_seed(preset, seed)
    student = kdsr_generalist_configs(preset, domain, [seed], runs_dir, data_root, pretrain_iters)[-1]
    f = Path(student.out) / "weights" / f"net_g_{student.iters:06d}.pth"
    if not f.exists() and not _PLANNING:
        iters = pretrain_iters if preset in FROM_SCRATCH else None
        kdsr_train.kdsr_generalist(preset, domain, data_root, seed, iters, runs_dir, progress=False)
    return str(f)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def pretrain_dir(preset: str, domain: str, runs_dir, role: str, seed: int, iters: int | None = None) -> Path:
    return Path(runs_dir) / preset / domain / pretrain_run_name(preset, role, seed, iters)


def pretrain_configs(preset: str, domain: str, seeds, runs_dir, data_root=None,
                     pretrain_iters: int | None = None) -> list[TrainConfig]:
    """The from-scratch presets' pretraining runs (generalist + specialist per seed); [] otherwise."""
    if preset not in FROM_SCRATCH:
        return []
    return [pretrain_config(preset, role, domain, s, str(pretrain_dir(preset, domain, runs_dir, role, s, pretrain_iters)),
                            data_root, pretrain_iters) for s in seeds for role in ("generalist", "specialist")]


# True while training_jobs plans: a starting model's file is named, never trained in-process
# (the pool trains it first, and the rows that start from it wait for it: _needs).
_PLANNING = False


@contextlib.contextmanager
def _paths_only():
    global _PLANNING
    before, _PLANNING = _PLANNING, True
    try:
        yield
    finally:
        _PLANNING = before


def _pretrained_file(preset, domain, runs_dir, role, seed, pretrain_iters) -> str:
    cfg = pretrain_config(preset, role, domain, seed, str(pretrain_dir(preset, domain, runs_dir, role, seed, pretrain_iters)),
                          iters=pretrain_iters)
    f = Path(cfg.out) / "weights" / f"net_g_{cfg.iters:06d}.pth"
    if not f.exists() and not _PLANNING:  # not pretrained yet (compare_methods pretrains in parallel first)
        pretrained(role, preset, domain, seed=seed, iters=pretrain_iters, runs_dir=runs_dir, progress=False)
    return str(f)


def generalist_file(preset: str, domain: str, runs_dir, seed: int = 0, pretrain_iters: int | None = None) -> str:
    """The generalist's weights name/path: RealESRGAN_x4plus, or the small one the companion
    pretrains from scratch under ``scratch``/``tiny`` (one per seed)."""
    if preset not in FROM_SCRATCH:
        return "RealESRGAN_x4plus"
    return _pretrained_file(preset, domain, runs_dir, "generalist", seed, pretrain_iters)


def specialist_file(preset: str, domain: str, runs_dir, seed: int, iters: int | None = None,
                    pretrain_iters: int | None = None) -> str:
    """The bicubic specialist static PDD starts from: under ``scratch``/``tiny`` the one
    pretrained from scratch on bicubic X^L; under ``paper``/``cpu`` the fine-tune control run
    (RealESRGAN fine-tuned on bicubic X^L: one training, two roles)."""
    if preset in FROM_SCRATCH:
        return _pretrained_file(preset, domain, runs_dir, "specialist", seed, pretrain_iters)
    return str(Path(runs_dir) / preset / domain / f"{_slug('finetune control')}_s{seed}" / "weights"
               / f"net_g_{_iters(preset, iters, 'finetune'):06d}.pth")


# ------------------------------------------------------------------ the starting models (M_G, M_S)

def pretrained(role: str, preset: str, domain: str, data_root=None, seed: int = 0, iters: int | None = None,
               runs_dir="runs", progress: bool = True):
    """A from-scratch preset's generalist or bicubic specialist (``config.pretrain_config``),
    trained once into ``runs_dir/preset/domain/pretrained-<role>_s<seed>`` and reused (resumed
    if interrupted). Eval mode, with ``weights_source`` and ``run_dir``."""
    out = Path(runs_dir) / preset / domain / pretrain_run_name(preset, role, seed, iters)
    cfg = pretrain_config(preset, role, domain, seed, str(out), data_root, iters)
    run = out if (out / "weights" / f"net_g_{cfg.iters:06d}.pth").exists() else train(cfg, progress=progress)
    model = load_rrdbnet_like(cfg, run / "weights" / f"net_g_{cfg.iters:06d}.pth")
    model.run_dir = run
    return model


def generalist(preset: str = "cpu", domain: str | None = None, data_root=None, seed: int = 0,
               iters: int | None = None, runs_dir="runs", progress: bool = True):
    """M_G: RealESRGAN_x4plus under ``paper``/``cpu``; under ``scratch``/``tiny`` a small
    RRDBNet pretrained here from scratch on the second-order pipeline (cached in runs_dir).
    Eval mode, with ``weights_source`` (and ``run_dir`` when the companion trained it)."""
    from .weights import load_rrdbnet

    if preset not in FROM_SCRATCH:
        return load_rrdbnet("RealESRGAN_x4plus")
    return pretrained("generalist", preset, domain or make_config(preset).domain, data_root, seed, iters,
                      runs_dir, progress)


def specialist(preset: str = "cpu", domain: str | None = None, data_root=None, seed: int = 0,
               path: str | None = None, iters: int | None = None, runs_dir="runs", progress: bool = True,
               pretrain_iters: int | None = None):
    """The bicubic specialist: the file ``path`` when given (e.g. the official bicubic ESRGAN);
    under ``scratch``/``tiny`` a small RRDBNet pretrained here from scratch on bicubic X^L;
    under ``paper``/``cpu`` RealESRGAN_x4plus fine-tuned on bicubic X^L by the companion
    (mode ``finetune``, full supervised loss with GAN, ``iters`` iterations) — the same run
    as the "finetune control" row of ``pdd.experiments`` (one training, two roles)."""
    from .weights import load_rrdbnet

    if path:
        return load_rrdbnet(path)
    domain = domain or make_config(preset).domain
    if preset in FROM_SCRATCH:
        return pretrained("specialist", preset, domain, data_root, seed, pretrain_iters, runs_dir, progress)
    cfg = method_config("finetune control", preset, domain, seed, runs_dir, data_root, iters)
    run = train(cfg, progress=progress)
    model = load_rrdbnet_like(cfg, last_weights(run))
    model.run_dir = run
    return model


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


def _digest(overrides: dict) -> str:
    """8 hex digits naming a config change in a run directory's name."""
    return hashlib.sha1(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]


def method_config(method: str, preset: str, domain: str, seed: int, runs_dir, data_root=None,
                  iters: int | None = None, overrides: dict | None = None,
                  pretrain_iters: int | None = None, variants: dict | None = None) -> TrainConfig:
    """The TrainConfig of one row (``METHODS`` or ``variants``, e.g. ``ABLATIONS``) for one seed.

    Its run directory is ``runs_dir/preset/domain/<slug>_s<seed>`` (plus a hash of
    ``overrides``), so each distinct config trains once and is reused afterwards."""
    if variants is None and method in HR_AWARE_ROWS:
        return hr_aware_configs(method, preset, domain, seed, runs_dir, data_root, iters, overrides, pretrain_iters)[1]
    table = variants or METHODS
    if method not in table:
        valid = list(table) + ([] if variants else list(HR_AWARE_ROWS))
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(valid)}")
    mode, extra = table[method]
    g_file = generalist_file(preset, domain, runs_dir, seed, pretrain_iters)
    name = f"{_slug(method)}_s{seed}"
    if overrides:  # a changed config must not resume another config's run
        name = f"{_slug(method)}-{_digest(overrides)}_s{seed}"
    merged = {**extra, **(overrides or {})}
    if mode == "static" and "init_s" not in merged:  # paper Fig. 3a: the specialist is adapted
        merged["init_s"] = "specialist"
    starts = {"generalist": lambda: g_file,
              "specialist": lambda: specialist_file(preset, domain, runs_dir, seed, iters, pretrain_iters),
              "kdsr": lambda: kdsr_generalist_file(preset, domain, runs_dir, seed, pretrain_iters, data_root)}
    merged = {k: (starts[v]() if k in ("init_s", "init_g") and v in starts else v) for k, v in merged.items()}
    cfg = make_config(preset, mode, overrides={"init_s": g_file, "init_g": g_file, **merged}, domain=domain,
                      seed=seed, data_root=data_root, out=str(Path(runs_dir) / preset / domain / name))
    if iters is not None:
        cfg.iters = iters
    return cfg


def hr_aware_configs(method: str, preset: str, domain: str, seed: int, runs_dir, data_root=None,
                     iters: int | None = None, overrides: dict | None = None,
                     pretrain_iters: int | None = None) -> tuple[hr_aware.HRAwareConfig, hr_aware.HRAwareConfig]:
    """(stage A, stage B) of one HR-aware row. M starts from the same generalist as every PDD
    row (under `scratch`/`tiny` the small one pretrained here, else RealESRGAN_x4plus); ``iters``
    sets stage B's length, as it sets the PDD rows'; stage A keeps its preset's."""
    init_m = generalist_file(preset, domain, runs_dir, seed, pretrain_iters)
    cfg_a, cfg_b = hr_aware.method_configs(method, preset, domain, seed, runs_dir, data_root, init_m=init_m,
                                           stage_b_iters=iters, overrides=overrides)
    if overrides:  # a changed config must not resume another config's run (as method_config)
        out = Path(cfg_b.out)
        cfg_b.out = str(out.with_name(out.name.replace(f"_s{seed}", f"-{_digest(overrides)}_s{seed}")))
    return cfg_a, cfg_b


def is_hr_aware(cfg) -> bool:
    return isinstance(cfg, hr_aware.HRAwareConfig)


def _pdd_row(cfgs):
    """The config a table's record describes (precision, patch, batch): the first PDD-trainer row."""
    return next((c for c in cfgs if not is_hr_aware(c)), cfgs[0])


def kdsr_generalist_source(cfgs) -> str | None:
    """What the KDSR rows' generalist is, in words: the released file, or the companion-trained
    small KDSR (read from its student run's config.json) and that it is NOT the released model."""
    c = next((c for c in cfgs if uses_kdsr(c)), None)
    if c is None:
        return None
    f = Path(c.init_s if c.s_arch == "kdsr" else c.init_g)
    meta = f.parents[1] / "config.json" if f.suffix == ".pth" else None
    if meta is None or not meta.exists():
        return f"KDSR generalist: {f} (a KDSR student file; the released KDSRS-GAN when named so)"
    k = json.loads(meta.read_text())["config"]
    return "KDSR generalist: " + kdsr_train.NOT_RELEASED.format(
        variant=k["variant"], iters=f"{k['iters']} (teacher) + {k['iters']} (student)",
        data=k.get("hr_dir") or f"the clean photos of {k['domain']}") + f" [{f}]"


def deviation_lines(cfgs) -> list[str]:
    """Markdown lines naming what the HR-aware rows' runs changed from their paper (offline
    fallbacks, the reduced stage A, ...), read from each run's config.json, and which KDSR the
    KDSR rows used; [] without such rows."""
    kdsr_line = kdsr_generalist_source(cfgs)
    head = ["", kdsr_line] if kdsr_line else []
    seen: dict[str, list[str]] = {}
    for c in cfgs:
        if is_hr_aware(c) and (Path(c.out) / "config.json").exists():
            own = hr_aware.run_deviations(c.out)
            for d in own:
                if d.startswith("(stage A) ") and d[len("(stage A) "):] in own:
                    continue  # stage A's copy of a fallback stage B also uses
                seen.setdefault(d, []).append(f"{method_name(c)} s{c.seed}")
    if not seen:
        return head
    return head + ["", "Deviations of the HR-aware rows from their paper (recorded by each run):"] + \
        [f"- {d} [{', '.join(rows)}]" for d, rows in seen.items()]


def _iters(preset, iters, mode):
    return iters if iters is not None else make_config(preset, mode).iters


def is_finished(cfg: TrainConfig) -> bool:
    return (Path(cfg.out) / "weights" / f"net_g_{cfg.iters:06d}.pth").exists()


def _needs(cfg) -> set[str]:
    """Run directories this job starts from: the run whose snapshot a row's S or G is (the cpu
    preset's fine-tune control as static PDD's specialist, the KDSR generalist's student
    stage), an HR-aware stage B's stage A and M, a KDSR stage's teacher and starting run."""
    if is_hr_aware(cfg):
        if cfg.stage != "B":
            return set()
        return ({str(Path(cfg.rec_net))} if cfg.rec_net else set()) | \
            ({str(Path(cfg.init_m).parents[1])} if cfg.init_m and Path(cfg.init_m).suffix == ".pth" else set())
    if isinstance(cfg, kdsr_train.KDSRTrainConfig):
        return {str(Path(p)) for p in (cfg.teacher, cfg.init) if p}
    return {str(Path(p).parents[1]) for p in (cfg.init_s, cfg.init_g) if p and Path(p).suffix == ".pth"}


def run_methods(cfgs: list, parallel: int = 2, threads: int | None = None, progress: bool = True,
                job_timeout_s: float | None = None) -> float:
    """Train every unfinished config in subprocesses (``pdd.train``, ``pdd.hr_aware`` for an
    HR-aware stage, ``pdd.kdsr_train`` for a KDSR stage), ``parallel`` at a time; a job whose
    starting run (``_needs``) is among the unfinished ones waits for it. Returns the wall time
    in seconds. A failed job raises with its log.

    ``threads`` per job; None: the machine's cores shared among the jobs that can run now, so
    that a job started with nothing beside it (a single run, the last of a wave) uses them all.
    ``job_timeout_s``: a job running longer is stopped and raised as hung (None: no limit).
    Whatever stops the pool (a failure, a hang, Ctrl-C) stops its running jobs; their last
    checkpoints stay, so a rerun resumes them."""
    t0 = time.time()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    queue = [c for c in cfgs if not is_finished(c)]
    running: list[tuple[subprocess.Popen, object, Path, float]] = []
    try:
        while queue or running:
            pending = {str(Path(c.out)) for c in queue} | {str(item[2]) for item in running}
            ready = [c for c in queue if not (_needs(c) & pending)]
            if not ready and not running:
                raise RuntimeError(f"jobs wait on each other: {[c.out for c in queue]}")
            while ready and len(running) < parallel:
                cfg = ready.pop(0)
                queue.remove(cfg)
                cfg.threads = threads or max(1, cores // min(parallel, len(ready) + len(running) + 1))
                out = Path(cfg.out)
                out.mkdir(parents=True, exist_ok=True)
                (out / "requested_config.json").write_text(cfg.to_json())
                env = job_env(cfg.threads)
                module = ("pdd.hr_aware" if is_hr_aware(cfg) else "pdd.kdsr_train"
                          if isinstance(cfg, kdsr_train.KDSRTrainConfig) else "pdd.train")
                with open(out / "train.log", "w") as log:
                    p = subprocess.Popen([sys.executable, "-m", module, "--config", str(out / "requested_config.json"),
                                          "--no-progress"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
                running.append((p, cfg, out, time.time()))
                if progress:
                    print(f"[{time.time() - t0:6.0f} s] started  {out.name} ({cfg.mode}, {cfg.iters} iterations, "
                          f"{cfg.threads} thread{'s' if cfg.threads > 1 else ''})", flush=True)
            time.sleep(2)
            for item in list(running):
                p, cfg, out, started = item
                if p.poll() is None:
                    if job_timeout_s is not None and time.time() - started > job_timeout_s:
                        raise RuntimeError(f"training hung ({cfg.mode}, seed {cfg.seed}, {out}): still running after "
                                           f"{job_timeout_s:.0f} s; stopped. Its log: {out / 'train.log'}")
                    continue
                running.remove(item)
                if p.returncode != 0:
                    tail = (out / "train.log").read_text()[-3000:]
                    raise RuntimeError(f"training failed ({cfg.mode}, seed {cfg.seed}, {out}):\n{tail}")
                if progress:
                    print(f"[{time.time() - t0:6.0f} s] finished {out.name}", flush=True)
    finally:
        for p, *_ in running:
            p.terminate()
        for p, *_ in running:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return time.time() - t0


def _eval_cache_file(cache_dir: Path, weights_file: Path, set_name: str) -> Path:
    return cache_dir / f"{weights_file.stem}__{_slug(set_name)}.csv"


def _eval_cached(model_loader, weights_file: Path, cache_dir: Path, test_sets: dict, metrics: dict) -> pd.DataFrame:
    from .evaluate import evaluate
    frames = []
    model = None
    for set_name, pairs in test_sets.items():
        cache = _eval_cache_file(cache_dir, weights_file, set_name)
        if cache.exists():
            df = pd.read_csv(cache)
        else:
            model = model or model_loader()
            df = evaluate(model, pairs, metrics, progress=False)
            cache.parent.mkdir(parents=True, exist_ok=True)
            # written whole or not at all: a run stopped mid-write must not leave a short cache
            part = cache.with_name(cache.name + f".{os.getpid()}.part")
            df.to_csv(part, index=False)
            part.replace(cache)
        df["test set"] = set_name
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


@dataclass
class EvalItem:
    """One model to score: how to load it, its weights file (names the cache), the cache folder,
    and the labels its rows get (method, seed, iteration)."""
    load: Callable
    weights_file: Path
    cache_dir: Path
    labels: dict

    def cached(self, test_sets: dict) -> bool:
        return all(_eval_cache_file(self.cache_dir, self.weights_file, s).exists() for s in test_sets)


def eval_workers(n_items: int) -> int:
    """How many models to score at once: one per core (two on the development machine), at one
    torch thread each, as the training pool does; one on a GPU (it is fast enough alone)."""
    import torch

    if torch.cuda.is_available() or n_items < 2:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 4, n_items))


def evaluate_items(items: list[EvalItem], test_sets: dict, metrics: dict, workers: int | None = None,
                   progress: bool = True) -> list[pd.DataFrame]:
    """Per-image metrics of every item (``_eval_cached``: a cached score is read, not recomputed),
    in the items' order, each frame labelled. The uncached ones are scored ``workers`` at a time
    (None: ``eval_workers``) in threads at one torch thread each: on a 2-core Xeon two such
    threads score 1.46x as fast as one model at a time on two threads (SSIM's float64 filters
    and NIQE's per-block work spread badly over threads; benchmarks/evaluation.py), with the
    numbers each model gets scored alone at one thread (the metrics hold no state between
    calls). Every finished score is cached at once, so a failure or an interrupt loses only the
    models being scored."""
    import torch
    from tqdm.auto import tqdm

    todo = list({(it.cache_dir, it.weights_file.stem): it for it in items if not it.cached(test_sets)}.values())
    workers = eval_workers(len(todo)) if workers is None else max(1, int(workers))
    score = lambda it: _eval_cached(it.load, it.weights_file, it.cache_dir, test_sets, metrics)  # noqa: E731
    bar = tqdm(total=len(todo), desc="evaluate", disable=not progress or not todo)
    if workers > 1:
        threads = torch.get_num_threads()
        cudnn = torch.backends.cudnn
        # pyiqa's forward sets cuDNN's flags and restores them on exit: interleaved calls in two
        # threads could leave another thread's setting behind, so they are put back afterwards
        with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic):
            torch.set_num_threads(1)
            try:
                pool = ThreadPoolExecutor(workers)
                try:
                    for _ in pool.map(score, todo):
                        bar.update()
                finally:  # on a failure or Ctrl-C: the models being scored finish (and are cached), no new one starts
                    pool.shutdown(wait=True, cancel_futures=True)
            finally:
                torch.set_num_threads(threads)
    else:
        for it in todo:
            score(it)
            bar.update()
    bar.close()
    return [score(it).assign(**it.labels) for it in items]


def evaluate_methods(cfgs: list[TrainConfig], test_sets: dict, metrics: dict, last_k: int = 2,
                     runs_dir=None, progress: bool = True, pretrain_iters: int | None = None,
                     variants: dict | None = None, workers: int | None = None) -> pd.DataFrame:
    """Per-image metrics for the generalist and for the last ``last_k`` EMA snapshots of every run
    (``workers`` models at a time, ``evaluate_items``).

    Returns a long frame: method, seed, iteration, test set, name, metric columns.
    """
    from .weights import load_rrdbnet

    items = []
    c0 = cfgs[0]
    runs_dir = Path(runs_dir) if runs_dir else Path(c0.out).parents[2]
    arch = dict(num_feat=c0.num_feat, num_block=c0.num_block, num_grow_ch=c0.num_grow_ch)
    if c0.preset in FROM_SCRATCH:
        # one pretrained generalist and specialist per seed: rows carry their seed, and gains
        # pair each run with the starting models of its own seed
        for seed in sorted({c.seed for c in cfgs}):
            for role, fn in ((GENERALIST, generalist_file), (SPECIALIST, specialist_file)):
                f = Path(fn(c0.preset, c0.domain, runs_dir, seed, pretrain_iters=pretrain_iters))
                items.append(EvalItem(lambda f=f: load_rrdbnet(str(f), **arch), f, f.parents[1] / "eval",
                                      dict(method=role, seed=seed, iteration=0)))
    else:
        g_file = generalist_file(c0.preset, c0.domain, runs_dir, pretrain_iters=pretrain_iters)
        items.append(EvalItem(lambda: load_rrdbnet(g_file, **arch), Path("RealESRGAN_x4plus"),
                              runs_dir / c0.preset / c0.domain / "generalist_eval",
                              dict(method=GENERALIST, seed=-1, iteration=0)))
    if any(uses_kdsr(c) for c in cfgs):
        items += _kdsr_generalist_items(c0.preset, c0.domain, sorted({c.seed for c in cfgs}), runs_dir, pretrain_iters)
    for cfg in cfgs:
        snaps = sorted((Path(cfg.out) / "weights").glob("net_g_*.pth"))
        if not snaps:
            raise FileNotFoundError(f"run {cfg.out} has no weights: train it first (run_methods)")
        items += [EvalItem(lambda c=cfg, s=s: load_run_model(c, s), s, Path(cfg.out) / "eval",
                           dict(method=method_name(cfg, variants), seed=cfg.seed, iteration=int(s.stem.split("_")[-1])))
                  for s in snaps[-last_k:]]
    frames = evaluate_items(items, test_sets, metrics, workers, progress)
    cols = ["method", "seed", "iteration", "test set", "name"]
    out = pd.concat(frames, ignore_index=True)
    return out[cols + [c for c in out.columns if c not in cols]]


def _kdsr_generalist_items(preset, domain, seeds, runs_dir, pretrain_iters=None) -> list[EvalItem]:
    """The KDSR generalist to score: one per seed under the from-scratch presets (paired
    with that seed's runs), else one model for every seed (seed -1, as a released generalist)."""
    from .kdsr import load_kdsr

    items = []
    for seed in (seeds if preset in FROM_SCRATCH else [-1]):
        f = Path(kdsr_generalist_file(preset, domain, runs_dir, max(seed, 0), pretrain_iters))
        inside = f.resolve().is_relative_to(Path(runs_dir).resolve())
        cache = f.parents[1] / "eval" if inside else Path(runs_dir) / preset / domain / "kdsr-generalist_eval"
        items.append(EvalItem(lambda f=f: load_kdsr(f, role="student"), f, cache,
                              dict(method=KDSR_GENERALIST, seed=seed, iteration=0)))
    return items


def method_name(cfg, variants: dict | None = None) -> str:
    stem = Path(cfg.out).name.rsplit("_s", 1)[0]
    if is_hr_aware(cfg):  # <slug>, or <slug>-transductive / -<digest of overrides>
        return next((m for m in HR_AWARE_ROWS if stem == _slug(m) or stem.startswith(_slug(m) + "-")), cfg.mode)
    for name, (mode, extra) in (variants or METHODS).items():
        if mode == cfg.mode and \
                (stem == _slug(name) or stem.startswith(_slug(name) + "-") and len(stem) == len(_slug(name)) + 9):
            return name
    return cfg.mode


def summarize_methods(per_image: pd.DataFrame, metrics=("psnr", "psnr_cc", "ssim", "niqe", "lpips", "nrqm")) -> pd.DataFrame:
    """Mean and spread per (method, test set) over seeds × checkpoints.

    Each (seed, checkpoint) run is first averaged over images; ``mean`` and ``std`` are
    then taken over those runs (std NaN with one run), ``runs`` counts them. ``gain`` is
    the mean paired per-image difference to the generalist on the same images.
    """
    from .evaluate import baseline_values

    metrics = [m for m in metrics if m in per_image.columns]
    rows = []
    for (method, test_set), grp in per_image.groupby(["method", "test set"], sort=False):
        run_means = grp.groupby(["seed", "iteration"])[metrics].mean()
        row = {"method": method, "test set": test_set, "runs": len(run_means)}
        for m in metrics:
            row[m] = run_means[m].mean()
            row[m + " std"] = run_means[m].std() if len(run_means) > 1 else np.nan
            row[m + " gain"] = (grp[m].values - baseline_values(per_image, GENERALIST, test_set, grp, m)).mean()
        rows.append(row)
    return pd.DataFrame(rows)


def starting_models(preset: str, domain: str, seeds=(0,), runs_dir=None, data_root=None, metrics=None,
                    pretrain_iters: int | None = None, iters: int | None = None, specialist_path: str | None = None,
                    parallel: int = 2, progress: bool = True) -> dict:
    """The paper's Table 1 on a domain: train what is missing of the generalist and the bicubic
    specialist of every seed, evaluate both on the target test set and the source protocol.

    Under ``scratch``/``tiny`` both are pretrained here from scratch, one pair per seed; under
    ``paper``/``cpu`` the generalist is RealESRGAN_x4plus and the specialist the fine-tune
    control run of each seed (or ``specialist_path`` for every seed).
    Returns {"per_image" (method generalist/specialist), "runs" {(role, seed): run dir}, "train_s"}.
    """
    from .data import open_domain
    from .evaluate import create_metrics
    from .weights import load_rrdbnet

    runs_dir = Path(runs_dir) if runs_dir else ROOT / "runs"
    seeds = _seed_list(seeds)
    if preset in FROM_SCRATCH:
        cfgs = pretrain_configs(preset, domain, seeds, runs_dir, data_root, pretrain_iters)
    else:
        cfgs = [] if specialist_path else [method_config("finetune control", preset, domain, s, runs_dir, data_root,
                                                         iters) for s in seeds]
    train_s = run_methods(cfgs, parallel=parallel, progress=progress)
    dom = open_domain(domain, data_root)
    metrics = metrics or create_metrics()
    test_sets = {"target": dom.test_pairs, "source": dom.source_test_pairs}
    arch = dict(num_feat=make_config(preset).num_feat, num_block=make_config(preset).num_block,
                num_grow_ch=make_config(preset).num_grow_ch)
    files = {}
    for s in seeds:
        files[(GENERALIST, s if preset in FROM_SCRATCH else -1)] = generalist_file(preset, domain, runs_dir, s, pretrain_iters)
        files[(SPECIALIST, s if not specialist_path else -1)] = (
            specialist_path or specialist_file(preset, domain, runs_dir, s, iters, pretrain_iters))
    items = []
    for (role, s), f in files.items():
        # a run's weights cache beside the run; a released name or a user's file under runs/
        inside = Path(f).exists() and Path(f).resolve().is_relative_to(runs_dir.resolve())
        cache = Path(f).parents[1] / "eval" if inside else runs_dir / preset / domain / f"{role}_eval"
        items.append(EvalItem(lambda f=f: load_rrdbnet(str(f), **arch), Path(f), cache,
                              dict(method=role, seed=s, iteration=0)))
    frames = evaluate_items(items, test_sets, metrics, progress=progress)
    runs = {(role, s): Path(f).parents[1] for (role, s), f in files.items() if Path(f).exists()}
    cols = ["method", "seed", "iteration", "test set", "name"]
    per_image = pd.concat(frames, ignore_index=True)
    return {"per_image": per_image[cols + [c for c in per_image.columns if c not in cols]], "runs": runs,
            "train_s": train_s}


def _seed_list(seeds) -> list[int]:
    if isinstance(seeds, str):  # `papermill -p seeds "[0, 1]"` passes a string
        seeds = json.loads(seeds)
    return [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds])]


# (method, the models it is compared with): the adapted specialist against both starting models
# and its control; EMA PDD against the generalist and its control.
CLAIM_PAIRS = (("static PDD", (SPECIALIST, GENERALIST, "specialist finetune control")),
               ("EMA PDD", (GENERALIST, "finetune control")),
               ("naive distillation", (GENERALIST,)),
               # the same with KDSR as M_G, and against the RRDBNet generalist's rows
               (KDSR_GENERALIST, (GENERALIST,)),
               ("static PDD, KDSR generalist", (SPECIALIST, KDSR_GENERALIST, GENERALIST, "static PDD")),
               ("EMA PDD, KDSR generalist", (KDSR_GENERALIST, "finetune control, KDSR generalist", "EMA PDD")))


def claim_table(per_image: pd.DataFrame, metrics=("psnr", "niqe"), sides=("target", "source"),
                n_boot: int = 2000) -> pd.DataFrame:
    """Paired per-image differences with cluster-bootstrap CIs for ``CLAIM_PAIRS``: "adapted
    specialist vs specialist vs generalist vs control", on the target and the source."""
    from .evaluate import paired_difference

    present = set(per_image.method)
    spec = SPECIALIST if SPECIALIST in present else "finetune control"  # cpu: the control IS the specialist
    rows = []
    for method, bases in CLAIM_PAIRS:
        for base in bases:
            base = spec if base == SPECIALIST else base
            if method not in present or base not in present or base == method:
                continue
            for m in metrics:
                if m in per_image.columns and per_image[m].notna().any():
                    rows += [paired_difference(per_image, method, base, side, m, n_boot=n_boot) for side in sides]
    return pd.DataFrame(rows).drop_duplicates(subset=["method", "baseline", "test set", "metric"])


def claim_verdict(per_image: pd.DataFrame, test_set: str = "target", source: str = "source",
                  n_boot: int = 2000) -> list[str]:
    """Sentences, computed from paired per-image differences with cluster-bootstrap CIs, on
    the paper's claim: the adapted specialist (static PDD, Fig. 3a) beats BOTH starting
    models on the target without losing the specialist's source quality; EMA PDD beats the
    generalist; each beats the control trained with the same supervised loss and no
    distillation (else a gain is supervised fine-tuning, not distillation)."""
    from .evaluate import paired_difference

    present = set(per_image.method)
    spec = SPECIALIST if SPECIALIST in present else "finetune control"  # cpu: the control IS the specialist
    out = []

    def cmp(m, base, side=test_set, metric="psnr"):
        r = paired_difference(per_image, m, base, side, metric, n_boot=n_boot)
        unit = " dB" if metric.startswith("psnr") else ""
        return r, f"{r['difference']:+.2f}{unit} [{r['lo']:+.2f}, {r['hi']:+.2f}] vs the {base} ({r['verdict']})"

    if "static PDD" in present:
        vs_s, t_s = cmp("static PDD", spec)
        vs_g, t_g = cmp("static PDD", GENERALIST)
        holds = vs_s["verdict"] == "better" and vs_g["verdict"] == "better"
        line = f"static PDD (the adapted specialist), PSNR on {test_set}: {t_s}, {t_g}"
        if "specialist finetune control" in present:
            line += ", " + cmp("static PDD", "specialist finetune control")[1]
        out.append(line + f" -> the paper's claim (beats both starting models) {'HOLDS' if holds else 'does NOT hold'} here.")
        out.append(f"static PDD on the {source} protocol (the specialist's sharpness kept?): {cmp('static PDD', spec, source)[1]}.")
    if "EMA PDD" in present:
        vs_g, t_g = cmp("EMA PDD", GENERALIST)
        vs_c, t_c = cmp("EMA PDD", "finetune control") if "finetune control" in present else (None, "no control run")
        holds = vs_g["verdict"] == "better" and vs_c is not None and vs_c["verdict"] == "better"
        out.append(f"EMA PDD, PSNR on {test_set}: {t_g}, {t_c} -> the paper's direction "
                   f"{'holds' if holds else 'does NOT hold'} here.")
    out += kdsr_verdict(per_image, test_set, source, n_boot)
    for m in (r for r in HR_AWARE_ROWS if r in present):
        # its paper's claim: the adapted RealESRGAN+ beats RealESRGAN+ (the generalist) on the target
        vs_g, t_g = cmp(m, GENERALIST)
        others = [cmp(m, o)[1] for o in ("finetune control", "EMA PDD") if o in present]
        out.append(f"{m}, PSNR on {test_set}: " + ", ".join([t_g] + others) + " -> its paper's direction (a gain over "
                   f"the generalist) {'holds' if vs_g['verdict'] == 'better' else 'does NOT hold'} here.")
    if "naive distillation" in present and per_image.get("niqe") is not None and per_image["niqe"].notna().any():
        for m in ("EMA PDD", "static PDD"):
            if m in present:
                r, t = cmp("naive distillation", m, metric="niqe")
                said = {"worse": "as the paper says", "better": "NOT as the paper says"}.get(r["verdict"], "unresolved")
                out.append(f"naive distillation NIQE on {test_set}: {t} (the paper: naive is perceptually worse): {said}.")
    return out


def kdsr_verdict(per_image: pd.DataFrame, test_set: str = "target", source: str = "source",
                 n_boot: int = 2000) -> list[str]:
    """Does a degradation-aware generalist help distillation? Sentences from paired per-image
    differences with cluster-bootstrap CIs: KDSR against the RRDBNet generalist; static PDD with
    KDSR as M_G against the same run with the RRDBNet generalist (same specialist, only G
    differs); EMA PDD's gain over its own starting model with KDSR minus that gain with the
    RRDBNet generalist (paired per seed, checkpoint and image). [] without KDSR rows."""
    from .evaluate import gain_difference, paired_difference

    present = set(per_image.method)
    if KDSR_GENERALIST not in present:
        return []
    spec = SPECIALIST if SPECIALIST in present else "finetune control"

    def text(r, unit=" dB"):
        return f"{r['difference']:+.2f}{unit} [{r['lo']:+.2f}, {r['hi']:+.2f}] ({r['verdict']})"

    def cmp(m, base, side=test_set):
        return text(paired_difference(per_image, m, base, side, "psnr", n_boot=n_boot))

    out = [f"KDSR generalist vs the generalist, PSNR: {cmp(KDSR_GENERALIST, GENERALIST)} on the {test_set}, "
           f"{cmp(KDSR_GENERALIST, GENERALIST, source)} on the {source} protocol."]
    m = "static PDD, KDSR generalist"
    if m in present:
        r = paired_difference(per_image, m, spec, test_set, "psnr", n_boot=n_boot)
        k = paired_difference(per_image, m, KDSR_GENERALIST, test_set, "psnr", n_boot=n_boot)
        holds = r["verdict"] == "better" and k["verdict"] == "better"
        line = (f"{m}, PSNR on {test_set}: {text(r)} vs the {spec}, {text(k)} vs the KDSR generalist -> beats both "
                f"starting models: {'yes' if holds else 'no'}")
        if "static PDD" in present:
            line += f"; KDSR instead of the RRDBNet generalist as M_G: {cmp(m, 'static PDD')}"
        out.append(line + ".")
    m, control = "EMA PDD, KDSR generalist", "finetune control, KDSR generalist"
    if m in present:
        own = paired_difference(per_image, m, KDSR_GENERALIST, test_set, "psnr", n_boot=n_boot)
        line = (f"{m}, PSNR over its start (the KDSR generalist): {text(own)} on the {test_set}, "
                f"{cmp(m, KDSR_GENERALIST, source)} on the {source} protocol")
        vs_c = paired_difference(per_image, m, control, test_set, "psnr", n_boot=n_boot) if control in present else None
        if vs_c is not None:
            line += f"; {text(vs_c)} vs its control"
        if "EMA PDD" in present:
            d = gain_difference(per_image, (m, KDSR_GENERALIST), ("EMA PDD", GENERALIST), test_set, "psnr", n_boot)
            line += f"; its {test_set} gain minus EMA PDD's over the RRDBNet generalist: {text(d)} -> "
            if d["verdict"] == "better" and vs_c is not None and vs_c["verdict"] != "better":
                line += ("a KDSR start gives EMA PDD a larger gain, but its fine-tune control gains as much: "
                         "supervised training, not distillation, so degradation awareness does not help PDD here")
            elif d["verdict"] == "better":
                line += "a degradation-aware generalist helps EMA PDD here (no control run to rule out plain fine-tuning)" \
                    if vs_c is None else "a degradation-aware generalist helps EMA PDD here"
            else:
                line += ("a degradation-aware generalist hurts EMA PDD here" if d["verdict"] == "worse" else
                         "a degradation-aware generalist makes no measurable difference to EMA PDD here")
        out.append(line + ".")
    return out


def conclusion_header(results_dir, domain: str, preset: str, cfgs=()) -> list[str]:
    """The first lines of every later notebook's conclusions: the premise gate written by 02,
    then whether the GAN term did anything in each trained run with a discriminator (the
    paper's perceptual claims rest on that term)."""
    from .evaluate import d_separation, premise_banner

    lines = [premise_banner(results_dir, domain, preset)]
    seps = {}
    for c in cfgs:
        if not is_hr_aware(c) and c.gan and c.sup.gan > 0 and (Path(c.out) / "log.csv").exists():
            seps[f"{method_name(c)} s{c.seed}"] = d_separation(c.out)
    if seps:
        inert = [k for k, v in seps.items() if not v["separated"]]
        spread = ", ".join(f"{k} {v['mean']:+.3f}±{v['std']:.3f}" for k, v in seps.items())
        lines.append((f"GAN term inert in {len(inert)} of {len(seps)} runs ({', '.join(inert)}): D never separated real "
                      "from fake, so no perceptual effect of the GAN term is tested here." if inert else
                      f"D separated real from fake in all {len(seps)} runs with a GAN term.")
                     + f" p_real - p_fake over the last half of each run: {spread}.")
    return lines


def static_conclusion(table: pd.DataFrame, metric: str = "psnr") -> list[str]:
    """Notebook 03's sentences from its one-seed ``evaluate.compare`` table (rows named
    "generalist …", "specialist …", "static PDD …"): mean differences, no CIs (04/07 have them)."""
    def val(prefix, side):
        rows = table[table.model.str.startswith(prefix) & table["test set"].str.startswith(side)]
        return float(rows[metric].iloc[0]) if len(rows) else np.nan

    t = {m: val(m, "target") for m in ("generalist", "specialist", "static PDD")}
    src = val("static PDD", "source") - val("specialist", "source")
    both = t["static PDD"] > t["specialist"] and t["static PDD"] > t["generalist"]
    return [f"static PDD (the adapted specialist), {metric.upper()} on the target: "
            f"{t['static PDD'] - t['specialist']:+.2f} vs the specialist, {t['static PDD'] - t['generalist']:+.2f} vs the "
            f"generalist -> {'above both starting models' if both else 'NOT above both starting models'} in this one run "
            f"(means; paired CIs in 04/07).",
            f"On the source protocol: {src:+.2f} vs the specialist (the paper: its sharpness is kept)."]


# notebook 07's gain table: per method and metric, target/source gains and the adaptation gain with its CI
EVIDENCE_COLUMNS = ["method", "metric", "n", "target gain", "target gain verdict", "source gain", "source gain verdict",
                    "adaptation gain", "adaptation gain lo", "adaptation gain hi", "adaptation gain verdict"]


def evidence_conclusions(results_dir, domain: str, preset: str, cfgs, per_image: pd.DataFrame,
                         gains: pd.DataFrame, n_boot: int = 2000) -> list[str]:
    """Notebook 07's computed conclusions: the premise gate and D's verdict, the claim (adapted
    specialist vs both starting models and its control), then per method the target, source and
    adaptation gains (PSNR, NIQE) and which methods adapt (adaptation-gain CI above 0)."""
    lines = conclusion_header(results_dir, domain, preset, cfgs) + claim_verdict(per_image, n_boot=n_boot)
    for _, r in gains[gains.metric.isin(["psnr", "niqe"])].iterrows():
        lines.append(f"{r.method}, {r.metric}: target {r['target gain']:+.3f}, source {r['source gain']:+.3f}, "
                     f"adaptation {r['adaptation gain']:+.3f} [{r['adaptation gain lo']:+.3f}, "
                     f"{r['adaptation gain hi']:+.3f}] -> {r['adaptation gain verdict']}")
    psnr = gains[gains.metric == "psnr"]
    above = psnr["adaptation gain verdict"] == "better"
    # a positive adaptation gain with a LOSS on the target is degradation that hit the source
    # harder, not adaptation: named apart
    adapted = psnr[above & (psnr["target gain verdict"] != "worse")].method.tolist()
    degraded = psnr[above & (psnr["target gain verdict"] == "worse")].method.tolist()
    lines.append("Methods with a PSNR adaptation gain whose CI excludes 0, without a loss on the target: "
                 + (", ".join(adapted) or "none") + ".")
    if degraded:
        lines.append("Adaptation gain above 0 only because the source lost more than the target (both worse than "
                     "the generalist): " + ", ".join(degraded) + ".")
    return lines


def hr_aware_sweep(field: str, values, preset: str, domain: str, seed: int = 0, row: str = HR_AWARE_DEFAULT,
                   runs_dir=None, data_root=None, iters: int | None = None, pretrain_iters: int | None = None,
                   metrics=None, last_k: int = 2, progress: bool = True) -> pd.DataFrame:
    """One HR-aware stage-B field swept (e.g. ``lambda_ft`` over {0.1, 1, 10}, what the notes
    recommend: the paper does not give it): trains what is missing (stage A is the row's own,
    shared) and returns the per-image frame of ``evaluate_methods`` with each run labelled
    ``"<row>, <field>=<value>"``, beside the generalist and specialist of the seed."""
    from .data import open_domain
    from .evaluate import create_metrics

    runs_dir = Path(runs_dir) if runs_dir else ROOT / "runs"
    default = getattr(hr_aware.make_hr_config("B", preset, {"init_m": "x", "rec_net": "x"}), field)
    pairs = [(v, hr_aware_configs(row, preset, domain, seed, runs_dir, data_root, iters,
                                  None if v == default else {field: v}, pretrain_iters)) for v in values]
    run_methods(pretrain_configs(preset, domain, [seed], runs_dir, data_root, pretrain_iters), progress=progress)
    run_methods(list({c.out: c for _, ab in pairs for c in ab}.values()), progress=progress)  # A once, then the Bs
    dom = open_domain(domain, data_root)
    test_sets = {"target": dom.test_pairs, "source": dom.source_test_pairs}
    frames = []
    for i, (v, (_, b)) in enumerate(pairs):
        df = evaluate_methods([b], test_sets, metrics or create_metrics(), last_k, runs_dir, False, pretrain_iters)
        df = df if i == 0 else df[df.method == row]  # the starting models once
        frames.append(df.replace({"method": {row: f"{row}, {field}={v:g}"}}))
    return pd.concat(frames, ignore_index=True)


def hr_aware_vs_pdd(per_image: pd.DataFrame, row: str = HR_AWARE_DEFAULT, n_boot: int = 2000) -> list[str]:
    """Notebook 09's computed conclusion: the HR-aware row against EMA PDD and the fine-tune
    control on the target test set, PSNR and NIQE, paired per (seed, image) with bootstrap CIs."""
    from .evaluate import paired_difference

    lines = []
    for metric in ("psnr", "niqe"):
        if metric not in per_image or per_image[metric].isna().all():
            lines.append(f"{metric.upper()}: not computed (unavailable offline, or not asked for).")
            continue
        for other in ("EMA PDD", "finetune control", GENERALIST):
            if other not in set(per_image.method) or row not in set(per_image.method):
                continue
            d = paired_difference(per_image, row, other, "target", metric, n_boot=n_boot)
            lines.append(f"{row} vs {other}, {metric.upper()} on the target: {d['difference']:+.3f} "
                         f"[{d['lo']:+.3f}, {d['hi']:+.3f}] -> {d['verdict']}")
    return lines


def kdsr_gains(per_image: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """The KDSR rows' target, source and adaptation gains against the KDSR generalist (their own
    M_G), as ``evaluate.adaptation_gains`` computes them against the RRDBNet generalist; an
    empty frame without KDSR rows."""
    from .evaluate import adaptation_gains

    rows = per_image[per_image.method.isin([KDSR_GENERALIST, *KDSR_ROWS])]
    if KDSR_GENERALIST not in set(rows.method) or len(set(rows.method)) < 2:
        return pd.DataFrame(columns=EVIDENCE_COLUMNS)
    return adaptation_gains(rows, baseline=KDSR_GENERALIST, n_boot=n_boot, seed=0)


def write_evidence(out, domain: str, preset: str, seeds, last_k: int, n_boot: int, gains: pd.DataFrame,
                   claims: pd.DataFrame, lines: list[str], cfgs, metrics: dict, generalist_source: str,
                   kdsr: pd.DataFrame | None = None) -> Path:
    """``out/07_evidence_seeds<seeds>.csv`` (the gains) and ``.md`` (gains, claim table, the KDSR
    rows' gains over the KDSR generalist when given, the computed conclusions, and what produced
    them). Returns the Markdown path."""
    from .evaluate import markdown_table, metric_info, result_record, unavailable_note

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    c0 = _pdd_row(cfgs)
    record = result_record(preset=preset, domain=domain, seeds=list(seeds), last_k_checkpoints=last_k, n_boot=n_boot,
                           ci="95% percentile bootstrap over images (cluster: seeds x checkpoints of an image together)",
                           metrics=metric_info(metrics), patch=c0.patch,
                           precision="bf16 autocast + channels_last" if c0.bf16 else "fp32", generalist=generalist_source)
    stem = out / ("07_evidence_seeds" + "-".join(map(str, seeds)))
    gains.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.4f")
    md = [f"# Adaptation or drift ({domain}, {preset})", "", markdown_table(gains[EVIDENCE_COLUMNS].round(4)), "",
          "## Adapted specialist vs specialist vs generalist vs control", "", markdown_table(claims.round(4)), ""]
    if kdsr is not None and len(kdsr):
        md += ["## KDSR rows against the KDSR generalist", "", markdown_table(kdsr[EVIDENCE_COLUMNS].round(4)), ""]
    md += ["## Conclusion (computed)", ""] + [f"- {line}" for line in lines] + deviation_lines(cfgs) + [
          "", f"Produced by: commit {record['git_commit']}, seeds {list(seeds)}, last {last_k} checkpoints, "
              f"{record['ci']}; precision {record['precision']}, LR patch {record['patch']}; generalist: "
              f"{record['generalist']}.", unavailable_note(metrics) or ""]
    stem.with_suffix(".md").write_text("\n".join(md) + "\n")
    return stem.with_suffix(".md")


def method_configs(preset: str, domain: str, seeds, methods=None, runs_dir=None, data_root=None,
                   iters: int | None = None, pretrain_iters: int | None = None,
                   variants: dict | None = None) -> list[TrainConfig]:
    """Every row's config for every seed (``method_config``), plus what a row starts from:
    under ``paper``/``cpu`` static PDD adapts the fine-tune control, so that run is added."""
    runs_dir = Path(runs_dir) if runs_dir else ROOT / "runs"
    methods = resolve_methods(preset, methods, variants)
    cfgs = [method_config(m, preset, domain, s, runs_dir, data_root, iters, pretrain_iters=pretrain_iters,
                          variants=variants) for s in _seed_list(seeds) for m in methods]
    if preset not in FROM_SCRATCH and any(c.mode == "static" and "finetune-control" in c.init_s for c in cfgs) \
            and "finetune control" not in methods:
        cfgs += [method_config("finetune control", preset, domain, s, runs_dir, data_root, iters,
                               pretrain_iters=pretrain_iters) for s in _seed_list(seeds)]
    return cfgs


def training_jobs(preset: str, domain: str, seeds, methods=None, runs_dir=None, data_root=None,
                  iters: int | None = None, pretrain_iters: int | None = None, variants: dict | None = None,
                  extra: list[TrainConfig] = ()) -> tuple[list, list, list]:
    """What ``train_methods`` trains, in its order: (the starting models' configs, every job of
    the rows' pool, the rows' configs). Starts: under ``scratch``/``tiny`` the generalist and
    specialist, and the KDSR generalist's two stages when a KDSR row is asked for and no released
    file is used. Pool: the rows, each HR-aware stage A right before its stage B, and ``extra``."""
    runs_dir = Path(runs_dir) if runs_dir else ROOT / "runs"
    starts = pretrain_configs(preset, domain, _seed_list(seeds), runs_dir, data_root, pretrain_iters)
    methods = resolve_methods(preset, methods, variants)
    if any(m in KDSR_ROWS for m in methods):
        starts += kdsr_generalist_configs(preset, domain, _seed_list(seeds), runs_dir, data_root, pretrain_iters)
    with _paths_only():
        cfgs = method_configs(preset, domain, seeds, methods, runs_dir, data_root, iters, pretrain_iters, variants)
    # An HR-aware row's stage B starts from its stage A (rows with the same stage A share it).
    # Both go first in the queue, B right behind its A: the pool starts B as soon as A is done
    # instead of after every other row, so the longest chain does not end the run alone.
    jobs = []
    for c in cfgs:
        if is_hr_aware(c):
            with _paths_only():
                a = hr_aware_configs(method_name(c), preset, domain, c.seed, runs_dir, data_root, iters,
                                     pretrain_iters=pretrain_iters)[0]
            jobs += [j for j in (a, c) if j.out not in {k.out for k in jobs}]
    jobs += list(extra)
    jobs += [c for c in cfgs if c.out not in {j.out for j in jobs}]
    return starts, jobs, cfgs


def train_methods(preset: str, domain: str, seeds, methods=None, runs_dir=None, data_root=None,
                  iters: int | None = None, pretrain_iters: int | None = None, variants: dict | None = None,
                  extra: list[TrainConfig] = (), parallel: int = 2, progress: bool = True) -> tuple[list, float]:
    """Train what is missing of every row for every seed (``training_jobs``): the starting models
    first (in parallel: every row starts from them), then the rows and ``extra`` configs in one
    pool. Returns (the rows' configs, wall seconds)."""
    starts, jobs, cfgs = training_jobs(preset, domain, seeds, methods, runs_dir, data_root, iters,
                                       pretrain_iters, variants, extra)
    wall = run_methods(starts, parallel=parallel, progress=progress)
    wall += run_methods(jobs, parallel=parallel, progress=progress)
    return cfgs, wall


def compare_methods(preset: str = "cpu", domain: str = "Synth-Defocus", seeds=(0, 1), methods=None,
                    iters: int | None = None, last_k: int = 2, parallel: int = 2, runs_dir=None,
                    data_root=None, metrics=None, out_stem=None, progress: bool = True,
                    pretrain_iters: int | None = None, variants: dict | None = None) -> dict:
    """Train (what is missing), evaluate and summarise every method. One call for notebooks.

    Returns {"summary", "per_image", "verdict", "train_s", "eval_s", "configs"}; with
    ``out_stem`` also writes <stem>.csv/.md/.json and <stem>_per_image.csv.
    """
    from .data import open_domain
    from .evaluate import create_metrics, markdown_table, result_record, metric_info, unavailable_note

    runs_dir = Path(runs_dir) if runs_dir else ROOT / "runs"
    seeds = _seed_list(seeds)
    methods = resolve_methods(preset, methods, variants)
    cfgs, train_s = train_methods(preset, domain, seeds, methods, runs_dir, data_root, iters, pretrain_iters,
                                  variants, parallel=parallel, progress=progress)
    dom = open_domain(domain, data_root)
    metrics = metrics or create_metrics()
    test_sets = {"target": dom.test_pairs, "source": dom.source_test_pairs}
    t0 = time.time()
    per_image = evaluate_methods(cfgs, test_sets, metrics, last_k=last_k, runs_dir=runs_dir, progress=progress,
                                 pretrain_iters=pretrain_iters, variants=variants)
    eval_s = time.time() - t0
    summary = summarize_methods(per_image)
    # the premise gate (02) and the discriminator's verdict lead; premise.json sits beside the tables
    header = conclusion_header(Path(out_stem).parent, domain, preset, cfgs) if out_stem else []
    verdict = header + claim_verdict(per_image)
    result = {"summary": summary, "per_image": per_image, "verdict": verdict, "train_s": train_s,
              "eval_s": eval_s, "configs": cfgs}
    if out_stem:
        stem = Path(out_stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        c0 = _pdd_row(cfgs)
        sources = {}
        for c in cfgs:
            meta = Path(c.out) / "config.json"
            if meta.exists():
                sources[method_name(c, variants) + f" s{c.seed}"] = json.loads(meta.read_text()).get("sources")
        record = result_record(preset=preset, domain=domain, seeds=list(seeds), last_k_checkpoints=last_k,
                               iters={method_name(c, variants): c.iters for c in cfgs},
                               precision="bf16 autocast (training); fp32 evaluation" if c0.bf16 else "fp32",
                               patch=c0.patch,
                               batch=f"{c0.batch}" if is_hr_aware(c0) else f"{c0.batch_l}+{c0.batch_u}",
                               generalist=generalist_file(preset, domain, runs_dir, seeds[0], pretrain_iters),
                               kdsr_generalist=kdsr_generalist_source(cfgs),
                               sources=sources,
                               metrics=metric_info(metrics), train_wall_s=round(train_s), eval_wall_s=round(eval_s))
        summary.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.4f")
        per_image.to_csv(stem.parent / (stem.name + "_per_image.csv"), index=False, float_format="%.4f")
        cols = ["method", "test set", "runs"] + [c for c in summary.columns
                                                 if c.split(" ")[0] in ("psnr", "psnr_cc", "ssim", "niqe") and "std" not in c]
        md = [f"# Methods on {domain} ({preset} preset)", "",
              f"Mean over {len(seeds)} seed(s) x last {last_k} checkpoint(s) of the image-mean metric; "
              "`gain` = mean paired per-image difference to the generalist. PSNR/SSIM on Y (YCbCr); "
              "`psnr_cc` after colour correction (supplementary Eq. 13).", "",
              markdown_table(summary[cols].round(4)), "", "## Verdict (computed from the numbers)", ""]
        md += [f"- {v}" for v in verdict]
        note = unavailable_note(metrics)
        md += deviation_lines(cfgs)
        md += ["", f"Produced by: commit {record['git_commit']}, preset {preset}, seeds {list(seeds)}, "
                   f"precision {record['precision']}, generalist {record['generalist']}."]
        if note:
            md.append(note)
        stem.with_suffix(".md").write_text("\n".join(md) + "\n")
        stem.with_suffix(".json").write_text(json.dumps({"record": record, "summary": summary.to_dict("records"),
                                                         "verdict": verdict}, indent=2, default=str))
    return result


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m pdd.experiments", description=compare_methods.__doc__)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--domain", default="Synth-Defocus")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+", choices=list(METHODS) + list(HR_AWARE_ROWS),
                    metavar="METHOD", help="rows (quote names with spaces): " + "; ".join(list(METHODS) + list(HR_AWARE_ROWS)))
    ap.add_argument("--pretrain-iters", type=int)
    ap.add_argument("--iters", type=int)
    ap.add_argument("--last-k", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--runs-dir")
    ap.add_argument("--out", help="output stem, e.g. results/Synth-Defocus/cpu/methods")
    cli.add_debug_flag(ap)
    a = ap.parse_args(argv)
    r = compare_methods(a.preset, a.domain, a.seeds, a.methods, a.iters, a.last_k, a.parallel, a.runs_dir,
                        out_stem=a.out, pretrain_iters=a.pretrain_iters)
    print(r["summary"].round(3).to_string(index=False))
    print("\n".join(r["verdict"]))
    print(f"train {r['train_s']:.0f} s, evaluate {r['eval_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m pdd.experiments"))
