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
    M.export(net, info, tmp_path)
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
