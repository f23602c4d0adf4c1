"""A user's own photos: read any common photo file faithfully, and turn a folder into X^U.

`read_photo` is the reader for photos we did not make ourselves (unlike `pdd.data.read_image`,
which reads datasets in stored order and always returns 8 bit):
- EXIF orientation is applied (phones store portrait shots sideways with a rotate tag);
- 16-bit PNG / TIFF stay 16-bit (uint16) until the network input;
- grayscale is replicated to RGB and alpha is split off (returned separately), each noted;
- HEIC/HEIF through the optional `pillow-heif` (``pip install 'pdd[heic]'``).

`scan_photos` walks a folder recursively, skips system files (.DS_Store, Thumbs.db,
desktop.ini, anything hidden), decodes every candidate once so a corrupt file is found now
rather than half-way through training, lists every skipped file with its reason, and cuts
very large photos into patches (never resizes them: resizing would change the very
degradation PDD adapts to). `PhotoSet` is the result: a list-like of HxWx3 arrays that
`pdd.data.UnlabeledPatches` samples from; `pdd.data.open_folder_domain` builds the `Domain`
that ``pdd.data.open_domain("folder:PATH")`` returns from it (this module knows files, not domains).
"""
from __future__ import annotations

import io
import logging
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .imageops import to_uint8

log = logging.getLogger("pdd.photos")

PHOTO_EXTS = {".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif", ".avif"}
HEIC_EXTS = {".heic", ".heif"}
RAW_EXTS = {".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf", ".pef", ".srw"}
SYSTEM_NAMES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}
SYSTEM_DIRS = {"__macosx", "@eadir", "$recycle.bin", "system volume information"}
MAX_SIDE = 1024          # photos wider or taller than this (LR px) are cut into patches
CACHE_PIXELS = 64_000_000  # decoded patches kept in memory up to this many pixels (as pdd.data)


class PhotoError(ValueError):
    """A photo that cannot be used (unreadable, unsupported, too small); names the file."""


