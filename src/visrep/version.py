"""The installed package's version (no visrep imports)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("visrep")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
