"""Figures and tables for the notebooks: loss curves, the fidelity–perception plane, bar
charts (gains, colour shift), image rows, crop grids, and result tables rendered as HTML."""
from __future__ import annotations


import numpy as np

from .imageops import to_uint8
from .stats import LOWER_IS_BETTER, d_separation, read_log  # noqa: F401  (notebooks call them as viz.*)

LOSS_TERMS = ("total", "wavelet", "perceptual", "gan", "r_intra", "r_inter",
              "pseudo_wavelet", "pseudo_perceptual")
HIGHER_IS_BETTER = {"psnr", "psnr_cc", "ssim", "nrqm"}
METRIC_NAMES = {"psnr": "PSNR (dB)", "psnr_cc": "PSNR after colour correction (dB)", "ssim": "SSIM",
                "niqe": "NIQE", "lpips": "LPIPS", "nrqm": "NRQM"}
FONT = 10  # points; figures are drawn at 100 dpi, so this is legible at 100 % zoom


def metric_label(metric: str, prefix: str = "") -> str:
    """'Δ PSNR (dB, higher is better)': the metric's name, unit and better direction."""
    name = METRIC_NAMES.get(metric, metric)
    unit = name[name.index("(") + 1:-1] + ", " if name.endswith(")") else ""
    name = name.split(" (")[0] if unit else name
    better = "lower is better" if metric in LOWER_IS_BETTER else "higher is better" if metric in HIGHER_IS_BETTER else ""
    inside = unit + better if better else unit.rstrip(", ")
    return f"{prefix}{name}" + (f" ({inside})" if inside else "")


def plot_losses(run_dir, ax=None, title: str | None = None):
    """Every logged loss term over iterations (log scale), plus D's real/fake probabilities."""
    import matplotlib.pyplot as plt

    log = read_log(run_dir)
    if ax is None:
        _, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), dpi=100)
    else:
        axes = ax
    it = log["iter"]
    for k in LOSS_TERMS:
        if k in log and np.isfinite(log[k]).any():
            axes[0].plot(it, log[k], label=k, lw=1.2)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("iteration", fontsize=FONT)
    axes[0].set_ylabel("weighted loss (log scale)", fontsize=FONT)
    axes[0].set_title(title or "generator loss terms (weighted)", fontsize=FONT + 1)
    axes[0].legend(fontsize=FONT - 1, ncol=2)
    for k in ("p_real", "p_fake"):
        if k in log:
            axes[1].plot(it, log[k], label=k, lw=1.2)
    axes[1].axhline(0.5, color="grey", lw=0.8, ls=":", label="0.5 = chance")
    axes[1].set_ylim(0, 1)
    axes[1].set_xlabel("iteration", fontsize=FONT)
    axes[1].set_ylabel("mean sigmoid(D)", fontsize=FONT)
    axes[1].set_title("discriminator: p_real above p_fake = D separates", fontsize=FONT + 1)
    axes[1].legend(fontsize=FONT - 1)
    for a in axes:
        a.tick_params(labelsize=FONT - 1)
        a.grid(alpha=0.3, lw=0.5)
    plt.tight_layout()
    return axes


