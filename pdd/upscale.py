"""Upscale photos with any upscaler: a pdd.adapt run, a .pth/.safetensors file, or RealESRGAN_x4plus.

    python -m pdd.upscale -i photos/ -o upscaled/ --model runs/mine --bf16

Flags follow Real-ESRGAN's inference_realesrgan.py (-i -o -n -s -t --tile-pad --suffix --ext).
A folder is walked recursively and its tree mirrored under -o. Photos are read upright (EXIF
orientation applied); 16-bit in gives 16-bit PNG out; an alpha channel is upscaled separately
(through the model as grey, like Real-ESRGAN, or bicubic) and put back. Existing outputs are
skipped unless --overwrite. Photos are cut into 256 px LR tiles by default (-t 0: whole
image); tiles overlap by 2 x tile-pad LR pixels and are cross-faded with linear weights over
the overlap, so no seam shows; only one tile's activations are in memory at a time (the
output canvas is the only full-size array).

--backend auto (default) runs the network with the fastest runtime present whose output stays
within 1/255 of torch fp32, as measured by benchmarks/upscale.py: on a CPU the ncnn runtime where
the model has an ncnn pair (any x4 RRDBNet gets one, written from its weights and cached), else
OpenVINO (if installed), else onnxruntime (the ONNX export is made once and cached), else torch;
torch on CUDA / MPS. --bf16 (torch in bf16 + channels_last) is several times faster on CPUs with
AMX / AVX512-BF16 but differs from fp32 by up to about 3/255, so it is never picked unasked. Every runtime gets the same tiles and is checked against torch fp32 (within half an
8-bit level) before use; one that is missing or fails gives way to the next, and finally to torch
fp32, with a one-line note (pdd/backends.py).
"""
from __future__ import annotations

import argparse
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
if __name__ == "__main__":  # a command line: PyTorch reads PYTORCH_ENABLE_MPS_FALLBACK once, as it loads
    from pdd.devices import before_torch

    before_torch()

import torch

from . import cli
from .backends import BACKENDS, TorchBackend, make_backend
from .devices import run_with_cpu_fallback
from .imageops import n_tiles, run_tiled, to_uint8
from .photos import PhotoError, list_photo_files, read_photo, to_float


# ------------------------------------------------------------------------------ the network on one image


def upscale_image(model, img: np.ndarray, scale: int, *, tile: int = 0, tile_pad: int = 10, bf16: bool = False,
                  multiple: int = 1, color_correct: bool = False, on_tile=None) -> np.ndarray:
    """HxWx3 float32 in [0, 1] (or uint8/uint16) -> (sH)x(sW)x3 float32, clamped to [0, 1].

    `model` is a torch module (run fp32, or bf16 autocast + channels_last with bf16=True) or a
    backend from `pdd.backends.make_backend` (bf16 is then the backend's business); `scale` is
    its scale, checked against its output. Tiles cross-fade (`pdd.imageops.run_tiled`)."""
    a = to_float(img) if img.dtype != np.float32 else img
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]
    backend = TorchBackend(model, bf16) if isinstance(model, torch.nn.Module) else model
    sr = run_tiled(backend, x, tile, tile_pad, multiple=multiple, on_tile=on_tile)
    if sr.shape[-2:] != (x.shape[-2] * scale, x.shape[-1] * scale):
        raise ValueError(f"the model gave {tuple(sr.shape[-2:])} for {tuple(x.shape[-2:])} LR, not x{scale}")
    if color_correct:
        from .losses import color_correct as cc
        sr = cc(sr.double(), x.double()).float()
    return sr.clamp(0, 1)[0].permute(1, 2, 0).numpy()


# ------------------------------------------------------------------------------ files


