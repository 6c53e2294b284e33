"""Bounded, seeded fuzzing of binsight's readers: hostile bytes end in a BinsightError, never another exception.

Each reader gets a few hundred mutations of valid inputs (PNG files, safetensors weights, checkpoint side
files, study TOML files); the report a few dozen run folders with one record damaged (models.json,
images.json, timings.json, verdicts.json, examples.npz, config.toml: truncated, of the wrong type, deeply
nested, not UTF-8, a huge number, a key missing, random bytes). A case passes when the reader returns normally or raises a BinsightError; any
other exception fails the test and names the case, so that it can be replayed from its seed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import struct
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from PIL import Image

from binsight.data.idx import read_idx_bytes
from binsight.data.images import read_image
from binsight.errors import BinsightError
from binsight.models import build_model
from binsight.models.checkpoint import load_checkpoint, save_checkpoint
from binsight.study.config import StudyConfig, load_config, to_toml

CASES = int(os.environ.get("BINSIGHT_FUZZ_CASES", "150"))  # more for a longer local run


def run_cases(make: Callable[[random.Random], Any], read: Callable[[Any], Any], seed: int, cases: int = CASES) -> int:
    """Feed ``cases`` inputs from ``make`` to ``read``; return how many were refused with a BinsightError."""
    refused, escaped = 0, []
    for case in range(cases):
        rng = random.Random(seed * 100_003 + case)
        value = make(rng)
        try:
            read(value)
        except BinsightError:
            refused += 1
        except Exception as e:  # noqa: BLE001 - the point of the test
            escaped.append(f"case {case} (seed {seed}): {type(e).__name__}: {str(e)[:200]}")
    assert not escaped, "non-binsight exceptions:\n" + "\n".join(escaped[:10])
    return refused


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One of: truncate, flip bytes, insert or delete a run, overwrite a 4-byte field with an extreme value."""
    data = bytearray(data)
    kind = rng.randrange(5)
    at = rng.randrange(len(data))
    if kind == 0:
        return bytes(data[:at])
    if kind == 1:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 2:
        data[at:at] = rng.randbytes(rng.randint(1, 64))
    elif kind == 3:
        del data[at:at + rng.randint(1, 64)]
    else:
        data[at:at + 4] = struct.pack(">I", rng.choice([0, 1, 2**31 - 1, 2**32 - 1, rng.randrange(2**32)]))
    return bytes(data)


# -- PNG -------------------------------------------------------------------------------------------------

def png_seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (9, 7), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)),
        Image.fromarray(rng.integers(0, 256, (5, 6, 4), dtype=np.uint8), mode="RGBA"),
        Image.fromarray(rng.integers(0, 65536, (8, 8), dtype=np.uint16)),
        Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).quantize(colors=5),
    ]
    out = []
    for img in images:
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def bad_chunk(data: bytes, rng: random.Random) -> bytes:
    """A PNG with an extra chunk of random type, length field and content, with or without a valid CRC."""
    kind = bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
    kind = rng.choice([kind, b"IHDR", b"IDAT", b"PLTE", b"tRNS", b"iCCP", b"zTXt", b"IEND"])
    body = rng.randbytes(rng.randint(0, 40))
    length = rng.choice([len(body), len(body) + 1, 2**31 - 1, 0])
    crc = zlib.crc32(kind + body) if rng.random() < 0.7 else rng.randrange(2**32)
    chunk = struct.pack(">I", length) + kind + body + struct.pack(">I", crc)
    at = 33 if rng.random() < 0.7 else rng.randrange(8, len(data))
    return data[:at] + chunk + data[at:]


def test_fuzz_png(tmp_path):
    seeds = png_seeds()
    path = tmp_path / "fuzz.png"

    def make(rng: random.Random) -> bytes:
        choice = rng.random()
        if choice < 0.1:
            return rng.randbytes(rng.randint(0, 200))
        data = rng.choice(seeds)
        return bad_chunk(data, rng) if choice < 0.35 else mutate(data, rng)

    def read(data: bytes) -> None:
        path.write_bytes(data)
        pixels, _ = read_image(path)
        assert pixels.dtype == np.float32 and pixels.ndim == 3 and pixels.shape[2] in (1, 3)
        assert np.isfinite(pixels).all() and pixels.min() >= 0.0 and pixels.max() <= 1.0

    assert run_cases(make, read, seed=1) > CASES // 4


# -- checkpoints -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[bytes, dict]:
    torch.manual_seed(0)
    path = save_checkpoint(build_model("small-cnn", "bnn", widths=(2, 2, 2), num_classes=2),
                           tmp_path_factory.mktemp("ck") / "m")
    return path.read_bytes(), json.loads(path.with_suffix(".json").read_text())


def write_pair(folder: Path, weights: bytes, side: dict | str) -> Path:
    (folder / "m.safetensors").write_bytes(weights)
    (folder / "m.json").write_text(side if isinstance(side, str) else json.dumps(side))
    return folder / "m.safetensors"


