"""Metrics (through pyiqa), the evaluation protocols, and result tables.

The paper's protocol: PSNR and SSIM on the Y channel of YCbCr (MATLAB's ``rgb2ycbcr``),
LPIPS (AlexNet) and NRQM, all with IQA-PyTorch (pyiqa). DRealSR is evaluated on
non-overlapping 512x512 LR crops, everything else on full images. We add NIQE (cheap,
and available offline) and a colour-corrected PSNR beside the plain one.

``pyiqa.create_metric`` is the only way metrics are made here. Some metrics download
weights at first use (LPIPS: AlexNet + LPIPS heads, NRQM: a .mat model, NIQE: its
pristine parameters). Offline, such a metric becomes an ``Unavailable`` record: its
column is NaN and ``unavailable_note`` says why. It never crashes a run and is never
replaced by a look-alike. NIQE is the exception: its parameters ship with pdd (see
``niqe_params_file``), so it works offline.

SR outputs are clamped to [0, 1] and rounded to 8 bit before any metric, exactly as the
official inference script does when it writes PNGs (basicsr ``tensor2img``).
"""
from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import warnings
from dataclasses import asdict, dataclass, is_dataclass, replace
from functools import cache
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io
import torch
from tqdm.auto import tqdm

from pdd.imageops import quantize, run_tiled
from pdd.runs import shown
from pdd.losses import color_correct
from pdd.weights import URL_TIMEOUT_S, WeightsSource, cache_dir, resolve_niqe_params

METRICS = ("psnr", "ssim", "niqe", "lpips", "nrqm")
SHIFT_COLUMNS = ("shift_r", "shift_g", "shift_b")  # evaluate()'s mean colour shift per RGB channel

# pyiqa's options for each metric, i.e. our protocol. pyiqa's PSNR/SSIM take the Y of
# YIQ by default (color_space="yiq"); the paper's tables use the Y of MATLAB's YCbCr.
# pyiqa's "lpips" is LPIPS v0.1 on AlexNet; "nrqm" is Ma et al.'s NRQM. NIQE keeps
# pyiqa's defaults, which follow the official NIQE release: the Y of YIQ, i.e. MATLAB's
# rgb2gray weights (0.299, 0.587, 0.114), rounded to integers, no border crop, 96x96
# blocks (the image is cut down to a multiple of 96 on each side).
PYIQA_OPTIONS = {
    "psnr": {"test_y_channel": True, "color_space": "ycbcr"},
    "ssim": {"test_y_channel": True, "color_space": "ycbcr"},
    "niqe": {},
    "lpips": {},
    "nrqm": {},
}
NIQE_BLOCK = 96  # pyiqa's NIQE needs at least one 96x96 block; smaller images raise inside it

# Pure formulas are fed float64 (8-bit values are exact, no float32 rounding in Y);
# learned networks get float32, the dtype of their weights.
FLOAT64_METRICS = {"psnr", "ssim", "niqe"}


# --------------------------------------------------------------------------------------
# Creating metrics


