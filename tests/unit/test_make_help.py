"""`make help` lists every entry point of the Makefile, one line each, from its own `## ` comments."""
import re
import subprocess

from loadkit.localrun import REPO


def makefile_targets() -> list[str]:
    """The targets a user can name: `name:` lines (not `VAR := ...`, not file targets)."""
    text = (REPO / "Makefile").read_text()
    return re.findall(r"^([a-z][a-z-]*):(?!=)", text, re.M)


def test_make_help_has_one_line_per_target():
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True,
                         timeout=30, check=True).stdout
    listed = re.findall(r"^  make (\S+) +\S", out, re.M)
    targets = makefile_targets()
    assert len(targets) >= 20, targets
    assert sorted(listed) == sorted(set(listed)), "a target is listed twice"
    assert set(listed) == set(targets), (f"without a help line: {sorted(set(targets) - set(listed))}; "
                                         f"listed but not a target: {sorted(set(listed) - set(targets))}")
    for entry in ("test", "ci", "demo", "run", "invoke", "compare", "review", "bench"):
        assert re.search(rf"^  make {entry} +\S.{{10,}}$", out, re.M), entry
