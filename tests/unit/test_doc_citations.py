"""Code that cites docs/benchmarks.md names one of its sections, and that section exists."""
import re
from pathlib import Path

from loadkit.localrun import REPO

SOURCES = ["Makefile", "stack.yml", "*.py", "**/*.py", "docs/*.md"]
CITATION = re.compile(r'benchmarks\.md\)?,? "([^"]+)"')


def cited_files():
    seen = set()
    for pattern in SOURCES:
        for path in REPO.glob(pattern):
            parts = path.relative_to(REPO).parts
            if path.is_file() and not {".venv", ".peers", "build", ".git"} & set(parts) and path not in seen:
                seen.add(path)
                yield path


def test_every_benchmarks_citation_names_a_section_that_exists():
    sections = set(re.findall(r"^## (.+)$", (REPO / "docs" / "benchmarks.md").read_text(), re.M))
    cited, bare = {}, []
    for path in cited_files():
        text = path.read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if "docs/benchmarks.md" in line and path.name not in ("benchmarks.md", Path(__file__).name):
                names = CITATION.findall(line)
                if not names:
                    bare.append(f"{path.relative_to(REPO)}:{number}")
                for name in names:
                    cited[name] = f"{path.relative_to(REPO)}:{number}"
    assert len(cited) >= 4, cited
    assert not bare, f"cites docs/benchmarks.md without a section name: {bare}"
    missing = {name: where for name, where in cited.items() if name not in sections}
    assert not missing, f"no such section in docs/benchmarks.md: {missing}"
