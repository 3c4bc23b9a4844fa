"""nbval settings for the course notebooks, applied to `pytest --nbval notebooks`.

- Outputs are sanitized with `notebooks/nbval_sanitize.cfg` (timings, memory
  addresses, temporary paths) unless another file is given on the command line.
- stderr is not compared: it carries warnings that vary between machines and
  library versions, never part of a lesson.
- A notebook whose Jupyter kernel is not installed (the legacy
  tensorflow-addons kernel) is skipped with the reason shown.
"""

import os
import pathlib

import jupyter_client.kernelspec
import nbformat
import pytest
from nbval import plugin

SANITIZE = pathlib.Path(__file__).with_name("nbval_sanitize.cfg")


def pytest_configure(config):
    if getattr(config.option, "nbval_sanitize_with", None) is None:
        config.option.nbval_sanitize_with = str(SANITIZE)
    os.environ.setdefault("DLKIT_PROFILE", "quick")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _without_stderr(outputs):
    return [o for o in outputs if o.get("name") != "stderr"]


_compare_outputs = plugin.IPyNbCell.compare_outputs


def _compare_outputs_except_stderr(self, test, ref, skip_compare=None):
    return _compare_outputs(
        self, _without_stderr(test), _without_stderr(ref), skip_compare
    )


plugin.IPyNbCell.compare_outputs = _compare_outputs_except_stderr


def installed_kernels():
    """Names of the Jupyter kernels whose interpreter exists on this machine."""
    manager = jupyter_client.kernelspec.KernelSpecManager()
    names = set()
    for name in manager.find_kernel_specs():
        program = manager.get_kernel_spec(name).argv[0]
        if not os.path.isabs(program) or os.path.exists(program):
            names.add(name)
    return names


def pytest_collection_modifyitems(config, items):
    installed = installed_kernels()
    missing = {}
    for item in items:
        path = pathlib.Path(str(item.fspath))
        if path.suffix != ".ipynb" or config.option.nbval_kernel_name:
            continue
        if path not in missing:
            kernel = nbformat.read(path, as_version=4).metadata.get("kernelspec", {})
            name = kernel.get("name", "python3")
            missing[path] = None if name in installed else name
        if missing[path]:
            item.add_marker(
                pytest.mark.skip(
                    reason=f"kernel {missing[path]!r} is not installed; "
                    "run `make legacy-env`"
                )
            )
