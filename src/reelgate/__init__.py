"""reelgate: a self-hosted gateway for asynchronous video generation."""

__version__ = "0.1.0"
