"""HR-aware self-supervised fine-tuning (Zhang & Yao, "High-Resolution Be Aware!", arXiv
2411.16175; seed paper 003), beside PDD with the same trainer conventions.

The method in five lines (notes: ``../shared/specs/hr_aware.md``):
  stage A  trains an LR-reconstruction network on second-order pairs (X^s, Y^s_gt):
           X̂ = R(s ⊙ E_deg(X), E_img(Y))  (Eq. 4), loss L_rec(X̂, X^s) + λ_pt Φ_far(Y^s_gt) (Eq. 5);
  stage B  fine-tunes only the SR model M on target LR X^r, everything else frozen:
           L_rec(R(s ⊙ E_deg(X^r), E_img(M(X^r))), X^r) + λ_ft Φ_far(M(X^r)) (Eq. 6);
  s        the controller: N(0, I) noise plus a scalar read from HQI = 1 − LPIPS(f↑X, Y) (Eq. 7-8);
  FAR      Gram-matrix descriptors of E_img's features aligned to a frozen encoder's (Eq. 9-11).
No official code exists. Every choice the paper leaves open is a field of ``HRAwareConfig``
whose comment says so, with the notes' recommended default.

Offline, two frozen networks the paper uses cannot be had: CLIP RN50 (FAR's aligned
encoder) and LPIPS (HQI and L_rec). They are resolved like the project's other weights
(explicit path → cache → official URL with checksum → clear error); with
``allow_fallback`` the run continues with the paper's own Tab. 3 "VGG" encoder and an
un-learned VGG19 cosine distance, and each substitution is written into the run's
``config.json`` under ``sources["deviations"]`` (see ``run_deviations``), never silently.

    python -m pdd.hr_aware --stage A --preset cpu --domain Synth-Defocus --out runs/hr_a
    python -m pdd.hr_aware --stage B --preset cpu --domain Synth-Defocus --rec-net runs/hr_a --out runs/hr_b
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from . import cli
from .config import SCRATCH_ARCH, RunConfig, cpu_has_native_bf16, set_field
from .runs import hr_stage_a_dir, row_dir, run_of, snapshot_path
from .train import LoopTrainer, batch_seed, ema_copy, last_weights, trainable

STAGES = ("A", "B")
CONTROLLER_RULES = ("eq8", "inverted", "off")
PAPER_STAGE_A_ITERS = 500_000


# ======================================================================================
# Configuration


@dataclass
class HRAwareConfig(RunConfig):
    """One config for both stages. Paper values where the paper gives them; every field the
    paper is silent on says so and carries the notes' recommended default ([rec])."""

    stage: str = "B"                   # A: pretrain the reconstruction network; B: fine-tune M
    preset: str = "paper"
    domain: str = "Canon"
    data_root: str | None = None
    out: str = "runs/hr_aware"
    seed: int = 0
    iters: int = 600                   # B: paper 300-600 (§5.1); A: 500K (§5.1)
    transductive: bool = False         # True: fine-tune on the TEST LR, the paper's protocol (§5.1)
    scale: int = 4
    patch: int = 64                    # LR patch. Paper "64x64" for pretraining; for B it is silent [rec 64]
    batch: int = 8                     # paper silent: [rec] 16 in A, 8 in B
    # ---- M, the SR model (stage B)
    init_m: str | None = "RealESRGAN_x4plus"   # "RealESRGAN+" in the paper; None: random init (tiny)
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    rec_net: str | None = None         # stage B: the stage-A run directory (or one of its weights files)
    # ---- the reconstruction network (trained in A). Paper §5.1: E_deg 16 residual blocks -> 512-d,
    # E_img six residual blocks of 64 channels; R "SRResNet + StyleGAN2" with its depth unstated.
    rec_feat: int = 64
    embed_dim: int = 512               # C_d (§5.1)
    e_deg_blocks: int = 16             # §5.1
    e_img_blocks: int = 6              # §5.1
    r_blocks: int = 4                  # paper silent: [rec] 4, DegAE's MSRResNet_Head
    # ---- FAR's aligned encoder (frozen). The paper uses CLIP RN50 and does not say which layer.
    aligned_encoder: str = "clip_rn50"  # clip_rn50 | vgg19 (the paper's Tab. 3 "VGG" row)
    clip_layer: str = "layer2"         # paper silent: [rec] layer2 (512 ch, stride 8); stem | layer1..4
    clip_weights: str | None = None    # explicit RN50.pt; None: resolver
    vgg_layer: str = "conv4_1"         # paper silent on Tab. 3's VGG layer: conv4_1, stride 8 and 512 ch like RN50 layer2
    vgg_weights: str | None = None
    allow_fallback: bool = True        # offline: VGG19 for CLIP, VGG cosine for LPIPS, recorded as deviations
    # ---- HQI (Eq. 7): 1 − LPIPS(f↑X, Y). The LPIPS variant and f↑'s bicubic are unstated.
    hqi_net: str = "lpips"             # lpips (pyiqa, v0.1 AlexNet) | vgg_cosine (offline fallback)
    hqi_vgg_layers: tuple = ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4")  # fallback's layers (ours)
    upsample: str = "torch"            # f↑: paper silent. torch (bicubic a=-0.75) | matlab (pyiqa imresize, a=-0.5)
    # ---- the controller (Eq. 8)
    controller: str = "eq8"            # eq8 | inverted (Tab. 4: s = n + 1 − HQI in fine-tuning) | off (Tab. 2: no s)
    noise_std: float = 1.0             # Eq. 8 says N(0, I); a knob for ablation only
    detach_hqi: bool = True            # paper silent: [rec] no gradient into M through s
    # ---- FAR (Eq. 9-11)
    use_far: bool = True               # False: Tab. 2's "no FAR" rows
    gram_diag: bool = True             # paper silent: [rec] the diagonal of G counts in S_avg / S_max
    far_batch_norm: str = "whole"      # paper silent: [rec] ‖·‖_F over the whole (B, C_c) matrix | per_sample (mean)
    lambda_pt: float = 1.0             # paper silent: [rec] 1.0
    lambda_ft: float = 1.0             # paper silent: [rec] 1.0
    # ---- L_rec: "follows [4]" (LWay), defined in a supplementary we do not have
    rec_perceptual_weight: float = 1.0  # [rec] L1 + 1.0 · LPIPS (or its fallback distance)
    rec_hf_weight: bool = False        # [rec] off; on: LWay README's Haar high-frequency weight (1 + W) on the L1 map
    # ---- optimisation
    lr: float = 5e-6                   # B: 2e-6..5e-6 "depending on the architecture" [rec 5e-6 for RRDBNet]; A: 2e-4
    betas: tuple = (0.9, 0.999)        # §5.1 (A); B silent, [rec] the same
    lr_schedule: str = "constant"      # A: cosine to 0 (§5.1, restarts unstated: none); B silent: [rec] constant
    ema_decay: float = 0.999           # §5.1, both stages
    # ---- engineering
    device: str = "auto"
    threads: int | None = None
    ckpt_every: int = 100              # B: a snapshot every 100 iterations (a Fig. 9-style curve)
    log_every: int = 10
    bf16: bool = False                 # bf16 autocast of the step (Gram, cosine, L1 and HQI in fp32)

    trainer_module: ClassVar[str] = "pdd.hr_aware"
    recorded: ClassVar[tuple[str, ...]] = ("channels_last", "mode")

    def starts_from(self) -> set[Path]:
        """Stage B's stage-A run and the run M's snapshot belongs to; stage A starts from nothing."""
        if self.stage != "B":
            return set()
        return ({Path(self.rec_net)} if self.rec_net else set()) | \
            ({run_of(self.init_m)} if self.init_m and run_of(self.init_m) else set())

    @property
    def mode(self) -> str:
        """The job's name in progress bars and logs (RunConfig): hr_pretrain (A) or hr_aware (B)."""
        return "hr_pretrain" if self.stage == "A" else "hr_aware"

    def to_dict(self) -> dict:
        # config.json's keys as HR-aware runs have always written them: beside the fields, the
        # memory format (never channels_last here) and the mode name; from_dict reads past both
        return {**super().to_dict(), "channels_last": False, "mode": self.mode}

    @property
    def has_discriminator(self) -> bool:
        return False

    def step_kind(self, warm_up: bool = False) -> str:
        return f"{self.preset} HR-aware stage {self.stage}"

    def _use_stand_ins(self, stand_ins: dict) -> None:
        if self.stage != "B":
            return
        self.rec_net = stand_ins.get(str(Path(self.rec_net)), self.rec_net)
        run = run_of(self.init_m) if self.init_m else None
        if run is not None and str(run) in stand_ins:  # M, a snapshot of a run in the plan: the stand-in's
            self.init_m = str(snapshot_path(stand_ins[str(run)], 0))

    def validate(self) -> HRAwareConfig:
        choices = {"stage": STAGES, "controller": CONTROLLER_RULES, "aligned_encoder": ("clip_rn50", "vgg19"),
                   "hqi_net": ("lpips", "vgg_cosine"), "upsample": ("torch", "matlab"),
                   "far_batch_norm": ("whole", "per_sample"), "lr_schedule": ("constant", "cosine"),
                   "clip_layer": CLIP_LAYERS}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r}; valid: {', '.join(valid)}")
        if self.patch < DegradationEncoder.MIN_INPUT or self.patch % 2:
            raise ValueError(f"patch must be even and >= {DegradationEncoder.MIN_INPUT} LR pixels (the degradation "
                             f"encoder's three 4x4/s2 convolutions need it), got {self.patch}")
        if self.stage == "B" and self.preset == "scratch" and not self.init_m:
            raise ValueError("the scratch preset adapts the small generalist pretrained here: give init_m "
                             "(its weights file, pdd.experiments.generalist_file)")
        if self.stage == "B" and not self.rec_net:
            raise ValueError("stage B needs rec_net: the stage-A run directory (train it with --stage A)")
        if self.iters < 0 or self.batch < 1:
            raise ValueError("iters must be >= 0 and batch >= 1")
        return self


