"""pdd.adapt and pdd.sr_models: any upscaler as the generalist, exports, resume, the CLI end to end."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pdd import adapt as A
from pdd import sr_models as M
from pdd.archs import RRDBNet
from pdd.train import Trainer

# 32 growth channels: spandrel 0.4.2 assumes ESRGAN's 32 when it reads an RRDBNet
TINY = dict(num_feat=16, num_block=1, num_grow_ch=32)


def _save(model, path):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _spandrel_archs():
    """Small randomly initialised instances of the architectures tried (see README's table)."""
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.OmniSR import OmniSR
    from spandrel.architectures.SPAN import SPAN
    from spandrel.architectures.SwinIR import SwinIR

    return {
        "Compact": (lambda: Compact(num_feat=16, num_conv=2, upscale=2), 2),
        "SPAN": (lambda: SPAN(num_in_ch=3, num_out_ch=3, feature_channels=16, upscale=4), 4),
        "SwinIR": (lambda: SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=8, upscale=2,
                                  upsampler="pixelshuffledirect", mlp_ratio=2), 2),
        "OmniSR": (lambda: OmniSR(num_feat=16, up_scale=2, res_num=1, block_num=1, window_size=8), 2),
        # ESRGAN's old `model.N` layout goes into our RRDBNet class
        "RRDBNet": (lambda: ESRGAN(in_nc=3, out_nc=3, num_filters=16, num_blocks=1, scale=4), 4),
    }


@pytest.mark.parametrize("arch", ["Compact", "SPAN", "SwinIR", "OmniSR", "RRDBNet"])
def test_spandrel_architectures_load_train_and_export_round_trip(arch, tmp_path):
    import spandrel

    make, scale = _spandrel_archs()[arch]
    torch.manual_seed(0)
    ref = make().eval()
    net, info = M.load_upscaler(_save(ref, tmp_path / "g.safetensors"))
    assert info.architecture == arch and info.scale == scale
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), ref(x), atol=1e-5)  # the loaded model is the file's model
    M.check_trainable(net, info, patch=16)
    # export: safetensors in the base layout, read back by spandrel as the same architecture
    M.export(net, info, tmp_path, formats=("pth", "safetensors"))  # ONNX, ncnn: test_export.py
    back = spandrel.ModelLoader().load_from_file(str(tmp_path / "model.safetensors"))
    expect = "ESRGAN" if arch == "RRDBNet" else arch
    assert back.architecture.id == expect and back.scale == scale
    with torch.no_grad():
        assert torch.allclose(back.model.eval()(x), ref(x), atol=1e-5)


def test_untrainable_or_unsupported_models_get_named_errors(tmp_path):
    from spandrel.architectures.Compact import Compact

    net, info = M.load_upscaler(_save(Compact(num_feat=8, num_conv=1, upscale=1), tmp_path / "x1.safetensors"))
    with pytest.raises(M.ArchitectureError, match="x1 model"):
        M.check_trainable(net, info, 16)
    net, info = M.load_upscaler(_save(Compact(num_feat=8, num_conv=1, upscale=2), tmp_path / "x2.safetensors"))
    with pytest.raises(M.ArchitectureError, match="multiple of 8"):
        M.check_trainable(net, info, 14)  # HR 28 px: the U-Net discriminator halves it three times
    _save(torch.nn.Conv2d(3, 5, 3), tmp_path / "conv.safetensors")
    with pytest.raises(M.ArchitectureError, match="does not recognise"):
        M.load_upscaler(tmp_path / "conv.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(M.WeightsError, match="not a readable safetensors"):
        M.load_upscaler(tmp_path / "bad.safetensors")
    with pytest.raises(M.WeightsError, match="neither a known name"):
        M.load_upscaler(tmp_path / "missing.pth")


def _photos(root, n=3, size=(40, 56)):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / f"p{i}.png")
    return root


def test_timed_estimate_leaves_the_trainer_as_it_was(tmp_path):
    p = A.plan(_photos(tmp_path / "ph"), tmp_path / "run", preset="tiny", iters=4)
    tr = Trainer(p.cfg, progress=False, domain=p.domain, model=p.model)
    before = {k: v.clone() for k, v in tr.s.state_dict().items()}
    d_before = {k: v.clone() for k, v in tr.d.state_dict().items()}
    rng = torch.get_rng_state()
    d_only, full = A._timed_estimate(tr, steps=1)
    assert full > 0
    assert all(torch.equal(before[k], v) for k, v in tr.s.state_dict().items())
    assert all(torch.equal(d_before[k], v) for k, v in tr.d.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state()) and not tr.opt_g.state


