import os
import pathlib
import random
import subprocess
import sys

import nbclient
import nbformat
import numpy as np
import pytest

import dlkit
from dlkit import env

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


def test_import_dlkit_is_light_and_loads_submodules_on_use():
    code = """if True:
        import sys, dlkit
        assert "tensorflow" not in sys.modules and "keras" not in sys.modules
        assert {"training", "setup", "get_profile", "__version__"} <= set(dir(dlkit))
        assert "dlkit.datasets" not in sys.modules and not hasattr(dlkit, "Trainer")
        assert dlkit.datasets is sys.modules["dlkit.datasets"]
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    assert {"env", "training", "setup", "get_profile"} <= set(dlkit.__all__)


def test_setup_seeds_every_generator_and_prints_one_line(capsys, monkeypatch):
    monkeypatch.delenv("DLKIT_PROFILE", raising=False)
    import tensorflow as tf

    assert dlkit.setup(seed=3) == "quick"
    first = (random.random(), np.random.rand(), float(tf.random.uniform(())))
    dlkit.setup(seed=3, verbose=False)
    second = (random.random(), np.random.rand(), float(tf.random.uniform(())))
    assert first == second
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert f"TensorFlow {tf.__version__}" in lines[0] and "profile quick" in lines[0]
    assert "| CPU x1 (bfloat16: " in lines[0] and "seed 3" in lines[0]


def test_setup_exports_the_profile(monkeypatch):
    monkeypatch.delenv("DLKIT_PROFILE", raising=False)
    dlkit.setup(profile="full", verbose=False)
    assert os.environ["DLKIT_PROFILE"] == "full"
    assert dlkit.get_profile() == "full"
    dlkit.setup(profile="quick", verbose=False)
    assert dlkit.get_profile() == "quick"


def test_get_profile_names_where_a_bad_profile_came_from(monkeypatch):
    with pytest.raises(ValueError, match="argument `profile`. Received: 'medium'"):
        dlkit.get_profile("medium")
    monkeypatch.setenv("DLKIT_PROFILE", "Full")
    with pytest.raises(ValueError, match="variable DLKIT_PROFILE. Received: 'Full'"):
        dlkit.get_profile()


def test_quietly_writes_back_only_errors(capfd):
    log = (
        "WARNING: All log messages before absl::InitializeLog() is called are "
        "written to STDERR\n"
        "I0000 00:00:1796.1 6253 cudart_stub.cc:31] Could not find cuda drivers on "
        "your machine, GPU will not be used.\n"
        "E0000 00:00:1796.2 6253 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
        "W0000 00:00:1796.3 6253 some.cc:1] a warning\n"
        "E0000 00:00:1796.4 6253 real.cc:9] a real error\n"
    )

    def log_to_fd2(text):
        os.write(2, text.encode())
        return "result"

    assert env._quietly(lambda: log_to_fd2(log)) == "result"
    assert capfd.readouterr().err == "E0000 00:00:1796.4 6253 real.cc:9] a real error\n"
    # With a CUDA driver installed, a failed cuInit is a real error.
    env._quietly(lambda: log_to_fd2(log.split("\n", 2)[2]))
    assert "cuInit" in capfd.readouterr().err


@pytest.mark.parametrize(
    "cpuinfo, expected",
    [
        ("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n", "yes"),
        ("flags\t\t: fpu sse4_2 avx2 fma amx_bf16\n", "yes"),
        ("processor\t: 0\nflags\t\t: fpu sse4_2 avx2 fma avx512f\n", "no"),
        ("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n", "yes"),
        ("processor\t: 0\nFeatures\t: fp asimd\n", "no"),
        ("processor\t: 0\n", "unknown"),
        (None, "unknown"),
    ],
)
def test_cpu_bfloat16_reads_cpuinfo_flags(tmp_path, cpuinfo, expected):
    path = tmp_path / "cpuinfo"
    if cpuinfo is not None:
        path.write_text(cpuinfo)
    assert env._cpu_bfloat16(path) == expected


def test_list_devices_and_report_on_this_machine(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    if any(device.kind != "CPU" for device in env.list_devices()):
        pytest.skip("this machine has an accelerator")
    assert env.list_devices() == [env.DeviceInfo("CPU", "CPU:0")]
    lines = env.environment_report()
    assert lines[0].startswith("Python ")
    assert any(line.startswith("  tensorflow     2.") for line in lines)
    assert "GPUs: none visible (training runs on the CPU; float32)" in lines
    assert any(line.startswith("CPU bfloat16 instructions") for line in lines)
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    assert env.list_devices()[-1] == env.DeviceInfo("TPU", "my-tpu")
    assert "TPU my-tpu: compute capability n/a, mixed precision speed-up: yes" in (
        env.environment_report()
    )


def _setup_cells():
    """The first code cell of each numbered notebook and the appendix, by source."""
    cells = {}
    for path in sorted(NOTEBOOKS.glob("[0-9]*.ipynb")) + sorted(
        NOTEBOOKS.glob("appendix*.ipynb")
    ):
        notebook = nbformat.read(path, as_version=4)
        source = next(
            cell.source for cell in notebook.cells if cell.cell_type == "code"
        )
        cells.setdefault(source, []).append(path.stem)
    return cells


SETUP_CELLS = _setup_cells()


@pytest.mark.slow
@pytest.mark.parametrize("source", SETUP_CELLS, ids=lambda s: ",".join(SETUP_CELLS[s]))
def test_setup_cell_writes_nothing_to_stderr_in_a_fresh_kernel(source):
    # One fresh kernel per distinct setup cell: most notebooks share one. Like a
    # learner's kernel: no TF_CPP_MIN_LOG_LEVEL, and no PYTEST_CURRENT_TEST, which
    # turns off ipykernel's capture of what C++ code writes to file descriptor 2.
    hidden = ("TF_CPP_MIN_LOG_LEVEL", "PYTEST_CURRENT_TEST")
    kernel_env = {k: v for k, v in os.environ.items() if k not in hidden}
    import matplotlib.font_manager  # noqa: F401 (builds its font cache out here)

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    folder = {"metadata": {"path": str(NOTEBOOKS)}}
    client = nbclient.NotebookClient(notebook, timeout=300, resources=folder)
    client.execute(env=kernel_env)
    outputs = notebook.cells[0].outputs
    stderr = [output.text for output in outputs if output.get("name") == "stderr"]
    fix = "import dlkit and call dlkit.setup() before importing TensorFlow"
    assert not stderr, f"{SETUP_CELLS[source]} write to stderr ({fix}): {stderr}"
    assert any(output.get("text", "").startswith("dlkit ") for output in outputs)
