"""Portway: a self-hosted engine, agent SDK and CLI that speak the rstream tunnel protocol."""

__version__ = "0.1.0"

__all__ = ["__version__"]
