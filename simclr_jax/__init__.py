"""SimCLR self-supervised learning as a distributed large-batch training system in JAX."""

import os as _os
import sys as _sys

# TensorFlow's and XLA's C++ info and warning lines (oneDNN, CPU instructions, PjRt
# devices, grappler's cost-model notes) say nothing a user can act on; errors still show.
# They read this once, when imported, so it is set here, before any module of the package
# imports them; an entry point's --verbose (cli.py) keeps them.
if not any(a == '--verbose' or a.startswith('--verbose=') and a[10:].lower() in (
    'true', '1') for a in _sys.argv[1:]):
  _os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

__version__ = '0.5.0'
