"""The fair set-up's decisions (issue 25, items 1 and 2), made on the starting models and the
fine-tune control alone, never on a PDD row.

The rules were written before any of these runs produced a number
(results/Synth-ISO/scratch/fair_setup/RULES.md):

- R1, the starting models' GAN stage: the longer of the candidate lengths (300, 600 under
  ``scratch``) at which the stage's own GAN gate passes for the generalist and the specialist
  and notebook 02's premise gate still holds with margin.
- R2, D's width under ``scratch``: 32 features (a deviation on cost, ``config.SCRATCH_DISC_FEAT``).
- R3, D's start in the adapted runs: the fine-tune control with the official 300 D-only
  warm-up, D from random init (a) and from the generalist's GAN-stage D (b); (a) if it passes
  the GAN gate, else (b) if it passes, else (a) with the gate withholding perceptual conclusions.

``decision_plan`` names the runs, ``train_plan`` trains them (resumable), ``decide`` applies the
rules to what the runs left, ``write_decisions`` records the outcome beside the rules.
``python -m pdd.experiments.decisions`` does all four.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pandas as pd

from ..config import gan_stage_iters
from ..runs import Run, shown
from ..stats import gan_gate, premise_check
from . import catalogue as C
from .plans import Plan, runs_root
from .scoring import EvalItem, _long, evaluate_items

# R1's candidate lengths of the GAN stage (the snapshots of one run of the longest)
STAGE_LENGTHS = {"scratch": (300, 600), "tiny": (2, 4)}
# R3's candidates: (a) D from random init, (b) D from the generalist's GAN-stage D
D_STARTS = {"random init": False, "generalist's GAN-stage D": True}
# R3: the fine-tune control's iterations after its D-only warm-up
CONTROL_ITERS_AFTER_WARM_UP = {"scratch": 300, "tiny": 4}
DIR_NAME = "fair_setup"


def candidate_setup(preset: str, d_from_generalist: bool) -> C.Setup:
    """The fair set-up with D's start fixed one way, under a name of its own (R3's two runs)."""
    base = C.fair_setup(preset)
    name = "fair-d-generalist" if d_from_generalist else "fair-d-random"
    return dataclasses.replace(base, name=name, d_from_generalist=d_from_generalist)


def decision_plan(preset: str = "scratch", domain: str = "Synth-ISO", seeds=(0,), runs_dir=None, data_root=None,
                  pretrain_iters: int | None = None, control_seeds=None) -> Plan:
    """The runs the decisions rest on, in one wave the pool orders by what each starts from: the
    starting models of every seed (pixel stage, then GAN stage) and R3's two fine-tune controls
    for each of ``control_seeds`` (default: the first seed), named ``"d <start> s<seed>"``,
    queued before the later seeds' GAN stages so that R3 is answered first. Pure."""
    if preset not in STAGE_LENGTHS:
        raise ValueError(f"the fair set-up's decisions are made under {', '.join(STAGE_LENGTHS)}, not {preset!r}")
    runs_dir = runs_root(runs_dir)
    seeds = C.seed_list(seeds)
    control_seeds = C.seed_list(control_seeds) if control_seeds is not None else seeds[:1]
    starts = C.pretrain_runs(preset, domain, seeds, runs_dir, data_root, pretrain_iters, C.fair_setup(preset))
    named = {}
    for s in control_seeds:
        for label, from_g in D_STARTS.items():
            setup = candidate_setup(preset, from_g)
            run = C.row_run("finetune control", preset, domain, s, runs_dir, data_root, pretrain_iters=pretrain_iters,
                            setup=setup)
            run.config.iters = setup.warmup_d_iters + CONTROL_ITERS_AFTER_WARM_UP[preset]
            named[f"d {label} s{s}"] = run
    first = [r for r in starts if r.seed in control_seeds]
    return Plan([first + list(named.values()) + [r for r in starts if r not in first]], named)


def stage_runs(plan: Plan) -> list[Run]:
    """The plan's GAN-stage runs (generalist and specialist of every seed)."""
    return [r for r in plan.runs if r.config.mode == "supervised" and r.config.init_s]


def score_stages(plan: Plan, test_sets: dict, metrics: dict, lengths=None, workers=None,
                 progress: bool = True) -> pd.DataFrame:
    """Per-image metrics of each GAN stage's snapshot at every candidate length, labelled
    (method generalist/specialist, seed, iteration) as notebook 02's frame. Cached per run."""
    from ..train import load_run_model

    runs = stage_runs(plan)
    lengths = lengths or STAGE_LENGTHS[runs[0].preset]
    missing = [f"{r.dir.name} at {i}" for r in runs for i in lengths if not r.snapshot(i).exists()]
    if missing:
        raise FileNotFoundError(f"no snapshot for {', '.join(missing)}: train the plan first (it resumes)")
    items = [EvalItem(lambda c=r.config, f=r.snapshot(i): load_run_model(c, f), r.snapshot(i), r.dir / "eval",
                      dict(method=_role(r), seed=r.seed, iteration=i)) for r in runs for i in lengths]
    return _long(evaluate_items(items, test_sets, metrics, workers, progress))


