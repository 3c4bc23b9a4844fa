"""Every numbered notebook and the appendix run when copied alone.

A teacher copies a notebook into a folder of their own and installs `dlkit` as a
package. This test does the same: `dlkit` is built and installed non-editable
into a folder of its own, each notebook is copied alone into an empty folder,
and nbval re-executes it there (strict, with the course's nbval settings).
A notebook that read `../assets/...`, a sibling notebook's output or the
repository's `dlkit/` folder fails here.

It re-runs every notebook, so it is marked `alone` and left out of the default
`pytest tests`: `make test-alone` runs it (`make test` includes it).
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TRAVELLERS = [
    *sorted(NOTEBOOKS.glob("[0-9][0-9]*.ipynb")),
    NOTEBOOKS / "appendix_tfa_to_keras3.ipynb",
]
HARNESS = ["conftest.py", "nbval_sanitize.cfg"]  # nbval settings, not lesson files

pytestmark = pytest.mark.alone


@pytest.fixture(scope="module")
def site_packages(tmp_path_factory):
    """A folder holding dlkit built and installed as a wheel (not editable)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "dlkit", source / "dlkit", ignore=_build_leftovers)
    site = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    pip += ["--no-build-isolation", "--target", str(site), str(source)]
    subprocess.run(pip, check=True)
    return site


def _build_leftovers(folder, names):
    return [n for n in names if n == "__pycache__" or n.endswith(".egg-info")]


def _environment(site):
    env = dict(os.environ, PYTHONPATH=str(site))
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def test_the_installed_package_is_the_one_imported(site_packages, tmp_path):
    code = (
        "import importlib.resources, dlkit; print(dlkit.__file__); "
        "print((importlib.resources.files('dlkit') / 'assets').is_dir())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_environment(site_packages),
        capture_output=True,
        text=True,
        check=True,
    )
    path, has_assets = result.stdout.split()
    assert pathlib.Path(path).is_relative_to(site_packages), path
    assert has_assets == "True", "package data (dlkit/assets) was not installed"


@pytest.mark.parametrize("notebook", TRAVELLERS, ids=[p.name for p in TRAVELLERS])
def test_a_notebook_copied_alone_runs(notebook, site_packages, tmp_path):
    shutil.copy(notebook, tmp_path)
    for name in HARNESS:
        shutil.copy(NOTEBOOKS / name, tmp_path)
    command = [sys.executable, "-m", "pytest", "--nbval", notebook.name, "-q"]
    command += ["-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"]
    result = subprocess.run(
        command,
        cwd=tmp_path,
        env=_environment(site_packages),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        f"{notebook.name} fails when copied alone into an empty folder "
        f"with dlkit installed as a package:\n{result.stdout[-6000:]}"
    )
