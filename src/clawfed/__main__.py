"""``python -m clawfed`` runs the CLI."""

from clawfed.cli.main import main

main()
