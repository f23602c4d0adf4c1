"""The project shell: pins agree, the two README commands exist, CI runs the test command."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(lines):
    out = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+)==([^\s;\"',]+)", line.strip().strip('"').strip(","))
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_environment_yml_pins_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"] + [d for group in project["optional-dependencies"].values() for d in group]
    py_pins = _pins(deps)
    env_lines = [ln.split("- ", 1)[1] for ln in (ROOT / "environment.yml").read_text().splitlines()
                 if ln.strip().startswith("- ") and "==" in ln]
    env_pins = _pins(env_lines)
    assert py_pins == env_pins
    assert py_pins["torch"] == "2.14.1" and py_pins["torchvision"] == "0.29.1"
    assert all(re.match(r"^[^=<>~]+==", d) for d in deps), "every dependency is pinned exactly"
    assert "python=3.11" in (ROOT / "environment.yml").read_text()


def test_readme_has_the_two_commands_and_ci_runs_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make reproduce" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    mk = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", mk, re.M) and re.search(r"^reproduce:", mk, re.M)
