"""Network architectures: RRDBNet (generator), UNetDiscriminatorSN, VGG19 features.

The generator and discriminator keep the official BasicSR / Real-ESRGAN
``state_dict`` layout (parameter names and shapes) so that released checkpoints
such as ``RealESRGAN_x4plus.pth`` load with ``strict=True``. That layout is a
public contract of this module: do not rename submodules.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import spectral_norm
from torch.nn.utils.spectral_norm import SpectralNorm
from torchvision.models import vgg19 as _tv_vgg19


def _scaled_kaiming_(module: nn.Module, scale: float) -> None:
    """Kaiming-normal init scaled down, as BasicSR does for residual blocks.

    Scaling the residual branch by 0.1 keeps a deep untrained RRDBNet near identity,
    which makes from-scratch training (the `tiny` preset) stable.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            m.weight.data.mul_(scale)
            if m.bias is not None:
                m.bias.data.zero_()


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output scaled by 0.2 and added to the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        _scaled_kaiming_(self, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs, outer residual scaled by 0.2."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN / Real-ESRGAN generator.

    Scale 4 upsamples twice by nearest interpolation + conv. Scales 2 and 1 first
    pixel-unshuffle the input (as Real-ESRGAN does), so the body always runs at
    1/4 of the output resolution. No output clamp: the official models are trained
    and evaluated unclamped, and clamping would cut gradients at the range edges.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4,
                 num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        if scale not in (1, 2, 4):
            raise ValueError(f"RRDBNet supports scale 1, 2 or 4, got {scale}")
        self.scale = scale
        if scale == 2:
            num_in_ch = num_in_ch * 4
        elif scale == 1:
            num_in_ch = num_in_ch * 16
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 2:
            x = F.pixel_unshuffle(x, 2)
        elif self.scale == 1:
            x = F.pixel_unshuffle(x, 4)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


class _DivideBySigma(torch.autograd.Function):
    """W / σ with σ = uᵀ W v (u, v fixed), the last step of spectral normalisation, with its
    gradient written out: ∂/∂W = G/σ − (Σ G⊙W / σ²) u vᵀ.

    The same values as autograd through ``weight / sigma`` (forward bit for bit; the gradient
    to rounding), in three passes over W instead of about ten. Two things make the difference
    on a CPU: ``w / sigma`` with a 0-dim ``sigma`` takes a slow elementwise path for a 4-D
    tensor (about 5x, torch 2.14; dividing by a 1-element tensor gives the same bits), and
    the autograd route materialises each intermediate of ∂σ/∂W. Under ``scratch`` the
    spectral norm was about a third of the discriminator step.
    """

    @staticmethod
    def forward(ctx, w: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        sigma = torch.dot(u, torch.mv(w.reshape(w.shape[0], -1), v)).reshape(1)
        ctx.save_for_backward(w, u, v, sigma)
        return w / sigma

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        w, u, v, sigma = ctx.saved_tensors
        grad = grad.contiguous()  # W's layout (contiguous: see _FastSpectralNorm)
        grad_w = grad / sigma
        grad_sigma = -torch.dot(grad.reshape(-1), w.reshape(-1)) / (sigma * sigma)
        grad_w.view(w.shape[0], -1).addr_(u * grad_sigma, v)  # σ = uᵀWv: ∂σ/∂W = u vᵀ
        return grad_w, None, None


class _FastSpectralNorm(SpectralNorm):
    """``torch.nn.utils.spectral_norm``'s hook with the final division done by
    `_DivideBySigma`. The power iteration is torch's (the same in-place updates of the
    ``weight_u`` / ``weight_v`` buffers, then clones, so two forwards before one backward work);
    names, buffers, state_dict hooks and ``remove_spectral_norm`` are torch's. Another
    ``dim`` or a non-contiguous ``weight_orig`` takes torch's own route."""

    def compute_weight(self, module: nn.Module, do_power_iteration: bool) -> torch.Tensor:
        weight = getattr(module, self.name + "_orig")
        if self.dim != 0 or not weight.is_contiguous():
            return super().compute_weight(module, do_power_iteration)
        u = getattr(module, self.name + "_u")
        v = getattr(module, self.name + "_v")
        if do_power_iteration:
            with torch.no_grad():
                weight_mat = weight.reshape(weight.shape[0], -1)
                for _ in range(self.n_power_iterations):
                    v = F.normalize(torch.mv(weight_mat.t(), u), dim=0, eps=self.eps, out=v)
                    u = F.normalize(torch.mv(weight_mat, v), dim=0, eps=self.eps, out=u)
                if self.n_power_iterations > 0:
                    u = u.clone(memory_format=torch.contiguous_format)
                    v = v.clone(memory_format=torch.contiguous_format)
        return _DivideBySigma.apply(weight, u, v)


def fast_spectral_norm(module: nn.Module) -> nn.Module:
    """``torch.nn.utils.spectral_norm(module)`` (same keys ``weight_orig/_u/_v``, same
    initialisation and random draws), computed by `_FastSpectralNorm`."""
    module = spectral_norm(module)
    for hook in module._forward_pre_hooks.values():
        if type(hook) is SpectralNorm:
            hook.__class__ = _FastSpectralNorm
    return module


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral norm and skip connections.

    Outputs one logit per pixel. ``torch.nn.utils.spectral_norm`` (not the
    parametrization API) keeps the released key names ``weight_orig/_u/_v``.
    """

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True):
        super().__init__()
        self.skip_connection = skip_connection
        sn = fast_spectral_norm
        self.conv0 = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        # downsample
        self.conv1 = sn(nn.Conv2d(num_feat, num_feat * 2, 4, 2, 1, bias=False))
        self.conv2 = sn(nn.Conv2d(num_feat * 2, num_feat * 4, 4, 2, 1, bias=False))
        self.conv3 = sn(nn.Conv2d(num_feat * 4, num_feat * 8, 4, 2, 1, bias=False))
        # upsample
        self.conv4 = sn(nn.Conv2d(num_feat * 8, num_feat * 4, 3, 1, 1, bias=False))
        self.conv5 = sn(nn.Conv2d(num_feat * 4, num_feat * 2, 3, 1, 1, bias=False))
        self.conv6 = sn(nn.Conv2d(num_feat * 2, num_feat, 3, 1, 1, bias=False))
        # extra convolutions
        self.conv7 = sn(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv8 = sn(nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(num_feat, 1, 3, 1, 1)

    def _apply(self, fn, recurse=True):
        # Whatever `.to(memory_format=torch.channels_last)` asks, the spectrally normalised
        # weights (`*_orig`) stay contiguous: the spectral norm's passes over W (a matrix view,
        # elementwise ops with the gradient) want that layout, the convolutions take either.
        super()._apply(fn, recurse)
        for m in self.modules():
            for hook in m._forward_pre_hooks.values():
                if isinstance(hook, SpectralNorm):
                    w = getattr(m, hook.name + "_orig")
                    if not w.is_contiguous():
                        w.data = w.data.contiguous()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 8 or x.shape[-2] % 8:
            raise ValueError(f"UNetDiscriminatorSN needs height and width divisible by 8, got {tuple(x.shape[-2:])}")
        lrelu = lambda t: F.leaky_relu(t, negative_slope=0.2, inplace=True)  # noqa: E731
        up = lambda t: F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x0 = lrelu(self.conv0(x))
        x1 = lrelu(self.conv1(x0))
        x2 = lrelu(self.conv2(x1))
        x3 = lrelu(self.conv3(x2))
        x4 = lrelu(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = lrelu(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = lrelu(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        out = lrelu(self.conv7(x6))
        out = lrelu(self.conv8(out))
        return self.conv9(out)


# torchvision's vgg19().features, named the way the papers and BasicSR name them.
VGG19_LAYERS = (
    "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1",
    "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
    "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
    "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
    "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
)
VGG19_CONVS = tuple(n for n in VGG19_LAYERS if n.startswith("conv"))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """Frozen VGG19 returning the requested pre-ReLU features in one forward pass.

    Input: RGB in [0, 1]; ImageNet normalisation happens inside. The network is
    truncated after the deepest requested layer. ``feature_scale`` divides every
    returned feature: the offline Caffe weights produce features about 57x larger
    than torchvision's (see ``pdd.weights.KERAS_VGG_FEATURE_SCALE``), and the paper's
    loss weights assume torchvision's scale. ``state_dict`` keys follow
    torchvision's ``features.<index>.weight`` layout (prefix ``features.``).
    """

    def __init__(self, layers, state_dict: dict | None = None, feature_scale: float = 1.0):
        super().__init__()
        layers = list(dict.fromkeys(layers))
        unknown = [n for n in layers if n not in VGG19_LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG19 layer(s) {unknown}; valid: {', '.join(VGG19_CONVS)}")
        if not layers:
            raise ValueError("VGG19Features needs at least one layer name")
        self.layers = layers
        last = max(VGG19_LAYERS.index(n) for n in layers)
        features = _tv_vgg19(weights=None).features[: last + 1]
        if state_dict is not None:
            own = {k: v for k, v in state_dict.items() if k.startswith("features.")}
            own = {k[len("features."):]: v for k, v in own.items() if int(k.split(".")[1]) <= last}
            features.load_state_dict(own, strict=True)
        for m in features:
            if isinstance(m, nn.ReLU):  # in-place ReLU would overwrite the pre-ReLU outputs we return
                m.inplace = False
        self.features = features
        self.feature_scale = float(feature_scale)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):  # frozen: always eval
        return super().train(False)

    def autocast_weights_(self, dtype: torch.dtype | None) -> "VGG19Features":
        """For a VGG that only ever runs under autocast to ``dtype``: store the convolutions'
        weights and biases in ``dtype`` once. Autocast casts a frozen network's weights at
        every call (no cache for tensors without gradients): 20 M parameters twice a training
        step. Casting once gives the same bits (the same round-to-nearest cast); the
        normalisation buffers stay fp32, as they were. ``None``: nothing changes. Returns self."""
        if dtype is not None:
            self.features.to(dtype)
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std
        out = {}
        wanted = set(self.layers)
        for name, layer in zip(VGG19_LAYERS, self.features):
            x = layer(x)
            if name in wanted:
                out[name] = x / self.feature_scale if self.feature_scale != 1.0 else x
                if len(out) == len(wanted):
                    break
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["RRDBNet", "UNetDiscriminatorSN", "VGG19Features", "VGG19_LAYERS", "VGG19_CONVS",
           "count_parameters", "IMAGENET_MEAN", "IMAGENET_STD"]
