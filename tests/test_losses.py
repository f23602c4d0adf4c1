"""Losses against values worked out by hand on tiny tensors (comments show the arithmetic)."""
import math

import numpy as np
import pytest
import torch

from pdd import losses as L


def t(*rows):
    """(1, C, 1, W) feature map from C lists of W numbers."""
    return torch.tensor(rows, dtype=torch.float64).unsqueeze(0).unsqueeze(2)


# ----------------------------------------------------------------- Haar / wavelet
def test_haar_bands_hand_case():
    # block [[a, b], [c, d]] = [[1, 2], [3, 4]]
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    ll, mid, hh = L.haar_bands(x)
    assert ll.item() == 5.0            # (1+2+3+4)/2
    assert mid.flatten().tolist() == [1.0, 2.0]   # HL=(-1-3+2+4)/2, LH=(-1-2+3+4)/2
    assert hh.item() == 0.0            # (1-2-3+4)/2


def test_haar_is_orthonormal_and_invertible():
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    ll, mid, hh = L.haar_bands(x)
    energy = ll.pow(2).sum() + mid.pow(2).sum() + hh.pow(2).sum()
    torch.testing.assert_close(energy, x.pow(2).sum())
    torch.testing.assert_close(L.haar_inverse(ll, mid, hh), x)


def test_wavelet_loss_hand_case_and_weights():
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    zero = torch.zeros_like(pred)
    # 1*|5| + 0.1*mean(|1|,|2|) + 0.01*|0| = 5 + 0.15 = 5.15
    assert L.wavelet_loss(pred, zero).item() == pytest.approx(5.15)
    # the supplementary's ω3=0.001 is reachable
    assert L.wavelet_loss(pred, zero, (1.0, 0.1, 0.001)).item() == pytest.approx(5.15)
    assert L.wavelet_loss(pred, zero, (0.0, 0.0, 1.0)).item() == 0.0
    with pytest.raises(ValueError):
        L.haar_bands(torch.zeros(1, 1, 3, 4))


def test_perceptual_loss_hand_case():
    a = {"conv1_2": t([1.0, 3.0]), "conv5_4": t([0.0, 0.0])}
    b = {"conv1_2": t([0.0, 0.0]), "conv5_4": t([2.0, 2.0])}
    # 0.1 * mean(1, 3) + 1.0 * mean(2, 2) = 0.2 + 2 = 2.2
    got = L.perceptual_loss(a, b, {"conv1_2": 0.1, "conv5_4": 1.0})
    assert got.item() == pytest.approx(2.2)


def test_gan_losses_at_zero_logit_are_log2():
    z = torch.zeros(2, 1, 4, 4)
    assert L.gan_loss_g(z).item() == pytest.approx(math.log(2))
    real, fake = L.gan_loss_d(torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), -1.0))
    assert real.item() == pytest.approx(math.log(1 + math.exp(-2)))   # -log σ(2)
    assert fake.item() == pytest.approx(math.log(1 + math.exp(-1)))   # -log(1-σ(-1))


# ----------------------------------------------------------------- R_intra
def softmax2(a, b):
    ea, eb = math.exp(a), math.exp(b)
    return ea / (ea + eb), eb / (ea + eb)


def test_r_intra_ce_hand_case_1x2x1x2():
    # Features (N=1, C=2, H=1, W=2). d = |u - l| element-wise:
    s_u, s_l = {"f": t([1.0, 0.0], [0.0, 2.0])}, {"f": t([0.0, 0.0], [0.0, 0.0])}
    g_u, g_l = {"f": t([0.0, 3.0], [1.0, 1.0])}, {"f": t([0.0, 0.0], [0.0, 0.0])}
    # position 0: d_S = (1, 0), d_G = (0, 1); position 1: d_S = (0, 2), d_G = (3, 1)
    expected = 0.0
    for ds, dg in [((1, 0), (0, 1)), ((0, 2), (3, 1))]:
        ps, pg = softmax2(*ds), softmax2(*dg)
        expected += -(pg[0] * math.log(ps[0] + 1e-6) + pg[1] * math.log(ps[1] + 1e-6))
    expected /= 2  # mean over n*h*w = 2 positions
    got = L.r_intra(s_u, s_l, g_u, g_l, {"f": 1.0}, measure="ce")
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # layer weight multiplies
    assert L.r_intra(s_u, s_l, g_u, g_l, {"f": 0.3}).item() == pytest.approx(0.3 * expected, rel=1e-6)


