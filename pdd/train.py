"""One Trainer for every mode: supervised pretraining, the fine-tune control, naive
distillation, static PDD and EMA PDD.

Per iteration t = 1..iters (the official BasicSR trainer's order, SRGANRefModel):
  1. G step, only for t > warmup_d_iters (before that D trains alone):
     S predicts X^L and X^U in one batch; the reference G predicts them under no-grad;
     L = L_L + λ1 R_intra + λ2 R_inter + λ3 L_gan(S(X^U)); R terms and the GAN term on
     S(X^U) start at t > warmup_d_iters + k.
  2. D step: real Y^L vs fake S(X^L).detach().
  3. EMA update of the evaluated copy (parameters only, buffers copied). In ema mode
     that copy IS the reference G.

Data for iteration t is a pure function of (seed, t, rank), so a resumed run sees exactly
the batches an uninterrupted run would have seen.

The loop itself (resume, checkpoints, EMA snapshots, log.csv, NaN stop) is ``LoopTrainer``'s,
which ``pdd.kdsr_train`` and ``pdd.hr_aware`` train on too; its docstring is the contract.

    python -m pdd.train --preset cpu --mode ema --domain Synth-Defocus --iters 300 --out runs/ema
    torchrun --nproc_per_node=2 -m pdd.train --preset paper --mode ema --domain Canon --out runs/canon
"""
from __future__ import annotations

import abc
import argparse
import copy
import csv
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

if __name__ == "__main__":  # a command line: PyTorch reads PYTORCH_ENABLE_MPS_FALLBACK once, as it loads
    from pdd.devices import before_torch

    before_torch()

import torch
import torch.distributed as dist

from . import cli
from . import losses as L
from .archs import RRDBNet, UNetDiscriminatorSN
from .config import TrainConfig, make_config, resolve_device, set_field
from .devices import DeviceError, bf16_default, describe, missing_mps_op, synchronize
from .runs import d_snapshot_path, snapshot_path, snapshots