def mutate_header(data: bytes, rng: random.Random) -> bytes:
    """Safetensors bytes with a changed header: its length field, or a dtype, shape or offset in its JSON."""
    (length,) = struct.unpack("<Q", data[:8])
    header, rest = json.loads(data[8:8 + length]), data[8 + length:]
    if rng.random() < 0.2:
        new_length = rng.choice([0, 1, length - 1, length + 1, 2**40, 2**64 - 1, len(data)])
        return struct.pack("<Q", new_length) + data[8:]
    name = rng.choice([k for k in header if k != "__metadata__"])
    field = rng.choice(["dtype", "shape", "data_offsets", "__metadata__"])
    junk = rng.choice(["F64", "I8", "BOOL", "U8", "X9", -1, 2**63, [2**62, 2], [], None, {"a": 1}, "", [0, 10**9]])
    if field == "__metadata__":
        header["__metadata__"] = rng.choice([{"spec": "{"}, {"spec": "[]"}, {"spec": json.dumps({"name": 1})},
                                             {"format": "x"}, {"spec": 3}, "text"])
    else:
        header[name][field] = junk
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + rest


def sha_matched(side: dict, weights: bytes) -> dict:
    return {**side, "weights_sha256": hashlib.sha256(weights).hexdigest()}


def test_fuzz_safetensors_weights(checkpoint, tmp_path):
    weights, side = checkpoint

    def make(rng: random.Random) -> bytes:
        return mutate_header(weights, rng) if rng.random() < 0.6 else mutate(weights, rng)

    def read(data: bytes) -> None:  # the side file's checksum matches, so every header check is reached
        load_checkpoint(write_pair(tmp_path, data, sha_matched(side, data)))

    assert run_cases(make, read, seed=2) > CASES // 2


JUNK: list[Any] = [None, True, -1, 0, 2**70, 1e308, float("nan"), "", "fp", "bnn", "x" * 300, [], [1, 2],
                   [2**40, 2**40], {}, {"widths": [2, 2, 2]}, {"widths": [-3]}, {"a": {"b": []}}, [[[]]], 0.5]


def mutate_side(side: dict, rng: random.Random) -> dict | str:
    """A side file with a key set to junk of another type, a key dropped, or its text damaged."""
    side = json.loads(json.dumps(side))
    kind = rng.randrange(4)
    if kind == 0:
        target = side["spec"] if rng.random() < 0.6 else side
        target[rng.choice(sorted(target))] = rng.choice(JUNK)
    elif kind == 1:
        target = side["spec"] if rng.random() < 0.5 else side
        del target[rng.choice(sorted(target))]
    elif kind == 2:
        side["spec"]["options"] = {rng.choice(["widths", "depth", "blocks", "zzz"]): rng.choice(JUNK)}
    else:
        text = json.dumps(side)
        return rng.choice([text[: rng.randrange(len(text))], "[" * 100_000, '{"spec": ' + "[" * 5000,
                           text.replace(":", ",", 1), "\ufeff" + text, "null", "1e999"])
    return side


def test_fuzz_side_files(checkpoint, tmp_path):
    weights, side = checkpoint

    def read(side_file: dict | str) -> None:
        model, _ = load_checkpoint(write_pair(tmp_path, weights, side_file))
        assert isinstance(model, torch.nn.Module)

    assert run_cases(lambda rng: mutate_side(side, rng), read, seed=3) > CASES // 2


# -- idx -------------------------------------------------------------------------------------------------

def test_fuzz_idx():
    valid = bytes([0, 0, 8, 3]) + struct.pack(">3I", 4, 5, 6) + bytes(range(120))
    assert run_cases(lambda rng: mutate(valid, rng), lambda raw: read_idx_bytes(raw, "x"), seed=4) > CASES // 2


# -- study configuration ---------------------------------------------------------------------------------

VALUES = ["-1", "0", "1e400", "nan", "inf", "-inf", "1.5", "99999999999999999999", '"x"', '""', "[]", "[1, -2]",
          "true", '"../../escaped"', '"a__b"', "{}", '"fp"', "[[1]]", "3", '"\\u0000"']


def mutate_toml(text: str, rng: random.Random) -> str:
    """The default configuration with one value replaced, a line dropped or duplicated, or bytes damaged."""
    lines = text.splitlines()
    kind = rng.randrange(4)
    at = rng.randrange(len(lines))
    if kind == 0 and "=" in lines[at]:
        key = lines[at].split("=", 1)[0]
        lines[at] = f"{key}= {rng.choice(VALUES)}"
    elif kind == 1:
        del lines[at]
    elif kind == 2:
        lines.insert(at, lines[rng.randrange(len(lines))])
    else:
        chars = list("\n".join(lines))
        for _ in range(rng.randint(1, 4)):
            chars[rng.randrange(len(chars))] = rng.choice("=[]\"'#.,{}\\ \n0a-")
        return "".join(chars)
    return "\n".join(lines) + "\n"


def test_fuzz_study_config(tmp_path):
    text = to_toml(StudyConfig())
    path = tmp_path / "study.toml"
    load_config_of = lambda data: (path.write_text(data), load_config(path))  # noqa: E731
    assert run_cases(lambda rng: mutate_toml(text, rng), load_config_of, seed=5) > CASES // 4


