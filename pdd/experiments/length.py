"""The length study (issue 25, item 3): is the default comparison's answer a matter of length?

The comparison's rows stop at 300 iterations (0.3 % of the paper's 100K for EMA PDD, 0.6 % of
its 50K for static PDD), about where D only starts to separate real from fake. So static PDD,
EMA PDD and their controls are trained here 10x longer (3,000 iterations of training under
``scratch``), two seeds, and scored at log-spaced checkpoints of the same runs, each with paired
bootstrap CIs: the verdict is given per length, and the trend over lengths is read off the numbers.

The study runs under the fair set-up (``catalogue.fair_setup``; its decisions:
``pdd.experiments.decisions``): starting models trained as the paper says (pixel stage, then a
GAN stage, each with its own D), the official 300 D-only warm-up iterations before the
training iterations, D at the scratch generator's width, D's start as decided on the fine-tune
control. The checkpoints count iterations from the start, warm-up included: under ``scratch``
600, 1,300 and 3,300 are 300, 1,000 and 3,000 iterations of training after the warm-up.

The schedule (``CHECKPOINTS``, ``STUDY_ROWS``, the seeds) is fixed here, before any PDD number
of the study was seen: it is not tuned on the result.

The study's runs live beside the comparison's, under names of their own
(``<row slug>-fair-<iters>it_s<seed>``, ``pdd.runs.row_dir(..., tag="fair-3300it")``): they
never resume or add snapshots to the comparison's runs, whose last snapshots its evaluation
takes, and keep a snapshot at every checkpoint (``ckpt_every``: the checkpoints' gcd). Training
is the pool's (``plans.train_plan``): a stopped study resumes where it stopped.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import runs
from ..config import FROM_SCRATCH
from ..runs import Run
from ..stats import paired_difference
from . import catalogue as C
from .plans import Plan, runs_root, smoke_default
from .scoring import LONG_COLUMNS, EvalItem, evaluate_items, evaluate_runs
from .verdicts import conclusion_header

# Log-spaced, the last one the study's length, counted from the start: the fair set-up's D-only
# warm-up (300; 4 under tiny) + 300, 1,000, 3,000 iterations of training (4, 8, 12 under tiny).
# Fixed before any PDD number was seen.
CHECKPOINTS = {"scratch": (600, 1300, 3300), "cpu": (600, 1300, 3300), "paper": (600, 1300, 3300),
               "tiny": (8, 12, 16)}
STUDY_ROWS = ("static PDD", "EMA PDD", "finetune control", "specialist finetune control")
SEEDS = (0, 1)
# Each PDD row beside its control, the first one the study has: the same supervised loss and
# starting S, no distillation (static PDD adapts the specialist: its control is the specialist
# trained on; under cpu/paper the specialist IS the fine-tune control).
CONTROLS = {"static PDD": ("specialist finetune control", "finetune control"), "EMA PDD": ("finetune control",)}
GAIN_METRICS = ("psnr", "psnr_cc", "ssim", "niqe", "lpips")
NOTEBOOK = "11_length.ipynb"
FILE_STEM = "length_study"


# ------------------------------------------------------------------ the plan

def study_checkpoints(preset: str, checkpoints=None) -> tuple[int, ...]:
    """The checkpoints, ascending (``checkpoints``, else ``CHECKPOINTS[preset]``); the last is the runs' length."""
    cps = tuple(sorted({int(c) for c in (checkpoints or CHECKPOINTS[preset])}))
    if not cps or cps[0] < 1:
        raise ValueError(f"checkpoints must be positive iterations, got {checkpoints!r}")
    return cps


def study_rows(preset: str) -> list[str]:
    """``STUDY_ROWS`` that exist under ``preset`` (no specialist fine-tune control under cpu/paper,
    as ``catalogue.default_methods``)."""
    return [r for r in STUDY_ROWS if r in C.default_methods(preset)]


def study_setup(preset: str) -> C.Setup:
    """The set-up the study's runs are made under: the fair one (``catalogue.fair_setup``)."""
    return C.fair_setup(preset)


