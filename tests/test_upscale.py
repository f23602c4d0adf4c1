"""pdd.upscale: seamless tiling, 16-bit and alpha handling, the CLI's folder walk; its backends
(pdd.backends): parity with torch through tiles, the auto rule, fallbacks, the ONNX cache."""
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pdd import backends as B
from pdd import imageops as I
from pdd import upscale as U
from pdd.archs import RRDBNet
from pdd.photos import read_photo
from pdd.sr_models import ModelInfo

TINY = dict(num_feat=16, num_block=1, num_grow_ch=8)


class Nearest(torch.nn.Module):
    """x s nearest-neighbour 'upscaler': every output pixel is known in advance."""

    def __init__(self, s):
        super().__init__()
        self.s, self.dummy = s, torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.s, mode="nearest") + self.dummy


def _smooth(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), size=(h, w), mode="bilinear")


def test_tiled_and_untiled_agree_within_one_level():
    torch.manual_seed(0)
    net = RRDBNet(**TINY).eval()
    x = _smooth(44, 52)
    whole = I.run_tiled(net, x, tile=0)
    tiles = []
    tiled = I.run_tiled(net, x, tile=16, tile_pad=8, on_tile=lambda: tiles.append(1))
    assert len(tiles) == 3 * 4 == I.n_tiles(44, 52, 16)
    assert tiled.shape == whole.shape == (1, 3, 176, 208)
    assert (tiled - whole).abs().max() < 1 / 255
    assert whole.abs().mean() > 0.05  # the net does compute something


def test_blending_weights_sum_to_one_and_reproduce_a_pointwise_model_exactly():
    x = torch.rand(1, 3, 37, 29, generator=torch.Generator().manual_seed(1))
    want = F.interpolate(x, scale_factor=2, mode="nearest")
    for tile, pad in ((8, 3), (10, 0), (16, 5), (5, 7)):
        got = I.run_tiled(Nearest(2), x, tile=tile, tile_pad=pad)
        assert torch.allclose(got, want, atol=1e-6), (tile, pad)
    # two neighbours' ramps over a 2*pad overlap cross-fade to 1
    a = I._ramp(20, False, True, 8)
    b = I._ramp(20, True, False, 8)
    assert torch.allclose(a[-8:] + b[:8], torch.ones(8))


def test_size_multiple_is_padded_and_cropped():
    class NeedsEight(Nearest):
        def forward(self, x):
            assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0
            return super().forward(x)

    x = torch.rand(1, 3, 13, 21)
    got = I.run_tiled(NeedsEight(2), x, multiple=8)
    assert torch.equal(got, F.interpolate(x, scale_factor=2, mode="nearest"))


def _png16(path, a):
    U._png(path, a)


def test_16bit_in_16bit_out_and_alpha_upscaled_separately(tmp_path):
    info = ModelInfo("nearest", "Nearest", 2, "test")
    rgb16 = np.random.default_rng(0).integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    _png16(tmp_path / "a.png", rgb16)
    U.upscale_file(Nearest(2), info, tmp_path / "a.png", tmp_path / "a_out.png")
    got = read_photo(tmp_path / "a_out.png").pixels
    assert got.dtype == np.uint16 and got.shape == (12, 10, 3)
    np.testing.assert_array_equal(got, rgb16.repeat(2, 0).repeat(2, 1))

    rgba = np.random.default_rng(1).integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    U.upscale_file(Nearest(2), info, tmp_path / "b.png", tmp_path / "b_out.png")
    out = np.asarray(Image.open(tmp_path / "b_out.png"))
    assert out.shape == (12, 10, 4)
    np.testing.assert_array_equal(out, rgba.repeat(2, 0).repeat(2, 1))


