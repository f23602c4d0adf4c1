"""Build here what benchmarks/gpu_check.py needs on the GPU machine, and unpack it there.

The GPU machine runs a command in a copy of the working tree (tracked files and untracked ones
git does not ignore) plus at most 8 carried ignored paths, 64 MiB in all; it has its own Python
3.12 and torch but maybe not our other libraries, and no internet. Both weights together do not
fit in one call beside the libraries, so the carry is split in two parts, one per call
(benchmarks/GPU.md has the exact commands):

  .gpu_carry/a/  site.tar.xz (pyiqa, kornia, scikit-image and their small dependencies, cp312
                 wheels unpacked) + RealESRGAN_x4plus.pddw (the offline ncnn copy: fp16 weights,
                 fp32 biases, lossless)
  .gpu_carry/b/  site.tar.xz (scikit-learn, matplotlib and dependencies: they regenerate the
                 built-in domain) + vgg19.pddw (the offline Caffe VGG19, stored as bf16: under bf16
                 autocast the convolutions round their weights to bf16 anyway; fp32 runs see the
                 rounding, a named deviation)

On the GPU machine ``--unpack`` extracts a part into ``.gpu_env/`` (site/ goes on sys.path after
the machine's own packages, so an installed library always wins; cache/ is a PDD_CACHE holding
the weights under the names pdd.weights looks for). ``.gpu_env/`` is ignored by git, so it stays
on the machine between two calls while it is warm.

    python benchmarks/gpu_prepare.py                      # here: build .gpu_carry/, print sizes
    python benchmarks/gpu_prepare.py --unpack .gpu_carry/a  # there (stdlib + torch only)
    python benchmarks/gpu_prepare.py --check              # there: which modules import, from where

The .pddw format: an lzma stream of an 8-byte header length, a JSON header (tensor names, dtypes,
shapes, the pdd cache file name and its JSON sidecar), then the bytes of every 16-bit tensor
split into a high-byte and a low-byte plane (the high bytes -- sign and exponent -- compress
well, the low mantissa bytes do not), then the fp32 tensors as they are. Nothing is unpickled.
"""
from __future__ import annotations

import argparse
import importlib
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".gpu_carry"
ENV = REPO / ".gpu_env"
LIMIT = 64 * 2**20          # what one call may carry with the working tree
MARGIN = 2 * 2**20          # the tree grows with every commit: keep room

# (requirement, top-level names to keep from the wheel or None for all). Versions: pyproject's
# pins, dependencies at the versions of this venv. Part a: what pdd imports to train and score;
# part b: what regenerating a built-in domain needs besides (packaged photos of sklearn/matplotlib).
WHEELS = {
    "a": [("pyiqa==0.1.16", ("pyiqa", "pyiqa-0.1.16.dist-info")),  # the wheel also holds docs, test images
          ("kornia==0.9.0", None), ("kornia_rs==0.2.0", None), ("scikit-image==0.26.0", None),
          ("lazy_loader==0.6", None), ("imageio==2.38.1", None), ("tifffile==2026.3.3", None)],
    "b": [("scikit-learn==1.9.1", None), ("joblib==1.6.0", None), ("threadpoolctl==3.8.0", None),
          ("matplotlib==3.11.2", None), ("contourpy==1.3.3", None), ("cycler==0.12.1", None),
          ("fonttools==4.68.0", None), ("kiwisolver==1.5.1", None), ("pyparsing==3.3.3", None),
          ("python-dateutil==4.0.0", None), ("six==1.17.0", None)],
}
# modules gpu_check imports (directly or through pdd), for --check
MODULES = ["torch", "torchvision", "numpy", "scipy", "pandas", "PIL", "tqdm", "yaml", "requests", "cv2",
           "huggingface_hub", "kornia", "pyiqa", "skimage", "sklearn", "matplotlib"]
PIP_PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                "--platform", "manylinux_2_24_x86_64", "--platform", "manylinux_2_27_x86_64",
                "--platform", "manylinux_2_28_x86_64"]