def test_r_intra_ce_of_equal_zero_distances_is_log2():
    z = {"f": t([0.0], [0.0])}
    # uniform softmax over 2 channels: -(0.5 log(0.5+1e-6) * 2)
    assert L.r_intra(z, z, z, z, {"f": 1.0}).item() == pytest.approx(-math.log(0.5 + 1e-6), rel=1e-9)


def test_r_intra_l1_hand_case():
    s_u, s_l = {"f": t([1.0, 0.0], [0.0, 2.0])}, {"f": t([0.0, 0.0], [0.0, 0.0])}
    g_u, g_l = {"f": t([0.0, 3.0], [1.0, 1.0])}, {"f": t([0.0, 0.0], [0.0, 0.0])}
    # |d_S - d_G| = |1-0|, |0-3|, |0-1|, |2-1| -> mean 6/4
    assert L.r_intra(s_u, s_l, g_u, g_l, {"f": 1.0}, measure="l1").item() == pytest.approx(1.5)


def test_r_intra_ce_has_zero_gradient_where_distances_match():
    torch.manual_seed(0)
    g_u, g_l = torch.randn(2, 4, 3, 3, dtype=torch.float64), torch.randn(2, 4, 3, 3, dtype=torch.float64)
    s_u = g_u.clone().requires_grad_(True)  # d_S = d_G exactly
    loss = L.r_intra({"f": s_u}, {"f": g_l}, {"f": g_u}, {"f": g_l}, {"f": 1.0})
    (grad,) = torch.autograd.grad(loss, s_u)
    # softmax-CE gradient w.r.t. the logits is p_S - p_G (up to the 1e-6 epsilon)
    assert grad.abs().max().item() < 1e-6
    # and away from the minimum the gradient is not zero
    s_u2 = (g_u + 0.5).requires_grad_(True)
    loss2 = L.r_intra({"f": s_u2}, {"f": g_l}, {"f": g_u}, {"f": g_l}, {"f": 1.0})
    assert loss2.item() > loss.item()


# ----------------------------------------------------------------- Gram / R_inter
def test_gram_normalisation_hand_case():
    x = t([1.0, 2.0], [3.0, 4.0])  # F = [[1,2],[3,4]], c*h*w = 2*1*2 = 4
    g = L.gram(x)
    # F F^T = [[5, 11], [11, 25]] / 4
    torch.testing.assert_close(g[0], torch.tensor([[1.25, 2.75], [2.75, 6.25]], dtype=torch.float64))


def test_r_inter_gram_hand_case():
    zero = {"f": t([0.0, 0.0], [0.0, 0.0])}
    s_u = {"f": t([1.0, 2.0], [3.0, 4.0])}
    # Gram(s_u - 0) - Gram(0 - 0) = [[1.25, 2.75], [2.75, 6.25]]; Frobenius = sqrt(55.75)
    got = L.r_inter(s_u, zero, zero, zero, {"f": 0.25})
    assert got.item() == pytest.approx(0.25 * math.sqrt(55.75))
    # symmetric in which side carries the change (the norm of a difference)
    assert L.r_inter(zero, s_u, zero, zero, {"f": 1.0}).item() == pytest.approx(math.sqrt(55.75))


