"""pdd.reproduce's bookkeeping (notebook clocks, the chain report, figure extraction) and
the figure helpers of pdd.viz that the notebooks call."""
import base64
import io
import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from pdd import reproduce, viz

matplotlib.use("Agg")


def _snapshot(run_dir, it):
    w = run_dir / "weights"
    w.mkdir(parents=True, exist_ok=True)
    (w / f"net_g_{it:06d}.pth").write_bytes(b"x")


def test_notebook_clock_tells_fresh_from_reused_and_chain_sums(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    _snapshot(runs / "cpu" / "D" / "old_s0", 300)  # a finished run from before
    clock = reproduce.NotebookClock(out, "02_pretrain_check", runs)
    _snapshot(runs / "cpu" / "D" / "new_s0", 300)  # trained by "02"
    e = clock.stop()
    assert e["fresh"] and e["new_weight_snapshots"] == 1
    clock = reproduce.NotebookClock(out, "03_static", runs)
    assert not clock.stop()["fresh"]  # nothing new: reused
    assert "no timing yet for 04_ema" in reproduce.chain_report(out, ["02_pretrain_check", "03_static", "04_ema"])

    timings = json.loads((out / "timings.json").read_text())
    timings["02_pretrain_check"]["wall_s"], timings["03_static"]["wall_s"] = 600.0, 900.0
    (out / "timings.json").write_text(json.dumps(timings))
    text = reproduce.chain_report(out, ["02_pretrain_check", "03_static"], budget_s=35 * 60)
    assert "600 s + 03_static 900 s = 1500 s (25.0 min)" in text and "within" in text
    assert "Not a fresh chain: 03_static reused" in text
    assert "OVER" in reproduce.chain_report(out, ["02_pretrain_check", "03_static"], budget_s=1000)


def test_extract_figures_writes_every_png_output(tmp_path):
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    plt.figure(figsize=(1, 1)).savefig(buf, format="png")
    png = base64.b64encode(buf.getvalue()).decode()
    nb = {"cells": [{"cell_type": "code", "outputs": [{"data": {"image/png": png, "text/plain": "fig"}}]},
                    {"cell_type": "markdown"},
                    {"cell_type": "code", "outputs": [{"name": "stdout", "text": "x"},
                                                      {"data": {"image/png": png}}]}]}
    path = tmp_path / "07_x.ipynb"
    path.write_text(json.dumps(nb))
    figs = reproduce.extract_figures(path, tmp_path)
    assert [f.name for f in figs] == ["07_x_1.png", "07_x_2.png"]
    assert figs[0].read_bytes() == buf.getvalue()


def test_crop_grid_crops_hr_and_matching_lr_and_rejects_bad_crops():
    hr = np.zeros((64, 64, 3), np.uint8)
    hr[16:32, 8:24] = 255  # the HR crop (16, 8, 16) is all white
    lr = np.zeros((16, 16, 3), np.uint8)
    lr[4:8, 2:6] = 255  # the same place at x4
    fig = viz.crop_grid({"HR": hr, "LR": lr}, crop=(16, 8, 16))
    shown = [ax.images[0].get_array() for ax in fig.axes[1:]]
    assert all(s.shape[:2] == (16, 16) and s.min() == 255 for s in shown)
    with pytest.raises(ValueError, match="does not fit"):
        viz.crop_grid({"HR": hr}, crop=(60, 0, 16))


@pytest.mark.parametrize("side", [16, 64, 250])
def test_crop_grid_never_downscales_a_crop(side):
    """Each crop panel's axes span at least side x side figure pixels, in whole multiples."""
    hr = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    fig = viz.crop_grid({"A": hr, "B": hr}, crop=(0, 0, side))
    w_px, h_px = fig.get_size_inches() * fig.dpi
    for ax in fig.axes[1:]:
        box = ax.get_position()
        ax_w, ax_h = box.width * w_px, box.height * h_px
        assert round(ax_w, 6) >= side and round(ax_h, 6) >= side
        assert ax_w / side == pytest.approx(round(ax_w / side)) == fig.pdd_zoom


def test_plot_improvement_draws_no_bar_for_an_unavailable_metric():
    rows = [{"model": "EMA PDD", "metric": m, "our domain": "Synth", "ours Δ": o, "paper domain": d, "paper Δ": p}
            for m, o in (("psnr", 0.6), ("lpips", math.nan)) for d, p in (("Canon", 1.2), ("Nikon", 0.97))]
    ax = viz.plot_improvement(pd.DataFrame(rows), "psnr")
    assert sorted(round(b.get_height(), 2) for b in ax.patches) == [0.6, 0.97, 1.2]
    ax = viz.plot_improvement(pd.DataFrame(rows), "lpips")
    assert [round(b.get_height(), 2) for b in ax.patches] == [1.2, 0.97, 0.0]
    assert any("unavailable" in t.get_text() for t in ax.get_legend().get_texts())


def test_conclusions_are_lifted_from_the_computed_section_only(tmp_path):
    md = tmp_path / "t.md"
    md.write_text("# T\n\n- not this\n\n## Conclusion (computed)\n\n- a -> worse\n- b -> no effect\n\n"
                  "Produced by: x\n\n## Other\n\n- not this either\n")
    assert reproduce._conclusions(md) == ["- a -> worse", "- b -> no effect"]
    md.write_text("# T\n\n- no computed section\n")
    assert reproduce._conclusions(md) == []


def test_results_readme_leads_with_the_premise_and_the_claim_per_setting(tmp_path):
    import json
    from pdd.reproduce import lead_lines
    for preset, holds, verdict in (("scratch", True, ["EMA PDD: the claim ..."]), ("cpu", False, ["static PDD: ..."])):
        d = tmp_path / "Dom" / preset
        d.mkdir(parents=True)
        (d / "premise.json").write_text(json.dumps({"holds": holds, "sentence": f"Premise {preset} sentence."}))
        (d / "methods_seeds0.json").write_text(json.dumps({"verdict": ["Premise holds ...", "old"]}))
        (d / "methods_seeds0-1.json").write_text(json.dumps({"verdict": ["PREMISE FAILS ...", *verdict]}))
    lines = lead_lines(tmp_path)
    text = "\n".join(lines)
    assert lines[0].startswith("## The premise")
    assert text.index("`scratch`") < text.index("`cpu`")            # the premise setting first
    assert "Premise scratch sentence." in text and "EMA PDD: the claim ..." in text
    assert "old" not in text and "methods_seeds0-1.md" in text        # the comparison with the most seeds
    assert "PREMISE FAILS ..." not in text                             # the gate is stated once, from premise.json


def _notebook(path, cells):
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
                     "source": src} for i, src in enumerate(cells)],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


