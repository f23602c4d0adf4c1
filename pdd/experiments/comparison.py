"""The comparison as one call per notebook: plan (catalogue), train what is missing (pool),
score (scoring), conclude (verdicts) and write (reports). Also the starting models as loaded
networks: these train what they need here first, then load it."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from .. import ROOT, hr_aware
from ..config import FROM_SCRATCH, make_config
from ..runs import Run
from ..train import last_weights, load_rrdbnet_like
from . import catalogue as C
from .pool import train_here, train_runs
from .reports import write_comparison
from .scoring import evaluate_runs, score_starting_models, summarize_methods
from .verdicts import claim_verdict, colour_drift_lines, conclusion_header, row_gates


# ------------------------------------------------------------------ the starting models, loaded

def pretrained(role: str, preset: str, domain: str, data_root=None, seed: int = 0, iters: int | None = None,
               runs_dir="runs", progress: bool = True):
    """A from-scratch preset's generalist or bicubic specialist (``catalogue.pretrain_run``),
    trained here once if missing (resumed if interrupted) and loaded. Eval mode, with
    ``weights_source`` and ``run_dir``."""
    run = C.pretrain_run(preset, domain, role, seed, runs_dir, data_root, iters)
    train_here([run], progress)
    model = load_rrdbnet_like(run.config, run.final)
    model.run_dir = run.dir
    return model


def generalist(preset: str = "cpu", domain: str | None = None, data_root=None, seed: int = 0,
               iters: int | None = None, runs_dir="runs", progress: bool = True):
    """M_G: RealESRGAN_x4plus under ``paper``/``cpu``; under ``scratch``/``tiny`` a small
    RRDBNet pretrained here from scratch on the second-order pipeline (cached in runs_dir).
    Eval mode, with ``weights_source`` (and ``run_dir`` when the companion trained it)."""
    from ..weights import load_rrdbnet

    if preset not in FROM_SCRATCH:
        return load_rrdbnet("RealESRGAN_x4plus")
    return pretrained(C.GENERALIST, preset, domain or make_config(preset).domain, data_root, seed, iters,
                      runs_dir, progress)


def specialist(preset: str = "cpu", domain: str | None = None, data_root=None, seed: int = 0,
               path: str | None = None, iters: int | None = None, runs_dir="runs", progress: bool = True,
               pretrain_iters: int | None = None):
    """The bicubic specialist: the file ``path`` when given (e.g. the official bicubic ESRGAN);
    under ``scratch``/``tiny`` a small RRDBNet pretrained here from scratch on bicubic X^L;
    under ``paper``/``cpu`` RealESRGAN_x4plus fine-tuned on bicubic X^L by the companion
    (mode ``finetune``, full supervised loss with GAN, ``iters`` iterations) — the same run
    as the "finetune control" row (one training, two roles)."""
    from ..weights import load_rrdbnet

    if path:
        return load_rrdbnet(path)
    domain = domain or make_config(preset).domain
    if preset in FROM_SCRATCH:
        return pretrained(C.SPECIALIST, preset, domain, data_root, seed, pretrain_iters, runs_dir, progress)
    run = C.row_run("finetune control", preset, domain, seed, runs_dir, data_root, iters)
    train_here([run], progress)
    model = load_rrdbnet_like(run.config, last_weights(run.dir))
    model.run_dir = run.dir
    return model


# ------------------------------------------------------------------ the comparison

def starting_models(preset: str, domain: str, seeds=(0,), runs_dir=None, data_root=None, metrics=None,
                    pretrain_iters: int | None = None, iters: int | None = None, specialist_path: str | None = None,
                    parallel: int = 2, progress: bool = True) -> dict:
    """The paper's Table 1 on a domain: train what is missing of the generalist and the bicubic
    specialist of every seed (``catalogue.starting_runs``), evaluate both on the target test set
    and the source protocol.

    Returns {"per_image" (method generalist/specialist), "runs" {(role, seed): run dir}, "train_s"}.
    """
    from ..data import open_domain
    from ..evaluate import create_metrics

    runs_dir = Path(runs_dir) if runs_dir else ROOT / "runs"
    train_s = train_runs(C.starting_runs(preset, domain, seeds, runs_dir, data_root, pretrain_iters, iters,
                                         specialist_path), parallel=parallel, progress=progress)
    dom = open_domain(domain, data_root)
    test_sets = {"target": dom.test_pairs, "source": dom.source_test_pairs}
    per_image, trained = score_starting_models(preset, domain, seeds, test_sets, metrics or create_metrics(), runs_dir,
                                               pretrain_iters, iters, specialist_path, progress)
    return {"per_image": per_image, "runs": trained, "train_s": train_s}


def train_methods(preset: str, domain: str, seeds, methods=None, runs_dir=None, data_root=None,
                  iters: int | None = None, pretrain_iters: int | None = None, variants: dict | None = None,
                  extra: list[Run] = (), parallel: int = 2, progress: bool = True) -> tuple[list[Run], float]:
    """Train what is missing of every row for every seed (``catalogue.training_plan``): the
    starting models first (in parallel: every row starts from them), then the rows and ``extra``
    runs in one pool. Returns (the rows' runs, wall seconds)."""
    starts, jobs, rows = C.training_plan(preset, domain, seeds, methods, runs_dir, data_root, iters,
                                        pretrain_iters, variants, extra)
    wall = train_runs(starts, parallel=parallel, progress=progress)
    wall += train_runs(jobs, parallel=parallel, progress=progress)
    return rows, wall


def compare_methods(preset: str = "cpu", domain: str = "Synth-Defocus", seeds=(0, 1), methods=None,
                    iters: int | None = None, last_k: int = 2, parallel: int = 2, runs_dir=None,
                    data_root=None, metrics=None, out_stem=None, progress: bool = True,
                    pretrain_iters: int | None = None, variants: dict | None = None) -> dict:
    """Train (what is missing), evaluate and summarise every method. One call for notebooks.

    Returns {"summary", "per_image", "verdict", "train_s", "eval_s", "runs"}; with ``out_stem``
    also writes <stem>.csv/.md/.json and <stem>_per_image.csv.
    """
    from ..data import open_domain
    from ..evaluate import create_metrics

    runs_dir = Path(runs_dir) if runs_dir else ROOT / "runs"
    seeds = C.seed_list(seeds)
    rows, train_s = train_methods(preset, domain, seeds, methods, runs_dir, data_root, iters, pretrain_iters,
                                  variants, parallel=parallel, progress=progress)
    dom = open_domain(domain, data_root)
    metrics = metrics or create_metrics()
    test_sets = {"target": dom.test_pairs, "source": dom.source_test_pairs}
    t0 = time.time()
    per_image = evaluate_runs(rows, test_sets, metrics, last_k=last_k, runs_dir=runs_dir, progress=progress,
                              pretrain_iters=pretrain_iters)
    eval_s = time.time() - t0
    summary = summarize_methods(per_image)
    # the premise gate (02) and the GAN gate lead; premise.json sits beside the tables. Perceptual
    # sentences only from rows whose runs pass the GAN gate; then where a colour shift drives PSNR
    header = conclusion_header(Path(out_stem).parent, domain, preset, rows) if out_stem else []
    verdict = header + claim_verdict(per_image, gates=row_gates(rows)) + colour_drift_lines(per_image)
    result = {"summary": summary, "per_image": per_image, "verdict": verdict,
              "train_s": train_s, "eval_s": eval_s, "runs": rows}
    if out_stem:
        write_comparison(out_stem, result, preset, domain, seeds, last_k, metrics,
                         C.generalist_file(preset, domain, runs_dir, seeds[0], pretrain_iters))
    return result


def hr_aware_sweep(field: str, values, preset: str, domain: str, seed: int = 0, row: str = C.HR_AWARE_DEFAULT,
                   runs_dir=None, data_root=None, iters: int | None = None, pretrain_iters: int | None = None,
                   metrics=None, last_k: int = 2, progress: bool = True) -> pd.DataFrame:
    """One HR-aware stage-B field swept (e.g. ``lambda_ft`` over {0.1, 1, 10}, what the notes
    recommend: the paper does not give it): trains what is missing (stage A is the row's own,
    shared) and returns the per-image frame of ``evaluate_runs`` with each run labelled
    ``"<row>, <field>=<value>"``, beside the generalist and specialist of the seed."""
    from ..data import open_domain
    from ..evaluate import create_metrics

    runs_dir = Path(runs_dir) if runs_dir else ROOT / "runs"
    default = getattr(hr_aware.make_hr_config("B", preset, {"init_m": "x", "rec_net": "x"}), field)
    pairs = [(v, C.hr_aware_configs(row, preset, domain, seed, runs_dir, data_root, iters,
                                    None if v == default else {field: v}, pretrain_iters)) for v in values]
    train_runs(C.pretrain_runs(preset, domain, [seed], runs_dir, data_root, pretrain_iters), progress=progress)
    stages = {c.out: Run(c, row if c.stage == "B" else None) for _, ab in pairs for c in ab}  # A once, then the Bs
    train_runs(list(stages.values()), progress=progress)
    dom = open_domain(domain, data_root)
    test_sets = {"target": dom.test_pairs, "source": dom.source_test_pairs}
    frames = []
    for i, (v, (_, b)) in enumerate(pairs):
        df = evaluate_runs([Run(b, row)], test_sets, metrics or create_metrics(), last_k, runs_dir, False,
                           pretrain_iters)
        df = df if i == 0 else df[df.method == row]  # the starting models once
        frames.append(df.replace({"method": {row: f"{row}, {field}={v:g}"}}))
    return pd.concat(frames, ignore_index=True)
