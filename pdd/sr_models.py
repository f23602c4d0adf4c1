"""Any upscaler as the generalist: load it safely, check it can be trained, export it back
(and to ONNX and ncnn for other apps: `python -m pdd.export`).

The RRDBNet family (ESRGAN, Real-ESRGAN x4plus/x2plus, BSRGAN, RealSR ...) is loaded into our
own `pdd.archs.RRDBNet`, whose BasicSR key layout is a contract: its exports load in
Real-ESRGAN's own inference script with ``strict=True``. Every other architecture is built by
`spandrel` (the loader behind ComfyUI and chaiNNer) from the file's state dict.

Weight files are untrusted input: ``.safetensors`` through safetensors, ``.pth`` through
``torch.load(weights_only=True)`` (`pdd.weights.load_state_dict`). spandrel's own file reader
(a custom unpickler) is never used; it only ever sees a plain dict of tensors.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .archs import RRDBNet
from .weights import WeightsError, WeightsSource, load_rrdbnet, load_state_dict

# Licences of the architectures' reference code, as their repositories state them (the
# weights of a given file may carry another licence: check where you got it).
ARCH_LICENSES = {
    "RRDBNet": "BSD-3-Clause (Real-ESRGAN / BasicSR code); weights: see their source",
    "ESRGAN": "Apache-2.0 (ESRGAN code)", "RealESRGAN_x4plus": "BSD-3-Clause (Real-ESRGAN release)",
    "Compact": "BSD-3-Clause (Real-ESRGAN SRVGGNetCompact)", "SwinIR": "Apache-2.0", "HAT": "MIT",
    "SPAN": "Apache-2.0", "OmniSR": "MIT", "DAT": "Apache-2.0", "RealCUGAN": "MIT",
}


class ArchitectureError(WeightsError):
    """An upscaler that cannot be adapted here: not image SR, not RGB, untrainable, bad scale."""


@dataclass
class ModelInfo:
    """What a loaded upscaler is; written to RUN/model.json."""
    name: str                      # file stem or registry name
    architecture: str              # "RRDBNet" (ours, BasicSR layout) or spandrel's architecture id
    scale: int
    source: str                    # where the weights came from
    license: str = "unknown"
    tags: list = field(default_factory=list)
    size_multiple: int = 1         # input height/width must be a multiple of this (0 padding otherwise)
    min_size: int = 0
    supports_bf16: bool = True
    rrdbnet_args: dict | None = None   # num_feat, num_block, num_grow_ch, scale for our RRDBNet
    parameters: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def read_state_dict(path) -> dict:
    """A plain {name: tensor} dict from a .safetensors or .pth (weights_only) file.

    Unwraps the usual containers (``params_ema`` first, then ``params``, ``state_dict``,
    ``model``) and DDP's ``module.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            obj = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"{path}: not a readable safetensors file: {e}") from e
    elif path.suffix.lower() in (".pth", ".pt", ".ckpt", ".bin"):
        obj = load_state_dict(path)
    else:
        raise WeightsError(f"{path}: unsupported weights file type {path.suffix!r} (use .pth or .safetensors)")
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors (possibly under 'params_ema'/'params'), "
                           f"got {type(obj).__name__}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _rrdbnet_args(sd: dict) -> dict | None:
    """Our RRDBNet's arguments if `sd` is in its BasicSR layout, else None."""
    need = ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_body.weight", "conv_up1.weight",
            "conv_up2.weight", "conv_hr.weight", "conv_last.weight")
    if not all(k in sd for k in need):
        return None
    in_ch = sd["conv_first.weight"].shape[1]
    scale = {3: 4, 12: 2, 48: 1}.get(in_ch)
    if scale is None or sd["conv_last.weight"].shape[0] != 3:
        return None
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.", k))}
    return dict(num_feat=sd["conv_first.weight"].shape[0], num_block=max(blocks) + 1,
                num_grow_ch=sd["body.0.rdb1.conv1.weight"].shape[0], scale=scale)


