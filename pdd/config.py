"""Plain dataclass configs and the named presets (`paper`, `cpu`, `tiny`).

One source of truth per number: every knob of the paper and of the official configs is a
field here with the paper's (or the official config's) value as default; presets change
a few fields; notebooks and the CLI override fields by name (``"pdd.lambda_intra"``).
"""
from __future__ import annotations

import copy
import abc
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from .devices import cpu_has_native_bf16, cpu_model  # noqa: F401 -- names callers import from here; devices is below config
from .losses import PDDWeights, SupervisedWeights
from .runs import run_of

MODES = ("supervised", "finetune", "naive", "static", "ema")
PRESETS = ("paper", "cpu", "scratch", "tiny")
ARCHS = ("rrdbnet", "kdsr")   # what S and G can be (TrainConfig.s_arch / g_arch)
# Presets whose generalist and specialist the companion pretrains from random init (pretrain_config).
FROM_SCRATCH = ("scratch", "tiny")


@dataclass
class RunConfig(abc.ABC):
    """What every training config is (``TrainConfig``; ``pdd.kdsr_train.KDSRTrainConfig``;
    ``pdd.hr_aware.HRAwareConfig``): a dataclass of plain fields, nested dataclasses, tuples and
    dicts, with ``seed``, ``out``, ``iters``, ``device``, ``threads``, ``bf16``, ``ema_decay``,
    ``ckpt_every`` and ``log_every`` (what ``pdd.train.LoopTrainer`` reads) and a ``mode`` (the
    job's name in progress bars and logs: a field of TrainConfig, a property of the others).

    A subclass sets ``trainer_module`` (``python -m <module> --config <run>/requested_config.json``
    trains it; the module's ``TRAINER`` is its trainer) and provides ``starts_from()``,
    ``step_kind()``, ``has_discriminator`` and ``validate()``; ``phases()`` and ``timing_copy()``
    have defaults for a trainer of one kind of step.
    """

    trainer_module: ClassVar[str]
    # keys ``to_dict`` writes beside the fields, for the record (config.json): ``from_dict`` reads past them
    recorded: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

    @classmethod
    def from_dict(cls, d: dict):
        """The config ``to_dict`` wrote (JSON's lists back to tuples, nested dicts to their dataclasses)."""
        return _from_plain(cls, {k: v for k, v in d.items() if k not in cls.recorded})

    @classmethod
    def from_file(cls, path):
        """A config JSON file, as a run's requested_config.json holds it (``--config``)."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    # ------------------------------------------------------------------ the run it describes
    def validate(self):
        return self

    @abc.abstractmethod
    def starts_from(self) -> set[Path]:
        """The run directories whose results this run starts from (they must finish first)."""

    @property
    @abc.abstractmethod
    def has_discriminator(self) -> bool:
        """Whether the trainer trains a discriminator beside the network."""

    # ------------------------------------------------------------------ what a step costs (pdd.reproduce's estimate)
    @abc.abstractmethod
    def step_kind(self, warm_up: bool = False) -> str:
        """What one training step costs, as a name: jobs whose steps do the same work share it.
        ``warm_up``: the name of its D-only warm-up steps (where the trainer has them)."""

    def phases(self) -> list[tuple[str, int, int]]:
        """(step kind, number of steps, an iteration t of that kind) for each phase of the run;
        one phase unless the trainer's steps change on the way."""
        return [(self.step_kind(), self.iters, 1)] if self.iters > 0 else []

    def timing_copy(self, out, stand_ins: dict):
        """A copy to time steps with: its run in ``out`` (a temporary folder), one thread, what it
        starts from replaced by a stand-in of the same architecture (``stand_ins``: {run directory
        in the plan: the temporary run that stood in for it}), so nothing real is read or written."""
        c = copy.deepcopy(self)
        c.out, c.threads = str(out), 1
        c._use_stand_ins(stand_ins)
        return c

    def _use_stand_ins(self, stand_ins: dict) -> None:
        """``timing_copy``'s step for this kind of config: what it starts from, replaced."""


