"""Backends that make videos: local renderers and remote providers."""