def _role(run: Run) -> str:
    return C.GENERALIST if "generalist" in run.dir.name else C.SPECIALIST


def decide(plan: Plan, per_image: pd.DataFrame, margin: float = 0.5, n_boot: int = 2000) -> dict:
    """R1 and R3 applied to the trained plan and the stages' scores (``score_stages``).

    Returns {"stage": [one row per candidate length: gates and premise], "stage_length" (the
    chosen one, or None when no candidate passes both), "stage_sentence", "controls": [one row
    per D start and seed], "d_from_generalist", "d_sentence"}."""
    runs = stage_runs(plan)
    preset = runs[0].preset
    stage = []
    for length in sorted(per_image.iteration.unique()):
        gates = {f"{_role(r)} s{r.seed}": gan_gate(r.dir, upto=int(length)) for r in runs}
        check = premise_check(per_image[per_image.iteration == length], margin=margin, n_boot=n_boot)
        stage.append({"length": int(length), "gan_gates": {k: _gate_row(g) for k, g in gates.items()},
                      "gan_gates_pass": all(g["passed"] for g in gates.values()),
                      "premise_with_margin": check["with_margin"], "premise_holds": check["holds"],
                      "premise_sentence": check["sentence"]})
    passing = [r["length"] for r in stage if r["gan_gates_pass"] and r["premise_with_margin"]]
    chosen = max(passing) if passing else None
    if chosen is not None:
        stage_sentence = (f"R1: the GAN stage's length is {chosen} iterations: the longest candidate at which both "
                          f"stages pass the GAN gate and the premise holds with margin.")
    else:
        stage_sentence = (f"R1: no candidate length passes both the GAN gate and the premise gate with margin; the "
                          f"stage stays at {gan_stage_iters(preset)} iterations and every result that uses it says so.")
    controls = []
    for label, run in plan.named.items():
        g = gan_gate(run.dir)
        controls.append({"run": label, "d_from_generalist": bool(run.config.init_d), **_gate_row(g)})
    by_start = {}
    for row in controls:
        by_start.setdefault(row["d_from_generalist"], []).append(bool(row["passed"]))
    random_ok, generalist_ok = all(by_start.get(False, [False])), all(by_start.get(True, [False]))
    if random_ok:
        from_g, d_sentence = False, ("R3: in the fine-tune control D from random init passes the GAN gate: D starts "
                                     "from random init, as the official configs.")
    elif generalist_ok:
        from_g, d_sentence = True, ("R3: in the fine-tune control D from random init fails the GAN gate and D from "
                                    "the generalist's GAN-stage D passes: the adapted runs' D starts from the "
                                    "generalist's GAN-stage D (a deviation, named in every result).")
    else:
        from_g, d_sentence = False, ("R3: in the fine-tune control neither D start passes the GAN gate: D starts "
                                     "from random init, and the GAN gate withholds the perceptual conclusions of the "
                                     "runs that fail it.")
    return {"stage": stage, "stage_length": chosen, "stage_sentence": stage_sentence, "controls": controls,
            "d_from_generalist": from_g, "d_sentence": d_sentence}


def plot_separation(plan: Plan):
    """D's separation p_real − p_fake against iterations: the GAN stages (left: each role and seed)
    and R3's fine-tune controls (right: each D start; the D-only warm-up shaded), with the GAN gate's
    threshold. Returns the figure."""
    import matplotlib.pyplot as plt

    from ..stats import GAN_GATE_MIN_SEPARATION, read_log

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2), sharey=True)
    panels = ((axes[0], [(f"{_role(r)} s{r.seed}", r) for r in stage_runs(plan)], "the starting models' GAN stage"),
              (axes[1], list(plan.named.items()), "fine-tune control, by D's start"))
    for (ax, runs, title), where in zip(panels, ("upper left", "center right")):
        for label, r in runs:
            log = read_log(r.dir)
            ax.plot(log["iter"], log["p_real"] - log["p_fake"], linewidth=1.6, label=label)
        ax.axhline(GAN_GATE_MIN_SEPARATION, color="0.3", linestyle="--", linewidth=1,
                   label=f"GAN gate threshold {GAN_GATE_MIN_SEPARATION}")
        ax.axhline(0, color="0.6", linewidth=0.8)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("iteration", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc=where)
    warm = max((r.config.warmup_d_iters for _, r in panels[1][1]), default=0)
    if warm:
        axes[1].axvspan(0, warm, color="0.9", zorder=0)
        axes[1].text(warm / 2, 0.95, "D-only warm-up", transform=axes[1].get_xaxis_transform(), ha="center",
                     fontsize=9, color="0.35")
    axes[0].set_ylabel("D's separation p_real - p_fake", fontsize=10)
    fig.suptitle("Does D tell real from fake? (the gate judges the last half of each run)", fontsize=11)
    fig.tight_layout()
    return fig


