"""The accuracy gate for a reduced-precision model (bf16, int8...): build time only.

A function that builds a faster, less precise package next to its fp32 one runs
both on many real photos and ships the fast one only if it gives the answers
fp32 gives where they matter:

    photos = gate_photos(own=Path(__file__).parent / "testdata")
    inputs = gate_inputs(photos, to_input=my_resize, served_box=my_crop)
    figures = measure(fp32_model, bf16_model, inputs)   # models: batch -> probabilities
    check(figures)                                       # raises GateFailed below the bounds
    manifest_fields = {"bf16_gate": figures}

The inputs (`gate_inputs`): every natural photo scikit-image and scikit-learn ship
(located through their packages, not imported: a build stage can install them
with --no-deps) plus the function's own photos; of each, the crop the function
serves, 6 scales x 5 places of square crops (0.95 ... 0.35 of the short side:
centre and corners), and the mirror image of all 31: 62 inputs per photo, 1,550
from the classifier's 25 photos. Real content only, never noise: a noise image
has no right answer, so agreement on it says nothing about answers users get.

What is measured (`measure`), with fp32 as the reference:
- confident top-1 agreement: of the inputs where fp32's top-1 probability is
  >= 0.5, the share where the candidate names the same class. Where fp32 itself
  is unsure (a tabby vs a tiger cat at 0.42 / 0.32) a flip changes nothing a user
  can rely on; where it is sure, a flip is a wrong answer;
- top-5 containment: the share of all inputs where fp32's top-1 is in the
  candidate's top 5 (a flip stays among the classes fp32 ranked near it);
- the top-1 probability shift: |p_candidate - p_fp32| of fp32's top-1 class, its
  mean, 99th percentile and maximum over all inputs;
- as yardsticks, recorded, not bounded: plain top-1 agreement over all inputs, and
  how far fp32's own top-1 probability moves between each view and its mirror
  image (the same photo to a user).

The bounds (`Bounds`; docs/precision.md has the measurements behind them):
- >= 1,000 inputs, >= 300 of them confident: 0 flips in 300 puts the flip rate
  below 1% with 95% confidence (rule of three, 3/n), so a 99% bound can be shown;
- confident top-1 agreement >= 99%;
- top-5 containment >= 99.5%;
- top-1 probability shift: mean <= 0.02, p99 <= 0.12, a fifth of what a mirror
  image moves fp32's own (mean 0.11, p99 0.63 on the classifier's inputs).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# The natural photos scikit-image ships in skimage/data (camera, microscope and
# telescope images; colour or grey): everything there but the synthetic images
# (chessboards, colour wheel, logo, phantom, rendered text, a horse silhouette),
# the 25x25 face patches (lfw_subset) and the stereo disparity map.
SKIMAGE_PHOTOS = ("astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png",
                  "coffee.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png",
                  "microaneurysms.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png", "page.png",
                  "retina.jpg", "rocket.jpg")
# sklearn.datasets.load_sample_images(): both of them
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SCALES = (0.95, 0.85, 0.75, 0.65, 0.5, 0.35)
PLACES = ((0.5, 0.5), (0, 0), (1, 0), (0, 1), (1, 1))
VIEWS = 1 + len(SCALES) * len(PLACES)  # crops per photo side: the served one, then the others


class GateFailed(RuntimeError):
    """The candidate gives answers fp32 does not give: it must not ship."""


@dataclass(frozen=True)
class Bounds:
    min_inputs: int = 1000
    min_confident_inputs: int = 300
    confident: float = 0.5  # fp32 top-1 probability from which an input counts as confident
    confident_top1: float = 0.99
    top5_contains_top1: float = 0.995
    prob_shift_mean: float = 0.02
    prob_shift_p99: float = 0.12


def package_data(package: str, folder: str) -> Path | None:
    """Where an installed package's data folder is, without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / folder


def gate_photos(own: Path | None = None) -> dict[str, Path]:
    """name -> path of every gate photo found: `own` (a function's folder of photos),
    then scikit-image's and scikit-learn's natural photos where they are installed."""
    photos = {}
    if own is not None:
        photos.update({f"{own.name}/{p.name}": p for p in sorted(own.iterdir())
                       if p.suffix.lower() in PHOTO_SUFFIXES})
    for package, folder, names in (("skimage", "data", SKIMAGE_PHOTOS),
                                   ("sklearn", "datasets/images", SKLEARN_PHOTOS)):
        root = package_data(package, folder)
        if root is not None:
            photos.update({f"{package}/{n}": root / n for n in names if (root / n).is_file()})
    return photos


