"""The length study (issue 25, item 3; pdd.experiments.length) at tiny size: its runs and their
snapshots, apart from the comparison's; planning touches nothing; a stopped run resumes to the
uninterrupted one's weights; gains, verdict, figure and files on per-image scores with a known
answer; `python -m pdd.reproduce --study length` trains the plan and executes notebook 11 only."""
import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import pdd
from pdd import reproduce, runs
from pdd.experiments import catalogue as C
from pdd.experiments import length as L
from pdd.experiments import plans, pool
from pdd.runs import Run

ROOT = pdd.ROOT
NOTEBOOK = ROOT / "notebooks" / L.NOTEBOOK


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------ the plan

def test_the_plans_runs_iterations_and_checkpoint_snapshots(tmp_path):
    p = L.length_plan("tiny", "Synth-ISO", (0, 1), tmp_path, pretrain_iters=12)
    # the starting models under the fair set-up: the pixel stage, then a GAN stage on it
    assert [r.dir.name for r in p.waves[0]] == [
        f"pretrained-{role}-12it{stage}_s{s}" for stage in ("", "-gan4it") for s in (0, 1)
        for role in ("generalist", "specialist")]
    gan_g0 = p.waves[0][4]
    assert gan_g0.needs == {str(p.waves[0][0].dir)} and gan_g0.config.init_s == str(p.waves[0][0].final)
    rows = L.study_runs(p)
    assert [r.dir.name for r in rows] == [f"{n}-fair-16it_s{s}" for s in (0, 1) for n in
                                          ("static-pdd", "ema-pdd", "finetune-control", "specialist-finetune-control")]
    assert p.waves[1] == rows and p["EMA PDD s1"].row == "EMA PDD"
    for r in rows:
        assert r.config.iters == 16 and r.dir.parent == tmp_path / "tiny" / "Synth-ISO"
        assert r.config.warmup_d_iters == 4   # checkpoints 8, 12, 16 = 4 warm-up + 4, 8, 12 of training
        assert all(i % r.config.ckpt_every == 0 for i in L.CHECKPOINTS["tiny"])
        assert r.final == r.snapshot(16)
    # static PDD adapts the GAN-staged specialist; EMA PDD and the fine-tune control the GAN-staged generalist
    assert "pretrained-specialist-12it-gan4it_s0" in p["static PDD s0"].config.init_s
    assert "pretrained-generalist-12it-gan4it_s0" in p["EMA PDD s0"].config.init_s
    # scratch: 300 warm-up + 3,000 iterations, scored at 600, 1,300 and 3,300; D of 32 features
    rows = L.study_runs(L.length_plan("scratch", "Synth-ISO", (0, 1), tmp_path))
    assert {r.config.iters for r in rows} == {3300} and rows[0].dir.name == "static-pdd-fair-3300it_s0"
    assert {(r.config.warmup_d_iters, r.config.disc_feat) for r in rows} == {(300, 32)}
    # D's start as R3 decided (catalogue.FAIR_D_FROM_GENERALIST): the generalist's GAN-stage D of the same seed
    for r in rows:
        expected = (str(tmp_path / "scratch" / "Synth-ISO" / f"pretrained-generalist-gan600it_s{r.seed}" / "weights" /
                        "net_d_000600.pth") if C.FAIR_D_FROM_GENERALIST else None)
        assert r.config.init_d == expected
    assert all(i % r.config.ckpt_every == 0 for r in rows for i in (600, 1300, 3300))
    # cpu: no specialist fine-tune control; static PDD adapts the study's own fine-tune control
    p = L.length_plan("cpu", "Synth-Defocus", (0,), tmp_path)
    assert [r.row for r in L.study_runs(p)] == ["static PDD", "EMA PDD", "finetune control"]
    assert p["static PDD s0"].needs == {str(p["finetune control s0"].dir)}
    assert p["finetune control s0"].dir.name == "finetune-control-fair-3300it_s0"
    assert L.study_checkpoints("scratch", [1300, 600, 3300]) == (600, 1300, 3300)
    with pytest.raises(ValueError, match="positive"):
        L.study_checkpoints("tiny", [0, 4])
    with pytest.raises(ValueError, match="warm-up"):   # a checkpoint inside the D-only warm-up
        L.length_plan("tiny", "Synth-ISO", (0,), tmp_path, checkpoints=(4, 8))