def _gate_row(g: dict) -> dict:
    return {k: g[k] for k in ("passed", "mean", "lo", "hi", "n", "from_iter", "verdict")}


def write_decisions(decision: dict, results_dir, record: dict, fig=None) -> list[Path]:
    """decisions.json (everything, with ``record``: ``pdd.evaluate.result_record``), decisions.md
    (the sentences and the gates, for a reader) and, given ``fig`` (``plot_separation``),
    decisions.png, in ``results_dir``/fair_setup."""
    out = Path(results_dir) / DIR_NAME
    out.mkdir(parents=True, exist_ok=True)
    if fig is not None:
        fig.savefig(out / "decisions.png", format="png", dpi=100)
    (out / "decisions.json").write_text(shown(json.dumps({**decision, "record": record}, indent=2, default=str)))
    lines = ["# The fair set-up's decisions (issue 25)", "",
             "Rules: RULES.md beside this file, written before these runs produced a number. Produced by "
             "`python -m pdd.experiments.decisions`; " + ", ".join(f"{k}: {record[k]}" for k in
                                                                  ("preset", "domain", "seeds", "git_commit", "machine")
                                                                  if k in record) + ".", "",
             "## R1: the starting models' GAN stage", "", decision["stage_sentence"], ""]
    for r in decision["stage"]:
        lines.append(f"- at {r['length']} iterations: premise {'holds with margin' if r['premise_with_margin'] else 'holds, not with margin' if r['premise_holds'] else 'does not hold'}; GAN gates:")
        lines += [f"  - {k}: {g['verdict']}" for k, g in r["gan_gates"].items()]
        lines.append(f"  - {r['premise_sentence']}")
    lines += ["", "## R2: D's width under scratch", "",
              "32 features (the official U-Net D has 64): a deviation on cost, fixed in advance.", "",
              "## R3: D's start in the adapted runs", "", decision["d_sentence"], ""]
    lines += [f"- {c['run']}: {c['verdict']}" for c in decision["controls"]]
    if fig is not None:
        lines += ["", "![D's separation in the GAN stages and the fine-tune controls](decisions.png)"]
    (out / "decisions.md").write_text(shown("\n".join(lines) + "\n"))
    return [out / "decisions.json", out / "decisions.md"] + ([out / "decisions.png"] if fig is not None else [])


def main(argv=None) -> int:
    import argparse

    from ..data import open_domain
    from ..evaluate import create_metrics, result_record
    from .plans import results_root, train_plan

    ap = argparse.ArgumentParser(prog="python -m pdd.experiments.decisions", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="scratch", choices=list(STAGE_LENGTHS))
    ap.add_argument("--domain", default="Synth-ISO")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="the starting models' seeds (R1)")
    ap.add_argument("--control-seeds", type=int, nargs="+", help="R3's fine-tune controls (default: the first seed)")
    ap.add_argument("--pretrain-iters", type=int)
    ap.add_argument("--runs-dir")
    ap.add_argument("--results-dir", help="default: results/<domain>/<preset>")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    plan = decision_plan(a.preset, a.domain, a.seeds, a.runs_dir, None, a.pretrain_iters, a.control_seeds)
    train_plan(plan, progress=not a.no_progress)
    dom = open_domain(a.domain)
    metrics = create_metrics(device="cpu")
    per_image = score_stages(plan, {"target": dom.test_pairs, "source": dom.source_test_pairs}, metrics,
                             progress=not a.no_progress)
    decision = decide(plan, per_image, n_boot=a.n_boot)
    results = Path(a.results_dir) if a.results_dir else results_root(runs_root(a.runs_dir)) / a.domain / a.preset
    from ..evaluate import metric_info
    record = result_record(preset=a.preset, domain=a.domain, seeds=a.seeds, control_seeds=list(plan.named),
                           n_boot=a.n_boot,
                           metrics=metric_info(metrics), runs=[str(r.dir.name) for r in plan.runs])
    import matplotlib

    matplotlib.use("Agg")
    for p in write_decisions(decision, results, record, plot_separation(plan)):
        print("wrote", p)
    print(decision["stage_sentence"])
    print(decision["d_sentence"])
    return 0


if __name__ == "__main__":
    from .. import cli

    sys.exit(cli.run(main, "python -m pdd.experiments.decisions"))
