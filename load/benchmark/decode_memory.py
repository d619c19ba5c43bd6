"""How much memory one image takes while the served classifier decodes it, by format.

    PYTHONPATH=load .venv/bin/python load/benchmark/decode_memory.py [--megapixels 25 4] [--env MAX_PIXELS=25000000]

Starts the classifier as `make bench` does (its defaults: MAX_PIXELS 25 MP, 10 MiB
bodies), a fresh process for each size and format, and sends it one real photo
(load/loadkit/photos.py, scaled up) after three photos of a usual size. Prints how far the
process's peak RSS rose above its RSS just before (the kernel's VmHWM, reset through
/proc/PID/clear_refs) and how much of that it still holds after the answer (glibc
keeps freed memory in its arenas for the next request). The two batch workers can
decode two images at once. For sizing a pod's memory limit (docs/settings.md, "Memory").
"""
import argparse
import http.client
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

from loadkit.localrun import CLASSIFIER, CLASSIFIER_ARTIFACTS, proc_kib, shrinkwrap
from loadkit.photos import PHOTOS
from serving import start_function

FORMATS = {  # name: (PIL format, save arguments, Content-Type)
    "jpeg": ("JPEG", {"quality": 60}, "image/jpeg"),
    "jpeg-progressive": ("JPEG", {"quality": 60, "progressive": True}, "image/jpeg"),
    "png": ("PNG", {"optimize": False}, "image/png"),
    "webp": ("WEBP", {"quality": 60}, "image/webp"),
}


def scaled_photo(megapixels: float) -> Image.Image:
    """A real photo resized to at most `megapixels` (the limit is inclusive)."""
    with Image.open(PHOTOS["chelsea.png"]) as photo:
        photo = photo.convert("RGB")
        scale = (megapixels * 1e6 / (photo.width * photo.height)) ** 0.5
        return photo.resize((int(photo.width * scale), int(photo.height * scale)), Image.BICUBIC)


def encoded(image: Image.Image, fmt: str) -> bytes:
    kind, options, _ = FORMATS[fmt]
    out = io.BytesIO()
    image.save(out, format=kind, **options)
    return out.getvalue()


def one_request(pid: int, port: int, body: bytes, content_type: str) -> dict:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = proc_kib(pid, "VmRSS")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/", body=body, headers={"Content-Type": content_type})
    status = conn.getresponse().status
    conn.close()
    return {"status": status, "rss_mib": before / 1024, "peak_rise_mib": (proc_kib(pid, "VmHWM") - before) / 1024,
            "kept_mib": (proc_kib(pid, "VmRSS") - before) / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[25.0, 4.0])
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the function")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory() as tmp:
        build = shrinkwrap(CLASSIFIER, Path(tmp) / "classifier")
        warm = encoded(scaled_photo(0.25), "jpeg")
        print(f"{'image':>24} {'body':>9} {'status':>6} {'RSS before':>10} {'peak rise':>10} {'kept':>8}")
        for megapixels in args.megapixels:
            photo = scaled_photo(megapixels)
            for fmt, (_, _, content_type) in FORMATS.items():
                body = encoded(photo, fmt)
                with start_function(build, CLASSIFIER_ARTIFACTS, env) as server:
                    for _ in range(3):  # a warm server: its first requests set up threads' arenas
                        one_request(server.pid, server.port, warm, "image/jpeg")
                    r = one_request(server.pid, server.port, body, content_type)
                print(f"{fmt + f' {megapixels:g} MP':>24} {len(body) / 1024:>7.0f}Ki {r['status']:>6} "
                      f"{r['rss_mib']:>6.0f} MiB {r['peak_rise_mib']:>6.0f} MiB {r['kept_mib']:>4.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
