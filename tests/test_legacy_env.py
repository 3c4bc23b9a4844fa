"""Tests of the legacy tensorflow-addons environment and how the suite treats it.

`assets/legacy/make_legacy_env.sh` builds Python 3.11 + TensorFlow 2.15.1 +
tensorflow-addons 0.23.0 in `.venv-legacy` and registers the Jupyter kernel
`dlkit-legacy-tfa`. A full build downloads about 600 MB, so these tests run the
script's other paths for real (no Python 3.11, a wrong interpreter, an offline
install) in temporary folders, and check the built environment only where
`make legacy-env` has already run.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "assets" / "legacy" / "make_legacy_env.sh"
REQUIREMENTS = ROOT / "assets" / "legacy" / "requirements-legacy.txt"
REFERENCE = ROOT / "dlkit" / "assets" / "tfa_reference.json"
LEGACY_NOTEBOOK = ROOT / "notebooks" / "legacy" / "tfa_classic.ipynb"
LEGACY_VENV = ROOT / ".venv-legacy"
KERNEL_NAME = "dlkit-legacy-tfa"
BASH = shutil.which("bash")


def run_script(tmp_path, *args, **env):
    """Runs the build script with a minimal environment, building into tmp_path."""
    base = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "LEGACY_VENV": str(tmp_path / "venv-legacy"),
        "KERNEL_PREFIX": str(tmp_path / "kernel-prefix"),
    }
    return subprocess.run(
        [BASH, str(SCRIPT), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def python_version(executable):
    """Returns `(major, minor)` of a Python that runs, else `None`."""
    try:
        result = subprocess.run(
            [executable, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return None
    if result.returncode != 0:
        return None
    return tuple(int(part) for part in result.stdout.split())


def find_python(wanted):
    """A Python whose version satisfies `wanted(version)`, else `None`."""
    names = ["python3.10", "python3.11", "python3.12", "python3.13"]
    candidates = [shutil.which(name) for name in names]
    pyenv = pathlib.Path(os.environ.get("PYENV_ROOT", pathlib.Path.home() / ".pyenv"))
    candidates += sorted(str(p) for p in pyenv.glob("versions/3.*/bin/python3.*[0-9]"))
    for candidate in filter(None, candidates):
        version = python_version(candidate)
        if version and wanted(version):
            return candidate
    return None


def test_without_python311_says_so_exits_0_and_creates_nothing(tmp_path):
    empty_path = tmp_path / "empty-bin"
    empty_path.mkdir()

    result = run_script(tmp_path, PATH=str(empty_path))

    assert result.returncode == 0, result.stderr
    assert "no Python 3.11 found" in result.stdout
    assert "make legacy-env" in result.stdout
    assert not (tmp_path / "venv-legacy").exists()
    assert not (tmp_path / "kernel-prefix").exists()


def test_require_turns_a_missing_python311_into_a_failure(tmp_path):
    result = run_script(tmp_path, "--require", LEGACY_PYTHON=str(tmp_path / "none"))

    assert result.returncode == 1
    assert f"tried LEGACY_PYTHON={tmp_path / 'none'}" in result.stdout
    assert "--require was given" in result.stdout
    assert not (tmp_path / "venv-legacy").exists()


def test_legacy_python_of_another_version_is_refused(tmp_path):
    other = find_python(lambda version: version != (3, 11))
    if other is None:
        pytest.skip("no Python other than 3.11 on this machine to offer the script")

    result = run_script(tmp_path, LEGACY_PYTHON=other)

    assert result.returncode == 0, result.stderr
    assert "no Python 3.11 found" in result.stdout
    assert not (tmp_path / "venv-legacy").exists()


def test_unknown_argument_is_a_usage_error(tmp_path):
    result = run_script(tmp_path, "--fast")

    assert result.returncode == 2
    assert "unknown argument '--fast'" in result.stderr
    assert "--require" in result.stderr


def test_check_reports_a_missing_environment_without_building(tmp_path):
    result = run_script(tmp_path, "--check")

    assert result.returncode == 1
    assert "run `make legacy-env`" in result.stdout
    assert not (tmp_path / "venv-legacy").exists()


@pytest.mark.slow
def test_failed_install_removes_the_half_built_environment(tmp_path):
    python311 = find_python(lambda version: version == (3, 11))
    if python311 is None:
        pytest.skip("no Python 3.11 on this machine")
    wheelhouse = tmp_path / "empty-wheelhouse"
    wheelhouse.mkdir()

    result = run_script(
        tmp_path,
        LEGACY_PYTHON=python311,
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheelhouse),
    )

    assert result.returncode == 1
    assert "could not install the pinned requirements" in result.stdout
    assert not (tmp_path / "venv-legacy").exists()
    assert not (tmp_path / "kernel-prefix").exists()


def test_requirements_pin_every_package_and_the_issue_versions():
    lines = [
        line.strip()
        for line in REQUIREMENTS.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pins = dict(line.split("==") for line in lines)

    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][\w.]*", line) for line in lines)
    assert pins["tensorflow"] == "2.15.1"
    assert pins["tensorflow-addons"] == "0.23.0"
    assert pins["numpy"].startswith("1.")
    assert "ipykernel" in pins


def test_legacy_notebook_uses_the_kernel_the_script_registers():
    notebook = json.loads(LEGACY_NOTEBOOK.read_text())

    assert notebook["metadata"]["kernelspec"]["name"] == KERNEL_NAME
    assert f'KERNEL_NAME="{KERNEL_NAME}"' in SCRIPT.read_text()
    assert "import dlkit" not in LEGACY_NOTEBOOK.read_text()


def test_reference_file_holds_each_tfa_piece_from_the_legacy_run():
    reference = json.loads(REFERENCE.read_text())

    assert reference["meta"]["tensorflow"] == "2.15.1"
    assert reference["meta"]["tensorflow-addons"] == "0.23.0"
    assert set(reference) >= {
        "adamw_training",
        "cyclical_lr",
        "f1_score",
        "focal",
        "gelu",
        "group_normalization",
        "lookahead",
        "rotate",
    }


def test_notebook_with_a_missing_kernel_is_skipped_with_the_reason(tmp_path):
    """What `pytest --nbval notebooks` does where the legacy env is absent."""
    for name in ("conftest.py", "nbval_sanitize.cfg"):
        shutil.copy(ROOT / "notebooks" / name, tmp_path / name)
    notebook = json.loads(LEGACY_NOTEBOOK.read_text())
    notebook["metadata"]["kernelspec"]["name"] = "dlkit-kernel-that-is-not-installed"
    (tmp_path / "legacy.ipynb").write_text(json.dumps(notebook))

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "-rs", "-p", "no:cacheprovider"]
        + ["legacy.ipynb"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout[-3000:]
    assert "kernel 'dlkit-kernel-that-is-not-installed' is not installed" in (
        result.stdout
    )
    assert "run `make legacy-env`" in result.stdout
    assert re.search(r"\b\d+ skipped\b", result.stdout)
    assert " passed" not in result.stdout and " failed" not in result.stdout


@pytest.fixture
def built_legacy_env(tmp_path):
    check = subprocess.run(
        [BASH, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60
    )
    if check.returncode != 0:
        pytest.skip("the legacy environment is not built: run `make legacy-env`")
    return LEGACY_VENV / "bin" / "python"


def test_rerunning_the_script_on_a_built_environment_changes_nothing(
    built_legacy_env,
):
    stamp = LEGACY_VENV / ".dlkit-legacy-stamp"
    before = stamp.stat().st_mtime_ns

    result = subprocess.run(
        [BASH, str(SCRIPT)], capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout
    assert stamp.stat().st_mtime_ns == before


def test_built_environment_has_the_pinned_stack_and_passes_pip_check(
    built_legacy_env,
):
    freeze = subprocess.run(
        [built_legacy_env, "-m", "pip", "freeze", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    check = subprocess.run(
        [built_legacy_env, "-m", "pip", "check", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        timeout=120,
    )

    installed = set(freeze.stdout.split())
    assert {"tensorflow==2.15.1", "tensorflow-addons==0.23.0"} <= installed
    assert check.returncode == 0, check.stdout