def test_adapt_cli_end_to_end_with_resume_and_reuse(tmp_path, monkeypatch, capsys):
    """tiny preset: interrupted after iteration 2 (checkpoint every 2), resumed by the same
    command, exports checked, a third call reuses the finished run."""
    photos = _photos(tmp_path / "photos")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    torch.manual_seed(0)
    torch.save({"params_ema": RRDBNet(**TINY).state_dict()}, tmp_path / "gen.pth")
    pairs = tmp_path / "pairs"
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        hr = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
        (pairs / "hr").mkdir(parents=True, exist_ok=True)
        (pairs / "lr").mkdir(exist_ok=True)
        Image.fromarray(hr).save(pairs / "hr" / f"{name}.png")
        Image.fromarray(hr).resize((24, 24), Image.BICUBIC).save(pairs / "lr" / f"{name}.png")
    run = tmp_path / "run"
    argv = ["--lr-dir", str(photos), "--out", str(run), "--generalist", str(tmp_path / "gen.pth"), "--preset", "tiny",
            "--iters", "4", "--set", "ckpt_every=2", "--no-progress", "--data-root", str(tmp_path / "nodata"),
            "--pairs-dir", str(pairs)]

    real_step = Trainer.step

    def step_then_interrupt(self, t):
        if self.iteration == 2:  # fit() has finished iteration 2 and saved it
            raise KeyboardInterrupt
        return real_step(self, t)

    monkeypatch.setattr(Trainer, "step", step_then_interrupt)
    assert A.main(argv) == 130
    err = capsys.readouterr().err
    assert "estimate on this machine" in err and "broken.jpg" in err and "3 used" in err
    assert "interrupted at iteration 2" in err and not (run / "model.json").exists()
    monkeypatch.setattr(Trainer, "step", real_step)

    assert A.main(argv) == 0
    err = capsys.readouterr().err
    assert "resuming from iteration 2" in err
    meta = json.loads((run / "model.json").read_text())
    assert meta["iterations"] == 4 and meta["architecture"] == "RRDBNet" and meta["scale"] == 4
    assert meta["photos_used"] == 3 and meta["photos_skipped"] == 1 and meta["preset"] == "tiny"
    assert meta["base_model"] == "gen" and meta["commit"]

    # model.pth: Real-ESRGAN's loader does RRDBNet(...).load_state_dict(ckpt["params_ema"], strict=True)
    ckpt = torch.load(run / "model.pth", weights_only=True)
    ours = RRDBNet(**TINY)
    ours.load_state_dict(ckpt["params_ema"], strict=True)
    # model.safetensors: spandrel sees the same network and computes the same output
    import spandrel
    sp = spandrel.ModelLoader().load_from_file(str(run / "model.safetensors"))
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(sp.model.eval()(x), ours.eval()(x), atol=1e-5)
    html = (run / "report.html").read_text()
    assert "data:image/png;base64," in html and "src='http" not in html and "not evidence" in html
    assert "Training curves" in html and "NIQE" in html and "Held-out pairs (full reference)" in html
    gains = meta["report"]["pairs_gain_mean_ci"]
    assert set(gains) == {"psnr", "ssim", "psnr_cc"} and all(np.isfinite(v).all() for v in gains.values())
    assert set(meta["report"]["pairs_means"]) == {"generalist", "adapted"}

    assert A.main(argv) == 0
    assert "reusing it" in capsys.readouterr().err


@pytest.mark.parametrize("arch,mode", [("Compact", "ema"), ("SPAN", "ema"), ("Compact", "static")])
def test_trainer_adapts_a_spandrel_network(arch, mode, tmp_path):
    """PDD needs only that S maps (N,3,H,W) to (N,3,sH,sW): Compact x2 and SPAN x4 train
    for two iterations and come back out as the same architecture, with changed weights
    (static: G is a frozen copy of the generalist)."""
    import spandrel

    make, scale = _spandrel_archs()[arch]
    torch.manual_seed(0)
    gen = _save(make(), tmp_path / "g.safetensors")
    run = A.adapt(_photos(tmp_path / "ph"), tmp_path / "run", generalist=str(gen), preset="tiny", mode=mode, iters=2,
                  data_root=tmp_path / "nodata", progress=False, estimate=False, report=False, log=lambda s: None)
    meta = json.loads((run / "model.json").read_text())
    assert meta["architecture"] == arch and meta["scale"] == scale and meta["iterations"] == 2
    assert meta["mode"] == mode and (mode != "static" or "copy of S" in meta["sources"]["G"])
    back = spandrel.ModelLoader().load_from_file(str(run / "model.safetensors"))
    assert back.architecture.id == arch and back.scale == scale
    before = spandrel.ModelLoader().load_from_file(str(gen)).model.state_dict()
    after = back.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------ --minutes, the verdict, the crops (issue 27)

