"""`python -m dlkit ...`, run for real in subprocesses."""

import os
import subprocess
import sys

import nbformat
import pytest


def run(*args, env=None, options=()):
    return subprocess.run(
        [sys.executable, *options, "-m", "dlkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_help_lists_the_commands_without_importing_tensorflow():
    result = run("--help", options=["-X", "importtime"])
    assert result.returncode == 0, result.stderr
    for command in ("doctor", "data", "serve", "run-notebooks"):
        assert command in result.stdout
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()]
    assert "dlkit" in imported and "tensorflow" not in imported


@pytest.mark.slow  # imports TensorFlow or starts a kernel
def test_doctor_reports_versions_devices_and_every_dataset(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "shakespeare.txt").write_text("not the real file")
    result = run(
        "doctor", env={"DLKIT_DATA_DIR": str(mirror), "KERAS_HOME": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # TensorFlow's start-up log stays quiet
    out = result.stdout
    assert "  tensorflow " in out and "  keras " in out and "CPU bfloat16" in out
    for name in (
        "mnist",
        "fashion_mnist",
        "cifar10",
        "imdb",
        "shakespeare",
        "sentiment_sentences",
        "breast_cancer",
        "sunspots",
        "co2",
    ):
        assert f"  {name} " in out, name
    assert "mirrored" in out and "needs a download" in out
    assert out.rstrip().endswith("dlkit doctor: ok")


def test_doctor_reports_a_broken_tensorflow_instead_of_crashing(tmp_path):
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(
        "raise ImportError('libcudart.so.12: cannot open shared object file')"
    )
    result = run("doctor", env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "BROKEN: TensorFlow cannot be imported: libcudart.so.12" in result.stdout
    assert "  keras " in result.stdout and "breast_cancer" in result.stdout
    assert result.stdout.rstrip().endswith("dlkit doctor: install is broken")


def test_data_command_names_an_unknown_dataset():
    result = run("data", "mnits")
    assert result.returncode == 2
    assert "Unknown dataset(s): ['mnits']" in result.stderr and "mnist" in result.stderr


@pytest.mark.slow  # imports TensorFlow or starts a kernel
def test_data_command_loads_bundled_data_and_fails_cleanly_offline(tmp_path):
    folders = {"KERAS_HOME": str(tmp_path), "DLKIT_DATA_DIR": str(tmp_path)}
    assert run("data", "breast_cancer", env=folders).returncode == 0
    result = run("data", "cifar10", env=folders)
    assert result.returncode == 1
    assert "cifar-10-python.tar.gz" in result.stderr
    assert "DLKIT_DATA_DIR" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow  # imports TensorFlow or starts a kernel
def test_serve_hands_every_argument_to_dlkit_serve():
    result = run("serve", "--help")
    assert result.returncode == 0, result.stderr
    assert "python -m dlkit serve" in result.stdout
    assert "--http_port" in result.stdout  # KServe's own parser


@pytest.mark.slow  # imports TensorFlow or starts a kernel
def test_run_notebooks_executes_in_place_and_drops_stderr(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "import os, sys\nprint('profile', os.environ['DLKIT_PROFILE'])"
        ),
        nbformat.v4.new_code_cell("print('warning', file=sys.stderr)\n6 * 7"),
    ]
    path = tmp_path / "lesson.ipynb"
    nbformat.write(notebook, path)
    result = run("run-notebooks", str(tmp_path), env={"DLKIT_PROFILE": "full"})
    assert result.returncode == 0, result.stderr
    executed = nbformat.read(path, as_version=4)
    assert executed.cells[0].outputs[0]["text"] == "profile quick\n"
    assert [o["output_type"] for o in executed.cells[1].outputs] == ["execute_result"]
    assert executed.cells[1].execution_count == 2


@pytest.mark.slow  # imports TensorFlow or starts a kernel
def test_run_notebooks_leaves_a_failing_notebook_unchanged(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("raise RuntimeError('boom')")]
    path = tmp_path / "broken.ipynb"
    nbformat.write(notebook, path)
    before = path.read_bytes()
    result = run("run-notebooks", str(path))
    assert result.returncode == 1 and "FAILED" in result.stderr
    assert path.read_bytes() == before


def test_run_notebooks_names_a_path_that_is_no_notebook(tmp_path):
    result = run("run-notebooks", str(tmp_path / "missing.ipynb"))
    assert result.returncode == 1
    assert (
        "Not a notebook or folder" in result.stderr and "missing.ipynb" in result.stderr
    )
