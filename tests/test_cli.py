import os
import subprocess
import sys

import nbformat


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "dlkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
        timeout=600,
    )


def test_doctor_reports_versions_and_every_dataset(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "shakespeare.txt").write_text("not the real file")
    result = run(
        "doctor", env={"DLKIT_DATA_DIR": str(mirror), "KERAS_HOME": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tensorflow" in out and "keras" in out
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
    assert "mirrored in" in out and "needs a download" in out
    assert out.rstrip().endswith("dlkit doctor: ok")


def test_data_command_names_an_unknown_dataset():
    result = run("data", "mnits")
    assert result.returncode == 2
    assert "Unknown dataset(s): ['mnits']" in result.stderr and "mnist" in result.stderr


def test_data_command_fails_cleanly_offline(tmp_path):
    result = run(
        "data",
        "cifar10",
        env={"KERAS_HOME": str(tmp_path), "DLKIT_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 1
    assert (
        "cifar-10-python.tar.gz" in result.stderr and "Traceback" not in result.stderr
    )


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


def test_run_notebooks_leaves_a_failing_notebook_unchanged(tmp_path):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("raise RuntimeError('boom')")]
    path = tmp_path / "broken.ipynb"
    nbformat.write(notebook, path)
    before = path.read_bytes()
    result = run("run-notebooks", str(path))
    assert result.returncode == 1 and "FAILED" in result.stderr
    assert path.read_bytes() == before
