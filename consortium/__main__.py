"""``python -m consortium``: the coordinator's command line."""

from consortium.cli import main

main()
