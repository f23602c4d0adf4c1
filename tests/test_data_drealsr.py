"""DRealSR read as its authors release it: all cameras in one folder, the camera from file names."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pdd import data as D

# Names shaped as in the x4 release (test pairs *_x1 LR / *_x4 HR; train patches *_x4_<k>).
TEST_STEMS = {"Panasonic": ["panasonic_158", "panasonic_57"], "Sony": ["sony_116"],
              "Canon": ["Canon_10", "IMG_140"], "Olympus": ["P1140279", "P1160772", "P1171051"],
              "Nikon": ["DSC_1265"]}
TRAIN_STEMS = {"Panasonic": ["panasonic_141_x4_28", "panasonic_109_x4_46", "panasonic_238_x4_5"],
               "Sony": ["sony_26_x4_24"], "Canon": ["Canon_84_x4_45", "IMG_166_x4_6"],
               "Olympus": ["P1140329_x4_43", "P1130001_x4_2"], "Nikon": ["DSC_1666_x4_28"]}


def _png(path: Path, h: int, w: int, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(img).save(path)


def _release(root: Path, top: str = "DRealSR/x4", train="Train_x4/train_LR", test_lr="Test_x4/test_LR",
             test_hr="Test_x4/test_HR", cameras=tuple(TEST_STEMS), extra=()) -> Path:
    """A tiny x4 release: every camera's files mixed in one folder per split."""
    base = root / top
    k = 0
    for camera in cameras:
        for stem in TRAIN_STEMS[camera]:
            _png(base / train / f"{stem}.png", 12, 12, k)
            k += 1
        for stem in TEST_STEMS[camera]:
            _png(base / test_lr / f"{stem}_x1.png", 10, 12, k)
            _png(base / test_hr / f"{stem}_x4.png", 40, 48, k + 1)
            k += 2
    for rel in extra:
        _png(base / rel, 10, 12, k)
    return base


def _df2k(root: Path) -> None:
    _png(root / "DF2K/HR/0001.png", 64, 64, 99)


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("name, camera", [
    ("panasonic_158_x4.png", "Panasonic"), ("panasonic_141_x4_28.png", "Panasonic"),
    ("sony_1_x1.png", "Sony"), ("Canon_10_x4.png", "Canon"), ("IMG_140_x1.png", "Canon"),
    ("P1140279_x4.png", "Olympus"), ("P1130001_x4_43.png", "Olympus"), ("DSC_1265_x1.png", "Nikon"),
    # Not in the release's naming: no source says which camera, so none is guessed.
    ("DSC01234.png", None), ("P1000123_x4.png", None), ("P114_x4.png", None), ("canon_10_x4.png", None),
    ("0001.png", None), ("foo_panasonic_1.png", None),
])
def test_camera_from_file_name(name, camera):
    assert D.drealsr_camera(name) == camera
    assert D.drealsr_camera(Path("/some/dir") / name) == camera


def test_release_groups_files_by_camera_without_touching_them(tmp_path):
    _release(tmp_path, extra=["Test_x4/test_LR/mystery_7_x1.png"])
    before = _tree(tmp_path)
    rel = D.drealsr_release(tmp_path)
    assert rel.complete and not rel.hints and not rel.ambiguous
    assert rel.folders["unlabeled"] == tmp_path / "DRealSR/x4/Train_x4/train_LR"
    for camera, stems in TEST_STEMS.items():
        assert [p.name for p in rel.files["test_hr"][camera]] == sorted(f"{s}_x4.png" for s in stems)
        assert len(rel.files["unlabeled"][camera]) == len(TRAIN_STEMS[camera])
    assert [p.name for p in rel.unrecognised["test_lr"]] == ["mystery_7_x1.png"]
    counts = rel.counts()
    assert "Panasonic 2, Sony 1, Canon 2, Olympus 3, Nikon 1" in counts
    assert "camera unknown for 1: mystery_7_x1.png" in counts
    assert _tree(tmp_path) == before  # nothing moved, copied or written


@pytest.mark.parametrize("name", ["Panasonic", "Olympus"])
def test_per_camera_domain_opens_from_the_release(tmp_path, name):
    _release(tmp_path, extra=["Train_x4/train_LR/mystery_1.png"])
    _df2k(tmp_path)
    before = _tree(tmp_path)
    d = D.open_domain(name, data_root=tmp_path)
    assert len(d.unlabeled_lr) == len(TRAIN_STEMS[name]) and len(d.test_pairs) == len(TEST_STEMS[name])
    assert sorted(d.test_pairs.names) == sorted(TEST_STEMS[name])
    assert all(D.drealsr_camera(p.name) == name for p in d.test_pairs.lr_paths + d.test_pairs.hr_paths)
    lr, hr, _ = d.test_pairs[0]
    assert lr.shape == (10, 12, 3) and hr.shape == (40, 48, 3)
    assert "Train_x4/train_LR" in d.sources["unlabeled"] and "Test_x4/test_LR" in d.sources["test"]
    assert "release layout" in d.notes and "1 of unknown camera" in d.notes
    assert _tree(tmp_path) == before


