"""Data: image reading, domains (built-in and real layouts), samplers."""
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pdd import data as D
from pdd import degradations as deg
from pdd.imageops import quantize, to_uint8


def _rand(h, w, seed=0, c=3):
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _save(path, img, mode=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img, mode).save(path) if mode else Image.fromarray(img).save(path)
    return path


def _png16(path, arr):
    """Write a 16-bit PNG (grey, grey+alpha, RGB or RGBA) by hand: Pillow cannot."""
    arr = arr if arr.ndim == 3 else arr[:, :, None]
    h, w, c = arr.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return Path(path)


# --------------------------------------------------------------------------- read_image

def test_read_rgb_png_roundtrip(tmp_path):
    img = _rand(7, 9)
    out = D.read_image(_save(tmp_path / "a.png", img))
    assert out.dtype == np.uint8 and out.shape == (7, 9, 3) and np.array_equal(out, img)


def test_read_grayscale_replicated(tmp_path):
    g = _rand(6, 5, c=1)[:, :, 0]
    out = D.read_image(_save(tmp_path / "g.png", g))
    assert out.shape == (6, 5, 3) and all(np.array_equal(out[:, :, k], g) for k in range(3))


def test_read_rgba_drops_alpha_without_compositing(tmp_path):
    rgba = _rand(6, 5, c=4)
    rgba[..., 3] = 0  # fully transparent: colour must still come back as stored
    out = D.read_image(_save(tmp_path / "a.png", rgba))
    assert np.array_equal(out, rgba[..., :3])
    la = _rand(4, 4, c=2)
    out = D.read_image(_save(tmp_path / "la.png", la, "LA"))
    assert np.array_equal(out, np.repeat(la[..., :1], 3, axis=2))


def test_read_palette(tmp_path):
    img = _rand(8, 8)
    Image.fromarray(img).quantize(16).save(tmp_path / "p.png")
    out = D.read_image(tmp_path / "p.png")
    assert out.shape == (8, 8, 3)
    assert np.array_equal(out, np.asarray(Image.open(tmp_path / "p.png").convert("RGB")))


def test_read_16bit_scaled_not_truncated(tmp_path):
    rgb16 = np.random.default_rng(0).integers(0, 65536, (5, 6, 3)).astype(np.uint16)
    rgb16[0, 0] = [65535, 0, 32896]  # 32896 * 255 / 65535 = 128.0; truncation (>>8) also gives 128
    rgb16[0, 1] = [255, 384, 65280]  # -> round: 1, 1, 254; truncation would give 0, 1, 255
    out = D.read_image(_png16(tmp_path / "rgb16.png", rgb16))
    expect = np.round(rgb16 * 255.0 / 65535.0).astype(np.uint8)
    assert out.dtype == np.uint8 and np.array_equal(out, expect)
    assert list(out[0, 1]) == [1, 1, 254]
    grey16 = rgb16[..., 0]
    out = D.read_image(_png16(tmp_path / "g16.png", grey16))
    assert np.array_equal(out, np.repeat(expect[..., :1], 3, axis=2))
    rgba16 = np.concatenate([rgb16, np.zeros_like(rgb16[..., :1])], axis=2)
    assert np.array_equal(D.read_image(_png16(tmp_path / "rgba16.png", rgba16)), expect)
    # 16-bit grey through Pillow's I;16 path (e.g. a TIFF) gets the same scaling.
    Image.fromarray(grey16).save(tmp_path / "g16.tif")
    assert np.array_equal(D.read_image(tmp_path / "g16.tif"), np.repeat(expect[..., :1], 3, axis=2))


def test_read_corrupt_and_truncated_name_the_file(tmp_path):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"this is not an image at all")
    with pytest.raises(D.ImageError, match="corrupt.png"):
        D.read_image(bad)
    good = _save(tmp_path / "full.png", _rand(64, 64))
    trunc = tmp_path / "truncated.png"
    trunc.write_bytes(good.read_bytes()[:300])
    with pytest.raises(D.ImageError, match="truncated.png"):
        D.read_image(trunc)
    assert issubclass(D.ImageError, ValueError)
    with pytest.raises(FileNotFoundError):
        D.read_image(tmp_path / "nope.png")


