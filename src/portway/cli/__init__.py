"""The `portway` command line. Only this package parses argv or prints for humans."""

from portway.cli.main import main

__all__ = ["main"]
