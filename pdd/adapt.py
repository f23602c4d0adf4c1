"""Adapt any upscaler to a folder of your own low-resolution photos, with no HR needed.

    python -m pdd.adapt --lr-dir my_photos/ --out runs/mine                       # RealESRGAN_x4plus, cpu preset
    python -m pdd.adapt --lr-dir my_photos/ --out runs/mine --generalist 4x_foo.safetensors --iters 2000
    python -m pdd.upscale -i my_photos/ -o upscaled/ --model runs/mine

The folder is the unlabeled target set X^U (`pdd.photos`); the labeled source pairs come from
DF2K/DIV2K under the data root when present, else the packaged photos, or --hr-dir. PDD (EMA
by default) then trains the generalist's copy S on both. Before training it prints what it
found and an estimate of the time from a few timed steps (undone afterwards). Ctrl-C or a
crash loses at most one checkpoint interval; the same command resumes; a finished RUN is reused.

RUN/ afterwards holds model.pth ({"params_ema": ...}, BasicSR layout for the RRDBNet family,
so Real-ESRGAN's inference_realesrgan.py --model_path loads it), model.safetensors (the base
model's key layout, loadable by spandrel), model.json (what was made, from what) and
report.html (before/after crops, no-reference scores, curves; self-contained). The trainer's
own files (checkpoint.pt, log.csv, weights/) are in RUN/train/.
"""
from __future__ import annotations

import argparse
import base64
import copy
import io
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import cli
from .config import make_config, set_field
from .sr_models import ModelInfo, check_trainable, export, load_upscaler

ADAPT_PRESETS = ("cpu", "paper", "tiny")


@dataclass
class Plan:
    """Everything decided before training; printed, and written to model.json afterwards."""
    cfg: object
    domain: object
    model: torch.nn.Module
    info: ModelInfo
    run: Path


def _tiny_generalist(cfg) -> tuple[torch.nn.Module, ModelInfo]:
    """The `tiny` preset's stand-in generalist: a seeded random 1-block RRDBNet (a smoke test)."""
    from .archs import RRDBNet

    torch.manual_seed(cfg.seed)
    args = dict(num_feat=cfg.num_feat, num_block=cfg.num_block, num_grow_ch=cfg.num_grow_ch, scale=cfg.scale)
    net = RRDBNet(**args)
    return net, ModelInfo("tiny-random-RRDBNet", "RRDBNet", cfg.scale, f"random init (seed {cfg.seed}): tiny preset, "
                          "a smoke test and not evidence", "n/a", rrdbnet_args=args,
                          parameters=sum(t.numel() for t in net.parameters()))


def generalist_model(generalist: str | None = None, preset: str = "cpu", seed: int = 0):
    """(model, ModelInfo) of the generalist `adapt` starts from: the name or file given, else
    RealESRGAN_x4plus, except at the `tiny` preset, whose default is a seeded random RRDBNet."""
    if generalist is None and preset == "tiny":
        model, info = _tiny_generalist(make_config("tiny", seed=seed))
    else:
        model, info = load_upscaler(generalist or "RealESRGAN_x4plus")
    return model.eval(), info


