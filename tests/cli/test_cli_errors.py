"""One error root: every user-facing error is a BinsightError; the command line prints those on one line and
lets any other exception (a bug) show its traceback."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import binsight.cli as cli
import binsight.cli.data as cli_data
from binsight.data import DatasetError
from binsight.errors import BinsightError

SRC = Path(__file__).resolve().parents[2] / "src" / "binsight"


def all_modules() -> list[str]:
    names = []
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_error_class_of_binsight_derives_from_the_root():
    found = {}
    for name in all_modules():
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, Exception) and not issubclass(obj, Warning) and obj.__module__ == name:
                found[f"{name}.{attr}"] = obj
    assert {"binsight.explain.base.ExplainerError", "binsight.metrics._checks.MetricError",
            "binsight.nn.surrogates.SurrogateError", "binsight.data.dataset.DatasetError",
            "binsight.models.errors.ModelError", "binsight.explain.neuromask.NeuroMaskError"} <= set(found)
    outside = sorted(name for name, cls in found.items() if not issubclass(cls, BinsightError))
    assert outside == [], f"error classes outside BinsightError: {outside}"
    assert issubclass(BinsightError, ValueError)


@pytest.mark.parametrize("error", [KeyError("a missing key"), RuntimeError("an internal bug"), ValueError("a bare one")])
def test_an_internal_error_propagates_with_its_traceback(monkeypatch, error):
    def fails(args):
        raise error

    monkeypatch.setattr(cli_data, "run", fails)
    with pytest.raises(type(error)):
        cli.main(["data", "fashion-mnist"])


def test_a_user_error_is_one_line_and_exit_status_2(monkeypatch, capsys):
    def fails(args):
        raise DatasetError("no such dataset here;\n  look elsewhere")

    monkeypatch.setattr(cli_data, "run", fails)
    assert cli.main(["data", "fashion-mnist"]) == 2
    err = capsys.readouterr().err
    assert err == "binsight data: error: no such dataset here; look elsewhere\n"


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_in_a_process_a_bug_shows_a_traceback_and_a_user_error_does_not():
    bug = run("import sys, binsight.cli as c, binsight.cli.data as d\n"
              "def f(args): raise KeyError('internal')\n"
              "d.run = f\nsys.exit(c.main(['data', 'x']))")
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "KeyError: 'internal'" in bug.stderr
    user = run("import sys, binsight.cli as c\nsys.exit(c.main(['data', 'no-such-dataset', '--no-download']))")
    assert user.returncode == 2 and "Traceback" not in user.stderr
    assert user.stderr.count("\n") == 1 and user.stderr.startswith("binsight data: error: unknown dataset")


def test_help_lists_the_registered_names(capsys):
    with pytest.raises(SystemExit):
        cli.main(["explain", "--help"])
    out = "".join(capsys.readouterr().out.split())  # argparse wraps lines, also at hyphens
    from binsight import explain, nn

    assert ",".join(explain.available() + ["captum:ClassName"]) in out
    assert {"gradcam", "gradient", "neuromask", "smoothgrad"} <= set(explain.available())
    assert ",".join(nn.surrogates()) in out


def test_explain_a_bug_keeps_its_traceback_and_a_user_error_is_one_line(monkeypatch, tmp_path, capsys):
    import binsight.explain.files as files

    def bug(*args, **kw):
        raise RuntimeError("an internal bug in explain")

    monkeypatch.setattr(files, "load_checkpoint_model", bug)
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    (tmp_path / "m.safetensors").write_bytes(b"")
    with pytest.raises(RuntimeError, match="an internal bug in explain"):
        cli.main(["explain", str(image), "--model", str(tmp_path / "m")])
    monkeypatch.undo()
    assert cli.main(["explain", str(image), "--model", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("binsight explain: error: checkpoint ") and err.count("\n") == 1
