"""digestd's benchmark suite: ``python -m bench`` runs every benchmark; see bench/__main__.py."""