# -- the run folder's records ----------------------------------------------------------------------------

RECORDS = ("models.json", "images.json", "timings.json", "verdicts.json", "examples.npz", "config.toml")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A small finished run folder written by hand: 2 models, 4 images of 8 x 8, Gradient maps, rows, verdicts."""
    from binsight.study import verdicts as v
    from binsight.study.records import ImageSet, ModelRecord, Timings
    from binsight.study.store import Row, RunFolder

    root = tmp_path_factory.mktemp("fuzz-run") / "run"
    rng = np.random.default_rng(0)
    images = [2, 5, 7, 9]
    models = [ModelRecord("fp-0", "fp", "0", "", arch="tiny", accuracy=0.9),
              ModelRecord("bnn-0", "bnn", "0", "ste", arch="tiny", accuracy=0.8)]
    rows = [Row(measure, "gradient", m.name, "", 0, i, float(rng.random())) for m in models for i in images
            for measure in ("total_variation", "degenerate")]
    rows += [Row("spearman", "gradient", "fp-0", "bnn-0", 0, i, float(rng.random())) for i in images]
    with RunFolder.create(root, StudyConfig()) as folder:
        folder.records.write_models(models)
        folder.records.write_images(ImageSet("synthetic", "test", "", 4, "0" * 64, False, ("a", "b"), tuple(images)))
        folder.records.write_timings(Timings({"maps": 1.5}, {"maps": 1.0}))
        folder.records.save_examples(rng.random((2, 1, 8, 8)), np.array([0, 1]))
        for m in models:
            folder.maps.save(m.name, "gradient", 0, maps=rng.random((4, 1, 8, 8)).astype(np.float32),
                             targets=np.zeros(4, np.int64), images=np.array(images))
        folder.units.save("all", ("rows",), rows)
        folder.units.merge()
        infos = [v.ModelInfo(m.name, m.precision, m.group, m.surrogate) for m in models]
        table = v.Table(rows)
        folder.records.write_verdicts(v.StudyVerdicts((), tuple(v.per_pair_values(table, infos)),
                                                      v.predictions(table, infos), tuple(v.undefined_counts(table)),
                                                      v.VerdictSettings()))
    return root


def damage_record(name: str, data: bytes, rng: random.Random) -> bytes:
    """One of: truncated, of the wrong type, deeply nested, not UTF-8, a huge number, a key missing, or
    random byte damage (:func:`mutate`) of the record ``name``'s bytes ``data``."""
    kind = rng.choice(["truncated", "type", "nested", "utf-8", "huge", "missing", "bytes"])
    if kind == "truncated":
        return data[: rng.randrange(len(data))]
    if kind == "utf-8":
        return b"\xff\xfe" + data[: len(data) // 2] + b"\xc3\x28" + data[len(data) // 2:]
    if kind == "bytes" or name == "examples.npz":
        return mutate(data, rng)
    text = data.decode("utf-8")
    if name == "config.toml":
        lines = text.splitlines()
        at = rng.choice([i for i, line in enumerate(lines) if " = " in line])
        key = lines[at].split(" = ", 1)[0]
        lines[at] = {"type": f'{key} = "text"', "nested": f"{key} = " + "[" * 5000 + "]" * 5000,
                     "huge": f"{key} = 99999999999999999999999", "missing": ""}[kind]
        return "\n".join(lines).encode("utf-8")
    value = json.loads(text)
    if kind == "type":
        return json.dumps(rng.choice(JUNK[:-1] if isinstance(value, dict) else [{}, 3, "x", None])).encode()
    if kind == "nested":
        return ("[" * rng.choice([100, 5000, 100_000]) + "]" * 100_000).encode()
    target = value[0] if isinstance(value, list) and value else value
    if isinstance(target, dict) and target:
        key = rng.choice(sorted(target))
        if kind == "missing":
            del target[key]
        else:
            target[key] = rng.choice([10**400, 1e308 * 10, -(2**70), 2**63])
    return json.dumps(value).encode("utf-8").replace(b"Infinity", b"1e999")


def test_fuzz_run_folder_records(run_folder, tmp_path):
    """Each case damages one record of a copy of a run folder and builds its report: a one-line
    BinsightError, or a report (with warnings), never another exception."""
    import shutil
    import warnings

    from binsight.report import build_report

    copy = tmp_path / "run"
    shutil.copytree(run_folder, copy)
    clean = {name: (run_folder / name).read_bytes() for name in RECORDS}

    def make(rng: random.Random) -> tuple[str, bytes]:
        name = rng.choice(RECORDS)
        return name, damage_record(name, clean[name], rng)

    def read(case: tuple[str, bytes]) -> None:
        name, data = case
        for other, original in clean.items():
            (copy / other).write_bytes(data if other == name else original)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged record left out of the report is a warning
            assert build_report(copy).is_file()

    assert run_cases(make, read, seed=6, cases=min(CASES, 30)) > 0  # a report per case: fewer cases