def study_run(row: str, preset: str, domain: str, seed: int, runs_dir, data_root=None, checkpoints=None,
              pretrain_iters: int | None = None) -> Run:
    """One row of the study: the catalogue's row (``catalogue.row_run``) under the fair set-up at
    the last checkpoint's length, in its own directory ``<row slug>-fair-<iters>it_s<seed>``, with
    a snapshot at every checkpoint."""
    cps = study_checkpoints(preset, checkpoints)
    setup = study_setup(preset)
    run = C.row_run(row, preset, domain, seed, runs_dir, data_root, iters=cps[-1], pretrain_iters=pretrain_iters,
                    setup=setup)
    cfg = run.config
    if cps[0] <= cfg.warmup_d_iters:
        raise ValueError(f"checkpoint {cps[0]} falls in the {cfg.warmup_d_iters} D-only warm-up iterations: "
                         f"checkpoints count from the start, warm-up included")
    cfg.out = str(runs.row_dir(runs_dir, preset, domain, row, seed, tag=f"{setup.name}-{cps[-1]}it"))
    # snapshots (and resume points) fall on multiples of ckpt_every and at the end: at the gcd,
    # every checkpoint has one (100 under scratch: 30 snapshots of about 6 MB per run)
    cfg.ckpt_every = math.gcd(*cps)
    if preset not in FROM_SCRATCH and cfg.mode == "static":
        # S is the fine-tune control of the same length: the study's own, never the comparison's run
        cfg.init_s = str(study_run("finetune control", preset, domain, seed, runs_dir, data_root, cps,
                                   pretrain_iters).final)
    return run


def length_plan(preset: str = "scratch", domain: str = "Synth-ISO", seeds=SEEDS, runs_dir=None, data_root=None,
                pretrain_iters: int | None = None, checkpoints=None) -> Plan:
    """The study's runs in two waves: the starting models (``catalogue.pretrain_runs`` under the
    fair set-up: the comparison's pixel stage and the GAN stage on it) and the study's rows
    (``study_run``) for every seed, named ``"<row> s<seed>"``. Pure: names runs, touches no file."""
    runs_dir = runs_root(runs_dir)
    starts = C.pretrain_runs(preset, domain, seeds, runs_dir, data_root, pretrain_iters, study_setup(preset))
    rows = [study_run(r, preset, domain, s, runs_dir, data_root, checkpoints, pretrain_iters)
            for s in C.seed_list(seeds) for r in study_rows(preset)]
    return Plan([w for w in (starts, rows) if w], {r.label: r for r in rows})


def study_runs(plan: Plan) -> list[Run]:
    """The plan's rows (its named runs), the starting models left out."""
    return list(plan.named.values())


def describe(plan: Plan, checkpoints) -> str:
    """The plan in a few lines: how many runs, each row's run directory and length, the checkpoints."""
    rows = study_runs(plan)
    lines = [f"{len(plan.runs)} runs: {len(plan.runs) - len(rows)} starting model(s) and {len(rows)} study rows, "
             f"each {rows[0].config.iters} iterations, scored at {', '.join(map(str, checkpoints))}"]
    lines += [f"  {r.label:32s} {r.dir}" + ("  (finished)" if r.finished else "") for r in rows]
    return "\n".join(lines)


def notebook_defaults(smoke: bool) -> dict:
    """What notebook 11's parameters cell sets (tests/test_length_study.py checks it against the cell)."""
    return dict(smoke=smoke, preset="tiny" if smoke else "scratch", domain="Synth-ISO", seeds=[0] if smoke else [0, 1],
                pretrain_iters=12 if smoke else None, n_boot=200 if smoke else 2000,
                test_pool=None if smoke else "mate-backgrounds", data_root=None, runs_dir=None,
                results_dir=None)


