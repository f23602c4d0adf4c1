"""LR megapixels per second of pdd.upscale's backends vs the ncnn runtime, whole photos, default tile.

RealESRGAN_x4plus (the offline copy: converted from the ncnn files, so every runtime runs the
same weights) on a photo larger than one tile (default 400x300 LR from skimage's astronaut), cut
into 256 px LR tiles with 10 px pads and cross-faded by `pdd.imageops.run_tiled`: every backend
is a callable handed to the same tiling code, so all see identical tiles. Each configuration
runs in its own process, so its peak memory (max RSS, minus the same process's RSS before the
first forward) is its own:

  torch fp32            pdd.upscale's torch path (eager fp32)
  torch fp32+CL         the same with channels_last (does it help without bf16?)
  torch bf16+CL         bfloat16 autocast + channels_last (pays off on AMX / AVX512-BF16 only)
  onnxruntime           pdd.backends.OnnxBackend: the cached ONNX export, CPU provider, graph
                        optimisation ORT_ENABLE_ALL, intra-op threads = --threads
  ncnn                  the ncnn runtime (pip `ncnn`, default options) on the same tiles
  ncnn whole            the ncnn runtime on the whole photo (no tiles), as realesrgan-ncnn would
                        with -t 0
  openvino              OpenVINO's CPU plugin on the same ONNX file, f32 precision (if installed)

Reported: seconds, LR MP/s, ratio to `ncnn` (the tiled one), peak MB, one-off setup seconds
(export, session creation; not in the timing) and max |difference| from torch fp32 in 8-bit
levels (and the share of 8-bit output values that differ after rounding). The warm-up is one
forward of a 32x32 image (kernel selection, allocations), not the whole photo, so that a run of
all configurations fits in a sitting; --repeat N takes the best of N whole-photo runs.

    python benchmarks/upscale.py --threads 2
    python benchmarks/upscale.py --threads 1 --configs onnxruntime ncnn
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from pdd.config import cpu_has_native_bf16, cpu_model

CONFIGS = ("torch fp32", "torch fp32+CL", "torch bf16+CL", "onnxruntime", "ncnn", "ncnn whole", "openvino")


def photo(width: int, height: int):
    import numpy as np
    import skimage.data

    img = skimage.data.astronaut()  # 512x512
    if width > img.shape[1] or height > img.shape[0]:
        img = np.tile(img, (-(-height // 512), -(-width // 512), 1))
    y0, x0 = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
    return np.ascontiguousarray(img[y0:y0 + height, x0:x0 + width]).astype(np.float32) / 255.0


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class OpenVinoBackend:
    """The ONNX export compiled by OpenVINO's CPU plugin (f32, dynamic height and width)."""

    def __init__(self, onnx_path, threads):
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(onnx_path), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
        self.name = "openvino"

    def __call__(self, x):
        import torch

        return torch.from_numpy(self.compiled(x.numpy())[0].copy())


def make(config: str, threads: int):
    """(backend callable for run_tiled, tile override or None)."""
    import torch

    from pdd import backends as B
    from pdd.sr_models import load_upscaler

    model, info = load_upscaler("RealESRGAN_x4plus")
    model = model.eval().requires_grad_(False)
    if config.startswith("torch"):
        if config == "torch fp32+CL":
            model = model.to(memory_format=torch.channels_last)

            def cl(x):
                with torch.no_grad():
                    return model(x.contiguous(memory_format=torch.channels_last)).float()
            cl.name = config
            return cl, None
        return B.TorchBackend(model, bf16="bf16" in config), None
    if config == "onnxruntime":
        b, notes = B.make_backend(model, info, "onnxruntime", threads=threads, source="RealESRGAN_x4plus")
        assert b.name == "onnxruntime", notes
        return b, None
    if config == "openvino":
        b, _ = B.make_backend(model, info, "onnxruntime", threads=threads, source="RealESRGAN_x4plus")
        return OpenVinoBackend(b.path, threads), None
    param, binary = B.ncnn_pair("RealESRGAN_x4plus", info)
    return B.NcnnBackend(param, binary, threads), (0 if config == "ncnn whole" else None)


