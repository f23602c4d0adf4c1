"""How close a training step runs to the CPU's fp32 peak (issue 27, item 1): the floor without bf16.

On a CPU without native bf16 (AVX2 only: most laptops) the step runs in fp32. This script
answers "is what is left the method's own work, and how fast is that work done?":

1. The core's peak: the theoretical fp32 rate (FMA lanes x 2 x clock, from /proc/cpuinfo's
   flags and MHz, a nominal figure) and the rate a large single-thread matrix product reaches
   (what the BLAS gets; the practical ceiling).
2. Every convolution the step runs, network by network, as the Trainer runs it: S (RRDBNet) forward
   and backward, G forward (no grad), VGG19 over S's outputs (forward, input-gradient backward)
   and over the references (no grad), D in the G step (forward, input-gradient backward) and D's
   own step (forward, weight-gradient backward). Multiply-accumulates are counted from the
   layers' shapes (forward hooks), the time is measured, and the achieved GFLOP/s is printed
   beside the peak, in the contiguous (NCHW) and channels_last layouts.

    OMP_NUM_THREADS=1 python benchmarks/fp32_floor.py                    # scratch preset sizes
    OMP_NUM_THREADS=1 python benchmarks/fp32_floor.py --preset cpu --repeat 2

Nothing here is a timed test; the figures belong in benchmarks/README.md with the CPU they came from.
"""
import argparse
import re
import time

import torch
import torch.nn as nn

from pdd.archs import RRDBNet, UNetDiscriminatorSN, VGG19Features
from pdd.config import cpu_model, make_config
from pdd.losses import vgg_layers_needed


def theoretical_peak_gflops() -> tuple[float, str]:
    """Nominal fp32 GFLOP/s of one core: SIMD lanes x FMA units x 2 x MHz (a nominal figure:
    the real clock moves with load and turbo). Zen 2/3 and recent Intel cores have two FMA
    units; the lane count is 16 with AVX-512, 8 with AVX2."""
    try:
        info = open("/proc/cpuinfo").read()
    except OSError:
        return float("nan"), "no /proc/cpuinfo"
    flags = set(info.split())
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", info)]
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    fma = 2 if "fma" in flags else 1
    if not mhz:
        return float("nan"), "clock unknown"
    clock = max(mhz)
    return lanes * fma * 2 * clock / 1e3, f"{lanes} fp32 lanes x {fma} FMA units x 2 x {clock:.0f} MHz"


def gemm_gflops(n: int = 1536, repeat: int = 3) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_time(lambda: torch.mm(a, b)) for _ in range(repeat))
    return 2 * n ** 3 / best / 1e9


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class MacCounter:
    """Forward MACs of every Conv2d of a module, from the shapes seen in one forward pass."""

    def __init__(self, module: nn.Module):
        self.macs = 0
        self.handles = [m.register_forward_hook(self._hook) for m in module.modules() if isinstance(m, nn.Conv2d)]

    def _hook(self, m, inputs, out):
        k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]  # in/groups x kh x kw
        self.macs += out.numel() * k

    def close(self):
        for h in self.handles:
            h.remove()


def forward_macs(net: nn.Module, x: torch.Tensor) -> int:
    c = MacCounter(net)
    with torch.no_grad():
        net(x)
    c.close()
    return c.macs


def parts(preset: str):
    """(name, network, input, mode) for the networks of one EMA PDD step at the preset's sizes."""
    cfg = make_config(preset, "ema")
    torch.manual_seed(0)
    s = RRDBNet(num_feat=cfg.num_feat, num_block=cfg.num_block, num_grow_ch=cfg.num_grow_ch, scale=cfg.scale).train()
    d = UNetDiscriminatorSN(3, cfg.disc_feat).train()
    vgg = VGG19Features(vgg_layers_needed(cfg.sup, cfg.pdd))
    n_l, n_u, p, hr = cfg.batch_l, cfg.batch_u, cfg.patch, cfg.patch * cfg.scale
    x_s = torch.rand(n_l + n_u, 3, p, p)
    # rows: name, net, input, mode; modes: "fwd" no grad, "train" fwd + weight and input grads
    # (input not a leaf that needs grad: weight grads and inner input grads), "input" fwd + input
    # grads only (frozen weights)
    return cfg, [
        ("S forward + backward (weights)", s, x_s, "train"),
        ("G forward (no grad)", s, x_s, "fwd"),
        ("VGG19 over S's outputs (fwd + input grads)", vgg, torch.rand(n_l + n_u, 3, hr, hr), "input"),
        ("VGG19 over the references (no grad)", vgg, torch.rand(2 * n_l + n_u, 3, hr, hr), "fwd"),
        ("D in the G step (fwd + input grads)", d, torch.rand(n_l + n_u, 3, hr, hr), "input"),
        ("D step (real + fake: fwd + weight grads)", d, torch.rand(2 * n_l, 3, hr, hr), "train"),
    ]


