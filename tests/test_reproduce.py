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