@pytest.mark.parametrize("smoke", [False, True])
def test_the_study_shares_no_run_directory_with_the_comparison_or_make_reproduce(smoke, monkeypatch):
    """The study's rows never resume or add snapshots to a run the comparison or `make reproduce`
    evaluates; the starting models are the comparison's own (trained once)."""
    monkeypatch.setenv("PDD_SMOKE", "1" if smoke else "0")
    study = L.notebook_plan(smoke=smoke)
    v = L.notebook_defaults(smoke)
    rows = {str(r.dir) for r in L.study_runs(study)}
    notebooks = sorted((ROOT / "notebooks").glob("0[2-7]_*.ipynb"))
    for params in ({}, {"compare_rows": "all", "methods": "all"}):
        chain = {str(j.dir) for j in reproduce.chain_jobs(notebooks, params)}
        assert not rows & chain
        pixel = {str(j.dir) for j in study.waves[0] if j.seed == 0 and "-gan" not in j.dir.name}
        assert pixel <= chain   # the same pixel-stage starting models; the GAN stages are the study's own
        assert not {str(j.dir) for j in study.waves[0] if "-gan" in j.dir.name} & chain
    starts, jobs, comparison = C.training_plan(v["preset"], v["domain"], v["seeds"], "all",
                                               plans.runs_root(None, smoke), None, None, v["pretrain_iters"])
    assert not rows & {str(j.dir) for j in starts + jobs + comparison}
    assert [str(j.dir) for j in study.waves[0] if "-gan" not in j.dir.name] == [
        str(j.dir) for j in starts if j.dir.name.startswith("pretrained")]


def test_planning_the_study_touches_no_file_and_trains_nothing(tmp_path, monkeypatch):
    from pdd import train

    def refuse(*a, **k):
        raise AssertionError("planning trained something")

    monkeypatch.setattr(train.LoopTrainer, "__init__", refuse)
    monkeypatch.setattr(pool, "train_runs", refuse)
    repo_runs = _files(ROOT / "runs")
    for preset in ("tiny", "scratch", "cpu"):
        p = L.length_plan(preset, "Synth-ISO", (0, 1), tmp_path / "runs")
        assert L.describe(p, L.study_checkpoints(preset)) and not any(r.finished for r in p.runs)
    for smoke in (False, True):
        assert L.notebook_plan({"runs_dir": str(tmp_path / "runs")}, smoke).runs
    assert _files(tmp_path) == [] and _files(ROOT / "runs") == repo_runs