def _spandrel_esrgan_to_basicsr(sd_old: dict, num_block: int) -> dict:
    """spandrel's ESRGAN (old `model.N` layout) -> BasicSR names, for a plain x4/x2/x1 RRDBNet."""
    m = {"model.0.": "conv_first.", f"model.1.sub.{num_block}.": "conv_body.", "model.3.": "conv_up1.",
         "model.6.": "conv_up2.", "model.8.": "conv_hr.", "model.10.": "conv_last."}
    out = {}
    for k, v in sd_old.items():
        r = re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$", k)
        if r:
            out[f"body.{r[1]}.rdb{r[2]}.conv{r[3]}.{r[4]}"] = v
            continue
        for old, new in m.items():
            if k.startswith(old):
                out[new + k[len(old):]] = v
                break
        else:
            return {}
    return out


def load_upscaler(name_or_path="RealESRGAN_x4plus") -> tuple[torch.nn.Module, ModelInfo]:
    """(model in eval mode, ModelInfo) for a registry name, a weights file, or a pdd.adapt RUN dir."""
    p = Path(str(name_or_path)).expanduser()
    if p.is_dir():
        if not (p / "model.safetensors").is_file():
            raise WeightsError(f"{p}: not a finished pdd.adapt run (no model.safetensors)")
        model, info = load_upscaler(p / "model.safetensors")
        info.name = p.name
        return model, info
    if str(name_or_path) == "RealESRGAN_x4plus":
        net = load_rrdbnet("RealESRGAN_x4plus")
        args = dict(num_feat=64, num_block=23, num_grow_ch=32, scale=4)
        return net, ModelInfo("RealESRGAN_x4plus", "RRDBNet", 4, str(net.weights_source),
                              ARCH_LICENSES["RealESRGAN_x4plus"], rrdbnet_args=args,
                              parameters=sum(t.numel() for t in net.parameters()))
    if not p.is_file():
        raise WeightsError(f"{name_or_path}: neither a known name (RealESRGAN_x4plus) nor an existing "
                           f".pth/.safetensors file or pdd.adapt run folder")
    sd = read_state_dict(p)
    source = str(WeightsSource(p.stem, "explicit path", str(p.resolve())))
    args = _rrdbnet_args(sd)
    if args is not None:
        with torch.device("meta"):
            net = RRDBNet(**args)
        if set(net.state_dict()) == set(sd):
            net.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
            return net.eval(), ModelInfo(p.stem, "RRDBNet", args["scale"], source, ARCH_LICENSES["RRDBNet"],
                                         rrdbnet_args=args, parameters=sum(t.numel() for t in net.parameters()))
    return _load_spandrel(sd, p.stem, source)


def _load_spandrel(sd: dict, name: str, source: str) -> tuple[torch.nn.Module, ModelInfo]:
    import spandrel

    try:
        desc = spandrel.ModelLoader(device="cpu").load_from_state_dict(spandrel.canonicalize_state_dict(sd))
    except spandrel.UnsupportedModelError as e:
        raise ArchitectureError(f"{name}: spandrel does not recognise this architecture ({e})") from e
    except Exception as e:  # noqa: BLE001 -- a malformed file surfaces as any error inside an arch's load
        raise ArchitectureError(f"{name}: spandrel could not build a model from it: {type(e).__name__}: {e}") from e
    arch = desc.architecture.id
    if not isinstance(desc, spandrel.ImageModelDescriptor) or desc.input_channels != 3 or desc.output_channels != 3:
        raise ArchitectureError(f"{name}: a {arch} model ({desc.purpose}, {desc.input_channels}->"
                                f"{desc.output_channels} channels) is not an RGB image-to-image upscaler")
    model = desc.model.float().eval()
    if arch == "ESRGAN" and getattr(model, "plus", False) is False and getattr(model, "shuffle_factor", None) in (None, 2, 4):
        # The RRDBNet family goes into our class (the official key layout stays the contract);
        # checked numerically, and left to spandrel when the layouts do not line up.
        old = model.state_dict()
        n_block = 1 + max(int(m.group(1)) for k in old if (m := re.match(r"model\.1\.sub\.(\d+)\.RDB", k)))
        basic = _spandrel_esrgan_to_basicsr(old, n_block)
        args = _rrdbnet_args(basic) if basic else None
        if args is not None and args["scale"] == desc.scale:
            net = RRDBNet(**args)
            if set(net.state_dict()) == set(basic):
                net.load_state_dict(basic, strict=True)
                x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
                with torch.no_grad():
                    if torch.allclose(net.eval()(x), model(x), atol=1e-4):
                        return net, ModelInfo(name, "RRDBNet", args["scale"], source + " (converted from "
                                              "spandrel's ESRGAN layout)", ARCH_LICENSES["RRDBNet"],
                                              rrdbnet_args=args, parameters=sum(t.numel() for t in net.parameters()))
    req = desc.size_requirements
    info = ModelInfo(name, arch, int(desc.scale), source, ARCH_LICENSES.get(arch, "unknown"), list(desc.tags),
                     size_multiple=int(req.multiple_of or 1), min_size=int(req.minimum or 0),
                     supports_bf16=bool(desc.supports_bfloat16),
                     parameters=sum(t.numel() for t in model.parameters()))
    return model, info


