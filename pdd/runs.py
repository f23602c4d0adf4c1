"""Where a training run lives and what it is: the one naming rule.

A run is one training job, described by its config (``pdd.config.TrainConfig``,
``pdd.kdsr_train.KDSRTrainConfig`` or ``pdd.hr_aware.HRAwareConfig``); the config's ``out``
is its directory::

    <run>/config.json, requested_config.json, train.log, log.csv, checkpoint.pt
    <run>/weights/net_g_<iteration:06d>.pth    EMA snapshots in the BasicSR release layout
    <run>/weights/net_d_<iters:06d>.pth        the final discriminator, where the run trains one
    <run>/eval/<snapshot>__<test set>.csv       cached scores (pdd.experiments.scoring)

The comparison's runs sit in ``<runs_dir>/<preset>/<domain>/<name>``, ``<name>`` being

    <row slug>[-<tag>][-<digest of overrides>]_s<seed>   a row of pdd.experiments.catalogue
    pretrained-<role>[-<iters>it]_s<seed>              a from-scratch starting model (role:
                                                       generalist or specialist)
    pretrained-<role>[-<iters>it]-gan<n>it_s<seed>     its GAN stage (the fair set-up, issue 25)
    kdsr-<stage>[-<iters>it]_s<seed>                   a stage of the companion-trained KDSR
    hr-aware-stage-a[-<field>-<value>...]_s<seed>      an HR-aware stage A
    <row slug>-<iters>it_s<seed>                       a row of the length study (pdd.experiments.length),
                                                       trained to <iters>, snapshots at its checkpoints

A notebook's own study (notebook 10: KDSR trained and adapted by hand) keeps its runs apart,
in ``<runs_dir>/<study>/<preset>/<domain>/<stage>_<iters>it_s<seed>``.

A length other than the preset's, or changed fields, gives a run of its own name, so that
no run ever resumes one of another configuration. Nothing here trains or reads a weights
file; ``Run`` only looks at what is on disk.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_DIR = "weights"
SNAPSHOT_GLOB = f"{WEIGHTS_DIR}/net_g_*.pth"   # a run's snapshots, relative to its directory


# ------------------------------------------------------------------ paths as committed outputs show them

def shown(text: str) -> str:
    """``text`` with this machine's paths as committed results show them: relative to the project
    root (``runs/...``) or to the home folder (``~/.cache/...``), never this machine's absolute paths."""
    import re

    from . import ROOT

    text = text.replace(str(ROOT) + "/", "")
    text = re.sub(re.escape(str(ROOT)) + r"(?![\w.-])", ".", text)   # the root itself, not /work/mainly
    return text.replace(str(Path.home()) + "/", "~/")


# ------------------------------------------------------------------ snapshots

def snapshot_path(run_dir, iteration: int) -> Path:
    """``<run_dir>/weights/net_g_<iteration:06d>.pth``: the EMA snapshot saved at ``iteration``."""
    return Path(run_dir) / WEIGHTS_DIR / f"net_g_{int(iteration):06d}.pth"


def d_snapshot_path(run_dir, iteration: int) -> Path:
    """``<run_dir>/weights/net_d_<iteration:06d>.pth``: the discriminator a run with D leaves at its
    end (``{"params": state_dict}``), for another run to start its D from (``TrainConfig.init_d``)."""
    return Path(run_dir) / WEIGHTS_DIR / f"net_d_{int(iteration):06d}.pth"


def snapshots(run_dir) -> list[Path]:
    """The run's EMA snapshots on disk, oldest first."""
    return sorted(Path(run_dir).glob(SNAPSHOT_GLOB))


def snapshot_iteration(path) -> int:
    """The iteration a snapshot file was saved at (``net_g_000300.pth`` -> 300)."""
    return int(Path(path).stem.split("_")[-1])


def run_of(weights) -> Path | None:
    """The run directory a weights file is a snapshot of (``<run>/weights/<file>.pth``); None for
    a released name such as ``RealESRGAN_x4plus``."""
    p = Path(weights)
    return p.parents[1] if p.suffix == ".pth" and len(p.parents) > 1 else None


# ------------------------------------------------------------------ names

def slug(text: str) -> str:
    """A row's name as a directory name: ``"static PDD, KDSR generalist"`` -> ``static-pdd--kdsr-generalist``."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def digest(overrides: dict) -> str:
    """8 hex digits naming a config change in a run directory's name."""
    return hashlib.sha1(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]


