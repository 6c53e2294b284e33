"""The run folder cannot be corrupted: safe names, keys that never collide, a folder claimed only when it
is a run of the same configuration (anything else left exactly as it was), a lock that a killed job never
leaves held, checksummed units whose damage is reported by path and recomputed, finite tables."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from binsight.errors import BinsightError
from binsight.study import store
from binsight.study.config import StudyConfig, to_toml
from binsight.study.names import check_unique_names, split_variant, validate_model_name, variant_name
from binsight.study.store import (CorruptUnit, CorruptUnitWarning, Row, RunFolder, RunFolderError, decode_part,
                                  encode_part, inside, provenance)

CONFIG = StudyConfig()
ROWS = [Row("spearman", "gradient", "fp-0", "bnn-0", 0, 3, 0.5), Row("spearman", "gradient", "fp-0", "bnn-0", 0, 4, -0.25)]


@pytest.fixture
def folder(tmp_path):
    run = RunFolder.create(tmp_path / "run", CONFIG)
    yield run
    run.close()


def snapshot(root: Path) -> dict[str, object]:
    """Every entry below ``root`` (and ``root`` itself): type, mode, mtime in ns and content."""
    out: dict[str, object] = {".": root.lstat().st_mtime_ns}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None
        out[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, content)
    return out


def save_some_maps(folder: RunFolder, chunk: int = 0) -> np.ndarray:
    maps = np.random.default_rng(chunk).random((2, 1, 4, 4)).astype(np.float32)
    folder.maps.save("fp-0", "gradient", chunk, maps=maps, targets=np.array([1, 2]), images=np.array([10 + chunk, 20 + chunk]))
    return maps


# ------------------------------------------------------------------------------------------------------
# errors


def test_errors_are_binsight_errors():
    assert issubclass(RunFolderError, BinsightError) and issubclass(CorruptUnit, RunFolderError)
    e = CorruptUnit(Path("/x/maps/a/0001.npz"), "truncated")
    assert e.path == Path("/x/maps/a/0001.npz") and "/x/maps/a/0001.npz" in str(e) and "truncated" in str(e)


# ------------------------------------------------------------------------------------------------------
# names


@pytest.mark.parametrize("name", ["fp-0", "bnn-12", "ResNet18_v1.2", "a", "x" * 64, "0"])
def test_safe_model_names_are_accepted(name):
    assert validate_model_name(name) == name


@pytest.mark.parametrize("name, problem", [
    ("", "non-empty"), (None, "non-empty"), (3, "non-empty"), ("x" * 65, "at most 64"),
    ("../../escaped", "never a path"), ("a/b", "never a path"), ("a\\b", "never a path"), (".hidden", "never a path"),
    ("a..b", "never a path"), ("..", "never a path"), ("-x", "starting with"), ("a b", "letters, digits"),
    ("modèle", "letters, digits"), ("/etc/passwd", "never a path"), ("a+b", "reserved for surrogate variants"),
])
def test_unsafe_model_names_are_refused(name, problem):
    with pytest.raises(RunFolderError, match=problem):
        validate_model_name(name)


def test_variant_names_join_a_base_and_a_surrogate():
    assert variant_name("bnn-0", "ste") == "bnn-0+ste"
    assert split_variant("bnn-0+ste") == ("bnn-0", "ste") and split_variant("fp-1") == ("fp-1", "")
    for base, surrogate in [("a+b", "ste"), ("../x", "ste"), ("bnn-0", "../x"), ("bnn-0", ""), ("bnn-0", "s+t")]:
        with pytest.raises(RunFolderError):
            variant_name(base, surrogate)
    for name in ("+ste", "bnn-0+", "a+b+c", "bnn-0+STE/../x"):
        with pytest.raises(RunFolderError):
            split_variant(name)


def test_duplicate_names_are_refused_naming_the_clash():
    assert check_unique_names(["fp-0", "fp-1", "bnn-0", "bnn-0+ste"]) == ["fp-0", "fp-1", "bnn-0", "bnn-0+ste"]
    with pytest.raises(RunFolderError, match=r"models 2 and 3 have the same name 'fp-1'"):
        check_unique_names(["mine", "fp-1", "fp-1"])  # e.g. a user's name equal to an automatic one
    with pytest.raises(RunFolderError, match=r"equal but for case \('Fp-1'\)"):
        check_unique_names(["Fp-1", "fp-1"])
    with pytest.raises(RunFolderError, match="never a path"):
        check_unique_names(["fp-0", "../x"])


# ------------------------------------------------------------------------------------------------------
# keys and paths


@pytest.mark.parametrize("part", ["gradient", "captum:IntegratedGradients", "smoothgrad-n200", "x__y", "..", ".",
                                  ".hidden", "a/b", "a\\b", "%2F", "100%", "bnn-0+ste", "é✓", "a b"])
def test_key_parts_are_escaped_reversibly_into_one_safe_component(part):
    name = encode_part(part)
    assert decode_part(name) == part
    assert "/" not in name and "\\" not in name and not name.startswith(".") and name not in ("", ".", "..")
    assert set(name) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-+%")


def test_encoding_is_injective_on_random_strings():
    rng = np.random.default_rng(0)
    alphabet = list("ab_.-+%:/\\ é")
    parts = {"".join(rng.choice(alphabet, size=rng.integers(1, 6))) for _ in range(3000)}
    encoded = {encode_part(p) for p in parts}
    assert len(encoded) == len(parts) and {decode_part(e) for e in encoded} == parts
    assert encode_part(7) == "0007"


def test_unit_keys_of_names_with_double_underscores_do_not_collide(folder):
    a, b = ("x", "y__z", "gradient", 0), ("x__y", "z", "gradient", 0)
    assert folder.units.path("pairs", a) != folder.units.path("pairs", b)
    folder.units.save("pairs", a, [Row("spearman", "gradient", "x", "y__z", 0, 1, 0.5)])
    folder.units.save("pairs", b, [Row("spearman", "gradient", "x__y", "z", 0, 1, 0.25)])
    assert folder.units.done("pairs", a) and folder.units.done("pairs", b)
    assert {(r.model, r.model_b) for r in folder.units.read_rows()} == {("x", "y__z"), ("x__y", "z")}
    assert folder.units.path("measures", ("fp-0", "captum:IntegratedGradients", 3)) == \
        folder.root / "units" / "measures" / "fp-0" / "captum%3AIntegratedGradients" / "0003.csv"
    assert folder.maps.path("bnn-0+ste", "smoothgrad-n200", 12) == folder.root / "maps" / "bnn-0+ste" / "smoothgrad-n200" / "0012.npz"


def test_inside_refuses_paths_that_leave_the_folder(tmp_path):
    root = tmp_path / "run"
    (root / "maps").mkdir(parents=True)
    assert inside(root, "maps", "a.npz") == root / "maps" / "a.npz"
    for parts in [("..", "x"), ("maps", "..", "..", "x"), ("/etc/passwd",), (str(tmp_path / "x"),), (".",), ("maps", "..")]:
        with pytest.raises(RunFolderError, match="outside the run folder"):
            inside(root, *parts)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(RunFolderError, match="outside the run folder"):
        inside(root, "link", "x")


def test_a_traversing_name_writes_nothing_outside_the_run_folder(tmp_path):
    folder = RunFolder.create(tmp_path / "a" / "run", CONFIG)
    before = snapshot(tmp_path)
    maps = np.zeros((1, 1, 2, 2), np.float32)
    with pytest.raises(RunFolderError):
        folder.maps.save("../../escaped", "gradient", 0, maps=maps, targets=np.array([0]), images=np.array([0]))
    with pytest.raises(RunFolderError):
        folder.curves.save("../other", "gradient", 0, deletion=np.zeros((1, 2)))
    with pytest.raises(RunFolderError):
        folder.records.model_path("../../escaped")
    with pytest.raises(RunFolderError):
        folder.files.write_json("../../models.json", [])
    folder.units.save("measures", ("../../..", "/etc/passwd", 0), ROWS)  # escaped into one folder each, inside
    folder.close()
    after = snapshot(tmp_path)
    added = set(after) - set(before)
    assert added and all(p.startswith(os.path.join("a", "run", "units")) for p in added), added
    assert {k: v for k, v in after.items() if k in before and not k.startswith(os.path.join("a", "run"))} == \
        {k: v for k, v in before.items() if not k.startswith(os.path.join("a", "run"))}


def test_a_linked_subfolder_pointing_outside_is_never_written_or_cleaned(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / ".0000.npz.abcd1234.part").write_bytes(b"not ours")
    folder = RunFolder.create(tmp_path / "run", CONFIG)
    (folder.root / "maps").symlink_to(outside)
    folder.close()
    folder = RunFolder.create(tmp_path / "run", CONFIG)
    with pytest.raises(RunFolderError, match="outside the run folder"):
        save_some_maps(folder)
    folder.close()
    assert [p.name for p in outside.iterdir()] == [".0000.npz.abcd1234.part"]


# ------------------------------------------------------------------------------------------------------
# claiming a folder


def test_a_new_folder_holds_the_manifest_the_configuration_and_the_lock(tmp_path):
    with RunFolder.create(tmp_path / "new" / "run", CONFIG) as folder:
        assert sorted(p.name for p in folder.root.iterdir()) == [".binsight.lock", "config.toml", "run.json"]
        info = folder.info()
        assert info["binsight"] == "study run" and info["format"] == store.FORMAT
        assert (folder.root / "config.toml").read_text() == to_toml(CONFIG)
    assert RunFolder.existing(tmp_path / "new" / "run").info()["config_hash"] == info["config_hash"]


def user_folder(tmp_path: Path, kind: str) -> Path:
    root = tmp_path / "user"
    root.mkdir()
    if kind == "files":
        (root / "deep" / "deeper").mkdir(parents=True)
        (root / "notes.txt").write_text("mine")
        (root / ".draft.abcd1234.part").write_text("a temporary-looking name at the top")
        (root / "deep" / "deeper" / ".data.csv.abcd1234.part").write_text("and deep down")
        (root / "deep" / ".lock").write_text("")
        (root / "maps").mkdir()
        (root / "maps" / ".x.abcd1234.part").write_text("in a folder named like the run's")
    elif kind == "config-only":  # a user keeping their study's configuration in the folder
        (root / "config.toml").write_text(to_toml(CONFIG))
    elif kind == "foreign-run-json":
        (root / "run.json").write_text('{"experiment": 1}')
        (root / ".binsight.lock").write_text("")
    elif kind == "temp-names-only":  # names like binsight's temporary files, but no binsight lock
        (root / ".a.abcd1234.part").write_text("x")
    return root


@pytest.mark.parametrize("kind", ["files", "config-only", "foreign-run-json", "temp-names-only"])
def test_a_folder_that_is_not_a_run_is_left_exactly_as_it_was(tmp_path, kind):
    root = user_folder(tmp_path, kind)
    before = snapshot(root)
    with pytest.raises(RunFolderError, match="not empty and holds no study run"):
        RunFolder.create(root, CONFIG)
    assert snapshot(root) == before


def test_a_run_of_another_configuration_or_version_is_refused_untouched(tmp_path):
    with RunFolder.create(tmp_path / "run", CONFIG):
        pass
    other = StudyConfig()
    other.data.n_images = CONFIG.data.n_images + 1
    (tmp_path / "run" / "maps").mkdir()
    (tmp_path / "run" / "maps" / ".a.abcd1234.part").write_text("x")
    before = snapshot(tmp_path / "run")
    with pytest.raises(RunFolderError, match="holds a run of another configuration"):
        RunFolder.create(tmp_path / "run", other)
    assert snapshot(tmp_path / "run") == before
    old = tmp_path / "old"
    old.mkdir()
    (old / "run.json").write_text('{"config_hash": "abc", "binsight_version": "0.1.0"}')
    with pytest.raises(RunFolderError, match="another binsight version"):
        RunFolder.create(old, CONFIG)
    with pytest.raises(RunFolderError, match="another binsight version"):
        RunFolder.existing(old)


def test_out_that_is_a_file_or_inside_a_file_is_refused(tmp_path):
    path = tmp_path / "results"
    path.write_text("data")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        RunFolder.create(path, CONFIG)
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        RunFolder.create(path / "run", CONFIG)
    assert path.read_text() == "data" and [p.name for p in tmp_path.iterdir()] == ["results"]


def test_an_unwritable_folder_is_refused(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    root.mkdir()
    monkeypatch.setattr(store.os, "access", lambda path, mode: False)  # as for a user without write permission
    with pytest.raises(RunFolderError, match="cannot write to .*permission denied"):
        RunFolder.create(root, CONFIG)
    with pytest.raises(RunFolderError, match="is not writable"):
        RunFolder.create(root / "sub", CONFIG)
    assert list(root.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_folder_is_refused_for_real(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        with pytest.raises(RunFolderError, match="cannot write to"):
            RunFolder.create(root, CONFIG)
    finally:
        root.chmod(0o755)


def test_temporary_files_are_cleaned_only_in_the_runs_own_folders(tmp_path):
    folder = RunFolder.create(tmp_path / "run", CONFIG)
    save_some_maps(folder)
    folder.close()
    root = folder.root
    ours = [root / ".measurements.csv.abcd1234.part", root / "maps" / "fp-0" / "gradient" / ".0001.npz.abcd1234.part",
            root / "units" / "measures" / ".x.csv.abcd1234.part"]
    theirs = [root / "notes" / ".draft.abcd1234.part", root / "maps" / "fp-0" / "gradient" / "keep.part",
              root / ".notes.part"]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    RunFolder.create(root, CONFIG).close()
    assert not any(p.exists() for p in ours) and all(p.exists() for p in theirs)


# ------------------------------------------------------------------------------------------------------
# runs killed while being claimed, and the lock

HOLD = textwrap.dedent("""
    import os, signal, sys, time
    from binsight.study import files, store
    from binsight.study.config import StudyConfig
    stop = sys.argv[2]
    if stop == "manifest":  # killed half-way through writing run.json
        def dying(self, where, data):
            with self.writing(where) as tmp:
                tmp.write_bytes(data[:10])
                os.kill(os.getpid(), signal.SIGKILL)
        files.RunFiles.write_bytes = dying
    elif stop == "config":  # killed after run.json, before config.toml
        store.to_toml = lambda config, folder=None: os.kill(os.getpid(), signal.SIGKILL)
    folder = store.RunFolder.create(sys.argv[1], StudyConfig())
    print("locked", flush=True)
    time.sleep(120)