CHECKPOINT = "checkpoint.pt"


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN/inf; the last good checkpoint is kept."""


class CheckpointMismatchError(ValueError):
    """A run directory's checkpoint.pt does not fit the configured networks or optimiser, or was
    written by a run of another identity (``RUN_IDENTITY``)."""


# What a run is: a checkpoint resumed under other values of these would continue another run
# (``Trainer._check_same_run``). The length, threads, snapshot rhythm, device and precision may change.
RUN_IDENTITY = ("mode", "preset", "domain", "seed", "down", "init_g", "init_s", "init_d", "s_arch", "g_arch",
                "disc_feat", "warmup_d_iters", "sup", "pdd", "gan", "ema_decay", "distill_start_k", "naive_lambda")


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema ← decay·ema + (1−decay)·model over parameters only (BasicSR's model_ema);
    buffers are copied, not averaged (RRDBNet has none; kept for other nets)."""
    for p_ema, p in zip(ema.parameters(), model.parameters()):
        p_ema.mul_(decay).add_(p.detach(), alpha=1 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def _bare(m):
    return m.module if isinstance(m, torch.nn.parallel.DistributedDataParallel) else m


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def batch_seed(seed: int, index: int) -> int:
    """The seed of a random stream that is a pure function of (run seed, index): iteration data's
    own draws (second-order degradations; index: the batch's position in the run) and the
    HR-aware controller's noise (its indices offset, so the two streams never meet)."""
    return seed * 1_000_003 + index


def step_schedule(sched) -> None:
    """``sched.step()`` without torch's warning that the optimiser has not stepped yet: BasicSR
    steps the schedule every iteration, D-only warm-up included, so that milestones count
    absolute iterations (G has not stepped during the warm-up)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
        sched.step()


def trainable(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` in train mode with every parameter trained, except those of submodules whose class
    says ``frozen = True`` (constants that weights files store as parameters: KDSR's MeanShift)."""
    net.train().requires_grad_(True)
    for m in net.modules():
        if getattr(m, "frozen", False) is True:
            m.requires_grad_(False)
    return net


def ema_copy(net: torch.nn.Module) -> torch.nn.Module:
    """The evaluated EMA copy of a trained network, starting from its weights (eval, no gradients)."""
    return copy.deepcopy(net).eval().requires_grad_(False)


class LoopTrainer(abc.ABC):
    """The training loop the trainers share (PDD's ``Trainer``, ``pdd.kdsr_train.KDSRTrainer``,
    ``pdd.hr_aware.HRAwareTrainer``): resume, ``fit`` (log.csv, progress bar, checkpoint and
    snapshot cadence, NaN stop), ``save`` (atomic checkpoint.pt and the EMA snapshot
    ``weights/net_g_<iteration>.pth`` in the BasicSR ``params_ema``/``params`` layout) and
    ``d_step``. The config is a ``pdd.config.RunConfig``.

    A subclass's ``__init__`` calls ``super().__init__(cfg, progress)`` first (it sets ``cfg``,
    ``progress``, ``world``, ``rank``, ``device``, ``out``, ``channels_last``; seeds torch; makes
    the run directory), then builds

      s        the trained network: ``trainable(net)`` on the device (DDP-wrapped under torchrun
               where the subclass supports it; ``single_process`` refuses torchrun otherwise)
      ema      ``ema_copy(s)``: the EMA weights every snapshot holds as ``params_ema``
      sources  {part: where its weights or data came from}, written to config.json
      g, d, vgg  optional, None unless built: a reference network, a discriminator (trained by
               ``d_step``), VGG19 features (``_load_vgg``)

    and ends with ``self._optimisers(params)``: Adam on ``params`` (and on D's), each with the
    schedule ``make_schedule`` returns (MultiStepLR on ``lr_milestones``; override it for
    another), then the resume from checkpoint.pt. It provides

      batch(t)  iteration t's data, a pure function of (seed, t) (random draws seeded with
                ``batch_seed``), so a resumed run sees the batches an uninterrupted one would
      step(t)   one iteration; updates through ``_update`` (NaN check first), ends with
                ``_end_iteration`` (schedule, EMA), returns the log's {name: value}
    """

    def __init__(self, cfg, progress: bool = True, single_process: str | None = None):
        self.g = self.d = self.vgg = None
        self.sources: dict[str, str] = {}
        self._start(cfg, progress, single_process)

    def _start(self, cfg, progress: bool, single_process: str | None = None) -> None:
        """Config, process group (torchrun), device, threads, seed, run directory.
        ``single_process``: the error to raise under torchrun for a trainer without DDP support."""
        self.cfg = cfg.validate()
        self.progress = progress
        # the networks' memory format: a config field where the trainer supports channels_last
        # (PDD, KDSR); the HR-aware trainer always runs the default format
        self.channels_last = getattr(cfg, "channels_last", False)
        self.world, self.rank = 1, 0
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun
            if single_process:
                raise RuntimeError(single_process)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
            self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.device = resolve_device(cfg.device)
        if self.device.type == "mps" and self.world > 1:
            raise DeviceError("torchrun with MPS: a Mac has one Apple GPU; run a single process")
        if (cfg.bf16 or self.channels_last) and self.device.type != "cpu" and not bf16_default(self.device):
            # the presets decide bf16 from the CPU's flags; this GPU has no bf16 (an older CUDA
            # card: autocast would raise) or gains nothing from it (MPS): fp32, recorded
            print(f"pdd.train: {describe(self.device)} runs this in fp32 (no bf16 autocast, no channels_last)",
                  file=sys.stderr)
            cfg.bf16 = False
            if self.channels_last:
                cfg.channels_last = self.channels_last = False
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ set-up helpers
    def _load_vgg(self, layers):
        """Frozen VGG19 features on the device (weights per ``cfg.vgg_weights``), in ``sources``."""
        from .weights import load_vgg19

        vgg = load_vgg19(layers, path=self.cfg.vgg_weights).to(self.device)
        self.sources["VGG19"] = str(vgg.weights_source)
        # VGG runs only inside step's autocast
        vgg.autocast_weights_(torch.bfloat16 if self.cfg.bf16 else None)
        return vgg

    def _to_channels_last(self, *nets) -> None:
        if self.channels_last:
            for m in nets:
                if m is not None:
                    m.to(memory_format=torch.channels_last)

    def make_schedule(self, opt):
        """The learning-rate schedule of an optimiser: halved (``lr_gamma``) at each of ``lr_milestones``."""
        return torch.optim.lr_scheduler.MultiStepLR(opt, list(self.cfg.lr_milestones), self.cfg.lr_gamma)

    def _optimisers(self, params_g) -> None:
        """Adam (``lr``, ``betas``) + schedule for the trained parameters, and for D (``lr_d``) when
        there is one; then resume."""
        cfg = self.cfg
        self.opt_g = torch.optim.Adam(params_g, lr=cfg.lr, betas=cfg.betas)
        self.sched_g = self.make_schedule(self.opt_g)
        self.opt_d = self.sched_d = None
        if self.d is not None:
            self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr_d, betas=cfg.betas)
            self.sched_d = self.make_schedule(self.opt_d)
        self.iteration = 0
        self.resumed_from = self._resume()

    # ------------------------------------------------------------------ what a subclass provides
    @abc.abstractmethod
    def batch(self, t: int):
        """Iteration t's data, a pure function of (seed, t)."""

    @abc.abstractmethod
    def step(self, t: int) -> dict[str, float]:
        """One iteration; returns the log's {name: value}."""

    # ------------------------------------------------------------------ one iteration's parts
    def _update(self, t: int, terms: dict, loss: torch.Tensor, opt) -> None:
        """One optimiser step on ``loss``, once every term of ``terms`` is finite."""
        self._check_finite(t, terms)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def _end_iteration(self) -> None:
        """The schedule's step (every iteration) and the EMA update of the evaluated copy."""
        step_schedule(self.sched_g)
        ema_update(self.ema, _bare(self.s), self.cfg.ema_decay)

    def d_step(self, t: int, real: torch.Tensor, fake: torch.Tensor, autocast, d_call=None) -> dict[str, float]:
        """One discriminator update, real HR against the generator's (detached) outputs: D's two
        BCE terms and its mean probabilities, for the log. ``d_call``: D's forward (compiled or not)."""
        d_call = self.d if d_call is None else d_call
        self.d.requires_grad_(True)
        with autocast:
            real_logits = d_call(real)
            fake_logits = d_call(fake.detach().to(real.dtype))
            l_real, l_fake = L.gan_loss_d(real_logits.float(), fake_logits.float())
        self._update(t, {"d_real": l_real, "d_fake": l_fake}, l_real + l_fake, self.opt_d)
        self.sched_d.step()
        return dict(d_real=l_real.item(), d_fake=l_fake.item(), p_real=torch.sigmoid(real_logits.float()).mean().item(),
                    p_fake=torch.sigmoid(fake_logits.float()).mean().item())

    def _check_finite(self, t: int, terms: dict) -> None:
        for k, v in terms.items():
            if not torch.isfinite(v).all():
                raise NonFiniteLossError(
                    f"iteration {t}: loss term {k!r} is {v.item()}; stopped before the update. "
                    f"The last good checkpoint (iteration {self.iteration_saved}) is in {self.out}")

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        return {
            "iteration": self.iteration,
            "s": _bare(self.s).state_dict(),
            "ema": self.ema.state_dict(),
            "d": _bare(self.d).state_dict() if self.d is not None else None,
            "opt_g": self.opt_g.state_dict(), "sched_g": self.sched_g.state_dict(),
            "opt_d": self.opt_d.state_dict() if self.opt_d else None,
            "sched_d": self.sched_d.state_dict() if self.sched_d else None,
            "rng": torch.get_rng_state(),
            "config": self.cfg.to_json(),
        }

    def save(self) -> None:
        self.iteration_saved = self.iteration
        if self.rank != 0:
            return
        _atomic_save(self.state(), self.out / CHECKPOINT)
        # EMA snapshot in the official release layout, for evaluating the last checkpoints
        snap = snapshot_path(self.out, self.iteration)
        snap.parent.mkdir(exist_ok=True)
        _atomic_save({"params_ema": self.ema.state_dict(), "params": _bare(self.s).state_dict(),
                      "iteration": self.iteration}, snap)
        if self.d is not None and self.iteration >= self.cfg.iters:  # the final D, for a later run's init_d
            _atomic_save({"params": _bare(self.d).state_dict(), "iteration": self.iteration},
                         d_snapshot_path(self.out, self.iteration))

    def _resume(self) -> int | None:
        self.iteration_saved = 0
        path = self.out / CHECKPOINT
        if not path.exists():
            return None
        self._check_same_run(path)
        from .weights import load_state_dict
        st = load_state_dict(path)
        try:
            _bare(self.s).load_state_dict(st["s"])
            self.ema.load_state_dict(st["ema"])
            if self.d is not None and st["d"] is not None:
                _bare(self.d).load_state_dict(st["d"])
            self.opt_g.load_state_dict(st["opt_g"])
            self.sched_g.load_state_dict(st["sched_g"])
            if self.opt_d is not None and st["opt_d"] is not None:
                self.opt_d.load_state_dict(st["opt_d"])
                self.sched_d.load_state_dict(st["sched_d"])
        except (RuntimeError, ValueError, KeyError) as e:  # torch: key/shape or parameter-group mismatch
            raise CheckpointMismatchError(
                f"{path} was written by another configuration or version of this run (networks or "
                f"trained parameters differ: {str(e).splitlines()[0]}). Nothing was changed; train into a "
                f"new out directory, or delete {self.out} to start this run over.") from None
        torch.set_rng_state(st["rng"])
        self.iteration = self.iteration_saved = int(st["iteration"])
        return self.iteration

    def _check_same_run(self, checkpoint: Path) -> None:
        """Refuse to resume ``checkpoint`` under another run's identity (``RUN_IDENTITY``: what is
        trained from what, with which losses), as its previous ``config.json`` records it: networks
        of the same shape started from another file would load without complaint and continue
        another run. Its length, threads, snapshot rhythm and device may change."""
        try:
            before = json.loads((self.out / "config.json").read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            return  # no record of the earlier part (a run from before config.json): nothing to compare
        now = json.loads(json.dumps(self.cfg.to_dict(), default=str))

        def same(key) -> bool:
            a, b = before.get(key), now.get(key)
            if key.startswith("init_") and a and b:  # a file path: the project may have moved since
                return Path(str(a)).parts[-3:] == Path(str(b)).parts[-3:]
            return a == b

        differ = [k for k in RUN_IDENTITY if not same(k)]
        if differ:
            raise CheckpointMismatchError(
                f"{checkpoint} was written by another configuration of this run: "
                + "; ".join(f"{k} was {before.get(k)!r}, now {now.get(k)!r}" for k in differ)
                + f". Nothing was changed; train into a new out directory, or delete {self.out} to start this run over.")

    # ------------------------------------------------------------------ loop
    def fit(self, iters: int | None = None, progress_bar=None) -> Path:
        """Train up to ``iters`` (default cfg.iters), resuming from out/checkpoint.pt if present.
        Returns the output directory (config.json, log.csv, checkpoint.pt, weights/).
        ``progress_bar``: a tqdm-like class for the bar (pdd.adapt passes one whose time left
        weights the cheaper D-only warm-up steps by their measured cost)."""
        from tqdm.auto import tqdm

        cfg, end = self.cfg, self.cfg.iters if iters is None else iters
        if self.rank == 0:
            meta = {"config": self.cfg.to_dict(), "sources": self.sources, "world_size": self.world,
                    "torch": torch.__version__, "device": str(self.device),
                    "precision": "bf16 autocast" if cfg.bf16 else "fp32", "channels_last": self.channels_last}
            (self.out / "config.json").write_text(json.dumps(meta, indent=2, default=str))
        log_path = self.out / "log.csv"
        rows = self._read_log(log_path, upto=self.iteration)
        bar = (progress_bar or tqdm)(total=end, initial=self.iteration, disable=not self.progress or self.rank != 0,
                                     desc=f"{cfg.mode}", dynamic_ncols=True)
        # ``sec`` counts training time over every part of a resumed run (the time it stood still is not in it)
        before = rows[-1].get("sec", math.nan) if rows else 0.0
        t0 = time.time() - (before if math.isfinite(before) else 0.0)
        for t in range(self.iteration + 1, end + 1):
            try:
                log = self.step(t)
            except NotImplementedError as e:
                op = missing_mps_op(e) if self.device.type == "mps" else None
                if op is None:
                    raise
                # no automatic retry: the G step may already have been applied
                raise DeviceError(
                    f"iteration {t}: the Apple GPU (MPS) lacks the operation {op}. The last checkpoint is iteration "
                    f"{self.iteration_saved} in {self.out}; run again with PYTORCH_ENABLE_MPS_FALLBACK=1 set before "
                    f"Python starts (it runs such operations on the CPU), or with device=cpu: both resume") from e
            self.iteration = t
            if t % cfg.log_every == 0 or t == end:
                synchronize(self.device)  # a GPU's queued work belongs to the seconds logged
                row = {"iter": t, "lr": self.opt_g.param_groups[0]["lr"], "sec": round(time.time() - t0, 2), **log}
                rows.append(row)
                bar.set_postfix({k: f"{v:.3g}" for k, v in log.items() if k in ("total", "r_intra", "r_inter", "p_real", "p_fake")})
            if t % cfg.ckpt_every == 0 or t == end:
                self.save()
                self._write_log(log_path, rows)
            bar.update(1)
        bar.close()
        if self.iteration == 0 or not (self.out / CHECKPOINT).exists():
            self.save()
        self._write_log(log_path, rows)
        return self.out

    def _read_log(self, path: Path, upto: int) -> list[dict]:
        if not path.exists() or upto == 0:
            return []
        with open(path) as f:
            rows = [{k: float(v) if v not in ("", None) else math.nan for k, v in r.items()}
                    for r in csv.DictReader(f) if float(r["iter"]) <= upto]
        for r in rows:
            r["iter"] = int(r["iter"])
        return rows

    def _write_log(self, path: Path, rows: list[dict]) -> None:
        if self.rank != 0 or not rows:
            return
        keys = list(dict.fromkeys(k for r in rows for k in r))
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)