@dataclass(frozen=True)
class Unavailable:
    """A metric that could not be created (weights not downloadable, missing file, ...)."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name}: unavailable ({self.reason})"


def _short_reason(e: BaseException) -> str:
    """Exception type and the first line of its message, e.g. ``URLError: <urlopen error ...>``."""
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def niqe_params_file(path=None) -> tuple[Path, WeightsSource]:
    """NIQE's pristine parameters as the .mat file pyiqa's NIQE reads, without downloading.

    pyiqa's ``NIQE(pretrained_model_path=...)`` reads a .mat with ``mu_prisparam`` (1x36)
    and ``cov_prisparam`` (36x36), the key names of the official NIQE release's
    ``modelparameters.mat``; pyiqa would otherwise download that file as
    ``niqe_modelparameters.mat``. We write the same numbers from the copy shipped in
    ``pdd/assets`` (basicsr's npz). Checked: the npz is bit-identical to the official
    release's ``modelparameters.mat`` (LIVE, 2012), so scores match pyiqa's online NIQE.
    The file is rewritten only when its content differs, atomically.
    """
    params, source = resolve_niqe_params(path)
    mu, cov = params["mu_pris_param"].reshape(1, 36), params["cov_pris_param"]
    dst = cache_dir() / "niqe_modelparameters.mat"
    try:
        old = scipy.io.loadmat(dst)
        current = np.array_equal(old["mu_prisparam"], mu) and np.array_equal(old["cov_prisparam"], cov)
    except Exception:  # noqa: BLE001 -- absent or unreadable: (re)write it
        current = False
    if not current:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                scipy.io.savemat(f, {"mu_prisparam": mu, "cov_prisparam": cov})
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
    detail = "; ".join(filter(None, [source.detail, f"written as {dst} for pyiqa's NIQE"]))
    return dst, replace(source, detail=detail)


def create_metrics(names=METRICS, device="cpu") -> dict[str, object]:
    """``{name: pyiqa metric or Unavailable}``, in the order of ``names``.

    Each metric has ``.pdd_options`` (the pyiqa options we passed) and
    ``.weights_source`` (a ``WeightsSource`` for NIQE's parameters; a short text for
    the others). Any exception while creating a metric -- no network, a missing or
    corrupt file -- makes it ``Unavailable``; nothing is substituted.
    """
    if str(device).startswith("mps"):
        raise ValueError("create_metrics: pyiqa's metrics compute in float64, which Apple GPUs (MPS) lack; "
                         "use device='cpu' (the default)")
    import pyiqa

    out = {}
    for name in names:
        options = dict(PYIQA_OPTIONS.get(name, {}))
        source = "no weights" if name in ("psnr", "ssim") else "pyiqa's own download (torch hub cache)"
        old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(URL_TIMEOUT_S)  # a machine whose DNS hangs must not stall here
        try:
            if name == "niqe":
                path, source = niqe_params_file()
                options["pretrained_model_path"] = str(path)
            metric = pyiqa.create_metric(name, device=device, **options)
        except Exception as e:  # noqa: BLE001 -- any failure to create is reported, never raised
            out[name] = Unavailable(name, _short_reason(e))
            continue
        finally:
            socket.setdefaulttimeout(old_timeout)
        metric.pdd_options = {k: v for k, v in options.items() if k != "pretrained_model_path"}
        metric.weights_source = source
        out[name] = metric
    return out


def metric_info(metrics: dict) -> dict[str, dict]:
    """What each metric was, for result records: options and weights source, or why unavailable."""
    info = {}
    for name, m in metrics.items():
        if isinstance(m, Unavailable):
            info[name] = {"available": False, "reason": m.reason}
        else:
            src = m.weights_source
            info[name] = {"available": True, "options": m.pdd_options, "lower_better": bool(m.lower_better),
                          "weights_source": src.to_dict() if isinstance(src, WeightsSource) else str(src)}
    return info


def unavailable_note(metrics: dict) -> str:
    """One line naming the unavailable metrics and why ('' when all are available)."""
    missing = [m for m in metrics.values() if isinstance(m, Unavailable)]
    if not missing:
        return ""
    return "Unavailable metrics (NaN in the tables): " + "; ".join(f"{m.name} ({m.reason})" for m in missing)


@cache
def _default_metric(name: str):
    m = create_metrics((name,))[name]
    if isinstance(m, Unavailable):
        raise RuntimeError(str(m))  # noqa: TRY004 -- not a type error: it could not be built
    return m


def psnr_y(sr: torch.Tensor, hr: torch.Tensor, metric=None) -> torch.Tensor:
    """Y-channel PSNR (MATLAB YCbCr) per image, (N,) for (N, 3, H, W) tensors in [0, 1]."""
    return (metric or _default_metric("psnr"))(sr, hr).reshape(-1)


def ssim_y(sr: torch.Tensor, hr: torch.Tensor, metric=None) -> torch.Tensor:
    """Y-channel SSIM (MATLAB YCbCr) per image, (N,) for (N, 3, H, W) tensors in [0, 1]."""
    return (metric or _default_metric("ssim"))(sr, hr).reshape(-1)


# --------------------------------------------------------------------------------------
# Running a model


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def upscale(model, lr: torch.Tensor, device=None, bf16=False, tile=None, overlap=16, clamp=True) -> torch.Tensor:
    """SR of ``lr`` (N, 3, h, w) in [0, 1]: no grad, eval mode, float32 result on the CPU.

    ``device`` defaults to the model's own device; the model is not moved (moving a
    model that is being trained would silently break its optimiser). Its train/eval
    mode is restored afterwards. ``bf16`` runs under bfloat16 autocast. ``tile`` (LR
    pixels) bounds memory on big images, at a price: RRDBNet's receptive field is far
    wider than any practical ``overlap``, so tiled output differs from whole-image output
    (RealESRGAN, 64x64 LR, tile 32, overlap 16: +0.09 dB Y-PSNR on one test tile). Leave
    ``tile=None`` for reported numbers unless memory forces it, and record it if used.
    ``clamp=False`` returns the raw output, which colour correction needs (the official
    script corrects before clamping).
    """
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            x = lr.to(device, torch.float32)
            # pieces keep only their centres: equal to the whole image's output when the
            # receptive field is within the overlap (pdd.upscale cross-fades instead)
            sr = run_tiled(model, x, tile or 0, overlap, blend=False)
    finally:
        model.train(was_training)
    sr = sr.cpu()
    return sr.clamp(0, 1) if clamp else sr


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (1, 3, H, W) float64 in [0, 1]."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {img.dtype} {img.shape}")
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].double() / 255


# --------------------------------------------------------------------------------------
# Evaluation


def _expand(pairs, protocol: str):
    """The (lr, hr, name) items the protocol scores: full images, or DRealSR's 512 crops."""
    if protocol == "full":
        yield from pairs
    elif protocol == "crop512":
        from pdd.data import crop_512  # lazy: pdd.data pulls in the datasets machinery

        for lr, hr, name in pairs:
            scale = hr.shape[0] // lr.shape[0]
            for i, (lr_c, hr_c) in enumerate(crop_512(lr, hr, scale=scale)):
                yield lr_c, hr_c, f"{name}#{i}"
    else:
        raise ValueError(f"unknown protocol {protocol!r}; use 'full' or 'crop512'")


