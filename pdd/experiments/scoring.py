"""Scoring the comparison's models: per-image metrics of every starting model and every row's
last snapshots, cached per (snapshot, test set) in ``<run>/eval/`` so that a rerun only
computes what is missing, and scored two models at a time on a CPU."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .. import ROOT, runs
from ..config import FROM_SCRATCH, make_config
from ..evaluate import SHIFT_COLUMNS
from ..runs import Run
from ..train import load_run_model
from .catalogue import (GENERALIST, KDSR_GENERALIST, SPECIALIST, generalist_file, kdsr_generalist_file,
                        seed_list, specialist_file, uses_kdsr)
from .pool import cpu_cores

LONG_COLUMNS = ["method", "seed", "iteration", "test set", "name"]


def _cache_file(cache_dir: Path, weights_file: Path, set_name: str) -> Path:
    return cache_dir / f"{weights_file.stem}__{runs.slug(set_name)}.csv"


def _complete(cache: Path) -> bool:
    """A cache that exists and has the colour-shift columns (caches written before them lack them)."""
    if not cache.exists():
        return False
    with open(cache) as f:
        header = f.readline().strip().split(",")
    return set(SHIFT_COLUMNS) <= set(header)


def _scored(model_loader, weights_file: Path, cache_dir: Path, test_sets: dict, metrics: dict) -> pd.DataFrame:
    from ..evaluate import evaluate

    frames = []
    model = None
    for set_name, pairs in test_sets.items():
        cache = _cache_file(cache_dir, weights_file, set_name)
        if _complete(cache):
            df = pd.read_csv(cache)
        else:
            model = model or model_loader()
            if cache.exists():
                # an old cache: its scores are kept as they are, the colour shift is added (the model
                # is run again, without the metrics: psnr_cc and the shift need no network)
                df = pd.read_csv(cache)
                new = evaluate(model, pairs, {}, progress=False)
                if list(new["name"]) != list(df["name"]):
                    raise ValueError(f"{cache} scores other images than {set_name!r} has now: delete it to rescore")
                df[list(SHIFT_COLUMNS)] = new[list(SHIFT_COLUMNS)].to_numpy()
            else:
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
        return all(_complete(_cache_file(self.cache_dir, self.weights_file, s)) for s in test_sets)


def eval_workers(n_items: int) -> int:
    """How many models to score at once: one per core (two on the development machine), at one
    torch thread each, as the training pool does; one on a GPU (it is fast enough alone)."""
    import torch

    if torch.cuda.is_available() or n_items < 2:
        return 1
    return max(1, min(cpu_cores(), 4, n_items))


def evaluate_items(items: list[EvalItem], test_sets: dict, metrics: dict, workers: int | None = None,
                   progress: bool = True) -> list[pd.DataFrame]:
    """Per-image metrics of every item (a cached score is read, not recomputed), in the items'
    order, each frame labelled. The uncached ones are scored ``workers`` at a time (None:
    ``eval_workers``) in threads at one torch thread each: on a 2-core Xeon two such threads
    score 1.46x as fast as one model at a time on two threads (SSIM's float64 filters and NIQE's
    per-block work spread badly over threads; benchmarks/evaluation.py), with the numbers each
    model gets scored alone at one thread (the metrics hold no state between calls). Every
    finished score is cached at once, so a failure or an interrupt loses only the models being
    scored."""
    import torch
    from tqdm.auto import tqdm

    todo = list({(it.cache_dir, it.weights_file.stem): it for it in items if not it.cached(test_sets)}.values())
    workers = eval_workers(len(todo)) if workers is None else max(1, int(workers))
    score = lambda it: _scored(it.load, it.weights_file, it.cache_dir, test_sets, metrics)  # noqa: E731
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


def _long(frames: list[pd.DataFrame]) -> pd.DataFrame:
    out = pd.concat(frames, ignore_index=True)
    return out[LONG_COLUMNS + [c for c in out.columns if c not in LONG_COLUMNS]]


def _file_item(f, role: str, seed: int, runs_dir: Path, preset: str, domain: str, load) -> EvalItem:
    """A starting model's file to score: a run's snapshot caches beside its run; a released name
    or a user's file under runs_dir/<preset>/<domain>/<role>_eval."""
    f = Path(f)
    inside = f.exists() and f.resolve().is_relative_to(runs_dir.resolve())
    cache = f.parents[1] / "eval" if inside else runs.domain_dir(runs_dir, preset, domain) / f"{runs.slug(role)}_eval"
    return EvalItem(load, f, cache, dict(method=role, seed=seed, iteration=0))


def _kdsr_generalist_items(preset, domain, seeds, runs_dir, pretrain_iters=None) -> list[EvalItem]:
    """The KDSR generalist to score: one per seed under the from-scratch presets (paired with
    that seed's runs), else one model for every seed (seed -1, as a released generalist)."""
    from ..kdsr import load_kdsr

    items = []
    for seed in (seeds if preset in FROM_SCRATCH else [-1]):
        f = Path(kdsr_generalist_file(preset, domain, runs_dir, max(seed, 0), pretrain_iters))
        inside = f.resolve().is_relative_to(Path(runs_dir).resolve())
        cache = f.parents[1] / "eval" if inside else runs.domain_dir(runs_dir, preset, domain) / "kdsr-generalist_eval"
        items.append(EvalItem(lambda f=f: load_kdsr(f, role="student"), f, cache,
                              dict(method=KDSR_GENERALIST, seed=seed, iteration=0)))
    return items