def test_a_hung_cell_is_stopped_and_named_and_a_failing_one_too(tmp_path):
    hung = _notebook(tmp_path / "hung.ipynb", ["x = 1", "import time\ntime.sleep(120)", "print('never')"])
    status = reproduce.execute(hung, tmp_path / "hung_out.ipynb", timeout_s=5)
    assert status.startswith("FAILED at cell 1: import time") and "Timeout" in status
    bad = _notebook(tmp_path / "bad.ipynb", ["x = 1", "y = 2", "raise ValueError('bad input')"])
    status = reproduce.execute(bad, tmp_path / "bad_out.ipynb", timeout_s=60)
    assert status.startswith("FAILED at cell 2: raise ValueError") and "bad input" in status
    ok = _notebook(tmp_path / "ok.ipynb", ["x = 1"])
    assert reproduce.execute(ok, tmp_path / "ok_out.ipynb", timeout_s=60) == "ok"


def test_slider_views_put_a_png_on_the_output_widget_and_replace_it_on_a_move():
    """No output is captured inside the Output widget (the nbclient hang): the figure is the
    widget's state, one PNG, replaced when a slider moves."""
    hr = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    box = viz.interactive_crops({"HR": hr, "LR": hr[::4, ::4]}, side=16)
    (ys, xs), out = box.children[0].children, box.children[1]
    assert len(out.outputs) == 1 and "image/png" in out.outputs[0]["data"]
    first = out.outputs[0]["data"]["image/png"]
    ys.value = 0
    assert len(out.outputs) == 1 and out.outputs[0]["data"]["image/png"] != first
    box = viz.browse_images([("a", hr), ("b", hr[::2, ::2])])
    (slider,), out = box.children[0].children, box.children[1]
    slider.value = 1
    assert len(out.outputs) == 1 and "image/png" in out.outputs[0]["data"]


