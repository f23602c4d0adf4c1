"""The method comparison: generalist, fine-tune control(s), naive distillation, static
and EMA PDD, over seeds and the last checkpoints, on a domain's target test set and on
the source protocol for the same images.

Training jobs run as separate ``python -m pdd.train --config`` processes, by default two
at a time with one thread each (on a 2-core CPU two single-thread jobs beat one
two-thread job, DESIGN.md). Finished runs are reused; evaluations are cached per
(run, checkpoint, test set) in ``<run>/eval/``, so a rerun only computes what is missing.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import ROOT
from .config import TrainConfig, make_config
from .train import last_weights, load_rrdbnet_like

# row name -> (mode, config overrides). The control has the same supervised loss as PDD,
# GAN term included; the GAN-free control shows what the GAN term does on its own.
METHODS = {
    "finetune control": ("finetune", {}),
    "finetune control, no GAN": ("finetune", {"gan": False}),
    "naive distillation": ("naive", {}),
    "static PDD": ("static", {}),
    "EMA PDD": ("ema", {}),
}
GENERALIST = "generalist"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def generalist_file(preset: str, domain: str, runs_dir, seed: int = 0, pretrain_iters: int | None = None) -> str:
    """The generalist's weights name/path: RealESRGAN_x4plus, or the tiny one the companion trains."""
    if preset != "tiny":
        return "RealESRGAN_x4plus"
    from .train import generalist
    return str(last_weights(generalist("tiny", domain, runs_dir=runs_dir, seed=seed, iters=pretrain_iters,
                                       progress=False).run_dir))


def specialist_dir(preset: str, domain: str, runs_dir, seed: int) -> Path:
    """Under paper/cpu the bicubic specialist IS the fine-tune control run (RealESRGAN
    fine-tuned on bicubic X^L); static PDD starts from it."""
    return Path(runs_dir) / preset / domain / f"{_slug('finetune control')}_s{seed}"


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


