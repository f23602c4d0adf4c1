"""KDSR's three training stages on ``pdd.train.LoopTrainer``'s loop, checkpoints and logs.

Stages (spec section 3, the official KDSR-GAN configs):
  teacher  G + E (teacher encoder, sees LR and HR) from scratch, L1.
  student  G + E_st; G starts from the teacher's G (E_st random, as the official
           ``strict_load_g: False``); L1 + KD(tau 0.15) against the frozen teacher's D'.
  gan      the student fine-tuned with L1 + VGG19 perceptual + vanilla GAN (weight 1.0,
           U-Net discriminator) + KD, the teacher still frozen.
Every stage trains on Real-ESRGAN's second-order degradation WITHOUT unsharp masking of
the source (``SecondOrderConfig(usm_sharpen=False)``: the official ``gt_usm: False``), or,
for the classic variants (teacher and student stages only), on KDSR's classic blur +
bicubic + noise pipeline (``degradation="classic_iso" | "classic_aniso"``,
``pdd.kdsr_degradations``).

``KDSRTrainer`` trains on ``pdd.train.LoopTrainer``'s loop (resume, atomic checkpoints, EMA
snapshots ``weights/net_g_<iter>.pth`` in the BasicSR ``params_ema`` layout that
``pdd.kdsr.load_kdsr`` reads, log.csv, NaN stop); the network set-up, ``batch`` and ``step``
are its own. Logged per iteration: l1, kd (and the other terms), total,
``idr_l1`` (L1 between D'_S and D'_T: logged only, as the official code), and encoder
outputs: ``d_norm`` (mean L2 norm of D), ``d_spread`` (std of D across the batch, averaged
over channels: near 0 means D ignores the degradation), ``d_teacher_spread``; and at every
checkpoint the EMA encoder's D and D' on a fixed probe batch (``idr/idr_<iter>.npz``).

Under the ``cpu``, ``scratch`` and ``tiny`` presets this trains a small KDSR from scratch on
the built-in photos: NOT the released model, and not evidence about it. ``scratch`` is the
KDSR counterpart of ``pdd.config``'s scratch generalist (same patch, batch, schedule and
second-order data; pixel loss only, as that RRDBNet), the second generalist of the
method comparison's KDSR rows.

    python -m pdd.kdsr_train --stage teacher --preset tiny --out runs/kdsr/teacher
    python -m pdd.kdsr_train --stage student --preset tiny --out runs/kdsr/student --teacher runs/kdsr/teacher
    python -m pdd.kdsr_train --stage gan --preset tiny --out runs/kdsr/gan --teacher runs/kdsr/teacher --init runs/kdsr/student
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F

from . import cli, runs
from . import losses as L
from .config import RunConfig
from .kdsr import TAU, KDSRStudent, KDSRTeacher, kd_loss, load_kdsr
from .train import LoopTrainer, batch_seed, ema_copy, trainable

STAGES = ("teacher", "student", "gan")
DEGRADATIONS = ("second_order", "classic_iso", "classic_aniso")
PRESETS = ("paper", "cpu", "scratch", "tiny")
NOT_RELEASED = ("companion-trained small KDSR ({variant}, {iters} iterations on {data}): NOT the released "
                "KDSR model and not evidence about it")


@dataclass
class KDSRTrainConfig(RunConfig):
    """Every knob of a KDSR training stage; defaults are the official KDSR-GAN values."""

    stage: str = "teacher"             # teacher | student | gan
    preset: str = "paper"
    variant: str = "gan"               # pdd.kdsr.VARIANTS
    scale: int = 4
    # data: HR crops from hr_dir (paper: DF2K+OST) or from a domain's clean labeled HR photos
    domain: str = "Synth-Defocus"
    data_root: str | None = None
    hr_dir: str | None = None
    patch: int = 64                    # LR patch (official HR crop 256)
    batch: int = 9                     # per process (official: 9 per GPU on 8 GPUs)
    degradation: str = "second_order"  # second_order (KDSR-GAN) | classic_iso | classic_aniso (KDSR_S-M/L)
    classic_noise_max: float = 0.0     # classic: noise level ~ U[0, this] / 255 (25 for aniso + noise)
    usm_sharpen_source: bool = False   # official gt_usm False: the LR is made from the plain HR
    teacher_sees_usm_hr: bool = False  # the V2 flag l1_gt_usm: only the teacher's HR input is sharpened
    iters: int = 1_000_000
    seed: int = 0
    out: str = "runs/kdsr"
    # weights: names in pdd.kdsr.RELEASED, files, or run directories (their newest EMA snapshot)
    teacher: str | None = None         # frozen teacher for the student and gan stages
    init: str | None = None            # starting weights of the trained network (student stage: G only)
    vgg_weights: str | None = None
    disc_feat: int = 64
    # optimisation (Adam, official betas); lr halves at each milestone
    lr: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple = (0.9, 0.99)
    lr_milestones: tuple = (4_000_000,)
    lr_gamma: float = 0.5
    ema_decay: float = 0.999
    # loss weights
    w_l1: float = 1.0
    w_kd: float = 1.0
    w_perceptual: float = 1.0
    w_gan: float = 1.0                 # KDSR-GAN uses 1.0 (RealESRGAN_x4plus: 0.1)
    tau: float = TAU
    perceptual_layers: dict = field(default_factory=lambda: dict(L.PERCEPTUAL_LAYERS))
    # engineering
    device: str = "auto"
    bf16: bool = False
    channels_last: bool = False
    threads: int | None = None
    ckpt_every: int = 5000
    log_every: int = 100

    trainer_module: ClassVar[str] = "pdd.kdsr_train"

    def starts_from(self) -> set[Path]:
        """The teacher and starting runs (run directories, or files as given: released names are not runs)."""
        return {Path(p) for p in (self.teacher, self.init) if p}

    @property
    def mode(self) -> str:  # the job's name in progress bars and logs (RunConfig)
        return f"kdsr_{self.stage}"

    @property
    def has_discriminator(self) -> bool:
        return self.stage == "gan"

    def step_kind(self, warm_up: bool = False) -> str:
        return f"{self.preset} KDSR {self.stage}"

    def _use_stand_ins(self, stand_ins: dict) -> None:
        for name in ("teacher", "init"):  # run directories in the plan -> the runs that stood in for them
            path = getattr(self, name)
            if path:
                setattr(self, name, stand_ins.get(str(Path(path)), path))

    def validate(self) -> "KDSRTrainConfig":
        from .kdsr import variant_size

        if self.stage not in STAGES:
            raise ValueError(f"unknown KDSR stage {self.stage!r}; valid: {', '.join(STAGES)}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; valid: {', '.join(PRESETS)}")
        variant_size(self.variant)
        if self.degradation not in DEGRADATIONS:
            raise ValueError(f"unknown degradation {self.degradation!r}; valid: {', '.join(DEGRADATIONS)}")
        if self.degradation != "second_order" and self.stage == "gan":
            raise ValueError("the gan stage is the real-world stage: it trains on the second-order pipeline")
        if self.stage in ("student", "gan") and not self.teacher:
            raise ValueError(f"the {self.stage} stage needs a frozen teacher: set teacher to a teacher run "
                             f"directory, a weights file, or the released 'KDSRT-rec'")
        if self.stage == "gan" and not self.init:
            raise ValueError("the gan stage starts from a trained student: set init to a student run "
                             "directory, a weights file, or the released 'KDSRS-rec'")
        if self.preset == "paper" and not self.hr_dir:
            raise ValueError("the paper preset trains on DF2K+OST: set hr_dir (--hr-dir) to a folder of their HR images")
        if self.patch < 8 or self.patch % 2 or self.batch < 1 or self.iters < 0:
            raise ValueError("patch must be an even number >= 8 (the discriminator needs HR divisible by 8), "
                             "batch >= 1 and iters >= 0")
        return self


# The cpu preset trains the tiny size too (32 features, 4 blocks: not a released size), with
# the PDD cpu preset's patch, batch and iterations: a few minutes per stage on 2 cores.
CPU_VARIANT = "tiny"


def make_kdsr_config(stage: str = "teacher", preset: str = "cpu", overrides: dict | None = None,
                     **kw) -> KDSRTrainConfig:
    """Official stage values -> preset sizes -> overrides (field names, as ``pdd.config.make_config``)."""
    from .config import cpu_has_native_bf16, set_field

    cfg = KDSRTrainConfig(stage=stage, preset=preset)
    # Stage schedules of the official configs (spec section 3).
    if stage == "student":
        cfg.lr, cfg.lr_milestones = 2e-4, (600_000,)      # 2e-4 * 0.5^floor(it / 600k)
    elif stage == "gan":
        cfg.iters, cfg.lr_milestones = 400_000, (400_000,)
    if preset == "paper":
        if stage in ("student", "gan"):
            cfg.teacher = "KDSRT-rec"
        if stage == "gan":
            cfg.init = "KDSRS-rec"
    elif preset == "cpu":
        cfg.variant, cfg.patch, cfg.batch, cfg.iters = CPU_VARIANT, 32, 2, 300
        cfg.lr_milestones, cfg.ema_decay = (10**9,), 0.99  # a stated deviation, as the PDD cpu preset
        cfg.ckpt_every, cfg.log_every = 50, 10
        cfg.bf16 = cfg.channels_last = cpu_has_native_bf16()
    elif preset == "scratch":
        # pdd.config.pretrain_config's scratch generalist schedule, per stage: LR patch 32,
        # batch 8, 1000 iterations, lr 5e-4 halved for the last quarter (the official student
        # stage's 2x teacher lr is not kept: one schedule for both). The tiny size (32 features
        # like the scratch RRDBNet, 0.37 M parameters against its 0.76 M) at 2 x 1000 iterations
        # costs about what that RRDBNet's 1000 do (0.11 vs 0.28 s per bf16 step, 1 thread).
        from .config import SCRATCH_PRETRAIN_ITERS

        cfg.variant, cfg.patch, cfg.batch, cfg.iters = CPU_VARIANT, 32, 8, SCRATCH_PRETRAIN_ITERS
        cfg.lr, cfg.ema_decay = 5e-4, 0.99   # lr_milestones: set from iters below
        cfg.ckpt_every, cfg.log_every = 250, 25
        cfg.bf16 = cfg.channels_last = cpu_has_native_bf16()
    elif preset == "tiny":
        cfg.variant, cfg.patch, cfg.batch, cfg.iters, cfg.disc_feat = "tiny", 16, 2, 20, 16
        cfg.lr_milestones, cfg.ema_decay = (10**9,), 0.9
        cfg.ckpt_every, cfg.log_every = 10, 2
    else:
        raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
    given = {**(overrides or {}), **kw}
    for k, v in given.items():
        set_field(cfg, k, v)
    if preset == "scratch" and "lr_milestones" not in given:
        cfg.lr_milestones = (max(1, int(0.75 * cfg.iters)),)  # the schedule's last quarter, at any length
    return cfg.validate()


def generalist_run_dirs(preset: str, domain: str, runs_dir, seed: int = 0, iters: int | None = None,
                        gan_stage: bool = False) -> dict[str, Path]:
    """{stage: run directory} of the companion-trained KDSR generalist (``pdd.runs.kdsr_dir``:
    ``kdsr-<stage>[-<iters>it]_s<seed>``, the length named when not the preset's)."""
    default = make_kdsr_config("teacher", preset).iters
    stages = ("teacher", "student") + (("gan",) if gan_stage else ())
    return {st: runs.kdsr_dir(runs_dir, preset, domain, st, seed, iters, default) for st in stages}


def generalist_configs(preset: str, domain: str, runs_dir, seed: int = 0, data_root=None, iters: int | None = None,
                       gan_stage: bool = False, **overrides) -> list[KDSRTrainConfig]:
    """The stages that train the companion's KDSR generalist, in order (teacher, student[, gan]);
    each names the run before it as its teacher/init, so a pool can start one when that finishes."""
    dirs = generalist_run_dirs(preset, domain, runs_dir, seed, iters, gan_stage)
    common = dict(domain=domain, data_root=data_root, seed=seed, **overrides)
    if iters is not None:
        common["iters"] = iters
    links = {"teacher": {}, "student": {"teacher": str(dirs["teacher"])},
             "gan": {"teacher": str(dirs["teacher"]), "init": str(dirs["student"])}}
    return [make_kdsr_config(st, preset, out=str(d), **links[st], **common) for st, d in dirs.items()]


def _weights_arg(name_or_path: str) -> str:
    """A run directory stands for its newest EMA snapshot."""
    from .train import last_weights

    p = Path(name_or_path).expanduser()
    return str(last_weights(p)) if p.is_dir() else str(name_or_path)


class KDSRTrainer(LoopTrainer):
    """One KDSR stage; ``fit()``, ``save()``, resume and logging are ``LoopTrainer``'s."""

    def __init__(self, cfg: KDSRTrainConfig, progress: bool = True):
        from .archs import UNetDiscriminatorSN
        from .data import ImageFolder, LabeledPatches, open_domain

        super().__init__(cfg, progress, single_process="KDSR training runs single-process (no DDP yet): "
                                                       "launch it without torchrun")

        # data: clean HR crops; the LR is degraded per iteration in batch()
        if cfg.hr_dir:
            exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
            paths = sorted(p for p in Path(cfg.hr_dir).expanduser().iterdir() if p.suffix.lower() in exts)
            if not paths:
                raise FileNotFoundError(f"hr_dir {cfg.hr_dir} holds no images ({', '.join(sorted(exts))})")
            hr_images, data = ImageFolder(paths), f"{len(paths)} HR images in {cfg.hr_dir}"
        else:
            domain = open_domain(cfg.domain, cfg.data_root)
            hr_images, data = domain.labeled_hr, f"the clean labeled HR photos of {cfg.domain}"
        self.labeled = LabeledPatches(hr_images, cfg.patch, cfg.scale, "bicubic", cfg.seed)

        # networks
        self.teacher = None
        if cfg.stage == "teacher":
            if cfg.init:
                s = load_kdsr(_weights_arg(cfg.init), cfg.variant, "teacher", cfg.scale)
                self.sources["S"] = str(s.weights_source)
            else:
                s = KDSRTeacher(cfg.variant, cfg.scale)
                self.sources["S"] = "random init (seed %d)" % cfg.seed
        else:
            self.teacher = load_kdsr(_weights_arg(cfg.teacher), cfg.variant, "teacher", cfg.scale)
            self.sources["teacher"] = str(self.teacher.weights_source) + " (frozen)"
            self.teacher = self.teacher.to(self.device).eval().requires_grad_(False)
            if cfg.init:
                s = load_kdsr(_weights_arg(cfg.init), cfg.variant, "student", cfg.scale)
                self.sources["S"] = str(s.weights_source)
            else:  # the official stage 2: G from the teacher, the student encoder random
                s = KDSRStudent(cfg.variant, cfg.scale)
                s.G.load_state_dict(self.teacher.G.state_dict(), strict=True)
                self.sources["S"] = "G from the teacher, E_st random init (seed %d)" % cfg.seed
        if cfg.preset != "paper":
            self.sources["note"] = NOT_RELEASED.format(variant=cfg.variant, iters=cfg.iters, data=data)
        self.sources["data"] = data
        self.s = trainable(s.to(self.device))  # MeanShift stays frozen; everything else trains
        self.ema = ema_copy(self.s)
        if cfg.has_discriminator:  # the gan stage: D and the perceptual loss's VGG19
            self.d = UNetDiscriminatorSN(3, cfg.disc_feat).to(self.device).train()
            self.vgg = self._load_vgg(list(cfg.perceptual_layers))
        self._to_channels_last(self.s, self.ema, self.teacher, self.d, self.vgg)

        # optimisation
        self._optimisers([p for p in self.s.parameters() if p.requires_grad])

    # ------------------------------------------------------------------ data
    def batch(self, t: int):
        """(lr, hr, hr_for_teacher) of iteration t: a pure function of (seed, t)."""
        from . import degradations as deg

        cfg, base = self.cfg, t - 1
        hr = torch.cat([deg.img2tensor(self.labeled.hr_crop(base * cfg.batch + j)[0]) for j in range(cfg.batch)])
        gen = torch.Generator().manual_seed(batch_seed(cfg.seed, base))
        if cfg.degradation == "second_order":
            lr = deg.second_order(hr, deg.SecondOrderConfig(scale=cfg.scale, usm_sharpen=cfg.usm_sharpen_source), gen)
        else:
            from .kdsr_degradations import ClassicConfig, classic_degrade

            classic = ClassicConfig(mode=cfg.degradation.removeprefix("classic_"), noise_max=cfg.classic_noise_max,
                                    scale=cfg.scale)
            lr = classic_degrade(hr, classic, gen)
        hr_t = torch.stack([deg.usm_sharpen(h[None])[0] for h in hr]) if cfg.teacher_sees_usm_hr else hr
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        to = lambda x: x.float().to(self.device).contiguous(memory_format=fmt)  # noqa: E731
        return to(lr), to(hr), to(hr_t)

    # ------------------------------------------------------------------ one iteration
    def step(self, t: int) -> dict[str, float]:
        cfg = self.cfg
        lr, hr, hr_t = self.batch(t)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        terms: dict[str, torch.Tensor] = {}
        with autocast:
            if cfg.stage == "teacher":
                sr, d, d_rich = self.s.forward_with_idr(lr, hr_t)
                d_t = None
            else:
                sr, d, d_rich = self.s.forward_with_idr(lr)
                with torch.no_grad():
                    d_t, d_rich_t = self.teacher.idr(lr, hr_t)
            terms["l1"] = cfg.w_l1 * F.l1_loss(sr.float(), hr)
            if d_t is not None:
                terms["kd"] = cfg.w_kd * kd_loss(d_rich, d_rich_t, cfg.tau)
            if cfg.stage == "gan":
                feats = self.vgg(sr)
                with torch.no_grad():
                    ref = self.vgg(hr)
                terms["perceptual"] = cfg.w_perceptual * L.perceptual_loss(feats, ref, cfg.perceptual_layers)
                self.d.requires_grad_(False)  # the G step must not accumulate gradients in D
                terms["gan"] = cfg.w_gan * L.gan_loss_g(self.d(sr).float())
            terms["total"] = sum(terms.values())
        self._update(t, terms, terms["total"], self.opt_g)
        log = {k: v.item() for k, v in terms.items()}
        with torch.no_grad():
            d32 = d.float()
            log["d_norm"] = d32.norm(dim=1).mean().item()
            log["d_spread"] = d32.std(0).mean().item() if d32.shape[0] > 1 else float("nan")
            if d_t is not None:
                dt32 = d_t.float()
                log["idr_l1"] = F.l1_loss(d_rich.float(), d_rich_t.float()).item()
                log["d_teacher_spread"] = dt32.std(0).mean().item() if dt32.shape[0] > 1 else float("nan")
        if self.d is not None:
            log.update(self.d_step(t, hr, sr, autocast))
        self._end_iteration()
        return log

    # ------------------------------------------------------------------ checkpoints
    def save(self) -> None:
        """The loop's checkpoint and EMA snapshot, plus the encoder's outputs on a fixed probe
        batch (iteration 1's LR, and its HR for the teacher): ``idr/idr_<iter>.npz`` with the
        EMA network's D and D' (and the frozen teacher's, in the student and gan stages), so
        the representation's evolution can be read back without rerunning anything."""
        super().save()
        import numpy as np

        lr, _, hr_t = self.batch(1)
        with torch.no_grad():
            arrays = dict(zip(("d", "d_rich"), self.ema.idr(lr, hr_t) if self.cfg.stage == "teacher"
                              else self.ema.idr(lr)))
            if self.teacher is not None:
                arrays.update(zip(("d_teacher", "d_rich_teacher"), self.teacher.idr(lr, hr_t)))
        folder = self.out / "idr"
        folder.mkdir(exist_ok=True)
        tmp = folder / f".idr_{self.iteration:06d}.npz"
        np.savez(tmp, iteration=self.iteration, **{k: v.float().cpu().numpy() for k, v in arrays.items()})
        os.replace(tmp, folder / f"idr_{self.iteration:06d}.npz")


TRAINER = KDSRTrainer  # what trains a KDSRTrainConfig (pdd.runs.Run.trainer)


def train_kdsr(cfg: KDSRTrainConfig, progress: bool = True) -> Path:
    """Train (or resume) one stage and return its run directory."""
    return KDSRTrainer(cfg, progress=progress).fit()


def kdsr_generalist(preset: str = "cpu", domain: str | None = None, data_root=None, seed: int = 0,
                    iters: int | None = None, runs_dir="runs", progress: bool = True, weights=None,
                    gan_stage: bool = False, **overrides):
    """A KDSR student to use as M_G (or as the network PDD adapts), in eval mode.

    ``weights`` (a file or a name in ``pdd.kdsr.RELEASED``) is loaded as given. Otherwise the
    ``paper`` preset loads the released ``KDSRS-GAN`` (an error says where to download it), and
    ``cpu`` does too when it is in the torch hub cache. Else (``scratch``, ``tiny``, or ``cpu``
    without the file) a small KDSR is trained here: teacher, then student (then the GAN stage
    with ``gan_stage``), ``iters`` iterations each (default: the preset's), cached under
    ``generalist_run_dirs`` and reused; its ``weights_source``
    says plainly that it is not the released model. ``overrides`` go to every stage's config.
    The result has ``weights_source`` and, when trained here, ``run_dir``.
    """
    from .kdsr import resolve_kdsr
    from .weights import WeightsNotFoundError, WeightsSource

    if weights is not None:
        return load_kdsr(weights)
    if preset == "paper":
        return load_kdsr("KDSRS-GAN")
    if preset == "cpu":
        try:
            resolve_kdsr("KDSRS-GAN")
            return load_kdsr("KDSRS-GAN")
        except WeightsNotFoundError:
            pass  # no released file here: train the small one below
    domain = domain or KDSRTrainConfig.domain
    previous = {}
    for cfg in generalist_configs(preset, domain, runs_dir, seed, data_root, iters, gan_stage, **overrides):
        previous[cfg.stage] = str(train_kdsr(cfg, progress=progress))
    run = Path(previous["gan" if gan_stage else "student"])
    from .train import last_weights

    model = load_kdsr(last_weights(run))
    note = NOT_RELEASED.format(variant=cfg.variant, iters="+".join([str(cfg.iters)] * len(previous)),
                               data=cfg.hr_dir or f"the clean photos of {domain}")
    model.weights_source = WeightsSource(f"KDSR student ({preset})", "companion-trained", str(last_weights(run)), note)
    model.run_dir = run
    return model


def main(argv: list[str] | None = None) -> int:
    from .config import set_field

    ap = argparse.ArgumentParser(prog="python -m pdd.kdsr_train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=STAGES, help="required without --config")
    ap.add_argument("--preset", default="cpu", choices=PRESETS)
    ap.add_argument("--out", help="run directory (checkpoint.pt, log.csv, weights/); required without --config")
    ap.add_argument("--config", help="a KDSRTrainConfig JSON (as pdd.experiments writes requested_config.json); "
                                     "flags override it")
    ap.add_argument("--variant", help="network size: gan, M, L, tiny (default: the preset's)")
    ap.add_argument("--teacher", help="frozen teacher (student/gan stages): run directory, file, or KDSRT-rec")
    ap.add_argument("--init", help="starting weights: run directory, file, or a released name (gan: KDSRS-rec)")
    ap.add_argument("--domain")
    ap.add_argument("--data-root")
    ap.add_argument("--hr-dir", help="a folder of clean HR images (the paper preset: DF2K+OST)")
    ap.add_argument("--iters", type=int)
    ap.add_argument("--seed", type=int)
    cli.add_run_flags(ap, "any KDSRTrainConfig field")
    args = ap.parse_args(argv)
    given = {k: v for k, v in (("variant", args.variant), ("teacher", args.teacher), ("init", args.init),
                                ("domain", args.domain), ("data_root", args.data_root), ("hr_dir", args.hr_dir),
                                ("iters", args.iters), ("seed", args.seed)) if v is not None}
    if args.config:
        cfg = KDSRTrainConfig.from_file(args.config)
        for k, v in {"stage": args.stage, "out": args.out, **given}.items():
            if v is not None:
                set_field(cfg, k, v)
    else:
        if not args.stage or not args.out:
            ap.error("--stage and --out are required (or give --config)")
        try:
            cfg = make_kdsr_config(args.stage, args.preset, out=args.out, **given)
        except ValueError as e:
            ap.error(str(e))
    for k, v in cli.set_items(ap, args.set):
        set_field(cfg, k, v)
    cfg.validate()
    if cfg.preset != "paper":
        print("NOTE: " + NOT_RELEASED.format(variant=cfg.variant, iters=cfg.iters,
                                             data=cfg.hr_dir or f"the clean photos of {cfg.domain}"), flush=True)
    out = train_kdsr(cfg, progress=not args.no_progress)
    print(f"done: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m pdd.kdsr_train"))
