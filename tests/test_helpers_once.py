"""The helpers that used to be written several times, each now in one place: 8-bit rounding
(pdd.imageops.quantize), uint8 conversion (pdd.imageops.to_uint8), tiled inference
(pdd.imageops.run_tiled) and the commit id of result records (pdd.evaluate.git_commit),
checked against values worked out by hand. Also the layering that lets every module use them."""
import ast
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pdd.evaluate import git_commit
from pdd.imageops import n_tiles, quantize, run_tiled, to_uint8

PDD = Path(__file__).resolve().parents[1] / "pdd"


# ------------------------------------------------------------------------------ quantize


def test_quantize_rounds_to_8bit_levels_and_clamps():
    x = torch.tensor([0.0, 1 / 255, 100.49 / 255, 100.51 / 255, 0.5, 1.0, 1.2, -0.1], dtype=torch.float64)
    # 100.49 -> 100, 100.51 -> 101, 0.5 * 255 = 127.5 exactly -> 128 (even), out of range clamped
    assert torch.equal(quantize(x) * 255, torch.tensor([0.0, 1, 100, 101, 128, 255, 255, 0], dtype=torch.float64))
    assert quantize(x.float()).dtype == torch.float32 and quantize(x).dtype == torch.float64


def test_quantize_rounds_exact_half_levels_to_even():
    # in float32, (k + 0.5) / 255 * 255 lands exactly on k + 0.5 (checked): ties go to the even level
    k = torch.tensor([2, 3, 50, 51, 126, 127, 254], dtype=torch.float32)
    x = (k + 0.5) / 255
    assert torch.equal(x * 255.0, k + 0.5)
    assert torch.equal(quantize(x) * 255, torch.tensor([2.0, 4, 50, 52, 126, 128, 254]))


def test_quantize_keeps_the_sign_of_a_rounded_small_negative_unless_clamped_first():
    # the LR path rounds first (-0.0, as it always did); the scores clamp first (+0.0, as they always did)
    x = torch.tensor([-1e-4], dtype=torch.float64)
    assert quantize(x).item() == 0 and torch.signbit(quantize(x)).item()
    assert not torch.signbit(quantize(x.clamp(0, 1))).item()


# ------------------------------------------------------------------------------ to_uint8


def test_to_uint8_of_a_tensor_is_hwc_rounded_and_clamped():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0, 1.2, -0.3]).reshape(1, 3, 1, 2)  # channel c holds pixels 2c, 2c+1
    # 0.25 * 255 = 63.75 -> 64, 0.5 * 255 = 127.5 -> 128 (even)
    want = np.array([[[0, 128, 255], [64, 255, 0]]], dtype=np.uint8)
    assert np.array_equal(to_uint8(t), want) and to_uint8(t).shape == (1, 2, 3)
    assert np.array_equal(to_uint8(t[0]), want)  # (3, H, W) too
    with pytest.raises(ValueError, match="batch of 2"):
        to_uint8(torch.zeros(2, 3, 4, 4))


def test_to_uint8_of_arrays_float_16bit_and_8bit():
    a = np.array([[[0.5, 0.25, 1.5], [-1.0, 1 / 255, 0.998]]], dtype=np.float32)
    assert np.array_equal(to_uint8(a), np.array([[[128, 64, 255], [0, 1, 254]]], dtype=np.uint8))
    # 16 bit: v * 255 / 65535 = v / 257, rounded: 128 -> 0.498 -> 0, 129 -> 0.502 -> 1, 257 -> 1
    b = np.array([0, 128, 129, 257, 32767, 65535], dtype=np.uint16)
    assert np.array_equal(to_uint8(b), np.array([0, 0, 1, 1, 127, 255], dtype=np.uint8))
    c = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    assert to_uint8(c) is c


# ------------------------------------------------------------------------------ tiled inference


class Nearest(torch.nn.Module):
    """A per-pixel x s 'upscaler': every output pixel depends on one input pixel only."""

    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.s, mode="nearest")


