"""Inference backends for pdd.upscale: one network run by torch, onnxruntime or the ncnn runtime.

A backend is a callable: (1, C, h, w) float32 CPU tensor in, (1, C, s*h, s*w) float32 CPU tensor
out. `pdd.imageops.run_tiled` calls it once per tile, so every backend sees identical tiles and
shares the cross-fade.

Which one `--backend auto` picks (`auto_backend`) rests on benchmarks/upscale.py (RealESRGAN_x4plus,
400x300 LR photo, tile 256 pad 10). Only runtimes whose output stays within 1/255 of torch fp32
take part: torch bf16 + channels_last (4.5x the ncnn runtime on AMX, benchmarks/README.md) differs
by up to about 3/255 and runs only when asked for (--bf16). On an fp32-only CPU (2-core AMD EPYC
[avx2], 2026-12-07, quiet machine, 2 threads / 1 thread, seconds per photo) the ncnn runtime
26.2 / 40.2, OpenVINO 30.7 / 55.2, onnxruntime 31.8 / 57.3, torch fp32 about 89 (2 threads, loaded
machine). So: the ncnn runtime where the model has an ncnn pair that agrees with torch, then
OpenVINO if installed (optional, not a dependency), then onnxruntime, then torch. onnxruntime's
convolutions already run at about 46 GMAC/s per core (near AVX2's FMA peak); ncnn gets ahead by
doing fewer multiplications (most likely Winograd 3x3 convolutions). On CUDA / MPS: torch.

Every non-torch backend is checked against torch fp32 on a small image before it is used (max
|difference| <= half an 8-bit level); one that is missing, fails to build or disagrees gives way
to torch with a one-line note saying why, never a crash.

ONNX files are exported once per network and kept under ``$PDD_CACHE/onnx/`` (default
~/.cache/pdd/onnx), named by a hash of the weights, the architecture, the opset and torch's
version; a pdd.adapt RUN folder's own model.onnx is used directly when it is at least as new as
its model.safetensors and passes the check.
"""
from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import numpy as np
import torch

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "ncnn")
# Order of preference on a CPU, fastest first (measured: see above; on a
# 2-core AMD EPYC [avx2] with 2 threads, x the ncnn runtime: OpenVINO 0.85, onnxruntime 0.82,
# torch fp32 about 0.3).
FP32_CPU_ORDER = ("ncnn", "openvino", "onnxruntime", "torch")
PARITY_ATOL = 0.5 / 255  # a backend must agree with torch fp32 this well on the check image


class BackendUnavailable(RuntimeError):
    """A backend that cannot run this model here; the message says why (shown in the fallback note)."""


# ------------------------------------------------------------------------------ the backends


class TorchBackend:
    """The model itself: fp32, or bf16 autocast + channels_last (fast on AMX / AVX512-BF16)."""

    def __init__(self, model: torch.nn.Module, bf16: bool = False):
        self.model, self.bf16 = model, bf16
        self.name = "torch bf16+CL" if bf16 else "torch fp32"
        if bf16:
            self.model = model.to(memory_format=torch.channels_last)

    @property
    def device(self) -> torch.device:
        # read at each call: pdd.devices.run_with_cpu_fallback may move the model to the CPU
        return next(iter(self.model.parameters()), torch.zeros(())).device

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        fmt = torch.channels_last if self.bf16 else torch.contiguous_format
        device = self.device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16):
            y = self.model(x.to(device).contiguous(memory_format=fmt))
        return y.float().cpu()


class OnnxBackend:
    """An .onnx file in onnxruntime's CPU provider, all graph optimisations on."""

    def __init__(self, path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1  # one chain of convolutions: nothing to run side by side
        opts.log_severity_level = 3    # failures come back as exceptions
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.name = "onnxruntime"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        a = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input: a})[0])


