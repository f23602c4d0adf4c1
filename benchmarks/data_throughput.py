"""Training-data throughput: labeled + unlabeled samples per second.

For the `cpu` patch size (LR 32, batch 2+2) and the `paper` size (LR 48, batch 8+8),
single process and through a DataLoader with 2 workers, on a built-in domain (generated
under the data root on first use). A labeled sample costs a crop, flips and a MATLAB
bicubic downscale; an unlabeled one only a crop and flips.

    .venv/bin/python benchmarks/data_throughput.py [--domain Synth-Defocus] [--seconds 4]
"""
import argparse
import time

import torch

from pdd import data

SIZES = {"cpu": (32, 2, 2), "paper": (48, 8, 8)}  # LR patch, batch_l, batch_u


def rate(batches, batch_size: int, seconds: float) -> float:
    """Samples per second over the iterations that fit in `seconds` (after one warm-up)."""
    it = iter(batches)
    next(it)  # warm-up: imports, worker start-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(it)
        n += 1
    return n * batch_size / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domain", default=data.builtin_domain_names()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()

    torch.set_num_threads(1)  # what each DataLoader worker gets; also fair for 1 process
    dom = data.open_domain(args.domain, args.data_root)
    print(f"domain {dom.name}: {len(dom.labeled_hr)} labeled HR, {len(dom.unlabeled_lr)} unlabeled LR; "
          f"torch threads 1; {args.seconds:.0f} s per measurement")
    print(f"{'size':6s} {'LR':>3s} {'batch':>5s} {'1 process':>12s} {'2 workers':>12s}   (samples/s, labeled+unlabeled)")
    for name, (patch, bl, bu) in SIZES.items():
        lab = data.LabeledPatches(dom.labeled_hr, patch=patch, seed=0)
        unl = data.UnlabeledPatches(dom.unlabeled_lr, patch=patch, seed=0)
        ds = data.MixedBatches(lab, unl, bl, bu)
        single = rate((ds[k] for k in range(10 ** 9)), bl + bu, args.seconds)
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, prefetch_factor=4)
        multi = rate(loader, bl + bu, args.seconds)
        print(f"{name:6s} {patch:3d} {f'{bl}+{bu}':>5s} {single:12.1f} {multi:12.1f}")


if __name__ == "__main__":
    main()
