"""The README's commands run as written from the repository's root.

Its curl examples and `make invoke` are run by bash against a real classifier process
(on a free port instead of 8080: the one substitution), and each must be answered as
the README says. Every file a README command posts must exist.
"""
import json
import re
import subprocess

import pytest

from loadkit.localrun import REPO

README = REPO / "README.md"
LOCAL = "http://127.0.0.1:8080"


def readme_commands() -> list[str]:
    """Every command of the README's bash/sh blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"^```(?:bash|sh)\n(.*?)^```", README.read_text(), re.M | re.S):
        command = ""
        for line in block.splitlines():
            command += line
            if command.endswith("\\"):
                command = command[:-1] + " "
                continue
            if command.strip():
                commands.append(command.strip())
            command = ""
    return commands


def test_every_file_a_readme_command_sends_exists():
    posted = [path for command in readme_commands()
              for path in re.findall(r"(?:--data-binary|--data|-d) @([\w./-]+)", command)]
    posted += [path for command in readme_commands() for path in re.findall(r"base64 -w0 ([\w./-]+)", command)]
    assert len(posted) >= 3, posted
    for path in posted:
        assert (REPO / path).is_file(), f"the README sends {path}, which is not in the repository"


@pytest.fixture(scope="module")
def classifier(function_process):
    return function_process("classifier")


def run(command: str, port: int) -> str:
    done = subprocess.run(["bash", "-c", command.replace(LOCAL, f"http://127.0.0.1:{port}")], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{command}\n{done.stdout[-500:]}{done.stderr[-500:]}"
    return done.stdout


def test_readme_curl_examples_answer_as_the_readme_says(classifier):
    local = [c for c in readme_commands() if c.startswith("curl ") and LOCAL in c]
    assert len(local) >= 5, local
    posts = 0
    for command in local:
        out = run(command, classifier.port)
        if "/metrics" in command:
            assert "torchfaas_requests_total" in out, out[:300]
        elif "/ready" in command:
            assert json.loads(out), out
        elif "--data-binary" in command or " -d " in command:
            posts += 1
            body = json.loads(out)
            assert "error" not in body, (command, body)
            top = body["predictions"][0]["label"]
            expected = "espresso" if "espresso.jpg" in command else "cat"
            assert expected in top or (expected == "cat" and body["predictions"][0]["class_index"] in
                                       range(281, 286)), (command, body["predictions"][:2])
            if "topk=3" in command:
                assert len(body["predictions"]) == 3
        else:  # GET /: the model's metadata
            body = json.loads(out)
            assert body["model_name"] == "efficientnet-lite0", body
    assert posts >= 2
    lines = classifier.wait_for_lines("inference", posts, timeout=10)
    assert [line["status"] for line in lines] == [200] * posts


def test_make_invoke_posts_the_example(classifier):
    assert "make invoke" in " ".join(readme_commands())
    out = run(f"make --no-print-directory invoke PORT={classifier.port}", classifier.port)
    body = json.loads(out)
    assert body["predictions"][0]["class_index"] in range(281, 286), body  # the ImageNet cats