def test_r_inter_frobenius_is_over_whole_batch_not_a_mean():
    # sample 0: Gram diff norm 3, sample 1: norm 4  -> whole-tensor norm 5 (not 3.5 or 7)
    # one channel, one pixel: Gram = v^2 / 1; v^2 = 3 and 4
    s_u = {"f": torch.tensor([math.sqrt(3.0), math.sqrt(4.0)], dtype=torch.float64).view(2, 1, 1, 1)}
    zero = {"f": torch.zeros(2, 1, 1, 1, dtype=torch.float64)}
    assert L.r_inter(s_u, zero, zero, zero, {"f": 1.0}).item() == pytest.approx(5.0)


def test_r_inter_l1_ablation_hand_case():
    s_u, g_u = {"f": t([1.0, -2.0])}, {"f": t([0.0, 0.0])}
    s_l, g_l = {"f": t([0.0, 1.0])}, {"f": t([0.0, 0.0])}
    # |s_u-g_u| - |s_l-g_l| = (1-0, 2-1) = (1, 1) -> Frobenius sqrt(2)
    assert L.r_inter(s_u, s_l, g_u, g_l, {"f": 1.0}, measure="l1").item() == pytest.approx(math.sqrt(2))
    with pytest.raises(ValueError):
        L.r_inter(s_u, s_l, g_u, g_l, {"f": 1.0}, measure="cosine")


# ----------------------------------------------------------------- colour correction
def test_color_correct_matches_lr_channel_mean_and_unbiased_std():
    torch.manual_seed(1)
    sr = torch.rand(2, 3, 16, 16) * 0.5
    lr = torch.rand(2, 3, 4, 4)
    out = L.color_correct(sr, lr).numpy()
    lrn = lr.numpy()
    np.testing.assert_allclose(out.mean(axis=(2, 3)), lrn.mean(axis=(2, 3)), atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(2, 3), ddof=1), lrn.std(axis=(2, 3), ddof=1), atol=1e-5)


def test_color_correct_hand_case():
    sr = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)    # mean 1, unbiased std sqrt(2)
    lr = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)    # mean 2, unbiased std sqrt(2)
    torch.testing.assert_close(L.color_correct(sr, lr), torch.tensor([1.0, 3.0]).view(1, 1, 1, 2))


# ----------------------------------------------------------------- naive distillation
def test_naive_distillation_is_eq3():
    y = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    zero = torch.zeros_like(y)
    f0 = {"conv1_2": t([0.0, 0.0])}
    f1 = {"conv1_2": t([1.0, 3.0])}
    w = L.SupervisedWeights(perceptual_layers={"conv1_2": 1.0})
    terms = L.naive_distillation(s_u=zero, g_u=y, s_l=zero, y_l=zero, s_u_feats=f0, g_u_feats=f1,
                                 s_l_feats=f0, y_l_feats=f0, lam=2.0, w=w)
    # pseudo-label term: 0.5 * wavelet(0, y) = 0.5 * 5.15; perceptual mean(1, 3) = 2
    assert terms["pseudo_wavelet"].item() == pytest.approx(0.5 * 5.15)
    assert terms["pseudo_perceptual"].item() == pytest.approx(2.0)
    # labeled term is zero here (s_l = y_l), weighted by λ
    assert terms["wavelet"].item() == 0.0 and terms["perceptual"].item() == 0.0


def test_regularisers_stay_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    f = lambda: {"f": torch.randn(2, 8, 4, 4)}  # noqa: E731
    s_u, s_l, g_u, g_l = f(), f(), f(), f()
    ref_inter, ref_intra = L.r_inter(s_u, s_l, g_u, g_l, {"f": 1.0}), L.r_intra(s_u, s_l, g_u, g_l, {"f": 1.0})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got_inter, got_intra = L.r_inter(s_u, s_l, g_u, g_l, {"f": 1.0}), L.r_intra(s_u, s_l, g_u, g_l, {"f": 1.0})
    assert got_inter.dtype == torch.float32 and got_intra.dtype == torch.float32
    torch.testing.assert_close(got_inter, ref_inter)   # a bf16 Gram matmul would be off by ~1e-2
    torch.testing.assert_close(got_intra, ref_intra)