def notebook_plan(parameters: dict | None = None, smoke: bool | None = None) -> Plan:
    """The plan notebook 11 trains at its parameters (``notebook_defaults``, ``parameters`` over
    them): what ``python -m pdd.reproduce --study length`` trains before executing it."""
    smoke = smoke_default() if smoke is None else smoke
    v = {**notebook_defaults(smoke), **(parameters or {})}
    return length_plan(v["preset"], v["domain"], v["seeds"], runs_root(v["runs_dir"], smoke), v["data_root"],
                       v["pretrain_iters"])


# ------------------------------------------------------------------ scores at every checkpoint

def evaluate_checkpoints(plan_rows: list[Run], test_sets: dict, metrics: dict, checkpoints, runs_dir,
                         pretrain_iters: int | None = None, workers: int | None = None,
                         progress: bool = True) -> pd.DataFrame:
    """Per-image metrics of every study row at each checkpoint (its snapshot there), and of the
    starting models of each seed at iteration 0: the long frame (method, seed, iteration, test
    set, name, metrics). Cached in each run's eval/ (``scoring.evaluate_items``). Rows still
    training (an interim look, ``reached_checkpoints``) are scored at the checkpoints alone."""
    cps = study_checkpoints(plan_rows[0].preset, checkpoints)
    missing = [f"{r.label} at {i}" for r in plan_rows for i in cps if not r.snapshot(i).exists()]
    if missing:
        raise FileNotFoundError(f"no snapshot for {', '.join(missing)}: train the study first (python -m "
                                f"pdd.reproduce --study length, or experiments.train_plan(plan); it resumes)")
    # the starting models and each finished row's final snapshot, as the comparison scores them (same caches)
    done = all(r.finished for r in plan_rows)
    last = evaluate_runs(plan_rows, test_sets, metrics, last_k=1 if done else 0, runs_dir=runs_dir, progress=progress,
                         pretrain_iters=pretrain_iters, workers=workers, setup=study_setup(plan_rows[0].preset))
    from ..train import load_run_model

    earlier = [EvalItem(lambda c=r.config, s=r.snapshot(i): load_run_model(c, s), r.snapshot(i), r.dir / "eval",
                        dict(method=r.row, seed=r.seed, iteration=i))
               for r in plan_rows for i in cps if not done or r.snapshot(i) != r.snapshots()[-1]]
    frames = [last] + evaluate_items(earlier, test_sets, metrics, workers, progress)
    out = pd.concat(frames, ignore_index=True)
    rows = out.method.isin({r.row for r in plan_rows})
    out = out[~rows | out.iteration.isin(cps)]  # a row's snapshot past the checkpoints is not the study's
    return out.sort_values(["method", "seed", "iteration", "test set"], kind="stable")[
        LONG_COLUMNS + [c for c in out.columns if c not in LONG_COLUMNS]].reset_index(drop=True)


def reached_checkpoints(plan_rows: list[Run], checkpoints=None) -> tuple[int, ...]:
    """The checkpoints at which every row has its snapshot: the lengths a stopped study can be
    scored at so far (all of them once it has finished)."""
    cps = study_checkpoints(plan_rows[0].preset, checkpoints)
    return tuple(i for i in cps if all(r.snapshot(i).exists() for r in plan_rows))


def progress_line(plan_rows: list[Run]) -> str:
    """Where each row stands (its last snapshot against its length), for an interim result."""
    def at(r: Run) -> int:
        s = r.snapshots()
        return runs.snapshot_iteration(s[-1]) if s else 0
    return "; ".join(f"{r.label} {at(r):,}/{r.config.iters:,}" for r in plan_rows)


