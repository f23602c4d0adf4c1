"""Adapt any upscaler to a folder of your own low-resolution photos, with no HR needed.

    python -m pdd.adapt --lr-dir my_photos/ --out runs/mine                       # RealESRGAN_x4plus, cpu preset
    python -m pdd.adapt --lr-dir my_photos/ --out runs/mine --generalist 4x_foo.safetensors --iters 2000
    python -m pdd.adapt --lr-dir my_photos/ --out runs/mine --minutes 30                # as many iterations as fit
    python -m pdd.upscale -i my_photos/ -o upscaled/ --model runs/mine

The folder is the unlabeled target set X^U (`pdd.photos`); the labeled source pairs come from
DF2K/DIV2K under the data root when present, else the packaged photos, or --hr-dir. PDD (EMA
by default) then trains the generalist's copy S on both. Before training it prints what it
found and an estimate of the time from a few timed steps (undone afterwards); --minutes N picks
the iterations that fit N minutes from those steps. The progress bar's time left weights D's
warm-up steps by their measured cost. Ctrl-C or a crash loses at most one checkpoint interval;
the same command resumes (a --minutes run keeps the iterations it chose); a finished RUN is reused.

RUN/ afterwards holds model.pth ({"params_ema": ...}, BasicSR layout for the RRDBNet family,
so Real-ESRGAN's inference_realesrgan.py --model_path loads it), model.safetensors (the base
model's key layout, loadable by spandrel), model.json (what was made, from what) and
report.html (self-contained: it opens with the verdict on the held-out pairs when --pairs-dir is
given, else says there is no fidelity evidence; 256-px before/after crops at 100 % beside the LR
input; no-reference scores; curves). The trainer's
own files (checkpoint.pt, log.csv, weights/) are in RUN/train/.
"""
from __future__ import annotations

import argparse
import base64
import copy
import io
import json
import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
if __name__ == "__main__":  # a command line: PyTorch reads PYTORCH_ENABLE_MPS_FALLBACK once, as it loads
    from pdd.devices import before_torch

    before_torch()

import torch

from . import cli
from .config import make_config, set_field
from .imageops import to_uint8
from .sr_models import ModelInfo, check_trainable, export_formats, load_upscaler

ADAPT_PRESETS = ("cpu", "paper", "tiny")
# --minutes: a run with fewer full PDD steps than this is not worth starting (the distillation
# terms need some steps to act; 20 is far below the cpu preset's 250)
MIN_PDD_ITERS = 20
# The report's crops: at least this many OUTPUT pixels a side, shown at 100 %
CROP_OUT_PX = 256


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
        set_iters(cfg, iters)
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