def evaluate_runs(rows: list[Run], test_sets: dict, metrics: dict, last_k: int = 2, runs_dir=None,
                  progress: bool = True, pretrain_iters: int | None = None, workers: int | None = None,
                  setup=None) -> pd.DataFrame:
    """Per-image metrics for the generalist (and the specialist under the from-scratch presets)
    and for the last ``last_k`` EMA snapshots of every row's run (``workers`` models at a time,
    ``evaluate_items``; ``last_k=0``: the starting models alone). ``setup``: the rows' ``catalogue.Setup`` (which starting models they
    start from; None: the default). Returns a long frame: method, seed, iteration, test set,
    name, metrics."""
    from ..weights import load_rrdbnet

    c0 = rows[0].config
    runs_dir = Path(runs_dir) if runs_dir else rows[0].dir.parents[2]
    arch = dict(num_feat=c0.num_feat, num_block=c0.num_block, num_grow_ch=c0.num_grow_ch)
    items = []
    if c0.preset in FROM_SCRATCH:
        # one pretrained generalist and specialist per seed: rows carry their seed, and gains
        # pair each run with the starting models of its own seed
        for seed in sorted({r.seed for r in rows}):
            for role, fn in ((GENERALIST, generalist_file), (SPECIALIST, specialist_file)):
                f = Path(fn(c0.preset, c0.domain, runs_dir, seed, pretrain_iters=pretrain_iters, setup=setup))
                items.append(EvalItem(lambda f=f: load_rrdbnet(str(f), **arch), f, f.parents[1] / "eval",
                                      dict(method=role, seed=seed, iteration=0)))
    else:
        g_file = generalist_file(c0.preset, c0.domain, runs_dir, pretrain_iters=pretrain_iters)
        items.append(EvalItem(lambda: load_rrdbnet(g_file, **arch), Path("RealESRGAN_x4plus"),
                              runs.domain_dir(runs_dir, c0.preset, c0.domain) / "generalist_eval",
                              dict(method=GENERALIST, seed=-1, iteration=0)))
    if any(uses_kdsr(r.config) for r in rows):
        items += _kdsr_generalist_items(c0.preset, c0.domain, sorted({r.seed for r in rows}), runs_dir, pretrain_iters)
    for r in rows:
        snaps = r.snapshots()
        if not snaps:
            raise FileNotFoundError(f"run {r.dir} has no weights: train it first (pdd.experiments.train_runs)")
        items += [EvalItem(lambda c=r.config, s=s: load_run_model(c, s), s, r.dir / "eval",
                           dict(method=r.row, seed=r.seed, iteration=runs.snapshot_iteration(s)))
                  for s in snaps[len(snaps) - last_k:]]
    return _long(evaluate_items(items, test_sets, metrics, workers, progress))


def score_starting_models(preset: str, domain: str, seeds, test_sets: dict, metrics: dict, runs_dir=None,
                          pretrain_iters: int | None = None, iters: int | None = None,
                          specialist_path: str | None = None, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Per-image metrics of the generalist and the bicubic specialist of every seed (the paper's
    Table 1; their runs trained first: ``catalogue.starting_runs``). Returns (the long frame,
    {(role, seed): run directory} for those trained here)."""
    from ..weights import load_rrdbnet

    runs_dir = Path(runs_dir) if runs_dir else ROOT / "runs"
    p = make_config(preset)
    arch = dict(num_feat=p.num_feat, num_block=p.num_block, num_grow_ch=p.num_grow_ch)
    files = {}
    for s in seed_list(seeds):
        files[(GENERALIST, s if preset in FROM_SCRATCH else -1)] = generalist_file(preset, domain, runs_dir, s,
                                                                                    pretrain_iters)
        files[(SPECIALIST, s if not specialist_path else -1)] = (
            specialist_path or specialist_file(preset, domain, runs_dir, s, iters, pretrain_iters))
    items = [_file_item(f, role, s, runs_dir, preset, domain, lambda f=f: load_rrdbnet(str(f), **arch))
             for (role, s), f in files.items()]
    frames = evaluate_items(items, test_sets, metrics, progress=progress)
    trained = {(role, s): Path(f).parents[1] for (role, s), f in files.items() if Path(f).exists()}
    return _long(frames), trained


def summarize_methods(per_image: pd.DataFrame, metrics=("psnr", "psnr_cc", "ssim", "niqe", "lpips", "nrqm")) -> pd.DataFrame:
    """Mean and spread per (method, test set) over seeds × checkpoints.

    Each (seed, checkpoint) run is first averaged over images; ``mean`` and ``std`` are
    then taken over those runs (std NaN with one run), ``runs`` counts them. ``gain`` is
    the mean paired per-image difference to the generalist on the same images.
    """
    from ..stats import baseline_values

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
