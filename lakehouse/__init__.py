"""Lakehouse: a production-safe Dagster + Delta Lake engine. The feed-specific parts live in `assets/` and `checks/`."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lakehouse")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