def domain_dir(runs_dir, preset: str, domain: str) -> Path:
    return Path(runs_dir) / preset / domain


def row_dir(runs_dir, preset: str, domain: str, row: str, seed: int, overrides: dict | None = None,
            tag: str = "") -> Path:
    """A comparison row's run: ``<slug>[-<tag>][-<digest>]_s<seed>`` (``overrides``: a changed config
    must not resume another config's run)."""
    name = slug(row) + (f"-{tag}" if tag else "") + (f"-{digest(overrides)}" if overrides else "")
    return domain_dir(runs_dir, preset, domain) / f"{name}_s{seed}"


def _length_tag(iters: int | None, default: int) -> str:
    return "" if iters in (None, default) else f"-{iters}it"


def pretrain_dir(runs_dir, preset: str, domain: str, role: str, seed: int, iters: int | None,
                 default_iters: int, gan_iters: int | None = None, gan_weight: float | None = None) -> Path:
    """A from-scratch starting model: ``pretrained-<role>[-<iters>it]_s<seed>`` (role: generalist or
    specialist; ``default_iters``: the preset's pretraining length, ``pdd.config.pretrain_iters``);
    its GAN stage (``gan_iters`` iterations on top): ``pretrained-<role>[-<iters>it]-gan<gan_iters>it_s<seed>``,
    at a GAN weight other than the stage's default: ``...-gan<gan_iters>it-w<gan_weight>_s<seed>``."""
    stage = (f"-gan{gan_iters}it" + (f"-w{gan_weight:g}" if gan_weight is not None else "")) if gan_iters else ""
    return domain_dir(runs_dir, preset, domain) / f"pretrained-{role}{_length_tag(iters, default_iters)}{stage}_s{seed}"


def kdsr_dir(runs_dir, preset: str, domain: str, stage: str, seed: int, iters: int | None, default_iters: int) -> Path:
    """A stage of the companion-trained KDSR generalist: ``kdsr-<stage>[-<iters>it]_s<seed>``."""
    return domain_dir(runs_dir, preset, domain) / f"kdsr-{stage}{_length_tag(iters, default_iters)}_s{seed}"


def hr_stage_a_dir(runs_dir, preset: str, domain: str, seed: int, fields: dict) -> Path:
    """An HR-aware stage A, named by the stage-A fields its row changes (rows with the same stage A share it)."""
    name = "hr-aware-stage-a" + "".join(f"-{k}-{v}" for k, v in sorted(fields.items()))
    return domain_dir(runs_dir, preset, domain) / f"{name}_s{seed}"


def study_dir(runs_dir, study: str, preset: str, domain: str, stage: str, iters: int, seed: int) -> Path:
    """A notebook study's run (notebook 10's KDSR: ``kdsr/<preset>/<domain>/teacher_300it_s0``)."""
    return Path(runs_dir) / study / preset / domain / f"{stage}_{iters}it_s{seed}"


# ------------------------------------------------------------------ a run

@dataclass
class Run:
    """One training job: its config and, for a comparison row, the row's name (what its scores are
    labelled in tables). What it starts from, and which module trains it, the config says
    (``starts_from()``, ``trainer_module``: every training config provides them)."""

    config: object
    row: str | None = None

    @property
    def dir(self) -> Path:
        return Path(self.config.out)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def preset(self) -> str:
        return self.config.preset

    def snapshot(self, iteration: int) -> Path:
        return snapshot_path(self.dir, iteration)

    @property
    def final(self) -> Path:
        """The snapshot the finished run ends with."""
        return self.snapshot(self.config.iters)

    @property
    def finished(self) -> bool:
        return self.final.exists()

    def snapshots(self) -> list[Path]:
        return snapshots(self.dir)

    @property
    def needs(self) -> set[str]:
        """The run directories this job starts from: it can start once they are finished."""
        return {str(Path(p)) for p in self.config.starts_from()}

    @property
    def module(self) -> str:
        """The module that trains it (``python -m <module> --config <run>/requested_config.json``)."""
        return self.config.trainer_module

    def trainer(self, progress: bool = False):
        """The trainer of this run's config (its module's ``TRAINER``), built in this process."""
        return importlib.import_module(self.module).TRAINER(self.config, progress=progress)

    @property
    def label(self) -> str:
        """``<row> s<seed>``, or the directory's name for a run that is not a row."""
        return f"{self.row} s{self.seed}" if self.row else self.dir.name