class OpenVinoBackend:
    """An .onnx file compiled by OpenVINO's CPU plugin (optional: pip openvino), f32 precision
    (OpenVINO would pick bf16 by itself on AMX CPUs, and the output must stay within 1/255)."""

    def __init__(self, path, threads: int | None = None):
        import openvino as ov

        self.path = Path(path)
        self.compiled = ov.Core().compile_model(str(path), "CPU", {
            "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
            "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
        self.request = self.compiled.create_infer_request()
        self.name = "openvino"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        a = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        out = self.request.infer([a])
        return torch.from_numpy(np.array(out[self.compiled.output(0)], dtype=np.float32, copy=True))


def ncnn_blobs(param_text: str) -> tuple[str, str]:
    """(input blob, output blob) of an ncnn .param: the Input layer's, and the one blob no layer reads."""
    from .weights import parse_ncnn_param

    layers = parse_ncnn_param(param_text)
    ins = [lay.outputs[0] for lay in layers if lay.type == "Input"]
    consumed = {b for lay in layers for b in lay.inputs}
    outs = [b for lay in layers for b in lay.outputs if b not in consumed]
    if len(ins) != 1 or len(outs) != 1:
        raise BackendUnavailable(f"the ncnn graph has inputs {ins} and outputs {outs}, not one of each")
    return ins[0], outs[0]


class NcnnBackend:
    """An ncnn .param/.bin pair in the ncnn runtime (pip `ncnn`), CPU, its default options."""

    def __init__(self, param, binary, threads: int | None = None):
        import ncnn

        self.ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = threads or torch.get_num_threads()
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(binary)) != 0:
            raise BackendUnavailable(f"the ncnn runtime could not load {param}")
        self.input, self.output = ncnn_blobs(Path(param).read_text())
        self.name = "ncnn"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # ncnn.Mat wraps the array without copying: keep `a` alive until the extraction is done
        a = np.ascontiguousarray(x[0].detach().cpu().numpy(), dtype=np.float32)
        ex = self.net.create_extractor()
        ex.input(self.input, self.ncnn.Mat(a))
        ret, out = ex.extract(self.output)
        if ret != 0:
            raise RuntimeError(f"ncnn could not compute blob {self.output!r} (status {ret})")
        return torch.from_numpy(np.array(out))[None]


# ------------------------------------------------------------------------------ checks, files, cache


def check_parity(backend, model: torch.nn.Module, info, atol: float = PARITY_ATOL) -> float:
    """Max |backend - torch fp32| on a small smooth image of odd size (where the model allows);
    BackendUnavailable beyond `atol` (the output's range scales it: untrained nets exceed [0, 1])."""
    m = max(1, int(info.size_multiple or 1))
    if info.architecture == "RRDBNet":
        m = max(m, {2: 2, 1: 4}.get(int(info.scale), 1))  # RRDBNet x2 / x1 pixel-unshuffle their input
    h, w = (-(-max(19, info.min_size or 0) // m) * m, -(-max(23, info.min_size or 0) // m) * m)
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, h // 4 + 2, w // 4 + 2, generator=g), size=(h, w),
                                        mode="bilinear")
    with torch.no_grad():
        ref = model(x.to(next(model.parameters()).device)).float().cpu()
    try:
        got = backend(x)
    except Exception as e:  # noqa: BLE001 -- a runtime refusing the graph is a reason to fall back
        raise BackendUnavailable(f"{backend.name} failed on a {h}x{w} image: {type(e).__name__}: {str(e)[:200]}") from e
    if got.shape != ref.shape:
        raise BackendUnavailable(f"{backend.name} gives shape {tuple(got.shape)}, torch {tuple(ref.shape)}")
    diff = float((got - ref).abs().max())
    limit = atol * max(1.0, float(ref.abs().max()))
    if not diff <= limit:  # also NaN
        raise BackendUnavailable(f"{backend.name} differs from torch fp32 by {diff:.3g} (> {limit:.3g})")
    return diff


def _weights_digest(model: torch.nn.Module, info, salt: str) -> str:
    """sha256 of the weights, the architecture and scale, and ``salt`` (what the file depends on)."""
    h = hashlib.sha256(f"{info.architecture} x{info.scale} {salt} {type(model).__name__}".encode())
    for k, v in sorted(model.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k} {t.dtype} {tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:32]


def onnx_cache_path(model: torch.nn.Module, info, opset: int | None = None) -> Path:
    """$PDD_CACHE/onnx/<sha256 of the weights + architecture + scale + opset + torch version>.onnx"""
    from .sr_models import ONNX_OPSET
    from .weights import cache_dir

    return cache_dir() / "onnx" / f"{_weights_digest(model, info, f'opset{opset or ONNX_OPSET} torch{torch.__version__}')}.onnx"


def _write_atomic(dst: Path, data) -> None:
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data) if isinstance(data, bytes) else tmp.write_text(data)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(model: torch.nn.Module, info, dst: Path) -> None:
    """Export with pdd's ONNX writer (`pdd.export`'s: dynamic height and width, checked in
    onnxruntime; atomic, so a failure leaves nothing at dst)."""
    from . import sr_models

    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        sr_models.write_onnx(model.float().cpu(), info, dst)
    except sr_models.ExportUnavailable as e:
        raise BackendUnavailable(f"ONNX export failed: {e}") from e


def onnx_backend(model: torch.nn.Module, info, threads: int | None = None, run_dir=None,
                 notes: list | None = None, runtime: str = "onnxruntime"):
    """onnxruntime (or OpenVINO) on RUN/model.onnx if it is current and agrees, else on the
    cached export (made now if absent; a cached file that does not load or agree is exported again)."""
    notes = notes if notes is not None else []
    try:
        __import__(runtime)
    except ImportError as e:
        raise BackendUnavailable(f"{runtime} is not installed (pip install {runtime})") from e
    runner = OnnxBackend if runtime == "onnxruntime" else OpenVinoBackend
    if run_dir is not None:
        own, weights = Path(run_dir) / "model.onnx", Path(run_dir) / "model.safetensors"
        if own.is_file():
            if weights.is_file() and own.stat().st_mtime < weights.stat().st_mtime:
                notes.append(f"{own.name} is older than {weights.name}: not used")
            else:
                try:
                    b = runner(own, threads)
                    check_parity(b, model, info)
                    return b
                except Exception as e:  # noqa: BLE001 -- a bad run file is a note, the cache still works
                    notes.append(f"{own} not used: {type(e).__name__}: {str(e)[:160]}")
    path = onnx_cache_path(model, info)
    for attempt in (0, 1):
        if not path.is_file():
            export_onnx(model, info, path)
        try:
            b = runner(path, threads)
            check_parity(b, model, info)
            return b
        except Exception as e:  # noqa: BLE001 -- corrupt or stale cache file: replace it once
            if attempt:
                raise BackendUnavailable(f"{runtime} cannot run the export: {type(e).__name__}: {str(e)[:200]}") from e
            notes.append(f"cached {path.name} unusable ({type(e).__name__}); exported again")
            path.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def ncnn_pair(source, info, model: torch.nn.Module | None = None) -> tuple[Path, Path] | None:
    """The ncnn .param/.bin of this model where one exists or can be written: RealESRGAN_x4plus's
    offline files (written to the cache), a pdd.adapt RUN's models/*.param (pdd.export's layout)
    or ncnn/*.param no older than its model.safetensors, else for any x4 RRDBNet ``model`` a pair
    written directly (`pdd.weights.rrdbnet_ncnn`, well under a second) to
    $PDD_CACHE/ncnn/<sha256 of the weights>.param/.bin."""
    from .weights import cache_dir

    if str(source) == "RealESRGAN_x4plus":
        from .weights import realesrgan_ncnn_files

        d = cache_dir() / "ncnn"
        param, binary = d / "realesrgan-x4plus.param", d / "realesrgan-x4plus.bin"
        if not (param.is_file() and binary.is_file()):
            text, data = realesrgan_ncnn_files()
            d.mkdir(parents=True, exist_ok=True)
            _write_atomic(binary, data)
            _write_atomic(param, text)
        return param, binary
    run = Path(str(source)).expanduser() if source is not None else None
    if run is not None and run.is_dir():
        weights = run / "model.safetensors"
        for param in sorted([*run.glob("models/*.param"), *run.glob("ncnn/*.param")]):
            binary = param.with_suffix(".bin")
            if binary.is_file() and not (weights.is_file() and param.stat().st_mtime < weights.stat().st_mtime):
                return param, binary
    args = getattr(info, "rrdbnet_args", None)
    if model is None or info.architecture != "RRDBNet" or not args or int(info.scale) != 4:
        return None
    from .sr_models import state_dict_for_export
    from .weights import rrdbnet_ncnn

    d = cache_dir() / "ncnn"
    stem = d / _weights_digest(model, info, "ncnn-fp16")
    param, binary = stem.with_suffix(".param"), stem.with_suffix(".bin")
    if not (param.is_file() and binary.is_file()):
        text, data = rrdbnet_ncnn(state_dict_for_export(model), args["num_block"])
        d.mkdir(parents=True, exist_ok=True)
        _write_atomic(binary, data)  # the .param last: a pair with a .param is whole
        _write_atomic(param, text)
    return param, binary


# ------------------------------------------------------------------------------ choosing


def auto_backend(device_type: str, native_bf16: bool, supports_bf16: bool, present) -> str:
    """The rule behind --backend auto (measured: see the module docstring): 'torch' on a GPU;
    on a CPU the first of FP32_CPU_ORDER that is `present`. Never bf16 on its own: auto keeps
    the output within 1/255 of torch fp32, and bf16 is not (up to about 3/255 on RealESRGAN);
    on a CPU with native bf16 (`native_bf16`) `--bf16` is the faster choice, asked for by name
    (4.5x the ncnn runtime on AMX), and `make_backend` says so in a note."""
    if device_type != "cpu":
        return "torch"
    return next((b for b in FP32_CPU_ORDER if b in present), "torch")


def _present(source, info, model=None) -> list[str]:
    import importlib.util

    out = ["torch"] + [m for m in ("onnxruntime", "openvino") if importlib.util.find_spec(m) is not None]
    try:
        if importlib.util.find_spec("ncnn") is not None and ncnn_pair(source, info, model) is not None:
            out.append("ncnn")
    except Exception:  # noqa: BLE001 -- ncnn files unreadable: ncnn is simply not present
        pass
    return out


def _build(choice: str, model, info, threads, source, notes):
    run_dir = Path(str(source)).expanduser() if source is not None else None
    run_dir = run_dir if run_dir is not None and run_dir.is_dir() else None
    if choice in ("onnxruntime", "openvino"):
        return onnx_backend(model, info, threads, run_dir, notes, runtime=choice)
    pair = ncnn_pair(source, info, model)
    if pair is None:
        raise BackendUnavailable("this model has no ncnn .param/.bin pair (pdd.export writes one)")
    try:
        b = NcnnBackend(*pair, threads)
    except ImportError as e:
        raise BackendUnavailable("the ncnn package is not installed (pip install ncnn)") from e
    check_parity(b, model, info)
    return b


def make_backend(model: torch.nn.Module, info, requested: str = "auto", *, device: torch.device | None = None,
                 threads: int | None = None, source=None, bf16: bool = False):
    """(backend, notes): the backend to run `model` with and one-line notes (why a fallback).

    `requested` is one of BACKENDS; bf16=True (the --bf16 flag) means torch with bf16 autocast,
    as it always has. `source` is what the model was loaded from (a RUN folder, a file, or
    RealESRGAN_x4plus): it says where an existing model.onnx or ncnn pair may be. auto tries the
    present runtimes in the measured order and takes the first that builds and agrees with torch."""
    from .config import cpu_has_native_bf16

    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; choose from {', '.join(BACKENDS)}")
    device = device or next(model.parameters()).device
    notes: list[str] = []
    if bf16 or requested == "torch":
        if bf16 and not info.supports_bf16:
            notes.append(f"{info.architecture} does not support bf16: running fp32")
        return TorchBackend(model, bf16 and info.supports_bf16), notes
    if requested == "auto":
        present = _present(source, info, model if device.type == "cpu" else None)
        native = cpu_has_native_bf16()
        first = auto_backend(device.type, native, info.supports_bf16, present)
        if device.type == "cpu" and native and info.supports_bf16:
            notes.append("this CPU has native bf16: --bf16 is several times faster (4.5x the ncnn runtime on an "
                         "AMX Xeon), its output within about 3/255 of fp32 instead of 1/255")
        if first.startswith("torch"):
            return TorchBackend(model, False), notes
        candidates = [b for b in FP32_CPU_ORDER[FP32_CPU_ORDER.index(first):] if b in present and b != "torch"]
    else:
        candidates = [requested]
        if device.type != "cpu":
            notes.append(f"{requested} runs on the CPU here; device {device.type} is used by torch only")
    # Module.cpu() moves in place: the torch fallback must keep its own device
    cpu_model = model if device.type == "cpu" else copy.deepcopy(model).float().cpu()
    for choice in candidates:
        try:
            return _build(choice, cpu_model, info, threads, source, notes), notes
        except BackendUnavailable as e:
            notes.append(f"{choice} unavailable ({e})")
    notes[-1] += "; using torch fp32"
    return TorchBackend(model, False), notes
