"""The fused generator objective equals the same terms computed with separate VGG calls
(the official code's route), and its gradients go where the official trainer sends them."""
import pytest
import torch

from pdd import losses as L
from pdd.archs import RRDBNet, UNetDiscriminatorSN, VGG19Features


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    sup = L.SupervisedWeights()
    pdd = L.PDDWeights()
    vgg = VGG19Features(L.vgg_layers_needed(sup, pdd)).double()
    s_net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).double()
    g_net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).double()
    disc = UNetDiscriminatorSN(3, num_feat=8).double().eval()  # eval: no power-iteration step per call
    x_l, x_u = torch.rand(2, 3, 8, 8, dtype=torch.float64), torch.rand(2, 3, 8, 8, dtype=torch.float64)
    y_l = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    return sup, pdd, vgg, s_net, g_net, disc, x_l, x_u, y_l


def unfused_terms(vgg, s_l, s_u, y_l, g_l, g_u, disc, sup, pdd):
    """Official route: perceptual loss and distillation loss each call VGG per image group."""
    fs_l, fy = vgg(s_l), vgg(y_l.detach())
    terms = {"wavelet": sup.wavelet * L.wavelet_loss(s_l, y_l, sup.band_weights),
             "perceptual": sup.perceptual * L.perceptual_loss(fs_l, fy, sup.perceptual_layers)}
    fs_u, fg_u, fs_l2, fg_l = vgg(s_u), vgg(g_u.detach()), vgg(s_l), vgg(g_l.detach())
    terms["r_intra"] = pdd.lambda_intra * L.r_intra(fs_u, fs_l2, fg_u, fg_l, pdd.intra_layers)
    terms["r_inter"] = pdd.lambda_inter * L.r_inter(fs_u, fs_l2, fg_u, fg_l, pdd.inter_layers)
    terms["gan"] = sup.gan * L.gan_loss_g(disc(torch.cat([s_l, s_u])))
    terms["total"] = sum(terms.values())
    return terms