def _png(path: Path, a: np.ndarray) -> None:
    """PNG of an HxWxC uint8/uint16 array (C = 3 RGB, 4 RGBA). Written here because Pillow
    cannot write 16-bit colour PNG; filter type 0 rows, zlib level 6."""
    h, w, c = a.shape
    depth = 16 if a.dtype == np.uint16 else 8
    rows = a.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    colour = {3: 2, 4: 6}[c]
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def write_output(path: Path, rgb: np.ndarray, alpha: np.ndarray | None, bits: int) -> None:
    """Atomically write float [0,1] RGB (+ alpha) as PNG (8/16-bit) or JPEG (8-bit, no alpha)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    img = np.concatenate([rgb, alpha[..., None]], axis=2) if alpha is not None else rgb
    try:
        if path.suffix.lower() in (".jpg", ".jpeg"):
            Image.fromarray(to_uint8(rgb)).save(tmp, format="JPEG", quality=95)
        else:
            _png(tmp, np.round(img * 65535).astype(np.uint16) if bits == 16 else to_uint8(img))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Lanczos resize of float HxW[xC] (Real-ESRGAN applies --outscale with cv2's Lanczos)."""
    from PIL import Image

    chans = a[..., None] if a.ndim == 2 else a
    out = np.stack([np.asarray(Image.fromarray(chans[..., k].astype(np.float32), "F").resize((w, h), Image.LANCZOS))
                    for k in range(chans.shape[2])], axis=2)
    out = np.clip(out, 0, 1)
    return out[..., 0] if a.ndim == 2 else out


def output_path(src: Path, in_root: Path | None, out_dir: Path, suffix: str, ext: str, has_alpha: bool) -> Path:
    rel = src.relative_to(in_root).parent if in_root is not None else Path()
    if ext == "auto":
        ext = "png" if has_alpha or src.suffix.lower() not in (".jpg", ".jpeg") else "jpg"
    if ext == "jpg" and has_alpha:
        ext = "png"  # JPEG has no alpha (Real-ESRGAN does the same)
    stem = f"{src.stem}_{suffix}" if suffix else src.stem
    return out_dir / rel / f"{stem}.{ext}"