def set_iters(cfg, iters: int) -> None:
    """Run length ``iters``; short runs keep D's warm-up (at most a fifth) and the checkpoint
    interval inside the run."""
    cfg.iters = iters
    cfg.warmup_d_iters = min(cfg.warmup_d_iters, max(iters // 5, 0))
    cfg.ckpt_every = max(1, min(cfg.ckpt_every, iters))


def seconds_left(iters: int, warmup: int, d_only: float, full: float, done: int = 0) -> float:
    """Seconds for iterations done+1..iters: the first ``warmup`` train D alone (``d_only`` s
    each), the rest are full PDD steps (``full`` s each)."""
    warm = min(warmup, iters)
    return max(0, warm - done) * d_only + max(0, iters - max(done, warm)) * full


def iterations_for_minutes(minutes: float, d_only: float, full: float, warmup: int) -> tuple[int, int]:
    """(iters, warm-up iters) of the longest run that fits ``minutes``, the warm-up by
    ``set_iters``'s rule (min(warmup, iters // 5)). Raises ValueError when fewer than
    MIN_PDD_ITERS full PDD steps fit."""
    if not minutes > 0:
        raise ValueError(f"--minutes must be positive, got {minutes}")
    budget = minutes * 60
    cost = lambda n: seconds_left(n, min(warmup, n // 5), d_only, full)  # noqa: E731 -- nondecreasing in n
    lo, hi = 0, int(budget / max(min(d_only, full) if d_only > 0 else full, 1e-9)) + 2
    while lo < hi:  # the largest n with cost(n) <= budget
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if cost(mid) <= budget else (lo, mid - 1)
    warm = min(warmup, lo // 5)
    if lo - warm < MIN_PDD_ITERS:
        need = seconds_left(MIN_PDD_ITERS + min(warmup, MIN_PDD_ITERS // 4), min(warmup, MIN_PDD_ITERS // 4),
                            d_only, full)
        raise ValueError(f"--minutes {minutes:g}: not even {MIN_PDD_ITERS} PDD iterations fit (D-only step "
                         f"{d_only:.2f} s, PDD step {full:.2f} s, measured on this machine); a minimal run needs "
                         f"about {need / 60:.1f} min. Give more minutes, fewer threads' competition, or --iters.")
    return lo, warm


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
    from .train import _bare, seconds_per_step

    cfg = trainer.cfg
    saved = copy.deepcopy(trainer.state())
    rng = torch.get_rng_state()

    try:
        d_only = seconds_per_step(trainer, 1, steps) if cfg.warmup_d_iters > 0 else 0.0
        full = seconds_per_step(trainer, cfg.warmup_d_iters + cfg.distill_start_k + 1, steps)
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


def weighted_bar(step_seconds, **fixed):
    """A tqdm class for Trainer.fit whose time left weights each remaining iteration by its
    predicted cost (``step_seconds(t)``: D-only warm-up steps are several times cheaper than
    PDD steps, so the plain average rate is wrong during and after the warm-up), scaled by how
    fast the iterations done so far went against their prediction."""
    from tqdm.auto import tqdm
    from tqdm.std import tqdm as std_tqdm

    class WeightedETA(tqdm):
        @property
        def format_dict(self):
            d = super().format_dict
            n, total, start = int(d["n"]), int(d["total"] or 0), int(d.get("initial") or 0)
            predicted_done = sum(step_seconds(t) for t in range(start + 1, n + 1))
            left = sum(step_seconds(t) for t in range(n + 1, total + 1))
            speed = d["elapsed"] / predicted_done if predicted_done > 0 else 1.0
            d["eta"] = std_tqdm.format_interval(left * speed)
            d["bar_format"] = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{eta} weighted, {rate_fmt}{postfix}]"
            return d

    return lambda *a, **kw: WeightedETA(*a, **{**kw, **fixed})


def _report_seconds(model, p: Plan, crop: int, max_photos: int) -> tuple[float, float]:
    """(seconds, LR megapixels) to upscale what the report upscales (each photo's crop and each
    held-out pair's LR, by both models), from one timed forward of the generalist on a patch."""
    photos = p.domain.unlabeled_lr
    idx = dict.fromkeys(np.linspace(0, len(photos) - 1, min(max_photos, len(photos))).round().astype(int).tolist())
    px = sum(min(crop, *photos.sizes[i][:2]) ** 2 for i in idx)
    pairs = p.domain.test_pairs or []
    lr_sizes = [a for a, _ in pairs.sizes] if hasattr(pairs, "sizes") else [lr.shape[:2] for lr, _, _ in pairs]
    px += sum(h * w for h, w in lr_sizes)
    x = torch.rand(1, 3, p.cfg.patch * 2, p.cfg.patch * 2)
    with torch.no_grad():
        model(x)  # one-off costs
        t0 = time.perf_counter()
        model(x)
        per_px = (time.perf_counter() - t0) / x[0, 0].numel()
    return 2 * px * per_px, 2 * px / 1e6


def _png_b64(img: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _fig_b64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def compare_on_photos(generalist, adapted, photos, scale: int, crop: int = 96, max_photos: int = 8,
                      window: int | None = None) -> list[dict]:
    """Per photo (up to `max_photos`, spread over the folder): the centre crop of `crop` LR px,
    both models' SR of it, and the `window` x `window` LR-px window (default: CROP_OUT_PX output
    px, i.e. 64 LR px at x4; the whole crop when the photo is smaller) where the two SR outputs
    differ most, on the LR grid so that the LR input shown beside them is the same region."""
    from .photos import to_float
    from .upscale import upscale_image

    window = window or math.ceil(CROP_OUT_PX / scale)
    out = []
    idx = np.linspace(0, len(photos) - 1, min(max_photos, len(photos))).round().astype(int)
    for i in dict.fromkeys(idx.tolist()):
        img = photos[i]
        h, w = img.shape[:2]
        ch, cw = min(crop, h), min(crop, w)
        top, left = (h - ch) // 2, (w - cw) // 2
        lr = to_float(img[top:top + ch, left:left + cw])
        a = upscale_image(generalist, lr, scale)
        b = upscale_image(adapted, lr, scale)
        # mean |difference| per LR pixel (its scale x scale SR block), then over every window
        diff = np.abs(a - b).mean(axis=2).reshape(ch, scale, cw, scale).mean(axis=(1, 3))
        wh, ww = min(window, ch), min(window, cw)
        ii = np.pad(diff, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        sums = ii[wh:, ww:] - ii[:-wh, ww:] - ii[wh:, :-ww] + ii[:-wh, :-ww]
        y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
        out.append({"name": photos.names[i] if hasattr(photos, "names") else f"#{i}", "lr": lr, "generalist": a,
                    "adapted": b, "window": (int(y), int(x), wh, ww), "scale": scale,
                    "whole": (wh, ww) == (ch, cw), "mean_abs_diff": float(diff.mean())})
    return out


def crop_views(c: dict) -> dict[str, np.ndarray]:
    """The three uint8 views of a comparison's window, all the same size in output pixels:
    the LR input repeated nearest-neighbour x scale, the generalist's SR, the adapted SR."""
    y, x, wh, ww = c["window"]
    s = c["scale"]
    lr = to_uint8(c["lr"][y:y + wh, x:x + ww])
    return {f"LR input (nearest x{s})": lr.repeat(s, axis=0).repeat(s, axis=1),
            "generalist (your original model)": to_uint8(c["generalist"][y * s:(y + wh) * s, x * s:(x + ww) * s]),
            "adapted": to_uint8(c["adapted"][y * s:(y + wh) * s, x * s:(x + ww) * s])}


# The verdict's rule, fixed before any data is seen (printed in every report that has pairs)
VERDICT_RULE = ("Rule, fixed before looking at the numbers: the adapted model wins only if the 95 % paired "
                "bootstrap CI of its PSNR gain over its start (the generalist) on the held-out pairs lies "
                "entirely above 0 dB, with at least {min_pairs} pairs. A CI entirely below 0 means it got worse; "
                "a CI that spans 0 means no clear difference; in both cases keep your original model. The "
                "colour-corrected PSNR gain (psnr_cc: each output's per-channel mean and spread matched to "
                "its LR input first) says whether a gain is more than a colour or brightness shift.")
MIN_VERDICT_PAIRS = 3


def verdict(gains: dict | None, n_pairs: int = 0, smoke_test: bool = False) -> dict:
    """The report's opening: {"outcome", "headline", "lines"} from the held-out pairs' paired
    gains {"psnr": (mean, lo, hi), "psnr_cc": (...)} (adapted - generalist), by VERDICT_RULE.
    outcomes: "adapted wins", "worse", "no clear difference", "too few pairs", "no pairs".
    ``smoke_test`` (the tiny preset's random generalist): the headline says it is not evidence."""
    v = _verdict(gains, n_pairs)
    if smoke_test:
        v["headline"] = "Smoke test (tiny preset: a random generalist), not evidence. " + v["headline"]
    return v


def _verdict(gains: dict | None, n_pairs: int) -> dict:
    rule = VERDICT_RULE.format(min_pairs=MIN_VERDICT_PAIRS)
    if not gains or not n_pairs:
        return {"outcome": "no pairs", "headline": "No fidelity evidence: no held-out pairs were given.",
                "lines": ["Your photos have no HR, so nothing in this report can say whether the adapted model is "
                          "closer to the truth than your original one: the crops show only where they differ, and "
                          "NIQE measures naturalness, not fidelity. For a verdict, run again with --pairs-dir DIR "
                          "holding DIR/lr and DIR/hr (a few of your photos with a clean HR at exactly x scale, "
                          "not among the training photos)."]}
    m, lo, hi = gains["psnr"]
    cc = gains.get("psnr_cc")
    ci = f"{m:+.2f} dB [{lo:+.2f}, {hi:+.2f}] (95 % paired bootstrap CI, {n_pairs} pairs)"
    if n_pairs < MIN_VERDICT_PAIRS:
        outcome, head = "too few pairs", (f"Keep your original model: {n_pairs} held-out pair(s) are too few for a "
                                          f"verdict (PSNR gain {ci}).")
    elif lo > 0:
        outcome, head = "adapted wins", f"Use the adapted model: it beats its start on your held-out pairs, PSNR gain {ci}."
    elif hi < 0:
        outcome, head = "worse", f"Keep your original model: the adapted one is worse on your held-out pairs, PSNR gain {ci}."
    else:
        outcome, head = "no clear difference", (f"No clear difference: keep your original model. PSNR gain {ci} "
                                                f"spans 0.")
    lines = []
    if cc is not None and all(np.isfinite(cc)):
        cm, clo, chi = cc
        line = f"Colour-corrected PSNR gain: {cm:+.2f} dB [{clo:+.2f}, {chi:+.2f}]"
        if outcome == "adapted wins":
            line += (": the gain survives colour correction, so it is more than a colour shift." if clo > 0 else
                     ": it does not clearly survive colour correction, so much of the gain may be a colour or "
                     "brightness shift that a simple correction also gives.")
        lines.append(line + ("" if line.endswith(".") else "."))
    lines.append(rule)
    return {"outcome": outcome, "headline": head, "lines": lines}


def no_reference_scores(comparisons: list[dict]):
    """NIQE of both SR outputs per photo, paired differences (adapted - generalist) with a
    bootstrap CI. NIQE is a no-reference statistic of naturalness: not fidelity evidence."""
    import pandas as pd

    from .evaluate import Unavailable, create_metrics
    from .stats import bootstrap_ci

    niqe = create_metrics(["niqe"])["niqe"]
    rows = []
    for c in comparisons:
        row = {"photo": c["name"]}
        for k in ("generalist", "adapted"):
            sr = torch.from_numpy(to_uint8(c[k]).astype(np.float64) / 255).permute(2, 0, 1)[None]
            ok = not isinstance(niqe, Unavailable) and min(sr.shape[-2:]) >= 96
            row[f"niqe_{k}"] = float(niqe(sr.double()).reshape(-1)[0]) if ok else float("nan")
        row["diff"] = row["niqe_adapted"] - row["niqe_generalist"]
        rows.append(row)
    df = pd.DataFrame(rows)
    ci = bootstrap_ci(df["diff"].to_numpy()) if len(df) else (float("nan"),) * 3
    reason = niqe.reason if isinstance(niqe, Unavailable) else ""
    return df, ci, reason


def pairs_table(generalist, adapted, pairs):
    """(means, gains, n): full-reference scores on the held-out pairs, the paired gains (adapted -
    generalist) with bootstrap CIs (07's protocol), and the number of pairs scored."""
    import pandas as pd

    from .evaluate import create_metrics, evaluate
    from .stats import bootstrap_ci

    metrics = create_metrics(["psnr", "ssim", "niqe"])
    per = {k: evaluate(m, pairs, metrics, progress=False) for k, m in (("generalist", generalist), ("adapted", adapted))}
    means = pd.DataFrame({k: v.drop(columns=["name"]).mean() for k, v in per.items()})
    gains = {}
    for metric in ("psnr", "ssim", "psnr_cc"):
        d = per["adapted"][metric].to_numpy() - per["generalist"][metric].to_numpy()
        gains[metric] = bootstrap_ci(d)
    return means, gains, len(per["adapted"])


def _formats_html(formats: dict) -> str:
    """The files list of the report, from model.json's "formats" (`sr_models.export_formats`):
    each file with the apps that load it, the apps that cannot and why, or why it is missing."""
    import html

    items = []
    for fmt, d in formats.items():
        if "unavailable" in d:
            items.append(f"<li><b>{fmt}</b>: not written: {html.escape(str(d['unavailable']))}</li>")
            continue
        files = " + ".join(html.escape(str(d[k])) for k in ("path", "bin") if k in d)
        loads = "; ".join(html.escape(str(a)) for a in d.get("loads_in", []))
        nots = "".join(f"<br>not in {html.escape(str(app))}: {html.escape(str(why))}"
                       for app, why in (d.get("not_loadable_in") or {}).items())
        items.append(f"<li><b>{fmt}</b>: {files} &mdash; loads in: {loads}{nots}</li>")
    return ("<ul>" + "".join(items) + "<li>model.json: provenance</li></ul>"
            "<p>The README's section 'Your model in other apps' says where each app wants the files.</p>")


def write_report(run: Path, info: ModelInfo, comparisons, nr, pairs_result, meta: dict) -> Path:
    """RUN/report.html: one file, every image inline. Opens with the verdict (``verdict``) on the
    held-out pairs, or says that there is no fidelity evidence; crops at 100 %."""
    import html

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .viz import plot_losses

    v = verdict(pairs_result[1] if pairs_result else None, pairs_result[2] if pairs_result else 0,
                smoke_test=meta["preset"] == "tiny")
    colour = {"adapted wins": "#dff5dd", "no pairs": "#fff6d5"}.get(v["outcome"], "#fde2e1")
    parts = [f"<html><head><meta charset='utf-8'><title>pdd.adapt: {html.escape(run.name)}</title>"
             # crops carry their own pixel size as width/height: no CSS may rescale them
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img.crop{max-width:none;margin:2px}"
             "td,th{padding:2px 8px;text-align:right}td.crop{text-align:left;vertical-align:top}"
             ".note{background:#fff6d5;padding:8px}.verdict{padding:8px 12px}</style></head><body>",
             f"<div class='verdict' id='verdict' style='background:{colour}'><h1>{html.escape(v['headline'])}</h1>"
             + "".join(f"<p>{html.escape(line)}</p>" for line in v["lines"]) + "</div>",
             f"<h2>{html.escape(info.name)} adapted to {html.escape(str(meta['lr_dir']))}</h2>",
             "<p class='note'><b>What is and is not evidence.</b> The crops show how the adapted model differs "
             "from the generalist on your photos; they cannot show which is closer to the truth, because your "
             "photos have no HR. NIQE is a no-reference naturalness statistic, not fidelity. Only the "
             "held-out pairs table (when --pairs-dir is given) measures fidelity. "
             + ("This run used the <b>tiny</b> preset: a smoke test, not evidence. " if meta["preset"] == "tiny" else "")
             + "</p>",
             f"<p>{meta['iterations']} iterations of {meta['mode']} PDD, preset {meta['preset']}, seed {meta['seed']}, "
             f"{meta['photos_used']} photos ({meta['patches']} patches), {meta['photos_skipped']} skipped; "
             f"architecture {html.escape(info.architecture)} x{info.scale}; commit {meta['commit']}.</p>"]
    if pairs_result is not None:
        means, gains, n = pairs_result
        parts.append(f"<h2>Held-out pairs (full reference): the evidence ({n} pairs)</h2>")
        parts.append(means.to_html(float_format=lambda x: f"{x:.4f}", na_rep="n/a"))
        parts.append("<ul>" + "".join(f"<li>target gain in {k}: {m:+.4f} [{lo_:+.4f}, {hi_:+.4f}] (95% bootstrap CI)</li>"
                                      for k, (m, lo_, hi_) in gains.items()) + "</ul>")
    parts.append("<h2>Generalist vs adapted on your photos</h2>"
                 "<p>Per photo, the window where the two outputs differ most (chosen by the size of the "
                 "difference, not by which looks better), at 100 %: one screen pixel per output pixel. Left: "
                 "the LR input, each pixel repeated to the same size, for comparison.</p>")
    for c in comparisons:
        views = crop_views(c)
        cells = []
        for label, img in views.items():
            h, w = img.shape[:2]
            cells.append(f"<td class='crop'>{html.escape(label)}<br><img class='crop' src='{_png_b64(img)}' "
                         f"width={w} height={h} alt='{html.escape(label)}'></td>")
        y, x, wh, ww = c["window"]
        where = ("the whole crop (the photo is smaller than the window)" if c["whole"]
                 else f"LR window {ww}x{wh} px at ({x}, {y}) of the centre crop")
        parts.append(f"<h3>{html.escape(c['name'])} (mean |difference| {c['mean_abs_diff'] * 255:.2f}/255)</h3>"
                     f"<p>{where}</p><table><tr>" + "".join(cells) + "</tr></table>")
    df, (mean, lo, hi), reason = nr
    parts.append("<h2>No-reference scores (NIQE, lower = more natural-looking; not fidelity)</h2>")
    if reason:
        parts.append(f"<p>NIQE unavailable: {html.escape(reason)}</p>")
    parts.append(df.to_html(index=False, float_format=lambda x: f"{x:.3f}", na_rep="n/a"))
    parts.append(f"<p>paired difference adapted - generalist: mean {mean:.3f}, 95% bootstrap CI [{lo:.3f}, {hi:.3f}] "
                 f"over {len(df)} photos (NaN where a crop is under 96 px).</p>")
    if pairs_result is None:
        parts.append("<h2>Held-out pairs</h2><p>None given (--pairs-dir DIR with lr/ and hr/): no fidelity "
                     "evidence in this report.</p>")
    try:
        axes = plot_losses(run / "train")
        parts.append(f"<h2>Training curves</h2><img src='{_fig_b64(axes[0].figure)}'>")
        plt.close(axes[0].figure)
    except (FileNotFoundError, ValueError, KeyError) as e:
        parts.append(f"<h2>Training curves</h2><p>not available: {html.escape(str(e))}</p>")
    parts.append("<h2>Files: where each app wants them</h2>" + _formats_html(meta.get("formats") or {}))
    text = "\n".join(parts)
    size = len(text.encode()) + 100
    text += f"\n<p>This file: {size / 1e6:.1f} MB, every image inline.</p></body></html>"
    path = run / "report.html"
    tmp = run / ".report.html.tmp"
    tmp.write_text(text)
    tmp.replace(path)
    return path


def adapt(lr_dir, out, generalist: str | None = None, preset: str = "cpu", mode: str = "ema",
          iters: int | None = None, hr_dir=None, pairs_dir=None, data_root=None, seed: int = 0,
          overrides: dict | None = None, progress: bool = True, estimate: bool = True, report: bool = True,
          log=print, minutes: float | None = None) -> Path:
    """Run (or resume, or reuse) an adaptation; returns RUN. See the module docstring.
    ``minutes``: instead of ``iters``, as many iterations as fit that many minutes on this
    machine, from timed steps (a resumed run keeps the count it chose)."""
    from .evaluate import git_commit
    from .train import CHECKPOINT, Trainer

    if minutes is not None and iters is not None:
        raise ValueError("give either --minutes (the iterations that fit the time) or --iters, not both")
    run = Path(out)
    done = run / "model.json"
    if done.is_file():
        log(f"{run} is a finished run (model.json present); reusing it. Delete the folder to train again.")
        return run
    chosen_from = "--iters" if iters is not None else f"the {preset} preset's default"
    recorded = run / "train" / "config.json"
    reuse_count = minutes is not None and recorded.is_file()
    if reuse_count:  # the run started before: its length was chosen then, and resuming must not re-pick it
        c = json.loads(recorded.read_text())["config"]
        iters = int(c["iters"])
        overrides = {**(overrides or {}), "warmup_d_iters": c["warmup_d_iters"], "ckpt_every": c["ckpt_every"]}
        log(f"--minutes {minutes:g}: this run started before; keeping the {iters} iterations it chose "
            f"({recorded}), not re-timed")
        chosen_from = "--minutes, chosen when the run started (train/config.json); kept on resume"
    p = plan(lr_dir, out, generalist, preset, mode, iters, hr_dir, pairs_dir, data_root, seed, overrides)
    log(describe(p))
    run.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    base = copy.deepcopy(p.model).eval()  # the Trainer trains p.model in place; keep the generalist
    trainer = Trainer(p.cfg, progress=progress, domain=p.domain, model=p.model)
    crop, max_photos = 96, (4 if preset == "tiny" else 8)
    if trainer.resumed_from:
        log(f"resuming from iteration {trainer.resumed_from} ({run / 'train' / CHECKPOINT})")
    measured = None
    if p.cfg.iters > 0 and (estimate or (minutes is not None and not reuse_count)):
        d_only, full = measured = _timed_estimate(trainer)
        if minutes is not None and not reuse_count:
            n, warm = iterations_for_minutes(minutes, d_only, full, p.cfg.warmup_d_iters)
            set_iters(p.cfg, n)  # the Trainer holds this cfg: fit() runs and records n
            log(f"--minutes {minutes:g}: {n} iterations fit (D-only {d_only:.2f} s, PDD {full:.2f} s per step, "
                f"measured; {warm} D-only + {n - warm} PDD steps = "
                f"{seconds_left(n, warm, d_only, full) / 60:.1f} min of training)")
            chosen_from = (f"--minutes {minutes:g} from timed steps: D-only {d_only:.2f} s, PDD {full:.2f} s "
                           f"({torch.get_num_threads()} threads)")
    if measured and estimate:
        d_only, full = measured
        n_warm = min(p.cfg.warmup_d_iters, p.cfg.iters)
        left = seconds_left(p.cfg.iters, p.cfg.warmup_d_iters, d_only, full, trainer.iteration)
        n_warm_left = max(0, n_warm - trainer.iteration)
        n_full_left = p.cfg.iters - max(trainer.iteration, n_warm)
        evaluation = "evaluation and report extra"
        if report:
            rs, mp = _report_seconds(base, p, crop, max_photos)
            evaluation = (f"evaluation and report about {rs / 60:.1f} min more (upscaling {mp:.2f} LR megapixels, "
                          f"measured; metrics extra)")
        log(f"estimate on this machine: {left / 60:.1f} min of training ({n_warm_left} D-only steps at "
            f"{d_only:.2f} s, {n_full_left} PDD steps at {full:.2f} s, measured"
            + (f"; the {p.cfg.iters - trainer.iteration} iterations left" if trainer.iteration else "")
            + f"); {evaluation}")
    bar = None
    if measured and progress:
        d_only, full = measured
        warmup = p.cfg.warmup_d_iters
        bar = weighted_bar(lambda t: d_only if t <= warmup else full)
    try:
        trainer.fit(progress_bar=bar)
    except KeyboardInterrupt:
        log(f"\ninterrupted at iteration {trainer.iteration}; the last checkpoint is iteration "
            f"{trainer.iteration_saved}. Run the same command again to resume.")
        raise
    adapted = trainer.ema.float().eval()
    if p.cfg.channels_last:
        adapted = adapted.to(memory_format=torch.contiguous_format)
    formats = export_formats(adapted, p.info, run, name=run.name, log=log)
    rep = p.domain.unlabeled_lr.report
    meta = {
        "base_model": p.info.name, "base_source": p.info.source, "license": p.info.license,
        "architecture": p.info.architecture, "scale": p.info.scale, "rrdbnet_args": p.info.rrdbnet_args,
        "tags": p.info.tags, "lr_dir": str(Path(lr_dir).resolve()), "photos_used": len(rep.used),
        "patches": rep.patches, "photos_skipped": len(rep.skipped),
        "skipped": [[str(f), why] for f, why in rep.skipped], "hr_dir": str(hr_dir) if hr_dir else None,
        "labeled_source": p.domain.sources["labeled"], "pairs_dir": str(pairs_dir) if pairs_dir else None,
        "iterations": trainer.iteration, "minutes_budget": minutes, "iterations_chosen_from": chosen_from,
        "step_seconds_measured": None if measured is None else {"d_only": round(measured[0], 3),
                                                                 "pdd": round(measured[1], 3)},
        "preset": p.cfg.preset, "mode": p.cfg.mode, "seed": p.cfg.seed,
        "commit": git_commit(), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "train_seconds_this_session": round(time.time() - t_start, 1), "sources": trainer.sources,
        "config": p.cfg.to_dict(), "formats": formats,
    }
    if report:
        comps = compare_on_photos(base, adapted, p.domain.unlabeled_lr, p.info.scale, crop=crop, max_photos=max_photos)
        nr = no_reference_scores(comps)
        pr = pairs_table(base, adapted, p.domain.test_pairs) if p.domain.test_pairs else None
        path = write_report(run, p.info, comps, nr, pr, meta)
        v = verdict(pr[1] if pr else None, pr[2] if pr else 0, smoke_test=p.cfg.preset == "tiny")
        meta["report"] = {"verdict": v["outcome"], "verdict_headline": v["headline"],
                          "niqe_per_photo": nr[0].to_dict("records"), "niqe_diff_mean_ci": list(nr[1]),
                          "niqe_unavailable": nr[2] or None,
                          "pairs_means": None if pr is None else pr[0].to_dict(),
                          "pairs_gain_mean_ci": None if pr is None else {k: list(x) for k, x in pr[1].items()},
                          "html_bytes": path.stat().st_size}
        log(f"report: {v['headline']} ({path}, {path.stat().st_size / 1e6:.1f} MB)")
    tmp = run / ".model.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(done)  # written last: its presence means the run finished
    written = [d.get("path") for d in formats.values() if "path" in d]
    log(f"done: {run}/ " + ", ".join(str(f) for f in written) + ", model.json" + (", report.html" if report else ""))
    for fmt, d in formats.items():
        if "unavailable" in d:
            log(f"  {fmt} not written: {d['unavailable']}")
        for app, why in (d.get("not_loadable_in") or {}).items():
            log(f"  {d.get('path')} does not load in {app}: {why}")
    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pdd.adapt", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lr-dir", required=True, help="folder of your LR photos (recursive)")
    ap.add_argument("--out", required=True, help="run folder RUN")
    ap.add_argument("--generalist", help="RealESRGAN_x4plus (default) or a .pth/.safetensors upscaler")
    ap.add_argument("--preset", default="cpu", choices=ADAPT_PRESETS)
    ap.add_argument("--mode", default="ema", choices=["ema", "static"])
    length = ap.add_mutually_exclusive_group()
    length.add_argument("--iters", type=int, help="training iterations (default: the preset's)")
    length.add_argument("--minutes", type=float, metavar="N",
                        help="as many iterations as fit N minutes on this machine, from a few timed steps")
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
    overrides = dict(cli.set_items(ap, args.set))
    try:
        adapt(args.lr_dir, args.out, args.generalist, args.preset, args.mode, args.iters, args.hr_dir,
              args.pairs_dir, args.data_root, args.seed, overrides, progress=not args.no_progress,
              estimate=not args.no_estimate, report=not args.no_report,
              log=lambda s: print(s, file=sys.stderr), minutes=args.minutes)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m pdd.adapt"))
