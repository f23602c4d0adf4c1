"""LR megapixels per second of pdd.upscale's path vs the ncnn runtime, same model, same photo.

RealESRGAN_x4plus (the offline copy: converted from the ncnn files, so both runtimes run the
same weights) on a crop of a packaged photo. Each configuration runs in its own process so
its peak memory (max RSS, minus the same process's RSS before the first forward) is its own:

  torch fp32            pdd.upscale.upscale_image, whole image
  torch fp32 tiled      the same, --tile / --tile-pad, cross-faded tiles
  torch bf16+CL         bfloat16 autocast + channels_last (pays off on AMX / AVX512-BF16)
  torch bf16+CL tiled
  ncnn                  the ncnn runtime (pip `ncnn`) with its default options, whole image

    python benchmarks/upscale.py --size 96 --threads 2
    python benchmarks/upscale.py --size 192 --tile 64 --threads 1 --repeat 1
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from pdd.config import cpu_model

CONFIGS = ("torch fp32", "torch fp32 tiled", "torch bf16+CL", "torch bf16+CL tiled", "ncnn")


def photo(size: int):
    import numpy as np
    import skimage.data

    img = skimage.data.astronaut()  # 512x512
    h = min(size, img.shape[0])
    return np.ascontiguousarray(img[100:100 + h, 100:100 + h]).astype(np.float32) / 255.0


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(config: str, size: int, tile: int, tile_pad: int, threads: int, repeat: int) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    img = photo(size)
    if config == "ncnn":
        import ncnn

        from pdd.weights import parse_ncnn_param, realesrgan_ncnn_files

        param, binary = realesrgan_ncnn_files()
        tmp = tempfile.mkdtemp()
        open(os.path.join(tmp, "m.param"), "w").write(param)
        open(os.path.join(tmp, "m.bin"), "wb").write(binary)
        layers = parse_ncnn_param(param)
        in_blob = next(layer.outputs[0] for layer in layers if layer.type == "Input")
        net = ncnn.Net()
        net.opt.use_vulkan_compute = False
        net.opt.num_threads = threads
        net.load_param(os.path.join(tmp, "m.param"))
        net.load_model(os.path.join(tmp, "m.bin"))
        x = np.ascontiguousarray(img.transpose(2, 0, 1))

        def forward():
            ex = net.create_extractor()
            ex.input(in_blob, ncnn.Mat(x))
            return np.array(ex.extract(layers[-1].outputs[0])[1])
    else:
        from pdd.upscale import upscale_image
        from pdd.weights import load_rrdbnet

        model = load_rrdbnet("RealESRGAN_x4plus").eval().requires_grad_(False)
        bf16 = "bf16" in config
        if bf16:
            model = model.to(memory_format=torch.channels_last)
        t = tile if "tiled" in config else 0

        def forward():
            return upscale_image(model, img, 4, tile=t, tile_pad=tile_pad, bf16=bf16)
    base = rss_mb()
    forward()  # warm-up: allocations, oneDNN kernel selection
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = forward()
        times.append(time.perf_counter() - t0)
    sec = min(times)
    assert out.size == img.size * 16, out.shape
    return {"config": config, "seconds": sec, "lr_mp_s": img.shape[0] * img.shape[1] / 1e6 / sec,
            "peak_mb": rss_mb() - base}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=96, help="LR side in px (square crop)")
    ap.add_argument("--tile", type=int, default=48)
    ap.add_argument("--tile-pad", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.size, args.tile, args.tile_pad, args.threads, args.repeat)))
        return
    import torch

    print(f"CPU: {cpu_model()}; {args.threads} threads; torch {torch.__version__}; RealESRGAN_x4plus; "
          f"LR {args.size}x{args.size}; tile {args.tile} pad {args.tile_pad}; best of {args.repeat}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    for config in args.configs:
        cmd = [sys.executable, __file__, "--one", config, "--size", str(args.size), "--tile", str(args.tile),
               "--tile-pad", str(args.tile_pad), "--threads", str(args.threads), "--repeat", str(args.repeat)]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode:
            print(f"{config}: failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            continue
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    ncnn = next((r for r in rows if r["config"] == "ncnn"), None)
    print(f"{'config':22s} {'seconds':>8s} {'LR MP/s':>9s} {'x ncnn':>7s} {'peak MB':>8s}")
    for r in rows:
        rel = f"{r['lr_mp_s'] / ncnn['lr_mp_s']:.2f}" if ncnn else "-"
        print(f"{r['config']:22s} {r['seconds']:8.3f} {r['lr_mp_s']:9.4f} {rel:>7s} {r['peak_mb']:8.0f}")
    by = {r["config"]: r for r in rows}
    for prec in ("fp32", "bf16+CL"):
        a, b = by.get(f"torch {prec}"), by.get(f"torch {prec} tiled")
        if a and b:
            print(f"tiling cost ({prec}): {b['seconds'] / a['seconds'] - 1:+.1%}")


if __name__ == "__main__":
    main()
