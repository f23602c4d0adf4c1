"""How the Table 1 premise depends on the target's noise: the scratch preset's pretrained
generalist and specialist (and RealESRGAN_x4plus) on the Synth-ISO test photos degraded with
the domain's recipe at scaled noise strengths, specialist - generalist PSNR (Y) with a
bootstrap CI over test tiles. This is how Synth-ISO's strength was chosen (on the premise
alone, never on a PDD result); it prints figures, it asserts nothing.

    .venv/bin/python benchmarks/premise_noise_sweep.py --scales 1 2 3 [--seed 0] [--mosaic]

Needs the pretrained pair of the seed (notebook 02 or `pdd.experiments.starting_models`).
"""
from __future__ import annotations

import argparse
import zlib
from dataclasses import replace

import torch

from pdd import data, degradations as deg, evaluate, experiments, stats, weights
from pdd.config import SCRATCH_ARCH


def test_pairs(recipe: deg.IsoRecipe, tile: int = 256) -> list:
    photos = data.builtin_photos()
    pairs = []
    for p in data.BUILTIN_SPLIT["test"]:
        hr = photos[p]
        lr = deg.domain_iso(hr, zlib.crc32(f"Synth-ISO/{p}".encode()), recipe)  # the domain's own seeds
        for j, (y, x) in enumerate(data.tile_positions(*hr.shape[:2], tile)):
            s = recipe.scale
            pairs.append((lr[y // s:(y + tile) // s, x // s:(x + tile) // s], hr[y:y + tile, x:x + tile], f"{p}_t{j}"))
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scales", type=float, nargs="+", default=[1 / 3, 2 / 3, 1.0], help="noise std x this (1 = the domain)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs-dir", default="runs")
    ap.add_argument("--realesrgan", action="store_true", help="also RealESRGAN_x4plus (slower)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    nf, nb, gc = SCRATCH_ARCH
    models = {role: weights.load_rrdbnet(fn("scratch", "Synth-ISO", a.runs_dir, a.seed), num_feat=nf, num_block=nb, num_grow_ch=gc)
              for role, fn in (("generalist", experiments.generalist_file), ("specialist", experiments.specialist_file))}
    if a.realesrgan:
        models["RealESRGAN_x4plus"] = weights.load_rrdbnet("RealESRGAN_x4plus")
    metrics = evaluate.create_metrics(("psnr",))
    base = deg.IsoRecipe()
    print(f"{open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}; seed {a.seed}")
    for k in a.scales:
        recipe = replace(base, shot_gain=base.shot_gain * k * k, read_sigma=base.read_sigma * k)
        pairs = test_pairs(recipe)
        psnr = {r: evaluate.evaluate(m, pairs, metrics, progress=False)["psnr"].to_numpy() for r, m in models.items()}
        mean, lo, hi = stats.bootstrap_ci(psnr["specialist"] - psnr["generalist"])
        extra = "".join(f", {r} {v.mean():.2f}" for r, v in psnr.items() if r not in ("generalist", "specialist"))
        print(f"noise x{k:.2f}: generalist {psnr['generalist'].mean():.2f}, specialist {psnr['specialist'].mean():.2f}{extra}; "
              f"specialist - generalist {mean:+.2f} [{lo:+.2f}, {hi:+.2f}] dB", flush=True)


if __name__ == "__main__":
    main()
