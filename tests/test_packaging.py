"""The set-up files must agree with each other: pyproject, environment.yml, README, CI."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from the PyPI name of the same project.
CONDA_TO_PYPI = {"python-kubernetes": "kubernetes"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    return {normalise(r.name): str(r.specifier) for r in reqs}


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    found: dict[str, str] = {}
    deps = [d for d in env["dependencies"] if isinstance(d, str)]
    for section in (d for d in env["dependencies"] if isinstance(d, dict)):
        deps += [d for d in section.get("pip", []) if not d.startswith("-e")]  # wheels conda lacks; kalab itself
    for dep in deps:
        match = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", dep)
        assert match, dep
        name = normalise(match.group(1))
        if name in ("python", "pip"):
            continue
        found[CONDA_TO_PYPI.get(name, name)] = match.group(2).replace(" ", "")
    return found


def test_environment_yml_lists_exactly_the_pyproject_dependencies() -> None:
    assert conda_requirements() == pyproject_requirements()


def test_environment_yml_wants_the_same_python() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"python{project['requires-python']}" in env["dependencies"]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    commands = [line for line in ci if line and not line.startswith(("#", "set ", "cd "))]
    assert commands == ["make test"]
    assert "make test" in readme and "make demo" in readme


def test_console_script_and_module_entry_agree() -> None:
    via_module = subprocess.run([sys.executable, "-m", "kalab", "--help"], capture_output=True, text=True, timeout=60)
    assert via_module.returncode == 0
    for command in ("cidr", "render", "run"):
        assert command in via_module.stdout
    script = Path(sys.executable).with_name("kalab")
    via_script = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert via_script.stdout == via_module.stdout
