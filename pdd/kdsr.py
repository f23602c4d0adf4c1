"""KDSR (Xia et al., ICLR 2023): knowledge-distillation based blind SR, a second generalist.

Written from the paper and ``../shared/specs/kdsr.md`` (the official repository has no
licence file; no code of it is copied here). The modules keep the official ``state_dict``
layout (names and shapes; the spec lists it) so the released files load with
``strict=True``. That layout is a public contract: do not rename submodules.

Pieces (C features, N blocks, n_res encoder res-blocks; every conv is k x k, padding k//2,
bias; every activation LeakyReLU(0.1); PyTorch's default init, as the official code):

- ``KDIDE`` (the encoder, KD-IDE): convs + res-blocks + global average pool -> ``mlp``
  gives D' (4C, the distilled vector) -> ``compress`` gives D (C, drives the SR net).
  The teacher's encoder sees ``cat[LR, pixel_unshuffle(HR, s)]`` (3 + 3 s^2 channels),
  the student's only the LR.
- ``IDRDynamicConv`` (IDR-DDC): a per-image depthwise 3x3 kernel predicted from D.
- ``IDRResidualBlock`` (IDR-DCRB): dynamic conv -> LeakyReLU -> conv3x3 -> + input.
- ``KDSRNet`` (the SR net, "G"): mean shift, head conv, N blocks, conv, global skip,
  PixelShuffle upsampler, conv, mean shift back. No output clamp.
- ``KDSRStudent`` (``G`` + ``E_st``): ``forward(lr) -> SR``, so it goes wherever an SR
  network is expected; ``idr(lr) -> (D, D')`` for analysis. This is the released model.
- ``KDSRTeacher`` (``G`` + ``E``): ``forward(lr, hr) -> SR``; ``idr(lr, hr)``.

Deviation from the official code, on purpose: ``forward`` always returns the SR tensor
(the official student returns ``(sr, [D'])`` in train mode, which a generic trainer or
evaluator would mistake for an image); and the dynamic convolution uses ``reshape``,
not ``view``, which raises on channels_last tensors.

Weights: ``resolve_kdsr`` (explicit path -> torch hub cache -> an error saying where the
files are downloaded; there is no URL) and ``load_kdsr`` (weights-only, strict, a readable
mismatch report). Training stages live in ``pdd.kdsr_train`` (CLI ``python -m pdd.kdsr_train``).
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

# MeanShift statistics of the official code (DIV2K RGB mean, rgb_range 1)
RGB_MEAN = (0.4488, 0.4371, 0.4040)
LRELU_SLOPE = 0.1
TAU = 0.15  # KD temperature of every official config (kd_opt.temperature, --temperature)


@dataclass(frozen=True)
class KDSRSize:
    """Width C, number of IDR-DCRB blocks N and encoder res-blocks n_res."""

    n_feats: int
    n_blocks: int
    n_encoder_res: int


# The released sizes (spec section 2) and one for tests. "S" in the paper's KDSR_S-M means
# "student"; M, L and GAN are the sizes.
VARIANTS = {
    "gan": KDSRSize(128, 42, 6),  # KDSR_S-GAN (v1/v2), real-world, 18.85 M parameters
    "M": KDSRSize(64, 53, 9),     # KDSR_S-M, classic, 5.80 M
    "L": KDSRSize(128, 28, 5),    # KDSR_S-L, classic, 14.19 M
    "tiny": KDSRSize(32, 4, 2),   # tests and smoke runs only: not a released size, not evidence
}


def variant_size(variant: str | KDSRSize) -> KDSRSize:
    if isinstance(variant, KDSRSize):
        return variant
    if variant not in VARIANTS:
        raise ValueError(f"unknown KDSR variant {variant!r}; valid: {', '.join(VARIANTS)}")
    return VARIANTS[variant]


def _size_name(size: KDSRSize) -> str:
    return next((k for k, v in VARIANTS.items() if v == size), str(size))


def _conv(c_in: int, c_out: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=True)


def _lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(LRELU_SLOPE, inplace=False)


# --------------------------------------------------------------------------------------
# Building blocks


class MeanShift(nn.Conv2d):
    """A frozen 1x1 conv adding ``sign * RGB_MEAN``: weight = I, bias = sign * mean.

    Kept as a conv with (non-trainable) parameters because the official checkpoints store
    its weight and bias, and the paper's parameter counts include these 24 values.
    """

    frozen = True  # constants: trainers leave these parameters out (pdd.train.trainable)

    def __init__(self, sign: int):
        super().__init__(3, 3, 1)
        with torch.no_grad():  # (a no-op on the meta device, where the file's values are assigned)
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * torch.tensor(RGB_MEAN))
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # detached: stays frozen even when a trainer calls model.requires_grad_(True)
        # (pdd.train.trainable does, then honours ``frozen``), so no optimiser sees a gradient for it
        return self._conv_forward(x, self.weight.detach(), self.bias.detach())


class IDRDynamicConv(nn.Module):
    """IDR-DDC: a depthwise 3x3 convolution whose kernel, per image, is predicted from D.

    ``kernel`` maps D (B, C) -> (B, 9C) without biases; image b's channel c is filtered by
    its own 3x3 kernel (zero padding, no bias). Implemented as one grouped convolution over
    the batch folded into channels (B*C groups), which keeps images independent.
    """

    def __init__(self, n_feats: int):
        super().__init__()
        self.kernel = nn.Sequential(nn.Linear(n_feats, n_feats, bias=False), _lrelu(),
                                    nn.Linear(n_feats, 9 * n_feats, bias=False))

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        weight = self.kernel(d).reshape(b * c, 1, 3, 3)
        # reshape (not view): a channels_last x is not viewable as (1, B*C, H, W)
        out = F.conv2d(x.reshape(1, b * c, h, w), weight, groups=b * c, padding=1)
        return out.reshape(b, c, h, w)


class IDRResidualBlock(nn.Module):
    """IDR-DCRB: ``conv1(lrelu(da_conv1(x, D))) + x``."""

    def __init__(self, n_feats: int):
        super().__init__()
        self.da_conv1 = IDRDynamicConv(n_feats)
        self.conv1 = _conv(n_feats, n_feats)
        self.lrelu = _lrelu()

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.lrelu(self.da_conv1(x, d))) + x


class DegradationAwareGroup(nn.Module):
    """The N IDR-DCRBs in sequence (``.body``), all driven by the same D."""

    def __init__(self, n_feats: int, n_blocks: int):
        super().__init__()
        self.body = nn.Sequential(*[IDRResidualBlock(n_feats) for _ in range(n_blocks)])

    def forward(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        for block in self.body:
            x = block(x, d)
        return x


def _upsampler(scale: int, n_feats: int) -> nn.Sequential:
    """conv(C, 4C) + PixelShuffle(2) per factor 2; conv(C, 9C) + PixelShuffle(3) for x3. No activation."""
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0:
        for _ in range(scale.bit_length() - 1):
            layers += [_conv(n_feats, 4 * n_feats), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [_conv(n_feats, 9 * n_feats), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"KDSR upsamples by 2^n or 3, got scale {scale}")
    return nn.Sequential(*layers)


class KDSRNet(nn.Module):
    """The SR network "G": ``forward(lr, d) -> SR`` given the degradation representation D."""

    def __init__(self, n_feats: int = 128, n_blocks: int = 42, scale: int = 4):
        super().__init__()
        self.scale = scale
        self.sub_mean = MeanShift(-1)
        self.add_mean = MeanShift(+1)
        self.head = nn.Sequential(_conv(3, n_feats))
        self.body = nn.Sequential(DegradationAwareGroup(n_feats, n_blocks), _conv(n_feats, n_feats))
        self.tail = nn.Sequential(_upsampler(scale, n_feats), _conv(n_feats, 3))

    def forward(self, lr: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        x = self.head(self.sub_mean(lr))
        res = self.body[1](self.body[0](x, d)) + x
        return self.add_mean(self.tail(res))


class ResBlock(nn.Module):
    """``body = conv, LReLU, conv``; output ``body(x) + x`` (no residual scaling)."""

    def __init__(self, n_feats: int):
        super().__init__()
        self.body = nn.Sequential(_conv(n_feats, n_feats), _lrelu(), _conv(n_feats, n_feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class KDIDE(nn.Module):
    """KD-IDE, the implicit degradation estimator: ``forward(x) -> (D (B, C), D' (B, 4C))``.

    ``E``: conv(in, C), LReLU, n_res ResBlocks, conv(C, 2C), LReLU, conv(2C, 2C), LReLU,
    conv(2C, 4C), LReLU, global average pool; ``mlp`` gives D' (what KD distils),
    ``compress`` gives D (what drives every IDR-DDC). One vector per image, any size.
    """

    def __init__(self, in_ch: int = 3, n_feats: int = 128, n_encoder_res: int = 6):
        super().__init__()
        c = n_feats
        self.E = nn.Sequential(
            _conv(in_ch, c), _lrelu(),
            *[ResBlock(c) for _ in range(n_encoder_res)],
            _conv(c, 2 * c), _lrelu(), _conv(2 * c, 2 * c), _lrelu(), _conv(2 * c, 4 * c), _lrelu(),
            nn.AdaptiveAvgPool2d(1))
        self.mlp = nn.Sequential(nn.Linear(4 * c, 4 * c), _lrelu(), nn.Linear(4 * c, 4 * c), _lrelu())
        self.compress = nn.Sequential(nn.Linear(4 * c, c), _lrelu())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.E(x).flatten(1)
        d_rich = self.mlp(pooled)
        return self.compress(d_rich), d_rich


def _check_lr(lr: torch.Tensor) -> None:
    if lr.dim() != 4 or lr.shape[1] != 3:
        raise ValueError(f"KDSR expects an LR batch (N, 3, h, w) in [0, 1], got {tuple(lr.shape)}")


# --------------------------------------------------------------------------------------
# The two networks


class KDSRStudent(nn.Module):
    """KDSR with the student encoder (the released, inference-time model).

    ``forward(lr) -> SR`` (N, 3, s h, s w), unclamped, in train and eval mode alike.
    ``idr(lr) -> (D, D')``; ``sr_from_idr(lr, d)`` runs G with a given D, e.g. one D
    computed on the whole image and shared by tiles (D is a global per-image vector, so
    tiling without it would give every tile its own D).
    """

    def __init__(self, variant: str | KDSRSize = "gan", scale: int = 4):
        super().__init__()
        size = variant_size(variant)
        self.variant = _size_name(size)
        self.size, self.scale = size, scale
        self.G = KDSRNet(size.n_feats, size.n_blocks, scale)
        self.E_st = KDIDE(3, size.n_feats, size.n_encoder_res)
        self._shared_d: torch.Tensor | None = None  # set only inside shared_idr()

    def idr(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_lr(lr)
        return self.E_st(lr)

    @contextlib.contextmanager
    def shared_idr(self, lr: torch.Tensor):
        """Inside this block ``forward`` uses the D of the whole ``lr`` batch for any input of
        that batch size: for tiled inference, where each tile would otherwise estimate its own
        D (D is a global per-image vector). ``with net.shared_idr(lr): upscale(net, lr, tile=64)``."""
        with torch.no_grad():
            d, _ = self.idr(lr)
        self._shared_d = d
        try:
            yield d
        finally:
            self._shared_d = None

    def sr_from_idr(self, lr: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return self.G(lr, d)

    def forward_with_idr(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(SR, D, D') in one pass (training needs D' for the KD loss)."""
        d, d_rich = self.idr(lr)
        return self.G(lr, d), d, d_rich

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        if self._shared_d is not None:
            if self._shared_d.shape[0] != lr.shape[0]:
                raise ValueError(f"shared_idr holds D for {self._shared_d.shape[0]} images, the input has {lr.shape[0]}")
            return self.G(lr, self._shared_d.to(lr.device))
        d, _ = self.idr(lr)
        return self.G(lr, d)


def teacher_input(lr: torch.Tensor, hr: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """``cat[LR, pixel_unshuffle(HR, scale)]``: channel 3 + s^2 k + s i + j holds HR channel k
    at sub-pixel (i, j). HR must be exactly ``scale`` x LR."""
    _check_lr(lr)
    if hr.dim() != 4 or hr.shape[:2] != lr.shape[:2] or tuple(hr.shape[-2:]) != (lr.shape[-2] * scale, lr.shape[-1] * scale):
        raise ValueError(f"KDSR teacher: HR {tuple(hr.shape)} must be exactly {scale}x the LR {tuple(lr.shape)} "
                         f"(same batch and channels)")
    return torch.cat([lr, F.pixel_unshuffle(hr, scale)], dim=1)


class KDSRTeacher(nn.Module):
    """KDSR with the teacher encoder, which sees LR and HR: ``forward(lr, hr) -> SR``."""

    def __init__(self, variant: str | KDSRSize = "gan", scale: int = 4):
        super().__init__()
        size = variant_size(variant)
        self.variant = _size_name(size)
        self.size, self.scale = size, scale
        self.G = KDSRNet(size.n_feats, size.n_blocks, scale)
        self.E = KDIDE(3 + 3 * scale * scale, size.n_feats, size.n_encoder_res)

    def idr(self, lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.E(teacher_input(lr, hr, self.scale))

    def forward_with_idr(self, lr: torch.Tensor, hr: torch.Tensor):
        d, d_rich = self.idr(lr, hr)
        return self.G(lr, d), d, d_rich

    def forward(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        d, _ = self.idr(lr, hr)
        return self.G(lr, d)


def kd_loss(d_rich_student: torch.Tensor, d_rich_teacher: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """KL(softmax(D'_T / tau) || softmax(D'_S / tau)), summed over the 4C entries and averaged
    over the batch ('batchmean'); no tau^2 factor; the teacher side carries no gradient.
    Computed in fp32 (a log-softmax at tau = 0.15 magnifies bf16 rounding by 1/tau)."""
    with torch.autocast(d_rich_student.device.type, enabled=False):
        log_p_s = F.log_softmax(d_rich_student.float() / tau, dim=1)
        p_t = F.softmax(d_rich_teacher.detach().float() / tau, dim=1)
        return F.kl_div(log_p_s, p_t, reduction="batchmean")


# --------------------------------------------------------------------------------------
# Weights


# The released files (spec section 2), all hosted on Google Drive folders linked from the
# official README: no direct URL, no published hash. file name -> (role, variant, container)
RELEASED = {
    "KDSRS-GAN": ("KDSRS-GAN.pth", "student", "gan"),
    "KDSRS-GANV2": ("KDSRS-GANV2.pth", "student", "gan"),
    "KDSRS-rec": ("KDSRS-rec.pth", "student", "gan"),      # stage-2 student (L1 + KD), before the GAN stage
    "KDSRT-rec": ("KDSRT-rec.pth", "teacher", "gan"),      # stage-1 teacher
    "KDSRsM_iso_x4": ("KDSRsM_iso_x4.pt", "student", "M"),
    "KDSRsL_iso_x4": ("KDSRsL_iso_x4.pt", "student", "L"),
    "KDSRsM_anisonoise_x4": ("KDSRsM_anisonoise_x4.pt", "student", "M"),
}
DOWNLOAD_HINT = ("The KDSR weights are published only as Google Drive folders linked from the README of "
                 "https://github.com/Zj-BinXia/KDSR (KDSR-GAN/ for the real-world files, KDSR-classic/ for "
                 "the classic ones); there is no direct URL. Download the file by hand and pass its path, or "
                 "copy it to {hub}.")


def resolve_kdsr(name: str, path=None):
    """``(path, WeightsSource)`` of a released KDSR file: explicit path -> torch hub cache
    (``<hub>/checkpoints/<file name>``) -> ``WeightsNotFoundError`` saying where to download it."""
    from .weights import WeightsNotFoundError, WeightsSource, _explicit, hub_checkpoints_dir

    if path is not None:
        return _explicit(name, path)
    if name not in RELEASED:
        raise ValueError(f"unknown released KDSR file {name!r}; known: {', '.join(RELEASED)} "
                         f"(or pass path=... to any KDSR state dict)")
    filename = RELEASED[name][0]
    hub = hub_checkpoints_dir() / filename
    if hub.is_file():
        return hub, WeightsSource(name, "torch hub cache", str(hub))
    raise WeightsNotFoundError(f"could not find weights for {name}. Tried:\n  - torch hub cache: {hub} does not "
                               f"exist\n  - official URL: none exists\nFix: " + DOWNLOAD_HINT.format(hub=hub))


def _read_any(path: Path) -> dict:
    """A dict of tensors from a .safetensors file or a PyTorch file, never unpickling code."""
    from .weights import WeightsError, load_state_dict

    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise WeightsError(f"{path}: reading .safetensors needs the `safetensors` package") from e
        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001 -- header errors, truncation: one named error
            raise WeightsError(f"{path}: cannot read as safetensors (truncated or corrupt?): {e}") from e
    return load_state_dict(path)


def extract_state_dict(obj, where: str) -> tuple[dict, str | None]:
    """The state dict inside a loaded file: ``params_ema``, else ``params`` (BasicSR's
    container), else the object itself (classic files); ``module.`` prefixes removed."""
    from .weights import WeightsError

    key = next((k for k in ("params_ema", "params") if isinstance(obj, dict) and k in obj), None)
    sd = obj[key] if key else obj
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{where}: expected a KDSR state dict (or one under 'params_ema'/'params'), got "
                           f"{type(sd).__name__}" + (f" with keys {list(sd)[:5]}" if isinstance(sd, dict) else ""))
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd, key


def infer_size(sd: dict) -> tuple[str, KDSRSize, int]:
    """(role, size, scale) that a KDSR state dict looks like it was made with."""
    role = "teacher" if any(k.startswith("E.") for k in sd) else "student"
    enc = "E" if role == "teacher" else "E_st"
    n_feats = sd["G.head.0.weight"].shape[0]
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"G\.body\.0\.body\.(\d+)\.", k))}
    res = {int(m.group(1)) for k in sd if (m := re.match(rf"{enc}\.E\.(\d+)\.body\.", k))}
    ups = [k for k in sd if re.fullmatch(r"G\.tail\.0\.\d+\.weight", k)]
    scale = 3 if sd[ups[0]].shape[0] == 9 * n_feats else 2 ** len(ups)
    return role, KDSRSize(n_feats, len(blocks), len(res)), scale


def load_kdsr(name_or_path="KDSRS-GAN", variant: str | KDSRSize | None = None, role: str | None = None,
              scale: int | None = None):
    """A KDSR network in eval mode with ``.weights_source``, loaded strictly.

    ``name_or_path``: a name in ``RELEASED`` (resolved by ``resolve_kdsr``) or a file path
    (.pth/.pt read with ``weights_only=True``, or .safetensors). ``variant``/``role``/``scale``
    default to the released file's, or are inferred from the file's shapes (scale 4 if not).
    A file that does not match raises ``WeightsError`` listing missing, unexpected and
    mis-shaped keys and the size the file looks like; nothing is loaded non-strictly.
    """
    from .weights import WeightsError, check_state_dict

    if str(name_or_path) in RELEASED:
        path, source = resolve_kdsr(str(name_or_path))
        _, role_default, variant_default = RELEASED[str(name_or_path)]
        role, variant = role or role_default, variant or variant_default
    else:
        path, source = resolve_kdsr(Path(name_or_path).stem, name_or_path)
    sd, key = extract_state_dict(_read_any(Path(path)), str(path))
    where = f"{path}" + (f" ['{key}']" if key else "")
    try:
        guessed_role, guessed_size, guessed_scale = infer_size(sd)
        hint = (f" (the file looks like a KDSR {guessed_role}, variant {_size_name(guessed_size)}, "
                f"scale {guessed_scale})")
    except (KeyError, IndexError, AttributeError):
        guessed_role, guessed_size, guessed_scale, hint = None, None, None, " (the file does not look like KDSR)"
    role = role or guessed_role or "student"
    scale = scale or guessed_scale or 4
    if role not in ("student", "teacher"):
        raise ValueError(f"role must be 'student' or 'teacher', got {role!r}")
    variant = variant or guessed_size
    if variant is None:
        raise WeightsError(f"{where}: cannot tell the KDSR size{hint}; pass variant=...")
    cls = KDSRStudent if role == "student" else KDSRTeacher
    # Built on the meta device and filled with assign=True: no random init that the file overwrites.
    with torch.device("meta"):
        net = cls(variant, scale)
    try:
        check_state_dict(net.state_dict(), sd, where)
    except WeightsError as e:
        raise WeightsError(f"{e}{hint}") from None
    net.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
    for mean_shift in (net.G.sub_mean, net.G.add_mean):  # assign=True replaced the frozen parameters
        mean_shift.requires_grad_(False)
    net.weights_source = replace(source, detail="; ".join(filter(None, [source.detail, key and f"key '{key}'"])))
    return net.eval()


def count_macs(model: nn.Module, h: int = 16, w: int = 16) -> dict[str, float]:
    """Multiply-accumulates of one forward pass on an (1, 3, h, w) LR input, counted with hooks.

    ``conv_per_lr_px``: every nn.Conv2d (MeanShift included), per LR pixel; this is what
    KDSR's printed FLOPs count. ``dynamic_per_lr_px``: the IDR-DDC depthwise convolutions
    (9 MACs per output element), which the printed FLOPs leave out. ``linear_per_image``:
    nn.Linear layers, once per image (D is one vector per image). The input is built on the
    model's device, so a model on the meta device is counted without any arithmetic.
    """
    totals = {"conv_per_lr_px": 0, "dynamic_per_lr_px": 0, "linear_per_image": 0}

    def conv_hook(m, _inp, out):
        totals["conv_per_lr_px"] += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, _inp, _out):
        totals["linear_per_image"] += m.in_features * m.out_features

    def dynamic_hook(_m, _inp, out):
        totals["dynamic_per_lr_px"] += out[0].numel() * 9

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, IDRDynamicConv):
            hooks.append(m.register_forward_hook(dynamic_hook))
    param = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, h, w, device=param.device, dtype=param.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    totals["conv_per_lr_px"] /= h * w
    totals["dynamic_per_lr_px"] /= h * w
    return totals


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "DOWNLOAD_HINT", "IDRDynamicConv", "IDRResidualBlock", "KDIDE", "KDSRNet", "KDSRSize", "KDSRStudent",
    "KDSRTeacher", "MeanShift", "RELEASED", "RGB_MEAN", "TAU", "VARIANTS", "count_macs", "extract_state_dict", "infer_size",
    "kd_loss", "load_kdsr", "resolve_kdsr", "teacher_input", "trainable_parameters", "variant_size",
]

