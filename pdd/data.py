"""Data: reading images, the domains PDD adapts to, and the patch samplers training draws from.

PDD's data, in the paper's notation:
- labeled HR pool (Y^L): clean HR photos of the *source* domain. X^L = bicubic(Y^L),
  made on the fly by `LabeledPatches`: the labeled pairs (X^L, Y^L).
- unlabeled LR set (X^U): LR images of the *target* domain (a real camera), no HR.
  `UnlabeledPatches` crops them.
- held-out test pairs: target LR with its HR, never seen in training.

A `Domain` bundles the three. `open_domain(name)` gives either a real dataset read from
the data root (layouts in data/README.md) or a built-in domain generated once from
photos that ship inside installed packages, with a hidden camera-like degradation
(`pdd.degradations.DOMAIN_DEGRADATIONS`) that training code never reads.

Images are HxWx3 uint8 RGB numpy arrays everywhere outside the samplers; the samplers
return float tensors in [0, 1]. Samplers are deterministic functions of (seed, index),
so a resumed run regenerates exactly the batches it would have drawn.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import degradations as deg
from .imageops import quantize, to_uint8
from .photos import MAX_SIDE, PhotoError, list_photo_files, read_photo, scan_photos

REPO_ROOT = Path(__file__).resolve().parent.parent
SCALE = 4


class ImageError(ValueError):
    """An image that cannot be used: unreadable, corrupt, unsupported, or too small."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not where its documented layout says (see data/README.md)."""


# ---------------------------------------------------------------------------------------
# reading and writing images
# ---------------------------------------------------------------------------------------

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _to_rgb(a: np.ndarray) -> np.ndarray:
    """(H,W) / (H,W,1|2|3|4) -> (H,W,3): grey replicated, alpha (last of 2 or 4) dropped."""
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] in (2, 4):
        a = a[:, :, :-1]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a)


def read_image(path) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array.

    Conversions (each documented because each changes pixel values):
    - grayscale (L, 1-bit) -> the grey value replicated into R, G and B;
    - RGBA / LA / PA -> alpha dropped: the colour channels are kept as stored, NOT
      composited on any background (SR datasets have no meaningful transparency);
    - 16-bit (PNG grey or RGB, PIL I;16 / I modes) -> round(v * 255 / 65535). Pillow would
      silently truncate 16-bit RGB PNGs to their high byte, so 16-bit PNGs are decoded
      with torchvision's libpng decoder instead;
    - palette (P) and other colour models (CMYK, YCbCr, ...) -> RGB through Pillow;
    - EXIF orientation is NOT applied: pixels are returned in stored order.
    Missing files raise FileNotFoundError; unreadable, corrupt or truncated files and
    float images raise `ImageError` naming the file.
    """
    path = Path(path)
    data = path.read_bytes()  # FileNotFoundError / PermissionError propagate as they are
    try:
        # IHDR's bit depth is byte 24 of every PNG.
        if data[:8] == _PNG_MAGIC and len(data) > 24 and data[24] == 16:
            import warnings

            from torchvision.io import ImageReadMode, decode_png

            with warnings.catch_warnings():
                # torchvision 0.29 deprecates its codecs in favour of torchcodec; the
                # pinned version still has them and no other direct dependency decodes
                # 16-bit RGB PNG at full depth.
                warnings.simplefilter("ignore", DeprecationWarning)
                t = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
            return _to_rgb(to_uint8(t.permute(1, 2, 0).numpy()))  # uint16: full-range scaling
        im = Image.open(io.BytesIO(data))
        im.load()  # decode now, so truncation errors surface here
        mode = im.mode
        if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
            a = np.asarray(im).astype(np.int64)
            if a.min() < 0 or a.max() > 65535:
                raise ImageError(f"{path}: 32-bit integer image with values outside 0..65535 is not supported")
            return _to_rgb(to_uint8(a.astype(np.uint16)))
        if mode == "F":
            raise ImageError(f"{path}: floating-point images are not supported (expected 8 or 16 bit)")
        if mode in ("RGB", "L", "RGBA", "LA"):
            return _to_rgb(np.asarray(im))
        if mode in ("1",):
            return _to_rgb(np.asarray(im.convert("L")))
        if mode in ("P", "PA", "RGBa", "La"):
            return _to_rgb(np.asarray(im.convert("RGBA")))
        return _to_rgb(np.asarray(im.convert("RGB")))
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, RuntimeError, EOFError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e


def image_size(path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            w, h = im.size
        return h, w
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e


def write_png(path, img: np.ndarray) -> None:
    """Write an HxWx3 uint8 image as PNG atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(img).save(tmp, format="PNG")
    os.replace(tmp, path)


class ImageFolder(Sequence):
    """A list of image files that behaves like a list of HxWx3 uint8 arrays.

    Decodes on access, so a 3,450-image DF2K pool costs nothing until sampled. Sizes
    come from file headers. With `cache=True` decoded arrays are kept in memory (per
    process: DataLoader workers each keep their own).
    """

    def __init__(self, paths, cache: bool = False):
        self.paths = [Path(p) for p in paths]
        self.names = [p.stem for p in self.paths]
        self.cache = cache
        self._cache: dict[int, np.ndarray] = {}
        self._sizes: list[tuple[int, int]] | None = None

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]  # negative indices, IndexError
        if i in self._cache:
            return self._cache[i]
        img = read_image(self.paths[i])
        if self.cache:
            self._cache[i] = img
        return img

    @property
    def sizes(self) -> list[tuple[int, int]]:
        if self._sizes is None:
            self._sizes = [image_size(p) for p in self.paths]
        return self._sizes

    def __repr__(self):
        return f"ImageFolder({len(self)} images, first={self.paths[0] if self.paths else None})"


def _sizes(images) -> list[tuple[int, int]]:
    return list(images.sizes) if hasattr(images, "sizes") else [tuple(im.shape[:2]) for im in images]


def _names(images, names=None) -> list[str]:
    if names is not None:
        return list(names)
    if hasattr(images, "paths"):
        return [str(p) for p in images.paths]
    if hasattr(images, "names"):
        return list(images.names)
    return [f"image #{i}" for i in range(len(images))]


class ImageList(list):
    """A list of in-memory images that also carries their names (for error messages)."""

    def __init__(self, images, names):
        super().__init__(images)
        self.names = list(names)


def _check_pair(lr: np.ndarray, hr: np.ndarray, scale: int, name: str) -> np.ndarray:
    """Return HR cropped to exactly scale x LR; HR may exceed it by < scale pixels."""
    need = (lr.shape[0] * scale, lr.shape[1] * scale)
    dh, dw = hr.shape[0] - need[0], hr.shape[1] - need[1]
    if not (0 <= dh < scale and 0 <= dw < scale):
        raise ImageError(f"{name}: HR {hr.shape[1]}x{hr.shape[0]} does not match LR {lr.shape[1]}x{lr.shape[0]} "
                         f"at scale x{scale} (expected {need[1]}x{need[0]})")
    return hr[:need[0], :need[1]]


class PairFolder(Sequence):
    """Test pairs read from disk on access: item i = (lr, hr, name)."""

    def __init__(self, lr_paths, hr_paths, names, scale: int = SCALE):
        self.lr_paths, self.hr_paths = [Path(p) for p in lr_paths], [Path(p) for p in hr_paths]
        self.names, self.scale = list(names), scale

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]
        lr, hr = read_image(self.lr_paths[i]), read_image(self.hr_paths[i])
        return lr, _check_pair(lr, hr, self.scale, str(self.hr_paths[i])), self.names[i]

    @property
    def sizes(self) -> list[tuple[tuple[int, int], tuple[int, int]]]:
        return [(image_size(a), image_size(b)) for a, b in zip(self.lr_paths, self.hr_paths)]


