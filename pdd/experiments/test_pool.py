"""More pictures (issue 25, item 4): notebook 02's premise gate on more test tiles and on a larger
pool of photographs, with CIs that resample tiles and CIs that resample whole photos.

Every CI of the comparison rests on the built-in test set: 10 tiles of 256 px cut from 4
packaged photos of 3 scenes. Here the starting models are scored on three test sets, each with
its target (the domain's hidden degradation) and source (MATLAB bicubic) LR:

- ``embedded``: the built-in test set as every notebook scores it;
- ``embedded, 128-px tiles``: the same 4 photos cut into disjoint 128-px tiles (61 under
  Synth-ISO): more tiles, no more photos;
- the test pool (``pdd.data.TEST_POOLS``, e.g. Debian's ``mate-backgrounds``: 12 photographs,
  8 disjoint 256-px tiles of each), when it is installed.

The models: the generalist and the bicubic specialist of every seed, as the comparison trains
them (pixel stage) and as the fair set-up does (with the GAN stage, ``catalogue.fair_setup``),
trained here if missing (resumable). No PDD row is scored: this is the premise, the ground the
verdicts stand on. ``python -m pdd.experiments.test_pool`` (``make test-pool``) writes
``results/<domain>/<preset>/test_pool/premise.{md,json,png}`` and the per-image scores.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from ..runs import shown
from ..stats import premise_check
from . import catalogue as C
from .plans import Plan, runs_root
from .scoring import EvalItem, _long, evaluate_items
from .verdicts import colour_drift_lines

DIR_NAME = "test_pool"
DENSE_TILE = 128          # the embedded photos' smaller tiles (disjoint, a multiple of the scale)
STAGES = {"pixel stage": C.DEFAULT_SETUP, "GAN stage": None}   # None: the preset's fair set-up
CLUSTERS = ("image", "photo")
# the premise gate is on PSNR (notebook 02); colour-corrected PSNR (supplementary Eq. 13) beside it says
# how much of each gap is a colour shift
METRICS = ("psnr", "psnr_cc")


def stage_setup(stage: str, preset: str) -> C.Setup:
    """The set-up whose starting models ``stage`` names."""
    return STAGES[stage] or C.fair_setup(preset)


def pool_plan(preset: str = "scratch", domain: str = "Synth-ISO", seeds=(0, 1), runs_dir=None, data_root=None,
              pretrain_iters: int | None = None) -> Plan:
    """The starting models scored here (the fair set-up's pretraining: the pixel stage and the GAN
    stage on it, generalist and specialist of every seed), one wave. Pure."""
    if preset not in C.FROM_SCRATCH:
        raise ValueError(f"the premise on more pictures is measured on the from-scratch starting models "
                         f"({', '.join(C.FROM_SCRATCH)}), not under {preset!r}")
    runs = C.pretrain_runs(preset, domain, seeds, runs_root(runs_dir), data_root, pretrain_iters,
                           C.fair_setup(preset))
    return Plan([runs], {})


def test_sets(domain: str, pool: str | None, data_root=None) -> dict[str, dict[str, list]]:
    """{test set label: {"target": pairs, "source": pairs}}: the embedded set, its 128-px tiles
    and, given ``pool``, the pool's tiles (``pdd.data.open_domain(test_pool=...)``)."""
    from ..data import open_domain

    sets = {}
    for label, kw in (("embedded", {}), (f"embedded, {DENSE_TILE}-px tiles", {"test_tile": DENSE_TILE})):
        d = open_domain(domain, data_root, **kw)
        sets[label] = {"target": d.test_pairs, "source": d.source_test_pairs}
    if pool:
        d = open_domain(domain, data_root, test_pool=pool)
        sets[pool] = {"target": d.test_pairs, "source": d.source_test_pairs}
    return sets


def set_name(label: str, side: str) -> str:
    """The scored test set's name (and its cache's): ``"target"``/``"source"`` for the embedded
    set (the comparison's own caches), else ``"<side> · <label>"``."""
    return side if label == "embedded" else f"{side} · {label}"


