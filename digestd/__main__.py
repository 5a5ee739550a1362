"""Entry point for ``python -m digestd``."""

from digestd.cli import main

main()
