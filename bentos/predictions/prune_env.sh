#!/usr/bin/env bash
# The prediction Bento's setup_script (bentofile.yaml `docker.setup_script`): BentoML runs it in the image
# right after `uv pip install -r requirements.txt`, as root. It removes from the environment what the
# service never loads, then proves that what it does load still imports. Measured and explained in
# benchmarks/serving_env.py and BENCHMARKS.md ("The prediction service's environment").
#
# Usage: prune_env.sh [SITE_PACKAGES]   (default: the site-packages of $VIRTUAL_ENV's python, or of python3)
set -euo pipefail

PYTHON="${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/}python3"
SITE="${1:-$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')}"
[ -d "$SITE/pyarrow" ] || { echo "prune_env.sh: $SITE has no pyarrow: not the serving environment" >&2; exit 1; }
before=$(du -sk "$SITE" | cut -f1)

# 1. The test suites shipped inside wheels (pandas/tests, numpy/*/tests, scipy/**/tests, sklearn/**/tests,
#    numba/tests, pyarrow/tests, tornado/test, joblib/test, ...), with their bytecode. Only folders named
#    exactly `tests` or `test`: the `testing` packages stay (numpy.testing is imported by scipy and sklearn).
find "$SITE" -mindepth 2 -type d \( -name tests -o -name test \) -not -path "*.dist-info/*" -prune -exec rm -rf {} +

# 2. pyarrow's Arrow Flight (RPC), which only `import pyarrow.flight` loads: no other pyarrow library links
#    libarrow_flight (readelf -d). Substrait, Acero and Dataset stay: pyarrow's core module links them.
rm -f "$SITE"/pyarrow/libarrow_flight.so* "$SITE"/pyarrow/libarrow_python_flight.so* \
      "$SITE"/pyarrow/_flight.cpython-*.so "$SITE"/pyarrow/_flight.p* "$SITE"/pyarrow/flight.py \
      "$SITE"/pyarrow/__pycache__/flight.*.pyc
#    The two link-time copies of libarrow_python (a wheel cannot hold symlinks, so it ships three identical
#    files); the loader asks only for its SONAME, libarrow_python.so.<major>00.
for lib in "$SITE"/pyarrow/libarrow_python.so "$SITE"/pyarrow/libarrow_python.so.*.*.*; do
  [ -e "$lib" ] && rm -f "$lib"
done

# 3. C/C++ headers and Cython sources for building extensions against these packages (pyarrow/include,
#    numpy/_core/include, *.pxd, *.pyx): nothing is compiled in the image after this point.
rm -rf "$SITE"/pyarrow/include "$SITE"/pyarrow/src "$SITE"/numpy/_core/include
find "$SITE" \( -name "*.pyx" -o -name "*.pxd" -o -name "*.pxi" \) -not -path "*.dist-info/*" -type f -delete

# 4. Build and test tools shipped inside runtime wheels, which no serving code path imports: numpy.distutils
#    (the old extension builder; numpy.f2py stays: `from numpy import *`, which scipy runs, loads it), xgboost.testing and sqlalchemy.testing (their own test helpers),
#    numba.cuda (the CUDA target: loaded only for target="cuda"; the image has no GPU), casbin's stray
#    node_modules/ (the npm release tooling of its repository, packed into the wheel; not Python), and the
#    type stubs (*.pyi, read by type checkers only).
rm -rf "$SITE"/numpy/distutils "$SITE"/xgboost/testing "$SITE"/sqlalchemy/testing \
       "$SITE"/numba/cuda "$SITE"/node_modules
find "$SITE" -name "*.pyi" -not -path "*.dist-info/*" -type f -delete
#    scikit-learn's toy datasets (load_iris() and the like; sklearn/datasets/{data,descr,images}).
rm -rf "$SITE"/sklearn/datasets/data "$SITE"/sklearn/datasets/descr "$SITE"/sklearn/datasets/images

# The service's imports still work (a broken prune fails the image build here, not at the first request).
"$PYTHON" - <<'PY'
import importlib
for name in ("numpy", "pandas", "pyarrow", "pyarrow.compute", "pyarrow.dataset", "pyarrow.parquet", "pyarrow.ipc",
             "pyarrow.csv", "scipy.stats", "scipy.sparse", "sklearn.linear_model", "sklearn.ensemble", "lightgbm",
             "xgboost", "numba", "llvmlite.binding", "bentoml", "redis", "psycopg2", "casbin", "sqlalchemy"):
    importlib.import_module(name)
import numba, numpy as np
assert numba.njit(lambda a: a.sum())(np.arange(4.0)) == 6.0  # the tree kernels' JIT still compiles and runs
PY
after=$(du -sk "$SITE" | cut -f1)
echo "prune_env.sh: $SITE $((before / 1024)) MB -> $((after / 1024)) MB"
