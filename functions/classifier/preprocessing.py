"""Image bytes -> the uint8 NHWC pixels the model takes: EfficientNet-Lite's eval preprocessing.

The TF pipeline these weights were trained with (tensorflow/tpu
efficientnet/preprocessing.py): centre crop of 224/(224+32) of the shorter
side, bicubic resize to 224x224; the normalisation, (pixel - 127) / 128, is
compiled into the model (network.ServedModel). Here: decode, the crop, and one
antialiased bicubic resize by PyTorch's vectorised uint8 kernel, called in libtorch
without the torch Python package (`resize_bicubic`, a third of PIL's CPU time); a
JPEG much larger than needed is decoded at 1/2, 1/4 or 1/8 scale (libjpeg DCT
scaling, `Image.draft`) while the crop stays the TF crop of the full image.
"""
import numpy as np

from torchfaas.toolkit import decode_rgb_array, libtorch

from .config import CROP_PADDING, IMAGE_SIZE, SETTINGS


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
    out = np.empty((size, size, 3), dtype=np.uint8)
    # interpolate()'s own op, told to write into HWC memory: interpolate() itself answers
    # NCHW (the kernel works in HWC and copies out), and turning that back into HWC was a
    # second strided copy: the same pixels at half the CPU (1.17 -> 0.55 ms per crop).
    # Both arrays go in as NCHW views with channels_last strides (no copy); the crop is a
    # view of the decoded image, read where it lies.
    libtorch.call_op("aten::_upsample_bicubic2d_aa", "out", nchw(pixels), [size, size], False, None, None,
                     nchw(out))
    return out


def nchw(pixels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> the [1, 3, H, W] view of the same memory (channels_last strides)."""
    return pixels.transpose(2, 0, 1)[None]
