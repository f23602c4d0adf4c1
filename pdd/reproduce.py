"""`make reproduce`: run every numbered notebook with papermill on the embedded default.

Executed copies land in results/notebooks/, and results/README.md lists what ran, how
long each took, and what failed; then the website of it all is built into site/ (pdd.site;
a site failure is reported, never fatal). Notebook parameters are not overridden here: each
notebook's parameters cell holds the embedded default.

Before training it prints an estimate of the whole run on this machine from a few timed steps
of each kind of training job in the pool (in a temporary folder: nothing in runs/ is touched;
--no-estimate skips it), and the pool shows a progress bar with the time left.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import cli
from .evaluate import git_commit  # the provenance string every result record carries

ROOT = Path(__file__).resolve().parents[1]
# What `make reproduce` runs (about 44 minutes fresh on a 2-core CPU before the training pool; benchmarks/README.md).
DEFAULT_CHAIN = ("01", "02", "03", "04", "05", "06", "07")
# A hung cell must not hang the run. The longest honest cell: 04's training cell when 04 trains
# its rows itself (about 17 min for the rows before the KDSR ones, 2-core Xeon, 2026-11-30; the
# KDSR rows add about 10), so an hour leaves a slower laptop twice that. Under `make reproduce`
# the training pool (below) trains first and no cell trains: cells take seconds to minutes.
CELL_TIMEOUT_S = 3600
# A training job of the pool: the longest honest one is the generalist's pretraining, about 9
# min on one thread here; a job past this has hung (it is stopped and reported; its
# checkpoints stay, so the next run resumes it).
JOB_TIMEOUT_S = 3600


# The estimate's allowance for the notebooks after the pool (evaluation and figures): measured
# 403 s (01 24, 02 29, 03 41, 04 97, 05 113, 06 63, 07 36) on the 2-core Intel Xeon with AMX
# (benchmarks/README, issue 15), whose scratch EMA PDD step took 1.228 s on one thread (same
# file); scaled by this machine's measured step of that kind (the notebooks' work is the same
# networks' inference, so it slows down with them).
REF_NOTEBOOKS_S = 403.0
REF_STEP_KIND, REF_STEP_S = "scratch PDD (static/EMA, naive)", 1.228

# The notebooks whose runs the training pool trains before any notebook runs (train_chain).
TRAINING_NOTEBOOKS = ("02", "03", "04", "05", "06", "07")
POOL_ROW = "training pool (the runs of 02-06)"


def weight_files(runs_dir) -> set[str]:
    """Every weights snapshot under ``runs_dir``: what a notebook trained is what appears."""
    from .runs import SNAPSHOT_GLOB

    return {str(p) for p in Path(runs_dir).glob("**/" + SNAPSHOT_GLOB)}


class NotebookClock:
    """A notebook's wall time and whether it trained anything (new weight snapshots under
    ``runs_dir``) or only reused finished runs, kept in ``out/timings.json`` so that a later
    notebook can report a chain of them (``chain_report``)."""

    def __init__(self, out, notebook: str, runs_dir):
        self.out, self.notebook, self.runs_dir = Path(out), notebook, Path(runs_dir)
        self.t0, self.before = time.time(), weight_files(runs_dir)

    def stop(self) -> dict:
        trained = sorted(weight_files(self.runs_dir) - self.before)
        entry = {"wall_s": round(time.time() - self.t0, 1), "new_weight_snapshots": len(trained),
                 "fresh": bool(trained), "commit": git_commit(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        path = self.out / "timings.json"
        timings = json.loads(path.read_text()) if path.exists() else {}
        timings[self.notebook] = entry
        self.out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(timings, indent=2) + "\n")
        print(f"{self.notebook}: {entry['wall_s']:.0f} s, "
              + (f"trained {len(trained)} new weight snapshot(s)" if trained else "reused finished runs only"))
        return entry


def chain_report(out, notebooks, budget_s: float | None = None) -> str:
    """One paragraph on the measured wall time of ``notebooks`` run in turn (their
    ``NotebookClock`` entries in ``out/timings.json``): the sum, the budget, and whether it
    is a fresh chain (every notebook trained what it needed) or partly reused runs."""
    path = Path(out) / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    missing = [n for n in notebooks if n not in timings]
    if missing:
        return f"chain {' -> '.join(notebooks)}: no timing yet for {', '.join(missing)} (run them in order)."
    parts = [f"{n} {timings[n]['wall_s']:.0f} s" for n in notebooks]
    total = sum(timings[n]["wall_s"] for n in notebooks)
    reused = [n for n in notebooks if not timings[n]["fresh"]]
    text = f"chain {' -> '.join(notebooks)}: " + " + ".join(parts) + f" = {total:.0f} s ({total / 60:.1f} min)"
    if budget_s is not None:
        text += f"; budget {budget_s / 60:.0f} min: " + ("within" if total <= budget_s else "OVER")
    if reused:
        text += (f". Not a fresh chain: {', '.join(reused)} reused finished runs, so this is not the cost of "
                 "training from scratch (delete the runs, or pass a new runs_dir, to measure it)")
    return text + "."


def extract_figures(nb_path, fig_dir) -> list[Path]:
    """Save every PNG output of an executed notebook as ``fig_dir/<notebook>_<k>.png``."""
    import base64

    nb = json.loads(Path(nb_path).read_text())
    paths = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png")
            if png:
                path = Path(fig_dir) / f"{Path(nb_path).stem}_{len(paths) + 1}.png"
                path.write_bytes(base64.b64decode(png if isinstance(png, str) else "".join(png)))
                paths.append(path)
    return paths


def _parameters(nb_path) -> dict:
    nb = json.loads(Path(nb_path).read_text())
    return nb.get("metadata", {}).get("papermill", {}).get("parameters", {})


def record_runs(rows, total: float, fresh: bool, rows_set: str = "default") -> dict:
    """Merge this invocation's (notebook, status, seconds) rows into results/reproduce.json,
    so that `python -m pdd.reproduce 07` updates one row instead of dropping the others, and
    append the invocation itself (which notebooks, how long, whether it started without any
    finished training run, i.e. trained everything it needed, and the comparison's row set)."""
    path = ROOT / "results" / "reproduce.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    notebooks, invocations = state.get("notebooks", {}), state.get("invocations", [])
    for name, status, seconds in rows:
        notebooks[name] = {"status": status, "wall_s": round(seconds, 1), "commit": git_commit(),
                           "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    if rows:
        from .config import cpu_model

        invocations.append({"notebooks": [n for n, _, _ in rows], "wall_min": round(total / 60, 1), "commit": git_commit(),
                            "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "fresh": fresh, "cpu": cpu_model(),
                            "rows": rows_set})
    state = {"notebooks": dict(sorted(notebooks.items())), "invocations": invocations}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2) + "\n")
    return state


