"""Every class a contract names (SLO and comparison contracts alike) is a class the
classifier can output: its label is the first name of an ImageNet class in
functions/classifier/imagenet_labels.json, as the handler writes labels.json."""

import json
import re
from pathlib import Path

from behave.parser import parse_file

REPO = Path(__file__).resolve().parents[2]
LABELS_FILE = REPO / "functions" / "classifier" / "imagenet_labels.json"
CLASS_COLUMNS = ("class", "classes")
QUOTED_CLASS = re.compile(r'class(?:es)? "([^"]+)"')


def model_labels():
    return {full.split(",")[0].strip() for full in json.loads(LABELS_FILE.read_text())}


def feature_files():
    return sorted((REPO / "functions" / "classifier").rglob("*.feature"))


def named_classes(path):
    """(class, where) for every class in a `class` column of a step table or quoted
    after the word `class` in a step."""
    feature = parse_file(str(path))
    for scenario in feature.walk_scenarios(with_outlines=True):
        for step in list(feature.background.steps if feature.background else []) + list(scenario.steps):
            for name in QUOTED_CLASS.findall(step.name):
                yield name, f"{path.name}:{step.line}"
            if step.table:
                for column in CLASS_COLUMNS:
                    if column in step.table.headings:
                        for row in step.table:
                            yield row[column].strip(), f"{path.name}:{row.line}"


def test_every_class_named_in_a_contract_is_a_model_label():
    labels = model_labels()
    assert len(labels) > 990  # 1000 classes; a few share a first name ("crane", "maillot")
    named = [item for path in feature_files() for item in named_classes(path)]
    assert len(named) >= 6  # the production-mix bands at least
    unknown = [f"{name!r} ({where})" for name, where in named if name not in labels]
    assert not unknown, "classes the model cannot output: " + ", ".join(unknown)


def test_the_check_catches_a_name_the_model_cannot_output(tmp_path):
    bad = tmp_path / "bad.feature"
    bad.write_text('Feature: x\n  Scenario: y\n    Then each of these classes keeps its share of the top predictions\n'
                   '      | class     | at least | at most |\n      | tabby cat | 5%       | 20%     |\n')
    assert [name for name, _ in named_classes(bad)] == ["tabby cat"]
    assert "tabby cat" not in model_labels() and "tabby" in model_labels()
