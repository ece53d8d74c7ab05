"""``python -m consortium`` runs the coordinator's CLI."""

from consortium.cli import main

main()