""")


def hold(root: Path, stop: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLD, str(root), stop], stdout=subprocess.PIPE, text=True)


def test_a_second_job_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path):
    root = tmp_path / "run"
    proc = hold(root)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=rf"in use by another running study \(pid {proc.pid} on"):
            RunFolder.create(root, CONFIG)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with RunFolder.create(root, CONFIG) as folder:
        assert folder.locked
        with pytest.raises(RunFolderError, match="in use by another running study"):
            RunFolder.create(root, CONFIG)  # a second claim in the same process is refused too
    RunFolder.create(root, CONFIG).close()


@pytest.mark.parametrize("stop", ["manifest", "config"])
def test_a_run_killed_between_its_manifest_files_continues(tmp_path, stop):
    root = tmp_path / "run"
    proc = hold(root, stop)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in root.iterdir())
    assert ".binsight.lock" in left and "config.toml" not in left
    assert ("run.json" in left) == (stop == "config")
    with RunFolder.create(root, CONFIG) as folder:
        assert sorted(p.name for p in root.iterdir()) == [".binsight.lock", "config.toml", "run.json"]
        assert (root / "config.toml").read_text() == to_toml(CONFIG) and folder.info()["format"] == store.FORMAT


def test_other_ranks_join_a_claimed_folder_without_the_lock(tmp_path):
    with pytest.raises(RunFolderError, match="has not been claimed"):
        RunFolder.open_for_rank(tmp_path / "run", CONFIG)
    with RunFolder.create(tmp_path / "run", CONFIG) as rank0:
        rank1 = RunFolder.open_for_rank(tmp_path / "run", CONFIG)
        assert rank0.locked and not rank1.locked
        rank1.units.save("measures", ("fp-0", "gradient", 1), ROWS)
        assert rank0.units.done("measures", ("fp-0", "gradient", 1))
        other = StudyConfig()
        other.data.seed += 1
        with pytest.raises(RunFolderError, match="has not been claimed"):
            RunFolder.open_for_rank(tmp_path / "run", other)


# ------------------------------------------------------------------------------------------------------
# checksummed units


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage" * 20)


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


def other_content_same_checksum(path: Path) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["maps"] = arrays["maps"] + 1
    np.savez(path, **arrays)


def no_checksum(path: Path) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "_sha256"}
    np.savez(path, **arrays)


def pickled(path: Path) -> None:
    np.savez(path, maps=np.array([{"a": 1}], dtype=object))


@pytest.mark.parametrize("damage", [garbage, truncated, zero_bytes, other_content_same_checksum, no_checksum, pickled])
def test_a_corrupt_map_chunk_is_reported_by_path_and_counts_as_missing(folder, damage):
    maps = save_some_maps(folder, 1)
    save_some_maps(folder, 0)
    path = folder.maps.path("fp-0", "gradient", 1)
    assert folder.maps.done("fp-0", "gradient", 1)
    damage(path)
    with pytest.raises(CorruptUnit, match=str(path)) as error:
        folder.maps.load("fp-0", "gradient", 1)
    assert error.value.path == path
    with pytest.warns(CorruptUnitWarning, match=rf"{path}.*skipped"):
        assert folder.maps.read_all("fp-0", "gradient")["images"].tolist() == [10, 20]  # the good chunk alone
    with pytest.warns(CorruptUnitWarning, match=rf"{path} is corrupt .*will be recomputed"):
        assert not folder.maps.done("fp-0", "gradient", 1)
    assert not path.exists() and (folder.root / "corrupt" / path.relative_to(folder.root)).exists()
    assert save_some_maps(folder, 1) is not None and folder.maps.done("fp-0", "gradient", 1)
    assert np.array_equal(folder.maps.load("fp-0", "gradient", 1)["maps"], maps)


def test_curves_and_examples_carry_checksums_too(folder):
    folder.curves.save("fp-0", "gradient", 0, deletion=np.ones((2, 3)), insertion=np.zeros((2, 3)))
    assert folder.curves.done("fp-0", "gradient", 0)
    assert set(folder.curves.read_all("fp-0", "gradient")) == {"deletion", "insertion"}
    truncated(folder.curves.path("fp-0", "gradient", 0))
    with pytest.warns(CorruptUnitWarning):
        assert not folder.curves.done("fp-0", "gradient", 0)
    folder.records.save_examples(np.zeros((2, 1, 4, 4)), np.array([1, 2]))
    with np.load(folder.root / "examples.npz") as data:
        assert data["labels"].tolist() == [1, 2]


def edited_value(path: Path) -> None:
    path.write_text(path.read_text().replace("0.5", "0.75"))


def no_header(path: Path) -> None:
    path.write_text(path.read_text().partition("\n")[2])


@pytest.mark.parametrize("damage", [garbage, truncated, zero_bytes, edited_value, no_header])
def test_a_corrupt_unit_csv_is_reported_by_path_and_counts_as_not_done(folder, damage):
    key = ("fp-0", "bnn-0", "gradient", 0)
    folder.units.save("pairs", key, ROWS)
    folder.units.save("pairs", ("fp-0", "bnn-0", "gradient", 1), ROWS[:1])
    path = folder.units.path("pairs", key)
    damage(path)
    with pytest.warns(CorruptUnitWarning, match=rf"{path}.*skipped"):
        assert folder.units.read_rows() == ROWS[:1]
    with pytest.raises(CorruptUnit, match=str(path)):
        folder.units.merge()
    with pytest.warns(CorruptUnitWarning, match=str(path)):
        assert not folder.units.done("pairs", key)
    folder.units.save("pairs", key, ROWS)
    assert folder.units.done("pairs", key) and folder.units.merge() == sorted(ROWS + ROWS[:1])


def test_non_finite_values_are_refused_before_anything_is_written(folder):
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(RuntimeError, match="spearman:undefined"):
            folder.units.save("pairs", ("a", "b", "m", 0), [ROWS[0], Row("spearman", "m", "a", "b", 0, 1, value)])
        assert not folder.units.path("pairs", ("a", "b", "m", 0)).exists()
    folder.units.save("pairs", ("a", "b", "m", 0), [Row("spearman:undefined", "m", "a", "b", 0, 1, 1.0)])
    assert folder.units.done("pairs", ("a", "b", "m", 0))


def test_a_redone_unit_replaces_the_old_one_and_merging_sorts(folder):
    folder.units.save("measures", ("fp-0", "gradient", 1), [Row("tv", "gradient", "fp-0", "", 0, 2, 0.5)])
    folder.units.save("measures", ("fp-0", "gradient", 0), [Row("tv", "gradient", "fp-0", "", 0, 1, 0.1)])
    folder.units.save("measures", ("fp-0", "gradient", 0), [Row("tv", "gradient", "fp-0", "", 0, 1, 0.25)])
    rows = folder.units.merge()
    assert [(r.image, r.value) for r in rows] == [(1, 0.25), (2, 0.5)] and folder.units.read_table() == rows
    assert (folder.root / "measurements.csv").read_text().startswith("image,model,model_b,method,measure,step,value\n")


@pytest.mark.parametrize("damage", [truncated, zero_bytes, edited_value, "no-sidecar"])
def test_a_damaged_measurements_csv_is_rebuilt_from_the_units(folder, damage):
    folder.units.save("pairs", ("fp-0", "bnn-0", "gradient", 0), ROWS)
    rows = folder.units.merge()
    path = folder.root / "measurements.csv"
    if damage == "no-sidecar":  # killed between the table and its checksum
        (folder.root / "measurements.csv.sha256").unlink()
    else:
        damage(path)
    with pytest.warns(CorruptUnitWarning, match=rf"{path}.*using the rows of the run's units"):
        assert folder.units.read_table() == rows
    for unit in (folder.root / "units").rglob("*.csv"):
        unit.unlink()
    with pytest.raises(CorruptUnit, match=str(path)):
        folder.units.read_table()


def test_a_corrupt_json_file_names_its_path(folder):
    folder.files.write_json("images.json", {"n": 3})
    assert folder.files.read_json("images.json") == {"n": 3} and folder.files.read_json("missing.json") is None
    (folder.root / "images.json").write_text('{"n": ')
    with pytest.raises(CorruptUnit, match="images.json"):
        folder.files.read_json("images.json")


# ------------------------------------------------------------------------------------------------------
# run.json


def test_provenance_records_versions_device_and_threads(folder):
    info = provenance(torch.device("cpu"))
    assert info["python"] == platform.python_version() and info["torch"] == torch.__version__
    assert info["numpy"] == np.__version__ and info["device"] == "cpu" and info["threads"] == torch.get_num_threads()
    folder.record_provenance("cpu")
    folder.record_provenance("cpu")
    assert [e["device"] for e in folder.info()["invocations"]] == ["cpu", "cpu"]
    with pytest.raises(ValueError, match="config_hash"):
        folder.update_info(config_hash="x")
    assert folder.info()["config_hash"] == RunFolder.existing(folder.root).info()["config_hash"]


def test_model_copies_live_under_models(folder):
    assert folder.records.model_path("fp-0") == folder.root / "models" / "fp-0.safetensors"
    with pytest.raises(RunFolderError):
        folder.records.model_path("bnn-0+ste")  # a variant shares its base model's checkpoint



# ------------------------------------------------------------------------------------------------------
# a stored unit's checksum covers its key and its images (#25.11)


@pytest.mark.parametrize("other", [("fp-1", "gradient", 0), ("fp-0", "smoothgrad", 0), ("fp-0", "gradient", 1)])
def test_a_valid_chunk_copied_to_another_chunks_place_fails_to_verify(folder, other):
    save_some_maps(folder, 0)
    target = folder.maps.path(*other)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(folder.maps.path("fp-0", "gradient", 0).read_bytes())
    with pytest.raises(CorruptUnit, match="does not match its checksum"):
        folder.maps.load(*other)
    with pytest.warns(CorruptUnitWarning, match=rf"{target} is corrupt .*will be recomputed"):
        assert not folder.maps.done(*other)
    assert not target.exists() and (folder.root / "corrupt" / target.relative_to(folder.root)).is_file()
    assert folder.maps.done("fp-0", "gradient", 0)


def test_a_chunk_of_other_images_than_its_slots_is_not_done(folder):
    save_some_maps(folder, 0)  # images 10 and 20
    assert folder.maps.done("fp-0", "gradient", 0, images=np.array([10, 20]))
    with pytest.warns(CorruptUnitWarning, match="holds other images than this chunk's"):
        assert not folder.maps.done("fp-0", "gradient", 0, images=np.array([10, 21]))


def test_a_valid_unit_copied_to_another_units_place_fails_to_verify(folder):
    folder.units.save("pairs", ("fp-0", "bnn-0", "gradient", 0), ROWS)
    target = folder.units.path("pairs", ("fp-0", "bnn-1", "gradient", 0))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(folder.units.path("pairs", ("fp-0", "bnn-0", "gradient", 0)).read_bytes())
    with pytest.warns(CorruptUnitWarning, match=rf"{target} is corrupt \(content does not match its checksum"):
        assert not folder.units.done("pairs", ("fp-0", "bnn-1", "gradient", 0))
    assert folder.units.read_rows() == sorted(ROWS)


# ------------------------------------------------------------------------------------------------------
# only regular files are read; failed writes are one line (#25.12, #25.7)


@pytest.mark.parametrize("name", ["run.json", "models.json", "images.json", "timings.json", "examples.npz"])
def test_a_record_that_is_a_fifo_or_a_folder_is_refused_without_waiting(folder, name):
    (folder.root / name).unlink(missing_ok=True)
    os.mkfifo(folder.root / name)  # opened without waiting: a read would block forever
    reads = {"run.json": folder.info, "models.json": folder.records.read_models, "images.json": folder.records.read_images,
             "timings.json": folder.records.read_timings, "examples.npz": lambda: folder.records.read_examples(3)}
    with pytest.raises(RunFolderError, match=rf"{name} is not a regular file \(a FIFO\)"):
        reads[name]()
    (folder.root / name).unlink()
    (folder.root / name).mkdir()
    with pytest.raises(RunFolderError, match=rf"{name} is (not a regular file \(a folder\)|a folder, not a file)"):
        reads[name]()


@pytest.mark.parametrize("code", [28, 30])  # ENOSPC, EROFS
def test_a_refused_write_is_a_one_line_error_and_the_old_file_stays(folder, monkeypatch, code):
    from binsight._io import WriteError

    folder.files.write_json("models.json", [])
    monkeypatch.setattr("binsight._io.os.fsync", lambda fd: (_ for _ in ()).throw(OSError(code, os.strerror(code))))
    with pytest.raises(WriteError, match=rf"cannot write {folder.root / 'models.json'} \({os.strerror(code)}\)") as info:
        folder.files.write_json("models.json", [{"name": "x"}])
    assert "\n" not in str(info.value) and isinstance(info.value, BinsightError)
    assert folder.files.read_json("models.json") == [] and sorted(p.name for p in folder.root.iterdir()) == \
        [".binsight.lock", "config.toml", "models.json", "run.json"]


def test_a_damaged_record_is_set_aside_by_the_lock_holder_and_skipped_by_a_reader(folder):
    (folder.root / "images.json").write_text('{"indices": [1, "two"]}')
    with pytest.warns(CorruptUnitWarning, match=r"images.json is damaged \(not the shape binsight writes: .*indices"):
        assert RunFolder.existing(folder.root).records.read_images() is None
    assert (folder.root / "images.json").is_file()
    with pytest.warns(CorruptUnitWarning, match=r"images.json is corrupt .* moved to .*corrupt/images.json"):
        assert folder.records.read_images() is None
    assert not (folder.root / "images.json").exists() and (folder.root / "corrupt" / "images.json").is_file()


@pytest.mark.parametrize("damage", [truncated, zero_bytes, garbage])
def test_a_damaged_run_json_is_written_again_by_the_same_configuration_only(tmp_path, damage):
    with RunFolder.create(tmp_path / "run", CONFIG) as folder:
        folder.units.save("pairs", ("fp-0", "bnn-0", "gradient", 0), ROWS)
        hash_ = folder.info()["config_hash"]
    damage(tmp_path / "run" / "run.json")
    with pytest.raises(RunFolderError, match=r"run.json is damaged; run `binsight study` with the run's configuration"):
        RunFolder.existing(tmp_path / "run")
    other = StudyConfig()
    other.data.n_images = CONFIG.data.n_images + 1
    before = snapshot(tmp_path / "run")
    with pytest.raises(RunFolderError, match="not empty and holds no study run"):
        RunFolder.create(tmp_path / "run", other)
    assert snapshot(tmp_path / "run") == before
    with pytest.warns(CorruptUnitWarning, match=r"run.json is corrupt .*written again from config.toml"):
        folder = RunFolder.create(tmp_path / "run", CONFIG)
    with folder:
        assert folder.info()["config_hash"] == hash_ and folder.units.done("pairs", ("fp-0", "bnn-0", "gradient", 0))
    assert (tmp_path / "run" / "corrupt" / "run.json").is_file()