def make_hr_config(stage: str = "B", preset: str = "cpu", overrides: dict | None = None, **kw) -> HRAwareConfig:
    """Preset → stage defaults → overrides (``{"lambda_ft": 0.1}``)."""
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r}; valid: A, B")
    cfg = HRAwareConfig(stage=stage, preset=preset)
    if stage == "A":  # §5.1: Adam (0.9, 0.999), 2e-4, cosine annealing, 500K iterations
        cfg.iters, cfg.lr, cfg.lr_schedule, cfg.batch = PAPER_STAGE_A_ITERS, 2e-4, "cosine", 16
        cfg.ckpt_every, cfg.log_every = 5000, 100
    if preset == "cpu":
        # Built-in domain, the real RealESRGAN_x4plus as M, the paper's network widths; stage A is
        # a few hundred iterations: NOT the paper's 500K-iteration network (recorded as a deviation).
        cfg.domain, cfg.patch = "Synth-Defocus", 32
        cfg.ema_decay = 0.99           # deviation, as the PDD cpu preset: 0.999 barely moves in 300 steps
        # E_img runs at HR size; at the paper's 64 channels x 6 blocks it costs ~8 s per stage-A
        # step on a 2-core CPU. Narrower and shallower (recorded as a deviation): ~10x cheaper.
        cfg.rec_feat, cfg.e_deg_blocks, cfg.e_img_blocks, cfg.r_blocks = 32, 4, 2, 2
        if stage == "A":
            cfg.iters, cfg.batch, cfg.ckpt_every, cfg.log_every = 200, 4, 50, 10
        else:
            cfg.iters, cfg.batch, cfg.ckpt_every, cfg.log_every = 300, 2, 50, 10
    elif preset == "scratch":
        # The premise setting (pdd.config's `scratch`): M is the small RRDBNet generalist
        # pretrained here, whose file pdd.experiments passes as init_m; reconstruction network
        # and schedule as under cpu, PDD's iterations and batch.
        cfg.domain, cfg.patch, cfg.init_m = "Synth-ISO", 32, None
        cfg.num_feat, cfg.num_block, cfg.num_grow_ch = SCRATCH_ARCH
        cfg.ema_decay = 0.99
        cfg.bf16 = cpu_has_native_bf16()  # as PDD's scratch runs: the frozen VGG passes dominate the step
        cfg.rec_feat, cfg.e_deg_blocks, cfg.e_img_blocks, cfg.r_blocks = 32, 4, 2, 2
        if stage == "A":
            cfg.iters, cfg.batch, cfg.ckpt_every, cfg.log_every = 200, 4, 50, 10
        else:
            cfg.iters, cfg.batch, cfg.ckpt_every, cfg.log_every = 300, 2, 50, 10
            # §5.1's 5e-6 is for RealESRGAN, itself trained at 1e-4: 1/20 of that. The small
            # generalist was trained at 5e-4 (pdd.config.pretrain_config), so 1/20 of it (a
            # deviation, recorded in the run).
            cfg.lr = 2.5e-5
    elif preset == "tiny":
        # Tests and smoke runs only: small networks, small VGG slices, random-init M.
        cfg.domain, cfg.patch, cfg.batch = "Synth-Defocus", 24, 2
        cfg.num_feat, cfg.num_block, cfg.num_grow_ch, cfg.init_m = 16, 1, 8, None
        cfg.rec_feat, cfg.embed_dim, cfg.e_deg_blocks, cfg.e_img_blocks, cfg.r_blocks = 16, 32, 1, 1, 1
        cfg.vgg_layer, cfg.hqi_vgg_layers = "conv2_1", ("conv1_2", "conv2_2")
        cfg.ema_decay, cfg.ckpt_every, cfg.log_every = 0.9, 5, 1
        cfg.iters = 20 if stage == "A" else 10
        cfg.lr = 2e-4 if stage == "A" else 1e-4
    elif preset != "paper":
        raise ValueError(f"unknown preset {preset!r}; valid: paper, cpu, scratch, tiny")
    for k, v in {**(overrides or {}), **kw}.items():
        set_field(cfg, k, v)
    return cfg.validate()


