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

- R4, a second candidate for the GAN stage (written after R1's outcome, before any of its runs):
  the same stage at GAN weight 0.01; taken if it passes R1's gates at a length, else if its premise
  holds with margin at 600, else R1's stage stays; R3 again on its starting models if taken.
- R5, a third candidate (written after R4's outcome, before any of its runs): R1's stage trained on
  to 1,200 iterations (its runs continue R1's from their 600-iteration checkpoints), judged at 900
  and 1,200; taken at the longest length passing R1's gates, else at the longest keeping the premise
  with margin, else R1's stage stays; R3 again on its starting models only if taken.

``decision_plan`` names the runs, ``train_plan`` trains them (resumable), ``decide`` applies the
rules to what the runs left, ``write_decisions`` records the outcome beside the rules.
``python -m pdd.experiments.decisions`` does all four (``--gan-weight 0.01``: R4's candidate, with
``r4_choice`` applied and recorded in ``decisions-w0.01.md``; ``--gan-iters 1200``: R5's, with
``r5_choice`` in ``decisions-gan1200it.md``).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from ..config import SCRATCH_GAN_STAGE_WEIGHT, gan_stage_iters
from ..runs import Run, shown
from ..stats import gan_gate, premise_check
from . import catalogue as C
from .plans import Plan, runs_root
from .scoring import EvalItem, _long, evaluate_items

# R1's candidate lengths of the GAN stage (the snapshots of one run of the longest)
STAGE_LENGTHS = {"scratch": (300, 600), "tiny": (2, 4)}
# R5's longer stage: its length and candidate lengths (the snapshots of one run of the longest)
LONGER_STAGE_LENGTHS = {"scratch": (900, 1200), "tiny": (6, 8)}
# R3's candidates: (a) D from random init, (b) D from the generalist's GAN-stage D
D_STARTS = {"random init": False, "generalist's GAN-stage D": True}
# R3: the fine-tune control's iterations after its D-only warm-up
CONTROL_ITERS_AFTER_WARM_UP = {"scratch": 300, "tiny": 4}
DIR_NAME = "fair_setup"


def candidate_setup(preset: str, d_from_generalist: bool, gan_weight: float | None = None,
                    gan_iters: int | None = None) -> C.Setup:
    """The fair set-up with D's start fixed one way, under a name of its own (R3's two runs), its
    GAN stage at ``gan_weight`` for ``gan_iters`` (None: R1's)."""
    base = stage_setup(preset, gan_weight, gan_iters)
    name = "fair" + candidate_tag(gan_weight, gan_iters) + ("-d-generalist" if d_from_generalist else "-d-random")
    return dataclasses.replace(base, name=name, d_from_generalist=d_from_generalist)


def stage_setup(preset: str, gan_weight: float | None = None, gan_iters: int | None = None) -> C.Setup:
    """The fair set-up with its GAN stage at ``gan_weight`` for ``gan_iters`` iterations (None: R1's,
    ``config.SCRATCH_GAN_STAGE_WEIGHT`` and ``config.gan_stage_iters``), whatever stage the fair
    set-up was given after the decisions."""
    return dataclasses.replace(C.fair_setup(preset), gan_weight=None if gan_weight is None else float(gan_weight),
                               gan_iters=None if gan_iters is None else int(gan_iters))


def candidate_tag(gan_weight: float | None = None, gan_iters: int | None = None) -> str:
    """"" for R1's stage, ``-w<weight>`` for another GAN weight (R4), ``-gan<iters>it`` for another
    length (R5): in the names of runs and files."""
    return ("" if gan_weight is None else f"-w{gan_weight:g}") + ("" if gan_iters is None else f"-gan{gan_iters}it")


def stage_lengths(preset: str, gan_iters: int | None = None) -> tuple:
    """The candidate lengths a stage is judged at: R1's, or R5's for its longer stage."""
    if gan_iters is None:
        return STAGE_LENGTHS[preset]
    if gan_iters != max(LONGER_STAGE_LENGTHS[preset]):
        raise ValueError(f"a longer GAN stage under {preset!r} is R5's {max(LONGER_STAGE_LENGTHS[preset])} "
                         f"iterations, not {gan_iters}")
    return LONGER_STAGE_LENGTHS[preset]


def decision_plan(preset: str = "scratch", domain: str = "Synth-ISO", seeds=(0,), runs_dir=None, data_root=None,
                  pretrain_iters: int | None = None, control_seeds=None, gan_weight: float | None = None,
                  gan_iters: int | None = None) -> Plan:
    """The runs the decisions rest on, in one wave the pool orders by what each starts from: the
    starting models of every seed (pixel stage, then GAN stage) and R3's two fine-tune controls
    for each of ``control_seeds`` (default: the first seed), named ``"d <start> s<seed>"``,
    queued before the later seeds' GAN stages so that R3 is answered first. ``gan_weight``: the
    GAN stage's weight (None: R1's stage; 0.01: R4's candidate), ``gan_iters`` its length (None: R1's;
    1200: R5's candidate); ``control_seeds=()``: no controls (R5 runs R3 only if its candidate is taken). Pure."""
    if preset not in STAGE_LENGTHS:
        raise ValueError(f"the fair set-up's decisions are made under {', '.join(STAGE_LENGTHS)}, not {preset!r}")
    stage_lengths(preset, gan_iters)
    runs_dir = runs_root(runs_dir)
    seeds = C.seed_list(seeds)
    control_seeds = C.seed_list(control_seeds) if control_seeds is not None else seeds[:1]
    starts = C.pretrain_runs(preset, domain, seeds, runs_dir, data_root, pretrain_iters,
                             stage_setup(preset, gan_weight, gan_iters))
    named = {}
    for s in control_seeds:
        for label, from_g in D_STARTS.items():
            setup = candidate_setup(preset, from_g, gan_weight, gan_iters)
            run = C.row_run("finetune control", preset, domain, s, runs_dir, data_root, pretrain_iters=pretrain_iters,
                            setup=setup)
            run.config.iters = setup.warmup_d_iters + CONTROL_ITERS_AFTER_WARM_UP[preset]
            named[f"d {label} s{s}"] = run
    first = [r for r in starts if r.seed in control_seeds]
    return Plan([first + list(named.values()) + [r for r in starts if r not in first]], named)


def stage_runs(plan: Plan) -> list[Run]:
    """The plan's GAN-stage runs (generalist and specialist of every seed)."""
    return [r for r in plan.runs if r.config.mode == "supervised" and r.config.init_s]


def continue_r1_stages(plan: Plan) -> list[Path]:
    """R5's stage runs start as copies of R1's finished runs of the same role and seed (their
    checkpoint, log and snapshots): resumed from there they are the run trained straight to the
    longer length, interrupted at R1's (weights, optimisers, D and RNG state are restored). A run
    that has begun, or whose R1 run is unfinished, is left to train as it is. Returns the copies made."""
    from ..runs import snapshot_path

    made = []
    for run in stage_runs(plan):
        n, r1_n = run.config.iters, gan_stage_iters(run.preset)
        if n == r1_n or run.config.sup.gan != SCRATCH_GAN_STAGE_WEIGHT or (run.dir / "checkpoint.pt").exists():
            continue
        r1 = run.dir.with_name(run.dir.name.replace(f"-gan{n}it", f"-gan{r1_n}it"))
        if not (snapshot_path(r1, r1_n).exists() and (r1 / "checkpoint.pt").exists()):
            continue
        part = run.dir.with_name(run.dir.name + ".copying")
        shutil.rmtree(part, ignore_errors=True)
        shutil.copytree(r1, part, ignore=shutil.ignore_patterns("eval"))
        if run.dir.exists():
            run.dir.rmdir()   # an empty directory left by an earlier start; anything in it stops here
        part.rename(run.dir)
        made.append(run.dir)
    return made


def score_stages(plan: Plan, test_sets: dict, metrics: dict, lengths=None, workers=None,
                 progress: bool = True) -> pd.DataFrame:
    """Per-image metrics of each GAN stage's snapshot at every candidate length, labelled
    (method generalist/specialist, seed, iteration) as notebook 02's frame. Cached per run."""
    from ..train import load_run_model

    runs = stage_runs(plan)
    preset = runs[0].preset
    lengths = lengths or stage_lengths(preset, None if runs[0].config.iters == gan_stage_iters(preset)
                                       else runs[0].config.iters)
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
    if not controls:
        from_g, d_sentence = None, "R3 was not run on these starting models (no fine-tune control in the plan)."
    elif random_ok:
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

    panels = [([(f"{_role(r)} s{r.seed}", r) for r in stage_runs(plan)], "the starting models' GAN stage")]
    panels += [(list(plan.named.items()), "fine-tune control, by D's start")] if plan.named else []
    fig, axes = plt.subplots(1, len(panels), figsize=(5.75 * len(panels) + 0.5 * (2 - len(panels)), 4.2),
                             sharey=True, squeeze=False)
    axes = axes[0]
    panels = [(ax, runs, title) for ax, (runs, title) in zip(axes, panels)]
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
    warm = max((r.config.warmup_d_iters for _, r in plan.named.items()), default=0)
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


def r4_choice(decision: dict, fallback_length: int) -> dict:
    """R4 applied to candidate B's decision (``decide`` on B's plan): {"taken", "length",
    "sentence"}. B is taken at the longest length where it passes R1's gates; else at
    ``fallback_length`` (600) if its premise holds with margin there; else R1's stage stays."""
    at = {r["length"]: r for r in decision["stage"]}
    if decision["stage_length"] is not None:
        return {"taken": True, "length": decision["stage_length"],
                "sentence": f"R4: candidate B passes both of R1's gates at {decision['stage_length']} iterations: the "
                            f"fair set-up's GAN stage is B (GAN weight 0.01) at that length."}
    last = at.get(fallback_length)
    if last is not None and last["premise_with_margin"]:
        failed = [k for k, g in last["gan_gates"].items() if not g["passed"]]
        return {"taken": True, "length": fallback_length,
                "sentence": f"R4: candidate B keeps the premise with margin at {fallback_length} iterations but its GAN "
                            f"gate fails ({', '.join(failed)}): the fair set-up's GAN stage is B (GAN weight 0.01) at "
                            f"{fallback_length}, and every result that uses it says which gate failed."}
    return {"taken": False, "length": None,
            "sentence": "R4: candidate B (GAN weight 0.01) passes neither R1's two gates nor the premise with margin: "
                        "R1's stage (GAN weight 0.1, 600 iterations) stays, as decided."}


def r5_choice(decision: dict) -> dict:
    """R5 applied to candidate C's decision (``decide`` on C's plan, at its lengths): {"taken",
    "length", "sentence"}. C is taken at the longest length where it passes R1's gates; else at the
    longest length where its premise holds with margin (the failed GAN gates named); else R1's stage stays."""
    if decision["stage_length"] is not None:
        return {"taken": True, "length": decision["stage_length"],
                "sentence": f"R5: candidate C passes both of R1's gates at {decision['stage_length']} iterations: the "
                            f"fair set-up's GAN stage is R1's stage trained on to that length."}
    kept = [r for r in decision["stage"] if r["premise_with_margin"]]
    if kept:
        last = max(kept, key=lambda r: r["length"])
        failed = [k for k, g in last["gan_gates"].items() if not g["passed"]]
        return {"taken": True, "length": last["length"],
                "sentence": f"R5: candidate C keeps the premise with margin at {last['length']} iterations but its GAN "
                            f"gate fails ({', '.join(failed)}): the fair set-up's GAN stage is R1's stage trained on to "
                            f"{last['length']}, and every result that uses it says which gate failed."}
    return {"taken": False, "length": None,
            "sentence": "R5: candidate C (R1's stage trained on to "
                        f"{max(r['length'] for r in decision['stage']):,} iterations) keeps the premise with its margin "
                        "at none of its lengths, so it passes R1's two gates at none of them either: R1's stage (GAN "
                        "weight 0.1, 600 iterations) stays, as decided."}


# the later candidates for the GAN stage: the key their choice is kept under, and how they are named
CANDIDATES = {"r4": ("R4", "candidate B"), "r5": ("R5", "candidate C")}


def write_decisions(decision: dict, results_dir, record: dict, fig=None, gan_weight: float | None = None,
                    gan_iters: int | None = None) -> list[Path]:
    """decisions.json (everything, with ``record``: ``pdd.evaluate.result_record``), decisions.md
    (the sentences and the gates, for a reader) and, given ``fig`` (``plot_separation``),
    decisions.png, in ``results_dir``/fair_setup; for R4's candidate (``gan_weight``; ``decision``
    then holds ``r4``: ``r4_choice``) ``decisions-w<weight>.*``, for R5's (``gan_iters``; ``r5``:
    ``r5_choice``) ``decisions-gan<iters>it.*``."""
    out = Path(results_dir) / DIR_NAME
    out.mkdir(parents=True, exist_ok=True)
    stem = "decisions" + candidate_tag(gan_weight, gan_iters)
    if fig is not None:
        fig.savefig(out / f"{stem}.png", format="png", dpi=100)
    (out / f"{stem}.json").write_text(shown(json.dumps({**decision, "record": record}, indent=2, default=str)))
    key = next((k for k in CANDIDATES if k in decision), None)
    rule, name = CANDIDATES.get(key, ("R1", ""))
    title = ("# The fair set-up's decisions (issue 25)" if not (gan_weight or gan_iters) else
             f"# The fair set-up's decisions, R4: candidate B, the GAN stage at GAN weight {gan_weight:g} (issue 25)"
             if gan_weight else
             f"# The fair set-up's decisions, R5: candidate C, R1's GAN stage trained on to {gan_iters:,} iterations "
             f"(issue 25)")
    lines = [title, "",
             "Rules: RULES.md beside this file, written before these runs produced a number. Produced by "
             "`python -m pdd.experiments.decisions`; " + ", ".join(f"{k}: {record[k]}" for k in
                                                                  ("preset", "domain", "seeds", "git_commit", "machine")
                                                                  if k in record) + ".", "",
             "## R1: the starting models' GAN stage" + (f" (R1's criteria on {name})" if key else ""), "",
             decision["stage_sentence"], ""]
    if key:
        lines[-2:-1] = [decision["stage_sentence"] + f" (R1's own fallback does not apply to {name}: {rule} decides.)",
                        "", "**" + decision[key]["sentence"] + "**"]
    for r in decision["stage"]:
        lines.append(f"- at {r['length']} iterations: premise {'holds with margin' if r['premise_with_margin'] else 'holds, not with margin' if r['premise_holds'] else 'does not hold'}; GAN gates:")
        lines += [f"  - {k}: {g['verdict']}" for k, g in r["gan_gates"].items()]
        lines.append(f"  - {r['premise_sentence']}")
    lines += ["", "## R2: D's width under scratch", "",
              "32 features (the official U-Net D has 64): a deviation on cost, fixed in advance.", "",
              "## R3: D's start in the adapted runs", "", decision["d_sentence"], ""]
    if key and not decision[key]["taken"]:
        why = ((decision["d_sentence"] + f" Not applied: {name[-1]} was not taken") if decision["controls"] else
               f"R3 was not run on {name}'s starting models: {rule} runs it only if {name[-1]} is taken")
        lines[-4:-1] = [f"## R3 on {name}'s starting models, for the record", "",
                        why + ", so the fair set-up keeps R3's decision on R1's stage (decisions.md)."]
    lines += [f"- {c['run']}: {c['verdict']}" for c in decision["controls"]]
    if fig is not None:
        lines += ["", f"![D's separation in the GAN stages and the fine-tune controls]({stem}.png)"]
    (out / f"{stem}.md").write_text(shown("\n".join(lines) + "\n"))
    return [out / f"{stem}.json", out / f"{stem}.md"] + ([out / f"{stem}.png"] if fig is not None else [])


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
    ap.add_argument("--gan-weight", type=float, help="R4: the GAN stage's weight of candidate B (0.01); default: R1's")
    ap.add_argument("--gan-iters", type=int, help="R5: the GAN stage's length of candidate C (1200; it continues "
                                                   "R1's runs); default: R1's")
    ap.add_argument("--pretrain-iters", type=int)
    ap.add_argument("--runs-dir")
    ap.add_argument("--results-dir", help="default: results/<domain>/<preset>")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    if a.gan_weight is not None and a.gan_iters is not None:
        ap.error("--gan-weight (R4) and --gan-iters (R5) are separate candidates: give one")

    def plan_with(control_seeds):
        return decision_plan(a.preset, a.domain, a.seeds, a.runs_dir, None, a.pretrain_iters, control_seeds,
                             a.gan_weight, a.gan_iters)

    # R5 trains its controls only if its candidate is taken (RULES.md)
    plan = plan_with(() if a.gan_iters is not None else a.control_seeds)
    for d in continue_r1_stages(plan):
        print("continues R1's run:", shown(str(d)))
    train_plan(plan, progress=not a.no_progress)
    dom = open_domain(a.domain)
    metrics = create_metrics(device="cpu")
    per_image = score_stages(plan, {"target": dom.test_pairs, "source": dom.source_test_pairs}, metrics,
                             stage_lengths(a.preset, a.gan_iters), progress=not a.no_progress)
    decision = decide(plan, per_image, n_boot=a.n_boot)
    if a.gan_weight is not None:
        decision["r4"] = r4_choice(decision, max(STAGE_LENGTHS[a.preset]))
    if a.gan_iters is not None:
        choice = r5_choice(decision)
        if choice["taken"]:
            plan = plan_with(a.control_seeds)
            train_plan(plan, progress=not a.no_progress)
            decision = decide(plan, per_image, n_boot=a.n_boot)
        decision["r5"] = choice
    results = Path(a.results_dir) if a.results_dir else results_root(runs_root(a.runs_dir)) / a.domain / a.preset
    from ..evaluate import metric_info
    record = result_record(preset=a.preset, domain=a.domain, seeds=a.seeds, control_seeds=list(plan.named),
                           gan_weight=a.gan_weight, gan_iters=a.gan_iters,
                           n_boot=a.n_boot,
                           metrics=metric_info(metrics), runs=[str(r.dir.name) for r in plan.runs])
    import matplotlib

    matplotlib.use("Agg")
    for p in write_decisions(decision, results, record, plot_separation(plan), a.gan_weight, a.gan_iters):
        print("wrote", p)
    print(decision["stage_sentence"])
    for key in CANDIDATES:
        if key in decision:
            print(decision[key]["sentence"])
    print(decision["d_sentence"])
    return 0


if __name__ == "__main__":
    from .. import cli

    sys.exit(cli.run(main, "python -m pdd.experiments.decisions"))