def check_trainable(model: torch.nn.Module, info: ModelInfo, patch: int) -> None:
    """Raise ArchitectureError unless `model` maps (N,3,p,p) -> (N,3,sp,sp) with gradients to
    its parameters, and the discriminator can take s*p (divisible by 8: three stride-2 stages)."""
    s = info.scale
    if s < 2:
        raise ArchitectureError(f"{info.name}: a x{s} model (restoration, not upscaling) cannot be adapted "
                                f"by PDD here: the labeled pairs are made by x{s} downscaling")
    if (patch * s) % 8:
        raise ArchitectureError(f"{info.name}: HR patches of {patch}x{s}={patch * s} px; the U-Net "
                                f"discriminator needs a multiple of 8 (choose an LR patch that is a multiple of "
                                f"{8 // math.gcd(8, s)})")
    if info.size_multiple > 1 and patch % info.size_multiple:
        raise ArchitectureError(f"{info.name}: {info.architecture} needs inputs that are multiples of "
                                f"{info.size_multiple} px; the LR patch {patch} is not")
    params = [t for t in model.parameters()]
    if not params:
        raise ArchitectureError(f"{info.name}: {info.architecture} has no parameters to train")
    was = model.training
    model.train()
    x = torch.rand(1, 3, patch, patch, generator=torch.Generator().manual_seed(0))
    try:
        for t in params:
            t.requires_grad_(True)
        y = model(x)
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (1, 3, patch * s, patch * s):
            raise ArchitectureError(f"{info.name}: {info.architecture} maps (1,3,{patch},{patch}) to "
                                    f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}, "
                                    f"not (1,3,{patch * s},{patch * s})")
        y.float().mean().backward()
        if not any(t.grad is not None for t in params):
            raise ArchitectureError(f"{info.name}: {info.architecture}'s output does not depend on its parameters")
    except ArchitectureError:
        raise
    except Exception as e:  # noqa: BLE001 -- e.g. in-place ops, custom autograd without backward
        raise ArchitectureError(f"{info.name}: {info.architecture} cannot be trained here "
                                f"({type(e).__name__}: {str(e)[:200]})") from e
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was)