def method_config(method: str, preset: str, domain: str, seed: int, runs_dir, data_root=None,
                  iters: int | None = None, overrides: dict | None = None,
                  pretrain_iters: int | None = None, variants: dict | None = None) -> TrainConfig:
    """The TrainConfig of one row (``METHODS`` or ``variants``, e.g. ``ABLATIONS``) for one seed.

    Its run directory is ``runs_dir/preset/domain/<slug>_s<seed>`` (plus a hash of
    ``overrides``), so each distinct config trains once and is reused afterwards."""
    table = variants or METHODS
    if method not in table:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(table)}")
    mode, extra = table[method]
    g_file = generalist_file(preset, domain, runs_dir, pretrain_iters=pretrain_iters)
    name = f"{_slug(method)}_s{seed}"
    if overrides:  # a changed config must not resume another config's run
        digest = hashlib.sha1(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
        name = f"{_slug(method)}-{digest}_s{seed}"
    merged = {**extra, **(overrides or {})}
    merged = {k: (g_file if v == "generalist" else v) for k, v in merged.items()}
    cfg = make_config(preset, mode, overrides={"init_s": g_file, "init_g": g_file, **merged}, domain=domain,
                      seed=seed, data_root=data_root, out=str(Path(runs_dir) / preset / domain / name))
    if mode == "static" and "init_s" not in merged:
        cfg.init_s = str(specialist_dir(preset, domain, runs_dir, seed) / "weights" / f"net_g_{_iters(preset, iters, 'finetune'):06d}.pth")
    if iters is not None:
        cfg.iters = iters
    return cfg


def _iters(preset, iters, mode):
    return iters if iters is not None else make_config(preset, mode).iters


def is_finished(cfg: TrainConfig) -> bool:
    return (Path(cfg.out) / "weights" / f"net_g_{cfg.iters:06d}.pth").exists()


def run_methods(cfgs: list[TrainConfig], parallel: int = 2, threads: int = 1, progress: bool = True) -> float:
    """Train every unfinished config in subprocesses, ``parallel`` at a time; static runs wait
    for their specialist. Returns the wall time in seconds. A failed job raises with its log."""
    t0 = time.time()
    todo = [c for c in cfgs if not is_finished(c)]
    waves = [[c for c in todo if c.mode != "static"], [c for c in todo if c.mode == "static"]]
    for wave in waves:
        running: list[tuple[subprocess.Popen, TrainConfig, Path]] = []
        queue = list(wave)
        while queue or running:
            while queue and len(running) < parallel:
                cfg = queue.pop(0)
                cfg.threads = threads
                out = Path(cfg.out)
                out.mkdir(parents=True, exist_ok=True)
                (out / "requested_config.json").write_text(cfg.to_json())
                log = open(out / "train.log", "w")
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                p = subprocess.Popen([sys.executable, "-m", "pdd.train", "--config", str(out / "requested_config.json"),
                                      "--no-progress"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
                running.append((p, cfg, out))
                if progress:
                    print(f"[{time.time() - t0:6.0f} s] started  {out.name} ({cfg.mode}, {cfg.iters} iterations)", flush=True)
            time.sleep(2)
            for item in list(running):
                p, cfg, out = item
                if p.poll() is None:
                    continue
                running.remove(item)
                if p.returncode != 0:
                    tail = (out / "train.log").read_text()[-3000:]
                    for q, _, _ in running:
                        q.terminate()
                    raise RuntimeError(f"training failed ({cfg.mode}, seed {cfg.seed}, {out}):\n{tail}")
                if progress:
                    print(f"[{time.time() - t0:6.0f} s] finished {out.name}", flush=True)
    return time.time() - t0


def _eval_cached(model_loader, weights_file: Path, cache_dir: Path, test_sets: dict, metrics: dict) -> pd.DataFrame:
    from .evaluate import evaluate
    frames = []
    model = None
    for set_name, pairs in test_sets.items():
        cache = cache_dir / f"{weights_file.stem}__{_slug(set_name)}.csv"
        if cache.exists():
            df = pd.read_csv(cache)
        else:
            model = model or model_loader()
            df = evaluate(model, pairs, metrics, progress=False)
            cache.parent.mkdir(parents=True, exist_ok=True)
            df.to_csv(cache, index=False)
        df["test set"] = set_name
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def evaluate_methods(cfgs: list[TrainConfig], test_sets: dict, metrics: dict, last_k: int = 2,
                     runs_dir=None, progress: bool = True, pretrain_iters: int | None = None,
                     variants: dict | None = None) -> pd.DataFrame:
    """Per-image metrics for the generalist and for the last ``last_k`` EMA snapshots of every run.

    Returns a long frame: method, seed, iteration, test set, name, metric columns.
    """
    from tqdm.auto import tqdm
    from .weights import load_rrdbnet

    frames = []
    c0 = cfgs[0]
    runs_dir = Path(runs_dir) if runs_dir else Path(c0.out).parents[2]
    g_file = generalist_file(c0.preset, c0.domain, runs_dir, pretrain_iters=pretrain_iters)
    arch = dict(num_feat=c0.num_feat, num_block=c0.num_block, num_grow_ch=c0.num_grow_ch)
    g_key = Path(g_file).stem if g_file != "RealESRGAN_x4plus" else "RealESRGAN_x4plus"
    df = _eval_cached(lambda: load_rrdbnet(g_file, **arch), Path(g_key),
                      runs_dir / c0.preset / c0.domain / "generalist_eval", test_sets, metrics)
    frames.append(df.assign(method=GENERALIST, seed=-1, iteration=0))
    jobs = []
    for cfg in cfgs:
        snaps = sorted((Path(cfg.out) / "weights").glob("net_g_*.pth"))
        if not snaps:
            raise FileNotFoundError(f"run {cfg.out} has no weights: train it first (run_methods)")
        jobs += [(cfg, s) for s in snaps[-last_k:]]
    for cfg, snap in tqdm(jobs, desc="evaluate", disable=not progress):
        df = _eval_cached(lambda c=cfg, s=snap: load_rrdbnet_like(c, s), snap, Path(cfg.out) / "eval", test_sets, metrics)
        frames.append(df.assign(method=method_name(cfg, variants), seed=cfg.seed,
                                iteration=int(snap.stem.split("_")[-1])))
    cols = ["method", "seed", "iteration", "test set", "name"]
    out = pd.concat(frames, ignore_index=True)
    return out[cols + [c for c in out.columns if c not in cols]]


def method_name(cfg: TrainConfig, variants: dict | None = None) -> str:
    for name, (mode, extra) in (variants or METHODS).items():
        stem = Path(cfg.out).name.rsplit("_s", 1)[0]
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
    metrics = [m for m in metrics if m in per_image.columns]
    g = per_image[per_image.method == GENERALIST].set_index(["test set", "name"])[metrics]
    rows = []
    for (method, test_set), grp in per_image.groupby(["method", "test set"], sort=False):
        run_means = grp.groupby(["seed", "iteration"])[metrics].mean()
        row = {"method": method, "test set": test_set, "runs": len(run_means)}
        base = g.loc[test_set]
        for m in metrics:
            row[m] = run_means[m].mean()
            row[m + " std"] = run_means[m].std() if len(run_means) > 1 else np.nan
            diffs = grp.set_index("name")[m] - base[m].reindex(grp["name"]).values
            row[m + " gain"] = diffs.mean()
        rows.append(row)
    return pd.DataFrame(rows)


def direction_verdict(summary: pd.DataFrame, test_set: str) -> list[str]:
    """Sentences, computed from the numbers, on whether the paper's direction holds here:
    EMA and static PDD above the generalist AND the control in PSNR; naive distillation
    worse perceptually (higher NIQE) than PDD. A difference no larger than the spread
    between runs (std over seeds x checkpoints, at least 0.02 dB) is called unresolved."""
    s = summary[summary["test set"] == test_set].set_index("method")
    out = []

    def val(m, k):
        return float(s.loc[m, k]) if m in s.index and k in s.columns else np.nan

    def noise(a, b, k):
        return max(np.nan_to_num(val(a, k + " std")), np.nan_to_num(val(b, k + " std")), 0.02)

    def word(d, n):
        return "unresolved (within run spread)" if abs(d) <= n else ("higher" if d > 0 else "lower")

    for m in ("EMA PDD", "static PDD"):
        if m not in s.index:
            continue
        d_g = val(m, "psnr") - val(GENERALIST, "psnr")
        d_c = val(m, "psnr") - val("finetune control", "psnr")
        n_g, n_c = noise(m, GENERALIST, "psnr"), noise(m, "finetune control", "psnr")
        holds = d_g > n_g and d_c > n_c
        out.append(f"{m} PSNR on {test_set}: {d_g:+.2f} dB vs the generalist ({word(d_g, n_g)}), "
                   f"{d_c:+.2f} dB vs the fine-tune control ({word(d_c, n_c)}) -> the paper's direction "
                   f"{'holds' if holds else 'does NOT hold'} here.")
    if "naive distillation" in s.index and "niqe" in s.columns:
        for m in ("EMA PDD", "static PDD"):
            if m in s.index:
                d = val("naive distillation", "niqe") - val(m, "niqe")
                n = noise("naive distillation", m, "niqe")
                verdict = ("unresolved (within run spread)" if abs(d) <= n else
                           "as the paper says" if d > 0 else "NOT as the paper says")
                out.append(f"naive distillation NIQE {d:+.2f} vs {m} (positive = naive perceptually worse): {verdict}.")
    return out


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
    if isinstance(seeds, str):  # `papermill -p seeds "[0, 1]"` passes a string
        seeds = json.loads(seeds)
    seeds = [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds])]
    methods = list(methods or variants or METHODS)
    mk = lambda m, s: method_config(m, preset, domain, s, runs_dir, data_root, iters,  # noqa: E731
                                    pretrain_iters=pretrain_iters, variants=variants)
    cfgs = [mk(m, s) for s in seeds for m in methods]
    if any(c.mode == "static" and c.init_s.endswith(f"net_g_{c.iters:06d}.pth") and "finetune-control" in c.init_s
           for c in cfgs) and "finetune control" not in methods:
        cfgs += [method_config("finetune control", preset, domain, s, runs_dir, data_root, iters,
                               pretrain_iters=pretrain_iters) for s in seeds]
    train_s = run_methods(cfgs, parallel=parallel, progress=progress)
    dom = open_domain(domain, data_root)
    metrics = metrics or create_metrics()
    test_sets = {"target": dom.test_pairs, "source": dom.source_test_pairs}
    t0 = time.time()
    per_image = evaluate_methods(cfgs, test_sets, metrics, last_k=last_k, runs_dir=runs_dir, progress=progress,
                                 pretrain_iters=pretrain_iters, variants=variants)
    eval_s = time.time() - t0
    summary = summarize_methods(per_image)
    verdict = direction_verdict(summary, "target")
    result = {"summary": summary, "per_image": per_image, "verdict": verdict, "train_s": train_s,
              "eval_s": eval_s, "configs": cfgs}
    if out_stem:
        stem = Path(out_stem)
        stem.parent.mkdir(parents=True, exist_ok=True)
        c0 = cfgs[0]
        sources = {}
        for c in cfgs:
            meta = Path(c.out) / "config.json"
            if meta.exists():
                sources[method_name(c, variants) + f" s{c.seed}"] = json.loads(meta.read_text()).get("sources")
        record = result_record(preset=preset, domain=domain, seeds=list(seeds), last_k_checkpoints=last_k,
                               iters={method_name(c, variants): c.iters for c in cfgs},
                               precision="bf16 autocast (training); fp32 evaluation" if c0.bf16 else "fp32",
                               patch=c0.patch, batch=f"{c0.batch_l}+{c0.batch_u}",
                               generalist=generalist_file(preset, domain, runs_dir, pretrain_iters=pretrain_iters),
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
    ap.add_argument("--methods", nargs="+", choices=list(METHODS))
    ap.add_argument("--iters", type=int)
    ap.add_argument("--last-k", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--runs-dir")
    ap.add_argument("--out", help="output stem, e.g. results/Synth-Defocus/cpu/methods")
    a = ap.parse_args(argv)
    r = compare_methods(a.preset, a.domain, a.seeds, a.methods, a.iters, a.last_k, a.parallel, a.runs_dir,
                        out_stem=a.out)
    print(r["summary"].round(3).to_string(index=False))
    print("\n".join(r["verdict"]))
    print(f"train {r['train_s']:.0f} s, evaluate {r['eval_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