def test_release_under_an_archives_doubled_folders(tmp_path):
    # DRealSR/DRealSR/x4/Test_x4/Test_x4/test_HR: how one unpacked copy is laid out.
    _release(tmp_path, top="DRealSR/DRealSR/x4", train="Train_x4/Train_x4/train_LR",
             test_lr="Test_x4/Test_x4/test_LR", test_hr="Test_x4/Test_x4/test_HR")
    _df2k(tmp_path)
    d = D.open_domain("Olympus", data_root=tmp_path)
    assert len(d.test_pairs) == 3 and len(d.unlabeled_lr) == 2


def test_sorted_per_camera_layout_still_wins(tmp_path):
    _release(tmp_path)
    _df2k(tmp_path)
    cam = tmp_path / "DRealSR/x4/Panasonic"
    _png(cam / "Train/LR/a_x4.png", 12, 12)
    _png(cam / "Test/LR/b_x1.png", 10, 12)
    _png(cam / "Test/HR/b_x4.png", 40, 48)
    d = D.open_domain("Panasonic", data_root=tmp_path)
    assert len(d.unlabeled_lr) == 1 and d.test_pairs.names == ["b"]
    assert "release" not in d.notes


def test_camera_absent_from_release_says_what_was_found(tmp_path):
    _release(tmp_path, cameras=("Sony", "Canon", "Nikon"),
             extra=["Test_x4/test_LR/P1000123_x1.png", "Test_x4/test_LR/DSC01234.png"])
    with pytest.raises(D.DatasetNotFoundError) as e:
        D.open_domain("Olympus", data_root=tmp_path, labeled="DF2K")
    msg = str(e.value)
    assert "no Olympus files in train LR, test LR, test HR" in msg
    assert f"test LR {tmp_path}/DRealSR/x4/Test_x4/test_LR: Panasonic 0, Sony 1, Canon 2, Olympus 0, Nikon 1" in msg
    assert "camera unknown for 2: DSC01234.png, P1000123_x1.png" in msg
    assert "DRealSR/x4/Olympus/Train/LR" in msg  # the sorted layout, as the other way


def test_incomplete_release_names_the_missing_folder(tmp_path):
    _release(tmp_path)
    for p in (tmp_path / "DRealSR/x4/Test_x4/test_HR").iterdir():
        p.unlink()
    (tmp_path / "DRealSR/x4/Test_x4/test_HR").rmdir()
    with pytest.raises(D.DatasetNotFoundError) as e:
        D.open_domain("Panasonic", data_root=tmp_path, labeled="DF2K")
    msg = str(e.value)
    assert "no test HR folder: expected Test_x4/test_HR" in msg
    assert "train LR" in msg and "Panasonic 3" in msg  # what was found is listed


@pytest.mark.parametrize("train, test_lr, hint", [
    ("train_x4/train_LR", "Test_x4/test_LR", "DRealSR/x4/train_x4: rename it to {root}/DRealSR/x4/Train_x4"),
    ("Train_x4/train_lr", "Test_x4/test_LR", "DRealSR/x4/Train_x4/train_lr: rename it to {root}/DRealSR/x4/Train_x4/train_LR"),
    ("Train_x4/train_LR", "Test-X4/test_LR", "DRealSR/x4/Test-X4: rename it to {root}/DRealSR/x4/Test_x4"),
])
def test_near_miss_release_folder_says_what_to_rename(tmp_path, train, test_lr, hint):
    _release(tmp_path, train=train, test_lr=test_lr)
    with pytest.raises(D.DatasetNotFoundError) as e:
        D.open_domain("Panasonic", data_root=tmp_path, labeled="DF2K")
    assert hint.format(root=tmp_path) in str(e.value)


def test_near_miss_top_folder_and_nothing_found(tmp_path):
    _release(tmp_path, top="drealsr/x4")
    with pytest.raises(D.DatasetNotFoundError) as e:
        D.open_domain("Panasonic", data_root=tmp_path, labeled="DF2K")
    msg = str(e.value)
    assert f"found {tmp_path}/drealsr: rename it to {tmp_path}/DRealSR" in msg
    assert f"{tmp_path}/DRealSR/x4/Train_x4/train_LR" in msg  # the release layout is named as expected
    assert f"{tmp_path}/DRealSR/x4/Panasonic/Train/LR/*.png" in msg  # and the sorted one


def test_two_candidate_folders_are_an_error(tmp_path):
    _release(tmp_path)
    _png(tmp_path / "DRealSR/x4/Train_x4/Train_x4/train_LR/panasonic_1_x4_1.png", 12, 12)
    with pytest.raises(D.DatasetNotFoundError, match="several folders could be train LR") as e:
        D.open_domain("Panasonic", data_root=tmp_path, labeled="DF2K")
    assert "keep one" in str(e.value)
