"""Scoring the comparison's snapshots: one model at a time on every core vs one model per core
(``pdd.experiments.evaluate_items``, which the notebooks use).

The models are the preset's RRDBNet S at random initialisation, added to a bicubic upscale so
that the output is an image NIQE can score (a random network alone gives flat images); the
compute is the network's plus the metrics' (PSNR, SSIM, NIQE; LPIPS/NRQM when they are
available), on the domain's target and source test sets, as the comparison scores a snapshot.
Rounds alternate the two modes; each measurement scores into a fresh cache.

    OMP_NUM_THREADS unset; python benchmarks/evaluation.py --preset scratch --models 6 --rounds 2
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from pdd import experiments
from pdd.archs import RRDBNet
from pdd.config import cpu_model, make_config
from pdd.data import open_domain
from pdd.evaluate import Unavailable, create_metrics


class BicubicPlus(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False) + 0.01 * self.net(x)


def models(preset: str, n: int):
    cfg = make_config(preset)
    out = []
    for k in range(n):
        torch.manual_seed(k)
        out.append(BicubicPlus(RRDBNet(num_feat=cfg.num_feat, num_block=cfg.num_block, num_grow_ch=cfg.num_grow_ch)).eval())
    return out


def measure(nets, test_sets, metrics, workers: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        items = [experiments.EvalItem(lambda m=m: m, Path(f"net_g_{k:06d}.pth"), Path(tmp) / f"run{k}",
                                      {"method": f"m{k}"}) for k, m in enumerate(nets)]
        t0 = time.perf_counter()
        experiments.evaluate_items(items, test_sets, metrics, workers=workers, progress=False)
        return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="scratch")
    ap.add_argument("--domain", default="Synth-ISO")
    ap.add_argument("--models", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(cores)
    dom = open_domain(a.domain)
    test_sets = {"target": dom.test_pairs, "source": dom.source_test_pairs}
    metrics = create_metrics()
    nets = models(a.preset, a.models)
    parallel = experiments.eval_workers(a.models)
    print(f"{cpu_model()}; torch {torch.__version__}; load average at the start {os.getloadavg()[0]:.2f}")
    print(f"{a.models} models ({a.preset} S), {len(test_sets['target'])} + {len(test_sets['source'])} test images each; "
          f"metrics: {', '.join(n for n, m in metrics.items() if not isinstance(m, Unavailable))} (others unavailable)")
    modes = {f"1 model at a time, {cores} threads": 1, f"{parallel} models at once, 1 thread each": parallel}
    times = {m: [] for m in modes}
    measure(nets[:1], test_sets, metrics, 1)  # warm-up: first calls allocate and build kernels
    for r in range(a.rounds):
        order = list(modes) if r % 2 == 0 else list(modes)[::-1]
        for m in order:
            times[m].append(measure(nets, test_sets, metrics, modes[m]))
            print(f"  round {r}: {m}: {times[m][-1]:.1f} s", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    for m, t in med.items():
        print(f"{m}: {t:.1f} s ({t / a.models:.2f} s per model)")
    first, second = med.values()
    print(f"ratio {first / second:.2f}x; load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