def plot_training_curves(runs: dict, term: str = "wavelet", ax=None, title: str | None = None):
    """One loss term of several runs on one axis (e.g. the pretrained generalist and
    specialist of each seed), iterations on x, the weighted term on a log y axis."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6), dpi=100)
    for label, run_dir in runs.items():
        log = read_log(run_dir)
        if term in log:
            ax.plot(log["iter"], log[term], label=str(label), lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("iteration", fontsize=FONT)
    ax.set_ylabel(f"{term} loss (weighted, log scale,\nlower is better)", fontsize=FONT)
    ax.set_title(title or f"training curves: {term} loss", fontsize=FONT + 1)
    ax.tick_params(labelsize=FONT - 1)
    ax.legend(fontsize=FONT - 1)
    ax.grid(alpha=0.3, which="both", lw=0.5)
    plt.tight_layout()
    return ax


def d_left_chance(run_dir, min_sep: float = 0.05) -> bool:
    """Whether D separated real from fake at the end of the run (see `d_separation`)."""
    return d_separation(run_dir, min_sep=min_sep)["separated"]


def _crop_at_hr_scale(img: np.ndarray, h_max: int, crop=None) -> np.ndarray:
    """``crop=(y, x, h, w)`` in HR pixels of an image that may be an LR one (``h_max`` is the HR
    height): the matching LR region, nearest-upscaled to HR size so that panels line up."""
    f = h_max // img.shape[0]
    if crop is not None:
        y, x, h, w = (v // f for v in crop)
        img = img[y:y + h, x:x + w]
    return img.repeat(f, 0).repeat(f, 1) if f > 1 else img


def image_row(images, titles, size: float = 2.4, crop=None):
    """One row of images with titles; ``crop=(y, x, h, w)`` in HR pixels (LR images are
    shown at the matching LR crop, nearest-upscaled so every panel has the same size)."""
    import matplotlib.pyplot as plt

    imgs = [to_uint8(i) for i in images]
    h_max = max(i.shape[0] for i in imgs)
    fig, axes = plt.subplots(1, len(imgs), figsize=(size * len(imgs), size), dpi=100)
    for ax, img, title in zip(np.atleast_1d(axes), imgs, titles):
        ax.imshow(_crop_at_hr_scale(img, h_max, crop), interpolation="nearest")
        ax.set_title(title, fontsize=FONT)
        ax.axis("off")
    plt.tight_layout()
    return fig


def plot_plane(gains, x_metric: str = "niqe", y_metric: str = "psnr", ax=None, sides=("target", "source")):
    """Fidelity–perception plane of gains over the generalist (at the origin): one point per
    method with its bootstrap CI as error bars, target and source side by side.

    ``gains`` is ``pdd.stats.adaptation_gains``' frame. An axis whose metric is better
    when lower (NIQE, LPIPS) is reversed: up-right is better on both axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(1, len(sides), figsize=(3.9 * len(sides) + 2.4, 4.0), dpi=100, sharex=True, sharey=True)
    axes = np.atleast_1d(ax)
    markers = "osD^v<>ph*"
    for a, side in zip(axes, sides):
        col = f"{side} gain"
        xs = gains[gains.metric == x_metric].set_index("method")
        ys = gains[gains.metric == y_metric].set_index("method")
        for k, method in enumerate(ys.index.intersection(xs.index)):
            xv, yv = xs.loc[method], ys.loc[method]
            a.errorbar(xv[col], yv[col], xerr=[[xv[col] - xv[col + " lo"]], [xv[col + " hi"] - xv[col]]],
                       yerr=[[yv[col] - yv[col + " lo"]], [yv[col + " hi"] - yv[col]]], fmt=markers[k % len(markers)],
                       color=f"C{k % 10}", ms=6, capsize=3, label=method)
        a.axhline(0, color="grey", lw=0.6)
        a.axvline(0, color="grey", lw=0.6)
        a.plot([0], [0], "k*", ms=11, label="generalist")
        a.set_title(f"{side} test set: better is up-right", fontsize=FONT + 1)
        for set_label, metric in ((a.set_xlabel, x_metric), (a.set_ylabel, y_metric)):
            reversed_ = metric in LOWER_IS_BETTER
            set_label(metric_label(metric, "Δ ")[:-1] + (", axis reversed)" if reversed_ else ")"), fontsize=FONT)
        a.tick_params(labelsize=FONT - 1)
        a.grid(alpha=0.3, lw=0.5)
        for metric, inverted, invert in ((x_metric, a.xaxis_inverted(), a.invert_xaxis),
                                         (y_metric, a.yaxis_inverted(), a.invert_yaxis)):
            if metric in LOWER_IS_BETTER and not inverted:
                invert()
    axes[-1].legend(fontsize=FONT - 1, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False,
                    title="gain over the generalist", title_fontsize=FONT - 1)
    plt.tight_layout()
    return axes


