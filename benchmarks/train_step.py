"""Where a training step's time goes on the CPU (issue 15), and the modes side by side.

First, under a from-scratch preset (`scratch`), the two pretraining runs' steps and their batch
share (the second-order pipeline of the generalist, the MATLAB bicubic of the specialist).
Default: one `cpu`-preset EMA PDD step (full RRDBNet, LR 32, batch 2+2, the preset's precision;
random init, D warm-up and k 0 so every step distils) split into its parts, each timed around
the Trainer's own modules and optimisers:
  data sampling, S forward, S backward, G forward, VGG forward (S outputs / references),
  VGG backward, D in the G step (forward + input-gradient backward), D step (forward, backward,
  Adam), loss maths (wavelet, R_intra, R_inter, BCE forward and backward), optimiser, EMA, schedulers.
The backward pass is cut at VGG's and D's inputs and outputs (detached leaves), so each
network's backward is timed alone; the same work as the Trainer's one backward call. Printed
beside the measured whole `Trainer.step` (mean of the same number of steps). Then the evaluation's
share (one snapshot scored on both test sets) and the scheduling of parallel training jobs
(2 single-thread jobs at once vs 1 two-thread job, steps per second in all).

    python benchmarks/train_step.py                        # profile, evaluation share, scheduling
    python benchmarks/train_step.py --preset scratch       # the preset make reproduce trains
    python benchmarks/train_step.py --preset scratch --compile --no-eval --no-scheduling
    python benchmarks/train_step.py --table --sizes cpu paper   # s/step per mode, fp32 vs bf16+CL
    python benchmarks/train_step.py --preset scratch --ab 12    # before/after of the removed waste
    python benchmarks/train_step.py --preset scratch --ab 12 --against /tmp/before   # + an older checkout
"""
import argparse
import json
import os
import subprocess
import sys
from statistics import median_high
import tempfile
import time
from pathlib import Path

import torch

from pdd import losses as L
from pdd.config import make_config
from pdd.train import Trainer, ema_update

SIZES = {"cpu": dict(patch=32, batch_l=2, batch_u=2), "paper": dict(patch=48, batch_l=8, batch_u=8)}
MODES = ("finetune", "naive", "static", "ema")


# ------------------------------------------------------------------ the parts of one step
class Clock:
    """Exclusive time per part: a part timed inside another is not counted twice."""

    def __init__(self):
        self.parts, self._inner = {}, [0.0]

    def __call__(self, name, fn, *a, **kw):
        self._inner.append(0.0)
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        dt = time.perf_counter() - t0
        self.parts[name] = self.parts.get(name, 0.0) + dt - self._inner.pop()
        self._inner[-1] += dt
        return out


def profile_step(tr: Trainer, t: int, clock: Clock) -> None:
    """One distillation step of `tr` (mode ema/static), as Trainer.step does it, part by part."""
    cfg = tr.cfg
    autocast = lambda: torch.autocast(tr.device.type, dtype=torch.bfloat16, enabled=cfg.bf16)  # noqa: E731
    x_l, y_l, x_u = clock("data sampling", tr.batch, t)
    n_l = x_l.shape[0]
    with autocast():
        s_out = clock("S forward", tr.s_fwd, torch.cat([x_l, x_u]))
        with torch.no_grad():
            g_out = clock("G forward", tr.g_fwd, torch.cat([x_l, x_u]))
    s_leaf = s_out.detach().requires_grad_(True)
    cuts = []  # (part, network outputs, their detached leaves, network input, its detached leaf)

    def vgg(x):
        if not torch.is_grad_enabled():
            return clock("VGG forward (references)", tr.vgg_fwd, x)
        x_leaf = x.detach().requires_grad_(True)
        feats = clock("VGG forward (S outputs)", tr.vgg_fwd, x_leaf)
        leaves = {k: v.detach().requires_grad_(True) for k, v in feats.items()}
        cuts.append(("VGG backward", list(feats.values()), list(leaves.values()), x, x_leaf))
        return leaves

    def disc(x):
        x_leaf = x.detach().requires_grad_(True)
        logits = clock("D in the G step", tr.d_frozen_fwd, x_leaf)
        leaf = logits.detach().requires_grad_(True)
        cuts.append(("D in the G step", [logits], [leaf], x, x_leaf))
        return leaf

    tr.d.requires_grad_(False)
    with autocast():
        terms = clock("loss maths", L.generator_objective, vgg, s_leaf[:n_l], s_leaf[n_l:], y_l, g_out[:n_l],
                      g_out[n_l:], disc, cfg.sup, cfg.pdd, distill=True, gan_on_unlabeled=True)
    tr.opt_g.zero_grad(set_to_none=True)
    clock("loss maths", terms["total"].backward)  # down to the feature and logit leaves (and s_leaf: wavelet)
    for part, outs, leaves, x, x_leaf in reversed(cuts):
        pairs = [(o, lf.grad) for o, lf in zip(outs, leaves) if lf.grad is not None]
        clock(part, torch.autograd.backward, [o for o, _ in pairs], [g for _, g in pairs])
        clock("loss maths", torch.autograd.backward, [x], [x_leaf.grad])  # the slices and cat, back to s_leaf
    clock("S backward", s_out.backward, s_leaf.grad)
    clock("optimiser (Adam on S)", tr.opt_g.step)
    with torch.no_grad():
        fake = s_leaf[:n_l].detach()
    clock("D step (forward, backward, Adam)", tr.d_step, t, y_l, fake, autocast(), tr.d_fwd)
    clock("schedulers", tr.sched_g.step)
    clock("EMA update", ema_update, tr.ema, tr.s, cfg.ema_decay)


