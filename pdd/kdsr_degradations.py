"""KDSR's classic degradation (the training data of the KDSR_S-M / KDSR_S-L variants).

From ``../shared/specs/kdsr.md`` section 3 ("Classic repo"): a 21x21 Gaussian blur with
reflection padding, then MATLAB bicubic x1/4 (antialiased, ``pdd.degradations.bicubic_down``),
then Gaussian noise added after downsampling, then 8-bit quantisation.
- isotropic: sigma ~ U[0.2, 4];
- anisotropic: lambda1, lambda2 ~ U[0.2, 4] used as standard deviations along the kernel's
  axes, theta ~ U[0, pi]: covariance = R(theta) diag(lambda1^2, lambda2^2) R(theta)^T;
- noise level ~ U[0, noise_max] / 255 (noise_max 25 in the aniso+noise setting, 0 for iso).

Stated deviation: the official code draws ONE kernel and noise level per batch; here every
image draws its own (as the project's second-order pipeline does), so a batch covers more
of the distribution. Draws come from a ``torch.Generator``: the same seed gives the same LR.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import degradations as deg
from .imageops import quantize

CLASSIC_MODES = ("iso", "aniso")


@dataclass
class ClassicConfig:
    """Ranges of the classic pipeline (official ``option.py`` / ``utils/util2.py`` values)."""

    mode: str = "iso"                         # iso | aniso
    kernel_size: int = 21
    sigma_range: tuple[float, float] = (0.2, 4.0)   # iso sigma, or each aniso lambda
    noise_max: float = 0.0                    # noise level ~ U[0, noise_max] on the 0-255 scale
    scale: int = 4


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> torch.Tensor:
    """A size x size Gaussian on the integer grid centred on the middle pixel, summing to 1.

    k(p) proportional to exp(-p^T S^-1 p / 2) with S = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T,
    p = (x, y) (x to the right, y down). Computed in float64, returned float32.
    """
    sigma_y = sigma_x if sigma_y is None else sigma_y
    if size % 2 == 0 or size < 1:
        raise ValueError(f"kernel size must be odd and positive, got {size}")
    if sigma_x <= 0 or sigma_y <= 0:
        raise ValueError(f"kernel standard deviations must be positive, got {sigma_x}, {sigma_y}")
    r = size // 2
    ax = torch.arange(-r, r + 1, dtype=torch.float64)
    y, x = torch.meshgrid(ax, ax, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sigma_x ** 2, sigma_y ** 2], dtype=torch.float64)) @ rot.T
    inv = torch.linalg.inv(cov)
    quad = inv[0, 0] * x * x + (inv[0, 1] + inv[1, 0]) * x * y + inv[1, 1] * y * y
    k = torch.exp(-0.5 * quad)
    return (k / k.sum()).float()


def random_classic_kernel(generator: torch.Generator, cfg: ClassicConfig) -> tuple[torch.Tensor, dict]:
    """One kernel drawn as the official code does, and the parameters drawn."""
    lo, hi = cfg.sigma_range
    u = lambda: lo + (hi - lo) * float(torch.rand((), generator=generator, dtype=torch.float64))  # noqa: E731
    if cfg.mode == "iso":
        sigma = u()
        return gaussian_kernel(cfg.kernel_size, sigma), {"sigma": sigma}
    if cfg.mode == "aniso":
        l1, l2 = u(), u()
        theta = math.pi * float(torch.rand((), generator=generator, dtype=torch.float64))
        return gaussian_kernel(cfg.kernel_size, l1, l2, theta), {"lambda1": l1, "lambda2": l2, "theta": theta}
    raise ValueError(f"unknown classic mode {cfg.mode!r}; valid: {', '.join(CLASSIC_MODES)}")


def blur_down(hr: torch.Tensor, kernel: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """Correlate every channel with ``kernel`` (reflection padding), then MATLAB bicubic 1/scale.
    (N, 3, H, W) -> (N, 3, H/scale, W/scale), not quantised."""
    r = kernel.shape[-1] // 2
    n, c, h, w = hr.shape
    if min(h, w) <= r:
        raise ValueError(f"image {h}x{w} is too small to reflect a {kernel.shape[-1]}-pixel kernel")
    x = F.pad(hr.float().reshape(n * c, 1, h, w), (r, r, r, r), mode="reflect")
    blurred = F.conv2d(x, kernel.to(torch.float32)[None, None]).reshape(n, c, h, w)
    return deg.bicubic_down(blurred, scale)


def classic_degrade(hr: torch.Tensor, cfg: ClassicConfig | None = None,
                    generator: torch.Generator | int | None = None) -> torch.Tensor:
    """KDSR's classic degradation of a batch, every image with its own kernel and noise level.

    (N, 3, H, W) in [0, 1] -> (N, 3, H/s, W/s), 8-bit quantised. ``generator``: a
    ``torch.Generator`` or an int seed (None = 0).
    """
    cfg = cfg or ClassicConfig()
    if isinstance(generator, int) or generator is None:
        generator = torch.Generator().manual_seed(int(generator or 0))
    if hr.dim() != 4 or hr.shape[1] != 3:
        raise ValueError(f"classic_degrade expects (N,3,H,W), got {tuple(hr.shape)}")
    out = []
    with torch.no_grad():
        for i in range(hr.shape[0]):
            kernel, _ = random_classic_kernel(generator, cfg)
            lr = blur_down(hr[i:i + 1], kernel, cfg.scale)
            if cfg.noise_max > 0:
                level = cfg.noise_max * float(torch.rand((), generator=generator, dtype=torch.float64)) / 255.0
                lr = lr + level * torch.randn(lr.shape, generator=generator)
            out.append(quantize(lr))
    return torch.cat(out)


__all__ = ["CLASSIC_MODES", "ClassicConfig", "blur_down", "classic_degrade", "gaussian_kernel",
           "random_classic_kernel"]
