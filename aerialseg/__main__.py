"""``python -m aerialseg`` runs the command line."""

from aerialseg.cli.main import main

main()