def step_config(preset: str, out: str, threads: int | None = None):
    return make_config(preset, "ema", out=out, init_s=None, init_g=None, warmup_d_iters=0, distill_start_k=0,
                       threads=threads)


def profile(preset: str, steps: int) -> Trainer:
    with tempfile.TemporaryDirectory() as out:
        tr = Trainer(step_config(preset, out), progress=False)
    cfg = tr.cfg
    print(f"{preset} preset, EMA PDD step: RRDBNet {cfg.num_feat}/{cfg.num_block}/{cfg.num_grow_ch}, LR {cfg.patch}, "
          f"batch {cfg.batch_l}+{cfg.batch_u}, {'bf16 autocast + channels_last' if cfg.bf16 else 'fp32'}, "
          f"{torch.get_num_threads()} thread(s); mean of {steps} steps after one warm-up")
    tr.step(1)
    clock, whole = Clock(), 0.0
    for t in range(2, 2 * steps + 2, 2):  # interleaved, so that drift in the machine's load hits both alike
        profile_step(tr, t, clock)
        t0 = time.perf_counter()
        tr.step(t + 1)
        whole += (time.perf_counter() - t0) / steps
    parts = {k: v / steps for k, v in clock.parts.items()}
    total = sum(parts.values())
    print(f"{'part':36} {'s/step':>8} {'share':>6}")
    for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"{k:36} {v:>8.3f} {v / total:>6.1%}")
    print(f"{'sum of the parts':36} {total:>8.3f}\n{'measured Trainer.step':36} {whole:>8.3f} "
          f"({total / whole - 1:+.1%} sum vs whole)")
    return tr, whole


def evaluation_share(tr: Trainer, step: float, steps_per_run: int) -> None:
    from pdd.evaluate import create_metrics, evaluate

    dom = tr.domain
    metrics = create_metrics()
    t0 = time.perf_counter()
    for pairs in (dom.test_pairs, dom.source_test_pairs):
        evaluate(tr.ema, pairs, metrics, progress=False)
    ev = time.perf_counter() - t0
    print(f"\nevaluation of one snapshot (target + source, {len(dom.test_pairs)} tiles each, fp32): {ev:.1f} s "
          f"= {ev / step:.0f} training steps; a {steps_per_run}-iteration run evaluated at its last 2 snapshots: "
          f"{2 * ev / (2 * ev + steps_per_run * step):.0%} of its time")


# ------------------------------------------------------------------ the pretraining steps (scratch)
def pretrain_profile(preset: str, steps: int) -> None:
    """A from-scratch preset's two pretraining runs (02; the longest runs of make reproduce):
    s/step, and the share of it spent making the batch (MATLAB bicubic for the specialist,
    Real-ESRGAN's second-order pipeline for the generalist)."""
    from pdd.config import FROM_SCRATCH, pretrain_config

    if preset not in FROM_SCRATCH:
        return
    for role in ("specialist", "generalist"):
        with tempfile.TemporaryDirectory() as out:
            tr = Trainer(pretrain_config(preset, role, make_config(preset).domain, 0, out), progress=False)
            tr.step(1)
            data = whole = 0.0
            for t in range(2, steps + 2):
                t0 = time.perf_counter()
                tr.batch(t)
                t1 = time.perf_counter()
                tr.step(t)
                data, whole = data + t1 - t0, whole + time.perf_counter() - t1
        cfg = tr.cfg
        print(f"pretraining the {role} ({cfg.iters} its, batch {cfg.batch_l}, X^L {cfg.down}): {whole / steps:.3f} s/step, "
              f"of which the batch {data / steps:.3f} s ({data / whole:.0%})")