def test_fused_equals_unfused_values_and_gradients(setup):
    sup, pdd, vgg, s_net, g_net, disc, x_l, x_u, y_l = setup
    with torch.no_grad():
        g_l, g_u = g_net(x_l), g_net(x_u)
    s_net.zero_grad()
    fused = L.generator_objective(vgg, s_net(x_l), s_net(x_u), y_l, g_l, g_u, disc, sup, pdd)
    fused["total"].backward()
    grad_fused = [p.grad.clone() for p in s_net.parameters()]
    s_net.zero_grad()
    ref = unfused_terms(vgg, s_net(x_l), s_net(x_u), y_l, g_l, g_u, disc, sup, pdd)
    ref["total"].backward()
    assert set(fused) == set(ref)
    for k in ref:
        torch.testing.assert_close(fused[k], ref[k])
    for a, p in zip(grad_fused, s_net.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_no_distillation_before_k_and_for_the_control(setup):
    sup, pdd, vgg, s_net, g_net, disc, x_l, x_u, y_l = setup
    terms = L.generator_objective(vgg, s_net(x_l), s_net(x_u), y_l, None, None, disc, sup, pdd,
                                  distill=False, gan_on_unlabeled=False)
    assert set(terms) == {"wavelet", "perceptual", "gan", "total"}
    control = L.generator_objective(vgg, s_net(x_l), s_net(x_u), y_l, None, None, None, sup, None)
    assert set(control) == {"wavelet", "perceptual", "total"}


def test_detach_s_l_cuts_the_distillation_gradient_through_s_l(setup):
    sup, _, vgg, s_net, g_net, disc, x_l, x_u, y_l = setup
    with torch.no_grad():
        g_l, g_u = g_net(x_l), g_net(x_u)
    for detach in (False, True):
        pdd = L.PDDWeights(detach_s_l=detach, lambda_gan=0.0)
        s_l = s_net(x_l).detach().requires_grad_(True)
        s_u = s_net(x_u).detach().requires_grad_(True)
        terms = L.generator_objective(vgg, s_l, s_u, y_l, g_l, g_u, None, sup, pdd)
        (gr,) = torch.autograd.grad(terms["r_intra"] + terms["r_inter"], s_l, allow_unused=True)
        if detach:
            assert gr is None or gr.abs().max() == 0
        else:
            assert gr.abs().max() > 0


def test_gan_term_sees_unlabeled_only_after_warmup(setup):
    sup, pdd, vgg, s_net, _, disc, x_l, x_u, y_l = setup
    s_l, s_u = s_net(x_l), s_net(x_u)
    only_l = L.generator_objective(vgg, s_l, s_u, y_l, None, None, disc, sup, pdd, distill=False,
                                   gan_on_unlabeled=False)
    assert only_l["gan"].item() == pytest.approx(sup.gan * L.gan_loss_g(disc(s_l)).item())


def test_gan_weights_split_between_labeled_and_unlabeled_halves(setup):
    sup, _, vgg, s_net, _, disc, x_l, x_u, y_l = setup
    s_l, s_u = s_net(x_l), s_net(x_u)
    b_l, b_u = L.gan_loss_g(disc(s_l)).item(), L.gan_loss_g(disc(s_u)).item()
    pdd = L.PDDWeights(lambda_gan=0.05)
    got = L.generator_objective(vgg, s_l, s_u, y_l, None, None, disc, sup, pdd, distill=False)["gan"]
    # equal halves: (0.01 * b_l + 0.05 * b_u) / 2
    assert got.item() == pytest.approx((sup.gan * b_l + 0.05 * b_u) / 2, rel=1e-9)


def test_naive_objective_uses_g_of_unlabeled_as_pseudo_label(setup):
    sup, _, vgg, s_net, g_net, disc, x_l, x_u, y_l = setup
    s_l, s_u = s_net(x_l), s_net(x_u)
    terms = L.generator_objective(vgg, s_l, s_u, y_l, None, s_u.detach(), None, sup, None, naive_lambda=1.0)
    # S(X^U) equals the pseudo label: the pseudo terms vanish
    assert terms["pseudo_wavelet"].item() == 0.0 and terms["pseudo_perceptual"].item() == 0.0
    assert terms["wavelet"].item() > 0


class _CountingVGG(torch.nn.Module):
    """Wraps the feature extractor and counts the images it is run on."""

    def __init__(self, vgg):
        super().__init__()
        self.vgg, self.images = vgg, 0

    def forward(self, x):
        self.images += x.shape[0]
        return self.vgg(x)


def test_a_zero_weighted_term_costs_no_vgg_call_and_the_rest_is_unchanged(setup):
    import dataclasses

    sup, pdd, vgg, s_net, g_net, disc, x_l, x_u, y_l = setup
    with torch.no_grad():
        s_l, s_u, g_l, g_u = s_net(x_l), s_net(x_u), g_net(x_l), g_net(x_u)
    no_perc = dataclasses.replace(sup, perceptual=0.0)
    assert L.vgg_layers_needed(no_perc, None) == []
    counting = _CountingVGG(vgg)
    # fine-tune control with the perceptual weight at 0: wavelet (+ GAN) only, VGG never runs
    terms = L.generator_objective(counting, s_l, None, y_l, None, None, disc, no_perc, None, distill=False)
    assert counting.images == 0 and set(terms) == {"wavelet", "gan", "total"}
    assert terms["total"].item() == pytest.approx(
        sup.wavelet * L.wavelet_loss(s_l, y_l, sup.band_weights).item() + sup.gan * L.gan_loss_g(disc(s_l)).item(), rel=1e-9)
    # naive distillation with the perceptual weight at 0: both wavelet terms, no VGG
    naive = L.generator_objective(counting, s_l, s_u, y_l, None, g_u, None, no_perc, None, naive_lambda=0.5)
    assert counting.images == 0
    assert naive["pseudo_wavelet"].item() == pytest.approx(sup.wavelet * L.wavelet_loss(s_u, g_u, sup.band_weights).item())
    assert naive["total"].item() == pytest.approx(
        naive["pseudo_wavelet"].item() + 0.5 * sup.wavelet * L.wavelet_loss(s_l, y_l, sup.band_weights).item())
    # λ1 = 0: R_intra's layers are not extracted, R_inter is, and equals the full objective's R_inter
    only_inter = dataclasses.replace(pdd, lambda_intra=0.0)
    layers = L.vgg_layers_needed(sup, only_inter)
    assert set(layers) == set(sup.perceptual_layers) | set(pdd.inter_layers)
    full = L.generator_objective(vgg, s_l, s_u, y_l, g_l, g_u, None, sup, pdd)
    part = L.generator_objective(vgg, s_l, s_u, y_l, g_l, g_u, None, sup, only_inter)
    assert "r_intra" not in part and part["r_inter"].item() == pytest.approx(full["r_inter"].item(), rel=1e-12)