def plot_improvement(beside, metric: str = "psnr", ax=None):
    """Fig. 4 style: improvement over the generalist as bars, the paper's per domain (grey)
    and ours (colour), from ``pdd.paper.gains_beside_paper``' frame. A metric our run could
    not compute gets no bar for ours and says so in the legend, never a zero-height bar."""
    import matplotlib.pyplot as plt

    df = beside[beside.metric == metric]
    if ax is None:
        _, ax = plt.subplots(figsize=(2.4 + 1.1 * (df["paper domain"].nunique() + df.model.nunique()), 3.4), dpi=100)
    xs, labels = 0, []
    for model, rows in df.groupby("model", sort=False):
        paper = rows[rows["paper domain"] != ""].dropna(subset=["paper Δ"])
        ax.bar(range(xs, xs + len(paper)), paper["paper Δ"], color="0.7",
               label="paper" if xs == 0 else None)
        labels += [f"{d}\n(paper)" for d in paper["paper domain"]]
        xs += len(paper)
        ours = rows["ours Δ"].iloc[0]
        dom = rows["our domain"].iloc[0] or "ours"
        if np.isnan(ours):
            ax.bar([xs], [0], color="none", label=f"{model}: {metric} unavailable in our run")
        else:
            ax.bar([xs], [ours], color="C0", label=f"{model} (ours)")
        labels.append(f"{dom}\n({model})")
        xs += 2  # a gap between models
        labels.append("")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=FONT - 1)
    ax.tick_params(axis="y", labelsize=FONT - 1)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel(metric_label(metric, "Δ ") + "\nover the generalist", fontsize=FONT)
    ax.legend(fontsize=FONT - 1)
    ax.grid(axis="y", alpha=0.3, lw=0.5)
    plt.tight_layout()
    return ax


def plot_colour_shift(per_image, ax=None, sides=("target", "source"), baseline: str = "generalist"):
    """Each method's mean colour shift, SR − HR per RGB channel in 8-bit levels (the ``shift_r``,
    ``shift_g``, ``shift_b`` columns of ``pdd.evaluate.evaluate``), over all its seeds,
    checkpoints and images: one panel per test set, side by side, a group of three bars (R, G, B)
    per method, the ``baseline`` first as the reference. A bar far from 0 is a colour cast that
    PSNR counts and colour-corrected PSNR does not."""
    import matplotlib.pyplot as plt

    channels = (("shift_r", "R", "tab:red"), ("shift_g", "G", "tab:green"), ("shift_b", "B", "tab:blue"))
    methods = list(dict.fromkeys(per_image.method))
    methods = ([baseline] if baseline in methods else []) + [m for m in methods if m != baseline]
    if ax is None:
        _, ax = plt.subplots(1, len(sides), figsize=(4.2 * len(sides) + 1.6, 0.75 + 0.42 * len(methods)), dpi=100,
                             sharex=True, sharey=True, squeeze=False)
    axes = np.atleast_1d(ax).ravel()
    y = np.arange(len(methods))
    height = 0.26
    for a, side in zip(axes, sides):
        means = per_image[per_image["test set"] == side].groupby("method")[[c for c, _, _ in channels]].mean()
        means = means.reindex(methods)  # a method not scored on this side: no bar, not a zero bar
        for k, (col, name, colour) in enumerate(channels):
            a.barh(y + (k - 1) * height, means[col], height, color=colour, label=name)
        a.axvline(0, color="k", lw=0.6)
        a.set_title(f"{side} test set", fontsize=FONT + 1)
        a.set_xlabel("mean SR − HR (8-bit levels)", fontsize=FONT)
        a.tick_params(labelsize=FONT - 1)
        a.grid(axis="x", alpha=0.3, lw=0.5)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(methods, fontsize=FONT - 1)
    axes[0].invert_yaxis()  # the reference on top
    axes[-1].legend(fontsize=FONT - 1, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False, title="channel",
                    title_fontsize=FONT - 1)
    plt.tight_layout()
    return axes