def colour_shift(sr, hr) -> tuple[float, float, float]:
    """(dR, dG, dB): the mean of SR − HR per RGB channel, in 8-bit levels. ``sr`` and ``hr`` are
    (N, 3, H, W) tensors in [0, 1] on 8-bit levels (what ``evaluate`` scores: the quantized SR)
    or HxWx3 uint8 arrays. A method that shifts colours shows it here whatever its detail;
    ``psnr_cc`` is the PSNR that such a shift no longer costs."""
    sr, hr = (_to_tensor(x) if isinstance(x, np.ndarray) else x for x in (sr, hr))
    if sr.shape != hr.shape:
        raise ValueError(f"colour_shift: SR {tuple(sr.shape)} and HR {tuple(hr.shape)} differ")
    # integer levels first: means of whole-level differences, without float rounding in between
    d = torch.round(sr.double() * 255) - torch.round(hr.double() * 255)
    return tuple(float(v) for v in d.mean(dim=(0, 2, 3)))


def _score(name: str, metric, sr: torch.Tensor, hr: torch.Tensor) -> float:
    if isinstance(metric, Unavailable):
        return math.nan
    if name == "niqe" and min(sr.shape[-2:]) < NIQE_BLOCK:
        return math.nan  # no 96x96 block to fit; pyiqa would raise. Warned once in evaluate().
    dtype = torch.float64 if name in FLOAT64_METRICS else torch.float32
    device = metric.dummy_param.device  # where create_metrics put it
    args = (sr.to(device, dtype),) if metric.metric_mode == "NR" else (sr.to(device, dtype), hr.to(device, dtype))
    return float(metric(*args).reshape(-1)[0])


