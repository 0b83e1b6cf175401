"""Names that moved or were renamed stay importable from their old place, with a warning saying where they went."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def moved(module: str, names: Mapping[str, tuple[str, str]]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for names that left ``module``.

    Args:
        module: the old module's name (``__name__``).
        names: ``{old name: (new module, new name)}``.

    Returns:
        The ``__getattr__`` to assign in the old module: each access to an old name warns
        (``DeprecationWarning``, naming the new place) and returns the new object; any other name is an
        ``AttributeError`` as usual.
    """

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new_module, new = names[name]
        warnings.warn(
            f"{module}.{name} is deprecated: use {new_module}.{new}", DeprecationWarning, stacklevel=2
        )
        return getattr(importlib.import_module(new_module), new)

    return __getattr__
