"""The fast path gives the reference path's answers (not a timing test).

Reference: full decode, PIL's crop then its bicubic resize (TF's eval order:
crop, then resize the crop), `to_input_tensor` below (float, normalised in
NumPy/torch), the eager network in NCHW with a separate softmax: the classifier
as first written. Fast: `to_pixels` (JPEG draft decoding, PyTorch's uint8
antialiased bicubic kernel) and the AOTInductor package, which does the
normalisation and the softmax itself.

Stated tolerance (docs/benchmarks.md, "Correctness of the fast path"):
- images decoded at full scale (every bundled photo): every uint8 value within 1
  of PIL's (the two kernels round differently), so top-1 identical and every
  class probability within 5e-3 of the reference (observed: <= 1.8e-3);
- JPEGs large enough for draft decoding (here the photos upscaled 3-6x):
  top-1 identical, every class probability within 0.04 (observed: <= 0.018).
"""
import functools
import io

import numpy as np
import pytest
import torch
from PIL import Image

from loadkit.photos import PHOTOS
from torchfaas.toolkit import decode_rgb, open_image

EXACT_TOL = 1e-4  # the same pixels through the compiled and the eager network
RESIZE_TOL = 5e-3  # pixels within 1 of PIL's: observed <= 1.8e-3
DRAFT_TOL = 0.04
MAX_PIXELS = 50_000_000


def pil_pixels(module, rgb_image) -> np.ndarray:
    """The TF eval crop, then PIL's bicubic resize of it: uint8 [224, 224, 3]."""
    crop = rgb_image.crop(module.preprocessing.center_crop_box(*rgb_image.size))
    return np.asarray(crop.resize((module.config.IMAGE_SIZE, module.config.IMAGE_SIZE), resample=3))  # BICUBIC


def to_input_tensor(module, rgb_image) -> torch.Tensor:
    """Reference preprocessing: RGB PIL image -> normalised float tensor [3, 224, 224].

    The served path (`to_pixels`) gives these pixels as uint8, each within 1, and
    leaves the normalisation to the model.
    """
    resized = pil_pixels(module, rgb_image)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32))
    return pixels.sub_(module.config.MEAN).div_(module.config.STD).permute(2, 0, 1)


@pytest.fixture(scope="module")
def reference(classifier, artifacts):
    net = classifier.network.build_network(artifacts / classifier.config.WEIGHTS, fold_pads=False)

    def probabilities(data: bytes) -> torch.Tensor:
        tensor = to_input_tensor(classifier, decode_rgb(open_image(data, MAX_PIXELS)))
        with torch.inference_mode():
            return net(tensor[None]).softmax(dim=-1)[0]

    return probabilities


def fast(handler, module, data: bytes) -> torch.Tensor:
    return torch.from_numpy(handler.predict([module.preprocessing.to_pixels(open_image(data, MAX_PIXELS))])[0])


def upscaled_jpeg(name: str, factor: int) -> bytes:
    image = Image.open(PHOTOS[name]).convert("RGB")
    image = image.resize((image.width * factor, image.height * factor), Image.LANCZOS)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_real_photos_same_pixels_and_answers(name, classifier, aoti_handler, reference):
    data = PHOTOS[name].read_bytes()
    image = decode_rgb(open_image(data, MAX_PIXELS))
    expected_pixels = pil_pixels(classifier, image).astype(np.int16)
    pixels = classifier.preprocessing.to_pixels(open_image(data, MAX_PIXELS))
    assert pixels.dtype == np.uint8 and pixels.shape == (224, 224, 3)
    assert int(np.abs(pixels - expected_pixels).max()) <= 1

    ref, got = reference(data), fast(aoti_handler, classifier, data)
    assert int(got.argmax()) == int(ref.argmax())
    assert float((got - ref).abs().max()) <= RESIZE_TOL
    assert abs(float(got.sum()) - 1) < 1e-4


@pytest.mark.parametrize("name,factor", [("china.jpg", 4), ("flower.jpg", 6), ("rocket.jpg", 3),
                                         ("coffee.png", 4), ("chelsea.png", 6), ("motorcycle.png", 4)])
def test_large_jpegs_are_draft_decoded_with_the_same_answer(name, factor, classifier,
                                                            aoti_handler, reference):
    data = upscaled_jpeg(name, factor)
    image = open_image(data, MAX_PIXELS)
    assert classifier.preprocessing.draft_jpeg(image) >= 2  # decoded at reduced scale
    ref, got = reference(data), fast(aoti_handler, classifier, data)
    assert int(got.argmax()) == int(ref.argmax())
    assert float((got - ref).abs().max()) <= DRAFT_TOL


def test_draft_keeps_enough_pixels_for_the_crop(classifier):
    data = upscaled_jpeg("china.jpg", 6)  # 3840x2562: crop 2241 px
    image = open_image(data, MAX_PIXELS)
    crop = 224 / 256 * min(image.size)
    scale = classifier.preprocessing.draft_jpeg(image)
    assert crop / scale >= classifier.config.SETTINGS.jpeg_draft_margin * 224
    assert crop / (scale * 2) < classifier.config.SETTINGS.jpeg_draft_margin * 224  # and no more than that


def test_small_jpeg_and_non_jpeg_are_not_drafted(classifier):
    assert classifier.preprocessing.draft_jpeg(open_image(PHOTOS["china.jpg"].read_bytes(), MAX_PIXELS)) == 1.0
    assert classifier.preprocessing.draft_jpeg(open_image(PHOTOS["coffee.png"].read_bytes(), MAX_PIXELS)) == 1.0


