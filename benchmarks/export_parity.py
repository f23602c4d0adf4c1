"""RealESRGAN_x4plus through pdd's exporters: ONNX (onnxruntime) and ncnn (pnnx, the ncnn runtime)
against PyTorch on one 64x64 photo crop, with the export seconds. Once, not in make test.

    python benchmarks/export_parity.py [--size 64] [--threads 1] [--keep DIR]

The weights are the offline copy (pdd.weights.load_rrdbnet("RealESRGAN_x4plus")). The
exporters' own check runs at an odd size; this one runs on a real photo crop (skimage's
astronaut), the same input fed to all three runtimes. Differences are max |export - torch|
over the 256x256x3 output in [0, 1] units; the ncnn file stores fp16 weights like the
official Real-ESRGAN ncnn models.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="LR crop side in px")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", help="write the exports here instead of a temporary folder")
    args = ap.parse_args()

    import numpy as np
    import skimage.data
    import torch

    from pdd.config import cpu_model
    from pdd.export import run_ncnn, run_onnx
    from pdd.sr_models import export_formats, load_upscaler

    torch.set_num_threads(args.threads)
    model, info = load_upscaler("RealESRGAN_x4plus")
    crop = skimage.data.astronaut()[100:100 + args.size, 150:150 + args.size].astype(np.float32) / 255
    x = np.ascontiguousarray(crop.transpose(2, 0, 1)[None])
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep or tmp)
        t0 = time.perf_counter()
        res = export_formats(model, info, out, formats=("onnx", "ncnn"))
        total = time.perf_counter() - t0
        print(f"CPU: {cpu_model()}; torch {torch.__version__}, {args.threads} thread(s); "
              f"RealESRGAN_x4plus, LR crop {args.size}x{args.size}")
        print(f"export_formats(onnx, ncnn): {total:.1f} s in all (including each format's own check)")
        for fmt, e in res.items():
            if "unavailable" in e:
                print(f"{fmt:5s} unavailable: {e['unavailable']}")
                continue
            t0 = time.perf_counter()
            y = run_onnx(out / e["path"], x) if fmt == "onnx" else run_ncnn(out / e["path"], out / e["bin"], x,
                                                                             threads=args.threads)
            run_s = time.perf_counter() - t0
            d = np.abs(y - ref)
            # what a user sees: both outputs clipped and quantised to 8 bits
            q = np.abs(np.round(np.clip(y, 0, 1) * 255) - np.round(np.clip(ref, 0, 1) * 255))
            print(f"{fmt:5s} export {e['seconds']:6.1f} s; max abs diff vs torch {d.max():.3g} (mean {d.mean():.2g}); "
                  f"8-bit: max {int(q.max())} levels, {100 * (q > 0).mean():.2f} % of values differ; "
                  f"export's own check {e['max_abs_diff']:.3g} on {e['checked_on']}; run {run_s:.2f} s")


if __name__ == "__main__":
    main()