def test_notebook_11s_parameters_cell_is_notebook_defaults(monkeypatch):
    """reproduce --study length trains notebook_plan(): the plan at notebook 11's own parameters."""
    nb = json.loads(NOTEBOOK.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    assert nb["cells"][0]["cell_type"] == "markdown"  # narrative first
    for smoke in (False, True):
        monkeypatch.setenv("PDD_SMOKE", "1" if smoke else "0")
        ns: dict = {}
        exec(compile("".join(cell["source"]), NOTEBOOK.name, "exec"), ns)  # noqa: S102 -- the test's own check
        assert {k: v for k, v in ns.items() if not k.startswith("_") and k != "os"} == L.notebook_defaults(smoke)


# ------------------------------------------------------------------ resume, and the scores of a trained row

def test_a_stopped_study_run_resumes_to_the_uninterrupted_runs_weights_and_is_scored_per_checkpoint(tmp_path):
    p = L.length_plan("tiny", "Synth-ISO", (0,), tmp_path / "runs", pretrain_iters=2, checkpoints=(6, 8, 10))
    for start in p.waves[0]:
        start.config.threads = 1
    pool.train_here(p.waves[0], progress=False)
    run = p["EMA PDD s0"]
    run.config.threads = 1
    straight = Run(copy.deepcopy(run.config), row=run.row)
    straight.config.out = str(tmp_path / "straight" / run.dir.name)
    straight.trainer().fit()
    run.trainer().fit(iters=7)                    # stopped after iteration 7 (the warm-up is 1-4) ...
    assert not run.finished
    # an interim look at the stopped run: the checkpoints it has reached, scored alone (not its snapshot at 7)
    assert L.reached_checkpoints([run], (6, 8, 10)) == (6,) and L.progress_line([run]) == "EMA PDD s0 7/10"
    from pdd import data, evaluate

    dom = data.open_domain("Synth-ISO")
    sets = {"target": dom.test_pairs[:1], "source": dom.source_test_pairs[:1]}
    interim = L.evaluate_checkpoints([run], sets, evaluate.create_metrics(("psnr",)), (6,), tmp_path / "runs",
                                     pretrain_iters=2, workers=1, progress=False)
    assert interim.groupby(["method", "iteration"]).size().to_dict() == {("EMA PDD", 6): 2, ("generalist", 0): 2,
                                                                         ("specialist", 0): 2}
    pool.train_runs([run], parallel=1, threads=1, progress=False)   # ... and resumed by the pool
    assert run.finished and (run.dir / "checkpoint.pt").exists()
    for i in (6, 8, 10):
        a, b = (torch.load(r.snapshot(i), map_location="cpu")["params_ema"] for r in (run, straight))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), i

    with pytest.raises(FileNotFoundError, match=r"static PDD s0 at 6.*pdd.reproduce --study length"):
        L.evaluate_checkpoints(L.study_runs(p), {}, {}, (6, 8, 10), tmp_path / "runs")
    per_image = L.evaluate_checkpoints([run], sets, evaluate.create_metrics(("psnr",)), (6, 8, 10), tmp_path / "runs",
                                       pretrain_iters=2, workers=1, progress=False)
    got = per_image.groupby(["method", "seed", "iteration"]).size().to_dict()
    assert got == {("EMA PDD", 0, 6): 2, ("EMA PDD", 0, 8): 2, ("EMA PDD", 0, 10): 2, ("generalist", 0, 0): 2,
                   ("specialist", 0, 0): 2}
    # the starting models scored are the GAN-staged ones the study's rows start from
    cached = {p.parents[1].name for p in (tmp_path / "runs").rglob("eval/*.csv")}
    assert {"pretrained-generalist-2it-gan4it_s0", "pretrained-specialist-2it-gan4it_s0"} <= cached
    assert (run.dir / "eval").is_dir() and per_image["psnr"].notna().all()


# ------------------------------------------------------------------ gains and verdict with a known answer

def _per_image(offsets, names=10, seeds=(0, 1), its=(300, 1000, 3000)) -> pd.DataFrame:
    """Per-image PSNR: the generalist at iteration 0 and each method at ``offsets[method](k)`` dB
    above it at the k-th checkpoint, the same on every image, seed and test set."""
    rng = np.random.default_rng(0)
    base = {(s, f"img{i}", t): 25 + rng.normal() for s in seeds for i in range(names) for t in ("target", "source")}
    rows = [dict(method="generalist", seed=s, iteration=0, name=n, **{"test set": t, "psnr": v, "psnr_cc": v})
            for (s, n, t), v in base.items()]
    for method, off in offsets.items():
        rows += [dict(method=method, seed=s, iteration=it, name=n,
                      **{"test set": t, "psnr": v + off(k), "psnr_cc": v + off(k)})
                 for k, it in enumerate(its) for (s, n, t), v in base.items()]
    return pd.DataFrame(rows)