# ======================================================================================
# Networks


class ResBlockNoBN(nn.Module):
    """conv3x3 → ReLU → conv3x3, plus the input (SRResNet's block without batch norm)."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf, nf, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class DegradationEncoder(nn.Module):
    """E_deg: LR image → C_d-dim degradation embedding e_d (paper §5.1; layout of DegAE's
    DeepDegradationEncoder_v2): conv3x3 + LReLU, residual blocks at LR resolution, three
    4x4/stride-2/no-padding convs (nf → 2nf → 4nf → C_d), global average, three 1x1 convs."""

    MIN_INPUT = 22  # 22 → 10 → 4 → 1 through the three 4x4/s2/p0 convs; 21 → 9 → 3 → 0

    def __init__(self, nf: int = 64, embed_dim: int = 512, blocks: int = 16):
        super().__init__()
        self.head = nn.Conv2d(3, nf, 3, 1, 1)
        self.body = nn.Sequential(*[ResBlockNoBN(nf) for _ in range(blocks)])
        widths = (nf, 2 * nf, 4 * nf, embed_dim)
        self.down = nn.ModuleList(nn.Conv2d(a, b, 4, 2, 0) for a, b in itertools.pairwise(widths))
        self.mlp = nn.ModuleList(nn.Conv2d(embed_dim, embed_dim, 1) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.MIN_INPUT:
            raise ValueError(f"the degradation encoder needs LR inputs of at least {self.MIN_INPUT}x{self.MIN_INPUT} "
                             f"pixels (three 4x4 stride-2 convolutions without padding), got {tuple(x.shape[-2:])}")
        h = F.leaky_relu(self.head(x), 0.1)
        h = self.body(h)
        for conv in self.down:
            h = F.leaky_relu(conv(h), 0.1)
        h = F.adaptive_avg_pool2d(h, 1)
        for i, conv in enumerate(self.mlp):
            h = conv(h)
            if i < len(self.mlp) - 1:
                h = F.leaky_relu(h, 0.1)
        return h.flatten(1)


class ImageEncoder(nn.Module):
    """E_img: HR image → e_im (C_i × H × W), no spatial reduction (paper §5.1: six residual
    blocks of 64 channels). The output is the last block's features (paper silent)."""

    def __init__(self, nf: int = 64, blocks: int = 6):
        super().__init__()
        self.head = nn.Conv2d(3, nf, 3, 1, 1)
        self.body = nn.Sequential(*[ResBlockNoBN(nf) for _ in range(blocks)])

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.body(self.head(y))


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated 3x3 convolution, as in DegAE's StyleGAN2_mod.

    style = 1x1 conv of the embedding (C_d → in_ch); per sample b the kernel is
    w_b[o, i] = scale · W[o, i] · style_b[i] with scale = 1/√(in_ch·k²), then demodulated:
    w_b[o] /= √(Σ_{i,kh,kw} w_b[o, i]² + 1e-8); applied as a grouped convolution. Then
    per-pixel noise times a learned weight (initialised 0, so the layer starts deterministic).
    """

    def __init__(self, in_ch: int, out_ch: int, embed_dim: int, kernel: int = 3, eps: float = 1e-8):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.style = nn.Conv2d(embed_dim, in_ch, 1)
        self.noise_weight = nn.Parameter(torch.zeros(1))
        self.scale, self.eps, self.kernel = 1 / (in_ch * kernel * kernel) ** 0.5, eps, kernel

    def modulated_weight(self, e: torch.Tensor) -> torch.Tensor:
        """Per-sample demodulated kernels, shape (B, out, in, k, k)."""
        style = self.style(e.view(e.shape[0], -1, 1, 1)).flatten(1)            # (B, in)
        w = self.scale * self.weight[None] * style[:, None, :, None, None]       # (B, out, in, k, k)
        return w * torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        b, c, h, w_ = x.shape
        w = self.modulated_weight(e)
        out = F.conv2d(x.reshape(1, b * c, h, w_), w.reshape(-1, c, self.kernel, self.kernel),
                       padding=self.kernel // 2, groups=b)
        out = out.view(b, -1, h, w_)
        return out + self.noise_weight * torch.randn(b, 1, h, w_, device=x.device, dtype=x.dtype)


class ModulatedBlock(nn.Module):
    """One block of R (DegAE's MSRResNet_Head): residual block → modulated conv(e) → conv3x3 → LReLU."""

    def __init__(self, nf: int, embed_dim: int):
        super().__init__()
        self.res = ResBlockNoBN(nf)
        self.mod = ModulatedConv2d(nf, nf, embed_dim)
        self.conv = nn.Conv2d(nf, nf, 3, 1, 1)

    def forward(self, x, e):
        return F.leaky_relu(self.conv(self.mod(self.res(x), e)), 0.1)


class Reconstructor(nn.Module):
    """R: (s ⊙ e_d, e_im at HR size) → LR image (Eq. 4). The ×scale downsampling is unstated
    in the paper (DegAE's head does not downsample): log2(scale) 4x4/stride-2 convs first."""

    def __init__(self, in_ch: int = 64, nf: int = 64, embed_dim: int = 512, blocks: int = 4, scale: int = 4):
        super().__init__()
        if scale & (scale - 1):
            raise ValueError(f"Reconstructor downsamples by stride-2 convs: scale must be a power of 2, got {scale}")
        self.conv_first = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.down = nn.ModuleList(nn.Conv2d(nf, nf, 4, 2, 1) for _ in range(scale.bit_length() - 1))
        self.blocks = nn.ModuleList(ModulatedBlock(nf, embed_dim) for _ in range(blocks))
        self.hr_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, 3, 3, 1, 1)

    def forward(self, e_deg: torch.Tensor, e_im: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv_first(e_im), 0.1)
        for conv in self.down:
            h = F.leaky_relu(conv(h), 0.1)
        for block in self.blocks:
            h = block(h, e_deg)
        return self.conv_last(F.leaky_relu(self.hr_conv(h), 0.1))


