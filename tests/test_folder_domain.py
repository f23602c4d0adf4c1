"""A folder of the user's photos as a domain: every ingestion case, with files the tests write."""
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from pdd import data as D
from pdd import photos as P
from pdd.data import UnlabeledPatches, open_domain
from pdd.imageops import to_uint8


def _png16(path, a: np.ndarray) -> None:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one): IHDR depth 16, colour type 2."""
    h, w, _ = a.shape
    raw = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))  # filter 0 per row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _marked(h=20, w=30):
    """Black image with a red pixel at the top-left and a green one at the top-right."""
    a = np.zeros((h, w, 3), np.uint8)
    a[0, 0] = (255, 0, 0)
    a[0, w - 1] = (0, 255, 0)
    return a


def _with_orientation(path, a, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(a).save(path, exif=exif)


def test_exif_orientation_6_turns_the_photo_upright(tmp_path):
    # Orientation 6: the camera was turned 90 deg clockwise... the viewer rotates the stored
    # pixels 90 deg clockwise: stored top-left goes to the top-right, stored top-right to the
    # bottom-right, and W x H becomes H x W.
    a = _marked(20, 30)
    _with_orientation(tmp_path / "p.png", a, 6)
    got = P.read_photo(tmp_path / "p.png")
    assert got.pixels.shape == (30, 20, 3)
    assert tuple(got.pixels[0, 19]) == (255, 0, 0)
    assert tuple(got.pixels[29, 19]) == (0, 255, 0)
    assert any("orientation 6" in n for n in got.notes)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_pillows_exif_transpose(tmp_path, orientation):
    a = np.random.default_rng(orientation).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    _with_orientation(tmp_path / "p.png", a, orientation)
    want = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "p.png")).convert("RGB"))
    np.testing.assert_array_equal(P.read_photo(tmp_path / "p.png").pixels, want)


def test_16bit_png_and_tiff_are_kept_16bit(tmp_path):
    import tifffile

    a = np.random.default_rng(0).integers(0, 65536, (9, 13, 3), dtype=np.uint16)
    _png16(tmp_path / "a.png", a)
    tifffile.imwrite(tmp_path / "a.tif", a)
    for name in ("a.png", "a.tif"):
        got = P.read_photo(tmp_path / name)
        assert got.pixels.dtype == np.uint16 and got.bits == 16
        np.testing.assert_array_equal(got.pixels, a)
    # 16-bit grayscale through Pillow: replicated, still 16-bit
    g = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 500
    Image.fromarray(g).save(tmp_path / "g.png")
    got = P.read_photo(tmp_path / "g.png")
    assert got.pixels.dtype == np.uint16 and got.pixels.shape == (12, 10, 3)
    np.testing.assert_array_equal(got.pixels[..., 2], g)


def test_rgba_alpha_split_and_grayscale_replicated(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (8, 9, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    got = P.read_photo(tmp_path / "a.png")
    np.testing.assert_array_equal(got.pixels, rgba[..., :3])  # colour kept as stored, not composited
    np.testing.assert_array_equal(got.alpha, rgba[..., 3])
    assert "alpha channel split off" in got.notes
    gray = np.random.default_rng(2).integers(0, 256, (8, 9), dtype=np.uint8)
    Image.fromarray(gray, "L").save(tmp_path / "g.bmp")
    got = P.read_photo(tmp_path / "g.bmp")
    assert got.pixels.shape == (8, 9, 3) and all((got.pixels[..., c] == gray).all() for c in range(3))
    assert "grayscale replicated to RGB" in got.notes


def test_common_formats_are_read(tmp_path):
    a = np.random.default_rng(3).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    for ext, kw in ((".jpg", {"quality": 100, "subsampling": 0}), (".webp", {"lossless": True}), (".bmp", {}),
                    (".tiff", {}), (".tif", {"compression": "tiff_lzw"})):  # LZW: Pillow's decoder, not tifffile's
        Image.fromarray(a).save(tmp_path / f"x{ext}", **kw)
        got = P.read_photo(tmp_path / f"x{ext}").pixels
        assert got.shape == a.shape and got.dtype == np.uint8
        tol = 3 if ext == ".jpg" else 0  # JPEG is lossy; the others must be exact
        assert np.abs(got.astype(int) - a).mean() <= tol


def _folder(tmp_path):
    """A messy photo folder: nested, system files, corrupt, too small, not a photo, RAW."""
    rng = np.random.default_rng(4)
    root = tmp_path / "photos"
    (root / "2024" / "trip").mkdir(parents=True)
    (root / "__MACOSX").mkdir()
    (root / ".thumbnails").mkdir()
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (60, 40, 3), dtype=np.uint8)).save(root / "2024" / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(root / "2024" / "trip" / "c.webp")
    Image.fromarray(rng.integers(0, 256, (8, 100, 3), dtype=np.uint8)).save(root / "tiny.png")
    full = (root / "a.png").read_bytes()
    (root / "2024" / "broken.png").write_bytes(full[: len(full) // 2])
    (root / "notes.txt").write_text("hello")
    (root / "IMG_0001.CR2").write_bytes(b"II*\0raw")
    for name in (".DS_Store", "Thumbs.db", "desktop.ini", "._a.png", ".hidden.png"):
        (root / name).write_bytes(b"junk")
    (root / "__MACOSX" / "a.png").write_bytes(full)
    (root / ".thumbnails" / "a.png").write_bytes(full)
    return root


def test_scan_skips_lists_and_counts(tmp_path):
    root = _folder(tmp_path)
    s = P.scan_photos(root, min_side=16)
    rep = s.report
    used = sorted(p.relative_to(root).as_posix() for p in rep.used)
    assert used == ["2024/b.jpg", "2024/trip/c.webp", "a.png"]
    skipped = {p.relative_to(root).as_posix(): why for p, why in rep.skipped}
    assert set(skipped) == {"tiny.png", "2024/broken.png", "notes.txt", "IMG_0001.CR2"}
    assert "too small: 100x8" in skipped["tiny.png"]
    assert "not a readable image" in skipped["2024/broken.png"]
    assert "RAW" in skipped["IMG_0001.CR2"]
    assert len(rep.system) == 7  # 5 named files + __MACOSX/a.png + .thumbnails/a.png
    text = rep.summary()
    assert "3 photos used" in text and "4 skipped" in text and "7 system/hidden" in text
    assert "broken.png" in text and "tiny.png" in text
    assert len(s) == 3 and sorted(s.sizes) == sorted([(40, 50), (60, 40), (48, 48)])


def test_empty_or_hopeless_folder_is_a_named_error(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(P.PhotoError, match="(?s)no usable photos.*bad.jpg"):
        P.scan_photos(tmp_path / "x")
    with pytest.raises(P.PhotoError, match="not a folder"):
        P.scan_photos(tmp_path / "missing")


def test_heic_without_pillow_heif_is_skipped_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "heif_available", lambda: False)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "IMG_1.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    rep = P.scan_photos(tmp_path).report
    (p, why), = rep.skipped
    assert p.name == "IMG_1.HEIC" and "pillow-heif" in why


def test_heic_with_pillow_heif_is_read_like_any_photo(tmp_path):
    """A phone's HEIC (written here by pillow-heif's own encoder) decodes to its pixels, in a
    nested folder beside a PNG; HEVC is lossy, so the check is a small mean error."""
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    yy, xx = np.mgrid[0:48, 0:64]
    a = np.stack([xx * 4, yy * 5, (xx + yy) * 2], -1).astype(np.uint8)  # smooth: HEVC keeps it well
    (tmp_path / "phone").mkdir()
    Image.fromarray(a).save(tmp_path / "phone" / "IMG_0001.HEIC", format="HEIF", quality=95)
    Image.fromarray(a).save(tmp_path / "ok.png")
    s = P.scan_photos(tmp_path)
    assert not s.report.skipped and len(s) == 2
    (i,) = [k for k, name in enumerate(s.names) if name.endswith("IMG_0001.HEIC")]
    heic = s[i]
    assert heic.shape == (48, 64, 3)
    assert np.abs(to_uint8(heic).astype(int) - a).mean() < 3


def test_large_photo_is_cut_into_patches_not_resized(tmp_path):
    a = np.random.default_rng(5).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "big.png")
    s = P.scan_photos(tmp_path, max_side=128)
    # 300 rows -> 3 bands of 100; 200 cols -> 2 of 100: six 100x100 patches, no pixel lost
    assert len(s) == 6 and s.sizes == [(100, 100)] * 6
    np.testing.assert_array_equal(s[0], a[:100, :100])
    np.testing.assert_array_equal(s[5], a[200:, 100:])
    assert s.names[0] == "big.png#0" and s.names[5] == "big.png#5"


def test_folder_domain_trains_on_16bit_values(tmp_path):
    a = np.full((32, 32, 3), 1000, np.uint16)  # 1000/65535: between two 8-bit levels (3 and 4)/255
    _png16(tmp_path / "p16.png", a)
    dom = open_domain(f"folder:{tmp_path}", data_root=tmp_path / "no_data", min_side=16)
    assert dom.kind == "folder" and len(dom.unlabeled_lr) == 1 and dom.test_pairs == []
    assert "packaged photos" in dom.sources["labeled"]  # no DF2K/DIV2K under the data root
    x = UnlabeledPatches(dom.unlabeled_lr, patch=16)[0]
    assert x.shape == (3, 16, 16)
    assert torch.allclose(x, torch.full_like(x, 1000 / 65535))


def test_pairs_dir_and_user_hr_dir(tmp_path):
    rng = np.random.default_rng(6)
    for d in ("lr", "hr", "mine"):
        (tmp_path / d).mkdir()
    lr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    hr = rng.integers(0, 256, (81, 97, 3), dtype=np.uint8)  # up to scale-1 extra pixels are cropped
    Image.fromarray(lr).save(tmp_path / "lr" / "x_lr4.png")
    Image.fromarray(hr).save(tmp_path / "hr" / "x_hr.png")
    Image.fromarray(lr).save(tmp_path / "lr" / "orphan.png")
    Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(tmp_path / "mine" / "h.png")
    pairs, skipped = D.read_pairs(tmp_path)
    (l, h, name), = pairs
    assert name == "x" and h.shape == (80, 96, 3)
    np.testing.assert_array_equal(h, hr[:80, :96])
    assert [p.name for p, _ in skipped] == ["orphan.png"]
    dom = open_domain(f"folder:{tmp_path / 'lr'}", data_root=tmp_path, labeled=str(tmp_path / "mine"),
                      pairs_dir=tmp_path, min_side=16)
    assert len(dom.test_pairs) == 1 and len(dom.labeled_hr) == 1 and "your HR photos" in dom.sources["labeled"]