def run_part(net, x, mode, fmt) -> tuple[float, float]:
    """Seconds of (forward, backward) for one pass in memory format ``fmt``."""
    net = net.to(memory_format=fmt)
    x = x.contiguous(memory_format=fmt)
    if mode == "fwd":
        with torch.no_grad():
            return _time(lambda: net(x)), 0.0
    frozen = mode == "input"
    net.requires_grad_(not frozen)
    x = x.detach().requires_grad_(frozen)
    t0 = time.perf_counter()
    out = net(x)
    out = torch.cat([v.flatten() for v in out.values()]) if isinstance(out, dict) else out.flatten()
    t1 = time.perf_counter()
    out.sum().backward()
    t2 = time.perf_counter()
    net.zero_grad(set_to_none=True)
    return t1 - t0, t2 - t1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="scratch", choices=["tiny", "scratch", "cpu"])
    ap.add_argument("--repeat", type=int, default=3, help="best of N passes per part and layout")
    args = ap.parse_args()
    peak, how = theoretical_peak_gflops()
    print(f"{cpu_model()}; torch {torch.__version__}; {torch.get_num_threads()} thread(s); "
          f"{time.strftime('%Y-%m-%d %H:%M')}; load average {open('/proc/loadavg').read().split()[0]}")
    gemm = gemm_gflops()
    print(f"core peak, fp32: nominal {peak:.0f} GFLOP/s ({how}); a 1536^3 matrix product reaches {gemm:.0f} GFLOP/s\n")
    cfg, rows = parts(args.preset)
    print(f"{args.preset} preset: RRDBNet {cfg.num_feat}/{cfg.num_block}/{cfg.num_grow_ch}, LR {cfg.patch}, batch "
          f"{cfg.batch_l}+{cfg.batch_u}, D {cfg.disc_feat} features at HR {cfg.patch * cfg.scale}; best of {args.repeat}")
    print(f"{'part':44} {'layout':>8} {'GMAC':>6} {'fwd s':>7} {'bwd s':>7} {'fwd GF/s':>8} {'bwd GF/s':>8} {'% of GEMM':>9}")
    total = {"NCHW": 0.0, "NHWC": 0.0}
    for name, net, x, mode in rows:
        macs = forward_macs(net, x)
        # backward FLOPs: weight grads ~ fwd, input grads ~ fwd; the first layer's input grad
        # only when the input needs it; counted as 2x (train) or 1x (input) the forward
        bwd_macs = {"fwd": 0, "train": 2 * macs, "input": macs}[mode]
        for label, fmt in (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last)):
            run_part(net, x, mode, fmt)  # warm-up: oneDNN primitive creation, allocations
            best = [min(v) for v in zip(*(run_part(net, x, mode, fmt) for _ in range(args.repeat)))]
            f, b = best
            total[label] += f + b
            rate_f = 2 * macs / f / 1e9
            rate_b = 2 * bwd_macs / b / 1e9 if b else float("nan")
            overall = 2 * (macs + bwd_macs) / (f + b) / 1e9
            print(f"{name:44} {label:>8} {macs / 1e9:6.2f} {f:7.3f} {b:7.3f} {rate_f:8.1f} {rate_b:8.1f} {overall / gemm:9.0%}")
    print(f"\nsum of the parts: NCHW {total['NCHW']:.2f} s, NHWC {total['NHWC']:.2f} s "
          f"(the step adds loss maths, Adam, EMA, data: a few per cent, benchmarks/train_step.py)")


if __name__ == "__main__":
    main()
