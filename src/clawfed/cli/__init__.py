"""The ``clawfed`` command line (Typer); each command group lives in its own module."""

import os

# numpy's OpenBLAS starts a thread per core and lets it spin after each call; the coordinator
# and the nodes share their cores with each other, so the CLI keeps BLAS to one thread unless
# the user says otherwise. Set before anything imports numpy.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