def test_minutes_arithmetic_by_hand():
    # warm-up capped at 50: for n >= 250 the run is 50 D-only steps + (n - 50) PDD steps.
    # 30 min = 1800 s, D-only 1.9 s, PDD 4.2 s: 50 * 1.9 = 95, (1800 - 95) / 4.2 = 405.95 -> 405 PDD -> 455
    assert A.iterations_for_minutes(30, 1.9, 4.2, 50) == (455, 50)
    # short run, the warm-up is n // 5: n = 35 -> 7 * 1 + 28 * 4 = 119 <= 120; n = 36 -> 7 + 29 * 4 = 123 > 120
    assert A.iterations_for_minutes(2, 1.0, 4.0, 50) == (35, 7)
    with pytest.raises(ValueError, match=r"not even 20 PDD iterations fit \(D-only step 1\.00 s, PDD step 4\.00 s"):
        A.iterations_for_minutes(1, 1.0, 4.0, 50)  # n = 18: 3 + 15 * 4 = 63 > 60 already, 15 PDD < 20
    assert A.seconds_left(300, 50, 1.0, 4.0) == 50 + 250 * 4
    assert A.seconds_left(300, 50, 1.0, 4.0, done=40) == 10 + 250 * 4  # resumed inside the warm-up
    assert A.seconds_left(300, 50, 1.0, 4.0, done=100) == 200 * 4


def test_minutes_picks_records_and_keeps_the_count_on_resume(tmp_path, monkeypatch):
    """--minutes with mocked step times (tiny preset: D warm-up 4): 1 min = 60 s at 0.5 s D-only and
    2 s PDD -> 4 * 0.5 + (n - 4) * 2 <= 60 -> n = 33 (34 would be 62 s). Training itself is skipped
    (fit mocked): the count is what the Trainer's config would record. A run that has a
    train/config.json keeps its count."""
    monkeypatch.setattr(A, "_timed_estimate", lambda trainer, steps=2: (0.5, 2.0))
    monkeypatch.setattr(Trainer, "fit", lambda self, iters=None, progress_bar=None: self.out)
    lines = []
    kw = dict(preset="tiny", data_root=tmp_path / "nodata", progress=False, report=False, log=lines.append)
    photos = _photos(tmp_path / "ph")
    run = A.adapt(photos, tmp_path / "run", minutes=1, **kw)
    meta = json.loads((run / "model.json").read_text())
    assert meta["config"]["iters"] == 33 and meta["config"]["warmup_d_iters"] == 4 and meta["minutes_budget"] == 1
    assert "D-only 0.50 s, PDD 2.00 s" in meta["iterations_chosen_from"]
    assert any(s.startswith("--minutes 1: 33 iterations fit (D-only 0.50 s, PDD 2.00 s per step, measured") for s in lines)
    assert any("estimate on this machine: 1.0 min of training" in s for s in lines)

    again = tmp_path / "run2"
    (again / "train").mkdir(parents=True)
    cfg = json.loads(json.dumps(meta["config"]))
    cfg.update(iters=12, warmup_d_iters=2, ckpt_every=6)
    (again / "train" / "config.json").write_text(json.dumps({"config": cfg}))
    lines.clear()
    meta2 = json.loads((A.adapt(photos, again, minutes=1, **kw) / "model.json").read_text())
    assert meta2["config"]["iters"] == 12 and meta2["config"]["warmup_d_iters"] == 2  # not re-picked
    assert any("keeping the 12 iterations it chose" in s for s in lines)
    with pytest.raises(ValueError, match="not both"):
        A.adapt(photos, tmp_path / "run3", minutes=1, iters=5, **kw)
    with pytest.raises(SystemExit):
        A.main(["--lr-dir", str(photos), "--out", str(tmp_path / "r4"), "--iters", "4", "--minutes", "1"])