def _conclusions(md: Path) -> list[str]:
    """The computed verdict/conclusion bullets of a results table, if it has any."""
    text = md.read_text()
    for head in ("## Conclusion (computed)", "## Verdict (computed from the numbers)"):
        if head in text:
            body = text.split(head, 1)[1].split("\n## ", 1)[0]
            return [line for line in body.splitlines() if line.startswith("- ")]
    return []


SETTING_LABELS = {
    "scratch": "the premise setting: small RRDBNets pretrained here from scratch (embedded default)",
    "cpu": "the paper's own networks (RealESRGAN_x4plus) at CPU length: too short a schedule for the premise",
    "tiny": "a smoke tier, not evidence",
    "paper": "the paper's configuration",
}


def lead_lines(res: Path) -> list[str]:
    """The top of results/README.md: per setting with a premise gate, the gate's verdict and the
    answer to the paper's claim there, then under which length and gates that answer holds and
    where the fair test stands — every sentence read from the committed result files
    (premise.json of notebook 02, the computed verdict of the method comparison with the most
    seeds, ``experiments.reports.fair_test_lines``)."""
    from .experiments.reports import fair_test_lines

    lines = []
    for gate in sorted(res.glob("*/*/premise.json"), key=lambda p: (p.parent.name != "scratch", str(p))):
        folder = gate.parent
        domain, preset = folder.parent.name, folder.name
        premise = json.loads(gate.read_text())
        lines += ["", f"### {domain}, `{preset}` preset — {SETTING_LABELS.get(preset, preset)}", "",
                  f"- {premise['sentence']}"]
        comparisons = sorted(folder.glob("methods_seeds*.json"), key=lambda p: (len(p.stem.split("-")), p.stem))
        if comparisons:
            cmp = comparisons[-1]
            verdict = [v for v in json.loads(cmp.read_text()).get("verdict", []) if not v.startswith(("Premise", "PREMISE"))]
            lines += [f"- {v}" for v in verdict]
            lines.append(f"- (from [{cmp.relative_to(res).with_suffix('.md')}]({cmp.relative_to(res).with_suffix('.md')}))")
            lines += [f"- {line}" for line in fair_test_lines(folder)]
    if lines:
        lines = ["## The premise and the paper's claim, per setting (computed from the committed numbers)"] + lines
    return lines


def _run_seconds(run: Path) -> float | None:
    """A finished run's own training time: the ``sec`` of the last row of its log.csv."""
    import csv

    log = run / "log.csv"
    if not log.exists():
        return None
    with open(log) as f:
        last = None
        for last in csv.DictReader(f):
            pass
    return float(last["sec"]) if last and last.get("sec") not in (None, "") else None


KDSR_COST_HEADING = "## What the KDSR rows add (training time read from the runs' logs)"


def _previous_section(readme: Path, heading: str) -> list[str]:
    """The lines of ``heading``'s section in the README as last written ([] if absent): kept where
    what it was computed from (the runs' logs) is not on this machine."""
    if not readme.exists() or heading not in (text := readme.read_text()):
        return []
    body = text.split(heading, 1)[1].split("\n## ", 1)[0]
    return [line for line in body.strip().splitlines()]