def state_dict_for_export(model: torch.nn.Module) -> dict:
    """Contiguous fp32 CPU copies (safetensors refuses shared or strided storage)."""
    return {k: v.detach().float().cpu().contiguous().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------ other apps' formats
# (ONNX and ncnn; `python -m pdd.export` is the command line, its docstring the story)

ONNX_OPSET = 17
ONNX_INPUT, ONNX_OUTPUT = "input", "output"
NCNN_INPUT, NCNN_OUTPUT = "data", "output"  # RealESRGAN::process in realesrgan-ncnn-vulkan: ex.input("data"), ex.extract("output")
NCNN_DIR = "models"
# Largest max-abs difference from PyTorch (output in [0, 1] units) at which an export is kept.
# ONNX runs the same fp32 arithmetic in another order; ncnn stores fp16 weights (and uses fp16
# storage where the CPU or GPU has it), like the official Real-ESRGAN ncnn models.
ONNX_TOL = 1e-3
NCNN_TOL = 2 / 255


class ExportUnavailable(RuntimeError):
    """A format that cannot hold this model, or a converter that is missing or failed."""


def app_model_name(name: str, scale: int) -> str:
    """The model's name as upscayl and realesrgan-ncnn-vulkan should see it: ``<name>-x<scale>``.

    Both take the scale from the name (the first of x1/1x, x2/2x, x3/3x, x4/4x found), so an
    "x" next to a digit anywhere else in `name` is split with "-" ("mix2024" -> "mix-2024")."""
    s = re.sub(r"[^A-Za-z0-9_-]+", "-", str(name))
    s = re.sub(r"(?i)(?<=\d)(?=x)|(?<=x)(?=\d)", "-", s).strip("-_") or "pdd"
    return f"{s}-x{scale}"


def size_multiple(info) -> int:
    """Inputs must be a multiple of this: the model's own need, and RRDBNet x2/x1's pixel unshuffle."""
    m = max(1, int(info.size_multiple or 1))
    if info.architecture == "RRDBNet":
        m = max(m, {2: 2, 1: 4}.get(int(info.scale), 1))
    return m


def sample_sizes(info) -> tuple[tuple[int, int], tuple[int, int]]:
    """(trace size, check size): different heights and widths, the check one odd where allowed,
    so that a graph which baked in the traced shape fails the check."""
    m = size_multiple(info)
    base = max(16, int(info.min_size or 0))
    up = lambda v: -(-v // m) * m  # noqa: E731
    trace = (up(base), up(base))
    check = (up(base - 3), up(base + 3)) if m == 1 else (up(base) + m, up(base) + 2 * m)
    return trace, check


def _sample(hw: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(seed))


def _tmp_path(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.{os.getpid()}.tmp")


# ------------------------------------------------------------------------------ runtimes


def run_onnx(path, x: np.ndarray) -> np.ndarray:
    """model.onnx on NCHW float32 `x` with onnxruntime's CPU provider."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 4  # failures come back as exceptions; no C++ log lines
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def run_ncnn(param, binary, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """The ncnn pair on one (1, 3, H, W) float32 image with the `ncnn` package's CPU defaults,
    fed and read through the blob names the apps use."""
    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads
    if net.load_param(str(param)) != 0 or net.load_model(str(binary)) != 0:
        raise ExportUnavailable(f"ncnn could not load {param} / {binary}")
    ex = net.create_extractor()
    ex.input(NCNN_INPUT, ncnn.Mat(np.ascontiguousarray(x[0], dtype=np.float32)))
    ret, out = ex.extract(NCNN_OUTPUT)
    if ret != 0:
        raise ExportUnavailable(f"ncnn could not compute blob {NCNN_OUTPUT!r} (status {ret})")
    return np.array(out)[None]


@torch.no_grad()
def _torch_ref(model, x: torch.Tensor) -> np.ndarray:
    return model(x).float().numpy()


def _check(name: str, got: np.ndarray, ref: np.ndarray, tol: float) -> float:
    if got.shape != ref.shape:
        raise ExportUnavailable(f"{name} gives shape {got.shape} where PyTorch gives {ref.shape}")
    diff = float(np.abs(got - ref).max())
    # tol is for outputs in [0, 1]; an untrained model's larger outputs scale it (fp16 weights'
    # error is relative)
    limit = tol * max(1.0, float(np.abs(ref).max()))
    if not diff <= limit:  # also catches NaN
        raise ExportUnavailable(f"{name} does not match PyTorch: max abs difference {diff:.3g} > {limit:.3g}")
    return diff


# ------------------------------------------------------------------------------ writers


def write_onnx(model, info, dst, opset: int = ONNX_OPSET) -> dict:
    """RUN/model.onnx with dynamic height and width, checked in onnxruntime before it is kept.
    Returns {"path", "opset", "input", "output", "max_abs_diff", "checked_on", "seconds"}."""
    try:
        import onnx  # noqa: F401 -- the TorchScript exporter serialises through it
    except ImportError as e:
        raise ExportUnavailable("the onnx package is not installed (pip install onnx; see pyproject.toml)") from e
    dst = Path(dst)
    (trace_hw, check_hw) = sample_sizes(info)
    tmp = _tmp_path(dst)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation notice, tracer warnings
            torch.onnx.export(model, (_sample(trace_hw),), str(tmp), input_names=[ONNX_INPUT],
                              output_names=[ONNX_OUTPUT], opset_version=opset, do_constant_folding=True,
                              dynamic_axes={ONNX_INPUT: {2: "height", 3: "width"},
                                            ONNX_OUTPUT: {2: "out_height", 3: "out_width"}},
                              dynamo=False)
        seconds = time.perf_counter() - t0
        x = _sample(check_hw, seed=1)
        try:
            got = run_onnx(tmp, x.numpy())
        except ImportError:
            diff = None  # onnxruntime absent: written, not checked
        except ExportUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 -- onnxruntime refusing the graph is a reason, not a crash
            raise ExportUnavailable(f"the exported graph does not run at another input size (traced at "
                                    f"{trace_hw[0]}x{trace_hw[1]}, run at {check_hw[0]}x{check_hw[1]}): this "
                                    f"architecture's shape handling does not export with dynamic height/width "
                                    f"({type(e).__name__}: {str(e)[:160]})") from e
        else:
            diff = _check("the ONNX export", got, _torch_ref(model, x), ONNX_TOL)
        os.replace(tmp, dst)
    except ExportUnavailable:
        raise
    except Exception as e:  # noqa: BLE001 -- an architecture the exporter cannot trace
        raise ExportUnavailable(f"torch.onnx.export failed: {type(e).__name__}: {str(e)[:300]}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": dst, "opset": opset, "input": ONNX_INPUT, "output": ONNX_OUTPUT,
            "max_abs_diff": diff, "checked_on": f"1x3x{check_hw[0]}x{check_hw[1]}", "seconds": round(seconds, 1)}


def rename_ncnn_blobs(text: str, mapping: dict[str, str]) -> str:
    """An ncnn .param with blobs renamed (layer lines: type name n_in n_out inputs... outputs... k=v...)."""
    lines = text.splitlines()
    if not lines or lines[0].strip() != "7767517":
        raise ExportUnavailable("pnnx wrote something that is not an ncnn text .param")
    out = lines[:2]
    for ln in lines[2:]:
        t = ln.split()
        if len(t) < 4:
            out.append(ln)
            continue
        n = int(t[2]) + int(t[3])
        t[4:4 + n] = [mapping.get(b, b) for b in t[4:4 + n]]
        out.append(" ".join(t))
    return "\n".join(out) + "\n"


def _pnnx_exe() -> str:
    try:
        import pnnx
    except ImportError as e:
        raise ExportUnavailable("pnnx is not installed (pip install pnnx; see pyproject.toml)") from e
    if not os.access(pnnx.EXEC_PATH, os.X_OK):
        raise ExportUnavailable(f"pnnx's converter {pnnx.EXEC_PATH} is missing or not executable")
    return pnnx.EXEC_PATH


def _pnnx_memory_limit() -> int | None:
    """Bytes of address space pnnx may take: half the RAM, at most 8 GiB. pnnx's ncnn pass can
    grow without bound (RealESRGAN_x4plus: past 20 GB); capped, it fails alone with bad_alloc
    instead of waking the system's out-of-memory killer."""
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return int(min(8 << 30, ram // 2))


def _limit_memory(limit: int | None):
    if limit is None:
        return None
    try:
        import resource
    except ImportError:  # Windows: no rlimits
        return None

    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def _pnnx_version() -> str:
    try:
        from importlib.metadata import version
        return version("pnnx")
    except Exception:  # noqa: BLE001 -- only a label
        return "(version unknown)"


def _is_x4_rrdbnet(info: ModelInfo) -> bool:
    return info.architecture == "RRDBNet" and bool(info.rrdbnet_args) and int(info.scale) == 4


def write_ncnn(model, info, out_dir, name: str, fp16: bool = True, timeout: float = 1800) -> dict:
    """out_dir/<name>.param + .bin, blobs named data/output, checked in the ncnn runtime before
    they are kept. An x4 RRDBNet is written directly (`pdd.weights.rrdbnet_ncnn`: the official
    realesrgan-x4plus graph's form; pnnx runs out of memory on 23 blocks); any other
    architecture goes through pnnx. Returns {"path", "bin", "name", ..., "max_abs_diff"}."""
    out_dir = Path(out_dir)
    trace_hw, check_hw = sample_sizes(info)
    if _is_x4_rrdbnet(info):
        from .weights import rrdbnet_ncnn

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="pdd-ncnn-") as work:
            w = Path(work)
            param_text, binary = rrdbnet_ncnn(state_dict_for_export(model), info.rrdbnet_args["num_block"], fp16=fp16)
            (w / "m.param").write_text(param_text)
            (w / "m.bin").write_bytes(binary)
            return _keep_ncnn(w, model, out_dir, name, check_hw, fp16, time.perf_counter() - t0, "written directly")
    exe = _pnnx_exe()
    # a second trace shape tells pnnx that height and width vary
    shape2 = (trace_hw[0] + 2 * size_multiple(info), trace_hw[1] + size_multiple(info))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pdd-pnnx-") as work:
        w = Path(work)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(model, _sample(trace_hw), check_trace=False)
            traced.save(str(w / "model.pt"))
        except Exception as e:  # noqa: BLE001
            raise ExportUnavailable(f"torch.jit.trace failed (pnnx needs a traceable model): "
                                    f"{type(e).__name__}: {str(e)[:300]}") from e
        del traced
        cmd = [exe, str(w / "model.pt"), f"inputshape=[1,3,{trace_hw[0]},{trace_hw[1]}]f32",
               f"inputshape2=[1,3,{shape2[0]},{shape2[1]}]f32", "device=cpu", f"fp16={int(fp16)}",
               f"ncnnparam={w / 'm.param'}", f"ncnnbin={w / 'm.bin'}", f"ncnnpy={w / 'm_ncnn.py'}",
               f"pnnxparam={w / 'p.param'}", f"pnnxbin={w / 'p.bin'}", f"pnnxpy={w / 'p.py'}",
               f"pnnxonnx={w / 'p.onnx'}"]
        limit = _pnnx_memory_limit()
        try:
            r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout, check=False,
                               preexec_fn=_limit_memory(limit))
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ExportUnavailable(f"pnnx did not run: {type(e).__name__}: {e}") from e
        if r.returncode != 0 or not (w / "m.param").is_file() or not (w / "m.bin").is_file():
            log = (r.stderr or "") + (r.stdout or "")
            if "bad_alloc" in log or r.returncode in (-9, 137):
                raise ExportUnavailable(
                    f"pnnx ran out of memory ({(limit or 0) / 2**30:.1f} GiB allowed) converting this model: its "
                    f"ncnn pass grows without bound on deep densely connected graphs (RRDBNet with more than "
                    f"about 16 blocks, e.g. RealESRGAN_x4plus's 23); use model.onnx or model.pth")
            tail = log.strip().splitlines()[-3:]
            raise ExportUnavailable(f"pnnx failed (exit status {r.returncode}): {' | '.join(tail)[:400]}")
        seconds = time.perf_counter() - t0
        param_text = (w / "m.param").read_text()
        from .weights import parse_ncnn_param
        try:
            layers = parse_ncnn_param(param_text)
        except WeightsError as e:
            raise ExportUnavailable(f"pnnx wrote an unreadable .param: {e}") from e
        ins = [lay.outputs[0] for lay in layers if lay.type == "Input"]
        produced = {b for lay in layers for b in lay.outputs}
        consumed = {b for lay in layers for b in lay.inputs}
        outs = sorted(produced - consumed)
        if len(ins) != 1 or len(outs) != 1:
            raise ExportUnavailable(f"the ncnn graph has inputs {ins} and outputs {outs}; the apps need one of each")
        (w / "m.param").write_text(rename_ncnn_blobs(param_text, {ins[0]: NCNN_INPUT, outs[0]: NCNN_OUTPUT}))
        return _keep_ncnn(w, model, out_dir, name, check_hw, fp16, seconds, "pnnx " + _pnnx_version())


def _keep_ncnn(w: Path, model, out_dir: Path, name: str, check_hw, fp16: bool, seconds: float, how: str) -> dict:
    """Run w/m.param + w/m.bin in the ncnn runtime against PyTorch; if it agrees, move them to
    out_dir/<name>.param/.bin (atomically, .bin first) and describe them."""
    x = _sample(check_hw, seed=1)
    try:
        got = run_ncnn(w / "m.param", w / "m.bin", x.numpy())
    except ImportError:
        diff = None  # the ncnn package absent: written, not checked
    except ExportUnavailable:
        raise
    except Exception as e:  # noqa: BLE001 -- the runtime refusing the graph is a reason, not a crash
        raise ExportUnavailable(f"the ncnn runtime cannot run the converted graph: {type(e).__name__}: "
                                f"{str(e)[:200]}") from e
    else:
        diff = _check("the ncnn export", got, _torch_ref(model, x), NCNN_TOL)
    out_dir.mkdir(parents=True, exist_ok=True)
    param, binary = out_dir / f"{name}.param", out_dir / f"{name}.bin"
    tmps = [_tmp_path(param), _tmp_path(binary)]
    try:
        shutil.copyfile(w / "m.param", tmps[0])
        shutil.copyfile(w / "m.bin", tmps[1])
        os.replace(tmps[1], binary)
        os.replace(tmps[0], param)
    finally:
        for t in tmps:
            t.unlink(missing_ok=True)
    return {"path": param, "bin": binary, "name": name, "input": NCNN_INPUT, "output": NCNN_OUTPUT,
            "fp16_weights": fp16, "max_abs_diff": diff, "checked_on": f"1x3x{check_hw[0]}x{check_hw[1]}",
            "seconds": round(seconds, 1), "converter": how}


EXPORT_FORMATS = ("pth", "safetensors", "onnx", "ncnn")
# Real-ESRGAN's inference_realesrgan.py builds the network from -n MODEL_NAME and only reads the
# weights from --model_path (strict=True): an RRDBNet export loads there only with these shapes.
REALESRGAN_SCRIPT_NAMES = {(64, 23, 32, 4): "RealESRGAN_x4plus", (64, 6, 32, 4): "RealESRGAN_x4plus_anime_6B",
                           (64, 23, 32, 2): "RealESRGAN_x2plus"}
SPANDREL_APPS = "spandrel-based apps (chaiNNer, ComfyUI, ...)"


def spandrel_refusal(sd: dict, info: ModelInfo) -> str | None:
    """None if spandrel (the pinned version) builds the same model from `sd`, else why not.

    Tried, not assumed: e.g. spandrel 0.4.2 builds ESRGAN with 32 growth channels only, so an
    RRDBNet with num_grow_ch 16 or 8 (the scratch and tiny presets) fails with a size mismatch."""
    import spandrel

    why = ""
    if info.architecture == "RRDBNet" and info.rrdbnet_args and info.rrdbnet_args["num_grow_ch"] != 32:
        why = (f"spandrel {spandrel.__version__} builds ESRGAN/RRDBNet with 32 growth channels only; "
               f"this model has num_grow_ch={info.rrdbnet_args['num_grow_ch']}")
    try:
        desc = spandrel.ModelLoader(device="cpu").load_from_state_dict(spandrel.canonicalize_state_dict(dict(sd)))
    except Exception as e:  # noqa: BLE001 -- any error inside an architecture's loader means "not loadable"
        return why or f"spandrel {spandrel.__version__} refuses it: {type(e).__name__}: {str(e)[:200]}"
    if int(desc.scale) != int(info.scale):
        return f"spandrel {spandrel.__version__} reads it as a x{desc.scale} {desc.architecture.id}, not x{info.scale}"
    return None


def _realesrgan_script_name(info: ModelInfo) -> str | None:
    a = info.rrdbnet_args
    if info.architecture != "RRDBNet" or not a:
        return None
    return REALESRGAN_SCRIPT_NAMES.get((a["num_feat"], a["num_block"], a["num_grow_ch"], a["scale"]))


def _write_weights(model, info: ModelInfo, run_dir: Path, fmt: str) -> Path:
    """RUN/model.pth ({"params_ema": ...}) or RUN/model.safetensors, atomically."""
    import os

    sd = state_dict_for_export(model)
    dst = run_dir / f"model.{fmt}"
    tmp = dst.with_name(f".model.{fmt}.tmp")
    try:
        if fmt == "pth":
            torch.save({"params_ema": sd}, tmp)
        else:
            from safetensors.torch import save_file
            save_file(sd, str(tmp), metadata={"architecture": info.architecture, "scale": str(info.scale),
                                              "base": info.name, "made_by": "pdd"})
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst


def export_formats(model: torch.nn.Module, info: ModelInfo, run_dir, formats=EXPORT_FORMATS,
                   name: str | None = None, log=None) -> dict[str, dict]:
    """Write `formats` of `model` into run_dir; what model.json's "formats" section holds.

    Per format either {"path": relative path, "loads_in": [apps], ...} (ONNX and ncnn also
    carry "max_abs_diff" from PyTorch on an odd-sized check image, ncnn also "bin" and "name";
    a file that some app cannot load carries "not_loadable_in": {app: why}) or
    {"unavailable": why}. pth and safetensors are written always (an OSError there is raised);
    ONNX and ncnn failures become reasons. ncnn files go to run_dir/models/<name>-x<scale>.*
    (`pdd.export.app_model_name`; `name` defaults to info.name)."""
    import copy

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    unknown = [f for f in formats if f not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(f"unknown export formats {unknown}; choose from {EXPORT_FORMATS}")
    model = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
    was_training = model.training
    model.eval()
    out: dict[str, dict] = {}
    spandrel_why = None
    if "pth" in formats or "safetensors" in formats:
        spandrel_why = spandrel_refusal(state_dict_for_export(model), info)
    try:
        for fmt in formats:
            if fmt in ("pth", "safetensors"):
                path = _write_weights(model, info, run_dir, fmt)
                entry = {"path": path.name, "loads_in": ["pdd (python -m pdd.upscale --model, pdd.adapt --generalist)"]}
                if fmt == "pth" and (script := _realesrgan_script_name(info)):
                    entry["loads_in"].append(f"Real-ESRGAN inference_realesrgan.py -n {script} --model_path {path.name}")
                if spandrel_why is None:
                    entry["loads_in"].append(SPANDREL_APPS)
                else:
                    entry["not_loadable_in"] = {SPANDREL_APPS: spandrel_why}
                out[fmt] = entry
                continue
            try:
                if fmt == "onnx":
                    r = write_onnx(model, info, run_dir / "model.onnx")
                    r["path"] = r["path"].name
                    r["loads_in"] = ["chaiNNer (ONNX Load Model)", "onnxruntime"]
                else:
                    app_name = app_model_name(name or info.name, info.scale)
                    r = write_ncnn(model, info, run_dir / NCNN_DIR, app_name)
                    r["path"], r["bin"] = (f"{NCNN_DIR}/{p.name}" for p in (r["path"], r["bin"]))
                    r["loads_in"] = [f"upscayl (custom models folder {NCNN_DIR}/, model {app_name})",
                                     f"realesrgan-ncnn-vulkan / upscayl-bin (-m {NCNN_DIR} -n {app_name})",
                                     "chaiNNer (NCNN Load Model)"]
                out[fmt] = r
            except ExportUnavailable as e:
                out[fmt] = {"unavailable": str(e)}
            if log is not None:
                log(f"export {fmt}: " + (out[fmt].get("unavailable") or out[fmt]["path"]))
    finally:
        model.train(was_training)
    return out


def export(model: torch.nn.Module, info: ModelInfo, run_dir, formats=EXPORT_FORMATS) -> dict[str, Path | str]:
    """RUN/model.pth ({"params_ema": ...}: BasicSR layout for RRDBNet), RUN/model.safetensors
    (the base model's own key layout), RUN/model.onnx and the ncnn pair RUN/models/<name>-x<s>.*,
    each written atomically. Returns {format: Path} for what was written and {format: reason}
    (a str) for what could not be; `export_formats` gives the full model.json entries."""
    run_dir = Path(run_dir)
    res = export_formats(model, info, run_dir, formats)
    return {f: (e["unavailable"] if "unavailable" in e else run_dir / e["path"]) for f, e in res.items()}