# ------------------------------------------------------------------ torch.compile on the CPU
def compile_check(preset: str, steps: int) -> None:
    """TrainConfig.compile on this CPU: the first steps (compilation) and the steady s/step,
    beside eager, and the run length from which compiling pays (measured, not assumed)."""
    res = {}
    for comp in (False, True):
        with tempfile.TemporaryDirectory() as out:
            cfg = step_config(preset, out)
            cfg.compile = comp
            tr = Trainer(cfg, progress=False)
            t0 = time.perf_counter()
            for t in (1, 2):  # the first distilling steps: every graph (G step, D step) compiles here
                tr.step(t)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            for t in range(3, steps + 3):
                tr.step(t)
            res[comp] = first, (time.perf_counter() - t0) / steps
    (f0, s0), (f1, s1) = res[False], res[True]
    pays = "never" if s1 >= s0 else f"after {(f1 - f0) / (s0 - s1):.0f} steps"
    print(f"\ntorch.compile ({preset}, EMA step): eager {s0:.3f} s/step, compiled {s1:.3f} s/step "
          f"({s0 / s1:.2f}x); the first 2 steps {f0:.1f} s eager vs {f1:.1f} s compiled: compiling pays {pays}")


# ------------------------------------------------------------------ scheduling of parallel jobs
def worker(preset: str, steps: int, threads: int) -> None:
    """Subprocess body: time `steps` steps after one warm-up; print JSON."""
    with tempfile.TemporaryDirectory() as out:
        tr = Trainer(step_config(preset, out, threads), progress=False)
        tr.step(1)
        t0 = time.perf_counter()
        for t in range(2, steps + 2):
            tr.step(t)
        print(json.dumps({"steps": steps, "seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}))


def scheduling(preset: str, steps: int) -> None:
    from pdd.procenv import job_env

    def launch(threads):
        env = job_env(threads)  # as the training pool starts its jobs
        return subprocess.Popen([sys.executable, __file__, "--preset", preset, "--worker", str(steps), str(threads)],
                                stdout=subprocess.PIPE, text=True, env=env)

    results = {}
    for label, jobs in (("2 jobs x 1 thread", [1, 1]), ("1 job x 2 threads", [2])):
        procs = [launch(n) for n in jobs]
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        results[label] = sum(o["steps"] for o in outs) / max(o["seconds"] for o in outs)
    a, b = results.values()
    print(f"\nscheduling ({steps} steps per job): " + ", ".join(f"{k}: {v:.3f} steps/s" for k, v in results.items())
          + f" -> two single-thread jobs give {a / b:.2f}x the throughput of one two-thread job")


# ------------------------------------------------------------------ s/step per mode (the earlier table)
def mode_table(sizes, modes, steps, device):
    print(f"threads={torch.get_num_threads()} device={device}")
    print(f"{'size':6} {'mode':9} {'fp32 s/step':>12} {'bf16+CL s/step':>15} {'speed-up':>9} {'data s/step':>12}")
    for size in sizes:
        for mode in modes:
            res = {}
            for bf16 in (False, True):
                with tempfile.TemporaryDirectory() as out:
                    cfg = make_config("cpu", mode, out=out, init_s=None, init_g=None, warmup_d_iters=0,
                                      distill_start_k=0, bf16=bf16, channels_last=bf16, device=device, **SIZES[size])
                    tr = Trainer(cfg, progress=False)
                    tr.step(1)
                    t0 = time.perf_counter()
                    for t in range(2, steps + 2):
                        tr.step(t)
                    step_s = (time.perf_counter() - t0) / steps
                    t0 = time.perf_counter()
                    for t in range(2, steps + 2):
                        tr.batch(t)
                    res[bf16] = step_s, (time.perf_counter() - t0) / steps
            print(f"{size:6} {mode:9} {res[False][0]:>12.2f} {res[True][0]:>15.2f} {res[False][0] / res[True][0]:>8.2f}x "
                  f"{res[True][1]:>12.3f}", flush=True)


# ------------------------------------------------------------------ what the step used to waste
STEP_KINDS = ("ema", "generalist")  # the EMA PDD step; the generalist's pretraining step (02's longest run)


def step_server(preset: str, kind: str) -> None:
    """Subprocess body: one Trainer (``kind``: the EMA step or the generalist's pretraining); a
    step per line read from stdin, its seconds printed."""
    from pdd.config import pretrain_config

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as out:
        cfg = (step_config(preset, out, 1) if kind == "ema" else
               pretrain_config(preset, kind, make_config(preset).domain, 0, out))
        cfg.threads = 1
        tr = Trainer(cfg, progress=False)
        for t in (1, 2):
            tr.step(t)
        print("ready", flush=True)
        t = 3
        for _ in sys.stdin:
            t0 = time.perf_counter()
            tr.step(t)
            t += 1
            print(time.perf_counter() - t0, flush=True)


def waste_ab(preset: str, rounds: int, against: str | None = None, kinds=STEP_KINDS) -> None:
    """Before/after of the three removals of issue 15, each against its own control, interleaved
    round by round so that the machine's drift hits both sides alike (medians):
    (1) the discriminator step (2 calls + backward, the preset's batch and precision) with torch's
        spectral-norm hook vs pdd's (`archs._FastSpectralNorm`, same forward bits);
    (2) VGG19 to conv5_4 (a no-grad and a grad pass) with fp32 weights cast by autocast at each
        call vs weights stored in bf16 once (`VGG19Features.autocast_weights_`, same bits);
    (3) the whole Trainer.step (EMA PDD; the generalist's pretraining, whose second-order
        degradations allocate a lot) in single-thread processes, glibc malloc's defaults vs
        `procenv.job_env`'s tunables, a step each in turn; with ``against`` (another checkout, e.g.
        a worktree of the commit before) the same two for that checkout's pdd too."""
    import copy

    from torch.nn.utils.spectral_norm import SpectralNorm

    from pdd.archs import UNetDiscriminatorSN, VGG19Features, VGG19_CONVS
    from pdd.config import FROM_SCRATCH
    from pdd.procenv import job_env

    torch.set_num_threads(1)
    cfg = make_config(preset, "ema")
    bf16 = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    hr = cfg.patch * cfg.scale
    real, fake = (torch.rand(cfg.batch_l, 3, hr, hr).contiguous(memory_format=fmt) for _ in range(2))
    print(f"{preset}: D step on {cfg.batch_l}+{cfg.batch_l} images of {hr} px, VGG on {cfg.batch_l + cfg.batch_u}, "
          f"{'bf16 autocast' if cfg.bf16 else 'fp32'}; {rounds} interleaved rounds, medians")

    fast = UNetDiscriminatorSN(3, cfg.disc_feat).to(memory_format=fmt)
    plain = copy.deepcopy(fast)  # torch's hook and torch's layout choice (weights follow .to(fmt))
    for m in plain.modules():
        for h in m._forward_pre_hooks.values():
            if isinstance(h, SpectralNorm):
                h.__class__ = SpectralNorm
    torch.nn.Module._apply(plain, lambda t: t.contiguous(memory_format=fmt) if t.dim() == 4 else t)

    def d_step(d):
        with bf16:
            a, b = d(real), d(fake)
        (a.float().mean() - b.float().mean()).backward()

    x = torch.rand(cfg.batch_l + cfg.batch_u, 3, hr, hr).contiguous(memory_format=fmt)
    vgg = VGG19Features(VGG19_CONVS[:16]).to(memory_format=fmt)
    vgg_bf16 = copy.deepcopy(vgg).autocast_weights_(torch.bfloat16 if cfg.bf16 else None)

    def vgg_pass(v):
        with bf16:
            with torch.no_grad():
                v(x)
            xx = x.detach().requires_grad_(True)
            sum(f.float().mean() for f in v(xx).values()).backward()

    pairs = {"D step": ((plain, fast), d_step), "VGG (no-grad + grad pass)": ((vgg, vgg_bf16), vgg_pass)}
    for name, ((before, after), fn) in pairs.items():
        fn(before), fn(after)
        tb, ta = [], []
        for _ in range(rounds):
            for net, ts in ((before, tb), (after, ta)):
                t0 = time.perf_counter()
                fn(net)
                ts.append(time.perf_counter() - t0)
        b, a = median_high(tb), median_high(ta)
        print(f"{name:28} before {b:.3f} s, after {a:.3f} s: {b / a:.2f}x", flush=True)

    checkouts = [("this checkout", None)] + ([(f"{against}", against)] if against else [])
    def launch(kind, env, cwd=None):
        p = subprocess.Popen([sys.executable, __file__, "--preset", preset, "--step-server", kind], env=env,
                             cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        return p

    for kind in [k for k in kinds if k == "ema" or preset in FROM_SCRATCH]:
        servers = {}
        # a first process not measured: here the first one started ran its steps up to 1.7x slower
        # than an identical one started after it (seen 2026-11-30; the host's memory reclaim?)
        warm = launch(kind, job_env(1))
        for where, path in checkouts:
            for label, env in (("malloc defaults", {**os.environ, "GLIBC_TUNABLES": "", "OMP_NUM_THREADS": "1"}),
                               ("job_env tunables", job_env(1))):
                if path:  # the other checkout's pdd first on the path; this file's step server
                    env = {**env, "PYTHONPATH": str(Path(path).resolve())}
                servers[f"{where}, {label}"] = (launch(kind, env, path), [])
        order = list(servers.values())
        for r in range(rounds):  # a step of each in turn, one computing at a time; who goes first rotates
            for p, ts in order[r % len(order):] + order[:r % len(order)]:
                p.stdin.write("step\n")
                p.stdin.flush()
                ts.append(float(p.stdout.readline()))
        for p, _ in order + [(warm, None)]:
            p.stdin.close()
            p.wait()
        base = median_high(list(servers.values())[-2][1])  # the last checkout's malloc defaults
        what = "the EMA PDD step" if kind == "ema" else f"the {kind}'s pretraining step"
        print(f"Trainer.step, {what} ({rounds} steps each, in turn; x: against {list(servers)[-2]!r}):")
        for label, (_, ts) in servers.items():
            print(f"  {label:60} {median_high(ts):.3f} s/step  {base / median_high(ts):.2f}x", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cpu", choices=["tiny", "cpu", "scratch", "paper"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluation share")
    ap.add_argument("--no-scheduling", action="store_true", help="skip the 2x1 vs 1x2 thread comparison")
    ap.add_argument("--compile", action="store_true", help="also time TrainConfig.compile against eager")
    ap.add_argument("--table", action="store_true", help="instead: s/step per mode, fp32 vs bf16+CL")
    ap.add_argument("--sizes", nargs="+", default=["cpu"], choices=list(SIZES))
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ab", type=int, metavar="ROUNDS", help="instead: before/after of the removed waste "
                    "(spectral norm, VGG weight casts, malloc), ROUNDS interleaved rounds")
    ap.add_argument("--against", metavar="CHECKOUT", help="with --ab: also time the whole step with the pdd of "
                    "another checkout (e.g. `git worktree add /tmp/before <commit>`)")
    ap.add_argument("--kinds", nargs="+", default=list(STEP_KINDS), choices=STEP_KINDS,
                    help="with --ab: which whole steps to time (default: both)")
    ap.add_argument("--worker", nargs=2, type=int, metavar=("STEPS", "THREADS"), help=argparse.SUPPRESS)
    ap.add_argument("--step-server", choices=STEP_KINDS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.preset, *args.worker)
    if args.step_server:
        return step_server(args.preset, args.step_server)
    if args.ab:
        from pdd.config import cpu_model
        print(f"{cpu_model()}; torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M')}; "
              f"load average {os.getloadavg()[0]:.2f}")
        return waste_ab(args.preset, args.ab, args.against, args.kinds)
    if args.table:
        return mode_table(args.sizes, args.modes, args.steps, args.device)
    from pdd.config import cpu_model
    print(f"{cpu_model()}; torch {torch.__version__}; {time.strftime('%Y-%m-%d %H:%M')}; "
          f"load average {os.getloadavg()[0]:.2f} (other jobs on the machine inflate every figure)")
    pretrain_profile(args.preset, max(args.steps, 10))
    tr, whole = profile(args.preset, args.steps)
    if not args.no_eval:
        evaluation_share(tr, whole, make_config(args.preset, "ema").iters)
    if args.compile:
        compile_check(args.preset, args.steps)
    if not args.no_scheduling:
        scheduling(args.preset, args.steps)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