@dataclass
class Photo:
    pixels: np.ndarray           # HxWx3 uint8 or uint16, RGB, upright
    alpha: np.ndarray | None     # HxW, same dtype, or None
    notes: list[str] = field(default_factory=list)

    @property
    def bits(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8


# ------------------------------------------------------------------------------ reading


def heif_available() -> bool:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


def _register_heif() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation (tag 0x0112) to an HxW[xC] array, as viewers display it."""
    ops = {
        1: lambda x: x,
        2: lambda x: x[:, ::-1],                       # mirrored left-right
        3: lambda x: x[::-1, ::-1],                    # rotated 180
        4: lambda x: x[::-1],                          # mirrored top-bottom
        5: lambda x: np.swapaxes(x, 0, 1),             # transposed
        6: lambda x: np.swapaxes(x, 0, 1)[:, ::-1],    # stored rotated 90 CCW: turn it 90 CW
        7: lambda x: np.swapaxes(x, 0, 1)[::-1, ::-1],  # transverse
        8: lambda x: np.swapaxes(x, 0, 1)[::-1],       # stored rotated 90 CW: turn it 90 CCW
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(a))


def _exif_orientation(data: bytes) -> int:
    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001 -- no EXIF or a header PIL cannot parse: stored order
        return 1


def _decode(path: Path, data: bytes) -> np.ndarray:
    """The stored pixels: HxW or HxWxC, uint8 or uint16 (never truncated to 8 bit)."""
    ext = path.suffix.lower()
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 24 and data[24] == 16:
        # Pillow truncates 16-bit RGB PNG to its high byte; torchvision's libpng does not.
        from torchvision.io import ImageReadMode, decode_png

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            t = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
        return t.permute(1, 2, 0).numpy().astype(np.uint16)
    if ext in (".tif", ".tiff"):
        import tifffile  # a dependency of scikit-image; reads 16-bit RGB TIFF that Pillow cannot

        try:
            a = tifffile.imread(io.BytesIO(data), key=0)
        except ValueError as e:
            # LZW / JPEG compression need the optional imagecodecs; Pillow decodes those, but
            # only up to 8 bits per colour channel, so 16-bit colour must not go that way.
            if "imagecodecs" not in str(e):
                raise
            with tifffile.TiffFile(io.BytesIO(data)) as tf:
                page = tf.pages[0]
                if page.bitspersample > 8 and page.samplesperpixel > 1:
                    raise PhotoError(f"{path}: {page.bitspersample}-bit colour TIFF with {page.compression.name} "
                                     f"compression: pip install imagecodecs to read it at full depth") from e
            a = None  # 8-bit, or 16-bit grey: Pillow below
        if a is not None:
            if a.ndim == 3 and a.shape[0] in (1, 2, 3, 4) and a.shape[2] not in (1, 2, 3, 4):
                a = np.moveaxis(a, 0, -1)  # planar (C,H,W) storage
            if a.dtype == np.uint8 or a.dtype == np.uint16:
                return a
            if a.dtype == bool:
                return a.astype(np.uint8) * 255
            raise PhotoError(f"{path}: {a.dtype} TIFF is not supported (expected 8 or 16 bit integers)")
    if ext in HEIC_EXTS:
        if not heif_available():
            raise PhotoError(f"{path}: HEIC/HEIF needs the optional package pillow-heif "
                             f"(pip install 'pdd[heic]' or pip install pillow-heif); skipped")
        _register_heif()
    im = Image.open(io.BytesIO(data))
    im.load()  # decode now, so truncation surfaces here
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.array(im).astype(np.uint16)
    if mode == "I":
        a = np.array(im)
        if a.min() < 0 or a.max() > 65535:
            raise PhotoError(f"{path}: 32-bit integer image with values outside 0..65535 is not supported")
        return a.astype(np.uint16)
    if mode == "F":
        raise PhotoError(f"{path}: floating-point images are not supported (expected 8 or 16 bit)")
    if mode in ("RGB", "L", "RGBA", "LA"):
        return np.array(im)
    if mode == "1":
        return np.array(im.convert("L"))
    if mode in ("P", "PA"):
        return np.array(im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB"))
    return np.array(im.convert("RGB"))  # CMYK, YCbCr, LAB, ...


def read_photo(path) -> Photo:
    """Read one photo upright, at its stored bit depth; raises `PhotoError` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PhotoError(f"{path}: cannot read ({type(e).__name__}: {e})") from e
    try:
        a = _decode(path, data)
    except PhotoError:
        raise
    except Exception as e:  # noqa: BLE001 -- any decoder failure is this file's problem, named
        raise PhotoError(f"{path}: not a readable image ({type(e).__name__}: {str(e)[:200]})") from e
    notes = []
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4) or a.size == 0:
        raise PhotoError(f"{path}: unsupported pixel layout {a.shape}")
    alpha = None
    if a.shape[2] in (2, 4):
        alpha, a = a[:, :, -1], a[:, :, :-1]
        notes.append("alpha channel split off")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
        notes.append("grayscale replicated to RGB")
    orientation = _exif_orientation(data)
    if orientation != 1:
        a = _orient(a, orientation)
        alpha = None if alpha is None else _orient(alpha, orientation)
        notes.append(f"EXIF orientation {orientation} applied")
    if a.dtype == np.uint16:
        notes.append("16-bit kept")
    return Photo(np.ascontiguousarray(a), alpha, notes)


def to_float(a: np.ndarray) -> np.ndarray:
    """uint8 / uint16 array -> float32 in [0, 1] (full-range scaling)."""
    return a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 else 255.0)


# ------------------------------------------------------------------------------ scanning


def is_system_file(rel: Path) -> bool:
    """Hidden files and folders, OS thumbnails and metadata, resource forks (._name)."""
    parts = rel.parts
    if any(p.startswith(".") for p in parts) or any(p.lower() in SYSTEM_DIRS for p in parts[:-1]):
        return True
    return parts[-1].lower() in SYSTEM_NAMES


def list_photo_files(root) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """(candidate photo files, system files, other files with the reason they are not photos)."""
    root = Path(root)
    photos, system, other = [], [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            rel = p.relative_to(root)
            ext = p.suffix.lower()
            if is_system_file(rel):
                system.append(p)
            elif ext in PHOTO_EXTS:
                photos.append(p)
            elif ext in RAW_EXTS:
                other.append((p, "camera RAW is not read; export it to TIFF (16-bit) or PNG first"))
            else:
                other.append((p, f"not a photo file type ({ext or 'no extension'})"))
    return photos, system, other


def _split(n: int, max_len: int) -> list[tuple[int, int]]:
    """[0, n) cut into the fewest near-equal pieces of at most max_len."""
    k = -(-n // max_len)
    edges = [round(i * n / k) for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:]))


