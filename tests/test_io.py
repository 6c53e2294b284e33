"""binsight._io: atomic writes leave a whole file or none, with the usual permissions."""

import os
import stat

import pytest

from binsight._io import atomic_path, atomic_write_text, cache_dir
from binsight.errors import BinsightError


def test_atomic_files_get_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("stopped")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


@pytest.mark.parametrize("sub", ["", "models"])
def test_a_cache_that_is_a_file_is_a_one_line_error(tmp_path, monkeypatch, sub):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("BINSIGHT_CACHE", str(tmp_path / "file"))
    with pytest.raises(BinsightError, match=r"cannot use .*file as binsight's cache folder \(it is a file\); set "
                                            r"BINSIGHT_CACHE to a folder") as info:
        cache_dir(sub)
    assert "\n" not in str(info.value)


def test_the_cache_folder_is_made(tmp_path, monkeypatch):
    monkeypatch.setenv("BINSIGHT_CACHE", str(tmp_path / "c"))
    assert cache_dir("models") == tmp_path / "c" / "models" and (tmp_path / "c" / "models").is_dir()
