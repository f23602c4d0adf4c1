"""Degradations: how low-resolution images are made from high-resolution ones.

Three families live here, for three different readers:

1. The *labeled* degradation PDD trains with (X^L = bicubic(Y^L)): `bicubic_down`
   (MATLAB ``imresize`` semantics) and `random_down` (the official configs' random
   choice of bicubic / bilinear / area, supplementary D.b), followed by `quantize`.
2. The *generalist's* training distribution: Real-ESRGAN's second-order pipeline
   (`SecondOrderConfig`, `second_order`). The notebooks use it to show what
   RealESRGAN_x4plus has already seen; PDD itself never trains on it.
3. The *hidden* degradations of the built-in target domains (`domain_defocus`,
   `domain_bayer`, `domain_iso`, collected in `DOMAIN_DEGRADATIONS`). They stand in for an unknown
   camera: `pdd.data` calls them once to write the domain's LR files and nothing in
   training ever reads them. They are picked OUTSIDE the second-order distribution
   (disk and motion blur, Bayer mosaic + demosaicing, low-passed chroma noise,
   4:2:0 JPEG at a fixed low quality) so the generalist meets something it was not
   trained on, as with a real camera.

Conventions: tensors are (N, 3, H, W) float in [0, 1], RGB; images on disk and in
`pdd.data` are HxWx3 uint8 RGB; `img2tensor` / `pdd.imageops.to_uint8` convert between them.
Every random choice is drawn from an explicit ``torch.Generator`` so that the same
seed gives bit-identical output (on one machine and library version).

Libraries: MATLAB bicubic from pyiqa (``pyiqa.matlab_utils.imresize``); filtering,
Gaussian / motion kernels, colour conversions and Bayer (de)mosaicing from kornia;
JPEG from Pillow (libjpeg-turbo), because kornia's ``jpeg_codec_differentiable``
rounds DCT coefficients with a differentiable cubic approximation
(``round(x) + (x - round(x))**3``) rather than real rounding, so it is not the codec
Real-ESRGAN (``DiffJPEG(differentiable=False)``) or a camera applies.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import kornia.color as kcolor
import kornia.filters as kfilters
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .imageops import quantize, to_uint8

# ---------------------------------------------------------------------------------------
# conversions
# ---------------------------------------------------------------------------------------


def img2tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> (1, 3, H, W) float32 in [0, 1]."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {img.dtype} {img.shape}")
    # np.array copies: arrays from packages (skimage) can be read-only, which torch warns about.
    return torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1)[None].float().div_(255.0)


# ---------------------------------------------------------------------------------------
# 1. the labeled degradation
# ---------------------------------------------------------------------------------------


def bicubic_down(hr: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')``: cubic kernel a=-0.5, antialiased.

    Uses pyiqa's port of MATLAB imresize (``pyiqa.matlab_utils.imresize``, Sanghyun
    Son's implementation, MATLAB-style symmetric border). Input (N, 3, H, W) or
    (3, H, W) float; output size ceil(H / scale) x ceil(W / scale). Not quantised: call
    `quantize` for 8-bit LR. Computed in float32.
    """
    # Imported here: `import pyiqa` pulls in its whole metric zoo (~3 s); only this
    # function needs it, and DataLoader workers inherit the import after first use.
    from pyiqa.matlab_utils import imresize

    if hr.dim() not in (3, 4):
        raise ValueError(f"bicubic_down expects (N,3,H,W) or (3,H,W), got {tuple(hr.shape)}")
    return imresize(hr.float(), scale=1.0 / scale)


# The official PDD configs' `RandomResize` (cv2.resize to a fixed target size, no
# antialiasing) with resize_opt ['bicubic', 'bilinear', 'area'] at 1/3 each. torch's
# F.interpolate reproduces cv2's semantics: bicubic with a=-0.75 and half-pixel centres
# (align_corners=False), bilinear with half-pixel centres, and 'area' = box average
# (identical to cv2.INTER_AREA for an integer factor). None of them antialiases, as in
# cv2: this option is deliberately NOT the MATLAB kernel.
RANDOM_DOWN_MODES = ("bicubic", "bilinear", "area")


