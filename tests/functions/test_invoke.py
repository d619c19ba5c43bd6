"""`make invoke FUNCTION=...` sends the example request declared in the function's
folder to a running function and prints the answer."""
import json
import subprocess

from loadkit.localrun import FUNCTIONS, LOAD, REPO


def invoke_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("invoke", LOAD / "invoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_invoke_prints_the_answer_to_the_declared_example(function_process):
    fn = function_process("diabetes")
    run = subprocess.run(["make", "--no-print-directory", "invoke", "FUNCTION=diabetes", f"PORT={fn.port}"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert len(answer["predictions"]) == 3 and answer["model_name"] == "diabetes-linear"
    assert "HTTP 200" in run.stderr and "example.json" in run.stderr
    assert fn.wait_for_lines("inference", 1)[-1]["instances"] == 3


def test_make_invoke_without_a_function_running_says_how_to_start_one(tmp_path):
    from loadkit.localrun import free_port

    run = subprocess.run(["make", "--no-print-directory", "invoke", "FUNCTION=diabetes", f"PORT={free_port()}"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "make run FUNCTION=diabetes" in run.stderr


def test_each_function_declares_its_example():
    example_of = invoke_module().example_of
    assert example_of(FUNCTIONS / "diabetes").name == "example.json"
    assert example_of(FUNCTIONS / "classifier").name == "example.jpeg"  # a link to cat.jpg