def kdsr_cost_lines(runs_dir: Path = ROOT / "runs") -> list[str]:
    """What the KDSR rows add to a setting's training, per seed, read from the runs' logs: the
    KDSR generalist's stages (``kdsr-*``) and the three rows (``*kdsr-generalist*``) against every
    other run of the setting. Run-seconds as logged (one thread each, two runs at a time, so
    the wall time added is about half their sum). [] where no KDSR row was trained."""
    lines = []
    for setting in sorted(p for p in Path(runs_dir).glob("*/*") if p.is_dir() and p.parts[-2] != "smoke"):
        kdsr: dict[str, list[float]] = {}
        for run in sorted(setting.iterdir()):
            if not (run.name.startswith("kdsr-") or "kdsr-generalist" in run.name) or "_s" not in run.name:
                continue
            sec = _run_seconds(run)
            if sec is not None:
                kdsr.setdefault(run.name.rsplit("_s", 1)[1], []).append(sec)
        if kdsr:
            per_seed = ", ".join(f"seed {s}: {sum(v) / 60:.1f} run-min over {len(v)} runs" for s, v in sorted(kdsr.items()))
            lines.append(f"- {setting.parts[-1]}/{setting.parts[-2]}: {per_seed} (as each run logged it: more when "
                         f"other work shared the cores); two runs at a time, so the KDSR rows add about half a "
                         f"seed's run-minutes to the wall time of that setting's comparison (`make reproduce` "
                         f"trains Synth-ISO/scratch, seed 0).")
    return lines


