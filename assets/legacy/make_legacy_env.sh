#!/usr/bin/env bash
# Build the legacy environment: Python 3.11 + TensorFlow 2.15.1 +
# tensorflow-addons 0.23.0, and register it as the Jupyter kernel
# `dlkit-legacy-tfa` in the main virtual environment, so that
# `pytest --nbval notebooks` can run notebooks/legacy/tfa_classic.ipynb.
#
# Usage (from anywhere; `make legacy-env` runs it):
#     bash assets/legacy/make_legacy_env.sh [--require | --check]
#
# Without Python 3.11 it says so, creates nothing and exits 0, so `make test`
# goes on and the legacy notebook is skipped with its reason shown. With
# `--require` (for CI) that case exits 1 instead. A failed install (e.g.
# offline) removes the half-built environment and exits 1.
# Re-running is quick: a stamp keyed on the requirements file skips the build.
# `--check` builds nothing: exits 0 if the environment is up to date, else 1.
#
# Environment variables (all optional):
#     LEGACY_PYTHON  the Python 3.11 interpreter to use (default: python3.11 on
#                    PATH, then pyenv's 3.11 versions)
#     LEGACY_VENV    where to build (default: <repo>/.venv-legacy)
#     KERNEL_PREFIX  where to register the kernel (default: <repo>/.venv)
# pip's own variables apply as usual, e.g. PIP_NO_INDEX=1 and
# PIP_FIND_LINKS=/path/to/wheels to build offline from a wheelhouse.
set -euo pipefail

KERNEL_NAME="dlkit-legacy-tfa"
KERNEL_DISPLAY_NAME="Python 3.11 (TF 2.15 + TFA, legacy)"

script_path="${BASH_SOURCE[0]}"
[[ "$script_path" == */* ]] || script_path="./$script_path"
script_dir="$(cd "${script_path%/*}" && pwd)"
repo_root="$(cd "$script_dir/../.." && pwd)"
requirements="$script_dir/requirements-legacy.txt"
venv="${LEGACY_VENV:-$repo_root/.venv-legacy}"
kernel_prefix="${KERNEL_PREFIX:-$repo_root/.venv}"
stamp="$venv/.dlkit-legacy-stamp"
kernel_json="$kernel_prefix/share/jupyter/kernels/$KERNEL_NAME/kernel.json"

require=0
check_only=0
for arg in "$@"; do
    case "$arg" in
        --require) require=1 ;;
        --check) check_only=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "make_legacy_env.sh: unknown argument '$arg'." \
                "Expected nothing, --require or --check." >&2
            exit 2
            ;;
    esac
done

say() { echo "legacy-env: $*"; }

# Succeeds if "$1" runs and is a CPython 3.11 that can create virtual envs.
is_python311() {
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != (3, 11))' \
        >/dev/null 2>&1
}

find_python311() {
    if [[ -n "${LEGACY_PYTHON:-}" ]]; then
        is_python311 "$LEGACY_PYTHON" && echo "$LEGACY_PYTHON"
        return
    fi
    local candidate
    for candidate in python3.11 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11*/bin/python3.11; do
        if is_python311 "$candidate"; then
            echo "$candidate"
            return
        fi
    done
}

no_python311() {
    local tried="python3.11 on PATH and pyenv's 3.11 versions"
    [[ -n "${LEGACY_PYTHON:-}" ]] && tried="LEGACY_PYTHON=$LEGACY_PYTHON"
    say "no Python 3.11 found (tried $tried)."
    say "the legacy environment (TensorFlow 2.15.1 + tensorflow-addons 0.23.0)" \
        "needs Python 3.11 with its venv module: not building it; the test suite" \
        "skips notebooks/legacy/ and says why."
    say "to build it, install Python 3.11 (e.g. \`pyenv install 3.11\` or" \
        "\`apt-get install python3.11-venv\`) or point LEGACY_PYTHON at one, then" \
        "run \`make legacy-env\` again."
    if ((require)); then
        say "--require was given: failing."
        exit 1
    fi
    exit 0
}

# The stamp: the requirements file plus the environment's exact Python version.
requirements_hash() {
    local python_version
    python_version="$("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])')"
    { cat "$requirements"; echo "$python_version"; } | sha256sum | cut -d' ' -f1
}

is_up_to_date() {
    [[ -f "$stamp" && -f "$kernel_json" && -x "$venv/bin/python" ]] || return 1
    [[ "$(cat "$stamp")" == "$(requirements_hash)" ]] || return 1
    grep -qF "\"$venv/bin/python\"" "$kernel_json"
}

fail() {
    remove_venv
    say "$@"
    exit 1
}

remove_venv() {
    # Only ever delete something that is a virtual environment.
    if [[ -f "$venv/pyvenv.cfg" ]]; then
        rm -rf -- "$venv"
    fi
}

build() {
    if [[ -e "$venv" && ! -f "$venv/pyvenv.cfg" ]]; then
        say "$venv exists and is not a virtual environment; refusing to touch it."
        exit 1
    fi
    remove_venv
    say "creating $venv with $python ($("$python" --version 2>&1))"
    "$python" -m venv "$venv" || fail "could not create a virtual environment."
    say "installing $requirements (about a minute)"
    "$venv/bin/python" -m pip install --quiet --no-input \
        --disable-pip-version-check --only-binary=:all: -r "$requirements" ||
        fail "pip could not install the pinned requirements (offline? see above);" \
            "the legacy notebook is skipped until \`make legacy-env\` succeeds."
    "$venv/bin/python" -m pip check --disable-pip-version-check ||
        fail "the installed legacy packages conflict (pip check, above)."
    # ipykernel warns that the prefix is not on the legacy env's own Jupyter
    # path; that is intended (the main env's Jupyter finds it), so show its
    # output only if it fails.
    local out
    if ! out="$("$venv/bin/python" -m ipykernel install --prefix "$kernel_prefix" \
        --name "$KERNEL_NAME" --display-name "$KERNEL_DISPLAY_NAME" 2>&1)"; then
        echo "$out" >&2
        fail "could not register the Jupyter kernel '$KERNEL_NAME'."
    fi
    requirements_hash >"$stamp"
}

if ((check_only)); then
    if is_up_to_date; then
        say "up to date ($venv, kernel '$KERNEL_NAME')."
        exit 0
    fi
    say "not built or out of date: run \`make legacy-env\`."
    exit 1
fi
if is_up_to_date; then
    say "up to date ($venv, kernel '$KERNEL_NAME')."
    exit 0
fi
python="$(find_python311)" || true
[[ -n "$python" ]] || no_python311
build
say "built $venv and registered kernel '$KERNEL_NAME' in $kernel_prefix."
"$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
    | grep -iE '^(tensorflow|tensorflow-addons|keras|numpy) ' || true