def random_down(hr: torch.Tensor, scale: int = 4, generator: torch.Generator | None = None,
                modes: tuple[str, ...] = RANDOM_DOWN_MODES) -> torch.Tensor:
    """Downscale each image of a batch by `scale` with a mode drawn uniformly from `modes`.

    (N, 3, H, W) float -> (N, 3, H // scale, W // scale); not quantised.
    """
    if hr.dim() == 3:
        return random_down(hr[None], scale, generator, modes)[0]
    h, w = hr.shape[-2] // scale, hr.shape[-1] // scale
    out = []
    for i in range(hr.shape[0]):
        mode = modes[int(torch.randint(len(modes), (), generator=generator))]
        out.append(_resize(hr[i:i + 1], (h, w), mode))
    return torch.cat(out)


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """cv2-like resize of a float batch to `size` (no antialiasing)."""
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


# ---------------------------------------------------------------------------------------
# 2. Real-ESRGAN's second-order degradation (the generalist's training distribution)
# ---------------------------------------------------------------------------------------

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")


@dataclass
class SecondOrderConfig:
    """Parameter ranges of Real-ESRGAN's second-order degradation.

    Defaults are those of Real-ESRGAN's ``options/train_realesrgan_x4plus.yml`` (the
    config RealESRGAN_x4plus was trained with) and its dataset / model code. Sigmas are
    in pixels of the image the kernel is applied to; noise sigmas on the 0-255 scale.
    Suffix 2 = the second degradation round.
    """
    scale: int = 4
    # Real-ESRGAN degrades the unsharp-masked GT (`gt_usm`, weight 0.5, radius 50,
    # threshold 10), not the GT itself: LR made from a slightly sharpened HR.
    usm_sharpen: bool = True
    # --- first round ---
    kernel_range: tuple[int, ...] = (7, 9, 11, 13, 15, 17, 19, 21)  # odd kernel sizes, uniform
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)  # over KERNEL_TYPES
    sinc_prob: float = 0.1            # sinc (ringing) kernel instead of a Gaussian-like one
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)   # generalized Gaussian shape
    betap_range: tuple[float, float] = (1.0, 2.0)   # plateau shape
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    gaussian_noise_prob: float = 0.5  # otherwise Poisson noise
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4      # same noise on all three channels
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    # --- second round ---
    second_blur_prob: float = 0.8
    kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    # --- final step: [resize to H/scale + sinc] and JPEG, in random order (p = 0.5) ---
    final_sinc_prob: float = 0.8
    kernel_pad: int = 21              # every kernel is zero-padded to this size


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    """One uniform draw in [lo, hi) from `g` (float64 so that the value is exact)."""
    return lo + (hi - lo) * float(torch.rand((), generator=g, dtype=torch.float64))


def _choice(g: torch.Generator, probs) -> int:
    return int(torch.multinomial(torch.as_tensor(probs, dtype=torch.float64), 1, generator=g))


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def _quadratic_form(size: int, sig_x: float, sig_y: float, theta: float) -> torch.Tensor:
    """[x y] Sigma^-1 [x y]^T on the kernel grid, Sigma = R diag(sx^2, sy^2) R^T."""
    xx, yy = _grid(size)
    c, s = math.cos(theta), math.sin(theta)
    # Coordinates in the rotated frame: Sigma^-1 = R diag(1/sx^2, 1/sy^2) R^T.
    u = c * xx + s * yy
    v = -s * xx + c * yy
    return u * u / sig_x ** 2 + v * v / sig_y ** 2


def _beta(g: torch.Generator, lo: float, hi: float) -> float:
    # Real-ESRGAN's choice: below or above 1 with probability 1/2 each (so beta = 1,
    # the plain Gaussian / Cauchy-like case, sits at the median).
    return _u(g, lo, 1.0) if _u(g, 0, 1) < 0.5 else _u(g, 1.0, hi)


