"""Degradations: MATLAB bicubic, random resize, Real-ESRGAN second order, hidden domains."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pdd import degradations as deg
from pdd.imageops import quantize, to_uint8


def _photo(h=96, w=128, seed=0, noise=20.0):
    """A smooth-plus-texture uint8 test image (no package data needed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, (xx + yy) / (h + w)], -1) * 200
    return np.clip(base + rng.normal(0, noise, (h, w, 3)), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- bicubic

def test_bicubic_down_is_pyiqa_matlab_imresize():
    from pyiqa.matlab_utils import imresize

    x = torch.rand(2, 3, 40, 24, generator=torch.Generator().manual_seed(0))
    y = deg.bicubic_down(x, 4)
    assert y.shape == (2, 3, 10, 6)
    assert torch.equal(y, imresize(x, scale=0.25))


def test_bicubic_constant_stays_constant():
    x = torch.full((1, 3, 32, 20), 0.3)
    assert torch.allclose(deg.bicubic_down(x, 4), torch.full((1, 3, 8, 5), 0.3), atol=1e-6)


def test_bicubic_ramp_matches_hand_computed_matlab_values():
    # A ramp v_j = j (j = 0..31, 0-based) along the width, downscaled by 4.
    # MATLAB imresize with antialiasing stretches the cubic kernel (a = -0.5) by 4:
    # weight of input j for output o is cubic((c - j) / 4), c = 4 o + 1.5 the output
    # centre in input coordinates, normalised to sum 1. For o = 0 (c = 1.5) the taps
    # j = -6..9 sit at |c - j| / 4 = 0.125, 0.375, ..., 1.875 on both sides, with
    #   cubic(0.125) = 0.9638671875   cubic(0.375) = 0.7275390625
    #   cubic(0.625) = 0.3896484375   cubic(0.875) = 0.0908203125
    #   cubic(1.125) = -0.0478515625  cubic(1.375) = -0.0732421875
    #   cubic(1.625) = -0.0439453125  cubic(1.875) = -0.0068359375
    # (one side sums to 2, so the normaliser is 4). MATLAB's border mirrors with the
    # edge sample repeated: v(-1) = v(0) = 0, v(-2) = 1, ..., v(-6) = 5. Pairing taps
    # symmetric about 1.5:
    #   .9638671875*(1+2) + .7275390625*(0+3) + .3896484375*(0+4) + .0908203125*(1+5)
    #   - .0478515625*(2+6) - .0732421875*(3+7) - .0439453125*(4+8) - .0068359375*(5+9)
    #   = 5.439453125, / 4 = 1.35986328125   (a plain linear ramp would give 1.5).
    # Interior outputs, whose 16 taps stay inside the image, stay on the ramp: 4 o + 1.5.
    x = torch.arange(32, dtype=torch.float32).view(1, 1, 1, 32).expand(1, 3, 8, 32).contiguous()
    y = deg.bicubic_down(x, 4)[0, 0, 0]
    assert y.shape == (8,)
    assert y[0].item() == pytest.approx(1.35986328125, abs=1e-5)
    assert y[-1].item() == pytest.approx(31 - 1.35986328125, abs=1e-5)  # mirror image
    assert torch.allclose(y[2:6], torch.tensor([9.5, 13.5, 17.5, 21.5]), atol=1e-5)


def test_img2tensor_roundtrip():
    img = _photo(16, 12)
    t = deg.img2tensor(img)
    assert t.shape == (1, 3, 16, 12) and t.dtype == torch.float32
    assert np.array_equal(to_uint8(t), img)


# --------------------------------------------------------------------------- random_down

def test_random_down_modes_shapes_and_seed():
    x = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    a = deg.random_down(x, 4, torch.Generator().manual_seed(5))
    b = deg.random_down(x, 4, torch.Generator().manual_seed(5))
    assert a.shape == (12, 3, 8, 8) and torch.equal(a, b)
    # Each output is one of the three cv2-like resizes of its input, and all three occur.
    used = set()
    for i in range(12):
        for mode in deg.RANDOM_DOWN_MODES:
            kw = {} if mode == "area" else {"align_corners": False}
            if torch.allclose(a[i:i + 1], F.interpolate(x[i:i + 1], size=(8, 8), mode=mode, **kw)):
                used.add(mode)
    assert used == set(deg.RANDOM_DOWN_MODES)


def test_area_mode_is_box_average():
    x = torch.rand(1, 3, 8, 8)
    box = x.view(1, 3, 2, 4, 2, 4).mean(dim=(3, 5))
    assert torch.allclose(deg._resize(x, (2, 2), "area"), box, atol=1e-6)


# --------------------------------------------------------------------------- kernels

@pytest.mark.parametrize("kind", range(len(deg.KERNEL_TYPES)))
def test_random_kernels_normalised_and_point_symmetric(kind):
    probs = [0.0] * len(deg.KERNEL_TYPES)
    probs[kind] = 1.0
    g = torch.Generator().manual_seed(kind)
    k, name = deg.random_blur_kernel(g, 15, probs, (0.2, 3.0), (0.5, 4.0), (1.0, 2.0))
    assert name == deg.KERNEL_TYPES[kind]
    assert k.shape == (15, 15) and k.sum().item() == pytest.approx(1.0)
    assert torch.allclose(k, torch.flip(k, (0, 1)))  # every kernel of the family is centred
    if "aniso" not in name:
        assert torch.allclose(k, k.T)


def test_iso_gaussian_kernel_formula():
    g = torch.Generator().manual_seed(0)
    k, _ = deg.random_blur_kernel(g, 21, [1, 0, 0, 0, 0, 0], (2.0, 2.0 + 1e-9), (0.5, 4), (1, 2))
    ax = torch.arange(21, dtype=torch.float64) - 10
    ref = torch.exp(-(ax[None] ** 2 + ax[:, None] ** 2) / (2 * 2.0 ** 2))
    assert torch.allclose(k, ref / ref.sum(), atol=1e-9)


def test_sinc_kernel_is_lowpass():
    k = deg.sinc_kernel(math.pi / 3, 21)
    assert k.sum().item() == pytest.approx(1.0)
    assert k[10, 10] == k.max() and k.min() < 0  # rings
    # Full cutoff (pi) is close to a unit pulse.
    assert deg.sinc_kernel(math.pi, 21)[10, 10] > 0.7


def test_disk_kernel():
    k = deg.disk_kernel(2.5)
    assert k.shape == (5, 5) and k.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(k, k.T) and torch.allclose(k, torch.flip(k, (0,)))
    assert k[2, 2] == k[1, 2] == k[2, 0] or k[2, 0] < k[2, 2]  # flat top, antialiased rim


def test_usm_leaves_flat_image_unchanged():
    x = torch.full((1, 3, 64, 64), 0.4)
    assert torch.allclose(deg.usm_sharpen(x), x, atol=1e-6)


def test_jpeg_on_8bit_grid_and_high_quality_close():
    x = deg.img2tensor(_photo(48, 64, noise=3.0))  # per-pixel colour noise would not survive 4:2:0
    y = deg.jpeg(x, 95)
    assert y.shape == x.shape
    assert torch.equal(y, quantize(y))
    assert (y - x).abs().mean() < 3 / 255
    assert (deg.jpeg(x, 10) - x).abs().mean() > (y - x).abs().mean()


# --------------------------------------------------------------------------- second order

def test_second_order_config_defaults_are_real_esrgan_x4plus():
    c = deg.SecondOrderConfig()
    assert c.resize_prob == (0.2, 0.7, 0.1) and c.resize_range == (0.15, 1.5)
    assert c.noise_range == (1.0, 30.0) and c.poisson_scale_range == (0.05, 3.0)
    assert c.jpeg_range == (30.0, 95.0) and c.gray_noise_prob == 0.4
    assert c.second_blur_prob == 0.8 and c.resize_prob2 == (0.3, 0.4, 0.3) and c.resize_range2 == (0.3, 1.2)
    assert c.noise_range2 == (1.0, 25.0) and c.poisson_scale_range2 == (0.05, 2.5)
    assert c.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03) and c.sinc_prob == 0.1
    assert c.blur_sigma == (0.2, 3.0) and c.blur_sigma2 == (0.2, 1.5) and c.final_sinc_prob == 0.8
    assert c.kernel_range == tuple(range(7, 22, 2)) and c.usm_sharpen