def test_gains_by_length_and_the_verdict_on_a_known_answer(tmp_path):
    per_image = _per_image({"EMA PDD": lambda k: 1.0, "finetune control": lambda k: 0.5,
                            "static PDD": lambda k: -1.0, "specialist finetune control": lambda k: -0.5})
    gains = L.gains_by_length(per_image, n_boot=200)
    ema = gains[(gains.method == "EMA PDD") & (gains.metric == "psnr") & (gains["test set"] == "target")]
    assert list(ema.iteration) == [300, 1000, 3000] and (ema.control == "finetune control").all()
    assert np.allclose(ema["vs generalist"], 1.0) and np.allclose(ema["vs control"], 0.5)
    assert (ema["vs generalist verdict"] == "better").all() and (ema["vs control verdict"] == "better").all()
    static = gains[(gains.method == "static PDD") & (gains.metric == "psnr")]
    assert (static.control == "specialist finetune control").all() and np.allclose(static["vs control"], -0.5)
    assert (static["vs control verdict"] == "worse").all()
    control = gains[gains.method == "finetune control"]
    assert control["vs control"].isna().all() and np.allclose(control["vs generalist"], 0.5)

    lines = L.length_verdict(gains, tmp_path, "Synth-ISO", "tiny")
    assert lines[0].startswith("PREMISE NOT CHECKED") and "GAN gate" in lines[1]
    at300 = next(line for line in lines if line.startswith("At 300 iterations"))
    assert ("EMA PDD +1.00 dB [+1.00, +1.00] vs the generalist (better), +0.50 dB [+0.50, +0.50] vs its control, "
            "the finetune control (better)") in at300
    assert "static PDD -1.00 dB [-1.00, -1.00] vs the generalist (worse)" in at300
    trend = next(line for line in lines if line.startswith("Trend of EMA PDD"))
    assert "no monotone trend" in trend and "A trend from 3 points is weak evidence" in trend
    assert not any(line.startswith("Colour drift") for line in lines)

    # the gain over the control grows with length: the paper's direction
    growing = _per_image({"EMA PDD": lambda k: 0.5 + 0.25 * k, "finetune control": lambda k: 0.5})
    lines = L.length_verdict(L.gains_by_length(growing, n_boot=200), tmp_path)
    trend = next(line for line in lines if line.startswith("Trend of EMA PDD"))
    assert "+0.00 dB, +0.25 dB, +0.50 dB; it increases with length, so it points toward the paper's direction" in trend


