"""Small image helpers every layer uses: 8-bit rounding, conversion to uint8, and tiled inference.

Only torch and numpy here, so that data, degradations, evaluation, figures and the photo
upscaler can all share one definition of each (they used to carry their own copies).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


# ------------------------------------------------------------------------------ 8-bit values


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels and clamp to [0, 1], as saving as PNG would: round(x * 255) / 255.

    Computed in ``x``'s dtype (the official pipeline's ``Quantize`` step on float32 LR; the
    scores pass float64). Ties round to even (torch.round). Rounding comes before clamping, so
    a value just below 0 gives -0.0: the evaluation clamps first where that sign has always
    been +0.0 (see ``pdd.evaluate.evaluate``).
    """
    return torch.clamp(torch.round(x * 255.0), 0, 255) / 255.0


def to_uint8(img) -> np.ndarray:
    """An image as a uint8 array, rounded (ties to even), never truncated.

    - a tensor (3, H, W) or (1, 3, H, W) in [0, 1]: HxWx3, clamped, computed in float32;
    - a float array in [0, 1]: the same layout, clamped, computed in its own dtype;
    - a uint16 array: full-range scaling (65535 -> 255), not the high byte;
    - a uint8 array: itself.
    """
    if torch.is_tensor(img):
        t = img.detach().float().cpu()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"to_uint8 takes one image, got a batch of {t.shape[0]}")
            t = t[0]
        img = t.permute(1, 2, 0).contiguous().numpy()
    a = np.asarray(img)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return np.round(a.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)


# ------------------------------------------------------------------------------ tiled inference


def n_tiles(h: int, w: int, tile: int) -> int:
    """How many pieces ``run_tiled`` cuts an h x w LR image into (1: run whole)."""
    return 1 if tile <= 0 or (h <= tile and w <= tile) else -(-h // tile) * -(-w // tile)


def _spans(n: int, tile: int, pad: int) -> list[tuple[int, int, int, int]]:
    """Along one side of n pixels, per tile: its own span (a, b) and the span it is run on,
    with up to ``pad`` context pixels each side (ca, cb)."""
    return [(a, min(a + tile, n), max(a - pad, 0), min(a + tile + pad, n)) for a in range(0, n, tile)]


def _ramp(n: int, lo_inner: bool, hi_inner: bool, width: int, device=None) -> torch.Tensor:
    """1-D blending weights over n output pixels: rising linearly over `width` pixels from an
    edge that faces another tile, 1 elsewhere. Two neighbours' ramps over their shared 2*pad
    LR overlap sum to 1 (see `run_tiled`)."""
    i = torch.arange(n, dtype=torch.float32, device=device) + 0.5
    w = torch.ones(n, device=device)
    if width > 0:
        if lo_inner:
            w = torch.minimum(w, i / width)
        if hi_inner:
            w = torch.minimum(w, (n - i) / width)
    return w


def _blend_weights(spans, n: int, scale: int, width: int, device) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Each span's ramp at output resolution, and their sum over the n * scale output pixels."""
    ramps = [_ramp((cb - ca) * scale, ca > 0, cb < n, width, device) for _, _, ca, cb in spans]
    total = torch.zeros(n * scale, device=device)
    for (_, _, ca, cb), r in zip(spans, ramps):
        total[ca * scale:cb * scale] += r
    return ramps, total


def _forward(model, x: torch.Tensor, multiple: int) -> torch.Tensor:
    """model(x) as float32; x reflect-padded to a multiple of `multiple` (some archs need it)
    and the output cropped back (the model's scale read off the output)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return model(x).float()
    mode = "reflect" if ph < h and pw < w else "replicate"
    y = model(F.pad(x, (0, pw, 0, ph), mode=mode)).float()
    s = y.shape[-1] // (w + pw)
    return y[..., : h * s, : w * s]


@torch.no_grad()
def run_tiled(model, x: torch.Tensor, tile: int = 0, tile_pad: int = 10, *, blend: bool = True, multiple: int = 1,
              on_tile=None) -> torch.Tensor:
    """SR of x (N, C, H, W) float, as float32 on x's device: whole when tile <= 0 or the image
    fits one tile, else in tile x tile LR pieces each run with `tile_pad` extra context pixels
    per side. The scale is the model's own (read off the first piece).

    How the pieces are put together:

    - ``blend=True`` (pdd.upscale): neighbouring pieces overlap by 2*tile_pad LR pixels; over
      that overlap each piece's weight falls linearly from 1 to 0 towards its own edge (where
      it saw least context) while its neighbour's rises, so the weights sum to 1 and the
      result cross-fades instead of cutting. Image borders get no ramp (no neighbour).
    - ``blend=False`` (pdd.evaluate): only the centre of each piece is kept, so the result
      equals the whole-image output exactly when the model's receptive field is within
      ``tile_pad``; wider ones leave seams.

    ``on_tile()`` is called after each piece (a progress bar).
    """
    n, c, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return _forward(model, x, multiple)
    rows, cols = _spans(h, tile, tile_pad), _spans(w, tile, tile_pad)
    out = None
    for i, (y0, y1, cy0, cy1) in enumerate(rows):
        for j, (x0, x1, cx0, cx1) in enumerate(cols):
            piece = _forward(model, x[..., cy0:cy1, cx0:cx1], multiple)
            if out is None:  # the first piece tells the scale
                s = piece.shape[-1] // (cx1 - cx0)
                out = x.new_zeros(n, piece.shape[1], h * s, w * s, dtype=torch.float32)
                if blend:
                    # The tiles form a full grid and each weight is wy(y) * wx(x), so the total
                    # weight is separable too: no full-size weight map.
                    wrows, sy = _blend_weights(rows, h, s, 2 * tile_pad * s, out.device)
                    wcols, sx = _blend_weights(cols, w, s, 2 * tile_pad * s, out.device)
            if blend:
                out[..., cy0 * s:cy1 * s, cx0 * s:cx1 * s] += piece * (wrows[i][:, None] * wcols[j][None, :])
            else:
                oy, ox = (y0 - cy0) * s, (x0 - cx0) * s
                out[..., y0 * s:y1 * s, x0 * s:x1 * s] = piece[..., oy:oy + (y1 - y0) * s, ox:ox + (x1 - x0) * s]
            if on_tile is not None:
                on_tile()
    return out.div_(sy[:, None] * sx[None, :]) if blend else out
