"""KDSR-GAN student vs RRDBNet (RealESRGAN_x4plus's size): forward time and MACs per LR pixel
on the same input. Weights are random: the cost does not depend on their values.

MACs come from ``pdd.kdsr.count_macs`` (hooks on every conv and linear layer, the dynamic
depthwise conv counted analytically); the notes measured KDSR-GAN at 0.74x RRDBNet's MACs.
Times are medians of ``--repeats`` runs after one warm-up, fp32 unless ``--bf16`` (bf16
autocast + channels_last); on a shared CPU they are noisy: compare within one sitting.

    python benchmarks/kdsr_speed.py                  # LR 32x32, 1 thread
    python benchmarks/kdsr_speed.py --lr 128 --threads 2 --bf16
"""
import argparse
import statistics
import time

import torch

from pdd.archs import RRDBNet
from pdd.kdsr import KDSRStudent, count_macs


def median_time(model, x, repeats, bf16):
    times = []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(x)  # warm-up (allocator, oneDNN kernel selection)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lr", type=int, default=32, help="LR side in pixels")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast + channels_last")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"KDSR-GAN student": KDSRStudent("gan").eval(), "RRDBNet 23 blocks": RRDBNet().eval()}
    x = torch.rand(1, 3, args.lr, args.lr)
    fmt = torch.channels_last if args.bf16 else torch.contiguous_format
    x = x.contiguous(memory_format=fmt)
    print(f"LR {args.lr}x{args.lr}, {args.threads} thread(s), {'bf16 + channels_last' if args.bf16 else 'fp32'}, "
          f"torch {torch.__version__}")
    rows = {}
    for name, model in models.items():
        macs = count_macs(model, args.lr, args.lr)
        per_px = macs["conv_per_lr_px"] + macs["dynamic_per_lr_px"]
        seconds = median_time(model.to(memory_format=fmt), x, args.repeats, args.bf16)
        rows[name] = (per_px, macs["linear_per_image"], seconds)
        print(f"{name:20s} {per_px / 1e6:8.3f} M MACs/LR px (+{macs['linear_per_image'] / 1e6:.2f} M linear per "
              f"image)  forward {seconds:.3f} s")
    (k_px, _, k_s), (r_px, _, r_s) = rows.values()
    print(f"KDSR / RRDBNet: MACs {k_px / r_px:.2f}x, time {k_s / r_s:.2f}x")


if __name__ == "__main__":
    main()