def better_direction(column) -> str:
    """'↑' or '↓' for a column of a metric or of its gain ("psnr", "niqe gain", "lpips (alex)",
    "ours Δ" is not one), '' for anything else, a spread or a CI bound included."""
    words = str(column).lower().split()
    if not words or words[0] not in HIGHER_IS_BETTER | LOWER_IS_BETTER:
        return ""
    if any(w in ("std", "lo", "hi", "verdict", "n", "ci") for w in words[1:]):
        return ""
    return "↓" if words[0] in LOWER_IS_BETTER else "↑"


def table(df, digits: int = 3, best: bool = True):
    """A result table for display: a pandas Styler that renders as HTML, numbers rounded to
    ``digits``, the index hidden, each metric column's better direction in its header
    ("psnr ↑", "niqe gain ↓"; in a long frame with a ``metric`` column the metric names get
    the arrow instead) and, with ``best``, the best value of each such column in bold per
    test set (per ``test set`` column when there is one, else over the whole table).
    Verdict columns colour "better" green and "worse" red."""
    import pandas as pd

    df = pd.DataFrame(df)
    plain_index = df.index.nlevels == 1 and df.index.name is None and pd.api.types.is_integer_dtype(df.index)
    df = df.reset_index(drop=plain_index)  # row numbers go, a named or labelled index becomes columns
    if "metric" in df.columns:
        df["metric"] = [f"{m} {better_direction(m)}".rstrip() for m in df["metric"]]
    arrows = {c: better_direction(c) for c in df.columns}
    df = df.rename(columns={c: f"{c} {a}" for c, a in arrows.items() if a})
    scored = [f"{c} {a}" for c, a in arrows.items() if a and pd.api.types.is_numeric_dtype(df[f"{c} {a}"])]

    def bold_best(col):
        lower = col.name.endswith("↓")
        groups = df["test set"] if "test set" in df.columns else pd.Series(0, index=df.index)
        marks = pd.Series("", index=col.index)
        for idx in col.groupby(groups).groups.values():
            vals = col.loc[idx]
            if vals.notna().sum() > 1:  # one value is no contest
                target = vals.min() if lower else vals.max()
                marks.loc[vals.index[vals == target]] = "font-weight: bold; background-color: #e6f2e6"
        return marks

    def verdict_colour(v):
        return {"better": "color: #1a7f37", "worse": "color: #c62828"}.get(v, "")

    styler = df.style.format(precision=digits, na_rep="n/a").hide(axis="index")
    text = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if text:  # names read left to right; numbers stay right-aligned
        styler = styler.set_properties(subset=text, **{"text-align": "left"})
    short = [c for c in text if df[c].astype(str).str.len().max() <= 16]
    if short:  # "psnr_cc ↑", "no effect": never broken over two lines
        styler = styler.set_properties(subset=short, **{"white-space": "nowrap"})
    if best and scored:
        styler = styler.apply(bold_best, subset=scored)
    verdicts = [c for c in df.columns if str(c).endswith("verdict")]
    if verdicts:
        styler = styler.map(verdict_colour, subset=verdicts)
    if any(arrows.values()) or "metric" in df.columns:
        where = " per test set" if "test set" in df.columns else ""
        styler = styler.set_caption("↑ higher is better, ↓ lower is better"
                                    + (f"; bold: the best value{where}" if best and scored else ""))
    return styler