def test_two_headless_runs_of_a_widget_notebook_at_once_both_finish(tmp_path):
    """Two papermill runs started together (as users run one per domain), each with the crop
    sliders and the image browser: both finish, and each stores the first view."""
    import threading

    cells = ["import numpy as np\nfrom pdd import viz\nhr = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)",
             "viz.interactive_crops({'HR': hr, 'LR': hr[::4, ::4]}, side=16)",
             "viz.browse_images([('a', hr), ('b', hr[::2, ::2])])",
             "print('done')"]
    nbs = [_notebook(tmp_path / f"w{k}.ipynb", cells) for k in range(2)]
    status = {}
    threads = [threading.Thread(target=lambda k=k: status.__setitem__(k, reproduce.execute(
        nbs[k], tmp_path / f"w{k}_out.ipynb", timeout_s=120))) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert status == {0: "ok", 1: "ok"}
    for k in range(2):
        state = json.loads((tmp_path / f"w{k}_out.ipynb").read_text())["metadata"]["widgets"]
        assert "image/png" in json.dumps(state)


def test_kdsr_cost_lines_sum_the_kdsr_runs_per_seed(tmp_path):
    from pdd.reproduce import kdsr_cost_lines

    setting = tmp_path / "scratch" / "Synth-ISO"
    for name, sec in (("kdsr-teacher_s0", 60), ("ema-pdd--kdsr-generalist_s0", 120), ("ema-pdd_s0", 999),
                      ("kdsr-teacher_s1", 30)):
        (setting / name).mkdir(parents=True)
        (setting / name / "log.csv").write_text(f"iter,sec,l1\n10,{sec / 2},0.1\n20,{sec},0.1\n")
    (tmp_path / "smoke" / "tiny").mkdir(parents=True)  # smoke runs are not counted
    lines = kdsr_cost_lines(tmp_path)
    assert len(lines) == 1
    assert "seed 0: 3.0 run-min over 2 runs, seed 1: 0.5 run-min over 1 runs" in lines[0] and "that setting" in lines[0]
    assert kdsr_cost_lines(tmp_path / "nothing") == []


def test_two_papermill_runs_of_notebook_01_at_once_both_finish(tmp_path):
    """The report: `papermill notebooks/01_data.ipynb ... -p domain Synth-Defocus` twice at the
    same moment, one stopped at the image browser until killed. Both start together here, on a
    fresh data folder (both build the built-in domain at once), and both finish."""
    import threading

    import papermill

    nb = reproduce.ROOT / "notebooks" / "01_data.ipynb"
    status = {}

    def run(k):
        try:
            papermill.execute_notebook(str(nb), str(tmp_path / f"01_{k}.ipynb"), cwd=str(nb.parent),
                                       parameters={"domain": "Synth-Defocus", "data_root": str(tmp_path / "data")},
                                       progress_bar=False, execution_timeout=240)
            status[k] = "ok"
        except Exception as e:  # noqa: BLE001 -- the assertion names it
            status[k] = f"{type(e).__name__}: {e}"[:300]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert status == {0: "ok", 1: "ok"}


def _plan(parameters):
    nbs = sorted((reproduce.ROOT / "notebooks").glob("0[1-7]_*.ipynb"))
    return reproduce.chain_jobs(nbs, parameters)


def test_the_training_pool_plans_each_run_once_and_what_runs_start_from_first(tmp_path, monkeypatch):
    """make reproduce's plan at the notebooks' own defaults: nothing is trained while planning;
    each run directory once; every run a job starts from is planned before it (so the pool's
    order never makes a row wait behind a row), the tiny preset's short runs (05) last."""
    from pathlib import Path

    from pdd import experiments

    monkeypatch.setenv("PDD_SMOKE", "0")  # the embedded default's plan (only planned, nothing trains)
    jobs = _plan({"runs_dir": str(tmp_path / "runs")})
    assert not (tmp_path / "runs").exists()  # planning trained nothing
    outs = [str(j.dir) for j in jobs]
    assert len(outs) == len(set(outs))
    names = [j.dir.name for j in jobs]
    for must in ("pretrained-generalist_s0", "pretrained-specialist_s0", "kdsr-teacher_s0", "kdsr-student_s0",
                 "hr-aware-stage-a_s0", "hr-aware-fine-tuning_s0", "static-pdd_s0", "ema-pdd_s0",
                 "finetune-control_s0", "naive-distillation_s0", "ema-pdd--kdsr-generalist_s0", "singlefixed_s0"):
        assert must in names, must
    for i, j in enumerate(jobs):
        for need in j.needs:
            assert need in outs[:i], (str(j.dir), need)
    # HR-aware stage B waits for its stage A and for M, the generalist it adapts
    stage_b = next(j for j in jobs if j.dir.name == "hr-aware-fine-tuning_s0")
    by_name = {Path(o).name: o for o in outs if "/scratch/" in o}
    assert stage_b.needs == {by_name["hr-aware-stage-a_s0"], by_name["pretrained-generalist_s0"]}
    presets = [j.preset for j in jobs]
    assert presets == sorted(presets, key=lambda p: p == "tiny") and presets[-1] == "tiny"
    # the same calls as the notebooks: 04's EMA PDD is the comparison's run, 03's static PDD too
    ema = experiments.method_config("EMA PDD", "scratch", "Synth-ISO", 0, tmp_path / "runs")
    assert str(ema.out) in outs
    assert not (tmp_path / "runs").exists()


def test_a_hung_training_job_is_stopped_and_reported(tmp_path):
    from pdd import experiments
    from pdd.config import make_config
    from pdd.runs import Run

    cfg = make_config("tiny", "supervised", out=str(tmp_path / "long"), iters=10**6, log_every=10**6,
                      ckpt_every=10**6, init_s=None)
    t0 = __import__("time").time()
    with pytest.raises(RuntimeError, match="hung"):
        experiments.train_runs([Run(cfg)], job_timeout_s=3, progress=False)
    assert __import__("time").time() - t0 < 60


def test_after_the_pool_the_notebooks_train_nothing(tmp_path, monkeypatch):
    """The plan is what the notebooks train: after the pool (smoke sizes), notebooks 03 and 04
    run and find every run finished (their clocks record no new weight snapshot)."""
    monkeypatch.setenv("PDD_SMOKE", "1")
    params = {"runs_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results")}
    nbs = [reproduce.ROOT / "notebooks" / n for n in ("03_static.ipynb", "04_ema.ipynb")]
    status, _ = reproduce.train_chain(nbs, params)
    assert status == "ok", status
    for nb in nbs:
        assert reproduce.execute(nb, tmp_path / nb.name, timeout_s=600, parameters=params) == "ok"
    timings = json.loads((tmp_path / "results" / "timings.json").read_text())
    assert timings["03_static"]["new_weight_snapshots"] == 0 and timings["04_ema"]["new_weight_snapshots"] == 0


