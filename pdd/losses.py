"""Losses of PDD: supervised (wavelet L1 + perceptual + GAN), R_intra, R_inter, naive
distillation, and the inference-time colour correction.

Feature arguments are dicts ``{vgg layer name: (N, C, H, W) tensor}``. Every PDD
regulariser takes its four predictions' features in the order
``(s_u, s_l, g_u, g_l) = S(X^U), S(X^L), G(X^U), G(X^L)``.
The definitions follow the official implementation (``DistillationLoss`` in
github Yuehan717/PDD); where the paper and that code differ, DESIGN.md says which
is the default.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

Features = dict[str, torch.Tensor]

# Layer weights of the official configs (all pre-ReLU VGG19 features).
PERCEPTUAL_LAYERS = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
R_INTRA_LAYERS = {"conv2_2": 0.1, "conv3_4": 0.3, "conv4_4": 1.0, "conv5_4": 1.0}
R_INTER_LAYERS = {"conv2_1": 0.25, "conv3_1": 0.25, "conv4_1": 0.25, "conv5_1": 0.25}
CE_EPS = 1e-6


# --------------------------------------------------------------------------- supervised
def haar_bands(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One-level orthonormal 2-D Haar transform: (LL, cat[HL, LH], HH).

    For a 2x2 block [[a, b], [c, d]]: LL=(a+b+c+d)/2, HL=(-a-c+b+d)/2,
    LH=(-a+c-b+d)/2, HH=(a-c-b+d)/2. Height and width must be even.
    """
    if x.shape[-1] % 2 or x.shape[-2] % 2:
        raise ValueError(f"haar_bands needs even height and width, got {tuple(x.shape[-2:])}")
    a = x[..., 0::2, 0::2] / 2
    b = x[..., 0::2, 1::2] / 2
    c = x[..., 1::2, 0::2] / 2
    d = x[..., 1::2, 1::2] / 2
    ll = a + b + c + d
    hl = -a - c + b + d
    lh = -a - b + c + d
    hh = a - b - c + d
    return ll, torch.cat([hl, lh], dim=1), hh