def pool_scores(plan_rows: list[Run], pool: str, domain: str, metrics: dict, checkpoints, runs_dir, data_root=None,
                pretrain_iters: int | None = None, workers: int | None = None,
                progress: bool = True) -> pd.DataFrame | None:
    """``evaluate_checkpoints`` on test pool ``pool``'s photographs (``pdd.data.open_domain(test_pool=...)``;
    test sets ``"target · <pool>"`` and ``"source · <pool>"``, cached apart from the built-in
    test set's scores), or None, saying why, when the pool is not installed."""
    from ..data import DatasetNotFoundError, open_domain

    try:
        dom = open_domain(domain, data_root, test_pool=pool)
    except DatasetNotFoundError as e:
        print(f"not scored on more photographs: {e}")
        return None
    sets = {f"target · {pool}": dom.test_pairs, f"source · {pool}": dom.source_test_pairs}
    return evaluate_checkpoints(plan_rows, sets, metrics, checkpoints, runs_dir, pretrain_iters, workers, progress)


# ------------------------------------------------------------------ gains and verdicts

def control_of(method: str, present) -> str | None:
    """The method's control among the methods ``present`` (``CONTROLS``); None for a control."""
    return next((c for c in CONTROLS.get(method, ()) if c in set(present)), None)


def gains_by_length(per_image: pd.DataFrame, n_boot: int = 2000, metrics=GAIN_METRICS, seed: int = 0,
                    cluster: str = "image") -> pd.DataFrame:
    """Per (method, checkpoint, test set, metric): the paired difference to the generalist (its
    rows at iteration 0, paired by seed and image) and, for a PDD row, to its control at the same
    checkpoint (``stats.paired_difference``: cluster bootstrap over images, or over whole photos
    with ``cluster="photo"``; CI and verdict)."""
    metrics = [m for m in metrics if m in per_image.columns and per_image[m].notna().any()]
    generalist = per_image[per_image.method == C.GENERALIST]
    rows_of = per_image[~per_image.method.isin([C.GENERALIST, C.SPECIALIST])]
    present = rows_of.method.unique()
    out = []
    for (method, it), grp in rows_of.groupby(["method", "iteration"], sort=False):
        control = control_of(method, present)
        ctl = per_image[(per_image.method == control) & (per_image.iteration == it)]
        for test_set in grp["test set"].unique():
            for m in metrics:
                row = {"method": method, "iteration": int(it), "test set": test_set, "metric": m,
                       "n": int(grp[grp["test set"] == test_set][m].notna().sum()), "control": control}
                for label, base, frame in (("vs generalist", C.GENERALIST, generalist), ("vs control", control, ctl)):
                    if base is None or frame.empty:
                        row.update({label: np.nan, f"{label} lo": np.nan, f"{label} hi": np.nan, f"{label} verdict": ""})
                        continue
                    d = paired_difference(pd.concat([grp, frame]), method, base, test_set, m, n_boot, seed, cluster)
                    row.update({label: d["difference"], f"{label} lo": d["lo"], f"{label} hi": d["hi"],
                                f"{label} verdict": d["verdict"]})
                out.append(row)
    table = pd.DataFrame(out)
    return table.sort_values(["metric", "test set", "method", "iteration"], kind="stable").reset_index(drop=True)


def _ci(value, lo, hi, unit: str) -> str:
    return f"{value:+.2f}{unit} [{lo:+.2f}, {hi:+.2f}]"


def _unit(metric: str) -> str:
    return " dB" if metric.startswith("psnr") else ""


def trend(values) -> str:
    """"increases", "decreases" or "no monotone trend" over a sequence of values."""
    d = np.diff(np.asarray(values, dtype=float))
    if len(d) and (d > 0).all():
        return "increases"
    if len(d) and (d < 0).all():
        return "decreases"
    return "no monotone trend"


