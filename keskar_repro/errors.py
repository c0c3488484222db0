"""The package's error for bad input: a problem the user can fix, told in one line.

`UserError` is raised for impossible settings, missing or corrupt files and diverged training;
its message names the problem and the fix. The scripts' command line (experiment.cli) prints it
as one line on stderr and exits with status 2; every other exception is a bug or an internal
error and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message names the problem and how to fix it."""


class CorruptFileError(UserError, ValueError):
    """A file of the package's own (run, checkpoint, measurement) cannot be read; names it."""


class DivergenceError(UserError, FloatingPointError):
    """Training produced a NaN or infinite loss; names the run and suggests a lower rate."""
