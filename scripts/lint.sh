#!/usr/bin/env bash
# The toolbelt, as `make test` runs it before the tests: ruff (lint, then format), mypy (strict on the
# domain modules, see [tool.mypy] in pyproject.toml) and import-linter (the architecture contracts,
# [tool.importlinter]). Every tool runs even when an earlier one failed, each is named with its
# verdict and time, and the script exits non-zero when any failed.
#
# Usage: scripts/lint.sh            (from anywhere; uses .venv/bin unless BIN says otherwise)
# mypy keeps its incremental cache in .mypy_cache: the first run on a clean clone takes minutes on
# a busy machine, later ones seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"

failed=()
run() {
    local name="$1"
    shift
    echo "── ${name}: $*"
    local start=$SECONDS
    if "$@"; then
        echo "── ${name}: passed ($((SECONDS - start)) s)"
    else
        echo "── ${name}: FAILED ($((SECONDS - start)) s)"
        failed+=("$name")
    fi
}

run "ruff check" "$BIN/ruff" check .
run "ruff format" "$BIN/ruff" format --check .
run "mypy" "$BIN/mypy"
run "import-linter" "$BIN/lint-imports" --no-cache --no-logo

if ((${#failed[@]})); then
    echo "lint: failed: ${failed[*]}"
    exit 1
fi
echo "lint: ruff check, ruff format, mypy, import-linter passed"