class ReconstructionNet(nn.Module):
    """Everything stage A trains: E_deg, E_img, R and FAR's linear maps T_a, T_m (C_i → C_c)."""

    def __init__(self, aligned_channels: int, nf: int = 64, embed_dim: int = 512, e_deg_blocks: int = 16,
                 e_img_blocks: int = 6, r_blocks: int = 4, scale: int = 4):
        super().__init__()
        self.arch = {"aligned_channels": aligned_channels, "nf": nf, "embed_dim": embed_dim,
                     "e_deg_blocks": e_deg_blocks, "e_img_blocks": e_img_blocks, "r_blocks": r_blocks, "scale": scale}
        self.e_deg = DegradationEncoder(nf, embed_dim, e_deg_blocks)
        self.e_img = ImageEncoder(nf, e_img_blocks)
        self.r = Reconstructor(nf, nf, embed_dim, r_blocks, scale)
        self.t_avg = nn.Linear(nf, aligned_channels)  # bias: the nn.Linear default (paper silent)
        self.t_max = nn.Linear(nf, aligned_channels)

    def reconstruct(self, x_lr: torch.Tensor, e_im: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
        """X̂ = R(s ⊙ E_deg(X), e_im) (Eq. 4); s=None: no controller (Tab. 2's baseline)."""
        e_d = self.e_deg(x_lr)
        return self.r(e_d if s is None else s * e_d, e_im)


# ======================================================================================
# Frozen helpers: f↑, distances, aligned encoders


def upsample(x: torch.Tensor, scale: int = 4, method: str = "torch") -> torch.Tensor:
    """f↑: bicubic ×scale. The paper does not say which bicubic."""
    if method == "matlab":
        from pyiqa.matlab_utils import imresize
        return imresize(x.float(), scale=scale)
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


class VGGCosineDistance(nn.Module):
    """Offline stand-in for LPIPS (a deviation): d(a, b) = mean over layers of the spatial mean
    of (1 − cos_c(φ_l(a), φ_l(b)))/2, per sample, in [0, 1]. Un-learned: no LPIPS linear heads.
    ``features`` is any module returning {layer: (B, C, H, W)} (a frozen VGG19 in practice)."""

    def __init__(self, features: nn.Module, layers):
        super().__init__()
        self.features, self.layers = features, tuple(layers)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa, fb = self.features(a), self.features(b)
        per_layer = [((1 - F.cosine_similarity(fa[k].float(), fb[k].float(), dim=1, eps=1e-8)) / 2).flatten(1).mean(1)
                     for k in self.layers]
        return torch.stack(per_layer).mean(0)


class PyiqaLPIPS(nn.Module):
    """pyiqa's LPIPS (v0.1, AlexNet) as a per-sample, differentiable distance."""

    def __init__(self, metric):
        super().__init__()
        self.metric = metric

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.metric(a, b).reshape(a.shape[0])


def hqi(x_lr: torch.Tensor, y: torch.Tensor, distance, scale: int = 4, method: str = "torch") -> torch.Tensor:
    """HQI(X, Y) = 1 − d(f↑X, Y) per sample (Eq. 7): high when Y looks like the upsampled LR."""
    return 1 - distance(upsample(x_lr, scale, method), y).float()


def controller_offset(hqi_value: torch.Tensor, stage: str, rule: str = "eq8") -> torch.Tensor:
    """The scalar c of s = n + c, per sample (Eq. 8 and Tab. 4).

    eq8:      stage A c = 1 − HQI(X^s, Y^s_gt);  stage B c = HQI(X^r, M(X^r)).
    inverted: Tab. 4's alternative, which changes only fine-tuning: stage B c = 1 − HQI.
    """
    if rule not in ("eq8", "inverted"):
        raise ValueError(f"controller rule {rule!r} has no offset; valid: eq8, inverted (off: no controller)")
    if stage == "A" or rule == "inverted":
        return 1 - hqi_value
    return hqi_value


def controller(offset: torch.Tensor, embed_dim: int, generator: torch.Generator, noise_std: float = 1.0) -> torch.Tensor:
    """s = n + c (Eq. 8): fresh N(0, noise_std²·I) noise per sample, drawn on the CPU from
    ``generator`` (so resumed runs redraw it identically), plus the per-sample scalar c."""
    n = torch.randn(offset.shape[0], embed_dim, generator=generator) * noise_std
    return n.to(offset.device) + offset.float()[:, None]


def interpolation_probe(x_lr: torch.Tensor, y_gt: torch.Tensor, i: float, scale: int = 4,
                        method: str = "torch") -> torch.Tensor:
    """Eq. 12 (Fig. 7): Y_i = i·f↑(X) + (1 − i)·Y_gt, from the ground truth (i=0) to the upsampled LR (i=1)."""
    return i * upsample(x_lr, scale, method) + (1 - i) * y_gt


# ---- FAR (Eq. 9-11)


def gram(e: torch.Tensor) -> torch.Tensor:
    """G(e) = F Fᵀ / (C·H·W) per sample, (B, C, C) (the normalisation is ours; the paper is silent)."""
    b, c, h, w = e.shape
    f = e.float().reshape(b, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def far_descriptors(e: torch.Tensor, gram_diag: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(S_avg, S_max), each (B, C): the mean and the max of each row of the Gram matrix (Eq. 10),
    "each channel's correlation to others". gram_diag=False leaves the channel's own entry out."""
    g = gram(e)
    if gram_diag:
        return g.mean(-1), g.amax(-1)
    c = g.shape[-1]
    if c < 2:
        raise ValueError("gram_diag=False needs at least 2 channels")
    off = ~torch.eye(c, dtype=torch.bool, device=g.device)
    others = g[:, off].view(g.shape[0], c, c - 1)
    return others.mean(-1), others.amax(-1)


def far_loss(e_im: torch.Tensor, e_cl: torch.Tensor, t_avg: nn.Module, t_max: nn.Module,
             gram_diag: bool = True, batch_norm: str = "whole") -> torch.Tensor:
    """L_far = ‖T_a S_avg(e_im) − S_avg(e_cl)‖_F + ‖T_m S_max(e_im) − S_max(e_cl)‖_F (Eq. 11).
    batch_norm: 'whole' = Frobenius norm over the (B, C_c) matrix; 'per_sample' = mean of the rows' norms."""
    a_im, m_im = far_descriptors(e_im, gram_diag)
    a_cl, m_cl = far_descriptors(e_cl, gram_diag)
    diffs = (t_avg(a_im) - a_cl, t_max(m_im) - m_cl)
    if batch_norm == "whole":
        return sum(torch.linalg.vector_norm(d) for d in diffs)
    if batch_norm == "per_sample":
        return sum(torch.linalg.vector_norm(d, dim=1).mean() for d in diffs)
    raise ValueError(f"batch_norm={batch_norm!r}; valid: whole, per_sample")


# ---- L_rec


def high_frequency_weight(x: torch.Tensor) -> torch.Tensor:
    """LWay README's high-frequency map W ∈ [0, 1] at x's size: the L2 norm over the three Haar
    detail bands (per pixel and channel), divided by its per-image maximum, nearest-upsampled ×2."""
    from .losses import haar_bands

    _, mid, hh = haar_bands(x)
    hl, lh = mid.chunk(2, dim=1)
    w = torch.sqrt(hl ** 2 + lh ** 2 + hh ** 2)
    w = w / (w.flatten(1).amax(1).view(-1, 1, 1, 1) + 1e-12)
    return F.interpolate(w, scale_factor=2, mode="nearest")


def rec_loss(x_hat: torch.Tensor, x: torch.Tensor, distance=None, perceptual_weight: float = 1.0,
             hf_weight: bool = False) -> torch.Tensor:
    """L_rec = mean |X̂ − X| (times 1 + W with hf_weight) + perceptual_weight · mean d(X̂, X).
    The paper defers L_rec to a supplementary we do not have; this is the notes' [rec]."""
    l1 = (x_hat.float() - x.float()).abs()
    if hf_weight:
        l1 = l1 * (1 + high_frequency_weight(x))
    total = l1.mean()
    if distance is not None and perceptual_weight:
        total = total + perceptual_weight * distance(x_hat, x).mean()
    return total


# ---- CLIP RN50 image trunk (architecture of OpenAI CLIP's ModifiedResNet, written here)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_LAYERS = ("stem", "layer1", "layer2", "layer3", "layer4")
CLIP_LAYER_CHANNELS = {"stem": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048}
CLIP_RN50_SHA256 = "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762"
CLIP_RN50_URL = f"https://openaipublic.azureedge.net/clip/models/{CLIP_RN50_SHA256}/RN50.pt"


class _CLIPBottleneck(nn.Module):
    """CLIP's bottleneck: stride by average pooling after the 3x3 conv, and before the 1x1
    projection on the shortcut (keys downsample.0 conv, downsample.1 bn)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(inplanes, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False), nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3, self.bn3 = nn.Conv2d(planes, planes * 4, 1, bias=False), nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride > 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)), ("0", nn.Conv2d(inplanes, planes * 4, 1, bias=False)),
                ("1", nn.BatchNorm2d(planes * 4))]))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.avgpool(F.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class CLIPRN50Features(nn.Module):
    """Frozen CLIP RN50 image trunk up to ``layer``; input RGB in [0, 1], CLIP-normalised inside
    (no resize: the notes' [rec]). Keys follow OpenAI's ``visual.*`` layout without the prefix."""

    def __init__(self, layer: str = "layer2", state_dict: dict | None = None):
        super().__init__()
        if layer not in CLIP_LAYERS:
            raise ValueError(f"CLIP layer {layer!r}; valid: {', '.join(CLIP_LAYERS)}")
        self.layer, width = layer, 64
        self.conv1, self.bn1 = nn.Conv2d(3, width // 2, 3, 2, 1, bias=False), nn.BatchNorm2d(width // 2)
        self.conv2, self.bn2 = nn.Conv2d(width // 2, width // 2, 3, 1, 1, bias=False), nn.BatchNorm2d(width // 2)
        self.conv3, self.bn3 = nn.Conv2d(width // 2, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)
        depth = CLIP_LAYERS.index(layer)
        inplanes = width
        for i, (planes, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))[:depth], start=1):
            mods = [_CLIPBottleneck(inplanes, planes, 1 if i == 1 else 2)]
            inplanes = planes * 4
            mods += [_CLIPBottleneck(inplanes, planes) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*mods))
        self.channels = CLIP_LAYER_CHANNELS[layer]
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        if state_dict is not None:
            from .weights import check_state_dict
            sd = {k.removeprefix("visual."): v for k, v in state_dict.items()}
            own = {k: v for k, v in self.state_dict().items() if not k.endswith("num_batches_tracked")}
            sd = {k: v.float() for k, v in sd.items() if k in own}
            check_state_dict(own, sd, "CLIP RN50 state dict")  # WeightsError naming missing / mis-shaped keys
            self.load_state_dict(sd, strict=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # frozen: batch norm always uses its running statistics
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        for i in (1, 2, 3):
            x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
        x = F.avg_pool2d(x, 2)
        for i in range(1, CLIP_LAYERS.index(self.layer) + 1):
            x = getattr(self, f"layer{i}")(x)
        return x


class VGGAlignedEncoder(nn.Module):
    """The paper's Tab. 3 "VGG(19)" alternative: one VGG19 feature map (offline fallback for CLIP)."""

    def __init__(self, vgg: nn.Module, layer: str):
        super().__init__()
        self.vgg, self.layer = vgg, layer
        conv = {"1": 64, "2": 128, "3": 256, "4": 512, "5": 512}
        self.channels = conv[layer[4]]

    def forward(self, x):
        return self.vgg(x)[self.layer]


# ======================================================================================
# Weight resolvers (same order as pdd.weights: path → cache → official URL → clear error)


def resolve_clip_rn50(path=None):
    """(path, WeightsSource) of OpenAI's RN50.pt. No PyPI package ships these weights, so
    offline the last step raises WeightsNotFoundError listing every attempt."""
    from . import weights as W

    clip_cache = Path("~/.cache/clip/RN50.pt").expanduser()  # where OpenAI's clip.load keeps it
    if path is None and clip_cache.is_file() and W._sha256(clip_cache) == CLIP_RN50_SHA256:
        return clip_cache, W.WeightsSource("clip_rn50", "clip cache", str(clip_cache), "sha256 checked")

    def no_offline_copy():
        raise W.WeightsNotFoundError("no package on PyPI carries the RN50 weights (open_clip_torch and pyiqa "
                                     "ship code only and download at first use)")

    return W._resolve_checkpoint(
        "clip_rn50", path, "RN50.pt", CLIP_RN50_URL, CLIP_RN50_SHA256, no_offline_copy,
        f"download {CLIP_RN50_URL} (sha256 {CLIP_RN50_SHA256}) and pass clip_weights=PATH, or copy it to "
        f"{W.hub_checkpoints_dir() / 'RN50.pt'}; offline, aligned_encoder=vgg19 is the paper's Tab. 3 alternative")


def load_clip_rn50(layer: str = "layer2", path=None) -> CLIPRN50Features:
    """Frozen CLIP RN50 trunk with ``.weights_source``. RN50.pt is a TorchScript archive; a plain
    state dict (``visual.*`` keys) also loads."""
    from .weights import WeightsError, load_state_dict

    file, source = resolve_clip_rn50(path)
    try:
        sd = torch.jit.load(str(file), map_location="cpu").state_dict()
    except (RuntimeError, ValueError):
        sd = load_state_dict(file)
    if not isinstance(sd, dict):
        raise WeightsError(f"{file}: not a CLIP checkpoint")
    net = CLIPRN50Features(layer, dict(sd))
    net.weights_source = source
    return net


def load_lpips(device="cpu") -> PyiqaLPIPS:
    """pyiqa's LPIPS as a differentiable per-sample distance; raises when its weights cannot be
    had (offline: pyiqa's download fails). PDD_OFFLINE=1 skips the download attempt."""
    from .weights import URL_TIMEOUT_S, WeightsNotFoundError, _offline

    if _offline():
        raise WeightsNotFoundError("LPIPS: pyiqa downloads its AlexNet and linear-head weights at first use; "
                                   "skipped because PDD_OFFLINE=1")
    import pyiqa

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(URL_TIMEOUT_S)
    try:
        metric = pyiqa.create_metric("lpips", as_loss=True, device=device, loss_reduction="none")
    except Exception as e:
        raise WeightsNotFoundError(f"LPIPS (pyiqa 'lpips'): {type(e).__name__}: {str(e).splitlines()[0][:200]}") from e
    finally:
        socket.setdefaulttimeout(old)
    out = PyiqaLPIPS(metric).to(device)
    out.requires_grad_(False)
    out.weights_source = "pyiqa lpips (v0.1 AlexNet), pyiqa's own download"
    return out


def _one_line(e: BaseException, limit: int = 300) -> str:
    """An exception's whole message on one line (a resolver's message lists its attempts)."""
    text = " ".join(part.strip(" -") for part in str(e).splitlines() if part.strip())
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclass
class FrozenNets:
    """The frozen networks a run uses, with what they are and any deviation from the paper."""
    aligned: nn.Module
    distance: nn.Module
    sources: dict = field(default_factory=dict)
    deviations: list = field(default_factory=list)


def frozen_nets(cfg: HRAwareConfig, device="cpu") -> FrozenNets:
    """FAR's aligned encoder and the HQI / L_rec distance, with the offline fallbacks recorded."""
    from .weights import load_vgg19

    sources, deviations, vgg = {}, [], None

    def get_vgg():
        nonlocal vgg
        if vgg is None:
            vgg = load_vgg19(sorted({cfg.vgg_layer, *cfg.hqi_vgg_layers}), path=cfg.vgg_weights).to(device)
            sources["VGG19"] = str(vgg.weights_source)
        return vgg

    aligned = None
    if cfg.aligned_encoder == "clip_rn50":
        try:
            aligned = load_clip_rn50(cfg.clip_layer, cfg.clip_weights).to(device)
            sources["FAR aligned encoder"] = f"CLIP RN50 {cfg.clip_layer}: {aligned.weights_source}"
        except Exception as e:
            if not cfg.allow_fallback:
                raise
            deviations.append(f"FAR aligned encoder: VGG19 {cfg.vgg_layer} instead of CLIP RN50 {cfg.clip_layer} "
                              f"(the paper's Tab. 3 'VGG' row; CLIP unavailable: {_one_line(e)})")
    if aligned is None:
        aligned = VGGAlignedEncoder(get_vgg(), cfg.vgg_layer)
        sources.setdefault("FAR aligned encoder", f"VGG19 {cfg.vgg_layer}")
        if cfg.aligned_encoder == "vgg19":
            deviations.append(f"FAR aligned encoder: VGG19 {cfg.vgg_layer} chosen (paper: CLIP RN50; Tab. 3 'VGG' row)")
    distance = None
    if cfg.hqi_net == "lpips":
        try:
            distance = load_lpips(device)
            sources["HQI / L_rec distance"] = distance.weights_source
        except Exception as e:
            if not cfg.allow_fallback:
                raise
            deviations.append(f"HQI and L_rec distance: un-learned VGG19 cosine distance on {list(cfg.hqi_vgg_layers)} "
                              f"instead of LPIPS (unavailable: {_one_line(e)})")
    if distance is None:
        distance = VGGCosineDistance(get_vgg(), cfg.hqi_vgg_layers)
        sources.setdefault("HQI / L_rec distance", f"VGG19 cosine distance {list(cfg.hqi_vgg_layers)}")
        if cfg.hqi_net == "vgg_cosine":
            deviations.append("HQI and L_rec distance: VGG19 cosine distance chosen instead of LPIPS")
    aligned.requires_grad_(False)
    distance.requires_grad_(False)
    return FrozenNets(aligned, distance, sources, deviations)


# ======================================================================================
# Stage A and B on the shared training loop

REC_ARCH = "rec_arch.json"


def run_deviations(run_dir) -> list[str]:
    """The deviations from the paper a run recorded (``config.json`` → sources → deviations)."""
    meta = json.loads((Path(run_dir) / "config.json").read_text())
    return list(meta.get("sources", {}).get("deviations", []))


def load_reconstruction_net(path) -> tuple[ReconstructionNet, dict]:
    """A stage-A run directory (its newest snapshot) or one of its weights files → (frozen
    ReconstructionNet from the EMA weights, the run's rec_arch.json record)."""
    from .weights import load_state_dict

    path = Path(path)
    run = path if path.is_dir() else path.parent.parent
    file = last_weights(run) if path.is_dir() else path
    info_path = run / REC_ARCH
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} is missing: rec_net must be a stage-A run of pdd.hr_aware "
                                f"(python -m pdd.hr_aware --stage A --out RUN)")
    info = json.loads(info_path.read_text())
    net = ReconstructionNet(**info["arch"])
    snap = load_state_dict(file)
    net.load_state_dict(snap["params_ema"])
    info["weights"], info["iteration"] = str(file), int(snap.get("iteration", -1))
    return net.eval().requires_grad_(False), info


class HRAwareTrainer(LoopTrainer):
    """Stage A or B on pdd.train.LoopTrainer's loop: its fit (log.csv, progress, checkpoint and
    EMA-snapshot cadence), save (atomic checkpoint.pt, weights/net_g_<iteration>.pth with
    params_ema/params), resume and NaN stop. The set-up, the schedule, batch and step are this
    method's.

    In stage A the trained module ``s`` is the ReconstructionNet (its snapshots hold that net);
    in stage B it is M, so the snapshots load with ``pdd.weights.load_rrdbnet``. One process.
    ``nets``: frozen networks to use instead of resolving them (tests).
    """

    def __init__(self, cfg: HRAwareConfig, progress: bool = True, nets: FrozenNets | None = None):
        from .data import LabeledPatches, UnlabeledPatches, open_domain

        # one process: under torchrun every rank would write the same run directory
        super().__init__(cfg, progress, single_process="pdd.hr_aware trains in one process; run it without "
                                                       "torchrun (no DDP support yet)")
        self.domain = open_domain(cfg.domain, cfg.data_root)
        self.nets = nets or frozen_nets(cfg, self.device)
        self.nets.aligned.to(self.device)
        self.nets.distance.to(self.device)
        self.sources = dict(self.nets.sources)
        deviations = list(self.nets.deviations)
        if cfg.ema_decay != 0.999:
            deviations.append(f"EMA decay {cfg.ema_decay} (paper 0.999)")
        if cfg.stage == "B" and not 2e-6 <= cfg.lr <= 5e-6:
            deviations.append(f"stage-B learning rate {cfg.lr:g} (paper 2e-6 to 5e-6 for its networks, §5.1)")

        if cfg.stage == "A":
            # second-order pairs (X^s, Y^s_gt) from the domain's clean labeled HR pool (paper: DIV2K train)
            self.pairs = LabeledPatches(self.domain.labeled_hr, cfg.patch, cfg.scale, "second_order", cfg.seed)
            self.s = ReconstructionNet(self.nets.aligned.channels, cfg.rec_feat, cfg.embed_dim, cfg.e_deg_blocks,
                                       cfg.e_img_blocks, cfg.r_blocks, cfg.scale).to(self.device)
            self.sources["reconstruction net"] = f"trained here from scratch (stage A, seed {cfg.seed})"
            paper_arch = {"rec_feat": 64, "embed_dim": 512, "e_deg_blocks": 16, "e_img_blocks": 6, "r_blocks": 4}
            ours = {k: getattr(cfg, k) for k in paper_arch}
            if ours != paper_arch:
                deviations.append(f"reconstruction network reduced: {ours} (paper / [rec]: {paper_arch})")
            if cfg.iters < PAPER_STAGE_A_ITERS:
                deviations.append(f"stage A: {cfg.iters} iterations ({cfg.preset} preset), NOT the paper's "
                                  f"{PAPER_STAGE_A_ITERS:,}-iteration reconstruction network: under-trained")
            self.rec = None
            self._write_rec_arch(deviations)
        else:
            from .archs import RRDBNet
            from .weights import load_rrdbnet

            lr_images = ([lr for lr, _, _ in self.domain.test_pairs] if cfg.transductive
                         else self.domain.unlabeled_lr)
            self.lr_set = UnlabeledPatches(lr_images, cfg.patch, cfg.seed)
            self.sources["fine-tuning LR"] = ("TEST LR of the domain (transductive, the paper's protocol)"
                                              if cfg.transductive else "the domain's unlabeled LR X^U (inductive)")
            self.rec, info = load_reconstruction_net(cfg.rec_net)
            self.rec.to(self.device)
            self._check_stage_a_match(info)
            deviations += [f"(stage A) {d}" for d in info.get("deviations", [])]
            planned = info.get("stage_a_config", {}).get("iters")
            if planned and info["iteration"] < planned:
                deviations.append(f"stage A unfinished: its weights are from iteration {info['iteration']} of {planned}")
            self.sources["reconstruction net"] = f"stage-A EMA weights {info['weights']}"
            arch = {"num_feat": cfg.num_feat, "num_block": cfg.num_block, "num_grow_ch": cfg.num_grow_ch,
                    "scale": cfg.scale}
            if cfg.init_m:
                m = load_rrdbnet(cfg.init_m, **arch)
                self.sources["M"] = str(m.weights_source)
            else:
                m = RRDBNet(**arch)
                self.sources["M"] = f"random init (seed {cfg.seed}): a smoke run, not evidence"
            self.s = m.to(self.device)
        self.sources["deviations"] = deviations
        self.s = trainable(self.s)
        self.ema = ema_copy(self.s)
        self._optimisers(self.s.parameters())

    def make_schedule(self, opt):
        """Cosine annealing to 0 over the run (stage A, §5.1; no restarts), or a constant rate."""
        if self.cfg.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(self.cfg.iters, 1), eta_min=0.0)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)

    # ---- records
    def _aligned_record(self) -> dict:
        a = self.nets.aligned
        kind = "clip_rn50" if isinstance(a, CLIPRN50Features) else "vgg19"
        return {"kind": kind, "layer": getattr(a, "layer", None), "channels": a.channels}

    def _write_rec_arch(self, deviations) -> None:
        info = {"arch": self.s.arch, "aligned_encoder": self._aligned_record(), "deviations": deviations,
                "stage_a_config": self.cfg.to_dict()}
        tmp = self.out / (REC_ARCH + ".tmp")
        tmp.write_text(json.dumps(info, indent=2, default=str))
        os.replace(tmp, self.out / REC_ARCH)

    def _check_stage_a_match(self, info) -> None:
        """T_a, T_m were trained against one aligned encoder: stage B must use the same one."""
        here, there = self._aligned_record(), info["aligned_encoder"]
        a_cfg = info.get("stage_a_config", {})
        if self.cfg.use_far and self.cfg.lambda_ft and not (a_cfg.get("use_far", True) and a_cfg.get("lambda_pt", 1.0)):
            raise ValueError("stage B uses FAR but its stage A trained without it (T_a, T_m are untrained): "
                             "train stage A with use_far=True or set use_far=False here")
        if here != there:
            raise ValueError(f"stage B's FAR encoder {here} differs from the one stage A trained T_a/T_m against "
                             f"{there}; set aligned_encoder/clip_layer/vgg_layer as in stage A")

    # ---- data: a pure function of (seed, t)
    def batch(self, t: int):
        cfg, base = self.cfg, t - 1
        if cfg.stage == "A":
            items = [self.pairs[base * cfg.batch + j] for j in range(cfg.batch)]
            return (torch.stack([a for a, _ in items]).to(self.device), torch.stack([b for _, b in items]).to(self.device))
        return torch.stack([self.lr_set[base * cfg.batch + j] for j in range(cfg.batch)]).to(self.device), None

    def noise_generator(self, t: int) -> torch.Generator:
        """The controller's noise for iteration t: its own stream, a pure function of (seed, t)."""
        return torch.Generator().manual_seed(batch_seed(self.cfg.seed, 7_777_777 + t))

    def _s(self, x_lr, y, t: int, stage: str):
        cfg = self.cfg
        if cfg.controller == "off":
            return None, None
        with torch.set_grad_enabled(not cfg.detach_hqi and stage == "B"):
            h = hqi(x_lr, y.detach() if cfg.detach_hqi else y, self.nets.distance, cfg.scale, cfg.upsample)
        c = controller_offset(h, stage, cfg.controller)
        return controller(c, cfg.embed_dim if stage == "A" else self.rec.arch["embed_dim"],
                          self.noise_generator(t), cfg.noise_std), h

    def step(self, t: int) -> dict[str, float]:
        cfg = self.cfg
        x, y = self.batch(t)
        lam = cfg.lambda_pt if cfg.stage == "A" else cfg.lambda_ft
        # bf16: the networks run in bf16; HQI, the cosine distances, L1 and FAR in fp32
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            if cfg.stage == "A":
                net, hr = self.s, y
            else:
                net = self.rec
                hr = self.s(x)  # M(X^r)
            s, h = self._s(x, hr, t, cfg.stage)
            e_im = net.e_img(hr)
            x_hat = net.reconstruct(x, e_im, s)
            terms = {"l_rec": rec_loss(x_hat, x, self.nets.distance, cfg.rec_perceptual_weight, cfg.rec_hf_weight)}
            if cfg.use_far and lam:
                with torch.no_grad() if cfg.stage == "A" else torch.enable_grad():
                    e_cl = self.nets.aligned(hr)
        if cfg.use_far and lam:
            terms["far"] = far_loss(e_im, e_cl.float(), net.t_avg, net.t_max, cfg.gram_diag, cfg.far_batch_norm)
        terms["total"] = terms["l_rec"] + lam * terms.get("far", 0.0)
        self._update(t, terms, terms["total"], self.opt_g)
        self._end_iteration()
        log = {k: v.item() for k, v in terms.items()}
        if h is not None:
            log["hqi"] = h.mean().item()
        return log