@pytest.mark.parametrize("psnr,n,outcome,words", [
    ((0.42, 0.03, 0.98), 4, "adapted wins", "Use the adapted model"),
    ((-0.30, -0.55, -0.08), 4, "worse", "Keep your original model: the adapted one is worse"),
    ((0.10, -0.20, 0.45), 4, "no clear difference", "No clear difference: keep your original model"),
    ((0.42, 0.03, 0.98), 2, "too few pairs", "Keep your original model: 2 held-out pair(s) are too few"),
])
def test_verdict_wording(psnr, n, outcome, words):
    v = A.verdict({"psnr": psnr, "psnr_cc": (0.2, -0.1, 0.5)}, n)
    assert v["outcome"] == outcome and v["headline"].startswith(words)
    assert f"{psnr[0]:+.2f} dB [{psnr[1]:+.2f}, {psnr[2]:+.2f}]" in v["headline"]
    assert any(line.startswith("Rule, fixed before") for line in v["lines"])
    if outcome == "adapted wins":  # a PSNR win whose colour-corrected CI spans 0 is flagged
        assert any("colour or brightness shift" in line for line in v["lines"])
    none = A.verdict(None)
    assert none["outcome"] == "no pairs" and none["headline"].startswith("No fidelity evidence")
    smoke = A.verdict({"psnr": (0.3, 0.1, 0.5)}, 5, smoke_test=True)  # the tiny preset: never evidence
    assert smoke["outcome"] == "adapted wins" and smoke["headline"].startswith("Smoke test")


class _Up(torch.nn.Module):
    """x4 upscaler with a parameter: nearest or bilinear (two models that differ)."""

    def __init__(self, mode):
        super().__init__()
        self.w, self.mode = torch.nn.Parameter(torch.ones(1)), mode

    def forward(self, x):
        return torch.nn.functional.interpolate(x * self.w, scale_factor=4, mode=self.mode)


def _crops_in(html):
    import base64
    import io
    import re

    out = []
    for src, w, h, alt in re.findall(r"<img class='crop' src='data:image/png;base64,([^']+)' width=(\d+) height=(\d+) "
                                     r"alt='([^']+)'>", html):
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(src))))
        assert img.shape[:2] == (int(h), int(w))  # shown at 100 %: the attributes are the PNG's own size
        out.append((alt, img))
    return out


def test_report_opens_with_the_verdict_and_shows_256px_crops_beside_the_lr(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    big = [rng.integers(0, 256, (100, 120, 3), dtype=np.uint8), rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)]
    comps = A.compare_on_photos(_Up("nearest"), _Up("bilinear"), big, 4)
    nr = (pd.DataFrame([{"photo": "x", "diff": 0.0}]), (0.0, 0.0, 0.0), "")
    means = pd.DataFrame({"generalist": {"psnr": 20.0}, "adapted": {"psnr": 19.5}})
    meta = dict(lr_dir="photos", preset="cpu", iterations=3, mode="ema", seed=0, photos_used=2, patches=2,
                photos_skipped=0, commit="abc")
    pairs = (means, {"psnr": (-0.5, -0.9, -0.1), "psnr_cc": (-0.2, -0.4, 0.1)}, 5)
    html = A.write_report(tmp_path, A.ModelInfo("g", "RRDBNet", 4, "s", "l"), comps, nr, pairs, meta).read_text()
    body = html.split("<body>", 1)[1].lstrip()
    assert body.startswith("<div class='verdict'") and "Keep your original model" in body.split("</div>")[0]
    crops = _crops_in(html)
    assert [a for a, _ in crops[:3]] == ["LR input (nearest x4)", "generalist (your original model)", "adapted"]
    big_views, small_views = crops[:3], crops[3:]
    assert all(img.shape[:2] == (256, 256) for _, img in big_views)  # 64 LR px of a 96-px crop: 256 output px
    y, x, _, _ = comps[0]["window"]
    lr = big[0][2 + y:2 + y + 64, 12 + x:12 + x + 64]  # the 96-px centre crop starts at (2, 12)
    assert np.array_equal(big_views[0][1], lr.repeat(4, 0).repeat(4, 1))  # the same region, nearest x4
    assert all(img.shape[:2] == (160, 224) for _, img in small_views)  # a small photo: shown whole
    assert "the whole crop" in html and "This file:" in html
    # without pairs the top says there is no fidelity evidence
    html = A.write_report(tmp_path, A.ModelInfo("g", "RRDBNet", 4, "s", "l"), comps[:1], nr, None, meta).read_text()
    assert html.split("<body>", 1)[1].lstrip().startswith("<div class='verdict'") and "No fidelity evidence" in html


def test_progress_bar_time_left_weights_the_warm_up_steps():
    """2 D-only steps (1 s predicted each) done in 10 s: 5x slower than predicted; left: 4 PDD
    steps at 4 s predicted = 16 s -> 80 s, where the plain average rate would say 4 x 5 s = 20 s."""
    import io

    bar = A.weighted_bar(lambda t: 1.0 if t <= 2 else 4.0)(total=6, file=io.StringIO(), mininterval=0)
    bar.update(2)
    bar.start_t = bar._time() - 10
    assert "<01:20 weighted" in str(bar)
    bar.close()
