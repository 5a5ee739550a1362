"""digestd: research-paper dumps in, personalized email digests and topic Atom feeds out."""

__version__ = "0.1.0"