def test_cli_mirrors_the_tree_skips_existing_and_overwrites(tmp_path, capsys):
    torch.manual_seed(0)
    net = RRDBNet(**TINY)
    torch.save({"params_ema": net.state_dict()}, tmp_path / "tiny.pth")
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(src / "sub" / "a.png")
    Image.fromarray(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)).save(src / "b.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the output must come out upright (16 x 8 -> 8 x 16 before x4)
    Image.fromarray(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)).save(src / "c.png", exif=exif)
    (src / ".DS_Store").write_bytes(b"junk")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    out = tmp_path / "out"
    argv = ["-i", str(src), "-o", str(out), "-n", str(tmp_path / "tiny.pth"), "-t", "8", "--tile-pad", "4"]
    assert U.main(argv) == 1  # the broken file fails, the others are written
    err = capsys.readouterr().err
    assert "3 upscaled" in err and "broken.png" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["b_out.jpg", "c_out.png", "sub/a_out.png"]
    assert Image.open(out / "sub" / "a_out.png").size == (40, 48)
    assert Image.open(out / "c_out.png").size == (32, 64)
    before = (out / "sub" / "a_out.png").stat().st_mtime_ns
    U.main(argv)
    assert "0 upscaled, 3 already there" in capsys.readouterr().err
    assert (out / "sub" / "a_out.png").stat().st_mtime_ns == before
    U.main(argv + ["--overwrite", "-s", "2", "--suffix", ""])
    assert Image.open(out / "sub" / "a.png").size == (20, 24)


def test_color_correct_gives_the_output_the_inputs_channel_statistics():
    class Tinted(Nearest):  # x2 nearest with a colour cast the correction must undo
        def forward(self, x):
            return super().forward(x) * torch.tensor([0.5, 1.0, 1.0]).view(1, 3, 1, 1) + 0.1

    img = np.random.default_rng(3).random((16, 12, 3)).astype(np.float32) * 0.8 + 0.1
    out = U.upscale_image(Tinted(2), img, 2, color_correct=True)
    # nearest x2 repeats every pixel 4 times: the same mean and (almost) the same std per channel
    np.testing.assert_allclose(out.mean(axis=(0, 1)), img.mean(axis=(0, 1)), atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1)), img.std(axis=(0, 1)), rtol=0.02)


# ------------------------------------------------------------------------------ backends (pdd.backends)

TINY_INFO = ModelInfo("tiny", "RRDBNet", 4, "test")
_REAL_EXPORT = B.export_onnx


def _onnx_cache():
    from pdd.weights import cache_dir
    return cache_dir() / "onnx"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """ONNX exports go to $PDD_CACHE: keep the user's cache out of the tests."""
    monkeypatch.setenv("PDD_CACHE", str(tmp_path / "cache"))


def _tiny(seed=0):
    torch.manual_seed(seed)
    return RRDBNet(**TINY).eval().requires_grad_(False)


def _no_onnxruntime(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError


@pytest.fixture(autouse=True)
def _no_openvino(monkeypatch):
    """OpenVINO is optional (not in pyproject): where it is installed, auto would prefer it."""
    monkeypatch.setitem(sys.modules, "openvino", None)


def test_onnxruntime_matches_torch_through_tiles_at_an_odd_size():
    pytest.importorskip("onnxruntime")
    net = _tiny()
    backend, notes = B.make_backend(net, TINY_INFO, "onnxruntime", threads=1)
    assert backend.name == "onnxruntime" and notes == []
    x = _smooth(37, 45, seed=3) + 0.1 * torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(4))
    seams = []
    ref = I.run_tiled(B.TorchBackend(net), x, tile=16, tile_pad=4)
    got = I.run_tiled(backend, x, tile=16, tile_pad=4, on_tile=lambda: seams.append(1))
    assert len(seams) == 3 * 3  # 37 and 45 LR px in 16 px tiles: 3 x 3 tiles, seams in both directions
    assert got.shape == ref.shape == (1, 3, 148, 180)
    assert (got - ref).abs().max() < 1e-4 < 1 / 255  # the same fp32 arithmetic in another order
    assert ref.std() > 0.01  # the net computes something that could differ


