"""Errors a user can act on: each names the file and the problem in one line."""

from __future__ import annotations

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
