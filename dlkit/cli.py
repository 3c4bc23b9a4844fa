"""The `dlkit` command line.

python -m dlkit doctor                 # is the install healthy? where is the data?
python -m dlkit data [NAME ...]        # fetch and verify datasets now
python -m dlkit serve MODEL_DIR        # serve an exported model (see dlkit.serve)
python -m dlkit run-notebooks [PATH]   # re-execute notebooks in place
"""

import argparse
import os
import pathlib
import sys
import time

LOADERS = {
    "breast_cancer": "load_breast_cancer",
    "mnist": "load_mnist",
    "fashion_mnist": "load_fashion_mnist",
    "cifar10": "load_cifar10",
    "imdb": "load_imdb",
    "shakespeare": "load_shakespeare",
    "sentiment_sentences": "load_sentiment_sentences",
    "sunspots": "load_sunspots",
    "co2": "load_co2",
}


def doctor(args):
    """Prints the environment and dataset report; 1 if the install is broken."""
    from dlkit import env

    broken = []
    try:
        for line in env.environment_report():
            print(line)
    except ImportError as error:  # TensorFlow or another core package is missing
        broken.append(f"cannot import a core package: {error}")
    try:
        from dlkit import datasets

        print(
            "Datasets (DLKIT_DATA_DIR="
            + os.environ.get("DLKIT_DATA_DIR", "unset")
            + ")"
        )
        for name, state in datasets.status().items():
            print(f"  {name:<20} {state}")
    except ImportError as error:
        broken.append(f"cannot import dlkit.datasets: {error}")
    for problem in broken:
        print(f"BROKEN: {problem}", file=sys.stderr)
    print("dlkit doctor: " + ("install is broken" if broken else "ok"))
    return 1 if broken else 0


def data(args):
    """Loads each named dataset once, so it is downloaded, verified and cached."""
    from dlkit import datasets

    names = args.names or list(LOADERS)
    unknown = [name for name in names if name not in LOADERS]
    if unknown:
        print(
            f"Unknown dataset(s): {unknown}. Expected names from {sorted(LOADERS)}.",
            file=sys.stderr,
        )
        return 2
    failed = 0
    for name in names:
        try:
            getattr(datasets, LOADERS[name])(profile=args.profile)
        except (datasets.DatasetUnavailableError, datasets.ChecksumError) as error:
            print(f"{name}: {error}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def run_notebooks(args):
    """Re-executes notebooks in place; 1 if any failed."""
    paths = find_notebooks(args.paths or ["notebooks"])
    failed = [path for path in paths if not execute_notebook(path, args.timeout)]
    for path in failed:
        print(f"FAILED: {path} (left unchanged)", file=sys.stderr)
    return 1 if failed else 0


def find_notebooks(paths):
    """Expands folders into the notebooks they hold, sorted by name."""
    found = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in str(p)
            )
        elif path.suffix == ".ipynb" and path.is_file():
            found.append(path)
        else:
            raise SystemExit(
                f"Not a notebook or folder: {path}. Expected a .ipynb file or a folder."
            )
    return found


def execute_notebook(path, timeout):
    """Runs one notebook top to bottom in its own kernel and saves its outputs.

    Runs in the notebook's folder, in the quick profile, with fixed hash seeds.
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
    os.environ.update(
        DLKIT_PROFILE="quick", PYTHONHASHSEED="0", TF_CPP_MIN_LOG_LEVEL="2"
    )
    print(f"executing {path} (kernel {kernel}) ...", flush=True)
    started = time.monotonic()
    client = nbclient.NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=kernel,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m dlkit", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "doctor", help="report versions, devices and datasets"
    ).set_defaults(run=doctor)
    fetch = commands.add_parser("data", help="download and verify datasets")
    fetch.add_argument(
        "names", nargs="*", help=f"datasets (default: all of {sorted(LOADERS)})"
    )
    fetch.add_argument("--profile", choices=["quick", "full"], default=None)
    fetch.set_defaults(run=data)
    # Listed for --help only: main() hands `serve ...` to dlkit.serve.main.
    commands.add_parser("serve", help="serve an exported model (serve --help)")
    execute = commands.add_parser("run-notebooks", help="re-execute notebooks in place")
    execute.add_argument(
        "paths", nargs="*", help="notebooks or folders (default: notebooks)"
    )
    execute.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    execute.set_defaults(run=run_notebooks)
    return parser


def main(argv=None):
    """Runs the command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:  # dlkit.serve parses its own options, --help too
        from dlkit import serve as serving

        return serving.main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.run(args)