# ------------------------------------------------------------------ weights
def pack_weights(state_dict: dict, dst: Path, cache_name: str, sidecar: dict, lossy: str | None, wrap: dict) -> dict:
    """Write ``state_dict`` as .pddw. Each tensor goes fp16 when that is exact, else ``lossy``
    (None: fp32). ``wrap``: the pdd cache file's other keys; the state dict sits under
    ``wrap["key"]``. Returns {stored dtype: tensor count}."""
    import torch

    entries, hi, lo, raw = [], [], [], []
    for name, t in state_dict.items():
        t = t.detach().float().contiguous()
        dtype = "float32"
        if torch.equal(t.half().float(), t):
            dtype = "float16"
        elif lossy:
            dtype = lossy
        entries.append({"name": name, "dtype": dtype, "shape": list(t.shape)})
        if dtype == "float32":
            raw.append(t.numpy().tobytes())
        else:
            b = t.to(getattr(torch, dtype)).view(torch.uint8).numpy().reshape(-1, 2)  # little endian: [lo, hi]
            lo.append(b[:, 0].tobytes())
            hi.append(b[:, 1].tobytes())
    header = json.dumps({"tensors": entries, "cache_name": cache_name, "sidecar": sidecar, "wrap": wrap}).encode()
    body = b"".join([len(header).to_bytes(8, "little"), header, *hi, *lo, *raw])
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(lzma.compress(body, preset=9 | lzma.PRESET_EXTREME))
    os.replace(tmp, dst)
    counts = {}
    for e in entries:
        counts[e["dtype"]] = counts.get(e["dtype"], 0) + 1
    return counts


def unpack_weights(src: Path, cache: Path) -> Path:
    """.pddw -> ``cache/<cache_name>`` (torch.save of plain tensors) + its JSON sidecar."""
    import numpy as np
    import torch

    body = lzma.decompress(src.read_bytes())
    n = int.from_bytes(body[:8], "little")
    head = json.loads(body[8:8 + n])
    pos = 8 + n
    sixteen = [e for e in head["tensors"] if e["dtype"] != "float32"]
    total16 = sum(int(np.prod(e["shape"])) for e in sixteen)
    hi = np.frombuffer(body, np.uint8, total16, pos)
    lo = np.frombuffer(body, np.uint8, total16, pos + total16)
    pos += 2 * total16
    sd, k = {}, 0
    for e in head["tensors"]:
        count = int(np.prod(e["shape"]))
        if e["dtype"] == "float32":
            arr = np.frombuffer(body, np.float32, count, pos).copy()
            pos += 4 * count
            t = torch.from_numpy(arr)
        else:
            pair = np.stack([lo[k:k + count], hi[k:k + count]], axis=1).copy()
            k += count
            t = torch.from_numpy(pair).view(getattr(torch, e["dtype"])).reshape(-1).float()
        sd[e["name"]] = t.reshape(e["shape"])
    wrap = dict(head["wrap"])
    key = wrap.pop("key")
    cache.mkdir(parents=True, exist_ok=True)
    dst = cache / head["cache_name"]
    torch.save({key: sd, **wrap}, dst)
    dst.with_suffix(".json").write_text(json.dumps(head["sidecar"], indent=2))
    return dst


def build_weights(part: Path) -> list[str]:
    """The two offline weights, from this machine's pdd cache (converted on first use)."""
    from pdd.weights import load_state_dict, resolve_realesrgan_x4plus, resolve_vgg19

    lines = []
    path, source = resolve_realesrgan_x4plus()
    if part.name == "a":
        sd = load_state_dict(path)["params_ema"]
        info = {"detail": source.detail + "; carried to the GPU machine as .pddw (weights fp16 as in the ncnn "
                "file, biases fp32: lossless)", "origin": str(source)}
        counts = pack_weights(sd, part / "RealESRGAN_x4plus.pddw", "RealESRGAN_x4plus-ncnn-fp16.pth", info, None,
                              {"key": "params_ema"})
        lines.append(f"RealESRGAN_x4plus from {source.kind}: tensors stored {counts}")
    else:
        path, source = resolve_vgg19()
        obj = load_state_dict(path)
        info = {"detail": source.detail + "; carried to the GPU machine with every weight rounded to bf16 "
                "(a deviation for fp32 runs; bf16 autocast rounds conv weights to bf16 anyway)", "origin": str(source)}
        counts = pack_weights(obj["state_dict"], part / "vgg19.pddw", "vgg19-keras-caffe.pth", info, "bfloat16",
                              {"key": "state_dict", "feature_scale": float(obj.get("feature_scale", 1.0)),
                               "source": obj.get("source", {})})
        lines.append(f"VGG19 from {source.kind}: tensors stored {counts}")
    return lines


# ------------------------------------------------------------------ libraries
def wheel_cache() -> Path:
    return Path(os.environ.get("PDD_CACHE", "~/.cache/pdd")).expanduser() / "gpu-wheels"