def test_the_figure_and_the_written_study(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    per_image = _per_image({"EMA PDD": lambda k: 1.0, "finetune control": lambda k: 0.5,
                            "static PDD": lambda k: -1.0, "specialist finetune control": lambda k: -0.5})
    per_image.loc[per_image.method == "static PDD", "psnr_cc"] += 0.8   # a colour shift the verdict must name
    gains = L.gains_by_length(per_image, n_boot=100)
    fig = L.plot_gains_by_length(gains)
    target, source = fig.axes[:2]
    assert target.get_xscale() == "log" and list(target.get_xticks()) == [300, 1000, 3000]
    labels = target.get_legend_handles_labels()[1] + source.get_legend_handles_labels()[1]
    assert "EMA PDD" in labels and "finetune control (control of EMA PDD)" in labels
    assert "specialist finetune control (control of static PDD)" in labels
    lines = L.length_verdict(gains, tmp_path)
    assert any(line.startswith("Colour drift (target)") and "static PDD at 300" in line for line in lines)
    md = L.write_length_study(tmp_path / "out", gains, lines, "scratch", "Synth-ISO", [0, 1], None, 100, fig=fig)
    assert sorted(p.name for p in md.parent.iterdir()) == ["length_study.csv", "length_study.md", "length_study.png"]
    text = md.read_text()
    assert "## Verdict (computed from the numbers)" in text and "checkpoints [600, 1300, 3300]" in text
    assert "'fair' set-up" in text and "32-feature D (deviation" in text
    assert "commit " in text and "CPU " in text and reproduce._conclusions(md)
    assert len(pd.read_csv(md.with_suffix(".csv"))) == len(gains)


def test_an_interim_look_names_itself_where_the_rows_stand_and_draws_no_trend_from_one_length(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    rows = L.study_runs(L.length_plan("scratch", "Synth-ISO", (0, 1), tmp_path / "runs"))
    for r in rows[:2]:   # two rows trained past the first checkpoint, the others just to it
        runs.snapshot_path(r.dir, 900).parent.mkdir(parents=True)
        runs.snapshot_path(r.dir, 900).write_bytes(b"g")
    assert L.reached_checkpoints(rows) == ()
    for r in rows:
        runs.snapshot_path(r.dir, 600).parent.mkdir(parents=True, exist_ok=True)
        runs.snapshot_path(r.dir, 600).write_bytes(b"g")
    assert L.reached_checkpoints(rows) == (600,)
    assert L.progress_line(rows).startswith("static PDD s0 900/3,300; EMA PDD s0 900/3,300; finetune control s0 "
                                            "600/3,300")
    per_image = _per_image({"EMA PDD": lambda k: 1.0, "finetune control": lambda k: 0.5}, its=(600,))
    gains = L.gains_by_length(per_image, n_boot=100)
    lines = L.length_verdict(gains, tmp_path)
    assert any(line.startswith("At 600 iterations") for line in lines)
    assert not any(line.startswith("Trend of") for line in lines)   # one length has no trend
    assert L.colour_shift_figure(per_image, lines) is None   # no drift named: no colour figure
    per_image = per_image.assign(shift_r=1.0, shift_g=-2.0, shift_b=0.5)
    lines.append("Colour drift (target): ...")
    md = L.write_length_study(tmp_path / "out", gains, lines, "scratch", "Synth-ISO", [0, 1], None, 100, rows,
                              L.plot_gains_by_length(gains), reached=(600,),
                              colour_fig=L.colour_shift_figure(per_image, lines),
                              unavailable="Unavailable metrics (NaN in the tables): lpips (no weights offline)")
    assert sorted(p.name for p in md.parent.iterdir()) == [f"length_study_interim{x}" for x in
                                                          (".csv", ".md", ".png", "_colour.png")]
    assert "![mean colour shift per channel](length_study_interim_colour.png)" in md.read_text()
    text = md.read_text()
    assert text.startswith("# PDD over training length (Synth-ISO, scratch): an interim look\n\n**Interim: the study "
                           "is still training.** Scored at 600 iterations, the checkpoints every row has reached; the "
                           "rows stand at: static PDD s0 900/3,300;")
    assert "trained to 3300 iterations and scored at 600 (the schedule" in text
    assert "checkpoints [600] of [600, 1300, 3300]" in text
    assert "- static PDD s0: static-pdd-fair-3300it_s0, 3300 iterations planned\n" in text   # not yet trained
    assert "\nUnavailable metrics (NaN in the tables): lpips (no weights offline)\n" in text   # named, not dropped


def test_the_interim_command_refuses_before_the_first_checkpoint_and_after_the_last(tmp_path, capsys):
    rows = L.study_runs(L.length_plan("scratch", "Synth-ISO", (0,), tmp_path / "runs"))
    assert L.main(["--seeds", "0", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "no checkpoint reached by every row yet (600, 1300, 3300)" in capsys.readouterr().err
    for r in rows:
        runs.snapshot_path(r.dir, 3300).parent.mkdir(parents=True)
        runs.snapshot_path(r.dir, 3300).write_bytes(b"g")
    assert L.main(["--seeds", "0", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert "the study has finished: its result is notebook 11's" in capsys.readouterr().out


# ------------------------------------------------------------------ python -m pdd.reproduce --study length

def test_reproduce_study_length_trains_the_plan_in_the_pool_and_executes_notebook_11_only(monkeypatch):
    monkeypatch.setenv("PDD_SMOKE", "1")
    calls = {"waves": [], "executed": []}

    def train_runs(jobs, parallel=2, job_timeout_s=-1, **kw):
        calls["waves"].append([str(j.dir) for j in jobs])
        calls["timeout"] = job_timeout_s
        return 0.0

    monkeypatch.setattr(pool, "train_runs", train_runs)
    monkeypatch.setattr(reproduce, "execute", lambda nb, out, **kw: calls["executed"].append(nb.name) or "ok")
    monkeypatch.setattr(reproduce, "write_summary", lambda rows, total, fresh: calls.update(rows=rows))
    monkeypatch.setattr(reproduce, "build_site", lambda: "site skipped")
    monkeypatch.setattr(reproduce, "estimate_run", lambda *a, **k: pytest.fail("the default chain's estimate"))
    assert reproduce.main(["--study", "length", "--no-estimate"]) == 0
    plan = L.notebook_plan(smoke=True)
    assert calls["waves"] == [[str(j.dir) for j in wave] for wave in plan.waves] and calls["timeout"] is None
    assert calls["executed"] == ["11_length.ipynb"]
    assert [r[0] for r in calls["rows"]] == ["length study pool (the runs of 11)", "11_length.ipynb"]
    with pytest.raises(SystemExit):
        reproduce.main(["--study", "length", "04"])


# ------------------------------------------------------------------ on a test pool, CIs over photos

def test_the_study_on_a_test_pool_resamples_photos_and_writes_its_own_files(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    pool = "mate-backgrounds"
    sides = (f"target · {pool}", f"source · {pool}")
    # two photos: EMA PDD gains +1 dB on photo A's 4 tiles and -1 dB on photo B's 4 tiles, every seed
    per_image = _per_image({"EMA PDD": lambda k: 0.0, "finetune control": lambda k: 0.0}, names=8)
    per_image["name"] = per_image["name"].map(lambda n: f"{'A' if int(n[3:]) < 4 else 'B'}_t{n[3:]}")
    a = per_image.name.str.startswith("A") & (per_image.method == "EMA PDD")
    per_image.loc[a, ["psnr", "psnr_cc"]] += 1.0
    per_image.loc[per_image.name.str.startswith("B") & (per_image.method == "EMA PDD"), ["psnr", "psnr_cc"]] -= 1.0
    per_image["test set"] = per_image["test set"].map({"target": sides[0], "source": sides[1]})
    start = _per_image({}, names=8)
    start = pd.concat([start, start.assign(method="specialist")])
    start["name"] = start["name"].map(lambda n: f"{'A' if int(n[3:]) < 4 else 'B'}_t{n[3:]}")
    start.loc[(start.method == "specialist") & (start["test set"] == "target"), "psnr"] -= 1.0
    start.loc[(start.method == "specialist") & (start["test set"] == "source"), "psnr"] += 1.0
    start["test set"] = start["test set"].map({"target": sides[0], "source": sides[1]})
    both = pd.concat([per_image, start[start.method == "specialist"]], ignore_index=True)

    gains = L.gains_by_length(both, n_boot=400, cluster="photo")
    ema = gains[(gains.method == "EMA PDD") & (gains.metric == "psnr") & (gains["test set"] == sides[0])].iloc[0]
    # by photo: the resampled means are +1 (A twice), 0 (A and B) or -1 (B twice): the CI is [-1, +1]
    assert ema["vs generalist"] == pytest.approx(0.0, abs=1e-9)
    assert ema["vs generalist lo"] == pytest.approx(-1.0) and ema["vs generalist hi"] == pytest.approx(1.0)
    by_tile = L.gains_by_length(both, n_boot=400)
    t = by_tile[(by_tile.method == "EMA PDD") & (by_tile.metric == "psnr") & (by_tile["test set"] == sides[0])].iloc[0]
    assert t["vs generalist hi"] - t["vs generalist lo"] < 2.0

    lines = L.length_verdict(gains, tmp_path, test_set=sides[0], source=sides[1], per_image=both, n_boot=400,
                             cluster="photo")
    assert "resampling whole photos" in lines[0] and "HOLDS with margin" in lines[0]
    assert any(line.startswith(f"At 300 iterations ({sides[0]} PSNR") for line in lines)
    fig = L.plot_gains_by_length(gains, sides=sides)
    assert fig.axes[0].get_title().startswith(sides[0] + ": the domain's own LR")
    md = L.write_length_study(tmp_path, gains, lines, "scratch", "Synth-ISO", [0, 1], None, 400, fig=fig, pool=pool)
    assert md.name == f"length_study_{pool}.md" and md.with_suffix(".png").exists()
    assert f"on the test pool {pool}" in md.read_text() and not (tmp_path / "length_study.md").exists()


def test_the_study_is_not_scored_on_a_pool_that_is_not_installed(tmp_path, monkeypatch, capsys):
    import pdd.data as D

    monkeypatch.setitem(D.TEST_POOLS, "mate-backgrounds", str(tmp_path / "absent"))
    assert L.pool_scores([], "mate-backgrounds", "Synth-ISO", {}, None, tmp_path, data_root=tmp_path) is None
    assert "apt install mate-backgrounds" in capsys.readouterr().out
