"""The one domain error tree. Packages raise these; the platform API maps them to HTTP in one place
(``NotFound``→404, ``Conflict``→409, ``PermissionDenied``→403, ``InvalidInput``→422, ``Unavailable``→503).
Messages are for the person who must act: say what is wrong and what to do."""

from __future__ import annotations


class LearnloopError(Exception):
    """Base of every error learnloop raises on purpose."""

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class NotFound(LearnloopError):
    """The thing asked for does not exist (or the caller may not know it exists)."""


class Conflict(LearnloopError):
    """The request clashes with the current state (duplicate, wrong state transition)."""


class PermissionDenied(LearnloopError):
    """The caller is known but may not do this."""


class InvalidInput(LearnloopError):
    """The input is malformed or out of range."""


class Unavailable(LearnloopError):
    """A dependency (model server, broker, data set) is down or absent; the answer is degraded or deferred."""


class DataValidationError(InvalidInput):
    """A data file does not have the shape its reader expects. The message names the file and the column."""

    def __init__(self, path: object, problem: str, *, column: str | None = None) -> None:
        where = f"{path}" + (f", column '{column}'" if column else "")
        super().__init__(f"{where}: {problem}", details={"path": str(path), "column": column})
        self.path = path
        self.column = column
