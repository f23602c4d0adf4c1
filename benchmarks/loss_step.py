"""Time one generator-objective forward+backward: fused (pdd.losses.generator_objective)
versus unfused (separate VGG calls per image group, as the official PerceptualLoss +
DistillationLoss do: VGG(S(X^L)) twice, VGG(Y^L), VGG(S(X^U)), VGG(G(X^U)), VGG(G(X^L))).

The S predictions are leaf tensors that need gradients, so only the objective is timed
(the generator's own forward/backward is identical in both routes). VGG weights are
random: the cost does not depend on their values.

    python benchmarks/loss_step.py            # cpu preset sizes and the paper's
    python benchmarks/loss_step.py --bf16     # with bf16 autocast + channels_last
"""
import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from pdd import losses as L
from pdd.archs import VGG19Features, UNetDiscriminatorSN

SIZES = {"cpu": dict(lr=32, batch=2), "paper": dict(lr=48, batch=8)}


def unfused(vgg, s_l, s_u, y_l, g_l, g_u, disc, sup, pdd):  # noqa: PLR0913
    fs_l, fy = vgg(s_l), vgg(y_l)
    terms = [sup.wavelet * L.wavelet_loss(s_l, y_l, sup.band_weights),
             sup.perceptual * L.perceptual_loss(fs_l, fy, sup.perceptual_layers)]
    fs_u, fs_l2 = vgg(s_u), vgg(s_l)
    with torch.no_grad():
        fg_u, fg_l = vgg(g_u), vgg(g_l)
    terms += [pdd.lambda_intra * L.r_intra(fs_u, fs_l2, fg_u, fg_l, pdd.intra_layers),
              pdd.lambda_inter * L.r_inter(fs_u, fs_l2, fg_u, fg_l, pdd.inter_layers),
              sup.gan * L.gan_loss_g(disc(torch.cat([s_l, s_u]))) if disc is not None else 0.0]
    return sum(terms)


def bench(fns, reps):
    """Median seconds per call of each function, calls interleaved (ABAB...) so that drift in
    the machine's state (allocator, page cache, turbo) hits every route alike."""
    for fn in fns:
        fn()  # warm-up: allocator and oneDNN primitive caches
    times = [[] for _ in fns]
    for _ in range(reps):
        for t, fn in zip(times, fns):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def flops(fn):
    """Forward+backward FLOPs counted by torch.utils.flop_counter: a figure that does not flake."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5, help="timed calls per route (median reported)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast + channels_last")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = ap.parse_args()
    dev = torch.device(args.device)
    sup, pdd = L.SupervisedWeights(), L.PDDWeights()
    vgg = VGG19Features(L.vgg_layers_needed(sup, pdd)).to(dev)
    # D is frozen during the generator step, as in the trainer and the official code
    # (``p.requires_grad = False``): backward then computes input gradients only.
    disc = UNetDiscriminatorSN(3).to(dev).requires_grad_(False)
    fmt = torch.channels_last if args.bf16 else torch.contiguous_format
    vgg, disc = vgg.to(memory_format=fmt), disc.to(memory_format=fmt)
    print(f"device={dev} threads={torch.get_num_threads()} bf16+channels_last={args.bf16}")
    print("Full objective (VGG terms + the GAN term through D), and the VGG terms alone (D's cost is the same")
    print("in both routes, so it dilutes the ratio):")
    print(f"{'size':6} {'LR':>4} {'batch':>7} {'fused s':>9} {'unfused s':>10} {'ratio':>6} "
          f"{'no-D fused':>11} {'no-D unfused':>13} {'ratio':>6}")
    counts = []
    for name in args.sizes:
        n, p = SIZES[name]["batch"], SIZES[name]["lr"] * 4
        g = torch.Generator().manual_seed(0)
        mk = lambda: torch.rand(n, 3, p, p, generator=g).to(dev).contiguous(memory_format=fmt)  # noqa: E731
        y_l, g_l, g_u = mk(), mk(), mk()
        s_l, s_u = mk().requires_grad_(True), mk().requires_grad_(True)

        def step(kind, d):
            def run():
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.bf16):
                    if kind == "fused":
                        loss = L.generator_objective(vgg, s_l, s_u, y_l, g_l, g_u, d, sup, pdd)["total"]
                    else:
                        loss = unfused(vgg, s_l, s_u, y_l, g_l, g_u, d, sup, pdd)
                loss.backward()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
            return run

        routes = [step("fused", disc), step("unfused", disc), step("fused", None), step("unfused", None)]
        tf, tu, vf, vu = bench(routes, args.reps)
        print(f"{name:6} {p // 4:>4} {n:>3}+{n:<3} {tf:>9.3f} {tu:>10.3f} {tu / tf:>5.2f}x "
              f"{vf:>11.3f} {vu:>13.3f} {vu / vf:>5.2f}x", flush=True)
        counts.append((name, *[flops(r) for r in routes]))
    print("\nGFLOPs per objective forward+backward (torch.utils.flop_counter), and what they bound:")
    print(f"{'size':6} {'fused':>8} {'unfused':>8} {'ratio':>6} {'VGG fused':>10} {'VGG unfused':>12} "
          f"{'ratio':>6} {'D share of fused':>17}")
    for name, ff, fu, gf, gu in counts:
        print(f"{name:6} {ff / 1e9:>8.1f} {fu / 1e9:>8.1f} {fu / ff:>5.2f}x {gf / 1e9:>10.1f} {gu / 1e9:>12.1f} "
              f"{gu / gf:>5.2f}x {1 - gf / ff:>16.0%}")
    print("D's pass on cat(S(X^L), S(X^U)) is one batch in both routes (the official code concatenates")
    print("too), so it is common cost and dilutes the ratio. Measured time can beat the FLOP ratio a little:")
    print("one VGG batch of 2n images runs more efficiently than two of n.")


if __name__ == "__main__":
    main()
