"""``python -m imagerec`` runs the command-line tool."""

from .cli import main

main()