def score(plan: Plan, sets: dict, metrics: dict, preset: str, domain: str, seeds, runs_dir=None,
          pretrain_iters: int | None = None, workers=None, progress: bool = True) -> pd.DataFrame:
    """Per-image scores of each stage's generalist and specialist on every test set, labelled
    (stage, method, seed, test set, name). Cached beside each run (``scoring.evaluate_items``)."""
    from ..train import load_run_model

    runs_dir = runs_root(runs_dir)
    by_dir = {r.dir: r for r in plan.runs}
    flat = {set_name(label, side): pairs for label, sides in sets.items() for side, pairs in sides.items()}
    frames = []
    for stage in STAGES:
        setup = stage_setup(stage, preset)
        items = []
        for s in C.seed_list(seeds):
            for role, file_of in ((C.GENERALIST, C.generalist_file), (C.SPECIALIST, C.specialist_file)):
                f = Path(file_of(preset, domain, runs_dir, seed=s, pretrain_iters=pretrain_iters, setup=setup))
                run = by_dir[f.parents[1]]
                items.append(EvalItem(lambda c=run.config, w=f: load_run_model(c, w), f, run.dir / "eval",
                                      dict(method=role, seed=s, iteration=0)))
        frames.append(_long(evaluate_items(items, flat, metrics, workers, progress)).assign(stage=stage))
    return pd.concat(frames, ignore_index=True)


def premise_table(per_image: pd.DataFrame, sets, margin: float = 0.5, n_boot: int = 2000,
                  metrics=METRICS) -> tuple[pd.DataFrame, list]:
    """(one row per metric, stage, test set, CI cluster and seed: the premise's source and target
    gaps with CIs, the numbers of tiles and photos; the checks' sentences, labelled)."""
    from ..stats import photo_of

    rows, sentences = [], []
    for metric, stage, label, cluster in [(m, st, lab, c) for m in metrics for st in STAGES for lab in sets
                                          for c in CLUSTERS]:
        frame = per_image[per_image.stage == stage]
        src, tgt = set_name(label, "source"), set_name(label, "target")
        names = frame[frame["test set"] == tgt]["name"].unique()
        check = premise_check(frame, metric=metric, margin=margin, n_boot=n_boot, source=src, target=tgt,
                              cluster=cluster)
        sentences.append({"metric": metric, "stage": stage, "test set": label, "cluster": cluster,
                          "sentence": check["sentence"], "holds": check["holds"], "with_margin": check["with_margin"]})
        for _, r in check["table"].iterrows():
            rows.append({"metric": metric, "stage": stage, "test set": label, "CI resamples": cluster + "s",
                         "tiles": len(names), "photos": len({photo_of(n) for n in names}), "seed": int(r.seed),
                         "source gap": r[f"{src} gap"], "source lo": r[f"{src} lo"], "source hi": r[f"{src} hi"],
                         "target gap": r[f"{tgt} gap"], "target lo": r[f"{tgt} lo"], "target hi": r[f"{tgt} hi"],
                         "holds": bool(r.holds), "with margin": bool(r["with margin"])})
    return pd.DataFrame(rows), sentences


