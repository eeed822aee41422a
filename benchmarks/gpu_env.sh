# Sourced by the GPU benchmark scripts from the repository root, with PY set: makes the
# project importable on a machine that has jax but not ml_collections, and runs cold.
if ! "$PY" -c 'import ml_collections' 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  # A wheel is a zip of what site-packages would hold: unpacking needs no pip.
  "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in sys.argv[2:]]' \
    /tmp/simclr_deps .whl/*.whl
  export PYTHONPATH=/tmp/simclr_deps${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
# Cold compiles, as a user's first run sees them.
unset JAX_COMPILATION_CACHE_DIR
export TF_CPP_MIN_LOG_LEVEL=2
