"""Evaluation: metrics against pyiqa and hand arithmetic, offline NIQE, unavailable metrics, protocols.

No network: only PSNR, SSIM and NIQE are created for real (none downloads anything);
an unavailable metric is forced by making pyiqa.create_metric raise.
"""
import math
import urllib.error

import numpy as np
import pandas as pd
import pyiqa
import pytest
import scipy.io
import torch
import torch.nn.functional as F
from skimage import data, filters

from pdd import evaluate as E
from pdd.imageops import quantize
from pdd.weights import resolve_niqe_params


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """NIQE's .mat is written under $PDD_CACHE; keep the user's cache out of it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PDD_CACHE", str(tmp_path_factory.mktemp("pdd_cache")))
        yield


@pytest.fixture(scope="module")
def metrics():
    return E.create_metrics(("psnr", "ssim", "niqe"))


class Upsample(torch.nn.Module):
    """An 'SR model' that is plain x4 interpolation, then an optional colour cast (gain, offset)."""

    def __init__(self, mode="nearest", gain=1.0, offset=0.0):
        super().__init__()
        self.mode, self.gain, self.offset = mode, gain, offset
        self.dummy = torch.nn.Parameter(torch.zeros(()))  # so the model has a device

    def forward(self, x):
        return F.interpolate(x, scale_factor=4, mode=self.mode) * self.gain + self.offset


def rgb(img_uint8):
    return torch.from_numpy(img_uint8).permute(2, 0, 1)[None].double() / 255


def random_pair(rng, h=24, w=20):
    lr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    hr = rng.integers(0, 256, (4 * h, 4 * w, 3), dtype=np.uint8)
    return lr, hr


# ----------------------------------------------------------------- PSNR / SSIM


def test_psnr_ssim_agree_with_direct_pyiqa_calls(metrics):
    rng = np.random.default_rng(0)
    a = rgb(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8))
    b = (a + 0.05 * torch.from_numpy(rng.standard_normal(a.shape))).clamp(0, 1)
    b = quantize(b)
    direct_psnr = pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", device="cpu")
    direct_ssim = pyiqa.create_metric("ssim", test_y_channel=True, color_space="ycbcr", device="cpu")
    assert float(E.psnr_y(a, b)[0]) == pytest.approx(float(direct_psnr(a, b)), abs=1e-6)
    assert float(E.ssim_y(a, b)[0]) == pytest.approx(float(direct_ssim(a, b)), abs=1e-6)
    # the YIQ default would give a different number: the option really is in effect
    assert float(pyiqa.create_metric("psnr", test_y_channel=True, device="cpu")(a, b)) != pytest.approx(
        float(E.psnr_y(a, b)[0]), abs=1e-3)


def test_evaluate_scores_equal_direct_pyiqa_on_the_8bit_output(metrics):
    rng = np.random.default_rng(1)
    lr, hr = random_pair(rng)
    model = Upsample("bicubic")
    df = E.evaluate(model, [(lr, hr, "a")], {"psnr": metrics["psnr"], "ssim": metrics["ssim"]}, progress=False)
    sr = torch.round(F.interpolate(rgb(lr).float(), scale_factor=4, mode="bicubic").clamp(0, 1) * 255) / 255
    direct_psnr = pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", device="cpu")
    direct_ssim = pyiqa.create_metric("ssim", test_y_channel=True, color_space="ycbcr", device="cpu")
    assert df.loc[0, "psnr"] == pytest.approx(float(direct_psnr(sr.double(), rgb(hr))), abs=1e-6)
    assert df.loc[0, "ssim"] == pytest.approx(float(direct_ssim(sr.double(), rgb(hr))), abs=1e-6)


def test_psnr_of_constant_colours_worked_by_hand():
    # MATLAB rgb2ycbcr on [0, 1] input: Y = 16 + 65.481 R + 128.553 G + 24.966 B (0-255 scale).
    # SR = (200, 100, 50)/255:  Y = 16 + (65.481*200 + 128.553*100 + 24.966*50)/255
    #                             = 16 + (13096.2 + 12855.3 + 1248.3)/255 = 16 + 27199.8/255 = 122.66588
    # HR = (150, 150, 150)/255: Y = 16 + (65.481 + 128.553 + 24.966)*150/255 = 16 + 219*150/255 = 144.82353
    # dY = -22.157647 (0-255) -> -0.0868927 on [0, 1]; MSE = 0.0868927^2 = 0.00755035
    # PSNR = 10 log10(1 / 0.00755035) = 21.220331 dB. pyiqa adds eps = 1e-8 to the MSE, which
    # lowers this by 10 log10(1 + 1e-8/0.00755) = 5.8e-6 dB: 21.220325. pyiqa builds the
    # coefficients as a float32 tensor (65.481 -> 65.48100280...) before casting to float64,
    # which moves the result by another ~1e-6 dB; hence abs=1e-5, not machine precision.
    sr = torch.tensor([200.0, 100.0, 50.0], dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, 8, 8) / 255
    hr = torch.full((1, 3, 8, 8), 150.0, dtype=torch.float64) / 255
    d_y = (65.481 * 50 + 128.553 * -50 + 24.966 * -100) / 255 / 255
    mse = d_y ** 2
    assert mse == pytest.approx(0.00755035, rel=1e-6)
    got = float(E.psnr_y(sr, hr)[0])
    assert got == pytest.approx(10 * math.log10(1 / (mse + 1e-8)), abs=1e-5)
    assert got == pytest.approx(21.220325, abs=1e-5)


# ----------------------------------------------------------------- unavailable metrics


@pytest.mark.parametrize("error", [urllib.error.URLError("[Errno -2] Name or service not known"),
                                   FileNotFoundError("alexnet-owt-7be5be79.pth\nsecond line")])
def test_unavailable_metric_is_recorded_and_gives_nan(monkeypatch, metrics, error):
    real = pyiqa.create_metric

    def no_lpips(name, *args, **kwargs):
        if name == "lpips":
            raise error
        return real(name, *args, **kwargs)

    monkeypatch.setattr(pyiqa, "create_metric", no_lpips)
    made = E.create_metrics(("psnr", "lpips"))
    assert isinstance(made["lpips"], E.Unavailable)
    assert made["lpips"].reason.startswith(type(error).__name__ + ": ")
    assert "\n" not in made["lpips"].reason and "second line" not in made["lpips"].reason
    assert not isinstance(made["psnr"], E.Unavailable)

    rng = np.random.default_rng(2)
    pairs = [(*random_pair(rng), "a"), (*random_pair(rng), "b")]
    df = E.evaluate(Upsample(), pairs, made, progress=False)
    assert list(df.columns) == ["name", "psnr", "lpips", "psnr_cc", "shift_r", "shift_g", "shift_b"]
    assert df["lpips"].isna().all() and df["psnr"].notna().all()
    assert df.attrs["unavailable"] == {"lpips": made["lpips"].reason}
    note = E.unavailable_note(made)
    assert "lpips" in note and type(error).__name__ in note and "psnr" not in note
    assert E.unavailable_note({"psnr": made["psnr"]}) == ""
    summary = E.summarize(df)
    assert math.isnan(summary.loc["lpips", "mean"]) and summary.loc["lpips", "n"] == 0
    assert summary.loc["psnr", "mean"] == pytest.approx(df["psnr"].mean())
    info = E.metric_info(made)
    assert info["lpips"] == {"available": False, "reason": made["lpips"].reason}


# ----------------------------------------------------------------- NIQE offline


def test_niqe_params_file_holds_the_shipped_numbers_and_is_what_pyiqa_loaded(metrics):
    path, source = E.niqe_params_file()
    params, _ = resolve_niqe_params()
    mat = scipy.io.loadmat(path)
    np.testing.assert_array_equal(mat["mu_prisparam"].ravel(), params["mu_pris_param"])
    np.testing.assert_array_equal(mat["cov_prisparam"], params["cov_pris_param"])
    niqe = metrics["niqe"]
    np.testing.assert_array_equal(niqe.net.mu_pris_param.numpy(), params["mu_pris_param"])
    assert "basicsr" in source.detail and str(path) in source.detail
    assert "basicsr" in niqe.weights_source.detail and E.metric_info(metrics)["niqe"]["available"]
    # a damaged cache file is rewritten, not trusted
    path.write_bytes(b"not a mat file")
    E.niqe_params_file()
    np.testing.assert_array_equal(scipy.io.loadmat(path)["cov_prisparam"], params["cov_pris_param"])


def test_niqe_is_finite_on_96px_and_prefers_the_natural_image(metrics):
    niqe = metrics["niqe"]
    img = data.astronaut()
    small = float(niqe(rgb(img[100:196, 100:196])))  # exactly one 96x96 block
    assert math.isfinite(small) and small > 0

    crop = img[128:384, 128:384]
    blurred = (filters.gaussian(crop, sigma=2.0, channel_axis=-1) * 255).round().astype(np.uint8)
    noise = np.random.default_rng(0).normal(0, 25.5, crop.shape)
    noisy = np.clip(crop + noise, 0, 255).round().astype(np.uint8)
    natural, blur, noised = (float(niqe(rgb(x))) for x in (crop, blurred, noisy))
    # measured: natural 3.9, blurred 7.6, noised 12.7 (lower is better)
    assert natural + 2 < blur and natural + 2 < noised


def test_niqe_is_nan_with_a_warning_below_one_block(metrics):
    rng = np.random.default_rng(3)
    pairs = [(*random_pair(rng, 16, 16), "tiny")]  # HR 64x64 < 96
    with pytest.warns(UserWarning, match="NIQE needs"):
        df = E.evaluate(Upsample(), pairs, {"niqe": metrics["niqe"]}, progress=False)
    assert math.isnan(df.loc[0, "niqe"]) and df.attrs["niqe_too_small"] == ["tiny"]


# ----------------------------------------------------------------- evaluate()


def test_color_correction_changes_scores_and_is_recorded(metrics):
    rng = np.random.default_rng(4)
    pairs = []
    for name in "ab":
        lr = rng.integers(40, 200, (24, 24, 3), dtype=np.uint8)
        pairs.append((lr, np.repeat(np.repeat(lr, 4, 0), 4, 1), name))  # HR = nearest x4 of LR
    cast = Upsample(gain=0.7, offset=0.2)  # a global colour cast that colour correction undoes
    plain = E.evaluate(cast, pairs, {"psnr": metrics["psnr"]}, progress=False)
    cc = E.evaluate(cast, pairs, {"psnr": metrics["psnr"]}, color_correction=True, progress=False)
    assert plain.attrs["cc"] is False and cc.attrs["cc"] is True
    assert (cc["psnr"] > plain["psnr"] + 5).all()
    # psnr_cc is the colour-corrected PSNR whatever the setting, equal to psnr under cc
    np.testing.assert_allclose(plain["psnr_cc"], cc["psnr_cc"])
    np.testing.assert_allclose(cc["psnr"], cc["psnr_cc"])


def test_crop512_protocol_splits_into_aligned_crops(metrics):
    rng = np.random.default_rng(5)
    lr = rng.integers(0, 256, (600, 1024, 3), dtype=np.uint8)  # 1024 wide, 600 high
    hr = np.repeat(np.repeat(lr, 4, 0), 4, 1)  # 2400 x 4096, exactly nearest x4 of LR
    df = E.evaluate(Upsample(), [(lr, hr, "big")], {"psnr": metrics["psnr"]}, protocol="crop512", progress=False)
    # columns x = 0, 512 fit in 1024; rows: only y = 0 (600 - 512 = 88 left over, dropped)
    assert df["name"].tolist() == ["big#0", "big#1"]
    # SR of each crop matches its HR crop exactly: PSNR is pyiqa's cap 10 log10(1/1e-8) = 80
    np.testing.assert_allclose(df["psnr"], 80.0)
    assert df.attrs["protocol"] == "crop512"
    with pytest.raises(ValueError, match="unknown protocol"):
        E.evaluate(Upsample(), [(lr, hr, "big")], {}, protocol="crop256", progress=False)


def test_scale_mismatch_is_a_clear_error(metrics):
    rng = np.random.default_rng(6)
    lr, _ = random_pair(rng)
    hr2 = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)  # x2 HR for a x4 model
    with pytest.raises(ValueError, match="SR is .* but HR is"):
        E.evaluate(Upsample(), [(lr, hr2, "x2")], {"psnr": metrics["psnr"]}, progress=False)


def test_crop_border_is_applied_to_every_metric(metrics):
    rng = np.random.default_rng(7)
    lr, hr = random_pair(rng)
    df = E.evaluate(Upsample(), [(lr, hr, "a")], {"psnr": metrics["psnr"]}, crop_border=4, progress=False)
    sr = quantize(F.interpolate(rgb(lr), scale_factor=4, mode="nearest"))
    expect = float(E.psnr_y(sr[..., 4:-4, 4:-4], rgb(hr)[..., 4:-4, 4:-4])[0])
    assert df.loc[0, "psnr"] == pytest.approx(expect, abs=1e-9) and df.attrs["crop_border"] == 4


# ----------------------------------------------------------------- upscale()


def test_upscale_tiled_equals_whole_and_restores_train_mode():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 48, 3, padding=1), torch.nn.PixelShuffle(4))
    model.train()
    lr = torch.rand(1, 3, 40, 36)
    whole = E.upscale(model, lr)
    tiled = E.upscale(model, lr, tile=16, overlap=4)
    assert model.training  # evaluation mid-training must not leave the model in eval mode
    assert whole.shape == (1, 3, 160, 144) and 0 <= whole.min() and whole.max() <= 1
    torch.testing.assert_close(tiled, whole, atol=1e-6, rtol=0)
    raw = E.upscale(model, lr, clamp=False)
    assert raw.min() < 0 or raw.max() > 1  # clamp=False really is the raw output
    bf16 = E.upscale(model, lr, bf16=True)
    assert (bf16 - whole).abs().max() < 0.05


# ----------------------------------------------------------------- provenance


def test_result_record_has_provenance_and_caller_fields(monkeypatch, metrics):
    rec = E.result_record(seed=3, precision="bf16", metrics=E.metric_info(metrics))
    assert set(rec["versions"]) == {"torch", "torchvision", "pyiqa", "numpy"}
    assert rec["versions"]["pyiqa"] == pyiqa.__version__ and rec["python"].count(".") == 2
    assert rec["seed"] == 3 and rec["precision"] == "bf16"
    assert rec["metrics"]["niqe"]["weights_source"]["kind"] in ("offline package", "explicit path")
    assert rec["git_commit"] == "unknown" or len(rec["git_commit"].split("-")[0]) >= 7

    def no_git(*a, **k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(E.subprocess, "run", no_git)
    assert E.result_record()["git_commit"] == "unknown"


def test_summarize_mean_std_per_metric():
    df = pd.DataFrame({"name": ["a", "b", "c"], "psnr": [20.0, 22.0, 24.0], "lpips": [math.nan] * 3})
    s = E.summarize(df)
    assert s.loc["psnr", "mean"] == 22.0 and s.loc["psnr", "std"] == pytest.approx(2.0)
    assert s.loc["psnr", "n"] == 3 and "name" not in s.index


def test_result_records_name_the_machine():
    from pathlib import Path

    from pdd.evaluate import result_record

    machine = result_record()["machine"]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        name = next(ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name"))
        assert machine.startswith(name)
    assert machine