def test_pdd_rows_plan_leaves_out_the_seed_papers_runs(tmp_path, monkeypatch):
    """`--rows pdd`: the pool plans PDD's own rows and their starting models, no KDSR stage or row,
    no HR-aware stage."""

    from pdd import experiments

    monkeypatch.setenv("PDD_SMOKE", "0")
    # what `--rows pdd` passes: 04 and 07 choose their rows by these
    names = {j.dir.name for j in _plan({"runs_dir": str(tmp_path / "runs"), "compare_rows": "pdd", "methods": "pdd"})}
    for must in ("pretrained-generalist_s0", "pretrained-specialist_s0", "static-pdd_s0", "ema-pdd_s0",
                 "finetune-control_s0", "finetune-control--no-gan_s0", "naive-distillation_s0",
                 "specialist-finetune-control_s0", "singlefixed_s0"):
        assert must in names, must
    assert not [n for n in names if "kdsr" in n or "hr-aware" in n]
    assert experiments.pdd_methods("scratch") == ["finetune control", "finetune control, no GAN", "naive distillation",
                                                  "static PDD", "EMA PDD", "specialist finetune control"]
    assert "specialist finetune control" not in experiments.pdd_methods("cpu")
    assert experiments.resolve_methods("scratch", "all") == experiments.all_methods("scratch")
    assert experiments.resolve_methods("tiny", None, {"A": 1, "B": 2}) == ["A", "B"]
    with pytest.raises(ValueError, match="unknown row set"):
        experiments.resolve_methods("scratch", "pdd-only")