def crop_grid(images: dict, crop=(0, 0, 64), zoom: int | None = None, min_panel_px: int = 192, dpi: int = 100):
    """Qualitative grid as in the paper's figures: the first image whole with the crop box,
    then the same ``crop=(y, x, side)`` (HR pixels) of every image, LR images at the
    matching LR crop. ``images``: {title: image (tensor or HxWx3 uint8)}.

    Crops are never downscaled: each HR pixel becomes ``zoom`` x ``zoom`` screen pixels
    (nearest neighbour; default the smallest integer zoom giving panels of ``min_panel_px``),
    and the axes are placed at exact pixel positions so that no layout step rescales them."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    imgs = {k: to_uint8(v) for k, v in images.items()}
    h_max = max(i.shape[0] for i in imgs.values())
    y, x, side = crop
    ref_title, ref = next((k, v) for k, v in imgs.items() if v.shape[0] == h_max)
    if not (0 <= y <= h_max - side and 0 <= x <= ref.shape[1] - side):
        raise ValueError(f"crop {crop} does not fit a {ref.shape[0]}x{ref.shape[1]} image")
    zoom = zoom or max(1, -(-min_panel_px // side))
    if zoom < 1 or int(zoom) != zoom:
        raise ValueError(f"zoom must be a whole number >= 1 (crops are never downscaled), got {zoom}")
    panel, title_px, n = side * zoom, 22, len(imgs) + 1
    fig = plt.figure(figsize=(n * panel / dpi, (panel + title_px) / dpi), dpi=dpi)
    height = panel / (panel + title_px)
    axes = [fig.add_axes((k / n, 0, 1 / n, height)) for k in range(n)]
    axes[0].imshow(ref)  # the overview: the whole frame with the crop marked (scaled to the panel)
    axes[0].add_patch(Rectangle((x, y), side, side, fill=False, edgecolor="red", lw=1.5))
    axes[0].set_title(f"{ref_title} (whole)", fontsize=9)
    for ax, (title, img) in zip(axes[1:], imgs.items()):
        ax.imshow(_crop_at_hr_scale(img, h_max, (y, x, side, side)), interpolation="nearest")
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.pdd_zoom = zoom
    return fig


def slider_view(render, sliders: dict):
    """Sliders (ipywidgets) above a matplotlib figure ``render(**values)`` that is redrawn as a
    slider moves. Returns the widget box.

    The figure enters the Output widget as a PNG set on the widget (``append_display_data``),
    never as output captured inside ``with out:``. Under papermill/nbval, nbclient mimics the
    Output widget and sends captured output back to the kernel over the shell channel while it
    waits on that channel for the cell's reply, which intermittently never returns
    (jupyter/nbclient#312: seen here as `make reproduce` stopping at 04's crop cell and 01's
    image browser). Setting the widget's state is a plain update message: no hang. A headless
    run stores the first view."""
    import io

    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import Image

    out = widgets.Output()

    def draw(*_):
        fig = render(**{name: w.value for name, w in sliders.items()})
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=fig.dpi)
        plt.close(fig)
        out.outputs = ()
        out.append_display_data(Image(data=buf.getvalue(), format="png"))

    for w in sliders.values():
        w.observe(draw, "value")
    draw()
    return widgets.VBox([widgets.HBox(list(sliders.values())), out])


def interactive_crops(images: dict, side: int = 64):
    """``crop_grid`` with sliders that move the crop (in JupyterLab the grid redraws as a
    slider moves; papermill/nbval store the first view). Returns the widget box."""
    import ipywidgets as widgets

    images = {k: to_uint8(v) for k, v in images.items()}  # once, not on every slider move
    h = max(v.shape[0] for v in images.values())
    w = max(v.shape[1] for v in images.values())
    sliders = {"y": widgets.IntSlider(value=(h - side) // 2, min=0, max=h - side, step=4, description="y"),
               "x": widgets.IntSlider(value=(w - side) // 2, min=0, max=w - side, step=4, description="x")}
    return slider_view(lambda y, x: crop_grid(images, (y, x, side)), sliders)


def browse_images(items, size: float = 3.0):
    """A slider over ``items`` [(label, HxWx3 image), ...]: one image at a time with its label
    and size, pixels drawn nearest-neighbour. Returns the widget box."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    items = [(label, to_uint8(im)) for label, im in items]

    def render(i):
        label, im = items[i]
        fig, ax = plt.subplots(figsize=(size, size * im.shape[0] / im.shape[1] + 0.3), dpi=100)
        ax.imshow(im, interpolation="nearest")
        ax.set_title(f"{label}  {im.shape[1]}x{im.shape[0]}", fontsize=9)
        ax.axis("off")
        return fig

    return slider_view(render, {"i": widgets.IntSlider(min=0, max=len(items) - 1, value=0, description="image")})
