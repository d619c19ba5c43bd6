"""Real photos that ship inside installed packages, in several formats."""
import io
from pathlib import Path

import skimage
import sklearn.datasets
from PIL import Image

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
SKLEARN_IMAGES = Path(sklearn.datasets.__file__).parent / "images"

PHOTOS = {
    "chelsea.png": SKIMAGE_DATA / "chelsea.png",      # a tabby cat
    "coffee.png": SKIMAGE_DATA / "coffee.png",        # a cup of espresso
    "rocket.jpg": SKIMAGE_DATA / "rocket.jpg",
    "motorcycle.png": SKIMAGE_DATA / "motorcycle_left.png",
    "china.jpg": SKLEARN_IMAGES / "china.jpg",        # a temple
    "flower.jpg": SKLEARN_IMAGES / "flower.jpg",
}


def photo_bytes(name: str) -> bytes:
    return PHOTOS[name].read_bytes()


def reencode(name: str, fmt: str, **save_args) -> bytes:
    """The same photo in another format (JPEG/PNG/WEBP)."""
    out = io.BytesIO()
    Image.open(PHOTOS[name]).convert("RGB").save(out, format=fmt, **save_args)
    return out.getvalue()