def crop_512(lr: np.ndarray, hr: np.ndarray, scale: int = SCALE, size: int = 512) -> list[tuple[np.ndarray, np.ndarray]]:
    """Non-overlapping size x size LR crops (and their HR) from the top-left; remainders dropped.

    DRealSR's test protocol. A dimension shorter than `size` is kept whole (one crop
    spanning it) rather than dropping the image.
    """
    h, w = lr.shape[:2]
    sh, sw = min(size, h), min(size, w)
    out = []
    for y in range(0, h - sh + 1, sh):
        for x in range(0, w - sw + 1, sw):
            out.append((lr[y:y + sh, x:x + sw], hr[y * scale:(y + sh) * scale, x * scale:(x + sw) * scale]))
    return out


# ---------------------------------------------------------------------------------------
# domains
# ---------------------------------------------------------------------------------------


@dataclass
class Domain:
    """One adaptation problem: labeled source HR, unlabeled target LR, held-out target pairs.

    labeled_hr:   Y^L pool, clean HR (source domain); X^L = bicubic(Y^L) at train time.
    unlabeled_lr: X^U, target-domain LR with no HR.
    test_pairs:   held-out target (lr, hr, name); hr is exactly scale x lr.
    source_test_pairs: the same HR with the SOURCE protocol's LR (MATLAB bicubic, 8-bit):
                  a method's gain here vs. on test_pairs separates adaptation to the
                  target from generic improvement.
    The three image sets are lists (or list-like `ImageFolder` / `PairFolder` that read
    on access) of HxWx3 uint8 arrays.
    """
    name: str
    kind: str  # "builtin" | "real"
    labeled_hr: Sequence
    unlabeled_lr: Sequence
    test_pairs: Sequence
    scale: int = SCALE
    root: Path | None = None
    sources: dict = field(default_factory=dict)  # role -> where the images came from
    notes: str = ""
    _source_test_pairs: list | None = field(default=None, repr=False)

    @property
    def source_test_pairs(self) -> list:
        if self._source_test_pairs is None:
            out = []
            for lr, hr, name in self.test_pairs:
                src = to_uint8(quantize(deg.bicubic_down(deg.img2tensor(hr), self.scale)))
                out.append((src, hr, name))
            self._source_test_pairs = out
        return self._source_test_pairs

    def summary(self):
        """A pandas DataFrame: per set, image count, smallest / largest size, total pixels."""
        import pandas as pd

        test_sizes = _sizes(self.test_pairs) if hasattr(self.test_pairs, "sizes") else [
            (tuple(lr.shape[:2]), tuple(hr.shape[:2])) for lr, hr, _ in self.test_pairs]
        sets = [("labeled HR (Y^L, source)", _sizes(self.labeled_hr)),
                ("unlabeled LR (X^U, target)", _sizes(self.unlabeled_lr)),
                ("test LR (target)", [s[0] for s in test_sizes]),
                ("test HR", [s[1] for s in test_sizes])]
        def hw(s):
            return f"{s[0]}x{s[1]}"

        rows = []
        for label, sizes in sets:
            by_area = sorted(sizes, key=lambda s: (s[0] * s[1], s))
            rows.append({"set": label, "images": len(sizes),
                         "smallest (HxW)": hw(by_area[0]) if sizes else "-",
                         "largest (HxW)": hw(by_area[-1]) if sizes else "-",
                         "pixels": int(sum(h * w for h, w in sizes))})
        return pd.DataFrame(rows).set_index("set")

    def describe(self) -> str:
        lines = [f"Domain {self.name} ({self.kind}, x{self.scale})"]
        if self.root is not None:
            lines.append(f"  root: {self.root}")
        n_test = len(self.test_pairs)
        lines.append(f"  labeled HR pool (source, clean): {len(self.labeled_hr)} images  <- {self.sources.get('labeled', '?')}")
        lines.append(f"  unlabeled target LR (X^U):       {len(self.unlabeled_lr)} images  <- {self.sources.get('unlabeled', '?')}")
        lines.append(f"  held-out test pairs:             {n_test}  <- {self.sources.get('test', '?')}")
        if self.notes:
            lines.append("  " + self.notes)
        return "\n".join(lines)


def resolve_data_root(data_root=None) -> Path:
    """argument -> $PDD_DATA_ROOT -> <repo>/data."""
    if data_root is not None:
        return Path(data_root)
    if os.environ.get("PDD_DATA_ROOT"):
        return Path(os.environ["PDD_DATA_ROOT"])
    return REPO_ROOT / "data"


# ---------------------------------------------------------------------------------------
# real datasets: documented layouts under the data root (see data/README.md)
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealLayout:
    """Where a real domain's files live, as globs relative to the data root."""
    dataset: str
    unlabeled: str              # target LR without HR (X^U)
    test_lr: str
    test_hr: str
    labeled: str | None = None  # dataset's own clean HR; None -> DF2K / DIV2K


def _realsr(camera):
    return RealLayout("RealSR V3 x4", f"RealSRV3/{camera}/Train/4/*_LR4.png",
                      f"RealSRV3/{camera}/Test/4/*_LR4.png", f"RealSRV3/{camera}/Test/4/*_HR.png")


def _drealsr(camera):
    return RealLayout("DRealSR x4", f"DRealSR/x4/{camera}/Train/LR/*.png",
                      f"DRealSR/x4/{camera}/Test/LR/*.png", f"DRealSR/x4/{camera}/Test/HR/*.png")


REAL_DOMAINS = {
    "Canon": _realsr("Canon"),
    "Nikon": _realsr("Nikon"),
    "Panasonic": _drealsr("Panasonic"),
    "Olympus": _drealsr("Olympus"),
    # NTIRE 2020 RWSR track 1: train_source = corrupted images (the LR input domain,
    # no HR) -> X^U; train_target = clean HR -> labeled pool; valid_source/valid_target
    # = corrupted LR / HR pairs -> test.
    "NTIRE20": RealLayout("NTIRE 2020 RWSR track 1", "NTIRE20/track1/train_source/*.png",
                          "NTIRE20/track1/valid_source/*.png", "NTIRE20/track1/valid_target/*.png",
                          labeled="NTIRE20/track1/train_target/*.png"),
}

# Labeled source pools for the real domains, tried in this order by labeled="auto".
LABELED_SOURCES = {"DF2K": "DF2K/HR/*.png", "DIV2K": "DIV2K/DIV2K_train_HR/*.png"}

# Images decoded once and kept in memory when a set is at most this many pixels
# (~190 MB as uint8); larger sets (DF2K) are decoded on every access.
CACHE_PIXELS = 64_000_000


def _glob(root: Path, pattern: str) -> list[Path]:
    return sorted(root.glob(pattern))


def _pair_key(path: Path) -> str:
    # RealSR names Canon_001_HR.png / Canon_001_LR4.png; DRealSR and NTIRE use the same
    # stem in two folders, sometimes with _x1 / _x4 suffixes.
    return re.sub(r"_(hr|lr\d?|x\d)$", "", path.stem, flags=re.IGNORECASE)