def length_verdict(gains: pd.DataFrame, results_dir=None, domain: str = "", preset: str = "", rows: list[Run] = (),
                   metric: str = "psnr", test_set: str = "target", source: str = "source",
                   per_image: pd.DataFrame | None = None, n_boot: int = 2000, cluster: str = "image",
                   upto: int | None = None) -> list[str]:
    """The computed sentences: the gates the study rests on, then per length whether each PDD row
    beats the generalist and its control on ``test_set`` (CI), and whether the gain over the
    control grows with length (the paper's direction).

    The gates: the premise gate on the study's own starting models when ``per_image``
    (``evaluate_checkpoints``) holds them (the fair set-up's GAN-staged ones, not notebook 02's),
    else notebook 02's, read from ``results_dir``; D's separation in each of ``rows`` (the GAN
    gate) over the whole run, and at each checkpoint how many runs pass it up to there. ``cluster``:
    what the premise's bootstrap resamples (as ``gains``' CIs: ``gains_by_length``). ``upto``: the
    whole-run GAN gate over each log up to that iteration (an interim look: the last checkpoint scored)."""
    from ..stats import gan_gate, premise_check
    from .verdicts import gan_gate_line

    own = per_image is not None and {C.GENERALIST, C.SPECIALIST} <= set(per_image.method)
    if own:
        start = per_image[per_image.method.isin([C.GENERALIST, C.SPECIALIST])]
        check = premise_check(start, n_boot=n_boot, source=source, target=test_set, cluster=cluster)
        lines = ["Premise gate on the study's own starting models (the fair set-up's): " + check["sentence"]]
        line = gan_gate_line(list(rows), upto)
        lines += [line] if line else []
    elif results_dir is not None:
        lines = conclusion_header(results_dir, domain, preset, rows)
    else:
        lines = ["Premise gate not read (no results folder or starting models' scores given): nothing here tests "
                 "the paper's claim until it is."]
    lines.append("Every verdict below rests on those gates: the premise gate and the GAN gate (D's "
                 "separation per run); a perceptual conclusion needs runs that pass the GAN gate.")
    with_d = [r for r in rows if getattr(r.config, "has_discriminator", False) and (r.dir / "log.csv").exists()]
    for it in sorted(gains.iteration.unique()) if with_d else ():
        passed = [r.label for r in with_d if gan_gate(r.dir, upto=int(it))["passed"]]
        lines.append(f"GAN gate up to {it} iterations: {len(passed)} of {len(with_d)} runs pass"
                     + (f" ({', '.join(passed)})" if 0 < len(passed) < len(with_d) else "") + ".")
    g = gains[(gains.metric == metric)]
    unit = _unit(metric)
    pdd_rows = [m for m in CONTROLS if m in set(g.method)]
    its = sorted(g.iteration.unique())
    for it in its:
        parts = []
        for m in pdd_rows:
            r = g[(g.method == m) & (g.iteration == it) & (g["test set"] == test_set)]
            if r.empty:
                continue
            r = r.iloc[0]
            text = (f"{m} {_ci(r['vs generalist'], r['vs generalist lo'], r['vs generalist hi'], unit)} vs the "
                    f"generalist ({r['vs generalist verdict']})")
            if r["control"]:
                text += (f", {_ci(r['vs control'], r['vs control lo'], r['vs control hi'], unit)} vs its control, "
                         f"the {r['control']} ({r['vs control verdict']})")
            s = g[(g.method == m) & (g.iteration == it) & (g["test set"] == source)]
            if not s.empty:
                s = s.iloc[0]
                text += (f"; on the {source}, {_ci(s['vs generalist'], s['vs generalist lo'], s['vs generalist hi'], unit)}"
                         f" vs the generalist ({s['vs generalist verdict']})")
            parts.append(text)
        if parts:
            lines.append(f"At {it} iterations ({test_set} {metric.upper()}, 95% CI): " + "; ".join(parts) + ".")
    for m in pdd_rows:
        r = g[(g.method == m) & (g["test set"] == test_set)].sort_values("iteration")
        if len(r) < 2 or not r["control"].iloc[0]:   # one length has no trend
            continue
        t = trend(r["vs control"])
        toward = {"increases": "points toward the paper's direction (the gain over the control grows with training)",
                  "decreases": "points away from the paper's direction (the gain over the control shrinks with "
                               "training)",
                  "no monotone trend": "points in no clear direction"}[t]
        values = ", ".join(f"{v:+.2f}{unit}" for v in r["vs control"])
        lines.append(f"Trend of {m} - {r['control'].iloc[0]} ({test_set} {metric.upper()}) over "
                     f"{' -> '.join(map(str, r.iteration))} iterations: {values}; it {t} with length, so it {toward}. "
                     f"A trend from {len(r)} points is weak evidence: the verdict at each length is its CI's.")
    drift = _colour_drift(gains, test_set)
    if drift:
        lines.append(drift)
    return lines


