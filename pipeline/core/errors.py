"""The errors a user can fix, told apart from bugs.

A :class:`UserError` is a problem with the user's params, input files or machine: a stage shows
its message alone, on one line, without a traceback (``stages/`` run through
:func:`pipeline.core.stage.cli`). Every other exception is a bug and keeps its traceback. The message
of a user error names what is wrong (file, array, instance, params key) and says what to do.

The errors below subclass the built-in exception a caller would catch (``ValueError``,
``RuntimeError``, ``ImportError``) as well, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = ["UserError", "InputError", "describe_os_error"]


class UserError(Exception):
    """A problem the user fixes (params, inputs, disk): shown as one message, no traceback."""


class InputError(UserError, ValueError):
    """An input file, array or instance is missing, unreadable or outside its documented range."""


def describe_os_error(e: OSError) -> str:
    """One line for an operating-system error: the path, what happened and what to do.

    A stage's error without a path (e.g. a full disk inside a Zarr write) has been given the stage's
    outputs as its ``filename`` by :func:`pipeline.core.io.stage_outputs`.
    """
    import errno

    where = e.filename or "?"
    what = e.strerror or str(e)
    fix = {
        errno.ENOSPC: "free disk space (or move the DVC cache and outputs to a larger disk) and rerun",
        errno.EDQUOT: "free disk space under your quota and rerun",
        errno.EACCES: "make it (and its folder) readable/writable for this user",
        errno.EPERM: "make it (and its folder) readable/writable for this user",
        errno.ENOENT: "check the path in params.yaml or run the stage that makes it (dvc repro)",
        errno.EROFS: "write the outputs to a writable file system",
    }.get(e.errno, "check the path and rerun")
    return f"{where}: {what}; {fix}"