def test_second_order_deterministic_shapes_range():
    hr = torch.cat([deg.img2tensor(_photo(96, 128, s)) for s in range(3)])
    a = deg.second_order(hr, generator=torch.Generator().manual_seed(7))
    b = deg.second_order(hr, generator=torch.Generator().manual_seed(7))
    c = deg.second_order(hr, generator=8)
    assert a.shape == (3, 3, 24, 32)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and torch.equal(a, quantize(a))


def test_second_order_handles_small_inputs_and_checks_scale():
    # Strong downscales can leave a few pixels; the replicate fallback keeps it working.
    for seed in range(6):
        out = deg.second_order(torch.rand(1, 3, 32, 32), generator=seed)
        assert out.shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="divisible"):
        deg.second_order(torch.rand(1, 3, 30, 32))


# --------------------------------------------------------------------------- hidden domains

@pytest.mark.parametrize("name", list(deg.DOMAIN_DEGRADATIONS))
def test_domain_degradations_deterministic(name):
    fn, recipe = deg.DOMAIN_DEGRADATIONS[name]
    hr = _photo(96, 128)
    a, b, c = fn(hr, 3, recipe), fn(hr, 3, recipe), fn(hr, 4, recipe)
    assert a.dtype == np.uint8 and a.shape == (24, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # Not the source protocol: clearly different from plain bicubic LR.
    bic = to_uint8(quantize(deg.bicubic_down(deg.img2tensor(hr))))
    assert np.abs(a.astype(int) - bic.astype(int)).mean() > 2


def test_two_domains_differ():
    hr = _photo(96, 128)
    (f1, r1), (f2, r2) = list(deg.DOMAIN_DEGRADATIONS.values())[:2]
    assert np.abs(f1(hr, 0, r1).astype(int) - f2(hr, 0, r2).astype(int)).mean() > 1


def test_bayer_roundtrip_keeps_sampled_values():
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = deg.bayer_roundtrip(x)
    # RGGB: R at (even, even), G at (even, odd) and (odd, even), B at (odd, odd).
    assert torch.allclose(y[0, 0, ::2, ::2], x[0, 0, ::2, ::2], atol=1e-6)
    assert torch.allclose(y[0, 1, ::2, 1::2], x[0, 1, ::2, 1::2], atol=1e-6)
    assert torch.allclose(y[0, 2, 1::2, 1::2], x[0, 2, 1::2, 1::2], atol=1e-6)
    assert not torch.allclose(y, x, atol=1e-3)


def test_chroma_noise_mostly_in_chroma():
    import kornia.color as kc

    x = torch.full((1, 3, 64, 64), 0.5)
    y = deg.chroma_noise(x, torch.Generator().manual_seed(0), 1 / 255, 10 / 255, 1.0)
    d = kc.rgb_to_ycbcr(y) - kc.rgb_to_ycbcr(x)
    assert d[0, 0].std() < d[0, 1].std() and d[0, 0].std() < d[0, 2].std()


def test_sensor_noise_follows_the_poisson_gaussian_law_in_linear_light():
    # A flat mid-grey patch: in linear light the noise std must be sqrt(k*L + r^2),
    # worked out here from the sRGB transfer curve independently of the module.
    srgb = 0.5
    lin = ((srgb + 0.055) / 1.055) ** 2.4  # 0.2140
    k, r = 0.027, 0.018
    x = torch.full((1, 3, 256, 256), srgb, dtype=torch.float64)
    y = deg.sensor_noise(x, torch.Generator().manual_seed(0), k, r)
    y_lin = torch.where(y <= 0.04045, y / 12.92, ((y + 0.055) / 1.055) ** 2.4)
    expected = math.sqrt(k * lin + r * r)
    assert abs(y_lin.std().item() - expected) / expected < 0.03
    assert abs(y_lin.mean().item() - lin) < 0.003
    # channels draw independently (colour noise), the same seed gives the same noise
    c = torch.corrcoef(y_lin[0].reshape(3, -1))
    assert c[0, 1].abs() < 0.05 and c[1, 2].abs() < 0.05
    assert torch.equal(y, deg.sensor_noise(x, torch.Generator().manual_seed(0), k, r))


def test_training_code_never_imports_the_hidden_degradations():
    # The target's degradation is written into the domain's files once; nothing that trains
    # may read it (the generalist and PDD only ever see the LR files).
    import ast
    from pathlib import Path
    root = Path(deg.__file__).parent
    hidden = {"DOMAIN_DEGRADATIONS", "domain_iso", "domain_defocus", "domain_bayer", "IsoRecipe",
              "DefocusRecipe", "BayerRecipe", "sensor_noise"}
    experiments = [*root.glob("experiments.py"), *sorted(root.glob("experiments/*.py"))]  # a module or a package
    assert experiments
    for path in [root / n for n in ("train.py", "losses.py", "config.py", "evaluate.py")] + experiments:
        tree = ast.parse(path.read_text())
        used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)} | \
               {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert not used & hidden, (path.name, used & hidden)