def _folder(paths) -> ImageFolder:
    folder = ImageFolder(paths)
    folder.cache = sum(h * w for h, w in folder.sizes) <= CACHE_PIXELS
    return folder


def _open_labeled(root: Path, labeled, layout: RealLayout | None) -> tuple[Sequence, str]:
    if labeled == "builtin":
        photos = builtin_photos()
        names = sorted(photos)
        return ImageList([photos[k] for k in names], names), "built-in packaged photos: " + ", ".join(names)
    if labeled not in ("auto", "DF2K", "DIV2K"):
        paths = sorted(Path(labeled).glob("*.png"))
        if not paths:
            raise DatasetNotFoundError(f"labeled HR pool: no *.png under {Path(labeled).resolve()}")
        return _folder(paths), str(labeled)
    if labeled == "auto" and layout is not None and layout.labeled is not None:
        candidates = {layout.dataset + " clean HR": layout.labeled}
    elif labeled == "auto":
        candidates = dict(LABELED_SOURCES)
    else:
        candidates = {labeled: LABELED_SOURCES[labeled]}
    for pattern in candidates.values():
        paths = _glob(root, pattern)
        if paths:
            return _folder(paths), str(root / pattern)
    expected = "\n  ".join(str(root / p) for p in candidates.values())
    raise DatasetNotFoundError(
        f"labeled HR pool not found; expected PNG files at one of:\n  {expected}\n"
        f"See data/README.md for where to get them, or pass labeled='builtin' to use the "
        f"packaged photos as the labeled pool.")


# Top folders as the releases unpack, beside the names of the documented layout.
RELEASE_FOLDER_NAMES = {"RealSRV3": ("RealSR(V3)",)}


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _with_release_names(root: Path, layout: RealLayout) -> RealLayout:
    """The layout with its top folder as found under root: the documented name, else the
    name the release unpacks as (RealSR's archive gives ``RealSR(V3)/``)."""
    top = layout.unlabeled.split("/", 1)[0]
    for alias in RELEASE_FOLDER_NAMES.get(top, ()):
        if not (root / top).is_dir() and (root / alias).is_dir():
            swap = lambda g: alias + g[len(top):] if g and g.startswith(top + "/") else g  # noqa: E731
            return RealLayout(layout.dataset, swap(layout.unlabeled), swap(layout.test_lr), swap(layout.test_hr),
                              swap(layout.labeled))
    return layout


def _near_misses(root: Path, layout: RealLayout) -> list[str]:
    """Folders under root whose name differs from the expected top folder only in case or
    punctuation, or whose camera folder does: what to rename, for the error message."""
    hints = []
    top, rest = layout.unlabeled.split("/", 1)
    wanted = {_normalised(top)} | {_normalised(a) for a in RELEASE_FOLDER_NAMES.get(top, ())}
    tops = [d for d in root.iterdir() if d.is_dir()] if root.is_dir() else []
    for d in tops:
        if d.name != top and d.name not in RELEASE_FOLDER_NAMES.get(top, ()) and _normalised(d.name) in wanted:
            hints.append(f"found {d}: rename it to {root / top}")
    base = root / top if (root / top).is_dir() else next((d for d in tops if _normalised(d.name) in wanted), None)
    camera = rest.split("/")[0] if "*" not in rest.split("/")[0] else None
    if base is not None and camera and not (base / camera).is_dir():
        subs = [d.name for d in base.iterdir() if d.is_dir()]
        close = [n for n in subs if _normalised(n) == _normalised(camera)]
        hints += [f"found {base / n}: rename it to {base / camera}" for n in close]
        if not close and subs:
            hints.append(f"{base} holds {', '.join(sorted(subs)[:8])}; expected {camera}/")
    return hints


# DRealSR as its authors release it: one folder per split holding all five cameras.
# github.com/xiezw5/Component-Divide-and-Conquer-for-Real-World-Image-Super-Resolution
# (README "Dataset": 192x192 training patches and 93 x4 test pairs; its loader
# TorchTools/DataTools/DataSets.py reads {train,test}_{LR,HR} inside Train_xN / Test_xN).
DREALSR_RELEASE_DIRS = {"unlabeled": ("Train_x4", "train_LR"), "test_lr": ("Test_x4", "test_LR"),
                        "test_hr": ("Test_x4", "test_HR")}
_DREALSR_FOLDER_NAMES = ("Train_x4", "Test_x4", "train_LR", "train_HR", "test_LR", "test_HR")
_DREALSR_MAX_DEPTH = 6  # DRealSR/DRealSR/x4/Test_x4/Test_x4/test_LR: archives unpack one level twice

# The camera of a DRealSR x4 file, from the start of its name. The release names some
# files by camera (panasonic_158_x4.png, sony_1_x4.png, Canon_10_x4.png) and keeps the
# camera's own numbering for others (IMG_140_x4.png, P1140279_x4.png, DSC_1265_x4.png).
# Which camera each belongs to is read off the per-camera file lists that DADA (CVPR 2022,
# co-authored by DRealSR's first author) publishes: github.com/lonelyhope/DADA,
# image_list/test.csv (columns Panasonic, Sony, Canon, Olympus, Nikon) and train.csv.
# Each of their 93 test and 30,502 train names matches exactly one pattern below, the
# one of its own column. A name matching none is "camera unknown": reported, never used.
DREALSR_CAMERAS = {"Panasonic": r"panasonic_", "Sony": r"sony_", "Canon": r"(?:Canon|IMG)_",
                   "Olympus": r"P11\d{5}_", "Nikon": r"DSC_"}
_DREALSR_CAMERA_NAMES = {"Panasonic": "panasonic_*", "Sony": "sony_*", "Canon": "Canon_* or IMG_*",
                         "Olympus": "P11nnnnn_* (P11 and five digits)", "Nikon": "DSC_*"}
_DREALSR_ROLE_NAMES = {"unlabeled": "train LR", "test_lr": "test LR", "test_hr": "test HR"}


def drealsr_camera(name) -> str | None:
    """The DRealSR camera a file name belongs to (see DREALSR_CAMERAS), or None if unknown."""
    stem = Path(name).name
    hits = [camera for camera, pattern in DREALSR_CAMERAS.items() if re.match(pattern, stem)]
    return hits[0] if len(hits) == 1 else None


@dataclass
class DRealSRRelease:
    """The x4 release found under a data root: its folders and its files grouped by camera.

    folders:      role ("unlabeled", "test_lr", "test_hr") -> the folder found (absent if none)
    files:        role -> camera -> sorted PNG paths
    unrecognised: role -> PNG paths whose name no camera pattern matches
    hints:        folders whose name differs from the release's only in case or punctuation
    ambiguous:    role -> several folders that could be it
    Nothing is moved or copied: these are lists of the user's files where they are.
    """
    base: Path
    folders: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    unrecognised: dict = field(default_factory=dict)
    hints: list = field(default_factory=list)
    ambiguous: dict = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.folders) == len(DREALSR_RELEASE_DIRS) and not self.ambiguous

    def counts(self) -> str:
        """One line per folder: files per recognised camera, then the unrecognised names."""
        lines = []
        for role, folder in self.folders.items():
            per = ", ".join(f"{c} {len(self.files[role].get(c, ()))}" for c in DREALSR_CAMERAS)
            line = f"  {_DREALSR_ROLE_NAMES[role]} {folder}: {per}"
            odd = self.unrecognised[role]
            if odd:
                line += (f"; camera unknown for {len(odd)}: " + ", ".join(p.name for p in odd[:5])
                         + (", ..." if len(odd) > 5 else ""))
            lines.append(line)
        return "\n".join(lines)

    def expected(self) -> list[str]:
        return [str(self.base / "x4" / split / leaf) for split, leaf in DREALSR_RELEASE_DIRS.values()]


