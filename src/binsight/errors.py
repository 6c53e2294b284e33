"""The root of every error binsight reports to a user.

Every error that means "the input, a file or a setting cannot be used as given" derives from
:class:`BinsightError`, and its message names the problem and what to do. The command line catches this
root alone and prints its message on one line; any other exception is a bug and keeps its traceback.
``BinsightError`` derives from ``ValueError`` so that callers who caught ``ValueError`` still do.
"""

from __future__ import annotations


class BinsightError(ValueError):
    """A user-facing error: bad input, a file that cannot be read, a setting that cannot work."""