def plot_premise(table: pd.DataFrame, margin: float = 0.5, metric: str = "psnr"):
    """The premise's gaps (specialist − generalist ``metric``) with their 95% CIs, target and source
    side by side, one row per stage, test set and seed; filled marks resample tiles, open marks
    whole photos; dashed lines at ±margin. Returns the figure."""
    import matplotlib.pyplot as plt

    table = table[table.metric == metric]
    name = {"psnr": "PSNR", "psnr_cc": "colour-corrected PSNR"}.get(metric, metric)
    keys = table[["stage", "test set", "seed"]].drop_duplicates().values.tolist()
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.42 * len(keys) + 1.6), sharey=True)
    for ax, side, colour in ((axes[0], "target", "#b2182b"), (axes[1], "source", "#2166ac")):
        for y, (stage, label, seed) in enumerate(keys):
            sel = table[(table.stage == stage) & (table["test set"] == label) & (table.seed == seed)]
            for _, r in sel.iterrows():
                photo = r["CI resamples"] == "photos"
                dy = 0.18 if photo else -0.18
                ax.errorbar(r[f"{side} gap"], y + dy, xerr=[[r[f"{side} gap"] - r[f"{side} lo"]],
                                                             [r[f"{side} hi"] - r[f"{side} gap"]]],
                            fmt="o", mfc="white" if photo else colour, color=colour, capsize=3, markersize=5)
        ax.axvline(0, color="0.4", linewidth=0.8)
        for m in (-margin, margin):
            ax.axvline(m, color="0.6", linestyle="--", linewidth=0.8)
        ax.set_title(f"{side}: specialist - generalist {name} (dB)", fontsize=11)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(keys)))
    axes[0].set_yticklabels([f"{st}, {lab}, s{sd}" for st, lab, sd in keys], fontsize=9)
    axes[0].invert_yaxis()
    axes[0].plot([], [], "o", color="0.3", label="95% CI over tiles")
    axes[0].plot([], [], "o", color="0.3", mfc="white", label="95% CI over whole photos")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=9, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(f"The premise on more pictures: the specialist must lose on the target and win on the source "
                 f"(dashed: the {margin} dB margin)", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def write_results(table: pd.DataFrame, sentences: list, per_image: pd.DataFrame, results_dir, record: dict,
                  pool: str | None, fig=None) -> list[Path]:
    """``premise.{csv,json,md}``, ``premise_per_image.csv`` and (given ``fig``) ``premise.png`` in
    ``results_dir``/test_pool."""
    from ..evaluate import markdown_table

    out = Path(results_dir) / DIR_NAME
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "premise.csv", index=False, float_format="%.4f")
    per_image.to_csv(out / "premise_per_image.csv", index=False, float_format="%.4f")
    (out / "premise.json").write_text(shown(json.dumps({"record": record, "checks": sentences},
                                                       indent=2, default=str)))
    if fig is not None:
        fig.savefig(out / "premise.png", format="png", dpi=100)
    shown_cols = ["metric", "stage", "test set", "CI resamples", "tiles", "photos", "seed", "source gap", "source lo",
                  "source hi", "target gap", "target lo", "target hi", "holds", "with margin"]
    lines = ["# The premise on more pictures (issue 25, item 4)", "",
             "Specialist - generalist PSNR (Y, dB) of the from-scratch starting models, per seed, on the target "
             "(the domain's hidden degradation) and the source (MATLAB bicubic) LR of three test sets; 95% percentile "
             "bootstrap CIs that resample either tiles or whole photos (all tiles of a photo together). The premise "
             "holds where the source CI lies above 0 and the target CI below 0, with margin beyond ±0.5 dB.", "",
             "Produced by `python -m pdd.experiments.test_pool`; " + ", ".join(
                 f"{k}: {record[k]}" for k in ("preset", "domain", "seeds", "git_commit", "machine") if k in record)
             + ".", "", "## Verdicts", ""]
    lines += [f"- {s['stage']}, {s['test set']}, CI over {s['cluster']}s: {s['sentence']}" for s in sentences]
    lines += ["", "## Conclusions", ""] + conclusions(sentences, pool)
    lines += ["", "## Colour drift", "", "Where a model's PSNR and colour-corrected PSNR differences to the generalist "
              "part by more than 0.3 dB (per stage; `pdd.experiments.verdicts.colour_drift_lines`):", ""]
    lines += [f"- {stage}: {line}" for stage in STAGES
              for line in colour_drift_lines(per_image[per_image.stage == stage])] or ["- none"]
    lines += ["", "## The gaps", "", markdown_table(table[shown_cols].round(4)), ""]
    if fig is not None:
        lines += ["![The premise's gaps per test set, stage and seed](premise.png)", ""]
    lines += ["Test sets: " + "; ".join(f"{k}: {v}" for k, v in record.get("test_sets", {}).items()) + ".", ""]
    (out / "premise.md").write_text(shown("\n".join(lines)))
    return [out / n for n in ("premise.md", "premise.json", "premise.csv", "premise_per_image.csv")] + (
        [out / "premise.png"] if fig is not None else [])