def test_rows_option_reaches_the_pool_and_the_notebooks_that_choose_rows(monkeypatch):
    calls = {}

    def pool(nbs, params, seconds=None):
        calls["pool"], calls["seconds"] = params, seconds
        return "ok", 0.0

    def execute(nb, out, parameters=None):
        calls[nb.name[:2]] = parameters
        return "ok"

    monkeypatch.setattr(reproduce, "train_chain", pool)
    monkeypatch.setattr(reproduce, "execute", execute)
    monkeypatch.setattr(reproduce, "write_summary", lambda rows, total, fresh, rows_set: calls.update(set=rows_set))
    monkeypatch.setattr(reproduce, "build_site", lambda: "site skipped")
    monkeypatch.setattr(reproduce, "estimate_run", lambda nbs, params: ("estimate ...", {"run": 1.0}))
    assert reproduce.main(["--rows", "pdd", "04", "05", "07"]) == 0
    assert calls["pool"] == {"compare_rows": "pdd", "methods": "pdd"}
    assert calls["04"] == {"compare_rows": "pdd"} and calls["07"] == {"methods": "pdd"} and calls["05"] == {}
    assert calls["set"] == "pdd"
    # the estimate comes first, and its seconds per job weight the pool's progress bar; --no-estimate skips it
    assert calls["seconds"] == {"run": 1.0}
    monkeypatch.setattr(reproduce, "estimate_run", lambda nbs, params: pytest.fail("estimated"))
    assert reproduce.main(["--no-estimate", "04"]) == 0 and calls["seconds"] is None


# ------------------------------------------------------------------ the estimate before training (issue 27)

def _tiny_jobs(runs):
    from pdd import experiments as E

    starts, pool, _ = E.training_plan("tiny", "Synth-Defocus", [0], ["EMA PDD", "static PDD", "finetune control"], runs)
    return starts + pool


def test_estimate_arithmetic_on_the_tiny_plan_by_hand(tmp_path):
    """Mocked seconds per step kind; the pool simulated by hand: the two pretraining runs (300
    steps) start at 0; the rows all start from the generalist (EMA: S and G; static: G, and S
    from the specialist; finetune: S), so they wait for it: at 300 s EMA and static start
    (4 D-only + 16 PDD steps = 1 + 32 = 33 s each), the fine-tune control at 333 s (1 + 16 * 1.5 = 25 s)."""
    jobs = _tiny_jobs(tmp_path / "runs")
    names = [j.dir.name for j in jobs]
    assert names == ["pretrained-generalist_s0", "pretrained-specialist_s0", "ema-pdd_s0", "static-pdd_s0",
                     "finetune-control_s0"]
    ema = jobs[2]
    assert reproduce.job_phases(ema) == [("tiny D-only warm-up", 4, 1),
                                         ("tiny PDD (static/EMA, naive)", 16, 4 + ema.config.distill_start_k + 1)]
    secs = {"tiny pretraining (second_order X^L)": 1.0, "tiny pretraining (bicubic X^L)": 0.5,
            "tiny D-only warm-up": 0.25, "tiny PDD (static/EMA, naive)": 2.0, "tiny finetune": 1.5}
    per_job = reproduce.job_seconds(jobs, secs)
    assert list(per_job.values()) == [300.0, 150.0, 33.0, 33.0, 25.0]
    assert reproduce.simulate_pool(jobs, per_job, parallel=2) == 358.0
    assert reproduce.simulate_pool(jobs, per_job, parallel=1) == 541.0  # one at a time: the sum
    text = reproduce.estimate_text(jobs, secs)
    # 358 s -> 6 min; notebooks unscaled (no scratch PDD step in this plan) 403 s; 761 s -> 13 min
    assert "training about 6 min, notebooks about 7 min, whole run about 13 min" in text
    assert "5 jobs, 9 job-min" in text and "not scaled" in text
    text = reproduce.estimate_text(jobs, {k: v for k, v in secs.items() if k != "tiny finetune"},
                                   {"tiny finetune": "ValueError: x"})
    assert "not timed, left out of the estimate (1 job(s)): tiny finetune" in text


