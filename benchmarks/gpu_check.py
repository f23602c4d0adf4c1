"""The GPU check of the `paper` preset (issue 15): one command, a global deadline (default 9 min).

It runs on the device `--device` names (default auto: CUDA, then Apple's MPS; pdd.devices).

(a) The paper-size generator+discriminator step of the real Trainer (LR 48, batch 8+8, RRDBNet
    64/23/32, U-Net D, VGG19 perceptual and PDD terms, a full distillation step): eager fp32,
    bf16 autocast, bf16 + channels_last, and + torch.compile (cfg.compile, in a subprocess with
    a time limit); the generator objective alone fused (pdd.losses.generator_objective) vs
    unfused (benchmarks/loss_step.py: separate VGG calls per image group, as the official code;
    the Trainer itself has no such switch); peak memory; projected hours per 100K iterations
    beside the official 14 h on 2xA5000 (supplementary A) and beside the FLOP bound of the step
    (torch.utils.flop_counter) at the device's measured bf16 matmul rate.
(b) An evidence run at paper sizes on a built-in domain: EMA PDD and the fine-tune control,
    trained side by side (alternating chunks of iterations) for as long as the deadline allows,
    then notebook 07's protocol: target, source and adaptation gains over the generalist with
    cluster-bootstrap CIs (pdd.stats.adaptation_gains), the claim table and the computed
    conclusions (pdd.experiments).

Results are written after every measurement (<out>/gpu_check.json and gpu_check.md), so a crash
or the deadline never loses what was measured. On the GPU machine see benchmarks/GPU.md.

    python benchmarks/gpu_check.py                    # on a GPU: writes results/gpu/
    python benchmarks/gpu_check.py --dry-run          # tiny sizes, writes a temp dir: tests the script,
                                                      # measures nothing (well inside its 90 s deadline
                                                      # on a 2-core AVX2-only CPU; seconds on a GPU)

The dry run is sized, not cut short: LR patch 8 (HR 32), batch 2+2, a tiny RRDBNet and D, VGG19
only up to conv1_2 (perceptual, R_intra and R_inter each read conv1_1 and conv1_2), 1 warm-up and 2
timed steps per configuration; (b) trains the `tiny` preset at those sizes for 4 iterations
(distillation from iteration 2) and scores 2 test tiles per set (their top-left 32x32 LR px), in
bf16 only where the device computes bf16 natively (an AVX2-only CPU emulates it, about 45x slower
than fp32 here). Everything it prints says DRY RUN. The device is where `--device` (default auto)
points: the CPU on a machine without a GPU, else the GPU.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_HOURS = 14.0  # supplementary A: ~14 h per 100K iterations on 2x RTX A5000
PAPER_SIZES = dict(patch=48, batch_l=8, batch_u=8, num_feat=64, num_block=23, num_grow_ch=32, disc_feat=64)
DRY_SIZES = dict(patch=8, batch_l=2, batch_u=2, num_feat=8, num_block=1, num_grow_ch=4, disc_feat=8)
# The dry run's VGG19 layers: two per term, so every weighted sum still runs, and VGG19 stops
# after conv1_2. VGG19 is most of a dry step's work: at HR 64 with the paper's layers (up to
# conv5_4) one step was 47 GFLOP, 1.4 s in fp32 and 67 s in bf16, which an AVX2-only core emulates.
DRY_LAYERS = {"sup.perceptual_layers": {"conv1_1": 0.1, "conv1_2": 0.1},
              "pdd.intra_layers": {"conv1_1": 0.1, "conv1_2": 0.1},
              "pdd.inter_layers": {"conv1_1": 0.25, "conv1_2": 0.25}}
DRY_EVAL_LR = 32    # (b) scores the top-left 32x32 LR (128x128 HR) of each test tile
DRY_WARM_STEPS = 1  # untimed steps before the timed ones (3 at full size: allocator, cuDNN autotuning)
B_MIN_S = 240  # what the compiled measurement must leave to (b) on the GPU
PRECISIONS = {"fp32": (False, False), "bf16": (True, False), "bf16+CL": (True, True)}


class Deadline(Exception):
    """The global time budget ran out."""


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny sizes, a few steps: tests the script, measures nothing (under a minute on a CPU)")
    ap.add_argument("--device", default="auto",
                    help="auto (CUDA, then Apple's MPS, then the CPU: only a dry run may use the CPU), cuda, cuda:N, mps, cpu")
    ap.add_argument("--out", type=Path, help="result folder (default results/gpu; --dry-run: a temporary folder)")
    ap.add_argument("--budget-min", type=float, help="global deadline in minutes (default 9; --dry-run 1.5)")
    ap.add_argument("--domain", default="Synth-Defocus", help="built-in domain of the evidence run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", nargs="+", default=["a", "b"], choices=["a", "b"])
    ap.add_argument("--reps", type=int, help="timed steps per configuration (default 10; --dry-run 2)")
    ap.add_argument("--compile-timeout", type=float, help="seconds for the compiled measurement (default 150)")
    ap.add_argument("--eval-tiles", type=int, help="test tiles per test set in (b) (default: all of the domain; --dry-run 2)")
    ap.add_argument("--max-iters", type=int, help="stop (b) at this many iterations (default: the deadline decides; --dry-run 4)")
    ap.add_argument("--site", type=Path, default=REPO / ".gpu_env" / "site",
                    help="carried libraries, searched after the machine's own (benchmarks/gpu_prepare.py)")
    ap.add_argument("--worker", choices=["compile"], help=argparse.SUPPRESS)
    ap.add_argument("--worker-json", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    dry = args.dry_run
    args.budget_s = 60 * (args.budget_min if args.budget_min is not None else (1.5 if dry else 9.0))
    args.reps = args.reps or (2 if dry else 10)
    args.compile_timeout = args.compile_timeout if args.compile_timeout is not None else (45 if dry else 150)
    args.eval_tiles = args.eval_tiles or (2 if dry else None)
    args.max_iters = args.max_iters or (4 if dry else None)
    args.warm = DRY_WARM_STEPS if dry else 3
    return args


# ------------------------------------------------------------------ bookkeeping
class Report:
    """The results so far; every ``put`` rewrites the JSON and the Markdown (atomically)."""

    def __init__(self, out: Path, data: dict):
        self.out, self.data = out, data
        out.mkdir(parents=True, exist_ok=True)

    def put(self, section: str, key: str, value) -> None:
        self.data.setdefault(section, {})[key] = value
        self.save()

    def save(self) -> None:
        for name, text in (("gpu_check.json", json.dumps(self.data, indent=2, default=str)),
                           ("gpu_check.md", markdown(self.data))):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.out / name)


def machine(device) -> dict:
    import torch
    from pdd.config import cpu_model
    from pdd.devices import describe

    m = {"cpu": cpu_model(), "python": platform.python_version(), "torch": torch.__version__,
         "device": str(device), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if device.type == "mps":
        m["gpu"] = describe(device)
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        m.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=round(p.total_memory / 2**30, 1),
                 capability=f"{p.major}.{p.minor}", cudnn=torch.backends.cudnn.version(),
                 cudnn_benchmark=torch.backends.cudnn.benchmark,
                 tf32_convs=getattr(torch.backends.cudnn, "allow_tf32", None),
                 tf32_matmul=getattr(torch.backends.cuda.matmul, "allow_tf32", None))
    if device.type != "cuda":
        m["threads"] = torch.get_num_threads()
    return m


def sync(device) -> None:
    from pdd.devices import synchronize
    synchronize(device)


def fmt(x, spec=".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def markdown(d: dict) -> str:
    """A short human summary of the JSON."""
    m = d.get("machine", {})
    title = (f"DRY RUN, tiny sizes on {m.get('device', '?')}: tests the script, not a GPU measurement"
             if d.get("dry_run") else "paper preset")
    lines = [f"# GPU check ({title})", "",
             f"Machine: {m.get('gpu', 'no GPU')}; CPU {m.get('cpu', '?')}; torch {m.get('torch', '?')}, "
             f"Python {m.get('python', '?')}; {m.get('date', '')}. Status: {d.get('status', '?')}.", ""]
    a = d.get("a", {})
    if a:
        lines += [f"## (a) One generator+discriminator step (LR {a.get('sizes', {}).get('patch')}, batch "
                  f"{a.get('sizes', {}).get('batch_l')}+{a.get('sizes', {}).get('batch_u')})", "",
                  "| configuration | s/step | data s/step | first 3 steps s | peak GiB | h per 100K | x official 14 h |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in a.get("steps", {}).items():
            if "error" in r:
                lines.append(f"| {name} | {r['error']} | | | | | |")
                continue
            peak = r.get("peak_gib")
            lines.append(f"| {name} | {fmt(r['step_s'], '.4f')} | {fmt(r.get('data_s'), '.4f')} | "
                         f"{fmt(r.get('warmup_steps_s'), '.1f')} | {fmt(peak, '.2f')} | "
                         f"{fmt(r['hours_per_100k'], '.2f')} | {fmt(r['hours_per_100k'] / OFFICIAL_HOURS, '.2f')} |")
        if "flops" in a:
            f = a["flops"]
            lines += ["", f"FLOPs per step {f['step_gflop']:.1f} GFLOP (torch.utils.flop_counter, fwd+bwd); bf16 matmul "
                      f"rate {fmt(a.get('matmul', {}).get('tflops'), '.1f')} TFLOP/s measured "
                      f"({a.get('matmul', {}).get('shape', '')}); FLOP bound {fmt(f.get('bound_s'), '.4f')} s/step = "
                      f"{fmt(f.get('bound_hours_per_100k'), '.2f')} h per 100K."]
        if "objective" in a:
            o = a["objective"]
            lines += ["", f"Objective alone ({o['precision']}): fused {fmt(o.get('fused_s'), '.4f')} s, unfused "
                      f"{fmt(o.get('unfused_s'), '.4f')} s ({fmt(o.get('ratio'), '.2f')}x); {o['note']}"]
    b = d.get("b", {})
    if b:
        lines += ["", f"## (b) Evidence run: {b.get('preset')} preset on {b.get('domain')}, seed {b.get('seed')}", "",
                  f"Iterations reached: {b.get('iterations', 0)} per run (D-only warm-up {b.get('warmup_d_iters')}, "
                  f"distillation from {b.get('distill_from')}); {b.get('precision', '')}; train "
                  f"{fmt(b.get('train_s'), '.0f')} s, evaluate {fmt(b.get('eval_s'), '.0f')} s."]
        if b.get("gains"):
            lines += ["", "| method | metric | target gain | source gain | adaptation gain [95% CI] | verdict |",
                      "|---|---|---|---|---|---|"]
            for r in b["gains"]:
                lines.append(f"| {r['method']} | {r['metric']} | {r['target gain']:+.3f} | {r['source gain']:+.3f} | "
                             f"{r['adaptation gain']:+.3f} [{r['adaptation gain lo']:+.3f}, {r['adaptation gain hi']:+.3f}] "
                             f"| {r['adaptation gain verdict']} |")
        if b.get("conclusions"):
            lines += ["", "Conclusions (computed, notebook 07's protocol):", ""] + [f"- {x}" for x in b["conclusions"]]
    if d.get("deviations"):
        lines += ["", "## Deviations", ""] + [f"- {x}" for x in d["deviations"]]
    if d.get("errors"):
        lines += ["", "## Errors", ""] + [f"- {x}" for x in d["errors"]]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ (a) the step
def step_config(args, out: Path, device, bf16: bool, cl: bool, compile_: bool = False):
    from pdd.config import make_config

    sizes = DRY_SIZES if args.dry_run else PAPER_SIZES
    # every timed step is a full distillation step; random init (the cost does not depend on the weights)
    return make_config("paper", "ema", overrides=DRY_LAYERS if args.dry_run else None, domain=args.domain,
                       out=str(out), init_s=None, init_g=None, warmup_d_iters=0, distill_start_k=0, device=str(device),
                       bf16=bf16, channels_last=cl, compile=compile_, seed=args.seed, **sizes)


def time_steps(cfg, reps: int, warm: int = 3, count_flops: bool = False) -> dict:
    """Median seconds of the Trainer's step (data included) and of its data sampling alone; peak
    memory; with ``count_flops`` also the FLOPs of one more step (``flops``: one Trainer less to build)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from pdd.train import Trainer

    tr = Trainer(cfg, progress=False)
    dev = tr.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    for t in range(1, warm + 1):
        tr.step(t)
    sync(dev)
    first_s = time.perf_counter() - t0
    times = []
    for t in range(warm + 1, warm + reps + 1):
        t0 = time.perf_counter()
        tr.step(t)
        sync(dev)
        times.append(time.perf_counter() - t0)
    data = []
    for t in range(1, reps + 1):
        t0 = time.perf_counter()
        tr.batch(t)
        sync(dev)
        data.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    r = {"step_s": step_s, "data_s": statistics.median(data), "warmup_steps_s": first_s, "reps": reps,
         "hours_per_100k": step_s * 1e5 / 3600,
         "peak_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None}
    if count_flops:
        with FlopCounterMode(display=False) as counter:
            tr.step(warm + reps + 1)
        r["flops"] = float(counter.get_total_flops())
    del tr
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return r


def step_flops(cfg) -> float:
    """FLOPs of one full distillation step (forward + backward of G's and D's updates)."""
    from torch.utils.flop_counter import FlopCounterMode
    from pdd.train import Trainer

    tr = Trainer(cfg, progress=False)
    tr.step(1)
    with FlopCounterMode(display=False) as counter:
        tr.step(2)
    return float(counter.get_total_flops())


def matmul_rate(device, n: int, reps: int = 10) -> float:
    """Measured bf16 matmul FLOP/s of an n x n x n product (best of ``reps``)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    a @ b
    sync(device)
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t0) / 5)
    return 2 * n**3 / best


def objective_fused_vs_unfused(args, device) -> dict:
    """The generator objective alone, fused vs unfused, with benchmarks/loss_step.py's routes."""
    import torch
    from pdd import losses as L
    from pdd.archs import UNetDiscriminatorSN, VGG19Features

    spec = importlib.util.spec_from_file_location("loss_step", REPO / "benchmarks" / "loss_step.py")
    ls = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ls)
    sizes = DRY_SIZES if args.dry_run else PAPER_SIZES
    n, p = sizes["batch_l"], sizes["patch"] * 4
    sup, pdd = L.SupervisedWeights(), L.PDDWeights()
    if args.dry_run:
        sup.perceptual_layers = DRY_LAYERS["sup.perceptual_layers"]
        pdd.intra_layers, pdd.inter_layers = DRY_LAYERS["pdd.intra_layers"], DRY_LAYERS["pdd.inter_layers"]
    fmt_ = torch.channels_last
    vgg = VGG19Features(L.vgg_layers_needed(sup, pdd)).to(device).to(memory_format=fmt_)
    disc = UNetDiscriminatorSN(3, sizes["disc_feat"]).to(device).requires_grad_(False).to(memory_format=fmt_)
    g = torch.Generator().manual_seed(0)
    mk = lambda: torch.rand(n, 3, p, p, generator=g).to(device).contiguous(memory_format=fmt_)  # noqa: E731
    y_l, g_l, g_u = mk(), mk(), mk()
    s_l, s_u = mk().requires_grad_(True), mk().requires_grad_(True)

    def route(fused):
        def run():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = (L.generator_objective(vgg, s_l, s_u, y_l, g_l, g_u, disc, sup, pdd)["total"] if fused
                        else ls.unfused(vgg, s_l, s_u, y_l, g_l, g_u, disc, sup, pdd))
            loss.backward()
            sync(device)
        return run

    fused_s, unfused_s = ls.bench([route(True), route(False)], max(2, args.reps // 2))
    return {"fused_s": fused_s, "unfused_s": unfused_s, "ratio": unfused_s / fused_s, "precision": "bf16+CL",
            "note": "the Trainer has no fused/unfused switch (it always runs the fused objective); the unfused "
                    "route is benchmarks/loss_step.unfused, timed on the objective alone (VGG and D random)"}


def compile_worker(args) -> None:
    """Subprocess body: the bf16+CL step with cfg.compile; writes its figures to --worker-json."""
    import torch
    from pdd.config import resolve_device

    device = resolve_device(args.device)
    note = f"warmup_steps_s includes compilation ({args.warm} steps)"
    if args.dry_run:  # inductor's C++ build takes minutes on one CPU thread: trace with dynamo only
        import functools
        torch.compile = functools.partial(torch.compile, backend="eager")
        note += "; DRY RUN: backend 'eager' (dynamo graph capture, no inductor code generation)"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:
        r = time_steps(step_config(args, Path(tmp), device, True, True, compile_=True), args.reps, args.warm)
    r["note"] = note
    args.worker_json.write_text(json.dumps(r))


def part_a(args, report: Report, device) -> None:
    sizes = DRY_SIZES if args.dry_run else PAPER_SIZES
    report.put("a", "sizes", sizes)
    steps = report.data["a"].setdefault("steps", {})
    for name, (bf16, cl) in PRECISIONS.items():
        check_time(args, f"(a) {name}")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                steps[name] = time_steps(step_config(args, Path(tmp), device, bf16, cl), args.reps, args.warm,
                                         count_flops=name == "bf16+CL")
            except Deadline:
                raise
            except Exception as e:  # noqa: BLE001 -- one configuration failing must not lose the others
                steps[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        report.save()
        print(f"(a) {name}: {steps[name]}", flush=True)
    check_time(args, "(a) FLOPs")
    n = 128 if args.dry_run else 8192
    report.put("a", "matmul", {"tflops": matmul_rate(device, n) / 1e12, "shape": f"bf16 {n}x{n}x{n}"})
    flops = steps.get("bf16+CL", {}).pop("flops", None)
    if flops is None:  # that configuration failed: count on a Trainer of its own
        with tempfile.TemporaryDirectory() as tmp:
            flops = step_flops(step_config(args, Path(tmp), device, True, True))
    bound_s = flops / (report.data["a"]["matmul"]["tflops"] * 1e12)
    report.put("a", "flops", {"step_gflop": flops / 1e9, "bound_s": bound_s, "bound_hours_per_100k": bound_s * 1e5 / 3600})
    print(f"(a) {report.data['a']['flops']}, matmul {report.data['a']['matmul']}", flush=True)
    check_time(args, "(a) objective")
    report.put("a", "objective", objective_fused_vs_unfused(args, device))
    print(f"(a) objective {report.data['a']['objective']}", flush=True)
    # the compiled step in a subprocess: compilation time is unbounded in-process
    limit = min(args.compile_timeout, left(args) - (B_MIN_S if "b" in args.parts and not args.dry_run else 5))
    name = "bf16+CL+compile"
    if limit < 10:
        steps[name] = {"error": f"skipped: {limit:.0f} s left for it"}
    else:
        with tempfile.TemporaryDirectory() as tmp:
            js = Path(tmp) / "compile.json"
            cmd = [sys.executable, __file__, "--worker", "compile", "--worker-json", str(js), "--reps", str(args.reps),
                   "--domain", args.domain, "--site", str(args.site), "--device", str(device)] + \
                (["--dry-run"] if args.dry_run else [])
            t0 = time.perf_counter()
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=limit)
                steps[name] = json.loads(js.read_text()) if p.returncode == 0 and js.exists() else \
                    {"error": f"exit {p.returncode}: {(p.stderr or p.stdout).strip().splitlines()[-1:]}"}
            except subprocess.TimeoutExpired:
                steps[name] = {"error": f"not finished within {limit:.0f} s (compilation included)"}
            steps[name]["wall_s"] = time.perf_counter() - t0
    report.save()
    print(f"(a) {name}: {steps[name]}", flush=True)


# ------------------------------------------------------------------ (b) the evidence run
def part_b(args, report: Report, device) -> None:
    import torch
    from pdd import evaluate, experiments, stats
    from pdd.data import open_domain
    from pdd.devices import bf16_default
    from pdd.train import Trainer

    preset = "tiny" if args.dry_run else "paper"
    pretrain_iters = 2 if args.dry_run else None
    runs = report.out / "runs" if args.dry_run else REPO / "runs" / "gpu_check" / time.strftime("%Y%m%d-%H%M%S")
    b = report.data.setdefault("b", {})
    b.update(preset=preset, domain=args.domain, seed=args.seed, runs_dir=str(runs), iterations=0)
    dom = open_domain(args.domain)
    k = args.eval_tiles
    test_sets = {"target": dom.test_pairs[:k] if k else dom.test_pairs,
                 "source": dom.source_test_pairs[:k] if k else dom.source_test_pairs}
    if args.dry_run:  # smaller images: each test tile's top-left corner (SR 128 px still holds NIQE's 96 px block)
        c = DRY_EVAL_LR
        test_sets = {s: [(lr[:c, :c], hr[:4 * c, :4 * c], name) for lr, hr, name in v] for s, v in test_sets.items()}
    metrics = evaluate.create_metrics(device="cpu")
    # dry run: the step's sizes, and distillation from iteration 2 so that its few iterations include it
    dry = {"patch": DRY_SIZES["patch"], "warmup_d_iters": 1, "distill_start_k": 0, **DRY_LAYERS} if args.dry_run else None
    rows = [experiments.row_run(m, preset, args.domain, args.seed, runs, overrides=dry, pretrain_iters=pretrain_iters)
            for m in ("EMA PDD", "finetune control")]
    cfgs = [r.config for r in rows]
    # bf16 where the device has it (a CUDA GPU since Ampere; a CPU with AMX/AVX512-BF16), else fp32
    bf16 = bf16_default(device)
    for c in cfgs:  # the deadline decides the length: no scheduled end, snapshots at every chunk's end
        c.device, c.bf16, c.channels_last = str(device), bf16, bf16
        c.iters, c.ckpt_every, c.log_every = 10**6 - 1, 10**9, 5 if args.dry_run else 25
    c0 = cfgs[0]
    b.update(warmup_d_iters=c0.warmup_d_iters, distill_from=c0.warmup_d_iters + c0.distill_start_k + 1,
             precision=f"{'bf16 autocast + channels_last' if bf16 else 'fp32'} (training, {device.type}), "
                       "fp32 evaluation on the CPU",
             sizes={k_: getattr(c0, k_) for k_ in PAPER_SIZES},
             test_tiles={s: len(v) for s, v in test_sets.items()}, metrics=evaluate.metric_info(metrics))
    report.save()
    # evaluation time of one model on both test sets, to keep enough of the budget for the end
    check_time(args, "(b) generalist evaluation")
    # the from-scratch starting models the rows start from and are scored against (none under paper)
    experiments.train_here(experiments.pretrain_runs(preset, args.domain, [args.seed], runs,
                                                     pretrain_iters=pretrain_iters), progress=False)
    G = experiments.generalist(preset, args.domain, seed=args.seed, iters=pretrain_iters, runs_dir=runs, progress=False)
    t0 = time.perf_counter()
    evaluate.evaluate(G, test_sets["target"], metrics, progress=False)
    one_eval_s = 2 * (time.perf_counter() - t0)  # both test sets
    n_models = 1 + len(cfgs) * 2 + (1 if preset == "tiny" else 0)  # generalist (+ specialist) + 2 snapshots a run
    reserve = 1.3 * one_eval_s * n_models + 10
    b["eval_reserve_s"] = reserve
    trainers = [Trainer(c, progress=False) for c in cfgs]
    del G
    first = min_chunk = 2 if args.dry_run else 25
    end, chunk, per_iter, t_train = 0, first, None, time.perf_counter()
    while True:
        room = left(args) - reserve
        if per_iter is not None:
            # about 6 snapshots over the run (the last two are evaluated); a chunk may cost more than the
            # last one (distillation starts after D's warm-up), hence the 1.5
            chunk = max(first, int((end + room / per_iter) / 6))
            chunk = min(chunk, int(room / (1.5 * per_iter)))
        if args.max_iters is not None:
            chunk = min(chunk, args.max_iters - end)
            min_chunk = min(min_chunk, chunk)
        if chunk < max(1, min_chunk) or room <= 0:
            break
        t0 = time.perf_counter()
        for tr in trainers:
            tr.fit(iters=end + chunk)
        sync(device)
        per_iter = (time.perf_counter() - t0) / chunk
        end += chunk
        b.update(iterations=end, s_per_iteration_both_runs=per_iter, train_s=time.perf_counter() - t_train)
        report.save()
        print(f"(b) {end} iterations ({per_iter:.3f} s per iteration of both runs, {left(args):.0f} s left)", flush=True)
    del trainers
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if end == 0:
        raise Deadline("no time left to train (b)")
    t0 = time.perf_counter()
    per_image = experiments.evaluate_runs(rows, test_sets, metrics, last_k=2, runs_dir=runs, progress=False,
                                             pretrain_iters=pretrain_iters)
    per_image.to_csv(report.out / "evidence_per_image.csv", index=False, float_format="%.4f")
    n_boot = 2000
    gains = stats.adaptation_gains(per_image, n_boot=n_boot, seed=0)
    claims = experiments.claim_table(per_image, n_boot=n_boot)
    lines = experiments.evidence_conclusions(report.out, args.domain, preset, rows, per_image, gains, n_boot)
    gains.to_csv(report.out / "evidence_gains.csv", index=False, float_format="%.4f")
    b.update(eval_s=time.perf_counter() - t0, gains=gains[experiments.EVIDENCE_COLUMNS].to_dict("records"),
             claims=claims.to_dict("records"), conclusions=lines,
             snapshots=sorted({int(i) for i in per_image.iteration if i > 0}),
             sources={r.row: json.loads((r.dir / "config.json").read_text())["sources"] for r in rows})
    report.save()
    print("\n".join(["(b) conclusions:"] + lines), flush=True)


# ------------------------------------------------------------------ deadline
_DEADLINE = [math.inf]


def left(args) -> float:
    return _DEADLINE[0] - time.time()


def check_time(args, phase: str) -> None:
    if left(args) <= 0:
        raise Deadline(f"deadline reached before {phase}")


def _alarm(signum, frame):
    raise Deadline("the global deadline interrupted a measurement")


def deviations(args, device) -> list[str]:
    out = ["Timed steps (a) use random initial weights for S, D and VGG19 (their cost does not depend on the weights) "
           "and every timed step is a full distillation step (D warm-up and k set to 0).",
           "Evidence (b) runs far fewer iterations than the paper's 100K (stated above), one seed, on a built-in "
           "synthetic domain, not a real one; D warm-up and k as in the paper preset.",
           "Weights: RealESRGAN_x4plus and VGG19 from the offline sources (pdd.weights; see the sources in the JSON); "
           "on the GPU machine VGG19 is carried rounded to bf16 (benchmarks/gpu_prepare.py).",
           "Metrics that download weights (LPIPS, NRQM) are unavailable without internet (NaN, named in the JSON)."]
    if device.type == "cuda":
        out.append("cudnn.benchmark on for every measurement; fp32 convolutions use TF32 (torch's default).")
    if device.type == "mps":
        out.append("Apple GPU (MPS): no peak-memory figure (torch records peaks on CUDA only); operations MPS "
                   "lacks run on the CPU (PYTORCH_ENABLE_MPS_FALLBACK), which slows the step they are in.")
    if args.dry_run:
        s = DRY_SIZES
        out.insert(0, f"DRY RUN on {device}: it tests the script and measures neither a GPU nor the method. Sized to "
                      f"finish well inside its deadline on a 2-core AVX2-only CPU: LR patch {s['patch']} (HR "
                      f"{4 * s['patch']}), batch {s['batch_l']}+{s['batch_u']}, RRDBNet {s['num_feat']}/{s['num_block']}/"
                      f"{s['num_grow_ch']}, D {s['disc_feat']}, VGG19 up to conv1_2 (layers: "
                      f"{'; '.join(f'{k} {sorted(v)}' for k, v in DRY_LAYERS.items())}), {args.warm} warm-up + "
                      f"{args.reps} timed steps per configuration; (b) the tiny preset at these sizes, D warm-up 1, "
                      f"k 0, {args.max_iters} iterations, {args.eval_tiles} test tiles per set cropped to LR {DRY_EVAL_LR} px.")
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(REPO))
    if not args.dry_run and (REPO / ".gpu_env" / "cache").is_dir():  # the weights gpu_prepare.py unpacked
        os.environ.setdefault("PDD_CACHE", str(REPO / ".gpu_env" / "cache"))
    if args.site.is_dir():
        sys.path.append(str(args.site))  # after the machine's own packages: an installed one wins
    from pdd.devices import DeviceError, before_torch

    before_torch(args.device)  # on a Mac: MPS's CPU fallback, which PyTorch reads when it loads
    if args.worker:
        compile_worker(args)
        return 0
    import torch
    from pdd.config import resolve_device

    try:
        device = resolve_device(args.device)
    except DeviceError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2
    if device.type == "cpu" and not args.dry_run:
        print("gpu_check: no GPU here (CUDA or MPS): run with --dry-run to test the script on the CPU", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out = args.out or (Path(tempfile.mkdtemp(prefix="gpu_check_")) if args.dry_run else REPO / "results" / "gpu")
    t_start = time.time()
    _DEADLINE[0] = t_start + args.budget_s
    report = Report(out, {"dry_run": args.dry_run, "status": "running", "budget_s": args.budget_s,
                          "machine": machine(device), "deviations": deviations(args, device), "errors": []})
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(max(1, int(args.budget_s)))
    label = "DRY RUN (tests the script, not a GPU measurement): " if args.dry_run else ""
    print(f"gpu_check: {label}{report.data['machine']}; budget {args.budget_s:.0f} s; writing {out}", flush=True)
    if args.dry_run:
        print(f"gpu_check: {report.data['deviations'][0]}", flush=True)
    try:
        if "a" in args.parts:
            part_a(args, report, device)
        if "b" in args.parts:
            part_b(args, report, device)
        report.data["status"] = "complete"
    except Deadline as e:
        report.data["status"] = f"incomplete: {e}"
    except Exception as e:  # noqa: BLE001 -- keep what was measured, name the failure
        report.data["status"] = f"failed: {type(e).__name__}: {e}"
        report.data["errors"].append(f"{type(e).__name__}: {e}")
        import traceback
        traceback.print_exc()
    finally:
        signal.alarm(0)
        report.data["wall_s"] = time.time() - t_start
        report.save()
    print(f"gpu_check: {label}{report.data['status']} in {report.data['wall_s']:.0f} s; wrote {out / 'gpu_check.json'} "
          f"and gpu_check.md", flush=True)
    return 0 if report.data["status"] == "complete" else 1


if __name__ == "__main__":
    sys.exit(main())
