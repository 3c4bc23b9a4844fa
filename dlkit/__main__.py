"""The `dlkit` command line.

python -m dlkit doctor                 # is the install healthy? where is the data?
python -m dlkit data [NAME ...]        # fetch and verify datasets now
python -m dlkit serve MODEL_DIR        # serve an exported model (serve --help)
python -m dlkit run-notebooks [PATH]   # re-execute notebooks in place
"""

# Commands import what they need when run: `--help` and `doctor` need no TensorFlow.

import argparse
import os
import pathlib
import sys
import time


def _doctor(args):
    """Prints the environment and dataset report; 1 if the install is broken."""
    from dlkit import env

    mirror = os.environ.get("DLKIT_DATA_DIR", "unset")
    lines = [*env.environment_report(), f"Datasets (DLKIT_DATA_DIR={mirror})"]
    try:
        from dlkit import datasets

        lines += [f"  {name:<20} {state}" for name, state in datasets.status().items()]
    except ImportError as error:
        lines.append(f"BROKEN: dlkit.datasets cannot be imported: {error}")
    print("\n".join(lines))
    broken = any(line.startswith("BROKEN:") for line in lines)
    print("dlkit doctor: " + ("install is broken" if broken else "ok"))
    return 1 if broken else 0


def _data(args):
    """Loads each named dataset once, so it is downloaded, verified and cached."""
    from dlkit import datasets

    known = list(datasets.status())
    unknown = [name for name in args.names if name not in known]
    if unknown:
        message = (
            f"Unknown dataset(s): {unknown}. Expected names from {known}, "
            f"e.g. `python -m dlkit data {known[0]}`, or none for all of them."
        )
        print(message, file=sys.stderr)
        return 2
    failed = 0
    for name in args.names or known:
        try:
            getattr(datasets, f"load_{name}")(profile=args.profile)
        except (datasets.DatasetUnavailableError, datasets.ChecksumError) as error:
            print(f"{name}: {error}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _run_notebooks(args):
    """Re-executes notebooks in place; 1 if any failed."""
    paths = []
    for path in map(pathlib.Path, args.paths or ["notebooks"]):
        if not (path.is_dir() or path.suffix == ".ipynb" and path.is_file()):
            raise SystemExit(
                f"Not a notebook or folder: {path}. Expected a .ipynb file or a folder."
            )
        found = sorted(path.rglob("*.ipynb")) if path.is_dir() else [path]
        paths += [p for p in found if ".ipynb_checkpoints" not in p.parts]
    failed = [path for path in paths if not _execute_notebook(path, args.timeout)]
    for path in failed:
        print(f"FAILED: {path} (left unchanged)", file=sys.stderr)
    return 1 if failed else 0


def _execute_notebook(path, timeout):
    """Runs one notebook top to bottom in its own kernel and saves its outputs.

    stderr outputs (warnings) are dropped: they are not part of the lesson and
    nbval does not compare them. The file is replaced only on success.
    """
    import jupyter_client.kernelspec
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    kernel = notebook.metadata.get("kernelspec", {}).get("name", "python3")
    if kernel not in jupyter_client.kernelspec.find_kernel_specs():
        print(f"skipped {path}: kernel {kernel!r} is not installed")
        return True
    os.environ.update(DLKIT_PROFILE="quick", PYTHONHASHSEED="0")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    print(f"executing {path} (kernel {kernel}) ...", flush=True)
    started = time.monotonic()
    try:
        nbclient.execute(
            notebook,
            cwd=str(path.parent),
            timeout=timeout,
            kernel_name=kernel,
            record_timing=False,
        )
    except nbclient.exceptions.CellExecutionError as error:
        print(str(error)[-3000:], file=sys.stderr)
        return False
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if o.get("name") != "stderr"]
    temporary = path.with_suffix(".ipynb.tmp")
    nbformat.write(notebook, temporary)
    os.replace(temporary, path)
    print(f"  done in {time.monotonic() - started:.0f} s")
    return True


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m dlkit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="report versions, devices and datasets")
    doctor.set_defaults(run=_doctor)
    data = commands.add_parser("data", help="download and verify datasets")
    data.add_argument("names", nargs="*", help="datasets (default: all; see doctor)")
    data.add_argument("--profile", choices=["quick", "full"], default=None)
    data.set_defaults(run=_data)
    # Listed for --help only: main() hands `serve ...` to dlkit.serve.main.
    commands.add_parser("serve", help="serve an exported model (serve --help)")
    execute = commands.add_parser("run-notebooks", help="re-execute notebooks in place")
    execute.add_argument(
        "paths", nargs="*", help="notebooks, folders (default: notebooks)"
    )
    execute.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    execute.set_defaults(run=_run_notebooks)
    return parser


def main(argv=None):
    """Runs the command line on `argv` (default `sys.argv[1:]`); returns its status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:  # KServe's parser, extended in dlkit.serve, owns these
        from dlkit import serve

        return serve.main(argv[1:])
    args = _parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
