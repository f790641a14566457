"""The ``clawfed`` command line (Typer); each command group lives in its own module."""