def random_blur_kernel(g: torch.Generator, size: int, probs, sigma_range, betag_range,
                       betap_range) -> tuple[torch.Tensor, str]:
    """One kernel of Real-ESRGAN's mixture: (size x size float64, normalised), its type."""
    kind = KERNEL_TYPES[_choice(g, probs)]
    sig_x = _u(g, *sigma_range)
    if "aniso" not in kind:
        sig_y, theta = sig_x, 0.0
    else:
        sig_y, theta = _u(g, *sigma_range), _u(g, -math.pi, math.pi)
    q = _quadratic_form(size, sig_x, sig_y, theta)
    if kind in ("iso", "aniso"):
        k = torch.exp(-0.5 * q)
    elif kind.startswith("generalized"):
        k = torch.exp(-0.5 * q.pow(_beta(g, *betag_range)))
    else:  # plateau: 1 / (1 + q^beta)
        k = 1.0 / (q.pow(_beta(g, *betap_range)) + 1.0)
    return k / k.sum(), kind


def sinc_kernel(omega_c: float, size: int) -> torch.Tensor:
    """Circular low-pass (2-D sinc / Airy) kernel with cutoff `omega_c` rad, normalised.

    h(r) = omega_c * J1(omega_c r) / (2 pi r), h(0) = omega_c^2 / (4 pi). It rings:
    Real-ESRGAN adds it to mimic over-sharpening and ringing artefacts.
    """
    xx, yy = _grid(size)
    r = torch.sqrt(xx ** 2 + yy ** 2)
    k = omega_c * torch.special.bessel_j1(omega_c * r) / (2 * math.pi * r.clamp_min(1e-12))
    k[r == 0] = omega_c ** 2 / (4 * math.pi)
    return k / k.sum()


def _pad_kernel(k: torch.Tensor, size: int) -> torch.Tensor:
    p = (size - k.shape[-1]) // 2
    return F.pad(k, (p, p, p, p)) if p > 0 else k


def _first_or_second_kernel(g: torch.Generator, cfg: SecondOrderConfig, second: bool) -> torch.Tensor:
    size = cfg.kernel_range[int(torch.randint(len(cfg.kernel_range), (), generator=g))]
    sinc_p = cfg.sinc_prob2 if second else cfg.sinc_prob
    if _u(g, 0, 1) < sinc_p:
        # Smaller kernels get a higher minimum cutoff, as in Real-ESRGAN.
        omega = _u(g, math.pi / 3, math.pi) if size < 13 else _u(g, math.pi / 5, math.pi)
        k = sinc_kernel(omega, size)
    elif second:
        k, _ = random_blur_kernel(g, size, cfg.kernel_prob2, cfg.blur_sigma2, cfg.betag_range2, cfg.betap_range2)
    else:
        k, _ = random_blur_kernel(g, size, cfg.kernel_prob, cfg.blur_sigma, cfg.betag_range, cfg.betap_range)
    return _pad_kernel(k, cfg.kernel_pad)