def evaluate(model, pairs, metrics: dict, *, color_correction=False, crop_border=0, protocol="full",
             device=None, bf16=False, tile=None, progress=True) -> pd.DataFrame:
    """One row per scored image: ``name``, each metric (NaN if unavailable), ``psnr_cc``, and the
    mean colour shift SR − HR per RGB channel in 8-bit levels (``shift_r``, ``shift_g``,
    ``shift_b``: ``colour_shift`` of the SR every metric sees).

    ``pairs``: (lr, hr, name) with HxWx3 uint8 arrays, hr exactly scale x lr (the format
    of ``pdd.data.Domain.test_pairs``). ``protocol="crop512"`` scores DRealSR's
    non-overlapping 512x512 LR crops (``pdd.data.crop_512``), named ``name#i``.
    ``color_correction`` applies supplementary Eq. 13 (per-channel mean/std of the LR
    input) to the raw output before clamping and 8-bit rounding, as the official
    inference script does; ``psnr_cc`` is that corrected PSNR, reported whatever the
    setting, so colour drift can be told apart from detail. ``crop_border`` pixels are
    cut from every side of SR and HR before all metrics. The frame's ``attrs`` record
    the settings and the unavailable metrics.
    """
    rows, niqe_too_small = [], []
    psnr_metric = metrics.get("psnr")
    if psnr_metric is None or isinstance(psnr_metric, Unavailable):
        psnr_metric = _default_metric("psnr")  # needs no weights, so this cannot be unavailable
    items = list(_expand(pairs, protocol))
    for lr, hr, name in tqdm(items, desc="evaluate", disable=not progress, leave=False):
        lr_t, hr_t = _to_tensor(lr), _to_tensor(hr)
        raw = upscale(model, lr_t, device=device, bf16=bf16, tile=tile, clamp=False)
        if raw.shape != hr_t.shape:
            raise ValueError(f"{name}: SR is {tuple(raw.shape[-2:])} but HR is {tuple(hr_t.shape[-2:])} "
                             f"(LR {lr.shape[:2]}); is the model's scale that of the data?")
        # clamped before rounding, as scores always were (a value just below 0 gives +0.0)
        corrected = quantize(color_correct(raw.double(), lr_t).clamp(0, 1))
        sr = corrected if color_correction else quantize(raw.double().clamp(0, 1))
        if crop_border:
            b = crop_border
            sr, hr_t, corrected = (t[..., b:-b, b:-b] for t in (sr, hr_t, corrected))
        row = {"name": name}
        for metric_name, metric in metrics.items():
            row[metric_name] = _score(metric_name, metric, sr, hr_t)
        row["psnr_cc"] = float(psnr_y(corrected, hr_t, psnr_metric)[0])
        row.update(zip(SHIFT_COLUMNS, colour_shift(sr, hr_t)))
        if "niqe" in metrics and min(sr.shape[-2:]) < NIQE_BLOCK:
            niqe_too_small.append(name)
        rows.append(row)
    df = pd.DataFrame(rows, columns=["name", *metrics, "psnr_cc", *SHIFT_COLUMNS])
    if niqe_too_small:
        warnings.warn(f"NIQE needs images of at least {NIQE_BLOCK}x{NIQE_BLOCK}; NaN for {niqe_too_small}",
                      stacklevel=2)
    df.attrs.update(cc=bool(color_correction), protocol=protocol, crop_border=int(crop_border), bf16=bool(bf16),
                    tile=tile,
                    unavailable={m.name: m.reason for m in metrics.values() if isinstance(m, Unavailable)},
                    niqe_too_small=niqe_too_small)
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count per metric column (rows), over images; NaN for unavailable metrics."""
    values = df.drop(columns=["name"], errors="ignore").select_dtypes("number")
    out = pd.DataFrame({"mean": values.mean(), "std": values.std(), "n": values.count()})
    out.attrs.update(df.attrs)
    return out


# --------------------------------------------------------------------------------------
# Provenance


def git_commit(repo=None) -> str:
    """Short hash of the checkout pdd is imported from (or of ``repo``); "-dirty" if any tracked
    file differs from it or any file is untracked (an untracked module that produced a result is
    not in the commit either); "unknown" without git or a commit. results/ is left out: a run
    writes its own outputs there."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        def git(*args):
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True,
                                  timeout=10).stdout.strip()
        commit = git("rev-parse", "--short", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--", ".", ":(exclude)results") else "")
    except (OSError, subprocess.SubprocessError):  # no git, not a checkout, no commit yet
        return "unknown"


def _plain(x, text=lambda s: s):
    """Make caller-supplied values JSON-friendly (dataclasses, WeightsSource, paths), every string
    passed through ``text`` (``runs.shown``: this machine's paths as committed results show them)."""
    if isinstance(x, WeightsSource):
        return _plain(x.to_dict(), text)
    if is_dataclass(x) and not isinstance(x, type):
        return _plain(asdict(x), text)
    if isinstance(x, (str, Path)):
        return text(str(x))
    if isinstance(x, dict):
        return {k: _plain(v, text) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v, text) for v in x]
    return x


