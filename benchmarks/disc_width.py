"""D's width under `scratch` (issue 25, R2 of results/Synth-ISO/scratch/fair_setup/RULES.md): the
seconds of one whole `Trainer.step` with the official 64-feature U-Net D and with the fair
set-up's 32-feature D, for each kind of step the length study runs (EMA PDD, static PDD, the
fine-tune control, the D-only warm-up), at one thread, the widths interleaved round by round so
that both see the same machine. Random-init networks of the preset's sizes (nothing is read).

    python benchmarks/disc_width.py                 # 3 rounds of 3 steps per kind and width
    python benchmarks/disc_width.py --rounds 5 --steps 4 --widths 64 32 16
"""
import argparse
import tempfile
import time
from statistics import median

import torch

from pdd.config import cpu_model, make_config
from pdd.train import Trainer

KINDS = {"EMA PDD": ("ema", False), "static PDD": ("static", False), "fine-tune control": ("finetune", False),
         "D-only warm-up": ("ema", True)}


def trainer(kind: str, width: int, out: str, preset: str = "scratch") -> tuple[Trainer, int]:
    """A trainer of ``kind`` with a D of ``width`` features, and the iteration its timed steps start at."""
    mode, warm_up = KINDS[kind]
    cfg = make_config(preset, mode, out=out, threads=1, disc_feat=width, warmup_d_iters=300, distill_start_k=0)
    return Trainer(cfg, progress=False), (1 if warm_up else cfg.warmup_d_iters + 1)


def seconds_per_step(t: Trainer, first: int, steps: int) -> float:
    t.step(first)  # one untimed step: allocations, first-call work
    t0 = time.perf_counter()
    for i in range(1, steps + 1):
        t.step(first + i)
    return (time.perf_counter() - t0) / steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 32])
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    ap.add_argument("--preset", default="scratch", choices=["scratch", "tiny"], help="tiny: a smoke run of the script")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, 1 thread; {a.rounds} rounds x {a.steps} steps")
    times = {(k, w): [] for k in a.kinds for w in a.widths}
    with tempfile.TemporaryDirectory() as tmp:
        built = {(k, w): trainer(k, w, f"{tmp}/{k.replace(' ', '_')}_{w}", a.preset) for k in a.kinds for w in a.widths}
        for _ in range(a.rounds):
            for k in a.kinds:
                for w in a.widths:  # interleaved: both widths see the same machine state
                    t, first = built[(k, w)]
                    times[(k, w)].append(seconds_per_step(t, first, a.steps))
                    first += a.steps + 1
                    built[(k, w)] = (t, first)
    base = a.widths[0]
    print(f"\n| step kind ({a.preset}) | " + " | ".join(f"D {w} features (s)" for w in a.widths) + " | "
          + " | ".join(f"{w} / {base}" for w in a.widths[1:]) + " |")
    print("|---|" + "---|" * (2 * len(a.widths) - 1))
    for k in a.kinds:
        med = [median(times[(k, w)]) for w in a.widths]
        print(f"| {k} | " + " | ".join(f"{m:.3f}" for m in med) + " | "
              + " | ".join(f"{m / med[0]:.2f}" for m in med[1:]) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