def test_compiled_model_has_a_dynamic_batch_dimension(classifier, aoti_handler):
    items = [classifier.preprocessing.to_pixels(open_image(PHOTOS[name].read_bytes(), MAX_PIXELS))
             for name in sorted(PHOTOS)]
    singles = torch.from_numpy(np.stack([aoti_handler.predict([item])[0] for item in items]))
    for size in (2, 3, len(items), 16):
        batch = (items * 3)[:size]
        out = torch.from_numpy(np.stack(aoti_handler.predict(batch)))
        assert out.shape == (size, 1000)
        assert torch.allclose(out, singles.repeat(3, 1)[:size], atol=1e-5)


@pytest.mark.parametrize("most", [1, 4, 6, 0])
def test_forward_passes_cover_the_batch_in_near_equal_parts(classifier, most):
    for count in range(1, 20):
        passes = classifier.handler.forward_passes(count, most)
        sizes = [stop - start for start, stop in passes]
        assert passes[0][0] == 0 and passes[-1][1] == count  # every image, in order, once
        assert all(a[1] == b[0] for a, b in zip(passes, passes[1:]))
        assert max(sizes) - min(sizes) <= 1
        assert max(sizes) <= most or most == 0
        assert len(passes) == (-(-count // most) if most else 1)  # as few as there can be


def test_a_negative_max_forward_batch_is_refused(classifier):
    with pytest.raises(ValueError, match="MAX_FORWARD_BATCH"):
        classifier.config.ClassifierSettings(max_forward_batch=-1)


def test_a_batch_above_max_forward_batch_runs_as_smaller_passes_with_the_same_answers(
        classifier, aoti_handler, photo_items):
    items = (photo_items * 2)[:8]
    model, own = aoti_handler.model, aoti_handler.own

    def predict(most: int) -> tuple[torch.Tensor, list[int]]:
        calls = []
        aoti_handler.model = lambda batch: calls.append(len(batch)) or model(batch)
        aoti_handler.own = classifier.config.ClassifierSettings(max_forward_batch=most)
        return torch.from_numpy(np.stack(aoti_handler.predict(items))), calls

    try:
        (whole, whole_calls), (split, split_calls) = predict(0), predict(6)
    finally:
        aoti_handler.model, aoti_handler.own = model, own
    assert (whole_calls, split_calls) == ([8], [4, 4])
    assert torch.allclose(split, whole, atol=1e-5)


def test_eager_fallback_matches_the_compiled_model(classifier, aoti_handler, eager_handler):
    assert (aoti_handler.backend, eager_handler.backend) == ("aoti", "eager")
    items = [classifier.preprocessing.to_pixels(open_image(PHOTOS[name].read_bytes(), MAX_PIXELS))
             for name in sorted(PHOTOS)]
    compiled, eager = (torch.from_numpy(np.stack(h.predict(items))) for h in (aoti_handler, eager_handler))
    assert torch.equal(compiled.argmax(-1), eager.argmax(-1))
    assert float((compiled - eager).abs().max()) <= EXACT_TOL


@functools.cache  # collection and each of its 7 cases ask: encoded once
def jpeg_variants() -> dict[str, bytes]:
    """A real photo saved the ways JPEGs arrive: 4:4:4 and 4:2:0, progressive, greyscale,
    large enough for 1/2 and 1/4 draft decoding, and one with junk before its end
    marker (libjpeg warns "extraneous bytes"; Pillow decodes it all the same)."""
    photo = Image.open(PHOTOS["china.jpg"]).convert("RGB")
    out = {}
    for name, image, options in (("444", photo, {"subsampling": 0}), ("420", photo, {"subsampling": 2}),
                                 ("progressive", photo, {"progressive": True}), ("grey", photo.convert("L"), {}),
                                 ("draft-2", photo.resize((1600, 1067)), {}),
                                 ("draft-4", photo.resize((3200, 2134)), {})):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90, **options)
        out[name] = buffer.getvalue()
    out["extraneous-bytes"] = out["420"][:-2] + b"\x00\x00\x00" + out["420"][-2:]
    return out


@pytest.mark.parametrize("name", sorted(jpeg_variants()))
def test_jpegs_decode_to_pillows_exact_pixels_through_simplejpeg(name, classifier, monkeypatch):
    """decode_rgb_array: the same pixels as Pillow's own decode (at the draft scale the
    classifier picks), and simplejpeg really decodes them (else the fast path is gone
    without a trace); the JPEG with a libjpeg warning, which simplejpeg refuses,
    falls back to Pillow rather than becoming a 400."""
    import simplejpeg

    from torchfaas.toolkit import images

    data = jpeg_variants()[name]
    expected_image = open_image(data, MAX_PIXELS)
    scale = classifier.preprocessing.draft_jpeg(expected_image)
    expected = np.asarray(decode_rgb(expected_image))

    decode, answered = simplejpeg.decode_jpeg, []

    def counting(*args, **kwargs):  # counts the decodes simplejpeg completed
        answered.append(decode(*args, **kwargs))
        return answered[-1]

    monkeypatch.setattr(images.simplejpeg, "decode_jpeg", counting)
    image = open_image(data, MAX_PIXELS)
    assert classifier.preprocessing.draft_jpeg(image) == scale
    pixels = images.decode_rgb_array(image)
    assert pixels.shape == expected.shape and pixels.dtype == np.uint8
    assert np.array_equal(pixels, expected)
    assert len(answered) == (0 if name == "extraneous-bytes" else 1), answered
    if name.startswith("draft"):
        assert scale == int(name[-1])
