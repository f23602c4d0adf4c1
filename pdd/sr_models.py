"""Any upscaler as the generalist: load it safely, check it can be trained, export it back.

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
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

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


def export(model: torch.nn.Module, info: ModelInfo, run_dir) -> dict[str, Path]:
    """RUN/model.pth ({"params_ema": ...}: BasicSR layout for RRDBNet) and RUN/model.safetensors
    (the base model's own key layout), both written atomically."""
    import os

    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    sd = state_dict_for_export(model)
    out = {"pth": run_dir / "model.pth", "safetensors": run_dir / "model.safetensors"}
    tmp = out["pth"].with_name(".model.pth.tmp")
    torch.save({"params_ema": sd}, tmp)
    os.replace(tmp, out["pth"])
    tmp = out["safetensors"].with_name(".model.safetensors.tmp")
    save_file(sd, str(tmp), metadata={"architecture": info.architecture, "scale": str(info.scale),
                                      "base": info.name, "made_by": "pdd.adapt"})
    os.replace(tmp, out["safetensors"])
    return out