def result_record(**extra) -> dict:
    """Provenance stored with every result: git commit, versions, python, plus ``extra``.

    The machine (CPU model and flags, GPU) is recorded too. Pass the resolved config, the weights' sources, the seed, the precision, and
    ``metrics=metric_info(metrics)``.
    """
    versions = {}
    for pkg in ("torch", "torchvision", "pyiqa", "numpy"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    from .config import cpu_model
    from .devices import describe, resolve_device

    record = {"git_commit": git_commit(), "versions": versions, "python": platform.python_version(),
              "machine": cpu_model() + (f"; GPU {describe(resolve_device('auto'))}" if resolve_device("auto").type != "cpu" else "")}
    record.update({k: _plain(v, shown) for k, v in extra.items()})
    return record


__all__ = [
    "METRICS", "PYIQA_OPTIONS", "SHIFT_COLUMNS", "Unavailable", "colour_shift", "create_metrics", "evaluate", "git_commit", "metric_info",
    "niqe_params_file", "psnr_y", "result_record", "ssim_y", "summarize", "unavailable_note", "upscale",
]


def compare(models: dict, test_sets: dict, metrics: dict, progress: bool = False, **kw) -> pd.DataFrame:
    """Evaluate every model on every test set: one row per (model, test set) with metric means.

    ``models``: {row name: model}; ``test_sets``: {column name: pairs}, e.g.
    ``{"target (X^U)": domain.test_pairs, "source (X^L)": domain.source_test_pairs}``.
    Per-image frames are kept in ``.attrs["per_image"]`` for paired comparisons (with the colour
    shift columns, which the table of means leaves out: it stays the table it always was).
    """
    rows, per_image = [], {}
    for m_name, model in models.items():
        for s_name, pairs in test_sets.items():
            df = evaluate(model, pairs, metrics, progress=progress, **kw)
            per_image[(m_name, s_name)] = df
            means = df.drop(columns=["name", *SHIFT_COLUMNS]).mean(numeric_only=True)
            rows.append({"model": m_name, "test set": s_name, "images": len(df), **means.to_dict()})
    out = pd.DataFrame(rows)
    out.attrs["per_image"] = per_image
    out.attrs["unavailable"] = unavailable_note(metrics)
    return out


def write_results(table: pd.DataFrame, stem, record: dict) -> list[Path]:
    """Write ``stem``.csv, .md (table + provenance) and .json (record + rows)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False, float_format="%.4f")
    note = table.attrs.get("unavailable", "")
    prov = ", ".join(f"{k}: {v}" for k, v in record.items() if k in ("git_commit", "preset", "seed", "precision"))
    md = [markdown_table(table), "", f"Produced by: {prov}."]
    # which weights (a companion-trained stand-in says so) and which machine, one line each
    md += [f"- {k}: {v}" for k, v in record.items()
           if k in ("generalist", "specialist", "kdsr", "weights", "machine") and v]
    if note:
        md.append(note)
    stem.with_suffix(".md").write_text(shown("\n".join(md) + "\n"))
    stem.with_suffix(".json").write_text(shown(json.dumps({"record": _plain(record), "rows": table.to_dict("records")},
                                                          indent=2, default=str)))
    return [stem.with_suffix(s) for s in (".csv", ".md", ".json")]


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A pipe table (pandas' to_markdown needs the optional 'tabulate' package)."""
    cell = lambda v: format(v, floatfmt) if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