def filter_image(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate each channel with `kernel` (kH x kW), reflect border (kornia filter2d).

    Falls back to a replicate border for images too small to reflect a kernel this
    large (Real-ESRGAN always works on 400-px crops so it never meets this case).
    """
    k = kernel.to(x.dtype)[None]
    border = "reflect" if min(x.shape[-2:]) > kernel.shape[-1] // 2 else "replicate"
    return kfilters.filter2d(x, k, border_type=border)


def usm_sharpen(x: torch.Tensor, weight: float = 0.5, radius: int = 51, threshold: float = 10.0) -> torch.Tensor:
    """Real-ESRGAN's unsharp masking (its `USMSharp`): sharpen where the detail is strong.

    Gaussian of size `radius` with OpenCV's default sigma for that size
    (0.3 * ((radius - 1) / 2 - 1) + 0.8 = 8 for 51); the sharpening is blended in
    through a blurred mask of pixels whose residual exceeds `threshold` / 255.
    """
    sigma = 0.3 * ((radius - 1) * 0.5 - 1) + 0.8
    border = "reflect" if min(x.shape[-2:]) > radius // 2 else "replicate"

    def blur(t):
        return kfilters.gaussian_blur2d(t, (radius, radius), (sigma, sigma), border_type=border)

    residual = x - blur(x)
    soft_mask = blur((residual.abs() * 255 > threshold).to(x.dtype))
    sharp = torch.clamp(x + weight * residual, 0, 1)
    return soft_mask * sharp + (1 - soft_mask) * x


def _gray(x: torch.Tensor) -> torch.Tensor:
    return kcolor.rgb_to_grayscale(x)  # ITU-R 601 weights, as torchvision's


def add_gaussian_noise(x, g, sigma: float, gray: bool) -> torch.Tensor:
    """Additive white Gaussian noise, sigma on the 0-255 scale; clipped to [0, 1]."""
    shape = (x.shape[0], 1, *x.shape[2:]) if gray else x.shape
    noise = torch.randn(shape, generator=g, dtype=x.dtype) * (sigma / 255.0)
    return torch.clamp(x + noise, 0, 1)


def add_poisson_noise(x, g, scale: float, gray: bool) -> torch.Tensor:
    """Real-ESRGAN's Poisson (shot) noise, per image; clipped to [0, 1].

    The number of photon levels is 2^ceil(log2(#distinct 8-bit values in the image));
    grey noise is computed on the luma and shared by the three channels.
    """
    out = []
    for i in range(x.shape[0]):
        img = x[i:i + 1]
        src = _gray(img) if gray else img
        src = quantize(src)
        vals = 2.0 ** math.ceil(math.log2(max(len(torch.unique(src)), 1)))
        noise = torch.poisson(src * vals, generator=g) / vals - src
        out.append(torch.clamp(img + noise * scale, 0, 1))
    return torch.cat(out)


def jpeg(x: torch.Tensor, quality: float, subsampling: str = "4:2:0") -> torch.Tensor:
    """Real JPEG round trip with Pillow (libjpeg-turbo), per image; output on 8-bit levels.

    `quality` is rounded to an integer (libjpeg takes integers; Real-ESRGAN's DiffJPEG
    takes the float). Chroma is subsampled 4:2:0 by default, as in DiffJPEG and most
    cameras.
    """
    sub = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[subsampling]
    out = []
    for i in range(x.shape[0]):
        buf = io.BytesIO()
        Image.fromarray(to_uint8(x[i])).save(buf, format="JPEG", quality=round(quality),
                                               subsampling=sub)
        buf.seek(0)
        out.append(img2tensor(np.asarray(Image.open(buf).convert("RGB"))))
    return torch.cat(out).to(x.dtype)


def _random_noise(x, g, gauss_p, noise_range, poisson_range, gray_p):
    use_gauss = _u(g, 0, 1) < gauss_p
    if use_gauss:
        sigma = _u(g, *noise_range)
        return add_gaussian_noise(x, g, sigma, _u(g, 0, 1) < gray_p)
    scale = _u(g, *poisson_range)
    return add_poisson_noise(x, g, scale, _u(g, 0, 1) < gray_p)


def _random_scale(g, probs, rng) -> float:
    updown = _choice(g, probs)  # 0 up, 1 down, 2 keep
    if updown == 0:
        return _u(g, 1.0, rng[1])
    if updown == 1:
        return _u(g, rng[0], 1.0)
    return 1.0


def _random_mode(g) -> str:
    return RANDOM_DOWN_MODES[int(torch.randint(3, (), generator=g))]


def _second_order_one(hr: torch.Tensor, cfg: SecondOrderConfig, g: torch.Generator) -> torch.Tensor:
    h, w = hr.shape[-2:]
    out = usm_sharpen(hr) if cfg.usm_sharpen else hr
    # ---- first round: blur, resize, noise, JPEG
    out = filter_image(out, _first_or_second_kernel(g, cfg, second=False))
    s = _random_scale(g, cfg.resize_prob, cfg.resize_range)
    out = _resize(out, (int(out.shape[-2] * s), int(out.shape[-1] * s)), _random_mode(g))
    out = _random_noise(out, g, cfg.gaussian_noise_prob, cfg.noise_range, cfg.poisson_scale_range,
                        cfg.gray_noise_prob)
    out = jpeg(torch.clamp(out, 0, 1), _u(g, *cfg.jpeg_range))
    # ---- second round: (maybe) blur, resize relative to the final LR size, noise
    if _u(g, 0, 1) < cfg.second_blur_prob:
        out = filter_image(out, _first_or_second_kernel(g, cfg, second=True))
    s = _random_scale(g, cfg.resize_prob2, cfg.resize_range2)
    out = _resize(out, (int(h / cfg.scale * s), int(w / cfg.scale * s)), _random_mode(g))
    out = _random_noise(out, g, cfg.gaussian_noise_prob2, cfg.noise_range2, cfg.poisson_scale_range2,
                        cfg.gray_noise_prob2)
    # ---- final: [resize to the LR size + sinc] and JPEG, in either order (Real-ESRGAN
    # found that other orders produce twisted lines).
    if _u(g, 0, 1) < cfg.final_sinc_prob:
        size = cfg.kernel_range[int(torch.randint(len(cfg.kernel_range), (), generator=g))]
        final_k = _pad_kernel(sinc_kernel(_u(g, math.pi / 3, math.pi), size), cfg.kernel_pad)
    else:
        final_k = None  # Real-ESRGAN convolves with a unit pulse: a no-op
    mode, quality = _random_mode(g), _u(g, *cfg.jpeg_range2)
    lr_size = (h // cfg.scale, w // cfg.scale)

    def resize_sinc(t):
        t = _resize(t, lr_size, mode)
        return filter_image(t, final_k) if final_k is not None else t

    if _u(g, 0, 1) < 0.5:
        out = jpeg(torch.clamp(resize_sinc(out), 0, 1), quality)
    else:
        out = resize_sinc(jpeg(torch.clamp(out, 0, 1), quality))
    return quantize(out)


def second_order(hr: torch.Tensor, cfg: SecondOrderConfig | None = None,
                 generator: torch.Generator | int | None = None) -> torch.Tensor:
    """Real-ESRGAN's second-order degradation of a batch: (N,3,H,W) -> (N,3,H/s,W/s).

    Every image draws its own kernels, scales, resize modes, noise and JPEG qualities,
    one image after the other from `generator` (Real-ESRGAN shares the resize and noise
    draws within a batch; per-image draws make each LR a sample of the per-image
    distribution). `generator` may be a torch.Generator or an int seed; None means
    seed 0. Output is quantised to 8 bits.
    H and W must be divisible by cfg.scale. Real-ESRGAN crops 400 px (then 256) HR
    patches; inputs of at least ~128 px behave like its training data.
    """
    cfg = cfg or SecondOrderConfig()
    if isinstance(generator, int) or generator is None:
        generator = torch.Generator().manual_seed(int(generator or 0))
    if hr.dim() != 4 or hr.shape[1] != 3:
        raise ValueError(f"second_order expects (N,3,H,W), got {tuple(hr.shape)}")
    if hr.shape[-2] % cfg.scale or hr.shape[-1] % cfg.scale:
        raise ValueError(f"HR size {tuple(hr.shape[-2:])} is not divisible by scale {cfg.scale}")
    with torch.no_grad():
        return torch.cat([_second_order_one(hr[i:i + 1].float(), cfg, generator) for i in range(hr.shape[0])])


# ---------------------------------------------------------------------------------------
# 3. hidden degradations of the built-in domains (used only to write their LR files)
# ---------------------------------------------------------------------------------------


def disk_kernel(radius: float, supersample: int = 16) -> torch.Tensor:
    """Defocus point-spread function: a uniform disk, area-antialiased at its edge.

    A pillbox is what an out-of-focus lens produces; Real-ESRGAN's kernels are all
    smooth bell shapes (or sinc), none has this flat top and hard edge.
    """
    size = 2 * math.ceil(radius - 0.5) + 1
    n = size * supersample
    ax = (torch.arange(n, dtype=torch.float64) + 0.5) / supersample - size / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    inside = ((xx ** 2 + yy ** 2) <= radius ** 2).double()
    k = inside.view(size, supersample, size, supersample).mean(dim=(1, 3))
    return (k / k.sum()).float()


def chroma_noise(x: torch.Tensor, g: torch.Generator, sigma_y: float, sigma_c: float,
                 lowpass_sigma: float) -> torch.Tensor:
    """Noise in YCbCr: white luma noise + spatially low-passed (blotchy) chroma noise.

    sigma_y, sigma_c are standard deviations on the [0, 1] scale; the chroma noise is
    drawn white with sigma_c and then blurred by a Gaussian of `lowpass_sigma` pixels
    (so its per-pixel std ends up lower, spread over blotches a few pixels wide: the
    colour mottling of a camera's processed high-ISO output). Real-ESRGAN's noise is
    white per pixel (colour or grey); correlated chroma noise is outside it.
    """
    ycc = kcolor.rgb_to_ycbcr(x)
    ny = torch.randn((x.shape[0], 1, *x.shape[2:]), generator=g, dtype=x.dtype) * sigma_y
    nc = torch.randn((x.shape[0], 2, *x.shape[2:]), generator=g, dtype=x.dtype) * sigma_c
    ks = 2 * math.ceil(3 * lowpass_sigma) + 1
    nc = kfilters.gaussian_blur2d(nc, (ks, ks), (lowpass_sigma, lowpass_sigma), border_type="reflect")
    return torch.clamp(kcolor.ycbcr_to_rgb(ycc + torch.cat([ny, nc], dim=1)), 0, 1)


def bayer_roundtrip(x: torch.Tensor) -> torch.Tensor:
    """Sample an RGGB colour filter array and demosaic it bilinearly (kornia).

    Keeps one colour per pixel, then interpolates the missing two: zipper edges and
    false colour on fine detail. H and W must be even. (kornia's CFA names follow
    OpenCV, read from pixel (1, 1): CFA.BG is a sensor whose top-left cell is RGGB.)
    """
    raw = kcolor.rgb_to_raw(x, kcolor.CFA.BG)
    return torch.clamp(kcolor.raw_to_rgb(raw, kcolor.CFA.BG), 0, 1)


@dataclass(frozen=True)
class DefocusRecipe:
    """Camera 1: a slightly defocused lens, a noisy sensor, a low-quality JPEG."""
    disk_radius: float = 2.5        # HR pixels
    scale: int = 4
    sigma_y: float = 2 / 255        # luma noise
    sigma_c: float = 10 / 255       # chroma noise before its low-pass
    chroma_lowpass: float = 1.0     # LR pixels
    jpeg_quality: int = 40


@dataclass(frozen=True)
class BayerRecipe:
    """Camera 2: hand shake, a Bayer sensor with a cheap demosaic, chroma noise, JPEG."""
    motion_length: int = 9          # HR pixels (odd kernel size)
    scale: int = 4
    sigma_y: float = 1 / 255
    sigma_c: float = 8 / 255
    chroma_lowpass: float = 1.5
    jpeg_quality: int = 50


def domain_defocus(hr: np.ndarray, seed: int, recipe: DefocusRecipe = DefocusRecipe()) -> np.ndarray:
    """HR uint8 -> LR uint8: disk blur r 2.5 -> MATLAB bicubic x4 -> YCbCr noise -> JPEG q40 4:2:0."""
    g = torch.Generator().manual_seed(int(seed))
    x = img2tensor(hr)
    x = filter_image(x, disk_kernel(recipe.disk_radius))
    x = quantize(bicubic_down(x, recipe.scale))
    x = chroma_noise(x, g, recipe.sigma_y, recipe.sigma_c, recipe.chroma_lowpass)
    return to_uint8(jpeg(x, recipe.jpeg_quality, "4:2:0"))


def domain_bayer(hr: np.ndarray, seed: int, recipe: BayerRecipe = BayerRecipe()) -> np.ndarray:
    """HR uint8 -> LR uint8: linear motion blur (angle drawn from `seed`) -> MATLAB
    bicubic x4 -> RGGB mosaic + bilinear demosaic -> chroma noise -> JPEG q50 4:2:0.

    The LR size must be even (HR divisible by 2 * scale) for the Bayer pattern.
    """
    g = torch.Generator().manual_seed(int(seed))
    angle = _u(g, 0.0, 180.0)
    x = img2tensor(hr)
    # kornia's motion kernel, bilinearly rasterised (a line segment, not a Gaussian).
    x = kfilters.motion_blur(x, recipe.motion_length, angle, 0.0, border_type="reflect", mode="bilinear")
    x = quantize(bicubic_down(x, recipe.scale))
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"domain_bayer needs an even LR size, got {tuple(x.shape[-2:])}")
    x = bayer_roundtrip(x)
    x = chroma_noise(x, g, recipe.sigma_y, recipe.sigma_c, recipe.chroma_lowpass)
    return to_uint8(jpeg(x, recipe.jpeg_quality, "4:2:0"))


@dataclass(frozen=True)
class IsoRecipe:
    """Camera 3: a small phone sensor at high ISO in dim light — the noise a bicubic specialist
    cannot handle (NTIRE20-like sensor noise; in the paper the bicubic ESRGAN loses ~5 dB to
    RealESRGAN there). Measured on flat sRGB patches: noise std 20/255 at 0.05, 23 at 0.1, 29 at
    0.3, 24 at 0.5, 20 at 0.8 (clipping at black and the gamma curve shape it); 1–30/255 is
    the range of Real-ESRGAN's own Gaussian noise. Chosen on notebook 02's premise numbers
    alone: at a third of this strength a bicubic specialist still beat the generalist."""
    scale: int = 4
    shot_gain: float = 0.027        # variance per unit of linear signal (the Poisson part)
    read_sigma: float = 0.018       # linear-light std of the signal-independent part
    jpeg_quality: int = 75


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x.clamp(min=0) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def sensor_noise(x: torch.Tensor, g: torch.Generator, shot_gain: float, read_sigma: float) -> torch.Tensor:
    """sRGB in [0,1] -> linear light -> independent Gaussian noise per pixel and channel with
    variance shot_gain·L + read_sigma² (the usual Poisson–Gaussian sensor model) -> sRGB.

    After the gamma curve the noise is strongest in the shadows and coloured (each channel
    its own draw). Real-ESRGAN's noise lives in sRGB (Gaussian, or Poisson scaled in sRGB):
    the same kind, a different law — this domain tests robustness to noise the generalist
    has learnt to remove, which is what the paper's Table 1 premise is about.
    """
    lin = srgb_to_linear(x)
    std = torch.sqrt(shot_gain * lin.clamp(min=0) + read_sigma ** 2)
    return linear_to_srgb(lin + torch.randn(lin.shape, generator=g, dtype=lin.dtype) * std)


def domain_iso(hr: np.ndarray, seed: int, recipe: IsoRecipe = IsoRecipe()) -> np.ndarray:
    """HR uint8 -> LR uint8: MATLAB bicubic x4 -> Poisson-Gaussian sensor noise in linear
    light -> sRGB -> JPEG q75 4:2:0."""
    g = torch.Generator().manual_seed(int(seed))
    x = quantize(bicubic_down(img2tensor(hr), recipe.scale))
    x = sensor_noise(x, g, recipe.shot_gain, recipe.read_sigma)
    return to_uint8(jpeg(x, recipe.jpeg_quality, "4:2:0"))


# Hidden degradation of each built-in domain; read only by `pdd.data` when it (re)writes
# the domain's files. Values: (function, recipe).
DOMAIN_DEGRADATIONS = {
    "Synth-Defocus": (domain_defocus, DefocusRecipe()),
    "Synth-Bayer": (domain_bayer, BayerRecipe()),
    "Synth-ISO": (domain_iso, IsoRecipe()),
}