@dataclass
class ScanReport:
    root: Path
    used: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)   # listed to the user
    system: list[Path] = field(default_factory=list)                # silently expected, counted
    notes: dict = field(default_factory=dict)                       # path -> conversions applied
    patches: int = 0

    def summary(self) -> str:
        lines = [f"{self.root}: {len(self.used)} photos used ({self.patches} patches), "
                 f"{len(self.skipped)} skipped, {len(self.system)} system/hidden files ignored"]
        conv: dict[str, int] = {}
        for ns in self.notes.values():
            for n in ns:
                conv[n.split(" (")[0]] = conv.get(n.split(" (")[0], 0) + 1
        if conv:
            lines.append("  conversions: " + ", ".join(f"{k}: {v}" for k, v in sorted(conv.items())))
        for p, why in self.skipped:
            lines.append(f"  skipped {p}: {why}")
        return "\n".join(lines)


class PhotoSet(Sequence):
    """Patches of a folder's photos as HxWx3 arrays (uint8, or uint16 for 16-bit photos).

    Item i is box i of some photo; boxes tile each photo without overlap, at most
    `max_side` on a side. Decoded photos are kept in memory when the whole set is at most
    CACHE_PIXELS, else the last photo decoded is kept (patches of one photo are neighbours).
    ``eight_bit=True`` returns uint8 always (for the labeled pool, whose X^L is 8-bit anyway).
    """

    def __init__(self, items, report: ScanReport, eight_bit: bool = False):
        self.items = list(items)  # (path, (top, left, bottom, right))
        self.report, self.eight_bit = report, eight_bit
        self.paths = [p for p, _ in self.items]
        per_photo = Counter(self.paths)
        seen: Counter = Counter()
        self.names = []
        for p in self.paths:  # "photo.jpg", or "photo.jpg#k" for patch k of a photo cut into several
            self.names.append(f"{p.relative_to(report.root)}" + (f"#{seen[p]}" if per_photo[p] > 1 else ""))
            seen[p] += 1
        total = sum((b[2] - b[0]) * (b[3] - b[1]) for _, b in self.items)
        self.cache_all = total <= CACHE_PIXELS
        self._decoded: dict[Path, np.ndarray] = {}

    def __len__(self):
        return len(self.items)

    def _photo(self, p: Path) -> np.ndarray:
        if p not in self._decoded:
            if not self.cache_all:
                self._decoded.clear()
            a = read_photo(p).pixels
            self._decoded[p] = to_uint8(a) if self.eight_bit else a
        return self._decoded[p]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        p, (t, l, b, r) = self.items[range(len(self))[i]]
        return self._photo(p)[t:b, l:r]

    @property
    def sizes(self) -> list[tuple[int, int]]:
        return [(b - t, r - l) for _, (t, l, b, r) in self.items]

    def __repr__(self):
        return f"PhotoSet({len(self)} patches of {len(self.report.used)} photos under {self.report.root})"


def scan_photos(root, min_side: int = 16, max_side: int = MAX_SIDE, eight_bit: bool = False,
                progress: bool = False) -> PhotoSet:
    """Every usable photo under `root` (recursive), as a `PhotoSet`; bad files are listed in
    ``.report.skipped`` with their reason, never raised. Raises `PhotoError` only when the
    folder does not exist or nothing in it is usable (with the reasons)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise PhotoError(f"{root}: not a folder of photos")
    if max_side < min_side:
        raise ValueError(f"max_side={max_side} < min_side={min_side}")
    files, system, other = list_photo_files(root)
    report = ScanReport(root, system=system, skipped=list(other))
    items = []
    try:
        from tqdm.auto import tqdm
        it = tqdm(files, desc="reading photos", disable=not progress, leave=False)
    except ImportError:
        it = files
    for p in it:
        try:
            photo = read_photo(p)
        except PhotoError as e:
            report.skipped.append((p, str(e).removeprefix(f"{p}: ")))
            continue
        h, w = photo.pixels.shape[:2]
        if min(h, w) < min_side:
            report.skipped.append((p, f"too small: {w}x{h}, needs at least {min_side} px on each side"))
            continue
        report.used.append(p)
        if photo.notes:
            report.notes[p] = photo.notes
            for n in photo.notes:
                log.info("%s: %s", p, n)
        for t, b in _split(h, max_side):
            for l, r in _split(w, max_side):
                items.append((p, (t, l, b, r)))
    report.patches = len(items)
    for p, why in report.skipped:
        log.warning("skipped %s: %s", p, why)
    if not items:
        reasons = "\n  ".join(f"{p}: {why}" for p, why in report.skipped[:10]) or "(no photo files at all)"
        raise PhotoError(f"{root}: no usable photos ({len(files)} photo files, {len(system)} system files).\n  "
                         + reasons)
    return PhotoSet(items, report, eight_bit=eight_bit)
