"""Lay out a function's build as the image lays it out, or run a command against it.

    python load/local_function.py shrinkwrap functions/classifier build/classifier
    python load/local_function.py run [--port P] [--env "NAME=value ..."] BUILD LOG_DIR COMMAND [ARGS...]

`shrinkwrap` builds the folder `faas-cli build --shrinkwrap` would (`make shrinkwrap`).
`run` starts the build's function, runs COMMAND once /ready answers 200 (it finds
the function at $FUNCTION_URL) and stops both whatever happens (`make run`, through
load/with_function.sh). Both are loadkit.localrun's.
"""
import argparse
import os
import sys
from pathlib import Path

from loadkit import localrun


def _run_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="local_function.py run",
                                     description=localrun.run_with_function.__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--env", default="", help="NAME=value words for the function (the Makefile's RUN_ENV)")
    parser.add_argument("--ready-timeout", type=float, default=float(os.environ.get("READY_TIMEOUT", 180)))
    parser.add_argument("--stop-timeout", type=float, default=float(os.environ.get("STOP_TIMEOUT", 30)))
    parser.add_argument("build", type=Path)
    parser.add_argument("log_dir", type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("no COMMAND to run")
    # locally nothing routes to the process after SIGTERM: a short drain unless told otherwise
    env = {"DRAIN_SECONDS": os.environ.get("DRAIN_SECONDS", "0.5"),
           **dict(word.split("=", 1) for word in args.env.split())}
    args.log_dir.mkdir(parents=True, exist_ok=True)
    return localrun.run_with_function(args.build, args.log_dir, args.command, args.port, env,
                                      args.ready_timeout, args.stop_timeout)


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "shrinkwrap":
        localrun.shrinkwrap(Path(argv[1]), Path(argv[2]))
        return 0
    if argv[:1] == ["run"]:
        return _run_main(argv[1:])
    print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