def write_summary(rows, total: float, fresh: bool = False, rows_set: str = "default") -> Path:
    """results/README.md: what ran and how long, every table and figure, the 02->04 chain
    time, the extra (non-default) executed notebooks with their parameters, and what could
    not be computed offline."""
    from .evaluate import create_metrics, unavailable_note

    res = ROOT / "results"
    out_dir, fig_dir = res / "notebooks", res / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in fig_dir.glob("*.png"):
        old.unlink()
    state = record_runs(rows, total, fresh, rows_set)
    runs = state["notebooks"]
    lines = ["# Results of `make reproduce`", ""] + lead_lines(res) + ["",
             "## What ran", "",
             "Embedded default: `scratch` preset on the built-in domain Synth-ISO, every notebook with its own "
             "parameters cell. Each notebook's latest execution:", "",
             "| notebook | status | wall time (s) | commit | finished |", "|---|---|---|---|---|"]
    lines += [f"| {n if n == POOL_ROW else f'[{n}](notebooks/{n})'} | {r['status']} | {r['wall_s']:.0f} | "
              f"`{r['commit']}` | {r['finished']} |" for n, r in runs.items()]
    if POOL_ROW in runs:
        lines += ["", f"`make reproduce` trains every run of 02-06 first, in one pool ({POOL_ROW}: two jobs at a "
                  "time, one thread each, each as soon as what it starts from is done); the notebooks then find "
                  "their runs finished and evaluate them, so their own times are evaluation and figures."]
    lines += ["", f"Sum of the table: {sum(r['wall_s'] for r in runs.values()) / 60:.1f} min.", "",
              "Invocations on this machine (fresh = started with no finished training run, so it trained "
              "everything it needed):", ""]
    lines += [f"- {i['finished']}: {len(i['notebooks'])} notebook(s) ({', '.join(n[:2] for n in i['notebooks'])}), "
              f"{i['wall_min']:.1f} min, commit `{i['commit']}`" + (", fresh" if i["fresh"] else ", reused runs")
              + (f", comparison rows '{i['rows']}'" if i.get("rows", "default") != "default" else "")
              + (f", on {i['cpu']}" if i.get("cpu") else "")
              for i in state["invocations"]]
    for timings in sorted(res.glob("*/*/timings.json")):
        lines += ["", f"## 02 → 04 chain ({timings.parent.relative_to(res)})", "",
                  chain_report(timings.parent, ["02_pretrain_check", "03_static", "04_ema"], budget_s=35 * 60)]
        if POOL_ROW in runs:
            lines.append(f"(`make reproduce` trained these notebooks' runs beforehand in the {POOL_ROW}: "
                         f"{runs[POOL_ROW]['wall_s'] / 60:.1f} min, in the table above.)")
    costs = kdsr_cost_lines() or _previous_section(res / "README.md", KDSR_COST_HEADING)
    if costs:
        lines += ["", KDSR_COST_HEADING, ""] + costs
    default = {n for n, _, _ in rows} | {p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    extra = sorted(p for p in out_dir.glob("*.ipynb") if p.name not in default)
    extra += sorted(out_dir.glob("*/*.ipynb"))  # committed second runs, e.g. cpu-Synth-Defocus/
    if extra:
        lines += ["", "## Further executed notebooks (run by hand with other parameters)", ""]
        lines += [f"- [{p.relative_to(out_dir)}](notebooks/{p.relative_to(out_dir)}): parameters {json.dumps(_parameters(p))}"
                  for p in extra]
    tables = sorted(p.relative_to(res) for p in res.glob("*/*/*.md"))
    found = [(t, _conclusions(res / t)) for t in tables]
    if any(c for _, c in found):
        lines += ["", "## Conclusions (computed by the notebooks from the numbers)"]
        for t, bullets in found:
            if bullets:
                lines += ["", f"[{t}]({t}):", ""] + bullets
    if tables:
        lines += ["", "## Tables", ""] + [f"- [{t}]({t})" for t in tables]
    figures = []
    for nb in sorted(out_dir.glob("*.ipynb")):
        figures += extract_figures(nb, fig_dir)
    if figures:
        lines += ["", "## Figures (extracted from the executed notebooks)", ""]
        lines += [f"- [{f.name}](figures/{f.name})" for f in figures]
    note = unavailable_note(create_metrics(device="cpu"))
    lines += ["", "## Unavailable offline", "", note or "Every metric was available."]
    path = res / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _stopped_cell(executed: Path) -> str:
    """Which cell of an executed copy failed or hung: papermill's failed/running mark, else the
    first cell with an error output (a timed-out cell holds the KeyboardInterrupt it was
    stopped with), else the last cell that started."""
    try:
        cells = json.loads(executed.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return "cell unknown"
    # papermill adds error-marker cells to a failed copy: count the notebook's own cells only
    cells = [c for c in cells if "papermill-error-cell-tag" not in c.get("metadata", {}).get("tags", [])]
    meta = [c.get("metadata", {}).get("papermill", {}) for c in cells]
    marked = [i for i, m in enumerate(meta) if m.get("status") in ("failed", "running")]
    errors = [i for i, c in enumerate(cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    started = [i for i, m in enumerate(meta) if m.get("start_time")]
    i = (marked or errors or started[-1:] or [None])[0]
    if i is None:
        return "cell unknown"
    first = next((ln for ln in "".join(cells[i].get("source", "")).splitlines() if ln.strip()), "")
    return f"cell {i}: {first[:80]}"


def execute(nb: Path, out: Path, timeout_s: float = CELL_TIMEOUT_S, cwd: Path | None = None,
            parameters: dict | None = None) -> str:
    """Run one notebook with papermill (each cell at most ``timeout_s``; ``parameters`` as
    ``papermill -p``): "ok", or "FAILED: ..." naming the error and the cell that failed or hung.
    Never raises: one notebook's failure must not hide the others."""
    import papermill

    try:
        papermill.execute_notebook(str(nb), str(out), cwd=str(cwd or nb.parent), progress_bar=True,
                                   execution_timeout=timeout_s, parameters=parameters or {})
        status = "ok"
    except Exception as e:  # noqa: BLE001 -- reported in the summary, the run goes on
        if hasattr(e, "ename"):  # an exception inside the notebook (PapermillExecutionError)
            what = f"{e.ename}: {e.evalue}"
        else:
            what = f"{type(e).__name__}: " + (str(e).strip().splitlines() or [""])[0]
        status = f"FAILED at {_stopped_cell(out)}: {what[:240]}"
    if Path(out).exists():
        relative_paths(out)
    return status


def relative_paths(executed) -> None:
    """An executed notebook's outputs as committed: this machine's paths written relative to the
    project root (``runs/...``) or to the home folder (``~/.cache/...``)."""
    path = Path(executed)
    nb = json.loads(path.read_text())
    from .runs import shown

    def walk(x):
        if isinstance(x, str):
            return shown(x)
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, dict):  # images stay as they are: base64 may hold any text by chance
            return {k: v if k.startswith("image/") else walk(v) for k, v in x.items()}
        return x

    nb["metadata"] = walk(nb.get("metadata", {}))   # papermill's input and output paths
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            # nbformat allows outputs on code cells only (an older version of this function added them)
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
        elif "outputs" in cell:
            cell["outputs"] = [walk(o) for o in cell["outputs"]]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


def declared_parameters(nb_path, parameters: dict) -> dict:
    """Those of ``parameters`` the notebook declares in its parameters cell (papermill's own
    reading of the cell: names, never executed); 04 takes ``compare_rows``, 07 ``methods``."""
    import papermill

    if not parameters:
        return {}
    declared = papermill.inspect_notebook(str(nb_path))
    return {k: v for k, v in parameters.items() if k in declared}


def chain_jobs(notebooks, parameters: dict | None = None) -> list:
    """Every training run the notebooks would start, at the values they run with: the union of
    their plans (``pdd.experiments.plans``, the functions the notebooks call themselves), so
    the run directories are the same: 02's starting models, 03's static PDD (and naive
    distillation when asked), 04's EMA PDD and its method comparison, 05's ablations, 06's
    adapted models, 07's comparison. Each run once; what others start from first, the tiny
    preset's short runs (05) last, to fill the pool's tail."""
    from .experiments import plans
    from .experiments.pool import dependencies_first

    jobs: list = []
    for nb in notebooks:
        key = Path(nb).name[:2]
        if key in TRAINING_NOTEBOOKS:
            jobs += plans.plan_for(key, parameters).runs
    return dependencies_first(jobs)


# ------------------------------------------------------------------ the estimate before training

def job_phases(job) -> list[tuple[str, int, int]]:
    """(step kind, number of steps, an iteration t of that kind) for each phase of a job (its
    config's ``phases()``: the PDD trainer's D-only warm-up and then its full steps; one phase
    for the other trainers)."""
    return job.config.phases()


def time_step_kinds(jobs, steps: int = 1, parallel: int = 2) -> tuple[dict[str, float], dict[str, str]]:
    """Seconds per step of each step kind in ``jobs``, from ``steps`` timed steps after an
    untimed one, each kind once, on trainers built in a temporary folder deleted afterwards.
    Timed as the pool trains: ``parallel`` at a time, one thread each (so the figures include
    what two jobs side by side cost each other). Returns (seconds by kind, why a kind could not
    be timed)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from .runs import Run
    from .train import seconds_per_step

    mains = {str(j.dir): job_phases(j)[-1][0] for j in jobs if job_phases(j)}
    reps = {}  # the first job of each kind stands for the others
    for j in jobs:
        if job_phases(j):
            reps.setdefault(mains[str(j.dir)], j)
    measured, failed, stand_ins, done = {}, {}, {}, {}
    claimed, lock = set(), threading.Lock()
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    torch.set_num_threads(1)

    def time_kind(main, job, tmp):
        # wait for the kinds whose runs this one starts from: their temporary runs stand in
        for need in job.needs:
            if need in mains and mains[need] != main:
                done[mains[need]].result()
        try:
            # a copy in the temporary folder, one thread, what it starts from replaced by a
            # stand-in of the same architecture: nothing real is read as a prerequisite or written
            cfg = job.config.timing_copy(Path(tmp) / f"kind{list(reps).index(main)}", stand_ins)
            tr = Run(cfg).trainer()
            for kind, _, t in job_phases(job):
                with lock:  # the D-only warm-up is shared by several kinds: time it once
                    mine = kind not in claimed
                    claimed.add(kind)
                if mine:
                    measured[kind] = seconds_per_step(tr, t, steps)
            tr.save()  # weights for the jobs that start from this kind's jobs
            stand_ins.update({out: cfg.out for out, k in mains.items() if k == main})
        except Exception as e:  # noqa: BLE001 -- an estimate: name what was not timed, go on
            failed[main] = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:160]}"

    try:
        with tempfile.TemporaryDirectory(prefix="pdd-estimate-") as tmp, ThreadPoolExecutor(parallel) as pool:
            # submitted in the plan's order (what a job starts from first), so a waiting kind's
            # prerequisite is already running or done: no deadlock
            for main, job in reps.items():
                done[main] = pool.submit(time_kind, main, job, tmp)
            for f in done.values():
                f.result()
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(rng)
    return measured, failed


def job_seconds(jobs, step_seconds: dict[str, float]) -> dict[str, float]:
    """Estimated seconds of each job (by run directory): its phases' steps times their kind's
    seconds per step; NaN where a kind was not timed."""
    return {str(j.dir): sum(n * step_seconds.get(k, float("nan")) for k, n, _ in job_phases(j)) for j in jobs}


def simulate_pool(jobs, seconds: dict[str, float], parallel: int = 2) -> float:
    """Wall seconds of ``pdd.experiments.train_runs`` on ``jobs``: ``parallel`` at a time, in
    the queue's order, each as soon as the runs it starts from (``Run.needs``) are done."""
    queue, running, now = list(jobs), [], 0.0
    while queue or running:
        pending = {str(j.dir) for j in queue} | {out for _, out in running}
        ready = [j for j in queue if not (j.needs & pending)]
        while ready and len(running) < parallel:
            j = ready.pop(0)
            queue.remove(j)
            running.append((now + seconds[str(j.dir)], str(j.dir)))
        if not running:
            raise RuntimeError(f"jobs wait on each other: {[str(j.dir) for j in queue]}")
        running.sort()
        now, _ = running.pop(0)
    return now


def estimate_text(jobs, step_seconds: dict[str, float], failed: dict[str, str] | None = None,
                  parallel: int = 2, timing_s: float | None = None) -> str:
    """The estimate's lines: training (the pool simulated on the jobs' estimated seconds),
    the notebooks' allowance (REF_NOTEBOOKS_S scaled by this machine's step), the whole run."""
    import math

    from .config import cpu_has_native_bf16, cpu_model

    secs = job_seconds(jobs, step_seconds)
    timed = {k: v for k, v in secs.items() if not math.isnan(v)}
    wall = simulate_pool(jobs, {k: (v if not math.isnan(v) else 0.0) for k, v in secs.items()}, parallel)
    if REF_STEP_KIND in step_seconds:
        factor = step_seconds[REF_STEP_KIND] / REF_STEP_S
        why = (f"{REF_NOTEBOOKS_S / 60:.1f} min measured after the pool on a 2-core Xeon with AMX, times "
               f"{factor:.1f}: this machine's {REF_STEP_KIND} step, {step_seconds[REF_STEP_KIND]:.2f} s, against "
               f"{REF_STEP_S:.2f} s there")
    else:
        factor, why = 1.0, (f"{REF_NOTEBOOKS_S / 60:.1f} min measured after the pool on a 2-core Xeon with AMX, "
                            f"not scaled (no {REF_STEP_KIND} step in this plan)")
    notebooks = REF_NOTEBOOKS_S * factor
    lines = [f"estimate on this machine ({cpu_model()}): training about {wall / 60:.0f} min, notebooks about "
             f"{notebooks / 60:.0f} min, whole run about {(wall + notebooks) / 60:.0f} min"
             + ("" if cpu_has_native_bf16() else "; this CPU has no native bf16, so steps run in fp32, several "
                                                 "times slower than on one with AMX (benchmarks/README.md)"),
             f"  training: {len(jobs)} jobs, {sum(timed.values()) / 60:.0f} job-min, {parallel} at a time on one "
             f"thread each (each as soon as what it starts from is done)",
             f"  notebooks: an allowance, {why}",
             "  seconds per step, measured" + (f" in {timing_s:.0f} s" if timing_s is not None else "") + ": "
             + ", ".join(f"{k} {v:.2f}" for k, v in step_seconds.items())]
    for kind, why_not in (failed or {}).items():
        n = sum(1 for j in jobs if job_phases(j) and job_phases(j)[-1][0] == kind)
        lines.append(f"  not timed, left out of the estimate ({n} job(s)): {kind}: {why_not}")
    return "\n".join(lines)


def estimate_run(notebooks, parameters: dict | None = None, parallel: int = 2, steps: int = 1) -> tuple[str, dict]:
    """(the estimate's text, estimated seconds per job) for the pool ``train_chain`` would run."""
    jobs = [j for j in chain_jobs(notebooks, parameters) if not j.finished]
    if not jobs:
        return "estimate: nothing to train (every run of the pool is finished)", {}
    t0 = time.time()
    step_seconds, failed = time_step_kinds(jobs, steps)
    text = estimate_text(jobs, step_seconds, failed, parallel, timing_s=time.time() - t0)
    return text, job_seconds(jobs, step_seconds)


# ------------------------------------------------------------------ the pool

def _done_fraction(job) -> float:
    """How much of a job is done, from its files: 1 when finished, else the last iteration in
    its log.csv (written at each checkpoint) over its iterations."""
    if job.finished:
        return 1.0
    try:
        last = (job.dir / "log.csv").read_text().strip().splitlines()[-1]
        return min(1.0, float(last.split(",")[0]) / max(job.config.iters, 1))
    except (OSError, IndexError, ValueError):
        return 0.0


class PoolProgress:
    """A progress bar over the pool's jobs, each weighted by its estimated seconds (1 each
    without an estimate), with the time left from the average rate; polled from the run
    directories (read-only) by a background thread while ``train_runs`` trains."""

    def __init__(self, jobs, seconds: dict | None = None, every_s: float = 5.0, disable: bool = False):
        import math

        from tqdm.auto import tqdm

        seconds = seconds or {}
        self.jobs, self.every_s = jobs, every_s
        self.weights = [seconds.get(str(j.dir), 1.0) for j in jobs]
        self.weights = [w if w > 0 and not math.isnan(w) else 1.0 for w in self.weights]
        self.bar = tqdm(total=sum(self.weights), desc="training pool", smoothing=0, disable=disable,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix} [{elapsed}<{remaining}]")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def poll(self) -> float:
        fractions = [_done_fraction(j) for j in self.jobs]
        done = sum(w * f for w, f in zip(self.weights, fractions))
        self.bar.set_postfix_str(f"{sum(f == 1.0 for f in fractions)}/{len(self.jobs)} jobs", refresh=False)
        self.bar.update(done - self.bar.n)
        return done

    def _poll(self):
        while not self._stop.wait(self.every_s):
            self.poll()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.poll()
        self.bar.close()


def train_chain(notebooks, parameters: dict | None = None, parallel: int = 2,
                seconds: dict | None = None) -> tuple[str, float]:
    """Train every run of ``chain_jobs`` in one pool, ``parallel`` jobs at a time on one thread
    each, each job as soon as what it starts from is done: no barrier between notebooks, no job
    alone on the machine while work is left, where the notebooks one after the other would
    leave a core idle (03's static PDD alone, 04's KDSR stages one after the other, the tail of
    each pool). The notebooks then find their runs finished (the same run directories) and only
    evaluate. ``seconds``: the estimate's seconds per job, to weight the progress bar. Returns
    (status, seconds): "ok", "nothing to train", or "FAILED: ..." -- never raises: a failed job
    is reported and the notebooks still run (and report it again)."""
    from .experiments.pool import train_runs

    t0 = time.time()
    try:
        jobs = [j for j in chain_jobs(notebooks, parameters) if not j.finished]
        if not jobs:
            return "nothing to train", time.time() - t0
        print(f"   {len(jobs)} training run(s), {parallel} at a time", flush=True)
        with PoolProgress(jobs, seconds):
            train_runs(jobs, parallel=parallel, job_timeout_s=JOB_TIMEOUT_S)
        return "ok", time.time() - t0
    except Exception as e:  # noqa: BLE001 -- reported in the summary, the notebooks still run
        return f"FAILED: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:240]}", time.time() - t0


# ------------------------------------------------------------------ a study (`--study length`)

# A study beside the default chain: its plan (notebook_plan(): the runs its notebook trains, at
# the notebook's own parameters) and its notebook. Hours of training on a 2-core CPU, so never
# part of `make reproduce`.
STUDIES = {"length": "11_length.ipynb"}


def study_plan(name: str):
    """The plan of study ``name`` at its notebook's parameters (PDD_SMOKE=1: smoke size)."""
    from .experiments import length

    return {"length": length.notebook_plan}[name]()


def study_estimate(plan, parallel: int = 2, steps: int = 1) -> tuple[str, dict]:
    """(the estimate's text, estimated seconds per job) of training what is missing of ``plan``,
    wave after wave, from a few timed steps of each kind (``time_step_kinds``)."""
    import math

    from .config import cpu_model

    jobs = [j for j in plan.runs if not j.finished]
    if not jobs:
        return "estimate: nothing to train (every run of the study is finished)", {}
    t0 = time.time()
    step_seconds, failed = time_step_kinds(jobs, steps, parallel)
    secs = job_seconds(jobs, step_seconds)
    known = {k: 0.0 if math.isnan(v) else v for k, v in secs.items()}
    wall = sum(simulate_pool([j for j in wave if not j.finished], known, parallel) for wave in plan.waves)
    lines = [f"estimate on this machine ({cpu_model()}): training about {wall / 60:.0f} min ({wall / 3600:.1f} h) for "
             f"{len(jobs)} jobs ({sum(known.values()) / 3600:.1f} job-hours, {parallel} at a time on one thread each)",
             f"  seconds per step, measured in {time.time() - t0:.0f} s: "
             + ", ".join(f"{k} {v:.2f}" for k, v in step_seconds.items())]
    lines += [f"  not timed, left out of the estimate: {kind}: {why}" for kind, why in failed.items()]
    return "\n".join(lines), secs


def run_study(name: str, estimate: bool = True, parallel: int = 2) -> int:
    """Train study ``name``'s plan in the pool, wave after wave (finished runs are skipped, a
    stopped one resumes from its checkpoint.pt), then execute its notebook into
    results/notebooks/ and record both in results/README.md. No job timeout: a 3,300-iteration
    job is hours on a slow CPU, and a stopped job only costs the iterations since its last snapshot."""
    from .experiments import pool
    from .procenv import job_env

    os.environ.update(job_env())  # the notebook kernel (and the jobs) inherit it
    t_all, fresh = time.time(), not weight_files(ROOT / "runs")
    plan = study_plan(name)
    todo = [j for j in plan.runs if not j.finished]
    print(f"== {name} study: {len(plan.runs)} runs, {len(todo)} left to train", flush=True)
    per_job = None
    if estimate and todo:
        try:
            text, per_job = study_estimate(plan, parallel)
            print(text, flush=True)
        except Exception as e:  # noqa: BLE001 -- an estimate never stops the run
            print(f"estimate failed ({type(e).__name__}: {e}); training anyway", flush=True)
    pool_row = f"{name} study pool (the runs of {STUDIES[name][:2]})"
    t0 = time.time()
    try:
        with PoolProgress(plan.runs, per_job):
            for wave in plan.waves:  # the rows start from the starting models: one wave after the other
                pool.train_runs(wave, parallel=parallel, job_timeout_s=None)
        status = "ok" if todo else "nothing to train"
    except Exception as e:  # noqa: BLE001 -- reported; the notebook still runs (and names what is missing)
        status = f"FAILED: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:240]}"
    rows = [(pool_row, status, time.time() - t0)]
    print(f"   {status} ({rows[-1][2]:.0f} s)", flush=True)
    nb = ROOT / "notebooks" / STUDIES[name]
    out_dir = ROOT / "results" / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print(f"== {nb.name}", flush=True)
    rows.append((nb.name, execute(nb, out_dir / nb.name), time.time() - t0))
    print(f"   {rows[-1][1]} ({rows[-1][2]:.0f} s)", flush=True)
    write_summary(rows, time.time() - t_all, fresh)
    print(build_site(), flush=True)
    return 1 if any(r[1] not in ("ok", "nothing to train") for r in rows) else 0


def build_site(out: Path = ROOT / "site") -> str:
    """`make site` after the notebooks (pdd.site). A failure is reported, never raised: the
    notebooks' results stand without the website."""
    try:
        from .site import build

        pages = build(out)
        return f"Site: {len(pages)} pages in {out}; open {out / 'index.html'}"
    except Exception as e:  # noqa: BLE001 -- reported; the reproduce run's results are unaffected
        return f"Site: build FAILED ({type(e).__name__}: {e}); the results above are unaffected. Retry: make site"


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .experiments.catalogue import ROW_SETS

    ap = argparse.ArgumentParser(prog="python -m pdd.reproduce", description=__doc__.split("\n\n")[0])
    ap.add_argument("notebooks", nargs="*", metavar="NN",
                    help="only the notebooks starting with these, e.g. 02 03 04 or 08 09 10; 'none': only "
                         "regenerate results/README.md (default: 01-07)")
    ap.add_argument("--rows", choices=list(ROW_SETS), default="default",
                    help="the method comparison's rows (04, 07): 'default' every row; 'pdd' PDD's own rows (the "
                         "controls, naive distillation, static and EMA PDD; no KDSR, no HR-aware fine-tuning: "
                         "about a third less training); 'all' also the HR-aware ablations")
    ap.add_argument("--no-estimate", action="store_true",
                    help="skip the estimate before training (a few timed steps of each kind of job, under a minute)")
    ap.add_argument("--study", choices=list(STUDIES),
                    help="instead of the notebooks: train a study's runs (resuming where it stopped) and execute "
                         "its notebook; 'length': static/EMA PDD and their controls under the fair set-up (GAN-"
                         "staged starting models, 300 D-only warm-up) to 3,000 iterations after the warm-up, 2 seeds "
                         "(notebooks/11_length.ipynb; hours on a 2-core CPU)")
    args = ap.parse_args(argv if argv is not None else [])
    if args.study:
        if args.notebooks or args.rows != "default":
            ap.error("--study runs its own plan and notebook: give no notebooks and no --rows")
        return run_study(args.study, estimate=not args.no_estimate)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.notebooks == ["none"]:  # `python -m pdd.reproduce none`: only regenerate results/README.md
        notebooks = []
    elif args.notebooks:  # e.g. `python -m pdd.reproduce 02 03 04` or `... 08 09 10`: only these notebooks
        unknown = [a for a in args.notebooks if not any(nb.name.startswith(a) for nb in notebooks)]
        if unknown:
            raise ValueError(f"no notebook starts with {', '.join(map(repr, unknown))}; notebooks: "
                             f"{', '.join(nb.stem for nb in notebooks)} (or 'none': only results/README.md)")
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(a) for a in args.notebooks)]
    else:  # the PDD chain on the embedded default; 08-10 (own photos, the seed papers' methods) on request
        notebooks = [nb for nb in notebooks if nb.name[:2] in DEFAULT_CHAIN]
    # the rows go to the notebooks' parameters that choose them (04: compare_rows, 07: methods)
    parameters = {} if args.rows == "default" else {"compare_rows": args.rows, "methods": args.rows}
    out_dir = ROOT / "results" / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    from .procenv import job_env
    os.environ.update(job_env())  # the notebook kernels (and the jobs they start) inherit it
    rows, t_all, failed = [], time.time(), 0
    fresh = not weight_files(ROOT / "runs")
    if not notebooks:
        print("No notebooks yet: nothing to reproduce.")
    if any(nb.name[:2] in TRAINING_NOTEBOOKS for nb in notebooks):
        per_job = None
        if not args.no_estimate:
            try:
                text, per_job = estimate_run(notebooks, parameters)
                print(text, flush=True)
            except Exception as e:  # noqa: BLE001 -- an estimate never stops the run
                print(f"estimate failed ({type(e).__name__}: {e}); training anyway", flush=True)
        print(f"== {POOL_ROW}", flush=True)
        status, seconds = train_chain(notebooks, parameters, seconds=per_job)
        failed += status.startswith("FAILED")
        rows.append((POOL_ROW, status, seconds))
        print(f"   {status} ({seconds:.0f} s)", flush=True)
    for nb in notebooks:
        t0 = time.time()
        print(f"== {nb.name}", flush=True)
        status = execute(nb, out_dir / nb.name, parameters=declared_parameters(nb, parameters))
        failed += status != "ok"
        rows.append((nb.name, status, time.time() - t0))
        print(f"   {status} ({rows[-1][2]:.0f} s)", flush=True)
    total = time.time() - t_all
    write_summary(rows, total, fresh, rows_set=args.rows)
    print(f"Ran {len(rows)} notebook(s) in {total / 60:.1f} min; summary in results/README.md")
    print(build_site(), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m pdd.reproduce"))