def plan(lr_dir, out, generalist: str | None = None, preset: str = "cpu", mode: str = "ema",
         iters: int | None = None, hr_dir=None, pairs_dir=None, data_root=None, seed: int = 0,
         overrides: dict | None = None) -> Plan:
    """Load the generalist, scan the folder, and build the training config (nothing trained)."""
    from .data import open_folder_domain, resolve_data_root

    if preset not in ADAPT_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(ADAPT_PRESETS)}")
    if mode not in ("ema", "static"):
        raise ValueError(f"mode {mode!r}: pdd.adapt runs PDD, 'ema' or 'static'")
    run = Path(out)
    cfg = make_config(preset, mode, seed=seed, out=str(run / "train"), domain=f"folder:{Path(lr_dir)}",
                      data_root=None if data_root is None else str(data_root))
    model, info = generalist_model(generalist, preset, seed)
    # the config describes the network actually trained (recorded in config.json)
    cfg.scale = info.scale
    if info.rrdbnet_args:
        cfg.num_feat, cfg.num_block, cfg.num_grow_ch = (info.rrdbnet_args[k] for k in ("num_feat", "num_block", "num_grow_ch"))
    cfg.init_s = cfg.init_g = None  # S starts from `model`; static's frozen G is a copy of it
    if iters is not None:
        cfg.iters = iters
        # short runs: keep D's warm-up and the checkpoint interval inside the run
        cfg.warmup_d_iters = min(cfg.warmup_d_iters, max(iters // 5, 0))
        cfg.ckpt_every = max(1, min(cfg.ckpt_every, iters))
    for k, v in (overrides or {}).items():
        set_field(cfg, k, v)
    if cfg.bf16 and not info.supports_bf16:
        cfg.bf16 = False  # spandrel says this architecture misbehaves in bf16
    cfg.validate()
    check_trainable(model, info, cfg.patch)
    root = resolve_data_root(data_root)
    domain = open_folder_domain(lr_dir, root, labeled=str(hr_dir) if hr_dir else "auto", pairs_dir=pairs_dir,
                                min_side=cfg.patch, scale=cfg.scale)
    return Plan(cfg, domain, model, info, run)


def describe(p: Plan) -> str:
    rep = p.domain.unlabeled_lr.report
    sizes = sorted(p.domain.unlabeled_lr.sizes, key=lambda s: (s[0] * s[1], s))
    lines = [
        f"generalist: {p.info.name} ({p.info.architecture}, x{p.info.scale}, {p.info.parameters / 1e6:.2f} M parameters)",
        f"  from {p.info.source}",
        f"your photos (X^U): {len(rep.used)} used as {len(sizes)} patches, {len(rep.skipped)} skipped, "
        f"{len(rep.system)} system files ignored; patches from {sizes[0][1]}x{sizes[0][0]} to {sizes[-1][1]}x{sizes[-1][0]} px",
        *[f"  skipped {f}: {why}" for f, why in rep.skipped[:20]],
        *([f"  ... and {len(rep.skipped) - 20} more"] if len(rep.skipped) > 20 else []),
        f"labeled source (X^L = bicubic of Y^L): {len(p.domain.labeled_hr)} HR images <- {p.domain.sources['labeled']}",
        f"held-out pairs: {p.domain.sources['test']}"
        + ("" if p.domain.test_pairs else " -> no-reference scores only"),
        f"training: {p.cfg.mode} PDD, preset {p.cfg.preset}, {p.cfg.iters} iterations (D alone for the first "
        f"{p.cfg.warmup_d_iters}), LR patch {p.cfg.patch}, batch {p.cfg.batch_l}+{p.cfg.batch_u}, "
        f"{'bf16 autocast' if p.cfg.bf16 else 'fp32'}, {torch.get_num_threads()} threads",
    ]
    return "\n".join(lines)


def _timed_estimate(trainer, steps: int = 2) -> tuple[float, float]:
    """Seconds per D-only warm-up step and per full PDD step, from real steps that are then
    undone (networks, optimisers, schedules and RNG restored), so the run is unchanged."""
    from .train import _bare

    cfg = trainer.cfg
    saved = copy.deepcopy(trainer.state())
    rng = torch.get_rng_state()

    def per_step(t):
        trainer.step(t)  # the first call pays one-off costs (allocations, autocast caches)
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.step(t)
        return (time.perf_counter() - t0) / steps

    try:
        d_only = per_step(1) if cfg.warmup_d_iters > 0 else 0.0
        full = per_step(cfg.warmup_d_iters + cfg.distill_start_k + 1)
    finally:
        _bare(trainer.s).load_state_dict(saved["s"])
        trainer.ema.load_state_dict(saved["ema"])
        if trainer.d is not None:
            _bare(trainer.d).load_state_dict(saved["d"])
            trainer.opt_d.load_state_dict(saved["opt_d"])
            trainer.sched_d.load_state_dict(saved["sched_d"])
        trainer.opt_g.load_state_dict(saved["opt_g"])
        trainer.sched_g.load_state_dict(saved["sched_g"])
        torch.set_rng_state(rng)
    return d_only, full


def _png_b64(img: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _fig_b64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _u8(a: np.ndarray) -> np.ndarray:
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)


def compare_on_photos(generalist, adapted, photos, scale: int, crop: int = 96, max_photos: int = 8,
                      window: int = 24) -> list[dict]:
    """Per photo (up to `max_photos` patches, centre crop of `crop` LR px): both models' SR,
    the crop window (in LR px) where they differ most, and a fixed 2x2 grid of windows."""
    from .photos import to_float
    from .upscale import upscale_image

    out = []
    idx = np.linspace(0, len(photos) - 1, min(max_photos, len(photos))).round().astype(int)
    for i in dict.fromkeys(idx.tolist()):
        img = photos[i]
        h, w = img.shape[:2]
        c = min(crop, h, w)
        top, left = (h - c) // 2, (w - c) // 2
        lr = to_float(img[top:top + c, left:left + c])
        a = upscale_image(generalist, lr, scale)
        b = upscale_image(adapted, lr, scale)
        diff = np.abs(a - b).mean(axis=2)
        win = min(window, c) * scale
        # mean difference over every win x win window (integral image), argmax = "differs most"
        ii = np.pad(diff, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        sums = ii[win:, win:] - ii[:-win, win:] - ii[win:, :-win] + ii[:-win, :-win]
        y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
        grid = [(gy, gx) for gy in (0, (c * scale - win) // 2) for gx in (0, c * scale - win)]
        out.append({"name": photos.names[i] if hasattr(photos, "names") else f"#{i}", "lr": lr, "generalist": a,
                    "adapted": b, "most": (int(y), int(x), win), "grid": [(gy, gx, win) for gy, gx in grid],
                    "mean_abs_diff": float(diff.mean())})
    return out


def no_reference_scores(comparisons: list[dict]):
    """NIQE of both SR outputs per photo, paired differences (adapted - generalist) with a
    bootstrap CI. NIQE is a no-reference statistic of naturalness: not fidelity evidence."""
    import pandas as pd

    from .evaluate import Unavailable, bootstrap_ci, create_metrics

    niqe = create_metrics(["niqe"])["niqe"]
    rows = []
    for c in comparisons:
        row = {"photo": c["name"]}
        for k in ("generalist", "adapted"):
            sr = torch.from_numpy(_u8(c[k]).astype(np.float64) / 255).permute(2, 0, 1)[None]
            ok = not isinstance(niqe, Unavailable) and min(sr.shape[-2:]) >= 96
            row[f"niqe_{k}"] = float(niqe(sr.double()).reshape(-1)[0]) if ok else float("nan")
        row["diff"] = row["niqe_adapted"] - row["niqe_generalist"]
        rows.append(row)
    df = pd.DataFrame(rows)
    ci = bootstrap_ci(df["diff"].to_numpy()) if len(df) else (float("nan"),) * 3
    reason = niqe.reason if isinstance(niqe, Unavailable) else ""
    return df, ci, reason


def pairs_table(generalist, adapted, pairs):
    """Full-reference scores on the held-out pairs and the target gain's bootstrap CI (07's protocol)."""
    import pandas as pd

    from .evaluate import bootstrap_ci, create_metrics, evaluate

    metrics = create_metrics(["psnr", "ssim", "niqe"])
    per = {k: evaluate(m, pairs, metrics, progress=False) for k, m in (("generalist", generalist), ("adapted", adapted))}
    means = pd.DataFrame({k: v.drop(columns=["name"]).mean() for k, v in per.items()})
    gains = {}
    for metric in ("psnr", "ssim", "psnr_cc"):
        d = per["adapted"][metric].to_numpy() - per["generalist"][metric].to_numpy()
        gains[metric] = bootstrap_ci(d)
    return means, gains


def write_report(run: Path, info: ModelInfo, comparisons, nr, pairs_result, meta: dict) -> Path:
    """RUN/report.html: one file, every image inline."""
    import html

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .viz import plot_losses

    parts = [f"<html><head><meta charset='utf-8'><title>pdd.adapt: {html.escape(run.name)}</title>"
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{image-rendering:pixelated;"
             "margin:2px}td,th{padding:2px 8px;text-align:right}.note{background:#fff6d5;padding:8px}</style>"
             "</head><body>",
             f"<h1>{html.escape(info.name)} adapted to {html.escape(str(meta['lr_dir']))}</h1>",
             "<p class='note'><b>What is and is not evidence.</b> The crops show how the adapted model differs "
             "from the generalist on your photos; they cannot show which is closer to the truth, because your "
             "photos have no HR. NIQE is a no-reference naturalness statistic, not fidelity. Only the "
             "held-out pairs table (when --pairs-dir is given) measures fidelity. "
             + ("This run used the <b>tiny</b> preset: a smoke test, not evidence. " if meta["preset"] == "tiny" else "")
             + "</p>",
             f"<p>{meta['iterations']} iterations of {meta['mode']} PDD, preset {meta['preset']}, seed {meta['seed']}, "
             f"{meta['photos_used']} photos ({meta['patches']} patches), {meta['photos_skipped']} skipped; "
             f"architecture {html.escape(info.architecture)} x{info.scale}; commit {meta['commit']}.</p>"]
    parts.append("<h2>Generalist vs adapted on your photos</h2>")
    for c in comparisons:
        y, x, win = c["most"]
        crops = []
        for label, (cy, cx, cw) in [("differs most", (y, x, win))] + [(f"grid {k + 1}", g) for k, g in enumerate(c["grid"])]:
            a = _u8(c["generalist"][cy:cy + cw, cx:cx + cw])
            b = _u8(c["adapted"][cy:cy + cw, cx:cx + cw])
            crops.append(f"<td>{label}<br><img src='{_png_b64(a)}' width=160> <img src='{_png_b64(b)}' width=160></td>")
        parts.append(f"<h3>{html.escape(c['name'])} (mean |difference| {c['mean_abs_diff'] * 255:.2f}/255)</h3>"
                     "<p>each pair: generalist (left), adapted (right)</p><table><tr>" + "".join(crops[:3])
                     + "</tr><tr>" + "".join(crops[3:]) + "</tr></table>")
    df, (mean, lo, hi), reason = nr
    parts.append("<h2>No-reference scores (NIQE, lower = more natural-looking; not fidelity)</h2>")
    if reason:
        parts.append(f"<p>NIQE unavailable: {html.escape(reason)}</p>")
    parts.append(df.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="n/a"))
    parts.append(f"<p>paired difference adapted - generalist: mean {mean:.3f}, 95% bootstrap CI [{lo:.3f}, {hi:.3f}] "
                 f"over {len(df)} photos (NaN where a crop is under 96 px).</p>")
    if pairs_result is not None:
        means, gains = pairs_result
        parts.append("<h2>Held-out pairs (full reference): the evidence</h2>")
        parts.append(means.to_html(float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
        parts.append("<ul>" + "".join(f"<li>target gain in {k}: {m:+.4f} [{lo_:+.4f}, {hi_:+.4f}] (95% bootstrap CI)</li>"
                                      for k, (m, lo_, hi_) in gains.items()) + "</ul>")
    else:
        parts.append("<h2>Held-out pairs</h2><p>None given (--pairs-dir DIR with lr/ and hr/): no fidelity "
                     "evidence in this report.</p>")
    try:
        axes = plot_losses(run / "train")
        parts.append(f"<h2>Training curves</h2><img src='{_fig_b64(axes[0].figure)}'>")
        plt.close(axes[0].figure)
    except (FileNotFoundError, ValueError, KeyError) as e:
        parts.append(f"<h2>Training curves</h2><p>not available: {html.escape(str(e))}</p>")
    parts.append("<h2>Files</h2><ul><li>model.pth: {'params_ema': state dict}"
                 + (" in BasicSR layout (Real-ESRGAN's inference script loads it with --model_path)"
                    if info.architecture == "RRDBNet" else "") +
                 "</li><li>model.safetensors: the same weights in the base model's key layout (spandrel loads it)"
                 "</li><li>model.json: provenance</li></ul></body></html>")
    path = run / "report.html"
    tmp = run / ".report.html.tmp"
    tmp.write_text("\n".join(parts))
    tmp.replace(path)
    return path


def adapt(lr_dir, out, generalist: str | None = None, preset: str = "cpu", mode: str = "ema",
          iters: int | None = None, hr_dir=None, pairs_dir=None, data_root=None, seed: int = 0,
          overrides: dict | None = None, progress: bool = True, estimate: bool = True, report: bool = True,
          log=print) -> Path:
    """Run (or resume, or reuse) an adaptation; returns RUN. See the module docstring."""
    from .evaluate import _git_commit
    from .train import CHECKPOINT, Trainer

    run = Path(out)
    done = run / "model.json"
    if done.is_file():
        log(f"{run} is a finished run (model.json present); reusing it. Delete the folder to train again.")
        return run
    p = plan(lr_dir, out, generalist, preset, mode, iters, hr_dir, pairs_dir, data_root, seed, overrides)
    log(describe(p))
    run.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    base = copy.deepcopy(p.model).eval()  # the Trainer trains p.model in place; keep the generalist
    trainer = Trainer(p.cfg, progress=progress, domain=p.domain, model=p.model)
    if trainer.resumed_from:
        log(f"resuming from iteration {trainer.resumed_from} ({run / 'train' / CHECKPOINT})")
    elif estimate and p.cfg.iters > 0:
        d_only, full = _timed_estimate(trainer)
        n_warm = min(p.cfg.warmup_d_iters, p.cfg.iters)
        total = n_warm * d_only + (p.cfg.iters - n_warm) * full
        log(f"estimate on this machine: {total / 60:.1f} min ({n_warm} D-only steps at {d_only:.2f} s, "
            f"{p.cfg.iters - n_warm} PDD steps at {full:.2f} s, measured; evaluation and report extra)")
    try:
        trainer.fit()
    except KeyboardInterrupt:
        log(f"\ninterrupted at iteration {trainer.iteration}; the last checkpoint is iteration "
            f"{trainer.iteration_saved}. Run the same command again to resume.")
        raise
    adapted = trainer.ema.float().eval()
    if p.cfg.channels_last:
        adapted = adapted.to(memory_format=torch.contiguous_format)
    export(adapted, p.info, run)
    rep = p.domain.unlabeled_lr.report
    meta = {
        "base_model": p.info.name, "base_source": p.info.source, "license": p.info.license,
        "architecture": p.info.architecture, "scale": p.info.scale, "rrdbnet_args": p.info.rrdbnet_args,
        "tags": p.info.tags, "lr_dir": str(Path(lr_dir).resolve()), "photos_used": len(rep.used),
        "patches": rep.patches, "photos_skipped": len(rep.skipped),
        "skipped": [[str(f), why] for f, why in rep.skipped], "hr_dir": str(hr_dir) if hr_dir else None,
        "labeled_source": p.domain.sources["labeled"], "pairs_dir": str(pairs_dir) if pairs_dir else None,
        "iterations": trainer.iteration, "preset": p.cfg.preset, "mode": p.cfg.mode, "seed": p.cfg.seed,
        "commit": _git_commit(), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "train_seconds_this_session": round(time.time() - t_start, 1), "sources": trainer.sources,
        "config": p.cfg.to_dict(),
    }
    if report:
        comps = compare_on_photos(base, adapted, p.domain.unlabeled_lr, p.info.scale,
                                  crop=32 if preset == "tiny" else 96, max_photos=4 if preset == "tiny" else 8)
        nr = no_reference_scores(comps)
        pr = pairs_table(base, adapted, p.domain.test_pairs) if p.domain.test_pairs else None
        write_report(run, p.info, comps, nr, pr, meta)
        meta["report"] = {"niqe_per_photo": nr[0].to_dict("records"), "niqe_diff_mean_ci": list(nr[1]),
                          "niqe_unavailable": nr[2] or None,
                          "pairs_means": None if pr is None else pr[0].to_dict(),
                          "pairs_gain_mean_ci": None if pr is None else {k: list(v) for k, v in pr[1].items()}}
    tmp = run / ".model.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(done)  # written last: its presence means the run finished
    log(f"done: {run}/model.pth, model.safetensors, model.json" + (", report.html" if report else ""))
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pdd.adapt", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lr-dir", required=True, help="folder of your LR photos (recursive)")
    ap.add_argument("--out", required=True, help="run folder RUN")
    ap.add_argument("--generalist", help="RealESRGAN_x4plus (default) or a .pth/.safetensors upscaler")
    ap.add_argument("--preset", default="cpu", choices=ADAPT_PRESETS)
    ap.add_argument("--mode", default="ema", choices=["ema", "static"])
    ap.add_argument("--iters", type=int)
    ap.add_argument("--hr-dir", help="your own clean HR photos as the labeled source")
    ap.add_argument("--pairs-dir", help="held-out pairs: DIR/lr and DIR/hr, matched by name, HR = scale x LR")
    ap.add_argument("--data-root")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any TrainConfig field")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--no-estimate", action="store_true")
    ap.add_argument("--no-report", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    cli.add_debug_flag(ap)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {}
    for item in args.set:
        if "=" not in item:
            ap.error(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v.strip()
    try:
        adapt(args.lr_dir, args.out, args.generalist, args.preset, args.mode, args.iters, args.hr_dir,
              args.pairs_dir, args.data_root, args.seed, overrides, progress=not args.no_progress,
              estimate=not args.no_estimate, report=not args.no_report,
              log=lambda s: print(s, file=sys.stderr))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m pdd.adapt"))