class Trainer(LoopTrainer):
    """PDD's trainer, every mode: builds data, networks, optimisers from a TrainConfig; ``fit()``
    trains and resumes (``LoopTrainer``)."""

    def __init__(self, cfg: TrainConfig, progress: bool = True, domain=None, model: torch.nn.Module | None = None):
        """``domain``: a ready `pdd.data.Domain` instead of opening ``cfg.domain`` (pdd.adapt
        passes the folder it scanned). ``model``: the initial S instead of ``cfg.init_s``, any SR
        network mapping (N,3,H,W) to (N,3,sH,sW) with s = cfg.scale (e.g. loaded by spandrel);
        static/naive then use a frozen copy of it as G unless ``cfg.init_g`` is set."""
        from .data import LabeledPatches, UnlabeledPatches, open_domain

        super().__init__(cfg, progress)

        # data
        self.domain = domain if domain is not None else open_domain(cfg.domain, cfg.data_root)
        down = "bicubic" if cfg.down == "second_order" else cfg.down
        self.labeled = LabeledPatches(self.domain.labeled_hr, cfg.patch, cfg.scale, down, cfg.seed)
        self.unlabeled = (UnlabeledPatches(self.domain.unlabeled_lr, cfg.patch, cfg.seed)
                          if cfg.mode in ("naive", "static", "ema") else None)

        # networks
        arch = dict(num_feat=cfg.num_feat, num_block=cfg.num_block, num_grow_ch=cfg.num_grow_ch, scale=cfg.scale)
        if model is not None:
            s = model
            self.sources["S"] = str(getattr(model, "weights_source", type(model).__name__ + " given to the Trainer"))
        elif cfg.init_s:
            s = load_network(cfg.s_arch, cfg.init_s, cfg)
            self.sources["S"] = str(s.weights_source)
        else:
            s = RRDBNet(**arch)
            self.sources["S"] = "random init (seed %d)" % cfg.seed
        self.s = trainable(s.to(self.device))  # a KDSR S's fixed RGB-mean shifts stay frozen
        self.ema = ema_copy(self.s)
        if cfg.mode == "ema":
            self.g = self.ema  # M_G is the EMA of M_S
            self.sources["G"] = "EMA of S (decay %g)" % cfg.ema_decay
        elif cfg.mode in ("static", "naive"):
            g = load_network(cfg.g_arch, cfg.init_g, cfg) if cfg.init_g else copy.deepcopy(s)
            self.sources["G"] = str(g.weights_source) if cfg.init_g else "copy of S's initial weights"
            self.g = g.to(self.device).eval().requires_grad_(False)
        if cfg.has_discriminator:
            d = UNetDiscriminatorSN(3, cfg.disc_feat)
            self.sources["D"] = "random init (seed %d)" % cfg.seed
            if cfg.init_d:
                load_discriminator(d, cfg.init_d)
                self.sources["D"] = f"{cfg.init_d} (deviation: the official configs train D from random init)"
            self.d = d.to(self.device).train()
        elif cfg.init_d:
            raise ValueError("init_d is set but this run trains no discriminator (gan off or sup.gan 0)")
        pdd = cfg.pdd if cfg.mode in ("static", "ema") else None
        layers = L.vgg_layers_needed(cfg.sup, pdd)
        if layers:  # pixel-only pretraining (no perceptual layers) needs no VGG at all
            self.vgg = self._load_vgg(layers)
        self._to_channels_last(self.s, self.ema, self.g, self.d, self.vgg)
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.s = torch.nn.parallel.DistributedDataParallel(self.s, device_ids=ids)
            if self.d is not None:
                self.d = torch.nn.parallel.DistributedDataParallel(self.d, device_ids=ids)

        # opt-in torch.compile: compiled callables over the same modules, so parameters, the
        # optimisers, the EMA update and the checkpoints' keys are those of the plain modules
        fwd = torch.compile if cfg.compile else (lambda m: m)
        self.s_fwd = fwd(self.s)
        self.g_fwd = None if self.g is None else fwd(self.g)
        self.d_fwd = None if self.d is None else fwd(self.d)
        # D inside the G step (no weight grads): the bare module, which is D itself without DDP
        self.d_frozen_fwd = self.d_fwd if self.d is None or _bare(self.d) is self.d else fwd(_bare(self.d))
        self.vgg_fwd = None if self.vgg is None else fwd(self.vgg)
        self._optimisers([p for p in self.s.parameters() if p.requires_grad])

    # ------------------------------------------------------------------ data
    def batch(self, t: int):
        """(x_l, y_l, x_u) for iteration t on this rank: a pure function of (seed, t, rank)."""
        cfg, base = self.cfg, (t - 1) * self.world + self.rank
        idx = [base * cfg.batch_l + j for j in range(cfg.batch_l)]
        if cfg.down == "second_order":  # the same HR crops; X^L from the batch's own draws (no bicubic made and dropped)
            from .degradations import img2tensor, second_order, SecondOrderConfig
            y_l = torch.cat([img2tensor(self.labeled.hr_crop(i)[0]) for i in idx])
            gen = torch.Generator().manual_seed(batch_seed(cfg.seed, base))
            x_l = second_order(y_l, SecondOrderConfig(), gen)
        else:
            items = [self.labeled[i] for i in idx]
            x_l = torch.stack([a for a, _ in items])
            y_l = torch.stack([b for _, b in items])
        x_u = None
        if self.unlabeled is not None:
            x_u = torch.stack([self.unlabeled[base * cfg.batch_u + j] for j in range(cfg.batch_u)])
        fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        to = lambda x: None if x is None else x.to(self.device).contiguous(memory_format=fmt)  # noqa: E731
        return to(x_l), to(y_l), to(x_u)

    # ------------------------------------------------------------------ one iteration
    def distilling(self, t: int) -> bool:
        return t > self.cfg.warmup_d_iters + self.cfg.distill_start_k

    def step(self, t: int) -> dict[str, float]:
        cfg = self.cfg
        x_l, y_l, x_u = self.batch(t)
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
        log: dict[str, float] = {}
        n_l = x_l.shape[0]
        if t > cfg.warmup_d_iters:
            distill = self.distilling(t)
            needs_u = x_u is not None and (distill or cfg.mode == "naive")
            with autocast:
                s_out = self.s_fwd(torch.cat([x_l, x_u]) if needs_u else x_l)
                s_l, s_u = s_out[:n_l], (s_out[n_l:] if needs_u else None)
                g_l = g_u = None
                if needs_u and self.g is not None:
                    with torch.no_grad():
                        g_out = self.g_fwd(torch.cat([x_l, x_u]))
                    g_l, g_u = g_out[:n_l], g_out[n_l:]
                # D's bare module: the G step needs no gradient sync for D's weights
                disc = None
                if self.d is not None:
                    _bare(self.d).requires_grad_(False)
                    disc = self.d_frozen_fwd
                terms = L.generator_objective(
                    self.vgg_fwd, s_l, s_u, y_l, g_l, g_u, disc, cfg.sup,
                    cfg.pdd if cfg.mode in ("static", "ema") else None,
                    distill=distill and cfg.mode in ("static", "ema"),
                    gan_on_unlabeled=needs_u and cfg.mode != "finetune",
                    naive_lambda=cfg.naive_lambda if cfg.mode == "naive" and needs_u else None)
            self._update(t, terms, terms["total"], self.opt_g)
            log.update({k: v.item() for k, v in terms.items()})
            fake = s_l.detach()
        else:
            with torch.no_grad(), autocast:
                fake = self.s_fwd(x_l)
        if self.d is not None:
            log.update(self.d_step(t, y_l, fake, autocast, self.d_fwd))
        self._end_iteration()
        return log


