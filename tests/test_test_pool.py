"""Issue 25, item 4: a larger test pool of photographs for the built-in domains, and the premise
with CIs that resample whole photos."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import pdd.data as D

POOL = "mate-backgrounds"


def _photo(h, w, seed):
    """A smooth photo-like image (gradients + a few discs), uint8."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([128 + 100 * np.sin(3 * x + rng.uniform(0, 6)) * np.cos(2 * y),
                    128 + 90 * np.cos(4 * y + rng.uniform(0, 6)),
                    128 + 80 * np.sin(5 * (x + y))], axis=2)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def pool_root(tmp_path):
    """A data root whose mate-backgrounds/ copy holds two usable photos, one too small, a corrupt
    JPEG and a text file."""
    folder = tmp_path / POOL
    folder.mkdir()
    Image.fromarray(_photo(1104, 1200, 0)).save(folder / "Big.jpg", quality=95)
    Image.fromarray(_photo(1040, 1100, 1)).save(folder / "Other.png")
    Image.fromarray(_photo(600, 900, 2)).save(folder / "Small.png")      # 300 px after halving
    (folder / "Broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    (folder / "README.txt").write_text("licence")
    return tmp_path


def test_pool_photos_halve_skip_and_name_bad_files(pool_root):
    photos, skipped = D.pool_photos(POOL, pool_root)
    assert sorted(photos) == ["Big", "Other"]
    # halving: 2x2 box mean of the decoded file, then a crop to a multiple of 8
    src = D.read_image(pool_root / POOL / "Other.png").astype(float)
    by_hand = (src[0::2, 0::2] + src[1::2, 0::2] + src[0::2, 1::2] + src[1::2, 1::2]) / 4
    assert photos["Other"].shape == (520, 544, 3)
    assert np.array_equal(photos["Other"], np.clip(np.rint(by_hand), 0, 255).astype(np.uint8)[:520, :544])
    reasons = " | ".join(skipped)
    assert "Broken.jpg" in reasons and "not a readable image" in reasons
    assert "Small.png" in reasons and "under 512" in reasons
    assert "README.txt" in reasons


def test_pool_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(D.TEST_POOLS, POOL, str(tmp_path / "not-installed"))
    with pytest.raises(D.DatasetNotFoundError, match="apt install mate-backgrounds"):
        D.pool_folder(POOL, tmp_path)
    with pytest.raises(ValueError, match="unknown test pool"):
        D.pool_folder("nope", tmp_path)


def test_pool_with_too_few_usable_photos_is_an_error(tmp_path):
    (tmp_path / POOL).mkdir()
    Image.fromarray(_photo(1100, 1100, 0)).save(tmp_path / POOL / "One.png")
    (tmp_path / POOL / "Bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(D.DatasetNotFoundError, match="1 usable photo"):
        D.pool_photos(POOL, tmp_path)


def test_pool_only_for_builtin_domains(tmp_path):
    with pytest.raises(ValueError, match="built-in domains"):
        D.open_domain("Canon", tmp_path, test_pool=POOL)
    with pytest.raises(ValueError, match="built-in domains"):
        D.open_domain(f"folder:{tmp_path}", tmp_path, test_pool=POOL)


def test_pool_domain_tiles_are_disjoint_crops_of_the_degraded_photos(pool_root):
    dom = D.open_domain("Synth-ISO", pool_root, test_pool=POOL, tiles_per_photo=3)
    cache = pool_root / "builtin" / "Synth-ISO" / f"pool-{POOL}"
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["photos"] == ["Big", "Other"] and len(manifest["skipped"]) == 3
    names = [n for _, _, n in dom.test_pairs]
    assert len(names) == len(set(names)) == 6 and names[0].startswith("Big_t")
    assert [n for _, _, n in dom.source_test_pairs] == names
    for (lr, hr, name), (src, hr2, _) in zip(dom.test_pairs, dom.source_test_pairs):
        photo, k = name.rsplit("_t", 1)
        full_hr = D.read_image(cache / f"{photo}_hr.png")
        y, x = D.tile_positions(*full_hr.shape[:2], 256)[int(k)]
        assert np.array_equal(hr, full_hr[y:y + 256, x:x + 256]) and hr is hr2
        assert lr.shape == src.shape == (64, 64, 3)
        assert np.array_equal(lr, D.read_image(cache / f"{photo}_lr.png")[y // 4:y // 4 + 64, x // 4:x // 4 + 64])
    # tiles of one photo do not overlap: their grid corners are at least a tile apart
    for photo in ("Big", "Other"):
        full = D.read_image(cache / f"{photo}_hr.png")
        grid = D.tile_positions(*full.shape[:2], 256)
        corners = [grid[int(n.rsplit("_t", 1)[1])] for n in names if n.startswith(photo + "_t")]
        for i, a in enumerate(corners):
            for b in corners[i + 1:]:
                assert abs(a[0] - b[0]) >= 256 or abs(a[1] - b[1]) >= 256
    assert "test pool mate-backgrounds (2 photos" in dom.sources["test"]
    # the labeled and unlabeled sets are the built-in domain's own
    assert len(dom.labeled_hr) == len(D.BUILTIN_SPLIT["labeled"])
    # a second open reuses the cache (the target LR is not degraded again)
    stamp = (cache / "Big_lr.png").stat().st_mtime_ns
    D.open_domain("Synth-ISO", pool_root, test_pool=POOL, tiles_per_photo=3)
    assert (cache / "Big_lr.png").stat().st_mtime_ns == stamp


def test_pool_cache_is_redone_when_a_file_was_altered(pool_root):
    D.open_domain("Synth-ISO", pool_root, test_pool=POOL, tiles_per_photo=1)
    cache = pool_root / "builtin" / "Synth-ISO" / f"pool-{POOL}"
    good = (cache / "Other_lr.png").read_bytes()
    (cache / "Other_lr.png").write_bytes(b"tampered")
    dom = D.open_domain("Synth-ISO", pool_root, test_pool=POOL, tiles_per_photo=1)
    assert (cache / "Other_lr.png").read_bytes() == good and len(dom.test_pairs) == 2


# ------------------------------------------------------------------ the premise by photo

def _two_photos(diff_a, diff_b, n_a, n_b):
    """Generalist and specialist of one seed on tiles of two photos; the specialist is off by
    exactly diff_a on photo A's n_a tiles and diff_b on photo B's n_b tiles (source: +2 everywhere)."""
    rows = []
    for side, da, db in (("target", diff_a, diff_b), ("source", 2.0, 2.0)):
        for photo, d, n in (("A", da, n_a), ("B", db, n_b)):
            for k in range(n):
                base = 20.0 + k
                rows.append(dict(method="generalist", seed=0, iteration=0, name=f"{photo}_t{k}", psnr=base,
                                 **{"test set": side}))
                rows.append(dict(method="specialist", seed=0, iteration=0, name=f"{photo}_t{k}", psnr=base + d,
                                 **{"test set": side}))
    return pd.DataFrame(rows)


def test_premise_resampled_by_photo_spans_the_photos_means():
    from pdd.stats import premise_check

    frame = _two_photos(-1.0, -3.0, 6, 2)
    # by photo the bootstrap draws (A, A), (A, B), (B, A), (B, B): the 2.5% and 97.5% quantiles of
    # 2000 draws are the all-B and all-A means, -3 and -1; the tile mean is (6 * -1 + 2 * -3) / 8
    c = premise_check(frame, cluster="photo", margin=0.5)
    row = c["table"].iloc[0]
    assert row["target gap"] == pytest.approx(-1.5)
    assert row["target lo"] == pytest.approx(-3.0) and row["target hi"] == pytest.approx(-1.0)
    assert c["with_margin"] and "resampling whole photos" in c["sentence"]
    # resampled by tile (8 draws, not 2) the CI is narrower, inside that span
    t = premise_check(frame)["table"].iloc[0]
    assert -3.0 < t["target lo"] and t["target hi"] <= -1.0 and t["target hi"] - t["target lo"] < 2.0


def test_premise_table_and_conclusions_per_stage_and_test_set():
    from pdd.experiments import test_pool as T

    frames = []
    for stage, (a, b) in (("pixel stage", (-1.0, -1.2)), ("GAN stage", (-1.0, +0.4))):
        for label in ("embedded", POOL):
            f = _two_photos(a, b if label == POOL else a, 4, 4)
            f["test set"] = [T.set_name(label, s) for s in f["test set"]]
            frames.append(f.assign(stage=stage))
    table, sentences = T.premise_table(pd.concat(frames), ["embedded", POOL], n_boot=500, metrics=("psnr",))
    assert len(table) == 2 * 2 * 2 and set(table.photos) == {2} and set(table.tiles) == {8}
    got = table.set_index(["stage", "test set", "CI resamples"])
    assert got.loc[("pixel stage", POOL, "photos"), "with margin"]
    gan = got.loc[("GAN stage", POOL, "photos")]
    assert gan["target gap"] == pytest.approx(-0.3) and not gan["holds"]   # photo B: the specialist wins
    text = "\n".join(T.conclusions(sentences, POOL))
    assert f"On {POOL}'s photographs, resampled by photo, the premise does not hold: not the embedded" in text
    assert "does not carry over to these photographs" in text and "- PSNR, GAN stage: embedded (CI over images)" in text
    assert f"On {POOL}'s photographs, resampled by photo, the premise holds with margin: the same verdict" in text
    assert "not installed" in "\n".join(T.conclusions(sentences, None))


def test_set_names_keep_the_embedded_caches():
    from pdd.experiments import test_pool as T

    assert T.set_name("embedded", "target") == "target"
    assert T.set_name(POOL, "source") == f"source · {POOL}"


def test_the_lead_sentence_reads_the_committed_checks(tmp_path):
    from pdd.experiments.reports import test_pool_line

    assert test_pool_line(tmp_path / "absent.json", "x") == ""
    checks = [{"metric": m, "stage": st, "test set": ts, "cluster": c, "holds": h, "with_margin": w, "sentence": ""}
              for m, st, ts, c, h, w in [("psnr", "pixel stage", "embedded", "photo", True, True),
                                         ("psnr", "pixel stage", POOL, "photo", False, False),
                                         ("psnr", "pixel stage", POOL, "image", True, True),   # tiles: not read
                                         ("psnr_cc", "pixel stage", "embedded", "photo", True, False),
                                         ("psnr_cc", "pixel stage", POOL, "photo", True, True)]]
    path = tmp_path / "premise.json"
    path.write_text(json.dumps({"record": {"pool": POOL}, "checks": checks}))
    line = test_pool_line(path, "[premise](premise.md)")
    assert line.startswith("The premise on more pictures ([premise](premise.md): the starting models scored on the "
                           f"built-in test photos and on the {POOL} pool")
    assert (f"on PSNR, pixel stage models: holds with margin on the built-in photos, does NOT hold on {POOL}'s; "
            f"on colour-corrected PSNR, pixel stage models: holds on the built-in photos, holds with margin on "
            f"{POOL}'s.") in line
