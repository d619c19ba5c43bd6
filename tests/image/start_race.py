"""Container start to ready, images side by side: `podman run` (as faas-netes runs it:
read-only root, writable /tmp, stack.yml's limits) to the first /ready 200, the images
alternated round by round so a busy machine slows each alike.

    python tests/image/start_race.py --function classifier --repeats 5 IMAGE [IMAGE ...]

Prints each start and each image's median. The images must be built already (the image
test builds localhost/torchfaas-ci/<function>:test); this only runs them.
"""
import argparse
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# run as a script: the modules the image test imports through pytest's pythonpath
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "load")]

from image_build import stack_function, start_as_faas_netes  # noqa: E402

POLL_S = 0.02  # /ready asked every 20 ms: the figure's resolution


def race(images: list[str], fn: dict, repeats: int) -> dict[str, list[float]]:
    seconds = {image: [] for image in images}
    for round_no in range(repeats):
        # alternate which image goes first, so neither always starts on a cooler cache
        order = images if round_no % 2 == 0 else images[::-1]
        for image in order:
            container, _, ready = start_as_faas_netes(image, fn, poll_s=POLL_S)
            container.remove()
            seconds[image].append(ready)
            print(f"round {round_no + 1}: {image}: ready after {ready:.2f} s", flush=True)
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+")
    parser.add_argument("--function", default="classifier", help="its stack.yml entry gives limits and env")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    seconds = race(args.images, stack_function(args.function, dict(os.environ)), args.repeats)
    for image, values in seconds.items():
        print(f"{image}: podman run to /ready 200, median of {len(values)}: {statistics.median(values):.2f} s "
              f"(min {min(values):.2f}, max {max(values):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
