"""The run folder's errors: one it cannot use as asked, and a stored file that fails to read or verify."""

from __future__ import annotations

from pathlib import Path

from binsight.errors import BinsightError

__all__ = ["RunFolderError", "CorruptUnit", "CorruptUnitWarning"]


class RunFolderError(BinsightError):
    """A run folder that cannot be used as asked (another configuration, another run holding it, ...)."""


class CorruptUnit(RunFolderError):
    """A stored unit or record that cannot be read, does not match its checksum or is not of the shape
    binsight writes; ``path`` names the file."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"stored file {path} is corrupt ({reason}); run `binsight study` on this folder again to "
                         "recompute it")


class CorruptUnitWarning(UserWarning):
    """A corrupt stored unit was found (and set aside, or skipped when only reading)."""