def conclusions(sentences: list, pool: str | None) -> list[str]:
    """Computed sentences: per metric and stage, on which test sets and CI clusters the premise
    holds (with margin), and whether the embedded verdict survives more photos."""
    out = []
    state = lambda s: "holds with margin" if s["with_margin"] else "holds" if s["holds"] else "does not hold"  # noqa: E731
    for metric, stage in dict.fromkeys((s.get("metric", "psnr"), s["stage"]) for s in sentences):
        mine = [s for s in sentences if s["stage"] == stage and s.get("metric", "psnr") == metric]
        out.append(f"- {metric.upper()}, {stage}: "
                   + "; ".join(f"{s['test set']} (CI over {s['cluster']}s) {state(s)}" for s in mine) + ".")
        if pool:
            base = [s for s in mine if s["test set"] == "embedded" and s["cluster"] == "image"]
            more = [s for s in mine if s["test set"] == pool and s["cluster"] == "photo"]
            if base and more:
                b, m = base[0], more[0]
                if state(b) == state(m):
                    then = "the same verdict as on the embedded test set."
                elif b["holds"] and m["holds"]:
                    then = (f"it holds on both, with the margin only on "
                            f"{'these photographs' if m['with_margin'] else 'the embedded test set'}.")
                else:
                    then = (f"not the embedded test set's verdict ({state(b)}): the embedded verdict does not carry "
                            f"over to these photographs.")
                out.append(f"  On {pool}'s photographs, resampled by photo, the premise {state(m)}: {then}")
    if not pool:
        out.append("- The test pool was not installed: only the embedded photos were scored.")
    return out


def main(argv=None) -> int:
    import argparse

    from ..data import TEST_POOLS, DatasetNotFoundError, pool_folder
    from ..evaluate import create_metrics, metric_info, result_record
    from .plans import results_root, train_plan

    ap = argparse.ArgumentParser(prog="python -m pdd.experiments.test_pool", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="scratch", choices=list(C.FROM_SCRATCH))
    ap.add_argument("--domain", default="Synth-ISO")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--pool", default="mate-backgrounds", choices=[*TEST_POOLS, "none"],
                    help="the larger pool of photographs ('none': the embedded photos only)")
    ap.add_argument("--pretrain-iters", type=int)
    ap.add_argument("--runs-dir")
    ap.add_argument("--data-root")
    ap.add_argument("--results-dir", help="default: results/<domain>/<preset>")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    pool = None if a.pool == "none" else a.pool
    if pool:
        try:
            pool_folder(pool, a.data_root)
        except DatasetNotFoundError as e:
            print(f"{e}\nScoring the embedded photos only.", file=sys.stderr)
            pool = None
    plan = pool_plan(a.preset, a.domain, a.seeds, a.runs_dir, a.data_root, a.pretrain_iters)
    train_plan(plan, progress=not a.no_progress)
    sets = test_sets(a.domain, pool, a.data_root)
    metrics = create_metrics(device="cpu")
    per_image = score(plan, sets, metrics, a.preset, a.domain, a.seeds, a.runs_dir, a.pretrain_iters,
                      progress=not a.no_progress)
    table, sentences = premise_table(per_image, sets, n_boot=a.n_boot)
    results = Path(a.results_dir) if a.results_dir else results_root(runs_root(a.runs_dir)) / a.domain / a.preset
    from ..stats import photo_of

    described = {label: f"{len(s['target'])} tiles of {len({photo_of(n) for _, _, n in s['target']})} photos"
                 for label, s in sets.items()}
    record = result_record(preset=a.preset, domain=a.domain, seeds=a.seeds, pool=pool, n_boot=a.n_boot,
                           test_sets=described, metrics=metric_info(metrics),
                           starting_models={st: stage_setup(st, a.preset).describe() for st in STAGES},
                           runs=[r.dir.name for r in plan.runs])
    import matplotlib

    matplotlib.use("Agg")
    for p in write_results(table, sentences, per_image, results, record, pool, plot_premise(table)):
        print("wrote", p)
    print("\n".join(conclusions(sentences, pool)))
    return 0


if __name__ == "__main__":
    from .. import cli

    sys.exit(cli.run(main, "python -m pdd.experiments.test_pool"))