def upscale_file(model, info, src: Path, dst: Path, *, photo=None, outscale: float | None = None, tile: int = 0,
                 tile_pad: int = 10, bf16: bool = False, color_correct: bool = False,
                 alpha_upsampler: str = "model", on_tile=None) -> dict:
    photo = photo if photo is not None else read_photo(src)
    scale, mult = info.scale, max(1, info.size_multiple)
    kw = dict(tile=tile, tile_pad=tile_pad, bf16=bf16 and info.supports_bf16, multiple=mult, on_tile=on_tile)
    rgb = upscale_image(model, photo.pixels, scale, color_correct=color_correct, **kw)
    alpha = None
    if photo.alpha is not None:
        if alpha_upsampler == "model":  # grey through the network, as Real-ESRGAN's default
            a3 = np.repeat(to_float(photo.alpha)[..., None], 3, axis=2)
            alpha = upscale_image(model, a3, scale, **kw).mean(axis=2)
        else:
            alpha = _resize(to_float(photo.alpha), photo.alpha.shape[0] * scale, photo.alpha.shape[1] * scale)
    if outscale and abs(outscale - scale) > 1e-9:
        h, w = photo.pixels.shape[:2]
        oh, ow = int(round(h * outscale)), int(round(w * outscale))
        rgb = _resize(rgb, oh, ow)
        alpha = None if alpha is None else _resize(alpha, oh, ow)
    bits = photo.bits if dst.suffix.lower() == ".png" else 8
    write_output(dst, rgb, alpha, bits)
    return {"src": str(src), "dst": str(dst), "bits": bits, "alpha": alpha is not None, "notes": photo.notes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pdd.upscale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-i", "--input", required=True, help="a photo or a folder (recursive)")
    ap.add_argument("-o", "--output", default="results", help="output folder (tree mirrored)")
    ap.add_argument("-n", "--model", "--model_name", "--model-path", "--model_path", dest="model",
                    default="RealESRGAN_x4plus", help="RealESRGAN_x4plus, a .pth/.safetensors file, or a pdd.adapt RUN")
    ap.add_argument("-s", "--outscale", type=float, default=None, help="final scale (default: the model's)")
    # Real-ESRGAN's default is 0 (whole image). Here 256: on a 412x412 LR photo tiling was faster
    # than the whole image (bf16 -19 %, fp32 -13 %: smaller activations stay in cache) and
    # peak memory fell by about 45 % (benchmarks/upscale.py, benchmarks/README.md).
    ap.add_argument("-t", "--tile", type=int, default=256, help="tile size in LR px (default 256), 0 = whole image")
    ap.add_argument("--tile-pad", "--tile_pad", dest="tile_pad", type=int, default=10,
                    help="context per tile side in LR px; tiles cross-fade over 2x this")
    ap.add_argument("--color-correct", action="store_true", help="match SR colour statistics to the input")
    ap.add_argument("--bf16", action="store_true", help="torch with bfloat16 autocast + channels_last: several times faster "
                    "on AMX/AVX512-BF16 CPUs, output within about 3/255 of fp32 (auto never picks it)")
    ap.add_argument("--backend", default="auto", choices=list(BACKENDS),
                    help="auto (default): the fastest present here, measured (pdd/backends.py); torch; onnxruntime "
                         "(exported once, cached); openvino (if installed); ncnn (where the model has an ncnn pair)")
    ap.add_argument("--suffix", default="out", help="output name = <name>_<suffix>.<ext> ('' for none)")
    ap.add_argument("--ext", default="auto", choices=["auto", "png", "jpg"])
    ap.add_argument("--alpha-upsampler", "--alpha_upsampler", dest="alpha_upsampler", default="model",
                    choices=["model", "bicubic"])
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--device", default="auto")
    cli.add_debug_flag(ap)
    args = ap.parse_args(argv)
    from tqdm.auto import tqdm

    from .config import resolve_device
    from .sr_models import load_upscaler

    if args.threads:
        torch.set_num_threads(args.threads)
    src = Path(args.input).expanduser()
    if src.is_dir():
        files, system, other = list_photo_files(src)
        in_root = src
    elif src.is_file():
        files, in_root = [src], None
    else:
        ap.error(f"{src}: no such file or folder")
    model, info = load_upscaler(args.model)
    device = resolve_device(args.device)
    model = model.to(device).eval().requires_grad_(False)
    if args.bf16 and args.backend not in ("auto", "torch"):
        ap.error(f"--bf16 is a torch setting; it cannot be combined with --backend {args.backend}")
    backend, notes = make_backend(model, info, args.backend, device=device, threads=args.threads,
                                  source=args.model, bf16=args.bf16)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"model: {info.name} ({info.architecture}, x{info.scale}); {len(files)} photos; tile {args.tile or 'none'}; "
          f"backend {backend.name} ({device.type})", file=sys.stderr)
    done, skipped, failed = 0, 0, []
    t0 = time.time()
    for f in tqdm(files, desc="photos", unit="photo"):
        try:
            # a JPEG never has alpha: its output name is known without decoding it
            if f.suffix.lower() in (".jpg", ".jpeg") and args.ext != "png":
                dst = output_path(f, in_root, Path(args.output), args.suffix, args.ext, False)
                if dst.exists() and not args.overwrite:
                    skipped += 1
                    continue
            photo = read_photo(f)
            dst = output_path(f, in_root, Path(args.output), args.suffix, args.ext, photo.alpha is not None)
            if dst.exists() and not args.overwrite:
                skipped += 1
                continue
            bar = tqdm(total=n_tiles(*photo.pixels.shape[:2], args.tile), desc=f.name, unit="tile", leave=False)
            # on an Apple GPU, an operation MPS lacks (fallback off) reruns this photo on the CPU, noted once
            run_with_cpu_fallback(upscale_file, backend, info, f, dst, photo=photo, outscale=args.outscale,
                                  tile=args.tile, tile_pad=args.tile_pad, bf16=args.bf16,
                                  color_correct=args.color_correct, alpha_upsampler=args.alpha_upsampler,
                                  on_tile=bar.update, modules=[model], what="upscaling")
            bar.close()
            done += 1
        except (PhotoError, RuntimeError, ValueError, OSError) as e:
            failed.append((f, f"{type(e).__name__}: {e}"))
    print(f"{done} upscaled, {skipped} already there (use --overwrite), {len(failed)} failed "
          f"in {time.time() - t0:.1f} s -> {args.output}", file=sys.stderr)
    for f, why in failed:
        print(f"  failed {f}: {why}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m pdd.upscale"))