def test_read_float_image_rejected(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(D.ImageError, match="f.tif"):
        D.read_image(tmp_path / "f.tif")


# --------------------------------------------------------------------------- samplers

@pytest.fixture(scope="module")
def pool():
    return [_rand(70, 90, 1), _rand(64, 100, 2), _rand(80, 80, 3)]


def test_labeled_patches_shapes_determinism(pool):
    L = D.LabeledPatches(pool, patch=12, scale=4, seed=3)
    x, y = L[5]
    assert x.shape == (3, 12, 12) and y.shape == (3, 48, 48)
    assert x.dtype == y.dtype == torch.float32
    x2, y2 = D.LabeledPatches(pool, patch=12, scale=4, seed=3)[5]
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = D.LabeledPatches(pool, patch=12, scale=4, seed=4)[5]
    assert not torch.equal(x, x3)
    assert not torch.equal(L[6][0], x)
    assert len(L) >= 10 ** 9


def test_labeled_x_is_quantized_bicubic_of_y(pool):
    L = D.LabeledPatches(pool, patch=12, scale=4, seed=0)
    for i in range(8):
        x, y = L[i]
        assert torch.equal(x, quantize(deg.bicubic_down(y[None], 4))[0])
        assert torch.equal(x, quantize(x))
        # y is an exact crop of one pool image (up to flips / transpose).
        assert torch.equal(y, deg.img2tensor(to_uint8(y))[0])


def test_flips_commute_with_matlab_downscale():
    y = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    for t in (lambda a: a.flip(-1), lambda a: a.flip(-2), lambda a: a.transpose(-1, -2)):
        assert torch.allclose(deg.bicubic_down(t(y)), t(deg.bicubic_down(y)), atol=1e-5)


@pytest.mark.parametrize("down", ["random", "second_order"])
def test_labeled_other_downs(pool, down):
    L = D.LabeledPatches(pool, patch=12, scale=4, down=down, seed=0)
    x, y = L[0]
    assert x.shape == (3, 12, 12) and y.shape == (3, 48, 48) and torch.equal(x, L[0][0])
    assert torch.equal(x, quantize(x)) and not torch.equal(x, L[1][0])


def test_labeled_bad_down(pool):
    with pytest.raises(ValueError, match="down"):
        D.LabeledPatches(pool, down="lanczos")


def test_unlabeled_patches(pool):
    U = D.UnlabeledPatches(pool, patch=16, seed=0)
    x = U[2]
    assert x.shape == (3, 16, 16) and torch.equal(x, D.UnlabeledPatches(pool, patch=16, seed=0)[2])
    assert not torch.equal(x, D.UnlabeledPatches(pool, patch=16, seed=1)[2])


def test_sampler_rejects_small_images_naming_them(tmp_path, pool):
    small = D.ImageFolder([_save(tmp_path / "big.png", _rand(80, 80)), _save(tmp_path / "tiny.png", _rand(40, 50))])
    with pytest.raises(D.ImageError, match=r"tiny\.png.*50x40.*48x48"):
        D.LabeledPatches(small, patch=12, scale=4)
    with pytest.raises(D.ImageError, match=r"tiny\.png.*50x40.*48x48"):
        D.UnlabeledPatches(small, patch=48)
    with pytest.raises(D.ImageError, match=r"image #1"):
        D.UnlabeledPatches([pool[0], _rand(10, 10)], patch=16)


def test_mixed_batch_resume_and_dataloader(pool):
    L = D.LabeledPatches(pool, patch=8, scale=4, seed=0)
    U = D.UnlabeledPatches(pool, patch=8, seed=0)
    x_l, y_l, x_u = D.mixed_batch(L, U, 3, 2, 3)
    assert x_l.shape == (2, 3, 8, 8) and y_l.shape == (2, 3, 32, 32) and x_u.shape == (3, 3, 8, 8)
    assert torch.equal(x_l[1], L[7][0]) and torch.equal(x_u[0], U[9])
    # Resuming at iteration 3 gives the uninterrupted run's batch 3.
    resumed = D.MixedBatches(L, U, 2, 3, start=3)
    assert all(torch.equal(a, b) for a, b in zip(resumed[0], (x_l, y_l, x_u)))
    loader = torch.utils.data.DataLoader(D.MixedBatches(L, U, 2, 3), batch_size=None, num_workers=2)
    for it, batch in zip(range(4), loader):
        direct = D.mixed_batch(L, U, it, 2, 3)
        assert all(torch.equal(a, b) for a, b in zip(batch, direct))


# --------------------------------------------------------------------------- crop_512

def test_crop_512_non_overlapping_drops_remainders():
    lr, hr = _rand(10, 13), _rand(40, 52)
    crops = D.crop_512(lr, hr, scale=4, size=4)
    assert len(crops) == 2 * 3
    l, h = crops[4]  # row 1, col 1
    assert np.array_equal(l, lr[4:8, 4:8]) and np.array_equal(h, hr[16:32, 16:32])
    assert len(D.crop_512(_rand(600, 1100), _rand(2400, 4400))) == 2
    whole = D.crop_512(lr, hr)  # smaller than 512: kept whole
    assert len(whole) == 1 and whole[0][0].shape == lr.shape


# --------------------------------------------------------------------------- built-in domains

@pytest.fixture(scope="module")
def builtin_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for name in D.builtin_domain_names():
        D.open_domain(name, data_root=root)
    return root


def test_list_domains_and_unknown_name():
    names = D.list_domains()
    assert len(D.builtin_domain_names()) >= 2
    assert {"Canon", "Nikon", "Panasonic", "Olympus", "NTIRE20"} <= set(names)
    with pytest.raises(ValueError, match="valid names: .*Canon"):
        D.open_domain("Sony")


@pytest.mark.parametrize("name", D.builtin_domain_names())
def test_builtin_domain_structure(builtin_root, name):
    d = D.open_domain(name.lower(), data_root=builtin_root)  # names are case-insensitive
    assert d.name == name and d.kind == "builtin" and d.scale == 4
    assert len(d.labeled_hr) == 3 and len(d.unlabeled_lr) == 2 and len(d.test_pairs) == 10
    for lr, hr, _ in d.test_pairs:
        assert lr.shape == (64, 64, 3) and hr.shape == (256, 256, 3) and lr.dtype == hr.dtype == np.uint8
    assert [p[2] for p in d.source_test_pairs] == [p[2] for p in d.test_pairs]
    assert all(s[1] is t[1] for s, t in zip(d.source_test_pairs, d.test_pairs))
    df = d.summary()
    assert list(df["images"]) == [3, 2, 10, 10] and df["pixels"].iloc[2] == 10 * 64 * 64
    assert name in d.describe() and "unlabeled" in d.describe()
    # The hidden target LR is not the source protocol's LR.
    lr, hr, _ = d.test_pairs[0]
    assert np.abs(lr.astype(int) - d.source_test_pairs[0][0].astype(int)).mean() > 2


def test_builtin_split_disjoint(builtin_root):
    roles = D.BUILTIN_SPLIT
    assert not set(roles["labeled"]) & set(roles["unlabeled"])
    assert not set(roles["labeled"]) & set(roles["test"])
    assert not set(roles["unlabeled"]) & set(roles["test"])
    assert {"motorcycle_left", "motorcycle_right"} <= set(roles["test"])  # near-duplicates stay together
    photos = D.builtin_photos()
    assert set(photos) == set(sum(roles.values(), ()))
    digests = {k: hash(v.tobytes()) for k, v in photos.items()}
    assert len(set(digests.values())) == len(digests)
    d = D.open_domain(D.builtin_domain_names()[0], data_root=builtin_root)
    assert [Path(p).stem for p in d.labeled_hr.paths] == list(roles["labeled"])
    assert [Path(p).stem for p in d.unlabeled_lr.paths] == list(roles["unlabeled"])
    assert {t[2].rsplit("_t", 1)[0] for t in d.test_pairs} == set(roles["test"])
    for img, name in zip(d.labeled_hr, roles["labeled"]):
        assert np.array_equal(img, photos[name])  # labeled pool = clean packaged HR
    # Tiles do not overlap: their names are unique and their HR contents differ.
    assert len({t[2] for t in d.test_pairs}) == len(d.test_pairs)
    assert len({t[1].tobytes() for t in d.test_pairs}) == len(d.test_pairs)


def test_builtin_tiles_aligned_with_source_protocol(builtin_root):
    d = D.open_domain(D.builtin_domain_names()[0], data_root=builtin_root)
    for (src, hr, _) in d.source_test_pairs[:3]:
        own = to_uint8(quantize(deg.bicubic_down(deg.img2tensor(hr))))
        # Tiles are cut from the whole image's LR: away from the tile border they match
        # the tile's own bicubic LR exactly, up to 8-bit rounding.
        assert np.abs(own[3:-3, 3:-3].astype(int) - src[3:-3, 3:-3].astype(int)).max() <= 1


def test_builtin_test_knobs(builtin_root):
    name = D.builtin_domain_names()[0]
    d = D.open_domain(name, data_root=builtin_root, test_tile=320)
    assert len(d.test_pairs) == 7 and d.test_pairs[0][0].shape == (80, 80, 3)
    d = D.open_domain(name, data_root=builtin_root, n_test_tiles=4)
    assert len(d.test_pairs) == 4 and len(d.source_test_pairs) == 4
    assert len({t[2].rsplit("_t", 1)[0] for t in d.test_pairs}) >= 3  # spread over the photos
    with pytest.raises(ValueError, match="n_test_tiles"):
        D.open_domain(name, data_root=builtin_root, n_test_tiles=11)
    with pytest.raises(ValueError, match="multiple"):
        D.open_domain(name, data_root=builtin_root, test_tile=250)
    with pytest.raises(ValueError, match="real domains"):
        D.open_domain(name, data_root=builtin_root, labeled="DF2K")


def test_builtin_cache_regenerates_when_stale_or_damaged(builtin_root):
    name = D.builtin_domain_names()[-1]
    folder = builtin_root / "builtin" / name
    assert D.builtin_cache_status(name, builtin_root) == "ok"
    before = {p.name: p.read_bytes() for p in folder.rglob("*.png")}
    # 1. stale manifest (as after an edit of the recipe)
    m = json.loads((folder / "manifest.json").read_text())
    m["hash"] = "0" * 16
    (folder / "manifest.json").write_text(json.dumps(m))
    assert D.builtin_cache_status(name, builtin_root).startswith("stale")
    D.open_domain(name, data_root=builtin_root)
    assert D.builtin_cache_status(name, builtin_root) == "ok"
    # Generation is deterministic: the rewritten files are byte-identical.
    assert {p.name: p.read_bytes() for p in folder.rglob("*.png")} == before
    # 2. a missing file
    (folder / "unlabeled" / "china.png").unlink()
    assert "missing" in D.builtin_cache_status(name, builtin_root)
    assert len(D.open_domain(name, data_root=builtin_root).unlabeled_lr) == 2
    assert (folder / "unlabeled" / "china.png").read_bytes() == before["china.png"]
    # 3. a modified file is detected too (open_domain then regenerates, as above)
    coffee = folder / "labeled" / "coffee.png"
    original = coffee.read_bytes()
    _save(coffee, _rand(8, 8))
    assert "modified" in D.builtin_cache_status(name, builtin_root)
    coffee.write_bytes(original)
    assert D.builtin_cache_status(name, builtin_root) == "ok"


def test_data_root_from_environment(builtin_root, monkeypatch):
    monkeypatch.setenv("PDD_DATA_ROOT", str(builtin_root))
    assert D.resolve_data_root() == builtin_root
    assert D.open_domain(D.builtin_domain_names()[0]).root == builtin_root / "builtin" / D.builtin_domain_names()[0]
    monkeypatch.delenv("PDD_DATA_ROOT")
    assert D.resolve_data_root() == D.REPO_ROOT / "data"
    assert D.resolve_data_root("/x") == Path("/x")


# --------------------------------------------------------------------------- real layouts

def _write_pairs(lr_dir, hr_dir, stems, lr_suffix="", hr_suffix="", seed=0, lr_hw=(20, 24)):
    for k, stem in enumerate(stems):
        _save(Path(lr_dir) / f"{stem}{lr_suffix}.png", _rand(*lr_hw, seed + k))
        _save(Path(hr_dir) / f"{stem}{hr_suffix}.png", _rand(lr_hw[0] * 4, lr_hw[1] * 4, seed + 100 + k))


def _fake_tree(root: Path, name: str):
    if name in ("Canon", "Nikon"):
        d = root / "RealSRV3" / name
        _write_pairs(d / "Train/4", d / "Train/4", [f"{name}_00{k}" for k in range(3)], "_LR4", "_HR")
        _write_pairs(d / "Test/4", d / "Test/4", [f"{name}_10{k}" for k in range(2)], "_LR4", "_HR", seed=50)
        return 3, 2
    if name in ("Panasonic", "Olympus"):
        d = root / "DRealSR/x4" / name
        for k in range(4):
            _save(d / "Train/LR" / f"P{k}_x4.png", _rand(20, 24, k))
        _write_pairs(d / "Test/LR", d / "Test/HR", ["P100", "P101", "P102"], "_x4", "_x1", seed=50)
        return 4, 3
    d = root / "NTIRE20/track1"
    for k in range(3):
        _save(d / "train_source" / f"{k:04d}.png", _rand(20, 24, k))
        _save(d / "train_target" / f"{k:04d}.png", _rand(60, 60, k))
    _write_pairs(d / "valid_source", d / "valid_target", ["0801", "0802"], seed=50)
    return 3, 2


def _fake_df2k(root, n=2):
    for k in range(n):
        _save(root / "DF2K/HR" / f"{k:04d}.png", _rand(64, 72, 200 + k))


@pytest.mark.parametrize("name", list(D.REAL_DOMAINS))
def test_real_layout_loads(tmp_path, name):
    n_unl, n_test = _fake_tree(tmp_path, name)
    _fake_df2k(tmp_path)
    d = D.open_domain(name, data_root=tmp_path)
    assert d.kind == "real" and d.name == name
    assert len(d.unlabeled_lr) == n_unl and len(d.test_pairs) == n_test
    lr, hr, _ = d.test_pairs[0]
    assert lr.shape == (20, 24, 3) and hr.shape == (80, 96, 3)
    assert d.unlabeled_lr[0].shape == (20, 24, 3)
    # Labeled pool: NTIRE20 brings its own clean HR; the others use DF2K.
    assert len(d.labeled_hr) == (3 if name == "NTIRE20" else 2)
    assert list(d.summary()["images"]) == [len(d.labeled_hr), n_unl, n_test, n_test]
    src, hr2, _ = d.source_test_pairs[0]
    assert src.shape == lr.shape and np.array_equal(hr2, hr)
    # Pairs match by name: the LR file and the HR file of each pair share their key.
    assert D._pair_key(d.test_pairs.lr_paths[1]) == D._pair_key(d.test_pairs.hr_paths[1])


@pytest.mark.parametrize("name", list(D.REAL_DOMAINS))
def test_real_missing_dataset_names_expected_paths(tmp_path, name):
    with pytest.raises(D.DatasetNotFoundError) as e:
        D.open_domain(name, data_root=tmp_path)
    layout = D.REAL_DOMAINS[name]
    msg = str(e.value)
    for pattern in (layout.unlabeled, layout.test_lr, layout.test_hr):
        assert str(tmp_path / pattern) in msg
    assert "data/README.md" in msg
    assert isinstance(e.value, FileNotFoundError)


def test_realsr_loads_under_the_name_its_release_unpacks_as(tmp_path):
    _fake_tree(tmp_path, "Canon")
    (tmp_path / "RealSRV3").rename(tmp_path / "RealSR(V3)")
    _fake_df2k(tmp_path)
    d = D.open_domain("Canon", data_root=tmp_path)
    assert len(d.unlabeled_lr) == 3 and len(d.test_pairs) == 2
    assert "RealSR(V3)/Canon/Train/4" in d.sources["unlabeled"]


@pytest.mark.parametrize("top, camera, hint", [
    ("realsr_v3", "Canon", "rename it to {root}/RealSRV3"),
    ("RealSRV3", "canon", "rename it to {root}/RealSRV3/Canon"),
])
def test_a_near_miss_layout_says_what_to_rename(tmp_path, top, camera, hint):
    _fake_tree(tmp_path, "Canon")
    (tmp_path / "RealSRV3" / "Canon").rename(tmp_path / "RealSRV3" / camera)
    if top != "RealSRV3":
        (tmp_path / "RealSRV3").rename(tmp_path / top)
    with pytest.raises(D.DatasetNotFoundError) as e:
        D.open_domain("Canon", data_root=tmp_path, labeled="builtin")
    assert hint.format(root=tmp_path) in str(e.value)


def test_real_missing_labeled_pool_is_an_error_unless_builtin(tmp_path):
    _fake_tree(tmp_path, "Canon")
    with pytest.raises(D.DatasetNotFoundError) as e:
        D.open_domain("Canon", data_root=tmp_path)
    assert str(tmp_path / "DF2K/HR/*.png") in str(e.value) and "DIV2K_train_HR" in str(e.value)
    d = D.open_domain("Canon", data_root=tmp_path, labeled="builtin")
    assert len(d.labeled_hr) == 9 and "astronaut" in d.labeled_hr.names
    _save(tmp_path / "DIV2K/DIV2K_train_HR/0001.png", _rand(64, 64))
    d = D.open_domain("Canon", data_root=tmp_path)  # auto falls back to DIV2K
    assert len(d.labeled_hr) == 1 and "DIV2K" in d.sources["labeled"]


def test_real_unpaired_and_mismatched_test_files(tmp_path):
    _fake_tree(tmp_path, "Panasonic")
    _fake_df2k(tmp_path)
    _save(tmp_path / "DRealSR/x4/Panasonic/Test/LR/orphan_x4.png", _rand(20, 24))
    with pytest.raises(D.DatasetNotFoundError, match="orphan"):
        D.open_domain("Panasonic", data_root=tmp_path)
    (tmp_path / "DRealSR/x4/Panasonic/Test/LR/orphan_x4.png").unlink()
    _save(tmp_path / "DRealSR/x4/Panasonic/Test/HR/P100_x1.png", _rand(50, 50))
    d = D.open_domain("Panasonic", data_root=tmp_path)
    with pytest.raises(D.ImageError, match=r"P100_x1\.png.*does not match"):
        d.test_pairs[0]
