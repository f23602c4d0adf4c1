"""Colour drift shown (issue 25): the per-channel colour shift of evaluate(), old score caches that
gain it, and the sentence said where PSNR and colour-corrected PSNR disagree."""
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pdd import evaluate as E
from pdd import experiments
from pdd.experiments.verdicts import colour_drift_lines
from pdd.imageops import quantize


@pytest.fixture(scope="module")
def metrics():
    return E.create_metrics(("psnr", "ssim"))   # no weights and no files: nothing is written


class Nearest(torch.nn.Module):
    """An 'SR model': nearest x4, then a fixed offset per channel (in [0, 1] units)."""

    def __init__(self, offset=(0.0, 0.0, 0.0)):
        super().__init__()
        self.offset = torch.tensor(offset).view(1, 3, 1, 1)
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.interpolate(x, scale_factor=4, mode="nearest") + self.offset


def shifted(img, levels):
    return (img.astype(int) + np.array(levels)).astype(np.uint8)


def test_colour_shift_of_an_image_shifted_by_known_levels():
    hr = np.random.default_rng(0).integers(10, 246, (32, 24, 3), dtype=np.uint8)   # no clipping at +5 / -3
    sr = shifted(hr, (5, 0, -3))
    assert E.colour_shift(sr, hr) == (5.0, 0.0, -3.0)
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255  # noqa: E731
    assert E.colour_shift(to_t(sr), to_t(hr)) == (5.0, 0.0, -3.0)


def test_evaluate_adds_the_shift_and_keeps_every_old_column(metrics):
    rng = np.random.default_rng(1)
    lr = rng.integers(20, 236, (24, 20, 3), dtype=np.uint8)
    hr = np.repeat(np.repeat(lr, 4, 0), 4, 1)   # HR = nearest x4 of LR: the SR's error is the offset alone
    model = Nearest((5 / 255, 0.0, -3 / 255))
    df = E.evaluate(model, [(lr, hr, "a")], metrics, progress=False)
    assert list(df.columns) == ["name", "psnr", "ssim", "psnr_cc", "shift_r", "shift_g", "shift_b"]
    assert tuple(df.loc[0, ["shift_r", "shift_g", "shift_b"]]) == (5.0, 0.0, -3.0)
    # the old columns, recomputed independently from the same 8-bit SR
    sr = quantize(F.interpolate(torch.from_numpy(lr).permute(2, 0, 1)[None].double() / 255, scale_factor=4,
                                mode="nearest").float().double() + model.offset.double()).clamp(0, 1)
    hr_t = torch.from_numpy(hr).permute(2, 0, 1)[None].double() / 255
    assert df.loc[0, "psnr"] == pytest.approx(float(E.psnr_y(sr, hr_t)[0]), abs=1e-9)
    assert df.loc[0, "ssim"] == pytest.approx(float(E.ssim_y(sr, hr_t)[0]), abs=1e-9)
    # colour correction takes the cast away: its PSNR is far above the plain one
    assert df.loc[0, "psnr_cc"] > df.loc[0, "psnr"] + 10
    # the table of means (notebooks 03/04) stays what it was
    table = E.compare({"m": model}, {"t": [(lr, hr, "a")]}, metrics)
    assert list(table.columns) == ["model", "test set", "images", "psnr", "ssim", "psnr_cc"]


def test_an_old_cache_gains_the_shift_and_keeps_its_scores(tmp_path, metrics):
    rng = np.random.default_rng(2)
    lr = rng.integers(20, 236, (24, 20, 3), dtype=np.uint8)
    pairs = [(lr, np.repeat(np.repeat(lr, 4, 0), 4, 1), "a_t0")]
    cache = tmp_path / "eval" / "net_g_000010__target.csv"
    cache.parent.mkdir()
    # written before the shift columns existed, with scores no rescoring would give: they must stay
    pd.DataFrame({"name": ["a_t0"], "psnr": [12.3456], "ssim": [0.5], "psnr_cc": [23.4567]}).to_csv(cache, index=False)
    item = experiments.EvalItem(lambda: Nearest((0.0, 2 / 255, 0.0)), tmp_path / "net_g_000010.pth", tmp_path / "eval",
                                {"method": "m", "seed": 0, "iteration": 10})
    assert not item.cached({"target": pairs})
    df = experiments.evaluate_items([item], {"target": pairs}, metrics, progress=False)[0]
    assert tuple(df.loc[0, ["psnr", "ssim", "psnr_cc"]]) == (12.3456, 0.5, 23.4567)
    assert tuple(df.loc[0, ["shift_r", "shift_g", "shift_b"]]) == (0.0, 2.0, 0.0)
    assert list(pd.read_csv(cache).columns) == ["name", "psnr", "ssim", "psnr_cc", "shift_r", "shift_g", "shift_b"]
    assert item.cached({"target": pairs}) and not list(tmp_path.glob("**/*.part"))


def drift_frame(psnr_gain, cc_gain, n_images=10, shifts=True):
    """The generalist and 'static PDD' on the target: paired gains of exactly psnr_gain and cc_gain."""
    rng = np.random.default_rng(0)
    base = rng.normal(25, 2, n_images)
    rows = []
    for i in range(n_images):
        rows.append(dict(method="generalist", seed=-1, iteration=0, name=f"im_t{i}", psnr=base[i], psnr_cc=base[i] + 0.2,
                         shift_r=0.5, shift_g=0.0, shift_b=-0.5, **{"test set": "target"}))
        rows.append(dict(method="static PDD", seed=0, iteration=300, name=f"im_t{i}", psnr=base[i] + psnr_gain,
                         psnr_cc=base[i] + 0.2 + cc_gain, shift_r=6.0, shift_g=-1.0, shift_b=2.5,
                         **{"test set": "target"}))
    df = pd.DataFrame(rows)
    return df if shifts else df.drop(columns=["shift_r", "shift_g", "shift_b"])


def test_drift_sentence_where_psnr_and_psnr_cc_disagree():
    lines = colour_drift_lines(drift_frame(-1.0, -0.5))
    assert lines == ["static PDD on the target: PSNR -1.00 dB but colour-corrected PSNR -0.50 dB vs the generalist: "
                     "most of the loss is a colour shift (mean shift R +6.0, G -1.0, B +2.5 levels; the generalist's "
                     "R +0.5, G +0.0, B -0.5)."]
    assert colour_drift_lines(drift_frame(-1.0, -0.9)) == []       # 0.1 dB apart: within the 0.3 dB threshold
    assert colour_drift_lines(drift_frame(-1.0, -0.9), threshold_db=0.05) != []
    no_shift = colour_drift_lines(drift_frame(-1.0, -0.5, shifts=False))
    assert len(no_shift) == 1 and no_shift[0].endswith("most of the loss is a colour shift.")