def test_cli_onnxruntime_and_torch_write_the_same_8bit_image(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    torch.save({"params_ema": _tiny(1).state_dict()}, tmp_path / "tiny.pth")
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (19, 23, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    outs = {}
    for backend in ("torch", "onnxruntime"):
        U.main(["-i", str(tmp_path / "a.png"), "-o", str(tmp_path / backend), "-n", str(tmp_path / "tiny.pth"),
                "-t", "8", "--tile-pad", "3", "--backend", backend, "--threads", "1"])
        assert f"backend {'torch fp32' if backend == 'torch' else backend}" in capsys.readouterr().err
        outs[backend] = np.asarray(Image.open(tmp_path / backend / "a_out.png")).astype(int)
    assert outs["torch"].shape == (76, 92, 3)
    assert np.abs(outs["torch"] - outs["onnxruntime"]).max() <= 1


def test_missing_onnxruntime_falls_back_to_torch_with_a_note(tmp_path, monkeypatch, capsys):
    _no_onnxruntime(monkeypatch)
    net = _tiny()
    backend, notes = B.make_backend(net, TINY_INFO, "onnxruntime")
    assert isinstance(backend, B.TorchBackend) and not backend.bf16
    assert len(notes) == 1 and "onnxruntime is not installed" in notes[0] and "using torch fp32" in notes[0]
    monkeypatch.setattr("pdd.config.cpu_has_native_bf16", lambda: False)
    backend, notes = B.make_backend(net, TINY_INFO, "auto")  # auto: not present -> torch, no complaint
    assert isinstance(backend, B.TorchBackend) and notes == []
    # the CLI says so in one line and still writes the photo
    torch.save({"params_ema": net.state_dict()}, tmp_path / "tiny.pth")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    assert U.main(["-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-n", str(tmp_path / "tiny.pth"),
                   "--backend", "onnxruntime"]) == 0
    err = capsys.readouterr().err
    assert "note: onnxruntime unavailable (onnxruntime is not installed" in err and "backend torch fp32" in err
    assert (tmp_path / "o" / "a_out.png").is_file()


def test_an_export_that_fails_falls_back_instead_of_crashing(monkeypatch):
    pytest.importorskip("onnxruntime")

    def refuse(*a, **k):
        from pdd.sr_models import ExportUnavailable
        raise ExportUnavailable("this architecture does not trace")

    monkeypatch.setattr("pdd.sr_models.write_onnx", refuse)
    backend, notes = B.make_backend(_tiny(), TINY_INFO, "onnxruntime")
    assert isinstance(backend, B.TorchBackend)
    assert notes == ["onnxruntime unavailable (ONNX export failed: this architecture does not trace); using torch fp32"]


def test_auto_rule():
    both = ["torch", "onnxruntime", "ncnn"]
    assert B.auto_backend("cuda", True, True, both) == "torch"
    assert B.auto_backend("mps", False, True, both) == "torch"
    # never bf16 on its own (not within 1/255 of fp32): on AMX too the fastest fp32 runtime; --bf16 asks for it
    assert B.auto_backend("cpu", True, True, both) == "ncnn"
    # fp32-only CPU (AVX2 EPYC): ncnn 1.0, OpenVINO 0.85, onnxruntime 0.82, torch fp32 ~0.3
    assert B.auto_backend("cpu", True, False, both) == "ncnn"  # the model refuses bf16
    assert B.auto_backend("cpu", False, True, both + ["openvino"]) == "ncnn"
    assert B.auto_backend("cpu", False, True, ["torch", "onnxruntime", "openvino"]) == "openvino"
    assert B.auto_backend("cpu", False, True, ["torch", "onnxruntime"]) == "onnxruntime"
    assert B.auto_backend("cpu", False, True, ["torch"]) == "torch"


def test_auto_follows_the_cpu_flags(monkeypatch):
    pytest.importorskip("onnxruntime")
    net = _tiny()
    monkeypatch.setattr("pdd.config.cpu_has_native_bf16", lambda: True)
    backend, notes = B.make_backend(net, TINY_INFO, "auto")
    assert backend.name == "onnxruntime" and any("--bf16" in n for n in notes)  # said, not chosen
    unsupported = ModelInfo("x", "SomeArch", 4, "test", supports_bf16=False)
    assert B.make_backend(net, unsupported, "auto")[0].name == "onnxruntime"
    monkeypatch.setattr("pdd.config.cpu_has_native_bf16", lambda: False)
    assert B.make_backend(net, TINY_INFO, "auto")[0].name == "onnxruntime"
    assert B.make_backend(net, TINY_INFO, "auto", device=torch.device("cuda"))[0].name == "torch fp32"
    # --bf16 keeps its meaning: torch with bf16 autocast, whatever auto would pick
    assert B.make_backend(net, TINY_INFO, "auto", bf16=True)[0].name == "torch bf16+CL"
    with pytest.raises(ValueError, match="unknown backend"):
        B.make_backend(net, TINY_INFO, "tensorrt")


def test_the_onnx_export_is_cached_and_a_bad_cache_file_is_replaced(monkeypatch):
    pytest.importorskip("onnxruntime")
    net = _tiny()
    calls = []
    real = B.export_onnx
    monkeypatch.setattr(B, "export_onnx", lambda *a: (calls.append(1), real(*a)))
    b1, notes = B.make_backend(net, TINY_INFO, "onnxruntime")
    path = b1.path
    assert calls == [1] and notes == [] and path.parent == _onnx_cache()
    b2, notes = B.make_backend(net, TINY_INFO, "onnxruntime")
    assert calls == [1] and b2.path == path and notes == []  # reused, not exported again
    # other weights -> another file
    assert B.onnx_cache_path(_tiny(seed=7), TINY_INFO) != path
    # garbage in the cache: replaced, not a crash
    path.write_bytes(b"not an onnx file")
    b3, notes = B.make_backend(net, TINY_INFO, "onnxruntime")
    assert b3.name == "onnxruntime" and calls == [1, 1] and "exported again" in notes[0]
    # a valid ONNX of other weights under this name (stale or tampered): caught by the check, replaced
    other = B.onnx_cache_path(_tiny(seed=7), TINY_INFO)
    B.export_onnx(_tiny(seed=7), TINY_INFO, other)
    os.replace(other, path)
    b4, notes = B.make_backend(net, TINY_INFO, "onnxruntime")
    assert b4.name == "onnxruntime" and "exported again" in notes[0]
    x = torch.rand(1, 3, 9, 11)
    assert (b4(x) - B.TorchBackend(net)(x)).abs().max() < 1e-4


def test_a_runs_own_model_onnx_is_used_when_current(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from pdd.sr_models import export, load_upscaler, write_onnx

    run = tmp_path / "run"
    run.mkdir()
    export(_tiny(2), TINY_INFO, run, formats=("safetensors",))
    net, info = load_upscaler(run)
    write_onnx(net, info, run / "model.onnx")
    monkeypatch.setattr(B, "export_onnx", lambda *a: pytest.fail("exported although RUN/model.onnx is current"))
    backend, notes = B.make_backend(net, info, "onnxruntime", source=str(run))
    assert backend.path == run / "model.onnx" and notes == []
    # weights newer than the ONNX file: the file is not trusted, the cache is used
    t = (run / "model.onnx").stat().st_mtime
    os.utime(run / "model.safetensors", (t + 10, t + 10))
    monkeypatch.setattr(B, "export_onnx", _REAL_EXPORT)
    backend, notes = B.make_backend(net, info, "onnxruntime", source=str(run))
    assert backend.path.parent == _onnx_cache() and "older than model.safetensors" in notes[0]



NEAREST_X2_PARAM = """7767517
2 2
Input            data   0 1 data
Interp           up     1 1 data output 0=1 1=2.000000e+00 2=2.000000e+00
"""


def test_ncnn_backend_runs_a_pair_through_the_same_tiles(tmp_path):
    pytest.importorskip("ncnn")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "near-x2.param").write_text(NEAREST_X2_PARAM)
    (tmp_path / "models" / "near-x2.bin").write_bytes(b"")
    assert B.ncnn_blobs(NEAREST_X2_PARAM) == ("data", "output")
    pair = (tmp_path / "models" / "near-x2.param", tmp_path / "models" / "near-x2.bin")
    assert B.ncnn_pair(tmp_path, TINY_INFO) == pair
    info = ModelInfo("near", "Nearest", 2, "test")
    backend, notes = B.make_backend(Nearest(2), info, "ncnn", source=str(tmp_path), threads=1)
    assert backend.name == "ncnn" and notes == []
    x = torch.rand(1, 3, 23, 17, generator=torch.Generator().manual_seed(6))
    got = I.run_tiled(backend, x, tile=8, tile_pad=3)
    assert torch.allclose(got, F.interpolate(x, scale_factor=2, mode="nearest"), atol=1e-6)


def test_auto_takes_the_next_runtime_when_the_first_fails(monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr("pdd.config.cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(B, "FP32_CPU_ORDER", ("ncnn", "onnxruntime", "torch"))
    monkeypatch.setattr(B, "_present", lambda source, info, model=None: ["torch", "ncnn", "onnxruntime"])
    backend, notes = B.make_backend(_tiny(), TINY_INFO, "auto")  # no ncnn pair for this model
    assert backend.name == "onnxruntime" and len(notes) == 1 and notes[0].startswith("ncnn unavailable")


def test_openvino_matches_torch_where_installed(monkeypatch):
    monkeypatch.delitem(sys.modules, "openvino", raising=False)
    pytest.importorskip("openvino")
    net = _tiny()
    backend, notes = B.make_backend(net, TINY_INFO, "openvino", threads=1)
    assert backend.name == "openvino" and notes == []
    x = _smooth(29, 35, seed=8)
    assert (I.run_tiled(backend, x, tile=16, tile_pad=4) - I.run_tiled(B.TorchBackend(net), x, tile=16,
                                                                           tile_pad=4)).abs().max() < 1e-4


def test_an_x4_rrdbnet_gets_an_ncnn_pair_written_once_and_matching_torch(monkeypatch):
    """Any x4 RRDBNet has an ncnn pair: written to the cache from its weights
    (pdd.weights.rrdbnet_ncnn), reused the second time, output within 1/255 of torch fp32
    through the tiles (the auto rule's first choice on fp32-only CPUs)."""
    pytest.importorskip("ncnn")
    monkeypatch.setattr("pdd.config.cpu_has_native_bf16", lambda: False)
    net = _tiny()
    info = ModelInfo("tiny", "RRDBNet", 4, "test", rrdbnet_args=dict(TINY, scale=4))
    backend, notes = B.make_backend(net, info, "auto")
    assert backend.name.startswith("ncnn"), (backend.name, notes)
    from pdd.weights import cache_dir
    pairs = sorted((cache_dir() / "ncnn").glob("*.param"))
    assert len(pairs) == 1
    stamp = pairs[0].stat().st_mtime_ns
    B.make_backend(net, info, "auto")
    assert pairs[0].stat().st_mtime_ns == stamp  # reused, not rewritten
    x = torch.rand(1, 3, 37, 45, generator=torch.Generator().manual_seed(3))
    got = I.run_tiled(backend, x, tile=16, tile_pad=4)
    with torch.no_grad():
        ref = I.run_tiled(net, x, tile=16, tile_pad=4)
    assert float((got - ref).abs().max()) < 1 / 255


def test_an_operation_mps_lacks_reruns_the_photo_on_the_cpu_with_one_note(tmp_path, capsys, monkeypatch):
    """pdd.upscale on an Apple GPU with the fallback off: PyTorch raises NotImplementedError
    naming the operator; the photo is redone on the CPU (the model moved there), noted once,
    never marked failed. Simulated: the first torch call raises PyTorch's message."""
    torch.manual_seed(0)
    torch.save({"params_ema": RRDBNet(**TINY).state_dict()}, tmp_path / "tiny.pth")
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(5)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(src / name)
    real_call, calls = B.TorchBackend.__call__, []

    def first_call_fails(self, x):
        calls.append(1)
        if len(calls) == 1:
            raise NotImplementedError("The operator 'aten::upsample_nearest2d.out' is not currently implemented "
                                      "for the MPS device.")
        return real_call(self, x)

    monkeypatch.setattr(B.TorchBackend, "__call__", first_call_fails)
    argv = ["-i", str(src), "-o", str(tmp_path / "out"), "-n", str(tmp_path / "tiny.pth"), "--backend", "torch"]
    assert U.main(argv) == 0
    err = capsys.readouterr().err
    assert "2 upscaled" in err and "0 failed" in err
    assert err.count("aten::upsample_nearest2d.out is not implemented on MPS") == 1