def _colour_drift(gains: pd.DataFrame, test_set: str, threshold: float = 0.3) -> str:
    """A sentence where PSNR and colour-corrected PSNR (``psnr_cc``) gains over the generalist
    disagree by more than ``threshold`` dB: that part of the PSNR change is a colour shift."""
    if not {"psnr", "psnr_cc"} <= set(gains.metric):
        return ""
    key = ["method", "iteration", "test set"]
    both = gains[gains.metric == "psnr"].set_index(key)["vs generalist"].to_frame("psnr").join(
        gains[gains.metric == "psnr_cc"].set_index(key)["vs generalist"].rename("psnr_cc"), how="inner")
    both = both[(both.index.get_level_values("test set") == test_set) & ((both.psnr - both.psnr_cc).abs() > threshold)]
    if both.empty:
        return ""
    cases = "; ".join(f"{m} at {it}: {r.psnr:+.2f} dB PSNR but {r.psnr_cc:+.2f} dB after colour correction"
                      for (m, it, _), r in both.iterrows())
    return (f"Colour drift ({test_set}): PSNR and colour-corrected PSNR gains disagree by more than {threshold} dB "
            f"for {cases}: part of the PSNR change is a colour shift, not detail.")


# ------------------------------------------------------------------ the figure

# one colour family per PDD row: the row solid and dark, its control dashed and light
FAMILIES = {"static PDD": ("#d94801", "#fd8d3c"), "EMA PDD": ("#08519c", "#4292c6")}


