"""stack.yml builds every function: `faas-cli build -f stack.yml` builds (and `make deploy`
deploys) exactly the folders under functions/, each on the template, named as its folder."""
import yaml

from loadkit.localrun import REPO

TEMPLATE = "python3-http-torch"


def function_folders() -> list[str]:
    return sorted(p.name for p in (REPO / "functions").iterdir()
                  if p.is_dir() and not p.name.startswith((".", "_")))


def test_stack_lists_every_function_folder_and_nothing_else():
    functions = yaml.safe_load((REPO / "stack.yml").read_text())["functions"]
    assert sorted(functions) == function_folders()
    assert {"classifier", "diabetes"} <= set(functions)


def test_each_function_is_its_folder_on_the_template():
    functions = yaml.safe_load((REPO / "stack.yml").read_text())["functions"]
    for name, fn in functions.items():
        assert fn["handler"] == f"./functions/{name}", name
        assert fn["lang"] == TEMPLATE, name
        # the `function` field of its log lines and the label of its metrics
        assert (fn.get("environment") or {}).get("FUNCTION_NAME") == name, name
        assert (REPO / "functions" / name / "handler.py").is_file(), name
        assert fn["image"].rsplit("/", 1)[-1].split(":")[0] == name, fn["image"]
