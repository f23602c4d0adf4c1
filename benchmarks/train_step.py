"""Seconds per training step for each mode at the `cpu` and `paper` sizes.

Full RRDBNet (23 blocks, random init: the cost does not depend on the weights), the
discriminator, VGG19, the real data pipeline of the built-in domain; warm-up and k set
to 0 so every timed step is a full distillation step. Prints fp32 and bf16 autocast +
channels_last side by side, and the data-loading share of a step.

    python benchmarks/train_step.py                     # cpu size, all modes
    python benchmarks/train_step.py --sizes cpu paper   # the paper's 48x48, 8+8 too (slow on a CPU)
"""
import argparse
import tempfile
import time

import torch

from pdd.config import make_config
from pdd.train import Trainer

SIZES = {"cpu": dict(patch=32, batch_l=2, batch_u=2), "paper": dict(patch=48, batch_l=8, batch_u=8)}
MODES = ("finetune", "naive", "static", "ema")


def time_steps(cfg, steps):
    tr = Trainer(cfg, progress=False)
    tr.step(1)  # warm-up (allocations, first-call overheads)
    t0 = time.perf_counter()
    for t in range(2, steps + 2):
        tr.step(t)
    step_s = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    for t in range(2, steps + 2):
        tr.batch(t)
    return step_s, (time.perf_counter() - t0) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["cpu"], choices=list(SIZES))
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    print(f"threads={torch.get_num_threads()} device={args.device}")
    print(f"{'size':6} {'mode':9} {'fp32 s/step':>12} {'bf16+CL s/step':>15} {'speed-up':>9} {'data s/step':>12}")
    for size in args.sizes:
        for mode in args.modes:
            res = {}
            for bf16 in (False, True):
                with tempfile.TemporaryDirectory() as out:
                    cfg = make_config("cpu", mode, out=out, init_s=None, init_g=None, warmup_d_iters=0,
                                      distill_start_k=0, bf16=bf16, channels_last=bf16, device=args.device,
                                      **SIZES[size])
                    res[bf16] = time_steps(cfg, args.steps)
            print(f"{size:6} {mode:9} {res[False][0]:>12.2f} {res[True][0]:>15.2f} {res[False][0] / res[True][0]:>8.2f}x "
                  f"{res[True][1]:>12.3f}", flush=True)


if __name__ == "__main__":
    main()
