"""Exceptions for the caller's mistakes and for infrastructure faults.

Bad model output is never an exception: it becomes a rejected row with a reason.
"""

from __future__ import annotations


class FactoryError(Exception):
    """Base class for every error the factory raises on purpose."""


class RecipeError(FactoryError):
    """A recipe file is malformed; the message names the file, the field and what was expected."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid recipe {path}:\n{lines}")


class GenerationError(FactoryError):
    """A generator could not be set up or reached at all (not one bad reply: that is a rejected row)."""


class DataError(FactoryError):
    """The user's real data cannot be read or does not fit the recipe."""


class ModelSourceError(FactoryError):
    """A model file could not be found, assembled or verified."""


class RunLockedError(FactoryError):
    """Another `factory build` holds the run directory."""


class CacheDamagedError(FactoryError):
    """A SQLite cache in the run directory cannot be read (a full disk, a copy cut short, ...)."""


class PublishError(FactoryError):
    """A run cannot be published: unfinished, failing its gate, no token, a bad repo id, or the Hub refused."""


class MissingExtraError(FactoryError):
    """An optional dependency is missing; the message names the pip extra that provides it."""

    def __init__(self, module: str, extra: str) -> None:
        super().__init__(
            f"this feature needs the Python package '{module}'; "
            f"install it with: pip install 'dataset-factory[{extra}]'"
        )


def require(module: str, extra: str):  # noqa: ANN201 - returns the imported module
    """Import an optional heavy dependency, or fail with the pip extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(module, extra) from exc