def drealsr_release(data_root=None) -> DRealSRRelease:
    """Look for the DRealSR x4 release as downloaded under <data root>/DRealSR:
    Train_x4/train_LR, Test_x4/test_LR and Test_x4/test_HR at any depth up to
    _DREALSR_MAX_DEPTH (x4/ above them, or an archive's doubled folder, is fine), and
    group their PNG files by camera from the file names (`drealsr_camera`)."""
    base = resolve_data_root(data_root) / "DRealSR"
    release = DRealSRRelease(base)
    if not base.is_dir():
        return release
    candidates = {role: [] for role in DREALSR_RELEASE_DIRS}
    leaves = {_normalised(n) for n in ("train_LR", "train_HR", "test_LR", "test_HR")}
    stack = [(base, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            subs = sorted(Path(e.path) for e in os.scandir(folder) if e.is_dir())
        except OSError:
            continue
        for sub in subs:
            for role, (split, leaf) in DREALSR_RELEASE_DIRS.items():
                if sub.name == leaf and folder.name == split:
                    candidates[role].append(sub)
            near = [n for n in _DREALSR_FOLDER_NAMES if _normalised(n) == _normalised(sub.name)]
            if near and sub.name not in _DREALSR_FOLDER_NAMES:
                release.hints.append(f"found {sub}: rename it to {sub.parent / near[0]}")
            if _normalised(sub.name) not in leaves and depth + 1 < _DREALSR_MAX_DEPTH:
                stack.append((sub, depth + 1))
    for role, found in candidates.items():
        if len(found) > 1:
            release.ambiguous[role] = sorted(found)
        elif found:
            folder = found[0]
            release.folders[role] = folder
            release.files[role], release.unrecognised[role] = {}, []
            for path in sorted(folder.glob("*.png")):
                camera = drealsr_camera(path.name)
                if camera is None:
                    release.unrecognised[role].append(path)
                else:
                    release.files[role].setdefault(camera, []).append(path)
    release.hints.sort()
    return release


def _drealsr_from_release(name: str, root: Path) -> tuple[dict, dict, str] | None:
    """A DRealSR camera's files read from the release layout: (role -> paths, role -> where,
    note), or None when no release folder is there at all. A release that is there but
    incomplete, ambiguous or without this camera's files raises DatasetNotFoundError."""
    release = drealsr_release(root)
    if not release.folders and not release.ambiguous:
        return None
    what = f"{name} (DRealSR x4) from the release layout under {release.base}"
    if not release.complete:
        lines = [f"{what}: incomplete."]
        lines += [f"  several folders could be {_DREALSR_ROLE_NAMES[r]}: " + ", ".join(map(str, ps))
                  + " (keep one)" for r, ps in release.ambiguous.items()]
        lines += [f"  no {_DREALSR_ROLE_NAMES[r]} folder: expected {split}/{leaf}, e.g. {release.base / 'x4' / split / leaf}"
                  for r, (split, leaf) in DREALSR_RELEASE_DIRS.items()
                  if r not in release.folders and r not in release.ambiguous]
        if release.folders:
            lines += ["found:", release.counts()]
        raise DatasetNotFoundError("\n".join(lines + release.hints))
    empty = [r for r in DREALSR_RELEASE_DIRS if not release.files[r].get(name)]
    if empty:
        raise DatasetNotFoundError(
            f"{what}: no {name} files in " + ", ".join(_DREALSR_ROLE_NAMES[r] for r in empty)
            + f". The camera is read from the file name ({name}: {_DREALSR_CAMERA_NAMES[name]}).\n"
            "found:\n" + release.counts()
            + f"\nOr sort {name}'s files by hand into {root}/DRealSR/x4/{name}/Train/LR, Test/LR and Test/HR.")
    found = {r: release.files[r][name] for r in DREALSR_RELEASE_DIRS}
    where = {r: f"{release.folders[r]} ({name} files: {_DREALSR_CAMERA_NAMES[name]})" for r in DREALSR_RELEASE_DIRS}
    others = sum(len(v) for r in DREALSR_RELEASE_DIRS for c, v in release.files[r].items() if c != name)
    unknown = sum(len(release.unrecognised[r]) for r in DREALSR_RELEASE_DIRS)
    note = (f" Read from the release layout (all cameras in one folder), {name} picked by file name;"
            f" {others} files of the other cameras" + (f" and {unknown} of unknown camera" if unknown else "")
            + " left aside.")
    return found, where, note


def _open_real(name: str, root: Path, labeled) -> Domain:
    layout = _with_release_names(root, REAL_DOMAINS[name])
    found = {role: _glob(root, getattr(layout, role)) for role in ("unlabeled", "test_lr", "test_hr")}
    missing = [str(root / getattr(layout, role)) for role, paths in found.items() if not paths]
    sources = {role: str(root / getattr(layout, role)) for role in found}
    release_note = ""
    if missing and layout.dataset.startswith("DRealSR"):
        # Not sorted by camera: read the release as downloaded, the camera from file names.
        release = _drealsr_from_release(name, root)
        if release is not None:
            found, sources, release_note = release
            missing = []
    if missing:
        hints = _near_misses(root, layout)
        if layout.dataset.startswith("DRealSR"):
            release = drealsr_release(root)
            hints = sorted(set(hints) | set(release.hints))
            missing.append("or the release as downloaded, all cameras in one folder (camera read from "
                           "file names):\n    " + "\n    ".join(release.expected()))
        raise DatasetNotFoundError(
            f"{name} ({layout.dataset}) not found under data root {root}; no files match:\n  "
            + "\n  ".join(missing) + ("\n" + "\n".join(hints) if hints else "")
            + "\nSee data/README.md for the layout and where to obtain the data "
            "(set PDD_DATA_ROOT or pass data_root= to use another root).")
    lr_by_key = {_pair_key(p): p for p in found["test_lr"]}
    hr_by_key = {_pair_key(p): p for p in found["test_hr"]}
    unpaired = sorted(set(lr_by_key) ^ set(hr_by_key))
    if unpaired:
        show = [str(lr_by_key.get(k) or hr_by_key.get(k)) for k in unpaired[:5]]
        raise DatasetNotFoundError(f"{name}: {len(unpaired)} test images have no LR/HR partner, e.g.\n  "
                                   + "\n  ".join(show))
    keys = sorted(lr_by_key)
    labeled_hr, labeled_src = _open_labeled(root, labeled, layout)
    return Domain(
        name=name, kind="real", labeled_hr=labeled_hr, unlabeled_lr=_folder(found["unlabeled"]),
        test_pairs=PairFolder([lr_by_key[k] for k in keys], [hr_by_key[k] for k in keys], keys),
        root=root, sources={"labeled": labeled_src, "unlabeled": sources["unlabeled"],
                            "test": sources["test_lr"] + " + HR"},
        notes=f"{layout.dataset}. Evaluate DRealSR on non-overlapping 512x512 LR crops (crop_512)." + release_note
        if layout.dataset.startswith("DRealSR") else layout.dataset + ".")


# ---------------------------------------------------------------------------------------
# built-in domains: packaged photos + a hidden degradation, generated once and cached
# ---------------------------------------------------------------------------------------

# Which photo plays which role, the same for every built-in domain. The stereo pair
# (motorcycle left/right: nearly the same picture) stays together in the test set so
# no near-duplicate crosses splits.
BUILTIN_SPLIT = {
    "labeled": ("astronaut", "chelsea", "coffee"),            # clean HR source pool
    "unlabeled": ("china", "flower"),                          # target LR only (X^U)
    "test": ("rocket", "motorcycle_left", "motorcycle_right", "grace_hopper"),
}
BUILTIN_FORMAT = 1  # bump when the cache layout changes


def builtin_photos() -> dict[str, np.ndarray]:
    """The nine clean photos that ship inside installed packages (no download).

    scikit-image: astronaut, chelsea, coffee, rocket, stereo_motorcycle (left, right);
    scikit-learn: china, flower (load_sample_images); matplotlib: grace_hopper.
    Each is cropped at the top-left to a multiple of 8 pixels (2 x scale), so LR sizes
    are whole and even (the Bayer domain needs even LR sizes).
    """
    import matplotlib.cbook
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {n: getattr(skimage.data, n)() for n in ("astronaut", "chelsea", "coffee", "rocket")}
    photos["motorcycle_left"], photos["motorcycle_right"], _ = skimage.data.stereo_motorcycle()
    sk = load_sample_images()
    for fname, img in zip(sk.filenames, sk.images):
        photos[Path(fname).stem] = img
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos["grace_hopper"] = np.asarray(Image.open(f).convert("RGB"))
    m = 2 * SCALE
    return {k: np.ascontiguousarray(v[: v.shape[0] // m * m, : v.shape[1] // m * m, :3]) for k, v in photos.items()}


def builtin_domain_names() -> list[str]:
    return list(deg.DOMAIN_DEGRADATIONS)


def _builtin_recipe(name: str) -> dict:
    from importlib.metadata import version  # not `import pyiqa`: that alone takes seconds

    fn, recipe = deg.DOMAIN_DEGRADATIONS[name]
    return {
        "format": BUILTIN_FORMAT, "domain": name, "degradation": fn.__name__, "recipe": asdict(recipe),
        "split": {k: list(v) for k, v in BUILTIN_SPLIT.items()}, "scale": SCALE,
        # Any edit of the degradation code, or a library that could change pixels
        # (resampling, codec, packaged photos), makes the cache stale.
        "degradations_sha256": hashlib.sha256(Path(deg.__file__).read_bytes()).hexdigest(),
        "versions": {p: version(p) for p in ("torch", "numpy", "pillow", "kornia", "pyiqa", "scikit-image",
                                              "scikit-learn", "matplotlib")},
    }


def _recipe_hash(recipe: dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _builtin_files() -> dict[str, tuple[str, str]]:
    """relative path -> (photo, role) for every file of a built-in domain's cache."""
    files = {f"labeled/{p}.png": (p, "hr") for p in BUILTIN_SPLIT["labeled"]}
    files.update({f"unlabeled/{p}.png": (p, "target") for p in BUILTIN_SPLIT["unlabeled"]})
    for p in BUILTIN_SPLIT["test"]:
        files.update({f"test/{p}_hr.png": (p, "hr"), f"test/{p}_lr.png": (p, "target"),
                      f"test/{p}_bicubic.png": (p, "bicubic")})
    return files


def builtin_cache_status(name: str, data_root=None) -> str:
    """'ok', or why the cached files of built-in domain `name` must be (re)generated."""
    folder = resolve_data_root(data_root) / "builtin" / name
    manifest = folder / "manifest.json"
    if not manifest.exists():
        return "missing"
    try:
        m = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return "unreadable manifest"
    if m.get("hash") != _recipe_hash(_builtin_recipe(name)):
        return "stale (recipe changed)"
    for rel, digest in m.get("files", {}).items():
        p = folder / rel
        if not p.exists():
            return f"missing file {rel}"
        if _sha256(p) != digest:
            return f"modified file {rel}"
    if set(m.get("files", {})) != set(_builtin_files()):
        return "incomplete"
    return "ok"


def generate_builtin(name: str, data_root=None) -> Path:
    """(Re)write built-in domain `name` under <data_root>/builtin/<name>/ and its manifest.

    Per photo: the clean HR; the target LR made by the hidden degradation (seeded by the
    domain and photo name, so a file never depends on generation order); for test
    photos also the source-protocol LR (MATLAB bicubic, 8-bit). The manifest is written
    last, so an interrupted generation is detected and redone.
    """
    fn, recipe = deg.DOMAIN_DEGRADATIONS[name]
    folder = resolve_data_root(data_root) / "builtin" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").unlink(missing_ok=True)
    photos = builtin_photos()
    t0 = time.time()
    digests = {}
    for rel, (photo, role) in _builtin_files().items():
        hr = photos[photo]
        if role == "hr":
            img = hr
        elif role == "target":
            img = fn(hr, zlib.crc32(f"{name}/{photo}".encode()), recipe)
        else:
            img = to_uint8(quantize(deg.bicubic_down(deg.img2tensor(hr), SCALE)))
        write_png(folder / rel, img)
        digests[rel] = _sha256(folder / rel)
    recipe_d = _builtin_recipe(name)
    manifest = {"hash": _recipe_hash(recipe_d), "recipe": recipe_d, "files": digests,
                "seconds": round(time.time() - t0, 2)}
    tmp = folder / f".manifest.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, folder / "manifest.json")
    return folder


def tile_positions(h: int, w: int, tile: int, scale: int = SCALE) -> list[tuple[int, int]]:
    """Top-left HR corners of a centred grid of non-overlapping tile x tile tiles.

    Corners are multiples of `scale` so each HR tile maps onto whole LR pixels.
    """
    rows, cols = h // tile, w // tile
    y0 = (h - rows * tile) // 2 // scale * scale
    x0 = (w - cols * tile) // 2 // scale * scale
    return [(y0 + r * tile, x0 + c * tile) for r in range(rows) for c in range(cols)]


# ---------------------------------------------------------------------------------------
# an optional larger test pool for the built-in domains (issue 25, item 4)
# ---------------------------------------------------------------------------------------

# The built-in test set is 10 tiles cut from 4 packaged photos of 3 scenes. A larger pool of
# real photographs can be installed from a package the registries carry; it replaces the
# built-in test set (target: the domain's hidden degradation; source: MATLAB bicubic), the
# labeled and unlabeled sets stay as they are. Never shipped with pdd, never needed by the
# embedded default. Debian's `mate-backgrounds` (GPL-2+, `apt install mate-backgrounds`):
# twelve nature photographs, 1280-2560 px JPEGs. A copy of the folder under
# <data_root>/<pool>/ is read first (for a machine without the package).
TEST_POOLS = {"mate-backgrounds": "/usr/share/backgrounds/mate/nature"}
POOL_TILES_PER_PHOTO = 8   # evenly spread over each photo's tile grid: no photo dominates the mean
POOL_MIN_PHOTOS = 2        # a pool with fewer readable photos is no pool (photo-level CIs need several)
POOL_FORMAT = 1            # bump when the pool's cache layout or preparation changes


def pool_folder(pool: str, data_root=None) -> Path:
    """Where test pool ``pool``'s photos are: ``<data_root>/<pool>/`` if it exists, else the
    package's folder; DatasetNotFoundError says how to install it when neither exists."""
    if pool not in TEST_POOLS:
        raise ValueError(f"unknown test pool {pool!r}; known: {', '.join(TEST_POOLS)}")
    local = resolve_data_root(data_root) / pool
    for folder in (local, Path(TEST_POOLS[pool])):
        if folder.is_dir():
            return folder
    raise DatasetNotFoundError(
        f"test pool {pool!r} is not installed: neither {local} nor {TEST_POOLS[pool]} exists. On Debian or "
        f"Ubuntu: `sudo apt install {pool}`; elsewhere copy its nature/ folder of photos to {local}. The embedded "
        f"test set (open_domain without test_pool) needs none of it.")


def pool_photos(pool: str, data_root=None) -> tuple[dict[str, np.ndarray], list[str]]:
    """(name -> clean HR uint8 array, skipped files with why) of test pool ``pool``.

    Each photo is halved (2x2 box mean) before use: the pool's wallpapers are JPEGs, and halving
    averages away most of their block artefacts and noise, as HR sets are prepared from larger
    photographs; then cropped at the top-left to a multiple of 8 (as ``builtin_photos``). A file
    that cannot be read, or is smaller than 512 px after halving, is skipped and named."""
    folder = pool_folder(pool, data_root)
    files, _, other = list_photo_files(folder)
    photos, skipped = {}, [f"{shown_path(p, folder)}: {why}" for p, why in other]
    m = 2 * SCALE
    for f in files:
        name = re.sub(r"[^A-Za-z0-9.-]+", "-", str(f.relative_to(folder).with_suffix("")))
        try:
            a = read_image(f)
        except (ImageError, OSError) as e:
            skipped.append(f"{shown_path(f, folder)}: {e}")
            continue
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        a = a[:h, :w].astype(np.float32).reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        if min(a.shape[:2]) < 512:
            skipped.append(f"{shown_path(f, folder)}: {a.shape[1]}x{a.shape[0]} px after halving, under 512")
            continue
        photos[name] = np.ascontiguousarray(a[: a.shape[0] // m * m, : a.shape[1] // m * m])
    if len(photos) < POOL_MIN_PHOTOS:
        raise DatasetNotFoundError(f"test pool {pool!r} at {folder}: {len(photos)} usable photo(s), at least "
                                   f"{POOL_MIN_PHOTOS} needed" + ("; skipped: " + "; ".join(skipped) if skipped else ""))
    return photos, skipped


def shown_path(path, folder) -> str:
    """``path`` relative to ``folder`` where it lies inside it (messages name files briefly)."""
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return str(path)


def _pool_cache(name: str, pool: str, root: Path) -> Path:
    """Generate (or reuse) the test pool's HR, target LR and source LR for built-in domain ``name``
    under <root>/builtin/<name>/pool-<pool>/; its manifest names the recipe, the pool's files by
    their digests and what was skipped, and is written last (an interrupted generation is redone)."""
    folder = root / "builtin" / name / f"pool-{pool}"
    source = pool_folder(pool, root)
    files, _, _ = list_photo_files(source)
    recipe = {"format": POOL_FORMAT, "domain_recipe": _recipe_hash(_builtin_recipe(name)), "pool": pool,
              "sources": {shown_path(f, source): hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in files}}
    manifest = folder / "manifest.json"
    try:
        m = json.loads(manifest.read_text())
        if m.get("hash") == _recipe_hash(recipe) and all(
                (folder / rel).exists() and _sha256(folder / rel) == d for rel, d in m["files"].items()):
            return folder
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        pass
    t0 = time.time()
    print(f"pdd.data: preparing test pool {pool} for {name} under {folder} ...", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    photos, skipped = pool_photos(pool, root)
    for why in skipped:
        print(f"pdd.data: test pool {pool}: skipped {why}", file=sys.stderr)
    fn, rec = deg.DOMAIN_DEGRADATIONS[name]
    digests = {}
    for photo, hr in photos.items():
        imgs = {"hr": hr, "lr": fn(hr, zlib.crc32(f"{name}/{pool}/{photo}".encode()), rec),
                "bicubic": to_uint8(quantize(deg.bicubic_down(deg.img2tensor(hr), SCALE)))}
        for role, img in imgs.items():
            write_png(folder / f"{photo}_{role}.png", img)
            digests[f"{photo}_{role}.png"] = _sha256(folder / f"{photo}_{role}.png")
    tmp = folder / f".manifest.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"hash": _recipe_hash(recipe), "recipe": recipe, "files": digests,
                               "photos": sorted(photos), "skipped": skipped,
                               "seconds": round(time.time() - t0, 2)}, indent=1, sort_keys=True))
    os.replace(tmp, manifest)
    print(f"pdd.data: test pool {pool} ready ({len(photos)} photos, {time.time() - t0:.0f} s)", file=sys.stderr)
    return folder


def _pool_tiles(name: str, pool: str, root: Path, test_tile: int, tiles_per_photo: int):
    """(target tiles, source tiles, photos) of the test pool: per photo ``tiles_per_photo`` of its
    disjoint ``test_tile`` grid, evenly spread over it."""
    if tiles_per_photo < 1:
        raise ValueError(f"tiles_per_photo={tiles_per_photo}: at least 1")
    folder = _pool_cache(name, pool, root)
    photos = json.loads((folder / "manifest.json").read_text())["photos"]
    tiles, src_tiles = [], []
    lt = test_tile // SCALE
    for p in photos:
        hr = read_image(folder / f"{p}_hr.png")
        lr = read_image(folder / f"{p}_lr.png")
        src = read_image(folder / f"{p}_bicubic.png")
        grid = tile_positions(*hr.shape[:2], test_tile)
        keep = np.unique(np.linspace(0, len(grid) - 1, min(tiles_per_photo, len(grid))).round().astype(int))
        for k in keep.tolist():
            y, x = grid[k]
            ly, lx = y // SCALE, x // SCALE
            hr_t = hr[y:y + test_tile, x:x + test_tile]
            tiles.append((lr[ly:ly + lt, lx:lx + lt], hr_t, f"{p}_t{k}"))
            src_tiles.append((src[ly:ly + lt, lx:lx + lt], hr_t, f"{p}_t{k}"))
    return tiles, src_tiles, photos


def _open_builtin(name: str, root: Path, test_tile: int, n_test_tiles, regenerate: bool,
                  test_pool: str | None = None, tiles_per_photo: int = POOL_TILES_PER_PHOTO) -> Domain:
    status = "regenerate requested" if regenerate else builtin_cache_status(name, root)
    folder = root / "builtin" / name
    if status != "ok":
        t0 = time.time()
        print(f"pdd.data: generating built-in domain {name} under {folder} ({status}) ...", file=sys.stderr)
        generate_builtin(name, root)
        print(f"pdd.data: {name} generated in {time.time() - t0:.1f} s", file=sys.stderr)
    if test_tile % SCALE:
        raise ValueError(f"test_tile={test_tile} must be a multiple of the scale {SCALE}")
    labeled = ImageFolder([folder / f"labeled/{p}.png" for p in BUILTIN_SPLIT["labeled"]], cache=True)
    unlabeled = ImageFolder([folder / f"unlabeled/{p}.png" for p in BUILTIN_SPLIT["unlabeled"]], cache=True)
    tiles, src_tiles = [], []
    lt = test_tile // SCALE
    test_photos = BUILTIN_SPLIT["test"]
    if test_pool is not None:
        tiles, src_tiles, test_photos = _pool_tiles(name, test_pool, root, test_tile, tiles_per_photo)
    for p in BUILTIN_SPLIT["test"] if test_pool is None else ():
        hr = read_image(folder / f"test/{p}_hr.png")
        lr = read_image(folder / f"test/{p}_lr.png")
        src = read_image(folder / f"test/{p}_bicubic.png")
        for k, (y, x) in enumerate(tile_positions(*hr.shape[:2], test_tile)):
            ly, lx = y // SCALE, x // SCALE
            hr_t = hr[y:y + test_tile, x:x + test_tile]
            tname = f"{p}_t{k}"
            tiles.append((lr[ly:ly + lt, lx:lx + lt], hr_t, tname))
            src_tiles.append((src[ly:ly + lt, lx:lx + lt], hr_t, tname))
    if n_test_tiles is not None:
        if not 1 <= n_test_tiles <= len(tiles):
            raise ValueError(f"n_test_tiles={n_test_tiles}: {name} has {len(tiles)} test tiles of "
                             f"{test_tile} px (choose 1..{len(tiles)} or a smaller test_tile)")
        # Evenly spread over the list so every test photo keeps some tiles.
        keep = np.linspace(0, len(tiles) - 1, n_test_tiles).round().astype(int).tolist()
        tiles, src_tiles = [tiles[i] for i in keep], [src_tiles[i] for i in keep]
    fn = deg.DOMAIN_DEGRADATIONS[name][0]
    return Domain(
        name=name, kind="builtin", labeled_hr=labeled, unlabeled_lr=unlabeled, test_pairs=tiles,
        root=folder, _source_test_pairs=src_tiles,
        sources={"labeled": "packaged photos " + ", ".join(BUILTIN_SPLIT["labeled"]),
                 "unlabeled": "hidden degradation of " + ", ".join(BUILTIN_SPLIT["unlabeled"]),
                 "test": f"{len(tiles)} tiles of HR {test_tile} / LR {lt} from "
                         + (f"test pool {test_pool} ({len(test_photos)} photos: " if test_pool else "")
                         + ", ".join(test_photos) + (")" if test_pool else "")},
        notes="Hidden degradation: " + " ".join(fn.__doc__.split("\n\n")[0].split()))


def list_domains() -> list[str]:
    """Names accepted by `open_domain`: built-in domains first, then real datasets."""
    return builtin_domain_names() + list(REAL_DOMAINS)


def open_domain(name: str, data_root=None, *, labeled: str = "auto", test_tile: int = 256,
                n_test_tiles: int | None = None, regenerate: bool = False, test_pool: str | None = None,
                tiles_per_photo: int = POOL_TILES_PER_PHOTO, **folder_kw) -> Domain:
    """Open a domain by name (case-insensitive); see `list_domains()`, or ``"folder:PATH"``:
    a folder of your own LR photos as X^U (`open_folder_domain`; labeled "auto"
    there falls back to the packaged photos when DF2K/DIV2K are absent).

    data_root: argument -> $PDD_DATA_ROOT -> <repo>/data.
    labeled (real domains): "auto" (the dataset's own clean HR for NTIRE20, else
        DF2K/HR then DIV2K/DIV2K_train_HR; missing -> DatasetNotFoundError), "DF2K",
        "DIV2K", "builtin" (the packaged photos), or a folder of PNGs.
    test_tile, n_test_tiles (built-in domains): HR tile size of the held-out test set
        and how many tiles to keep (None = all; with 256 px that is 10 tiles, 10 x 64^2
        LR pixels). Built-in files are generated on first use (seconds) and whenever
        their manifest is stale; `regenerate=True` forces it.
    test_pool, tiles_per_photo (built-in domains): instead of the packaged test photos, the
        photographs of an installed test pool (``TEST_POOLS``: "mate-backgrounds"), degraded
        by the domain's hidden degradation, ``tiles_per_photo`` disjoint tiles of each
        (``pool_photos``, ``_pool_cache``). Not installed: DatasetNotFoundError saying how.
    """
    if test_pool is not None and (str(name).lower().startswith("folder:") or
                                  {n.lower() for n in REAL_DOMAINS} & {str(name).lower()}):
        raise ValueError(f"test_pool applies to the built-in domains ({', '.join(builtin_domain_names())}), "
                         f"not {name!r}: a real dataset has its own test set")
    if str(name).lower().startswith("folder:"):
        # A folder of the user's own LR photos (pdd.photos); folder_kw: pairs_dir, min_side, max_side.
        return open_folder_domain(str(name)[len("folder:"):], resolve_data_root(data_root), labeled=labeled,
                                  **folder_kw)
    valid = list_domains()
    match = {n.lower(): n for n in valid}.get(str(name).lower())
    if match is None:
        raise ValueError(f"unknown domain {name!r}; valid names: {', '.join(valid)}")
    root = resolve_data_root(data_root)
    if match in REAL_DOMAINS:
        return _open_real(match, root, labeled)
    if labeled != "auto":
        raise ValueError(f"labeled={labeled!r} applies to real domains; built-in domain {match} always uses "
                         f"its own clean photos ({', '.join(BUILTIN_SPLIT['labeled'])})")
    return _open_builtin(match, root, test_tile, n_test_tiles, regenerate, test_pool, tiles_per_photo)


# ---------------------------------------------------------------------------------------
# samplers
# ---------------------------------------------------------------------------------------

_LABELED_STREAM, _UNLABELED_STREAM = 0, 1
DOWN_MODES = ("bicubic", "random", "second_order")  # how LabeledPatches makes X^L
NOMINAL_LENGTH = 10 ** 9  # "infinite" streams; item i is a pure function of (seed, i)


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    # SeedSequence mixes the three integers, so neighbouring indices and seeds give
    # independent streams, and labeled / unlabeled draws never coincide.
    return np.random.default_rng([int(seed), stream, int(index)])


def _check_sizes(images, need: int, names, what: str) -> None:
    names = _names(images, names)
    for i, (h, w) in enumerate(_sizes(images)):
        if h < need or w < need:
            raise ImageError(f"{names[i]}: {what} image is {w}x{h}, smaller than the {need}x{need} patch it must "
                             f"provide")


def _augment(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    hflip, vflip, transpose = rng.random(3) < 0.5
    if hflip:
        patch = patch[:, ::-1]
    if vflip:
        patch = patch[::-1]
    if transpose:  # with the flips: all 8 rotations / reflections
        patch = patch.transpose(1, 0, 2)
    return patch


class LabeledPatches(torch.utils.data.Dataset):
    """Item i -> (x_l (3,p,p), y_l (3,p*s,p*s)): a labeled pair made on the fly.

    As the official configs: pick an HR image uniformly, crop patch*scale at a uniform
    position, random h-flip / v-flip / transpose (p = 0.5 each), downscale
    (down="bicubic": MATLAB bicubic; "random": bicubic / bilinear / area, see
    `pdd.degradations.random_down`; "second_order": Real-ESRGAN's generalist pipeline
    with default `SecondOrderConfig`, for supervised training on the generalist's
    distribution; y_l stays the clean crop), round to 8 bits. Deterministic in (seed, i).
    """

    def __init__(self, hr_images, patch: int = 48, scale: int = SCALE, down: str = "bicubic", seed: int = 0,
                 names=None):
        if down not in DOWN_MODES:
            raise ValueError(f"down={down!r}: choose one of {', '.join(DOWN_MODES)}")
        if len(hr_images) == 0:
            raise ValueError("LabeledPatches: no HR images")
        self.images, self.patch, self.scale, self.down, self.seed = hr_images, patch, scale, down, seed
        _check_sizes(hr_images, patch * scale, names, "labeled HR")

    def __len__(self):
        return NOMINAL_LENGTH

    def hr_crop(self, i: int) -> tuple[np.ndarray, np.random.Generator]:
        rng = _rng(self.seed, _LABELED_STREAM, i)
        img = self.images[int(rng.integers(len(self.images)))]
        p = self.patch * self.scale
        top, left = int(rng.integers(img.shape[0] - p + 1)), int(rng.integers(img.shape[1] - p + 1))
        return _augment(img[top:top + p, left:left + p], rng), rng

    def __getitem__(self, i):
        crop, rng = self.hr_crop(i)
        y = deg.img2tensor(crop)
        if self.down == "bicubic":
            x = deg.bicubic_down(y, self.scale)
        else:
            g = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
            if self.down == "random":
                x = deg.random_down(y, self.scale, g)
            else:
                x = deg.second_order(y, deg.SecondOrderConfig(scale=self.scale), g)
        return quantize(x)[0], y[0]


class UnlabeledPatches(torch.utils.data.Dataset):
    """Item i -> x_u (3,p,p): a random target-LR crop with flips / rotation (p = 0.5 each).

    As BasicSR's SingleImageDataset with use_hflip/use_rot: image picked uniformly,
    crop position uniform. Deterministic in (seed, i).
    """

    def __init__(self, lr_images, patch: int = 48, seed: int = 0, names=None):
        if len(lr_images) == 0:
            raise ValueError("UnlabeledPatches: no LR images")
        self.images, self.patch, self.seed = lr_images, patch, seed
        _check_sizes(lr_images, patch, names, "unlabeled LR")

    def __len__(self):
        return NOMINAL_LENGTH

    def __getitem__(self, i):
        rng = _rng(self.seed, _UNLABELED_STREAM, i)
        img = self.images[int(rng.integers(len(self.images)))]
        p = self.patch
        top, left = int(rng.integers(img.shape[0] - p + 1)), int(rng.integers(img.shape[1] - p + 1))
        crop = _augment(img[top:top + p, left:left + p], rng)
        if crop.dtype == np.uint16:  # 16-bit photos of a folder domain keep their depth up to here
            return torch.from_numpy(crop.astype(np.float32) / 65535.0).permute(2, 0, 1)
        return deg.img2tensor(crop)[0]


def mixed_batch(labeled: LabeledPatches, unlabeled: UnlabeledPatches, iteration: int, batch_l: int,
                batch_u: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_l, y_l, x_u) of training iteration `iteration`: items iteration*batch .. +batch-1.

    Depends only on the samplers' seeds and `iteration`, so resuming at iteration k
    reproduces the uninterrupted run's batches.
    """
    pairs = [labeled[iteration * batch_l + k] for k in range(batch_l)]
    x_u = torch.stack([unlabeled[iteration * batch_u + k] for k in range(batch_u)])
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]), x_u


class MixedBatches(torch.utils.data.Dataset):
    """Item k = mixed_batch(..., iteration=start + k): whole batches, for a DataLoader.

    Use ``DataLoader(MixedBatches(...), batch_size=None, num_workers=n)``: workers build
    whole iterations in parallel, in order, identical to calling `mixed_batch` directly.
    Never pass shuffle=True: the randomness is already in the (seed, index) streams, and
    a RandomSampler would try to permute all 10**9 nominal indices. To resume at
    iteration k, build it with start=k.
    """

    def __init__(self, labeled: LabeledPatches, unlabeled: UnlabeledPatches, batch_l: int, batch_u: int,
                 start: int = 0):
        self.labeled, self.unlabeled, self.batch_l, self.batch_u, self.start = labeled, unlabeled, batch_l, batch_u, start

    def __len__(self):
        return NOMINAL_LENGTH

    def __getitem__(self, k):
        return mixed_batch(self.labeled, self.unlabeled, self.start + k, self.batch_l, self.batch_u)


# ------------------------------------------------------------------------------ a folder of your own photos


def read_pairs(pairs_dir, scale: int = 4) -> tuple[list, list[tuple[Path, str]]]:
    """Held-out (lr, hr, name) uint8 pairs from ``pairs_dir/lr`` and ``pairs_dir/hr``, matched
    by name (``_hr``/``_lr4``/``_x4`` suffixes ignored); HR must be scale x LR (up to scale-1
    extra pixels, cropped). Returns (pairs, skipped with reasons)."""
    pairs_dir = Path(pairs_dir)
    if not (pairs_dir / "lr").is_dir() or not (pairs_dir / "hr").is_dir():
        raise PhotoError(f"{pairs_dir}: expected subfolders lr/ and hr/ (files matched by name)")
    lr_files = {_pair_key(p): p for p in list_photo_files(pairs_dir / "lr")[0]}
    hr_files = {_pair_key(p): p for p in list_photo_files(pairs_dir / "hr")[0]}
    pairs, skipped = [], []
    for k in sorted(set(lr_files) ^ set(hr_files)):
        skipped.append((lr_files.get(k) or hr_files.get(k), "no partner with the same name in lr/ or hr/"))
    for k in sorted(set(lr_files) & set(hr_files)):
        try:
            lr, hr = to_uint8(read_photo(lr_files[k]).pixels), to_uint8(read_photo(hr_files[k]).pixels)
            pairs.append((lr, _check_pair(lr, hr, scale, str(hr_files[k])), k))
        except (PhotoError, ValueError) as e:
            skipped.append((hr_files[k], str(e)))
    return pairs, skipped


def open_folder_domain(lr_dir, root: Path, labeled="auto", pairs_dir=None, min_side: int = 16,
                       max_side: int = MAX_SIDE, scale: int = 4, verbose: bool = True):
    """The `Domain` of a folder of the user's LR photos (see `pdd.data.open_domain`).

    labeled: "auto" = DF2K, else DIV2K under the data root, else the packaged photos;
    "builtin"; or a folder of the user's own clean HR photos (read like the LR ones).
    """
    unlabeled = scan_photos(lr_dir, min_side=min_side, max_side=max_side)
    if labeled in ("auto", "DF2K", "DIV2K", "builtin"):
        try:
            labeled_hr, labeled_src = _open_labeled(root, labeled, None)
        except DatasetNotFoundError:
            if labeled != "auto":
                raise
            labeled_hr, labeled_src = _open_labeled(root, "builtin", None)
    else:
        labeled_hr = scan_photos(labeled, min_side=min_side * scale, max_side=max_side * scale, eight_bit=True)
        labeled_src = f"your HR photos: {labeled_hr!r}"
    pairs, pair_skips = read_pairs(pairs_dir, scale) if pairs_dir else ([], [])
    if verbose:
        print("pdd.photos: " + unlabeled.report.summary(), file=sys.stderr)
        for p, why in pair_skips:
            print(f"pdd.photos: pairs: skipped {p}: {why}", file=sys.stderr)
    return Domain(
        name=f"folder:{Path(lr_dir)}", kind="folder", labeled_hr=labeled_hr, unlabeled_lr=unlabeled,
        test_pairs=pairs, scale=scale, root=Path(lr_dir),
        sources={"labeled": labeled_src, "unlabeled": repr(unlabeled),
                 "test": f"{len(pairs)} pairs from {pairs_dir}" if pairs_dir else "none (no --pairs-dir)"},
        notes=unlabeled.report.summary().splitlines()[0])
