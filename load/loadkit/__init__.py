"""The libraries load/'s commands, the benchmark and the tests share.

Nothing here is run as a command: the commands are the scripts in load/ (and
load/benchmark/), which find this package beside them; the tests and the benchmark
find it through `load` on their path (pytest's pythonpath, `PYTHONPATH=load`).
"""