TRAINER = HRAwareTrainer  # what trains an HRAwareConfig (pdd.runs.Run.trainer)


def train_hr_aware(cfg: HRAwareConfig, progress: bool = True, nets: FrozenNets | None = None) -> Path:
    """Train (or resume) one stage; return the run directory."""
    return HRAwareTrainer(cfg, progress=progress, nets=nets).fit()


# ======================================================================================
# Method-comparison rows (for pdd.experiments): the full method and Tab. 2's two ablations.
# Each row's stage A mirrors its stage B, as the paper's Tab. 2 baseline ("without the
# controller s in the pretraining and finetuning stages"; Fig. 7's networks use no FAR).

METHOD_ROWS = {
    "HR-aware fine-tuning": {},
    "HR-aware: controller only": {"use_far": False},   # Tab. 2 row "s, no FAR"
    "HR-aware: FAR only": {"controller": "off"},       # Tab. 2 row "FAR, no s"
}


def method_configs(method: str, preset: str, domain: str, seed: int, runs_dir, data_root=None,
                   init_m: str | None = None, stage_a_iters: int | None = None, stage_b_iters: int | None = None,
                   transductive: bool = False, overrides: dict | None = None) -> tuple[HRAwareConfig, HRAwareConfig]:
    """(stage-A config, stage-B config) of one METHOD_ROWS row, with run directories in
    pdd.runs' layout: stage B is the row's run (``<slug>[-transductive][-<digest of overrides>]_s<seed>``),
    stage A is named by the stage-A fields the row changes, so rows whose stage A is the same
    share it. ``init_m``: M's weights (pdd.experiments.generalist_file); None: the preset's."""
    if method not in METHOD_ROWS:
        raise ValueError(f"unknown HR-aware row {method!r}; valid: {', '.join(METHOD_ROWS)}")
    row = {**METHOD_ROWS[method], **(overrides or {})}
    a_keys = {"controller", "use_far", "aligned_encoder", "clip_layer", "vgg_layer", "hqi_net", "lambda_pt"}
    a_over = {k: v for k, v in row.items() if k in a_keys}
    cfg_a = make_hr_config("A", preset, {"domain": domain, "seed": seed, "data_root": data_root,
                                         "out": str(hr_stage_a_dir(runs_dir, preset, domain, seed, a_over)),
                                         **a_over, **({"iters": stage_a_iters} if stage_a_iters else {})})
    b_dir = row_dir(runs_dir, preset, domain, method, seed, overrides=overrides,
                    tag="transductive" if transductive else "")
    b_over = {"domain": domain, "seed": seed, "data_root": data_root, "rec_net": cfg_a.out,
              "transductive": transductive, "out": str(b_dir), **row}
    if init_m:
        b_over["init_m"] = init_m
    if stage_b_iters:
        b_over["iters"] = stage_b_iters
    return cfg_a, make_hr_config("B", preset, b_over)