def _from_plain(cls, d: dict):
    """``cls(**d)`` with what JSON flattened restored from each field's default: a list to the
    tuple the field holds, a dict to the dataclass it holds. Unknown keys raise (TypeError), as
    ``cls(**d)`` does."""
    kw = dict(d)
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        default = (f.default if f.default is not dataclasses.MISSING else
                   f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        value = d[f.name]
        if dataclasses.is_dataclass(default) and isinstance(value, dict):
            kw[f.name] = _from_plain(type(default), value)
        elif isinstance(default, tuple) and isinstance(value, (list, tuple)):
            kw[f.name] = tuple(value)
    return cls(**kw)


@dataclass
class TrainConfig(RunConfig):
    mode: str = "ema"                  # supervised | finetune | naive | static | ema
    preset: str = "paper"
    domain: str = "Canon"
    data_root: str | None = None
    iters: int = 100_000               # paper: 100K (EMA), 50K (static; the official static config says 100K)
    seed: int = 0
    out: str = "runs/default"
    # data: batch halves per process, LR patch size, X^L degradation
    scale: int = 4
    patch: int = 48                    # LR patch (HR patch = patch * scale)
    batch_l: int = 8
    batch_u: int = 8
    down: str = "bicubic"              # bicubic | random (bicubic/bilinear/area, supp. D.b) | second_order
    # networks: S, reference G (static/naive), D
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    disc_feat: int = 64
    # D's start: None, random init as the official configs; or a run's final D
    # (pdd.runs.d_snapshot_path), a deviation named in config.json's sources
    init_d: str | None = None
    init_s: str | None = "RealESRGAN_x4plus"   # weights name or path for S (None: random init)
    init_g: str | None = "RealESRGAN_x4plus"   # frozen reference in static/naive (paper Fig. 3a: the generalist)
    # architecture of S (and of its EMA) and of the frozen G: "rrdbnet" (num_feat/num_block/num_grow_ch
    # above) or "kdsr" (a KDSR student, pdd.kdsr; size and scale read from the init_s/init_g file)
    s_arch: str = "rrdbnet"
    g_arch: str = "rrdbnet"
    vgg_weights: str | None = None             # explicit VGG19 file; None: resolver
    # optimisation
    lr: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple = (0.9, 0.99)         # official configs; the paper text says (0.9, 0.999)
    lr_milestones: tuple = (25_000,)
    lr_gamma: float = 0.5
    warmup_d_iters: int = 300          # iterations 1..300 train only D (official net_d_init_iters)
    distill_start_k: int = 5           # distillation from iteration warmup_d_iters + k + 1 (static: 0)
    ema_decay: float = 0.999           # M_G = EMA(M_S) in ema mode; an EMA copy is evaluated in every mode
    # losses
    sup: SupervisedWeights = field(default_factory=SupervisedWeights)
    pdd: PDDWeights = field(default_factory=PDDWeights)
    gan: bool = True                   # False: no D at all (the GAN-free control)
    naive_lambda: float = 1.0          # λ of paper Eq. 3
    # engineering
    device: str = "auto"               # auto (CUDA, then MPS, then CPU) | cpu | cuda | cuda:N | mps
    bf16: bool = False                 # bf16 autocast (R_intra/R_inter stay fp32)
    channels_last: bool = False
    compile: bool = False              # torch.compile the networks' forward passes (opt-in: measured, not assumed)
    threads: int | None = None         # torch CPU threads (None: torch default)
    ckpt_every: int = 5000             # resumable checkpoint + EMA snapshot
    log_every: int = 100

    trainer_module: ClassVar[str] = "pdd.train"   # what trains this config (pdd.runs.Run.module)

    def starts_from(self) -> set[Path]:
        """The run directories whose snapshots S, G and D start from (they must finish first)."""
        return {r for r in (run_of(p) for p in (self.init_s, self.init_g, self.init_d) if p) if r is not None}

    @property
    def has_discriminator(self) -> bool:
        return bool(self.gan and self.sup.gan > 0)

    def step_kind(self, warm_up: bool = False) -> str:
        """Static, EMA PDD and naive distillation share one kind (S on X^L and X^U, G, VGG19 and D
        alike; the ablations' loss weights do not change the networks run); a KDSR S or G is timed
        as the preset's RRDBNet (``timing_copy``: under `scratch` D and VGG19 are most of a step)."""
        gan = self.has_discriminator
        if warm_up:
            return f"{self.preset} D-only warm-up" if gan else f"{self.preset} warm-up, no D"
        if self.mode == "supervised":
            return f"{self.preset} pretraining ({self.down} X^L{'' if gan else ', no GAN'})"
        # naive distillation runs the same networks (S on X^L and X^U, G, VGG19, D): timed as one
        name = "PDD (static/EMA, naive)" if self.mode in ("static", "ema", "naive") else self.mode
        return f"{self.preset} {name}" + ("" if gan else ", no GAN")

    def phases(self) -> list[tuple[str, int, int]]:
        """The D-only warm-up, then the full steps (timed at the first iteration that distils)."""
        w = min(self.warmup_d_iters, self.iters)
        phases = [(self.step_kind(warm_up=True), w, 1),
                  (self.step_kind(), self.iters - w, w + self.distill_start_k + 1)]
        return [ph for ph in phases if ph[1] > 0]

    def _use_stand_ins(self, stand_ins: dict) -> None:
        # S and G random RRDBNets of the preset's size: the KDSR rows' nets are timed as these
        self.init_s = self.init_g = self.init_d = None
        self.s_arch = self.g_arch = "rrdbnet"

    def validate(self) -> "TrainConfig":
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid: {', '.join(MODES)}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; valid: {', '.join(PRESETS)}")
        for name in ("s_arch", "g_arch"):
            if getattr(self, name) not in ARCHS:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid: {', '.join(ARCHS)}")
        if self.s_arch == "kdsr" and not self.init_s:
            raise ValueError("s_arch 'kdsr' needs init_s: a KDSR student file (pdd.kdsr.load_kdsr), or a released name")
        if self.g_arch == "kdsr" and self.mode in ("static", "naive") and not self.init_g:
            raise ValueError("g_arch 'kdsr' needs init_g: a KDSR student file (pdd.kdsr.load_kdsr), or a released name")
        if self.down not in ("bicubic", "random", "second_order"):
            raise ValueError(f"unknown X^L degradation {self.down!r}; valid: bicubic, random, second_order")
        if self.pdd.intra_measure not in ("ce", "l1") or self.pdd.inter_measure not in ("gram", "l1"):
            raise ValueError("pdd.intra_measure must be ce|l1 and pdd.inter_measure gram|l1")
        if self.patch < 8 or self.patch % 2:
            raise ValueError(f"patch must be an even number >= 8 (the discriminator needs HR divisible by 8), got {self.patch}")
        if self.iters < 0 or self.batch_l < 1 or (self.mode in ("naive", "static", "ema") and self.batch_u < 1):
            raise ValueError("iters must be >= 0 and batch sizes >= 1")
        return self




def _apply_mode_defaults(cfg: TrainConfig) -> None:
    """What a mode implies, as the official configs set it (overridable afterwards)."""
    if cfg.mode == "static":
        cfg.distill_start_k = 0
        cfg.pdd.detach_s_l = True            # official static config: domain_opt_detach true
        if cfg.preset == "paper":
            cfg.iters = 50_000               # paper: 50K for static
    elif cfg.mode in ("finetune", "supervised"):
        cfg.pdd.lambda_intra = cfg.pdd.lambda_inter = cfg.pdd.lambda_gan = 0.0
        cfg.batch_u = 0
    if cfg.mode == "supervised":
        cfg.warmup_d_iters = 0


def make_config(preset: str = "cpu", mode: str = "ema", overrides: dict | None = None, **kw) -> TrainConfig:
    """Preset → mode defaults → overrides (dotted names allowed: ``{"pdd.lambda_inter": 0.5}``)."""
    cfg = TrainConfig(preset=preset, mode=mode)
    if preset == "cpu":
        # The paper's own generalist on a built-in domain, sized for a 2-core CPU. Deviation:
        # a 0.99 EMA decay (0.999 over a few hundred iterations would barely move M_G).
        cfg.domain = "Synth-Defocus"
        cfg.patch, cfg.batch_l, cfg.batch_u = 32, 2, 2
        cfg.iters, cfg.warmup_d_iters, cfg.ema_decay = 300, 50, 0.99
        cfg.lr_milestones = (10**9,)
        cfg.ckpt_every, cfg.log_every = 50, 10
        cfg.bf16 = cfg.channels_last = cpu_has_native_bf16()
    elif preset == "scratch":
        # The premise setting (issue 11): a small RRDBNet (same class) whose generalist and
        # bicubic specialist are pretrained here from scratch (`pretrain_config`), then PDD
        # exactly as under `cpu`. Default domain: Synth-ISO, sensor noise a bicubic
        # specialist cannot handle. Sizes chosen on 02's premise numbers alone.
        cfg.domain = "Synth-ISO"
        cfg.num_feat, cfg.num_block, cfg.num_grow_ch = SCRATCH_ARCH
        cfg.patch, cfg.batch_l, cfg.batch_u = 32, 2, 2
        cfg.iters, cfg.warmup_d_iters, cfg.ema_decay = 300, 50, 0.99
        cfg.lr_milestones = (10**9,)
        cfg.init_s = cfg.init_g = None   # filled with the pretrained files by pdd.experiments
        cfg.ckpt_every, cfg.log_every = 50, 10
        cfg.bf16 = cfg.channels_last = cpu_has_native_bf16()
    elif preset == "tiny":
        # A small RRDBNet (same class) for tests and sweeps: a smoke tier, not evidence.
        cfg.domain = "Synth-Defocus"
        cfg.num_feat, cfg.num_block, cfg.num_grow_ch, cfg.disc_feat = 16, 1, 8, 16
        cfg.patch, cfg.batch_l, cfg.batch_u = 16, 2, 2
        cfg.iters, cfg.warmup_d_iters, cfg.distill_start_k, cfg.ema_decay = 20, 4, 1, 0.9
        cfg.lr_milestones = (10**9,)
        cfg.init_s = cfg.init_g = None
        cfg.ckpt_every, cfg.log_every = 10, 2
        cfg.lr = cfg.lr_d = 2e-4
    elif preset != "paper":
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    _apply_mode_defaults(cfg)
    for k, v in {**(overrides or {}), **kw}.items():
        set_field(cfg, k, v)
    return cfg.validate()


# scratch preset: (num_feat, num_block, num_grow_ch) and its pretraining schedule
SCRATCH_ARCH = (32, 4, 16)
SCRATCH_PRETRAIN_ITERS = 1000
# the starting models' GAN stage under scratch (pretrain_config(stage="gan")): length, Real-ESRGAN's GAN weight
SCRATCH_GAN_STAGE_ITERS = 600
SCRATCH_GAN_STAGE_WEIGHT = 0.1
TINY_GAN_STAGE_ITERS = 4
# D's width under scratch where the fair set-up sets it (pdd.experiments.catalogue.fair_setup) and in the
# GAN stage: the official U-Net D has 64 features; the scratch generator is scaled from 64 to 32, D the same way
SCRATCH_DISC_FEAT = 32
TINY_PRETRAIN_ITERS = 300


def pretrain_iters(preset: str) -> int:
    """The from-scratch presets' pretraining length (a run of another length is named apart: pdd.runs)."""
    return SCRATCH_PRETRAIN_ITERS if preset == "scratch" else TINY_PRETRAIN_ITERS


def gan_stage_iters(preset: str) -> int:
    """The length of the starting models' GAN stage (``pretrain_config(stage="gan")``)."""
    return SCRATCH_GAN_STAGE_ITERS if preset == "scratch" else TINY_GAN_STAGE_ITERS


def pretrain_config(preset: str, role: str, domain: str, seed: int, out: str, data_root=None,
                    iters: int | None = None, stage: str = "pixel", init_s: str | None = None,
                    gan_weight: float | None = None) -> TrainConfig:
    """Supervised pretraining of a from-scratch preset's two starting models.

    role "generalist": X^L from Real-ESRGAN's second-order pipeline (as RealESRNet is
    trained); role "specialist": MATLAB bicubic X^L (as the bicubic ESRGAN/ESRNet).

    ``stage="pixel"``: under ``scratch`` the wavelet L1 alone, batch 8 (pixel losses first, as
    RealESRNet precedes RealESRGAN: cheap enough to train thousands of iterations here);
    under ``tiny`` the preset's full loss for a few hundred iterations (a smoke tier, one stage).

    ``stage="gan"``: the paper trains M_S and M_G "with MSE-based loss, VGG loss, and adversarial
    training", so the pixel stage's network (``init_s``, its final snapshot) goes on with
    wavelet + perceptual + GAN, as Real-ESRGAN follows RealESRNet, with a D of its own (random
    init, no D-only warm-up, as Real-ESRGAN's config) that the run leaves in
    ``weights/net_d_*.pth``. Under ``scratch``: Real-ESRGAN's GAN weight 0.1 (the PDD configs'
    fine-tune uses 0.01), a 32-feature D (``SCRATCH_DISC_FEAT``), the preset's batch, patch and
    learning rate, as the fine-tune after it; under ``tiny`` the same wiring at smoke size.
    ``gan_weight``: the GAN stage's GAN weight instead of ``SCRATCH_GAN_STAGE_WEIGHT`` (a candidate of
    the fair set-up's decisions, results/Synth-ISO/scratch/fair_setup/RULES.md R4).
    """
    if role not in ("generalist", "specialist"):
        raise ValueError(f"role must be 'generalist' or 'specialist', got {role!r}")
    if preset not in FROM_SCRATCH:
        raise ValueError(f"preset {preset!r} starts from released weights; pretraining applies to {FROM_SCRATCH}")
    if stage not in ("pixel", "gan"):
        raise ValueError(f"stage must be 'pixel' or 'gan', got {stage!r}")
    if gan_weight is not None and (stage != "gan" or not gan_weight > 0):
        raise ValueError(f"gan_weight={gan_weight!r}: a positive GAN weight of the GAN stage (stage='gan')")
    if stage == "gan" and not init_s:
        raise ValueError("the GAN stage starts from the pixel stage's network: init_s is needed")
    down = "second_order" if role == "generalist" else "bicubic"
    cfg = make_config(preset, "supervised", domain=domain, data_root=data_root, seed=seed, out=out, down=down)
    if stage == "gan":
        cfg.init_s = init_s
        cfg.sup.gan = SCRATCH_GAN_STAGE_WEIGHT if gan_weight is None else float(gan_weight)
        cfg.iters = iters or gan_stage_iters(preset)
        if preset == "scratch":
            cfg.disc_feat = SCRATCH_DISC_FEAT
            cfg.ckpt_every, cfg.log_every = 100, 10
        else:
            cfg.ckpt_every, cfg.log_every = 2, 1
    elif preset == "tiny":
        cfg.iters, cfg.ckpt_every, cfg.log_every = iters or TINY_PRETRAIN_ITERS, 100, 10
    else:
        cfg.sup.perceptual, cfg.sup.perceptual_layers, cfg.gan = 0.0, {}, False
        cfg.batch_l = 8
        cfg.iters, cfg.ckpt_every, cfg.log_every = iters or SCRATCH_PRETRAIN_ITERS, 250, 25
        # a small net from scratch: 5e-4 (2e-4 measured slower: wavelet loss 0.042 vs 0.036
        # for the specialist at 250 iterations), halved for the last quarter
        cfg.lr, cfg.lr_milestones = 5e-4, (int(0.75 * cfg.iters),)
    return cfg.validate()


def set_field(cfg: TrainConfig, dotted: str, value) -> None:
    """Set ``cfg.<dotted>``; strings (from the CLI) are parsed to the field's type."""
    obj, *path = [cfg] + dotted.split(".")
    for name in path[:-1]:
        obj = getattr(obj, name)
    name = path[-1]
    if not dataclasses.is_dataclass(obj) or name not in {f.name for f in dataclasses.fields(obj)}:
        valid = ", ".join(f.name for f in dataclasses.fields(obj))
        raise ValueError(f"unknown config field {dotted!r}; fields here: {valid}")
    current = getattr(obj, name)
    if isinstance(value, str):
        value = _parse(value, current)
    setattr(obj, name, value)


def _parse(text: str, current):
    if text.lower() in ("none", "null"):
        return None
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {text!r}")
    if isinstance(current, (int, float, tuple, list, dict)) or current is None:
        try:
            value = json.loads(text.replace("(", "[").replace(")", "]")) if text[:1] in "[({" else json.loads(text)
        except json.JSONDecodeError:
            return text
        if isinstance(current, tuple) and isinstance(value, list):
            return tuple(value)
        if isinstance(current, float) and isinstance(value, int):
            return float(value)
        return value
    return text


def resolve_device(name: str = "auto", log=None) -> torch.device:
    """``cfg.device`` as a torch.device: "auto" picks CUDA, then Apple's MPS, then the CPU; a
    device this machine lacks is a named error (pdd.devices.resolve_device has the details)."""
    from .devices import resolve_device as _resolve

    return _resolve(name, log=log)