def plot_gains_by_length(gains: pd.DataFrame, metric: str = "psnr", sides=("target", "source")):
    """Gain over the generalist against iterations (log x axis), one panel per test set, each PDD
    row beside its control (same colour family, the control dashed), 95% CI bars. Returns the figure."""
    import matplotlib.pyplot as plt

    from ..viz import metric_label

    g = gains[gains.metric == metric]
    its = sorted(g.iteration.unique())
    pdd_rows = [m for m in CONTROLS if m in set(g.method)]
    controls: dict[str, list[str]] = {}  # a control shared by two rows (cpu: the fine-tune control) is drawn once
    for m in pdd_rows:
        c = g[g.method == m]["control"].iloc[0]
        if c:
            controls.setdefault(c, []).append(m)
    series = []  # (method, colour, dashed, label)
    for m in pdd_rows:
        dark, light = FAMILIES[m]
        series.append((m, dark, False, m))
        series += [(c, light, True, f"{c} (control of {', '.join(ms)})") for c, ms in controls.items() if ms[0] == m]
    fig, axes = plt.subplots(1, len(sides), figsize=(5.6 * len(sides), 4.4), sharey=True, squeeze=False)
    for ax, side in zip(axes[0], sides):
        for k, (m, colour, dashed, label) in enumerate(series):
            r = g[(g.method == m) & (g["test set"] == side)].sort_values("iteration")
            if r.empty:
                continue
            x = r.iteration.to_numpy(float) * 1.05 ** (k - (len(series) - 1) / 2)  # side by side, CI bars apart
            y = r["vs generalist"].to_numpy()
            yerr = np.vstack([y - r["vs generalist lo"].to_numpy(), r["vs generalist hi"].to_numpy() - y])
            ax.errorbar(x, y, yerr=yerr, color=colour, linestyle="--" if dashed else "-", marker="s" if dashed else "o",
                        linewidth=2, markersize=6, capsize=3, label=label)
        ax.axhline(0, color="0.4", linewidth=1)
        ax.set_xscale("log")
        ax.set_xticks(its)
        ax.set_xticklabels([f"{i:,}" for i in its])
        ax.minorticks_off()
        ax.set_xlabel("training iterations (log scale)", fontsize=10)
        ax.set_title(f"{side}: " + ("the domain's own LR" if side.startswith("target") else
                                    "bicubic LR of the same HR"), fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(metric_label(metric, "gain over the generalist, Δ "), fontsize=10)
    axes[0][-1].legend(fontsize=9, loc="best")
    fig.suptitle("Gain over the generalist by training length (95% CI; 0 = the generalist)", fontsize=11)
    fig.tight_layout()
    return fig


def colour_shift_figure(per_image: pd.DataFrame, lines: list[str]):
    """Each method's mean colour shift per channel (``viz.plot_colour_shift``) where the verdict
    ``lines`` name a colour drift (``length_verdict``), else None. Returns the figure."""
    if not any(line.startswith("Colour drift") for line in lines):
        return None
    if not {"shift_r", "shift_g", "shift_b"} <= set(per_image.columns):
        return None
    from ..viz import plot_colour_shift

    return plot_colour_shift(per_image)[0].figure


# ------------------------------------------------------------------ the written result

def _write(path: Path, write) -> None:
    """``write(tmp)`` then a rename: a stopped run leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".part")
    write(tmp)
    tmp.replace(path)


def write_length_study(out, gains: pd.DataFrame, lines: list[str], preset: str, domain: str, seeds, checkpoints,
                       n_boot: int, rows: list[Run] = (), fig=None, pool: str | None = None,
                       reached=None, colour_fig=None, unavailable: str = "") -> Path:
    """``out/length_study.csv`` (the gains), ``.md`` (PSNR and colour-corrected PSNR gains, the
    computed verdict, what produced them: preset, seeds, checkpoints, runs, commit, CPU) and the
    figure as ``length_study.png``; with ``pool`` (the gains on a test pool, ``pool_scores``, CIs
    over photos) ``length_study_<pool>.*``; with ``reached`` (the checkpoints a study still training
    has reached, ``reached_checkpoints``) an interim look, ``length_study_interim.*``; ``colour_fig``
    (``colour_shift_figure``) as ``<stem>_colour.png``; ``unavailable`` (``evaluate.unavailable_note``)
    names the metrics that could not be computed. Returns the Markdown path."""
    from ..config import cpu_model
    from ..evaluate import git_commit, markdown_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / (FILE_STEM + (f"_{pool}" if pool else "") + ("_interim" if reached is not None else ""))
    cps = study_checkpoints(preset, checkpoints)
    scored = cps if reached is None else tuple(reached)
    _write(stem.with_suffix(".csv"), lambda p: gains.to_csv(p, index=False, float_format="%.4f"))
    if fig is not None:
        _write(stem.with_suffix(".png"), lambda p: fig.savefig(p, format="png", dpi=100))
    colour = stem.with_name(stem.name + "_colour.png")
    if colour_fig is not None:
        _write(colour, lambda p: colour_fig.savefig(p, format="png", dpi=100))
    shown = gains[gains.metric.isin(["psnr", "psnr_cc"])].drop(columns=["n"])
    where = (f" on the test pool {pool} (its photographs, 95% CIs resampling whole photos)" if pool else "")
    md = [f"# PDD over training length ({domain}, {preset}){where}" + (": an interim look" if reached is not None
                                                                      else ""), ""]
    if reached is not None:
        md += [f"**Interim: the study is still training.** Scored at {', '.join(f'{i:,}' for i in scored)} "
               f"iterations, the checkpoints every row has reached; the rows stand at: {progress_line(list(rows))}. "
               "The verdict below is for those lengths alone; the study's own result, at every checkpoint, is "
               "notebook 11's (`make length-study`) once the runs have finished.", ""]
    md += [f"{', '.join(study_rows(preset))}; seeds {list(C.seed_list(seeds))}; trained to {cps[-1]} iterations and "
          f"scored at {', '.join(map(str, scored))} (the schedule fixed before any PDD number was seen; iterations "
          f"counted from the start, D-only warm-up included), under {study_setup(preset).describe()}. Gains are "
          "paired per (seed, image) against the generalist and against each PDD row's control at the same "
          f"checkpoint, with 95% cluster-bootstrap CIs over images ({n_boot} resamples). PSNR on Y; `psnr_cc` "
          f"after colour correction. Every metric: [{stem.name}.csv]({stem.name}.csv).", "",
          *([unavailable, ""] if unavailable else []),
          markdown_table(shown.round(4)), "", "## Verdict (computed from the numbers)", ""]
    md += [f"- {line}" for line in lines]
    if fig is not None:
        md += ["", f"![gain over the generalist by length]({stem.name}.png)"]
    if colour_fig is not None:
        md += ["", "Each method's mean colour shift (SR - HR per channel, 8-bit levels, over seeds, checkpoints and "
                   f"images): where PSNR and colour-corrected PSNR disagree, this is why.", "",
               f"![mean colour shift per channel]({colour.name})"]
    md += ["", f"Produced by: commit {git_commit()}, preset {preset}, domain {domain}, seeds {list(C.seed_list(seeds))}, "
               f"checkpoints {list(scored)}" + (f" of {list(cps)}" if reached is not None else "") +
               f", CPU {cpu_model()}."]
    md += [f"- {r.label}: {r.dir.name}, {r.config.iters} iterations" + (" planned" if reached is not None else "")
           for r in rows]
    _write(stem.with_suffix(".md"), lambda p: p.write_text(runs.shown("\n".join(md) + "\n")))
    return stem.with_suffix(".md")


# ------------------------------------------------------------------ an interim look at a study still training

def main(argv=None) -> int:
    """Score a length study that is still training at the checkpoints every row has reached, and
    write ``length_study_interim.{md,csv,png}``; it trains nothing (``make length-study`` does, and
    notebook 11 gives the study's own result once the runs have finished)."""
    import argparse
    import sys

    from ..data import open_domain
    from ..evaluate import create_metrics, unavailable_note
    from .plans import results_root

    ap = argparse.ArgumentParser(prog="python -m pdd.experiments.length", description=main.__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="scratch", choices=list(CHECKPOINTS))
    ap.add_argument("--domain", default="Synth-ISO")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--runs-dir")
    ap.add_argument("--results-dir", help="default: results/<domain>/<preset>")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    plan = length_plan(a.preset, a.domain, a.seeds, a.runs_dir)
    rows = study_runs(plan)
    if all(r.finished for r in rows):
        print("the study has finished: its result is notebook 11's (make length-study, or python -m pdd.reproduce "
              "--study length), not an interim look")
        return 0
    reached = reached_checkpoints(rows)
    if not reached:
        print(f"no checkpoint reached by every row yet ({', '.join(map(str, study_checkpoints(a.preset)))}); the "
              f"rows stand at: {progress_line(rows)}", file=sys.stderr)
        return 2
    dom = open_domain(a.domain)
    metrics = create_metrics(device="cpu")
    per_image = evaluate_checkpoints(rows, {"target": dom.test_pairs, "source": dom.source_test_pairs},
                                     metrics, reached, runs_root(a.runs_dir),
                                     progress=not a.no_progress)
    gains = gains_by_length(per_image, a.n_boot)
    lines = length_verdict(gains, rows=rows, per_image=per_image, n_boot=a.n_boot, upto=reached[-1])
    import matplotlib

    matplotlib.use("Agg")
    results = (Path(a.results_dir) if a.results_dir else results_root(runs_root(a.runs_dir)) / a.domain / a.preset)
    path = write_length_study(results, gains, lines, a.preset, a.domain, a.seeds, None, a.n_boot, rows,
                              plot_gains_by_length(gains), reached=reached,
                              colour_fig=colour_shift_figure(per_image, lines), unavailable=unavailable_note(metrics))
    print("wrote", runs.shown(str(path)))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from .. import cli

    raise SystemExit(cli.run(main, "python -m pdd.experiments.length"))
