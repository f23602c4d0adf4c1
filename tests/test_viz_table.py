"""viz.table: result tables shown as HTML, rounded, with the better direction marked."""
import math

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from pdd import stats, viz

BOLD = "font-weight: bold"


def _frame():
    return pd.DataFrame({
        "model": ["generalist", "PDD", "generalist", "PDD"],
        "test set": ["target", "target", "source", "source"],
        "images": [3, 3, 3, 3],
        "psnr": [22.123456, 23.5, 25.0, 24.0],
        "psnr std": [0.1, 0.2, math.nan, 0.1],
        "psnr gain": [0.0, 1.376544, 0.0, -1.0],
        "niqe": [9.0, 8.0, 7.0, 7.5],
        "lpips": [math.nan] * 4,
    })


def _styles(styler):
    """{(row, column name): css} of the cells the Styler marks."""
    styler._compute()
    cols = list(styler.data.columns)
    return {(r, cols[c]): "; ".join(f"{k}: {v}" for k, v in css) for (r, c), css in styler.ctx.items()}


def test_arrows_mark_the_better_direction_of_metric_columns_only():
    cols = list(viz.table(_frame()).data.columns)
    assert cols == ["model", "test set", "images", "psnr ↑", "psnr std", "psnr gain ↑", "niqe ↓", "lpips ↓"]
    assert [viz.better_direction(c) for c in ("ssim", "psnr_cc gain", "nrqm", "lpips (alex)", "niqe gain")] == \
        ["↑", "↑", "↑", "↓", "↓"]
    assert [viz.better_direction(c) for c in ("runs", "kl", "psnr lo", "niqe gain verdict", "ours Δ")] == [""] * 5
    assert all(viz.better_direction(m) == "↓" for m in stats.LOWER_IS_BETTER)


def test_numbers_are_rounded_and_missing_ones_say_so():
    html = viz.table(_frame(), digits=2).to_html()
    assert "22.12" in html and "22.123" not in html and "1.38" in html
    assert "n/a" in html and "nan" not in html.lower().replace("n/a", "")
    assert "↑ higher is better, ↓ lower is better" in html


def test_the_best_value_of_each_metric_column_is_bold_per_test_set():
    marks = _styles(viz.table(_frame()))
    bold = {k for k, css in marks.items() if BOLD in css}
    # target rows 0-1, source rows 2-3; psnr higher is better, niqe lower is better
    assert ((1, "psnr ↑") in bold and (2, "psnr ↑") in bold) and not {(0, "psnr ↑"), (3, "psnr ↑")} & bold
    assert (1, "niqe ↓") in bold and (2, "niqe ↓") in bold and (0, "niqe ↓") not in bold
    assert (1, "psnr gain ↑") in bold and (2, "psnr gain ↑") in bold
    assert not any(col in ("psnr std", "images", "lpips ↓") for _, col in bold)  # no direction, or all n/a
    assert not any(BOLD in css for css in _styles(viz.table(_frame(), best=False)).values())


def test_a_long_frame_marks_the_metric_names_and_colours_verdicts():
    gains = pd.DataFrame({"method": ["PDD", "PDD"], "metric": ["psnr", "niqe"], "n": [10, 10],
                          "target gain": [0.4, 0.2], "target gain verdict": ["better", "worse"]})
    styler = viz.table(gains)
    assert list(styler.data["metric"]) == ["psnr ↑", "niqe ↓"]
    assert "target gain" in styler.data.columns  # its direction is the row's metric's
    marks = _styles(styler)
    assert "1a7f37" in marks[(0, "target gain verdict")] and "c62828" in marks[(1, "target gain verdict")]


def test_row_numbers_are_hidden_and_a_labelled_index_is_kept():
    df = _frame().iloc[[1, 3]]  # a filtered frame: integer labels, not a RangeIndex
    assert "model" in viz.table(df).data.columns and len(viz.table(df).data.columns) == 8
    named = _frame().set_index("model")
    assert viz.table(named).data.columns[0] == "model"


@pytest.mark.parametrize("metric, label", [("psnr", "Δ PSNR (dB, higher is better)"),
                                           ("niqe", "Δ NIQE (lower is better)"), ("ssim", "Δ SSIM (higher is better)")])
def test_axis_labels_carry_unit_and_direction(metric, label):
    assert viz.metric_label(metric, "Δ ") == label


def test_plot_colour_shift_draws_three_channels_per_method_and_side():
    import matplotlib.pyplot as plt

    rows = []
    for side, k in (("target", 1.0), ("source", 0.0)):
        for method, r in (("generalist", 0.5), ("static PDD", 6.0), ("EMA PDD", 1.0)):
            for name in ("a_t0", "a_t1"):
                rows.append({"method": method, "test set": side, "name": name, "shift_r": r * k, "shift_g": -1.0,
                             "shift_b": 2.0})
    axes = viz.plot_colour_shift(pd.DataFrame(rows))
    assert [a.get_title() for a in axes] == ["target test set", "source test set"]
    # the generalist first (the reference, on top), then the methods in their order
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["generalist", "static PDD", "EMA PDD"]
    widths = [[round(b.get_width(), 6) for b in a.patches] for a in axes]
    # bars per panel: R of each method, then G, then B
    assert widths[0] == [0.5, 6.0, 1.0, -1.0, -1.0, -1.0, 2.0, 2.0, 2.0]
    assert widths[1] == [0.0, 0.0, 0.0, -1.0, -1.0, -1.0, 2.0, 2.0, 2.0]
    assert [t.get_text() for t in axes[-1].get_legend().get_texts()] == ["R", "G", "B"]
    plt.close("all")
