"""The package version (one place; refcodec.__version__)."""

__version__ = "0.1.0"