def test_timing_the_step_kinds_trains_nothing_and_touches_no_run(tmp_path, monkeypatch):
    """Each kind timed once (an untimed step, then one timed), on stand-in trainers in a temporary
    folder: the plan's run directories never appear, the global RNG and threads are as before."""
    import torch

    from pdd.train import Trainer

    calls = []
    real = Trainer.step
    monkeypatch.setattr(Trainer, "step", lambda self, t: calls.append((self.cfg.mode, t)) or real(self, t))
    jobs = [_tiny_jobs(tmp_path / "runs")[i] for i in (0, 2)]  # the generalist, and EMA PDD that starts from it
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    measured, failed = reproduce.time_step_kinds(jobs, steps=1)
    assert not failed and not (tmp_path / "runs").exists() and list(tmp_path.iterdir()) == []
    assert set(measured) == {"tiny pretraining (second_order X^L)", "tiny D-only warm-up", "tiny PDD (static/EMA, naive)"}
    assert all(v > 0 for v in measured.values()) and len(calls) == 2 * len(measured)
    assert torch.equal(rng, torch.get_rng_state()) and threads == torch.get_num_threads()


def test_pool_progress_reads_each_jobs_share_from_its_files(tmp_path):
    jobs = _tiny_jobs(tmp_path / "runs")[:2]  # 300 iterations each
    bar = reproduce.PoolProgress(jobs, {str(jobs[0].dir): 30.0, str(jobs[1].dir): 10.0}, disable=True)
    out0 = tmp_path / "runs" / "tiny" / "Synth-Defocus" / "pretrained-generalist_s0"
    out0.mkdir(parents=True)
    (out0 / "log.csv").write_text("iter,lr\n100,0.1\n150,0.1\n")  # half done
    _snapshot(tmp_path / "runs" / "tiny" / "Synth-Defocus" / "pretrained-specialist_s0", 300)  # finished
    assert bar.poll() == pytest.approx(30.0 * 0.5 + 10.0)
    assert bar.bar.postfix == "1/2 jobs"


def test_executed_notebooks_show_paths_relative_to_the_project(tmp_path):
    from pathlib import Path

    png = "AAAA" + str(reproduce.ROOT) + "/x"  # an image's base64 is left alone whatever it holds
    nb = {"cells": [{"cell_type": "code", "source": [], "outputs": [
        {"output_type": "stream", "name": "stdout",
         "text": [f"run {reproduce.ROOT}/runs/smoke/a_s0\n", f"cache {Path.home()}/.cache/pdd/w.pth\n"]},
        {"output_type": "display_data", "data": {"text/plain": [f"{reproduce.ROOT}"], "image/png": png}}]},
        {"cell_type": "markdown", "source": ["# a"], "outputs": [], "metadata": {}}],   # outputs: not allowed there
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "x.ipynb"
    path.write_text(json.dumps(nb))
    reproduce.relative_paths(path)
    assert json.loads(path.read_text())["cells"][1] == {"cell_type": "markdown", "source": ["# a"], "metadata": {}}
    out = json.loads(path.read_text())["cells"][0]["outputs"]
    assert out[0]["text"] == ["run runs/smoke/a_s0\n", "cache ~/.cache/pdd/w.pth\n"]
    assert out[1]["data"] == {"text/plain": ["."], "image/png": png}


def test_a_readme_section_whose_sources_are_not_here_is_kept_as_last_written(tmp_path):
    from pdd import reproduce

    readme = tmp_path / "README.md"
    assert reproduce._previous_section(readme, reproduce.KDSR_COST_HEADING) == []
    readme.write_text(f"# R\n\n## What ran\n\nx\n\n{reproduce.KDSR_COST_HEADING}\n\n- a: 1 run-min\n- b: 2\n\n## Next\n\ny\n")
    assert reproduce._previous_section(readme, reproduce.KDSR_COST_HEADING) == ["- a: 1 run-min", "- b: 2"]
    assert reproduce.kdsr_cost_lines(tmp_path / "no-runs") == []