def fetch_wheel(requirement: str) -> Path:
    """The cp312 manylinux (or pure Python) wheel of ``requirement``, downloaded once by pip."""
    dest = wheel_cache()
    name = requirement.split("==")[0].lower().replace("-", "_")
    version = requirement.split("==")[1]
    hits = [w for w in dest.glob("*.whl") if w.name.lower().startswith(f"{name}-{version}-")]
    if hits:
        return hits[0]
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q",
           *PIP_PLATFORM, requirement, "-d", str(dest)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    hits = [w for w in dest.glob("*.whl") if w.name.lower().startswith(f"{name}-{version}-")]
    if r.returncode or not hits:
        raise RuntimeError(f"pip download {requirement} failed: {(r.stderr or r.stdout).strip()[-500:]}")
    return hits[0]


def build_site(part: Path, wheels) -> list[str]:
    """Unpack the part's wheels into one tar.xz (a wheel is a zip laid out as site-packages)."""
    lines = []
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for req, keep in wheels:
            whl = fetch_wheel(req)
            with zipfile.ZipFile(whl) as z:
                members = [m for m in z.infolist() if not m.is_dir()
                           and (keep is None or m.filename.split("/")[0] in keep)]
                for m in members:
                    info = tarfile.TarInfo("site/" + m.filename)
                    data = z.read(m)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            lines.append(f"{whl.name} ({whl.stat().st_size / 2**20:.1f} MiB wheel, {len(members)} files kept)")
    (part / "site.tar.xz").write_bytes(lzma.compress(buf.getvalue(), preset=9))
    return lines


def tree_bytes() -> int:
    """What the GPU machine copies besides the carry: tracked files and untracked, not ignored ones."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout
    return sum((REPO / p).stat().st_size for p in out.decode().split("\0") if p and (REPO / p).is_file())


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(parts) -> int:
    sys.path.insert(0, str(REPO))
    tree = tree_bytes()
    print(f"working tree that travels with every call: {tree / 2**20:.1f} MiB")
    ok = True
    for name in parts:
        part = CARRY / name
        part.mkdir(parents=True, exist_ok=True)
        for line in build_site(part, WHEELS[name]) + build_weights(part):
            print(f"  [{name}] {line}")
        size = du(part)
        total = size + tree
        fits = total + MARGIN <= LIMIT
        ok &= fits
        print(f"  [{name}] .gpu_carry/{name}: {size / 2**20:.1f} MiB; with the tree {total / 2**20:.1f} MiB of "
              f"{LIMIT / 2**20:.0f} MiB ({'fits' if fits else 'TOO BIG'}, {MARGIN / 2**20:.0f} MiB margin kept)")
    return 0 if ok else 1


# ------------------------------------------------------------------ on the GPU machine
def unpack(part: Path) -> int:
    if not part.is_dir():
        print(f"{part} is not here: carry it (run tool: carry=[\"{part.relative_to(REPO)}\"])", file=sys.stderr)
        return 2
    (ENV / "site").mkdir(parents=True, exist_ok=True)
    site = part / "site.tar.xz"
    if site.exists():
        with tarfile.open(fileobj=io.BytesIO(lzma.decompress(site.read_bytes()))) as tar:
            names = tar.getnames()
            if any(n.startswith("/") or ".." in Path(n).parts for n in names):
                raise ValueError(f"{site}: refusing a member outside site/")
            tar.extractall(ENV, filter="data") if sys.version_info >= (3, 12) else tar.extractall(ENV)
        print(f"unpacked {len(names)} library files into {ENV / 'site'}")
    for w in sorted(part.glob("*.pddw")):
        print(f"unpacked {w.name} -> {unpack_weights(w, ENV / 'cache')}")
    return 0


def check() -> int:
    """Import every module gpu_check needs, with .gpu_env/site after the machine's own packages."""
    if (ENV / "site").is_dir():
        sys.path.append(str(ENV / "site"))
    missing = []
    for mod in MODULES:
        try:
            m = importlib.import_module(mod)
            where = "carried" if str(ENV) in str(getattr(m, "__file__", "")) else "machine"
            print(f"  {mod:16} {getattr(m, '__version__', '?'):12} {where}")
        except Exception as e:  # noqa: BLE001 -- a binary mismatch raises ImportError or others: report all
            missing.append(mod)
            print(f"  {mod:16} MISSING ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})")
    import torch
    print(f"torch {torch.__version__}, CUDA {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
    print("all modules import" if not missing else f"missing: {', '.join(missing)}")
    return 1 if missing else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["a", "b"], choices=["a", "b"], help="which carry parts to build")
    ap.add_argument("--unpack", type=Path, metavar="DIR", help="on the GPU machine: unpack a carried part")
    ap.add_argument("--check", action="store_true", help="on the GPU machine: which modules import")
    args = ap.parse_args(argv)
    if args.unpack:
        rc = unpack(args.unpack.resolve())
        return rc or (check() if args.check else 0)
    if args.check:
        return check()
    return build(args.parts)


if __name__ == "__main__":
    sys.exit(main())
