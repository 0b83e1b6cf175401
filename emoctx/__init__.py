"""emoctx: context-aware emotion recognition from the person and the scene around them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emoctx")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