def run_one(config: str, width: int, height: int, tile: int, tile_pad: int, threads: int, repeat: int,
            out_npy: str) -> dict:
    import numpy as np
    import torch

    from pdd.imageops import n_tiles
    from pdd.upscale import upscale_image

    torch.set_num_threads(threads)
    img = photo(width, height)
    base = rss_mb()
    t0 = time.perf_counter()
    backend, tile_override = make(config, threads)
    setup = time.perf_counter() - t0
    t = tile if tile_override is None else tile_override
    upscale_image(backend, img[:32, :32], 4)  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = upscale_image(backend, img, 4, tile=t, tile_pad=tile_pad)
        times.append(time.perf_counter() - t0)
    sec = min(times)
    assert out.shape == (height * 4, width * 4, 3), out.shape
    np.save(out_npy, out)
    return {"config": config, "seconds": sec, "lr_mp_s": width * height / 1e6 / sec, "peak_mb": rss_mb() - base,
            "setup_s": setup, "tiles": n_tiles(height, width, t)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=400, help="LR width in px (a crop of skimage's astronaut)")
    ap.add_argument("--height", type=int, default=300, help="LR height in px")
    ap.add_argument("--tile", type=int, default=256, help="LR tile (pdd.upscale's default: 256)")
    ap.add_argument("--tile-pad", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1, help="whole-photo runs per process (best taken)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the configurations this many times, interleaved (A B C A B C), best taken: on a "
                         "shared machine the load drifts, and interleaving spreads it over all configurations")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS),
                    help="default: torch fp32, onnxruntime, ncnn; + torch bf16+CL on bf16 CPUs; "
                         "+ openvino if installed")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--out-npy", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.width, args.height, args.tile, args.tile_pad, args.threads,
                                 args.repeat, args.out_npy)))
        return
    import importlib.util

    import numpy as np
    import torch

    from pdd.backends import FP32_CPU_ORDER, auto_backend

    configs = args.configs or (["torch fp32"] + (["torch bf16+CL"] if cpu_has_native_bf16() else [])
                               + ["onnxruntime", "ncnn"]
                               + (["openvino"] if importlib.util.find_spec("openvino") else []))
    versions = {m: importlib.import_module(m).__version__ for m in ("onnxruntime", "ncnn", "openvino")
                if importlib.util.find_spec(m)}
    print(f"CPU: {cpu_model()}; {args.threads} threads; torch {torch.__version__}; "
          + "; ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"RealESRGAN_x4plus; LR {args.width}x{args.height}; tile {args.tile} pad {args.tile_pad}; "
          f"best of {args.repeat} x {args.rounds} rounds; load average at start {os.getloadavg()[0]:.2f}")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows, outs = [], {}
    tmp = tempfile.mkdtemp(prefix="pdd-bench-")
    for config in [c for _ in range(args.rounds) for c in configs]:
        if config == "torch fp32" and config in outs:
            continue  # the reference: once is enough (it is the slowest)
        npy = os.path.join(tmp, config.replace(" ", "_").replace("+", "") + ".npy")
        cmd = [sys.executable, __file__, "--one", config, "--width", str(args.width), "--height", str(args.height),
               "--tile", str(args.tile), "--tile-pad", str(args.tile_pad), "--threads", str(args.threads),
               "--repeat", str(args.repeat), "--out-npy", npy]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode:
            print(f"{config}: failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
            continue
        row = json.loads(r.stdout.strip().splitlines()[-1])
        rows = [x for x in rows if x["config"] != config or x["seconds"] <= row["seconds"]]
        if not any(x["config"] == config for x in rows):
            rows.append(row)
        outs[config] = np.load(npy)
        os.remove(npy)
        print(f"  done {config}: {row['seconds']:.1f} s (load average {os.getloadavg()[0]:.2f})", flush=True)
    rows.sort(key=lambda r: configs.index(r["config"]))
    ref_out = outs.get("torch fp32")
    ncnn = next((r for r in rows if r["config"] == "ncnn"), None)
    print(f"{'config':16s} {'tiles':>5s} {'seconds':>8s} {'LR MP/s':>8s} {'x ncnn':>7s} {'peak MB':>8s} "
          f"{'setup s':>8s} {'max|d| /255':>11s} {'8-bit differ':>12s}")
    for r in rows:
        rel = f"{r['lr_mp_s'] / ncnn['lr_mp_s']:.2f}" if ncnn else "-"
        if ref_out is not None:
            o = outs[r["config"]]
            d = f"{np.abs(o - ref_out).max() * 255:.4f}"
            q = f"{np.mean(np.round(o * 255) != np.round(ref_out * 255)):.2e}"
        else:
            d = q = "-"
        print(f"{r['config']:16s} {r['tiles']:5d} {r['seconds']:8.2f} {r['lr_mp_s']:8.4f} {rel:>7s} "
              f"{r['peak_mb']:8.0f} {r['setup_s']:8.1f} {d:>11s} {q:>12s}")
    present = ["torch"] + [b for b in ("onnxruntime", "openvino", "ncnn") if b in versions]
    choice = auto_backend("cpu", cpu_has_native_bf16(), True, present)
    label = {"torch-bf16": "torch bf16+CL", "torch": "torch fp32"}.get(choice, choice)
    row = next((r for r in rows if r["config"] == label), None)
    if row and ncnn:
        print(f"pdd.upscale --backend auto picks {choice} here (order on fp32-only CPUs: {', '.join(FP32_CPU_ORDER)}): "
              f"{row['lr_mp_s'] / ncnn['lr_mp_s']:.2f}x the ncnn runtime")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
