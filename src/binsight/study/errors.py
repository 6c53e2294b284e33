"""The run folder's errors: one it cannot use as asked, and a stored unit that fails to read or verify."""

from __future__ import annotations

from pathlib import Path

from binsight.errors import BinsightError

__all__ = ["RunFolderError", "CorruptUnit", "CorruptUnitWarning"]


class RunFolderError(BinsightError):
    """A run folder that cannot be used as asked (another configuration, another run holding it, ...)."""


class CorruptUnit(RunFolderError):
    """A stored unit that cannot be read or does not match its checksum; ``path`` names the file."""

    def __init__(self, path: Path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"stored unit {path} is corrupt ({reason}); run `binsight study` on this folder again to "
                         "recompute it")


class CorruptUnitWarning(UserWarning):
    """A corrupt stored unit was found (and set aside, or skipped when only reading)."""
