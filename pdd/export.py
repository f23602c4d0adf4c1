"""Your upscaler in the files other apps load: ONNX, and an ncnn pair for upscayl and friends.

    python -m pdd.export runs/mine                         # runs/mine/model.onnx, runs/mine/models/mine-x4.*
    python -m pdd.export 4x_foo.safetensors -o exported/ --formats onnx,ncnn,pth,safetensors

MODEL is a pdd.adapt RUN folder, a .pth/.safetensors upscaler or RealESRGAN_x4plus (anything
`pdd.sr_models.load_upscaler` reads). The output folder defaults to the RUN folder itself
(its model.json gets a "formats" section) or to ./<name>-export for a file.

- model.onnx: opset 17, input "input" and output "output", NCHW float32 RGB in [0, 1], height
  and width dynamic; written by torch's TorchScript exporter (torch.onnx.export(dynamo=False)),
  which needs only the `onnx` package (the dynamo exporter would also need onnxscript).
- models/<name>-x<scale>.param + .bin: ncnn, weights stored as fp16 like the official
  Real-ESRGAN ncnn models. An x4 RRDBNet is written directly in the official
  realesrgan-x4plus.param's form (`pdd.weights.rrdbnet_ncnn`; pnnx runs out of memory on 23
  blocks); other architectures are converted by pnnx (torch.jit.trace, then pnnx's converter
  binary). The blobs are named "data" (input) and "output": the names realesrgan-ncnn-vulkan
  and upscayl-bin ask for. The folder is called "models" because both refuse a model folder
  (-m) whose path does not contain "models"; the file name carries the scale ("-x4")
  because both read the scale from the name (x1/1x, x2/2x, x3/3x, x4/4x, first match wins),
  and any other "x<digit>" in the name is broken up so that it cannot be mistaken for it.

Every file is written under a temporary name, run once in its own runtime (onnxruntime; the
`ncnn` Python package) on an image of odd size next to PyTorch, and only then renamed into
place: a failed or mismatching export leaves what was there before. A format that cannot
hold the model gets a reason instead of a file, never a crash.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if __name__ == "__main__":  # a command line: PyTorch reads PYTORCH_ENABLE_MPS_FALLBACK once, as it loads
    from pdd.devices import before_torch

    before_torch()

import torch

from . import cli
from .sr_models import (  # noqa: F401 -- the writers and runtimes live beside the loader; re-exported here
    EXPORT_FORMATS, NCNN_DIR, NCNN_INPUT, NCNN_OUTPUT, ONNX_INPUT, ONNX_OPSET, ONNX_OUTPUT, ExportUnavailable,
    app_model_name, export_formats, load_upscaler, rename_ncnn_blobs, run_ncnn, run_onnx, write_ncnn, write_onnx,
)


# ------------------------------------------------------------------------------ command line


def _update_model_json(out_dir: Path, formats: dict) -> bool:
    """Merge `formats` into out_dir/model.json's "formats" section if out_dir is a finished run."""
    path = out_dir / "model.json"
    if not path.is_file():
        return False
    meta = json.loads(path.read_text())
    meta.setdefault("formats", {}).update(formats)
    tmp = path.with_name(f".model.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, path)
    return True


def describe(formats: dict, out_dir: Path) -> str:
    """One line per format: where it went and what loads it, or why it is missing."""
    lines = []
    for fmt, entry in formats.items():
        if "unavailable" in entry:
            lines.append(f"  {fmt:12s} not written: {entry['unavailable']}")
            continue
        path = entry["path"] + (f" + {entry['bin']}" if "bin" in entry else "")
        lines.append(f"  {fmt:12s} {out_dir / path}")
        if entry.get("loads_in"):
            lines.append(f"  {'':12s} loads in: {'; '.join(entry['loads_in'])}")
        for app, why in entry.get("not_loadable_in", {}).items():
            lines.append(f"  {'':12s} NOT loadable in {app}: {why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pdd.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", metavar="MODEL", help="a pdd.adapt RUN folder, a .pth/.safetensors upscaler, "
                                                   "or RealESRGAN_x4plus")
    ap.add_argument("-o", "--out", help="output folder (default: the RUN folder, or ./<name>-export)")
    ap.add_argument("--formats", default="onnx,ncnn",
                    help=f"comma-separated, from {','.join(EXPORT_FORMATS)} (default: onnx,ncnn)")
    ap.add_argument("--name", help="model name in the apps (default: the RUN folder's or file's name); "
                                   "the ncnn files are models/<name>-x<scale>.param/.bin")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    cli.add_debug_flag(ap)
    args = ap.parse_args(argv)
    formats = [f.strip().lower() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in EXPORT_FORMATS]
    if bad or not formats:
        ap.error(f"--formats: unknown {bad or 'empty list'}; choose from {','.join(EXPORT_FORMATS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    src = Path(args.model).expanduser()
    model, info = load_upscaler(args.model)  # WeightsError (a ValueError) for a missing or bad file
    name = args.name or info.name
    out_dir = Path(args.out).expanduser() if args.out else (src if src.is_dir() else Path(f"{name}-export"))
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir}: exists and is not a folder")
    print(f"model: {info.name} ({info.architecture}, x{info.scale}); writing {','.join(formats)} to {out_dir}",
          file=sys.stderr)
    result = export_formats(model, info, out_dir, formats=formats, name=name)
    print(describe(result, out_dir), file=sys.stderr)
    if _update_model_json(out_dir, result):
        print(f"  {out_dir / 'model.json'}: formats section updated", file=sys.stderr)
    if "ncnn" in result and "unavailable" not in result["ncnn"]:
        n = result["ncnn"]
        print(f"upscayl: Settings -> Custom models folder -> select {out_dir / NCNN_DIR}; pick {n['name']}\n"
              f"realesrgan-ncnn-vulkan -i in.png -o out.png -m {out_dir / NCNN_DIR} -n {n['name']} -s {info.scale}",
              file=sys.stderr)
    return 1 if any("unavailable" in e for e in result.values()) else 0


if __name__ == "__main__":
    sys.exit(cli.run(main, "python -m pdd.export"))
