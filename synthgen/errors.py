"""Errors a user can act on: each names the file and the problem in one line."""

from __future__ import annotations

import errno
import os


class InputError(Exception):
    """Bad user input (a file, a CSV row, a config value).

    The message is always ``"<path>: <problem>"`` so the one line printed by a stage tells the user
    which file to look at and what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class ConfigError(InputError):
    """A configuration value that cannot work (unknown class name, missing path, ...)."""

    def __init__(self, key: str, problem: str):
        super().__init__(None, f"config {key}: {problem}")
        self.key = key


class StageFailed(Exception):
    """A stage ran on good input but its result fails a gate (e.g. a cohort-level privacy gate): exit status 1,
    one line, no traceback (:func:`synthgen.runner.run_stage`)."""


#: errno values that mean "the file system refused the write", not a bug: disk full, quota, read-only.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def is_disk_error(e: BaseException) -> bool:
    """Whether ``e`` is an :class:`OSError` of :data:`DISK_ERRNOS` (disk full, quota exceeded, read-only)."""
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


class WriteError(InputError):
    """A write the file system refused (disk full, quota exceeded, read-only): names the output and why.

    Raised by :func:`synthgen.io.atomic_path` after it removed its temporary, so nothing partial is left.
    """

    def __init__(self, path: str | os.PathLike | None, err: OSError, cleaned: bool = True):
        self.errno = err.errno
        name = errno.errorcode.get(err.errno, str(err.errno))
        reason = os.strerror(err.errno).lower() if err.errno else str(err)
        left = "nothing partial left; " if cleaned else ""
        super().__init__(path if path is not None else "(unknown file)",
                         f"cannot write: {reason} [{name}]; {left}free space or write the output elsewhere")
        self.err = err


def wrapped_input_error(e: BaseException) -> InputError | None:
    """The first :class:`InputError` (a :class:`ConfigError` too) in the ``__cause__`` chain of ``e``, or None.

    ``hydra.utils.instantiate`` wraps every constructor error in its own exception; a stage that instantiates a
    reader or a model re-raises ours unwrapped, so the user still gets one line naming the key or file."""
    cause: BaseException | None = e
    while cause is not None and not isinstance(cause, InputError):
        cause = cause.__cause__
    return cause
