"""pdd.upscale: seamless tiling, 16-bit and alpha handling, the CLI's folder walk."""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pdd import upscale as U
from pdd.archs import RRDBNet
from pdd.photos import read_photo
from pdd.sr_models import ModelInfo

TINY = dict(num_feat=16, num_block=1, num_grow_ch=8)


class Nearest(torch.nn.Module):
    """x s nearest-neighbour 'upscaler': every output pixel is known in advance."""

    def __init__(self, s):
        super().__init__()
        self.s, self.dummy = s, torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.s, mode="nearest") + self.dummy


def _smooth(h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), size=(h, w), mode="bilinear")


def test_tiled_and_untiled_agree_within_one_level():
    torch.manual_seed(0)
    net = RRDBNet(**TINY).eval()
    x = _smooth(44, 52)
    whole = U.run_tiled(net, x, 4, tile=0)
    tiles = []
    tiled = U.run_tiled(net, x, 4, tile=16, tile_pad=8, on_tile=lambda: tiles.append(1))
    assert len(tiles) == 3 * 4 == U.n_tiles(44, 52, 16)
    assert tiled.shape == whole.shape == (1, 3, 176, 208)
    assert (tiled - whole).abs().max() < 1 / 255
    assert whole.abs().mean() > 0.05  # the net does compute something


def test_blending_weights_sum_to_one_and_reproduce_a_pointwise_model_exactly():
    x = torch.rand(1, 3, 37, 29, generator=torch.Generator().manual_seed(1))
    want = F.interpolate(x, scale_factor=2, mode="nearest")
    for tile, pad in ((8, 3), (10, 0), (16, 5), (5, 7)):
        got = U.run_tiled(Nearest(2), x, 2, tile=tile, tile_pad=pad)
        assert torch.allclose(got, want, atol=1e-6), (tile, pad)
    # two neighbours' ramps over a 2*pad overlap cross-fade to 1
    a = U._ramp(20, False, True, 8)
    b = U._ramp(20, True, False, 8)
    assert torch.allclose(a[-8:] + b[:8], torch.ones(8))


def test_size_multiple_is_padded_and_cropped():
    class NeedsEight(Nearest):
        def forward(self, x):
            assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0
            return super().forward(x)

    x = torch.rand(1, 3, 13, 21)
    got = U.run_tiled(NeedsEight(2), x, 2, multiple=8)
    assert torch.equal(got, F.interpolate(x, scale_factor=2, mode="nearest"))


def _png16(path, a):
    U._png(path, a)


def test_16bit_in_16bit_out_and_alpha_upscaled_separately(tmp_path):
    info = ModelInfo("nearest", "Nearest", 2, "test")
    rgb16 = np.random.default_rng(0).integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    _png16(tmp_path / "a.png", rgb16)
    U.upscale_file(Nearest(2), info, tmp_path / "a.png", tmp_path / "a_out.png")
    got = read_photo(tmp_path / "a_out.png").pixels
    assert got.dtype == np.uint16 and got.shape == (12, 10, 3)
    np.testing.assert_array_equal(got, rgb16.repeat(2, 0).repeat(2, 1))

    rgba = np.random.default_rng(1).integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    U.upscale_file(Nearest(2), info, tmp_path / "b.png", tmp_path / "b_out.png")
    out = np.asarray(Image.open(tmp_path / "b_out.png"))
    assert out.shape == (12, 10, 4)
    np.testing.assert_array_equal(out, rgba.repeat(2, 0).repeat(2, 1))


def test_cli_mirrors_the_tree_skips_existing_and_overwrites(tmp_path, capsys):
    torch.manual_seed(0)
    net = RRDBNet(**TINY)
    torch.save({"params_ema": net.state_dict()}, tmp_path / "tiny.pth")
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(src / "sub" / "a.png")
    Image.fromarray(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)).save(src / "b.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the output must come out upright (16 x 8 -> 8 x 16 before x4)
    Image.fromarray(rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)).save(src / "c.png", exif=exif)
    (src / ".DS_Store").write_bytes(b"junk")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    out = tmp_path / "out"
    argv = ["-i", str(src), "-o", str(out), "-n", str(tmp_path / "tiny.pth"), "-t", "8", "--tile-pad", "4"]
    assert U.main(argv) == 1  # the broken file fails, the others are written
    err = capsys.readouterr().err
    assert "3 upscaled" in err and "broken.png" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        ["b_out.jpg", "c_out.png", "sub/a_out.png"]
    assert Image.open(out / "sub" / "a_out.png").size == (40, 48)
    assert Image.open(out / "c_out.png").size == (32, 64)
    before = (out / "sub" / "a_out.png").stat().st_mtime_ns
    U.main(argv)
    assert "0 upscaled, 3 already there" in capsys.readouterr().err
    assert (out / "sub" / "a_out.png").stat().st_mtime_ns == before
    U.main(argv + ["--overwrite", "-s", "2", "--suffix", ""])
    assert Image.open(out / "sub" / "a.png").size == (20, 24)


def test_color_correct_gives_the_output_the_inputs_channel_statistics():
    class Tinted(Nearest):  # x2 nearest with a colour cast the correction must undo
        def forward(self, x):
            return super().forward(x) * torch.tensor([0.5, 1.0, 1.0]).view(1, 3, 1, 1) + 0.1

    img = np.random.default_rng(3).random((16, 12, 3)).astype(np.float32) * 0.8 + 0.1
    out = U.upscale_image(Tinted(2), img, 2, color_correct=True)
    # nearest x2 repeats every pixel 4 times: the same mean and (almost) the same std per channel
    np.testing.assert_allclose(out.mean(axis=(0, 1)), img.mean(axis=(0, 1)), atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(0, 1)), img.std(axis=(0, 1)), rtol=0.02)
