"""Errors that reach the user as one line: what is wrong and where.

Every error a user can cause (a recipe, a data set, a plugin, a checkpoint) is a
`CmpError`. The CLI prints `cmp: error: <where>: <message>` and exits with the
error's code; nothing the user did wrong ends in a traceback.
"""

from __future__ import annotations


class CmpError(Exception):
    """A problem the user can fix; `where` names the file, key path or plugin."""

    exit_code = 2

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:
        """Pickled whole, `where` included (a cell's error crosses processes: pool, Ray)."""
        return (type(self), (self.message, self.where))


class RecipeError(CmpError):
    """A recipe (file, key path) that cannot be run as written."""


class PluginError(CmpError):
    """A plugin that cannot be loaded, or registers something invalid."""


class DataError(CmpError):
    """A data set that cannot be found, read or used."""


class CheckpointError(CmpError):
    """A checkpoint that cannot be read or does not fit the run."""


class RunFailed(CmpError):
    """A run that started and then failed (NaN loss, collapse, an exception)."""

    exit_code = 1


class CmpWarning(UserWarning):
    """Something the user should know that does not stop the run (a corrupt image replaced).

    The CLI shows it as one line, `cmp: warning: <message>`, without Python's source line.
    """
