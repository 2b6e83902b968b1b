#!/usr/bin/env bash
# One environment set-up shared by every script and by the test command.
#
#   source tools/bootstrap.sh     # then use "$AHS_PYTHON"
#
# 1. If the current interpreter ($PYTHON or python3) already satisfies requirements.txt and has
#    detectron2, it is used as is (a GPU user's own CUDA environment, for instance). The package
#    `cat_seg` must then resolve to this checkout: if it is not installed there, this repository
#    is put on PYTHONPATH for the scripts that source this file (nothing is installed into an
#    environment the user owns), unless AHS_EDITABLE_INSTALL=1, which runs
#    `pip install --no-deps -e .` into that interpreter once. Without the test requirements
#    (requirements-test.txt) a note says how to add them for tools/run_tests.sh.
# 2. Otherwise ./.venv is created (once) and filled from the package index: requirements-test.txt
#    (the runtime requirements.txt plus the [test] extra: pytest, playwright), then detectron2's
#    pure-Python sources from PyPI's `sal-detectron2==0.7.2` wheel (its compiled `_C` extension is
#    not needed by this project and is never loaded), then this project itself, editable
#    (`pip install --no-deps -e .`, pyproject.toml), so `import cat_seg` works from any folder and
#    the `ahs-seg` command exists.
# Idempotent: a stamp of the requirement files + pyproject.toml + this file makes a second call
# take about a second. Set AHS_FORCE_VENV=1 to ignore the current interpreter.

# pip install into the venv; pip's notes about unreachable local mirrors are noise, errors stay.
_ahs_pip() {
    local venv="$1"
    shift
    "$venv/bin/python" -m pip install --quiet "$@" 2> >(grep -v "WARNING: Location" >&2)
}

# Path 1: make `import cat_seg` resolve to this checkout in the user's own interpreter.
_ahs_package_on_path() {
    local root="$1" py="$2"
    "$py" "$root/tools/check_env.py" --package >/dev/null 2>&1 && return 0
    if [ "${AHS_EDITABLE_INSTALL:-}" = "1" ]; then
        echo "[bootstrap] AHS_EDITABLE_INSTALL=1: pip install --no-deps -e $root into $py" >&2
        "$py" -m pip install --quiet --no-deps -e "$root" || return 1
        "$py" "$root/tools/check_env.py" --package >&2 && return 0
    fi
    PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
    export PYTHONPATH
}

_ahs_bootstrap() {
    local root py venv stamp want
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    py="${PYTHON:-python3}"
    venv="$root/.venv"
    stamp="$venv/.ahs-requirements.sha256"
    want="$(cat "$root/requirements.txt" "$root/requirements-test.txt" "$root/pyproject.toml" \
        "$root/tools/bootstrap.sh" | sha256sum | cut -d' ' -f1)"

    if [ -z "${AHS_FORCE_VENV:-}" ] && [ ! -x "$venv/bin/python" ] \
        && "$py" "$root/tools/check_env.py" >/dev/null 2>&1; then
        _ahs_package_on_path "$root" "$py" || return 1
        if ! "$py" "$root/tools/check_env.py" --tests >/dev/null 2>&1; then
            echo "[bootstrap] note: $py lacks the test requirements; for tools/run_tests.sh run" \
                 "$py -m pip install -r $root/requirements-test.txt (or AHS_FORCE_VENV=1)" >&2
        fi
        AHS_PYTHON="$(command -v "$py")"
        export AHS_PYTHON
        return 0
    fi
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        AHS_PYTHON="$venv/bin/python"
        export AHS_PYTHON
        return 0
    fi

    echo "[bootstrap] setting up $venv (first run takes a few minutes) ..." >&2
    local t0=$SECONDS
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv" || return 1
    _ahs_pip "$venv" --upgrade pip || return 1
    _ahs_pip "$venv" -r "$root/requirements-test.txt" || return 1
    local site
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    if ! "$venv/bin/python" -c "import detectron2" >/dev/null 2>&1; then
        # The wheel is tagged cp310 but is pure Python apart from `_C`; --target installs it into
        # any Python 3 site-packages without touching its (already satisfied) dependencies.
        _ahs_pip "$venv" --no-deps --only-binary=:all: \
            --python-version 3.10 --target "$site" "sal-detectron2==0.7.2" || return 1
    fi
    # The project itself (pyproject.toml), editable: its dependencies are the ones above.
    _ahs_pip "$venv" --no-deps -e "$root" || return 1
    "$venv/bin/python" "$root/tools/check_env.py" --tests >&2 || return 1
    "$venv/bin/python" "$root/tools/check_env.py" --package >&2 || return 1
    echo "$want" > "$stamp"
    echo "[bootstrap] environment ready in $((SECONDS - t0)) s" >&2
    AHS_PYTHON="$venv/bin/python"
    export AHS_PYTHON
}

if ! _ahs_bootstrap; then
    echo "[bootstrap] FAILED to set up the Python environment (see the pip output above)." >&2
    echo "[bootstrap] Fix: check network access to the package index, or create an environment" >&2
    echo "[bootstrap]      that satisfies requirements.txt and run with PYTHON=/path/to/python." >&2
    return 1 2>/dev/null || exit 1
fi