@pytest.mark.parametrize("shape", [(1, 3, 37, 29), (2, 3, 16, 33), (1, 3, 5, 5)])
@pytest.mark.parametrize("tile,pad", [(8, 3), (10, 0), (4, 7)])
def test_tiles_of_a_per_pixel_model_equal_the_whole_image(shape, tile, pad):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    whole = Nearest(2)(x)
    assert torch.equal(run_tiled(Nearest(2), x, tile, pad, blend=False), whole)  # centres copied: exact
    torch.testing.assert_close(run_tiled(Nearest(2), x, tile, pad), whole, atol=1e-6, rtol=0)  # cross-faded


def test_centre_tiles_are_exact_within_the_receptive_field_and_blending_is_not():
    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, padding=1), torch.nn.PixelShuffle(2)).eval()
    x = torch.rand(1, 3, 30, 26)
    with torch.no_grad():
        whole = conv(x)
        centre, blended = run_tiled(conv, x, 8, 2, blend=False), run_tiled(conv, x, 8, 2)
    torch.testing.assert_close(centre, whole, atol=1e-6, rtol=0)  # 1 px receptive field < 2 px context
    assert (blended - whole).abs().max() > 1e-4  # piece edges (zero padding) get a little weight


def _width(x):
    """A 'model' whose output (x1) is the width of the piece it was given: shows which piece wins."""
    return torch.full_like(x, float(x.shape[-1]))


def test_centre_rule_by_hand():
    # W = 10, tile 4, pad 2: pieces run on columns 0-5 (6 wide), 2-9 (8), 6-9 (4) and keep 0-3, 4-7, 8-9
    out = run_tiled(_width, torch.zeros(1, 1, 1, 10), 4, 2, blend=False)
    assert out[0, 0, 0].tolist() == [6, 6, 6, 6, 8, 8, 8, 8, 4, 4]


def test_cross_fade_by_hand():
    # W = 7, tile 4, pad 1: pieces on columns 0-4 (5 wide) and 3-6 (4 wide) overlap on 3-4, where
    # the first's weights fall (5 - 3.5) / 2 = 0.75, 0.25 and the second's rise 0.25, 0.75
    out = run_tiled(_width, torch.zeros(1, 1, 1, 7), 4, 1)
    assert out[0, 0, 0].tolist() == [5, 5, 5, 0.75 * 5 + 0.25 * 4, 0.25 * 5 + 0.75 * 4, 4, 4]
    assert n_tiles(1, 7, 4) == 2 and n_tiles(4, 4, 4) == 1 and n_tiles(9, 9, 0) == 1


def test_padding_to_a_size_multiple_is_cropped_back():
    calls = []

    def model(x):
        calls.append(tuple(x.shape[-2:]))
        return Nearest(3)(x)

    x = torch.rand(1, 3, 13, 21)
    assert torch.equal(run_tiled(model, x, multiple=8), Nearest(3)(x)) and calls == [(16, 24)]


# ------------------------------------------------------------------------------ commit id


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_commit_id_is_dirty_for_uncommitted_changes_but_not_for_results(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false",
                               *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()

    assert git_commit(tmp_path) == "unknown"  # not a checkout
    git("init", "-q")
    assert git_commit(tmp_path) == "unknown"  # no commit yet
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("commit", "-q", "-m", "one")
    head = git("rev-parse", "--short", "HEAD")
    assert git_commit(tmp_path) == head and len(head) >= 7
    (tmp_path / "a.py").write_text("x = 2\n")  # a tracked file changed
    assert git_commit(tmp_path) == head + "-dirty"
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.csv").write_text("1\n")  # a run's own output: not code
    assert git_commit(tmp_path) == head
    (tmp_path / "b.py").write_text("y = 1\n")  # an untracked module could have produced a result
    assert git_commit(tmp_path) == head + "-dirty"


# ------------------------------------------------------------------------------ layering


def _imports(module: str) -> set[str]:
    tree = ast.parse((PDD / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_the_shared_helpers_sit_below_everything_that_uses_them():
    # imageops: torch and numpy only; stats: no pdd module at all (below evaluate, which scores)
    assert _imports("imageops") <= {"__future__", "numpy", "torch", "torch.nn.functional"}
    assert not any(n.startswith((".", "pdd")) for n in _imports("stats"))