def crop_boxes(width: int, height: int, served_box=None) -> list[tuple[int, int, int, int]]:
    """The served crop (`served_box(width, height)`, else the largest centred square),
    then SCALES x PLACES of square crops."""
    side = min(width, height)
    first = served_box(width, height) if served_box else (
        (width - side) // 2, (height - side) // 2, (width - side) // 2 + side, (height - side) // 2 + side)
    boxes = [tuple(first)]
    for scale in SCALES:
        crop = max(1, int(side * scale))
        for fx, fy in PLACES:
            left, top = int((width - crop) * fx), int((height - crop) * fy)
            boxes.append((left, top, left + crop, top + crop))
    return boxes


def gate_inputs(photos: dict[str, Path], to_input: Callable[[np.ndarray], np.ndarray],
                served_box=None) -> np.ndarray:
    """[N, ...] model inputs: `to_input(uint8 [h, w, 3] crop)` of every crop_boxes() crop
    of every photo and of its mirror image (grey photos as RGB), photo by photo."""
    from PIL import Image, ImageOps

    out = []
    for path in photos.values():
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        boxes = crop_boxes(*image.size, served_box=served_box)
        for view in (image, ImageOps.mirror(image)):
            pixels = np.asarray(view)
            out.extend(to_input(pixels[top:bottom, left:right]) for left, top, right, bottom in boxes)
    return np.stack(out)


def measure(reference, candidate, inputs: np.ndarray, batch: int = 16, confident: float = Bounds.confident,
            views: int | None = VIEWS) -> dict:
    """The gate's figures for `candidate` against `reference` (callables: a torch batch
    of inputs -> probabilities [B, classes]), over `inputs`. `views`: inputs per photo
    side as gate_inputs() lays them out (each photo's views, then their mirror images),
    for the mirror yardstick; None (or inputs not laid out so) leaves it out."""
    import torch

    ref_probs, cand_probs = [], []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch):
            x = torch.from_numpy(inputs[start:start + batch])
            ref_probs.append(reference(x).float().clone())
            cand_probs.append(candidate(x).float().clone())
    ref, cand = torch.cat(ref_probs), torch.cat(cand_probs)
    p_ref, top1 = ref.max(-1)
    same = cand.argmax(-1) == top1
    in_top5 = (cand.topk(5, -1).indices == top1[:, None]).any(-1)
    shift = (cand.gather(1, top1[:, None])[:, 0] - p_ref).abs().double()
    sure = p_ref >= confident
    n_sure = int(sure.sum())
    return {"inputs": len(inputs), "confident_inputs": n_sure,
            "confident_top1_agreement": round(float(same[sure].double().mean()), 5) if n_sure else 0.0,
            "confident_flips": n_sure - int(same[sure].sum()),
            "top5_contains_top1": round(float(in_top5.double().mean()), 5),
            "top1_agreement": round(float(same.double().mean()), 5),
            "prob_shift_mean": round(float(shift.mean()), 5),
            "prob_shift_p99": round(float(torch.quantile(shift, 0.99)), 5),
            "prob_shift_max": round(float(shift.max()), 5), **mirror_yardstick(ref, views)}


def mirror_yardstick(probs, views: int | None) -> dict:
    """How far the reference's top-1 probability moves from each view to its mirror image."""
    import torch

    if not views or len(probs) % (2 * views):
        return {}
    pairs = torch.arange(len(probs)).view(-1, 2, views)
    view, mirror = pairs[:, 0].flatten(), pairs[:, 1].flatten()
    p_view, top1 = probs[view].max(-1)
    moved = (probs[mirror].gather(1, top1[:, None])[:, 0] - p_view).abs().double()
    return {"fp32_mirror_shift_mean": round(float(moved.mean()), 5),
            "fp32_mirror_shift_p99": round(float(torch.quantile(moved, 0.99)), 5),
            "fp32_mirror_top1_agreement": round(float((probs[mirror].argmax(-1) == top1).double().mean()), 5)}


def failures(figures: dict, bounds: Bounds = Bounds()) -> list[str]:
    """What breaks the bounds, one sentence each ([] when the gate passes)."""
    out = []
    for key, bound, low in (("inputs", bounds.min_inputs, True),
                            ("confident_inputs", bounds.min_confident_inputs, True),
                            ("confident_top1_agreement", bounds.confident_top1, True),
                            ("top5_contains_top1", bounds.top5_contains_top1, True),
                            ("prob_shift_mean", bounds.prob_shift_mean, False),
                            ("prob_shift_p99", bounds.prob_shift_p99, False)):
        value = figures.get(key)
        if not isinstance(value, (int, float)) or (value < bound if low else value > bound):
            out.append(f"{key} {value!r} {'<' if low else '>'} {bound:g}")
    return out


def check(figures: dict, bounds: Bounds = Bounds(), what: str = "the candidate") -> dict:
    """`figures` with the bounds and the verdict added; raises GateFailed below the bounds."""
    broken = failures(figures, bounds)
    if broken:
        raise GateFailed(f"{what} fails the accuracy gate: {'; '.join(broken)} ({figures})")
    return {**figures, "bounds": asdict(bounds), "passed": True}