def haar_inverse(ll: torch.Tensor, mid: torch.Tensor, hh: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`haar_bands` (used by tests and figures)."""
    hl, lh = mid.chunk(2, dim=1)
    a = (ll - hl - lh + hh) / 2
    b = (ll + hl - lh - hh) / 2
    c = (ll - hl + lh - hh) / 2
    d = (ll + hl + lh + hh) / 2
    n, ch, h, w = ll.shape
    out = ll.new_empty(n, ch, 2 * h, 2 * w)
    out[..., 0::2, 0::2], out[..., 0::2, 1::2] = a, b
    out[..., 1::2, 0::2], out[..., 1::2, 1::2] = c, d
    return out


def wavelet_loss(pred: torch.Tensor, target: torch.Tensor,
                 band_weights=(1.0, 0.1, 0.01)) -> torch.Tensor:
    """Σ_b w_b · mean|Haar_b(pred) − Haar_b(target)| over bands LL, {HL,LH}, HH.

    The official config uses weights [1, 0.1, 0.01] and multiplies the sum by 0.5
    (``SupervisedWeights.wavelet``); the supplementary's Table 4 gives ω3 = 0.001.
    """
    return sum(w * F.l1_loss(p, t) for w, p, t in zip(band_weights, haar_bands(pred), haar_bands(target)))


def perceptual_loss(pred_feats: Features, target_feats: Features, layer_weights=PERCEPTUAL_LAYERS) -> torch.Tensor:
    """Σ_l w_l · mean|φ_l(pred) − φ_l(target)| (BasicSR PerceptualLoss, criterion l1)."""
    return sum(w * F.l1_loss(pred_feats[k], target_feats[k]) for k, w in layer_weights.items())


def gan_loss_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """Vanilla GAN generator loss: BCE-with-logits of fake predictions against 'real'."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def gan_loss_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Vanilla GAN discriminator losses (real term, fake term), each BCE-with-logits."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real, fake


# --------------------------------------------------------------------------- PDD regularisers
def _fp32(x: torch.Tensor) -> torch.Tensor:
    """Upcast half/bfloat16 (autocast) to fp32; leave fp32/fp64 alone."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _no_autocast(feats: Features):
    """Autocast off: under bf16 autocast even fp32 inputs would be multiplied in bf16,
    and the Gram matrices / softmax-log of the regularisers are kept in fp32."""
    device_type = next(iter(feats.values())).device.type
    return torch.autocast(device_type=device_type, enabled=False)


def _intra_ce(d_s: torch.Tensor, d_g: torch.Tensor) -> torch.Tensor:
    # Softmax over channels at every spatial position, G's distance as the target,
    # the log on S's side; mean over the (n·h·w) positions. fp32 for the log.
    p_s = torch.softmax(_fp32(d_s), dim=1)
    p_g = torch.softmax(_fp32(d_g), dim=1)
    return (-(p_g * torch.log(p_s + CE_EPS)).sum(dim=1)).mean()


def r_intra(s_u: Features, s_l: Features, g_u: Features, g_l: Features,
            layer_weights=R_INTRA_LAYERS, measure: str = "ce") -> torch.Tensor:
    """Intra-model distance consistency.

    d_S = |φ(S(X^U)) − φ(S(X^L))|, d_G = |φ(G(X^U)) − φ(G(X^L))| (element-wise);
    ``measure="ce"``: channel-softmax cross-entropy with d_G as the target (paper);
    ``measure="l1"``: mean |d_S − d_G| (ablation, Tab. 3).
    """
    if measure not in ("ce", "l1"):
        raise ValueError(f"r_intra measure must be 'ce' or 'l1', got {measure!r}")
    total = 0.0
    with _no_autocast(s_u):
        for k, w in layer_weights.items():
            d_s = (_fp32(s_u[k]) - _fp32(s_l[k])).abs()
            d_g = (_fp32(g_u[k]) - _fp32(g_l[k])).abs()
            term = _intra_ce(d_s, d_g) if measure == "ce" else F.l1_loss(d_s, d_g)
            total = total + w * term
    return total


def gram(x: torch.Tensor) -> torch.Tensor:
    """Gram matrix per sample: F Fᵀ / (c·h·w), shape (n, c, c)."""
    n, c, h, w = x.shape
    f = _fp32(x.reshape(n, c, h * w))
    return f @ f.transpose(1, 2) / (c * h * w)


def r_inter(s_u: Features, s_l: Features, g_u: Features, g_l: Features,
            layer_weights=R_INTER_LAYERS, measure: str = "gram") -> torch.Tensor:
    """Inter-model distance consistency.

    ``measure="gram"`` (paper): ‖Gram(φ(S(X^U))−φ(G(X^U))) − Gram(φ(S(X^L))−φ(G(X^L)))‖_F,
    the Frobenius norm over the whole (n, c, c) tensor, per layer, weighted.
    ``measure="l1"`` (ablation, supplementary Tab. 9, the official
    ``delta_inter_type: l1``): the same Frobenius norm over the element-wise
    distances |φ(S(X^U))−φ(G(X^U))| − |φ(S(X^L))−φ(G(X^L))|, without the Gram matrix.
    """
    if measure not in ("gram", "l1"):
        raise ValueError(f"r_inter measure must be 'gram' or 'l1', got {measure!r}")
    total = 0.0
    with _no_autocast(s_u):
        for k, w in layer_weights.items():
            du, dl = _fp32(s_u[k]) - _fp32(g_u[k]), _fp32(s_l[k]) - _fp32(g_l[k])
            diff = gram(du) - gram(dl) if measure == "gram" else du.abs() - dl.abs()
            total = total + w * torch.linalg.vector_norm(diff)
    return total


# --------------------------------------------------------------------------- objectives
@dataclass
class SupervisedWeights:
    """Weights of the supervised loss L_L (official config values).

    ``gan`` weighs the generator's vanilla GAN term on S(X^L) (part of L_L).
    """
    wavelet: float = 0.5
    band_weights: tuple = (1.0, 0.1, 0.01)
    perceptual: float = 1.0
    perceptual_layers: dict = field(default_factory=lambda: dict(PERCEPTUAL_LAYERS))
    gan: float = 0.01


def supervised_loss(pred: torch.Tensor, target: torch.Tensor, pred_feats: Features, target_feats: Features,
                    w: SupervisedWeights = SupervisedWeights()) -> dict[str, torch.Tensor]:
    """Wavelet L1 and perceptual terms of L_L (the GAN term needs D: see generator_objective).
    Without perceptual layers or weight (pixel-only pretraining) the perceptual term is absent."""
    terms = {"wavelet": w.wavelet * wavelet_loss(pred, target, w.band_weights)}
    if w.perceptual_layers and w.perceptual > 0:
        terms["perceptual"] = w.perceptual * perceptual_loss(pred_feats, target_feats, w.perceptual_layers)
    return terms


def naive_distillation(s_u: torch.Tensor, g_u: torch.Tensor, s_l: torch.Tensor, y_l: torch.Tensor,
                       s_u_feats: Features, g_u_feats: Features, s_l_feats: Features, y_l_feats: Features,
                       lam: float = 1.0, w: SupervisedWeights = SupervisedWeights()) -> dict[str, torch.Tensor]:
    """Paper Eq. 3: L_L(S(X^U), G(X^U)) + λ · L_L(S(X^L), Y^L) — G's prediction as a pseudo label."""
    pseudo = supervised_loss(s_u, g_u.detach(), s_u_feats, {k: v.detach() for k, v in g_u_feats.items()}, w)
    real = supervised_loss(s_l, y_l, s_l_feats, y_l_feats, w)
    return {"pseudo_" + k: v for k, v in pseudo.items()} | {k: lam * v for k, v in real.items()}


@dataclass
class PDDWeights:
    """λ1 (R_intra), λ2 (R_inter), λ3 (GAN on S(X^U)) and the variants.

    The official code applies one GAN weight (0.01) to D's logits over cat(S(X^L), S(X^U)),
    i.e. λ3 equals L_L's GAN weight; generator_objective reproduces that exactly when
    ``lambda_gan == SupervisedWeights.gan`` and weighs the two halves separately otherwise.
    """
    lambda_intra: float = 1.0
    lambda_inter: float = 1.0
    lambda_gan: float = 0.01
    intra_measure: str = "ce"
    inter_measure: str = "gram"
    intra_layers: dict = field(default_factory=lambda: dict(R_INTRA_LAYERS))
    inter_layers: dict = field(default_factory=lambda: dict(R_INTER_LAYERS))
    detach_s_l: bool = False  # official EMA config: false; static config: true


def vgg_layers_needed(sup: SupervisedWeights, pdd: PDDWeights | None) -> list[str]:
    """The VGG19 layers the objective reads; a term weighted 0 reads none (and costs nothing)."""
    names = list(sup.perceptual_layers) if sup.perceptual > 0 else []
    if pdd is not None:
        names += (list(pdd.intra_layers) if pdd.lambda_intra > 0 else []) + \
                 (list(pdd.inter_layers) if pdd.lambda_inter > 0 else [])
    return list(dict.fromkeys(names))


def _gan_term(disc, s_l, s_u, w_l: float, w_u: float) -> torch.Tensor:
    """Σ over samples of weight · BCE(D(x), real) / n, one D call on the concatenated batch."""
    fake = s_l if s_u is None or w_u == 0 else torch.cat([s_l, s_u])
    logits = disc(fake)
    per_sample = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none").flatten(1).mean(1)
    weights = torch.full_like(per_sample, w_l)
    weights[s_l.shape[0]:] = w_u
    return (weights * per_sample).mean()


def generator_objective(vgg, s_l: torch.Tensor, s_u: torch.Tensor | None, y_l: torch.Tensor,
                        g_l: torch.Tensor | None = None, g_u: torch.Tensor | None = None,
                        disc=None, sup: SupervisedWeights = SupervisedWeights(),
                        pdd: PDDWeights | None = PDDWeights(), distill: bool = True,
                        gan_on_unlabeled: bool = True, naive_lambda: float | None = None) -> dict[str, torch.Tensor]:
    """The generator objective L = L_L + λ1 R_intra + λ2 R_inter + λ3 L_gan(S(X^U)), every term returned.

    VGG runs once over S's predictions (with gradients, one batch) and once over the
    references Y^L and G's predictions (no-grad, one batch: their activations are never
    kept). ``distill=False`` (D-only warm-up, before k, the fine-tune control) skips
    R_intra / R_inter and G's features. ``disc=None`` or ``sup.gan == 0`` skips the GAN
    term; ``gan_on_unlabeled`` adds S(X^U) to it, as the official code does once
    distillation has started. ``naive_lambda`` switches to naive distillation (paper
    Eq. 3, pseudo-label G(X^U), labeled term weighted by λ) instead of R_intra/R_inter.
    Returns a dict with ``total`` and each weighted term.
    """
    naive = naive_lambda is not None
    use_pdd = not naive and distill and pdd is not None and (pdd.lambda_intra > 0 or pdd.lambda_inter > 0)
    perceptual = bool(sup.perceptual_layers) and sup.perceptual > 0
    if vgg is None and (use_pdd or perceptual):
        raise ValueError("generator_objective: VGG features are needed (perceptual or PDD terms)")
    n_l = s_l.shape[0]
    # VGG runs only for a term with a weight (pixel-only pretraining, a zero-weighted perceptual
    # term: none), once with gradients over S's outputs, once without over the references.
    f_s_l = f_y = f_s_u = f_g_l = f_g_u = {}
    if use_pdd or perceptual:
        s_feats = vgg(torch.cat([s_l, s_u]) if (use_pdd or naive) else s_l)
        with torch.no_grad():
            refs = [y_l] + ([g_l, g_u] if use_pdd else [g_u] if naive else [])
            ref_feats = vgg(torch.cat(refs))
        f_s_l = {k: v[:n_l] for k, v in s_feats.items()}
        f_s_u = {k: v[n_l:] for k, v in s_feats.items()}
        f_y = {k: v[:n_l] for k, v in ref_feats.items()}
        f_g_u = {k: v[-g_u.shape[0]:] for k, v in ref_feats.items()} if (use_pdd or naive) else {}
        f_g_l = {k: v[n_l:2 * n_l] for k, v in ref_feats.items()} if use_pdd else {}
    if naive:
        terms = naive_distillation(s_u, g_u, s_l, y_l, f_s_u, f_g_u, f_s_l, f_y, naive_lambda, sup)
    else:
        terms = supervised_loss(s_l, y_l, f_s_l, f_y, sup)
    if use_pdd:
        if pdd.detach_s_l:
            f_s_l = {k: v.detach() for k, v in f_s_l.items()}
        if pdd.lambda_intra > 0:
            terms["r_intra"] = pdd.lambda_intra * r_intra(f_s_u, f_s_l, f_g_u, f_g_l, pdd.intra_layers, pdd.intra_measure)
        if pdd.lambda_inter > 0:
            terms["r_inter"] = pdd.lambda_inter * r_inter(f_s_u, f_s_l, f_g_u, f_g_l, pdd.inter_layers, pdd.inter_measure)
    if disc is not None and sup.gan > 0:
        w_u = (pdd.lambda_gan if pdd is not None else sup.gan) if gan_on_unlabeled and s_u is not None else 0.0
        terms["gan"] = _gan_term(disc, s_l, s_u, sup.gan, w_u)
    terms["total"] = sum(terms.values())
    return terms


# --------------------------------------------------------------------------- inference
def color_correct(sr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """Supplementary Eq. 13: per image and channel, give ``sr`` the mean and std of ``lr``.

    std is the unbiased estimate (torch default), as in the official inference code.
    """
    dims = (-2, -1)
    sr_mean, sr_std = sr.mean(dims, keepdim=True), sr.std(dims, keepdim=True)
    lr_mean, lr_std = lr.mean(dims, keepdim=True), lr.std(dims, keepdim=True)
    return (sr - sr_mean) / (sr_std + 1e-12) * lr_std + lr_mean
