"""Names of a package that load on first use (PEP 562), so importing the package stays cheap.

    __getattr__, __dir__ = lazy_attributes(__name__, {"create_model": "factory", ...})

``import ophclip`` then costs nothing until ``ophclip.create_model`` is touched, which
imports ``ophclip.factory``. A name is looked up once; later accesses find it on the module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, where: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's ``__getattr__`` and ``__dir__``; ``where`` maps each name to its submodule."""

    def __getattr__(name: str) -> Any:
        submodule = where.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{submodule}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(getattr(sys.modules[package], "__all__", ())) | set(where))

    return __getattr__, __dir__