def run_method(method: str, preset: str, domain: str, seed: int, runs_dir, progress: bool = True, **kw) -> Path:
    """Train (or resume; a finished run returns at once) both stages of one row; the stage-B run."""
    cfg_a, cfg_b = method_configs(method, preset, domain, seed, runs_dir, **kw)
    train_hr_aware(cfg_a, progress=progress)
    return train_hr_aware(cfg_b, progress=progress)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pdd.hr_aware", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=list(STAGES), help="required unless --config is given")
    ap.add_argument("--config", help="an HRAwareConfig JSON (as pdd.experiments would write it); flags override it")
    ap.add_argument("--preset", default="cpu", choices=["paper", "cpu", "scratch", "tiny"])
    ap.add_argument("--domain")
    ap.add_argument("--data-root")
    ap.add_argument("--iters", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--out", help="run directory; required without --config")
    ap.add_argument("--rec-net", help="stage B: the stage-A run directory")
    ap.add_argument("--init-m", help="stage B: M's weights (name or path); default per preset")
    ap.add_argument("--transductive", action="store_true",
                    help="fine-tune on the domain's TEST LR (the paper's protocol); labelled so in the run")
    cli.add_run_flags(ap, "any HRAwareConfig field")
    args = ap.parse_args(argv)
    over = {k: v for k, v in (("domain", args.domain), ("data_root", args.data_root), ("iters", args.iters),
                              ("seed", args.seed), ("out", args.out), ("rec_net", args.rec_net),
                              ("init_m", args.init_m)) if v is not None}
    if args.transductive:
        over["transductive"] = True
    over.update(cli.set_items(ap, args.set))
    try:
        if args.config:
            cfg = HRAwareConfig.from_file(args.config)
            for k, v in over.items():
                set_field(cfg, k, v)
            cfg.validate()
        elif args.stage and args.out:
            cfg = make_hr_config(args.stage, args.preset, over)
        else:
            ap.error("give --stage and --out, or --config")
    except ValueError as e:
        ap.error(str(e))
    if cfg.stage == "A" and cfg.iters < PAPER_STAGE_A_ITERS:
        print(f"note: stage A runs {cfg.iters} iterations under the {cfg.preset} preset: this is NOT the paper's "
              f"{PAPER_STAGE_A_ITERS:,}-iteration reconstruction network (recorded as a deviation).")
    if cfg.transductive:
        print("note: transductive: fine-tuning on the test LR, as the paper does (labelled so in config.json).")
    out = train_hr_aware(cfg, progress=not args.no_progress)
    for d in run_deviations(out):
        print(f"deviation: {d}")
    print(f"done: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m pdd.hr_aware"))