TRAINER = Trainer  # what trains a TrainConfig (pdd.runs.Run.trainer)


def seconds_per_step(trainer, t: int, steps: int) -> float:
    """Mean seconds of ``trainer.step(t)`` over ``steps`` calls after one untimed call (it pays
    the one-off costs: allocations, autocast caches). The steps are real: callers that must not
    change the run restore its state afterwards (pdd.adapt) or time a throw-away trainer."""
    trainer.step(t)
    synchronize(trainer.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.step(t)
    synchronize(trainer.device)  # a GPU runs ahead of Python: wait for the queued work
    return (time.perf_counter() - t0) / steps


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Train (or resume) and return the output directory. One line for notebooks."""
    return Trainer(cfg, progress=progress).fit()


def last_weights(run_dir) -> Path:
    """The newest EMA snapshot of a run (``weights/net_g_<iter>.pth``)."""
    snaps = snapshots(run_dir)
    if not snaps:
        raise FileNotFoundError(f"no weights under {Path(run_dir) / 'weights'}; has the run finished?")
    return snaps[-1]


def load_discriminator(d: torch.nn.Module, path) -> None:
    """Load a run's final D (``{"params": state_dict}``, pdd.runs.d_snapshot_path) into ``d``, safely
    (no pickle code); a file of another D (size, layout) is a named WeightsError."""
    from .weights import WeightsError, check_state_dict, load_state_dict

    st = load_state_dict(path)
    params = st.get("params") if isinstance(st, dict) else None
    if not isinstance(params, dict):
        raise WeightsError(f"{path}: not a discriminator file (a dict with 'params', as pdd.train writes it)")
    check_state_dict(d.state_dict(), params, f"discriminator {path}")
    d.load_state_dict(params)


def load_network(arch: str, weights, cfg: TrainConfig):
    """S or G of a run: ``arch`` "rrdbnet" builds the RRDBNet ``cfg`` describes and loads
    ``weights`` (a released name or a file) into it; "kdsr" loads a KDSR student whose size
    and scale the file says (``pdd.kdsr.load_kdsr``, strict). Eval mode, with ``weights_source``."""
    if arch == "kdsr":
        from .kdsr import load_kdsr

        return load_kdsr(weights, role="student", scale=cfg.scale)
    from .weights import load_rrdbnet

    return load_rrdbnet(str(weights), num_feat=cfg.num_feat, num_block=cfg.num_block,
                        num_grow_ch=cfg.num_grow_ch, scale=cfg.scale)


def load_run_model(cfg: TrainConfig, path):
    """A run's weights file (a snapshot: EMA weights first) in the architecture of its S (an
    RRDBNet for configs without ``s_arch``, e.g. the HR-aware trainer's)."""
    return load_network(getattr(cfg, "s_arch", "rrdbnet"), path, cfg)


def load_rrdbnet_like(cfg: TrainConfig, path):
    """Load a run's weights file into the RRDBNet ``cfg`` describes (EMA weights first)."""
    return load_network("rrdbnet", path, cfg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pdd.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu", choices=["paper", "cpu", "scratch", "tiny"])
    ap.add_argument("--mode", default="ema", choices=["supervised", "finetune", "naive", "static", "ema"])
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--domain", help="a built-in or real domain (pdd.data.list_domains()), or folder:PATH")
    where.add_argument("--lr-dir", metavar="PATH", help="a folder of your own LR photos as X^U (= --domain folder:PATH)")
    ap.add_argument("--data-root")
    ap.add_argument("--iters", type=int)
    ap.add_argument("--out", help="run directory (checkpoints, log.csv, weights/); required without --config")
    ap.add_argument("--config", help="a TrainConfig JSON (as saved in requested_config.json); flags override it")
    ap.add_argument("--seed", type=int)
    cli.add_run_flags(ap, "any config field, dotted for nested ones (e.g. pdd.lambda_inter=0.5)")
    args = ap.parse_args(argv)
    if args.config:
        cfg = TrainConfig.from_file(args.config)
    elif args.out:
        cfg = make_config(args.preset, args.mode)
    else:
        ap.error("--out is required (or give --config)")
    if args.lr_dir:
        args.domain = f"folder:{args.lr_dir}"
    for name, value in (("domain", args.domain), ("data_root", args.data_root), ("iters", args.iters),
                        ("out", args.out), ("seed", args.seed)):
        if value is not None:
            setattr(cfg, name, value)
    for k, v in cli.set_items(ap, args.set):
        set_field(cfg, k, v)
    cfg.validate()
    out = train(cfg, progress=not args.no_progress)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    print(f"done: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m pdd.train"))
