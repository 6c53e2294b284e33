"""The reference of study settings (docs/settings.md, --print-config comments) and the study command's output."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest

from binsight.cli import main
from binsight.study import config as cfg
from binsight.explain.options import option_help
from binsight.study import settings_reference as settings_doc
from binsight.cli.study import report_hint
from binsight.report.render import verdict_table
from binsight.study.stats import Estimate
from binsight.study.verdicts import Part, Predictions, Status, StudyVerdicts, Verdict, VerdictSettings

ROOT = Path(__file__).resolve().parents[2]

def config_classes(cls: type = cfg.StudyConfig) -> list[type]:
    """StudyConfig and every dataclass reachable through its fields (in lists and dict values too)."""
    found = [cls]
    for hint in typing.get_type_hints(cls).values():
        inner = (typing.get_args(hint) or (hint,))[-1] if typing.get_origin(hint) in (list, dict) else hint
        if dataclasses.is_dataclass(inner) and inner not in found:
            found += [c for c in config_classes(inner) if c not in found]
    return found


def test_docs_settings_md_is_what_the_configuration_gives_now():
    written = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert written == settings_doc.markdown(), (
        "docs/settings.md is out of date with the study configuration; run `python scripts/settings_reference.py`")


def test_every_field_of_every_section_is_in_the_reference():
    listed = {(s.owner, s.field) for s in settings_doc.settings()}
    sections = [c for c in config_classes() if c is not cfg.StudyConfig]
    assert {c.__name__ for c in sections} >= {"DataConfig", "ModelsConfig", "CheckpointConfig", "MethodsConfig",
                                              "MethodConfig", "MeasuresConfig", "VerdictsConfig", "RunConfig"}
    missing = [f"{c.__name__}.{f.name}" for c in sections for f in dataclasses.fields(c) if (c.__name__, f.name) not in listed]
    assert not missing, f"fields missing from the settings reference: {missing}"


def test_every_field_has_a_description():
    sections = [c for c in config_classes() if c is not cfg.StudyConfig]
    blank = {f"{c.__name__}.{f.name}" for c in sections for f in dataclasses.fields(c) if not cfg.help_of(f).strip()}
    assert not blank, f"undocumented study settings: {sorted(blank)}; declare each with setting(..., help=...)"


def test_each_registered_explainers_options_are_listed_with_a_description():
    import binsight.explain as explain

    rows = {(s.section, s.key): s for s in settings_doc.settings()}
    for name in explain.available():
        allowed, _ = cfg.explainer_options(explain.explainer_class(name))
        for option in allowed:
            assert rows[(f"methods.{name}", option)].description, f"explainer {name}: option {option} undescribed"
    assert rows[("methods.smoothgrad", "n_samples")].default == "50"
    assert rows[("methods.gradcam", "layer")].default == "unset"
    assert ("methods.smoothgrad", "seed") not in rows and ("methods.gradient", "surrogate") not in rows  # runner's
    assert rows[('methods."captum:NAME"', "OPTION")].description.startswith("for the Captum constructor")
    assert rows[('methods."captum:NAME"', "reduction")].description == rows[("methods.gradient", "reduction")].description


@dataclass
class Toy:
    """Summary."""

    alpha: int = cfg.setting(0, help="first thing (0 = none).")
    items: list[int] = cfg.setting([1], help="a list, one copy per instance.")
    quiet: bool = False


def test_a_fields_description_is_the_help_it_is_declared_with():
    fields = {f.name: f for f in dataclasses.fields(Toy)}
    assert cfg.help_of(fields["alpha"]) == "first thing (0 = none)." and cfg.help_of(fields["quiet"]) == ""
    a, b = Toy(), Toy()
    a.items.append(2)
    assert b.items == [1] and Toy().alpha == 0


class Base:
    """Base.

    Args:
        size: the size,
            over two lines.
        a, b: shared text.
    """


class Derived:
    """Derived.

    Args:
        size: as :class:`test_settings_reference.Base` (and more).
        **rest: any other option.
    """


def test_option_help_reads_google_style_blocks_and_follows_as_class_references():
    assert option_help(Base) == {"size": "the size, over two lines.", "a": "shared text.",
                                                    "b": "shared text."}
    assert option_help(Derived) == {"size": "the size, over two lines. (and more)",
                                                       "rest": "any other option."}


CUSTOM = """
[data]
n_images = 9
[models]
seeds = [4]
[[models.checkpoints]]
path = "a.safetensors"
name = "mine"
[[models.checkpoints]]
path = "b.safetensors"
[methods]
run = ["gradient", "grad2", "captum:Saliency"]
[methods.grad2]
explainer = "gradient"
reduction = "mean"
signed = true
[methods.smoothgrad]
n_samples = 7
convergence = {n_samples = 11}
[methods."captum:Saliency"]
abs = false
n_images = 3
[measures]
chance_methods = ["gradient"]
[verdicts]
similarity_measures = ["ssim"]
primary_similarity = "ssim"
"""


@pytest.mark.parametrize("text", ["", CUSTOM])
def test_print_config_is_commented_and_loads_back_to_the_same_configuration(tmp_path, capsys, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert main(["study", str(path), "--print-config"]) == 0
    printed = capsys.readouterr().out
    again = tmp_path / "printed.toml"
    again.write_text(printed)
    assert cfg.load_config(again) == cfg.load_config(path)
    lines = printed.splitlines()
    keys = [i for i, line in enumerate(lines) if " = " in line and not line.startswith("#")]
    assert keys and all(lines[i - 1].startswith("# ") and "(default: " in lines[i - 1] for i in keys)


def test_print_config_comments_give_the_description_and_the_default_study_value(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text(CUSTOM)
    main(["study", str(path), "--print-config"])
    printed = capsys.readouterr().out
    assert "# training epochs (0 = the precision's recipe). (default: 0)\nepochs_fp = 0\n" in printed
    assert "(default: 50)\nn_samples = 7\n" in printed  # the default study's value, not the explainer's
    assert "[methods.grad2]\n" in printed and "(default: \"max\")\nreduction = \"mean\"\n" in printed
    assert "(default: the wrapped class's)\nabs = false\n" in printed
    assert "\n[[models.checkpoints]]\n" in printed and '# "fp" or "bnn"' not in printed.split("[methods]")[1]


def estimate(value: float, low: float, high: float, confidence: float = 0.95) -> Estimate:
    return Estimate(value, low, high, confidence, "2 FP and 2 BNN models, 6 images", 6, 200)


def part(name: str, status: str, est: Estimate | None, *, reading: str = "", bound: float | None = None,
         levels: dict[str, Estimate] | None = None) -> Part:
    return Part(name, "?", Status(status), est, bound, "", reading, levels or {})


TOP_K = {"FP-vs-BNN": estimate(0.1, 0.09, 0.11), "FP-vs-FP": estimate(0.2, 0.19, 0.22)}
VERDICTS = StudyVerdicts((
    Verdict(1, "FP and BNN maps of the same image are as similar as two FP maps of differently seeded models, well "
               "above chance", "", Status.PARTLY_HELD, (
                   part("spearman", "held", estimate(-0.158, -0.2, -0.1, 0.9)),
                   part("ssim", "not measured", None),
                   part("top_k_iou", "not held", TOP_K["FP-vs-BNN"], reading="maps unstable across seeds",
                        levels=TOP_K),
                   part("below chance", "not held", estimate(-0.023, -0.111, 0.0), reading="not held", bound=0.02,
                        levels={"FP": estimate(0.023, 0.0, 0.111)})), "", "", fragile=True),
    Verdict(2, "Some BNN maps are nonsense", "", Status.INCONCLUSIVE, (), "", ""),
), (), Predictions(None, 0, (), {}), (), VerdictSettings())


def test_verdict_table_shows_full_titles_statuses_fragile_and_intervals():
    table = verdict_table(VERDICTS)
    lines = table.splitlines()
    assert VERDICTS.verdicts[0].title in lines[1] and lines[1].endswith("partly held, fragile")
    assert lines[2] == "     - spearman: held  -0.158 [-0.200, -0.100] (90% CI)"
    assert lines[3] == "     - ssim: not measured"
    # a part that compares levels names each level with its interval, not only FP-vs-BNN's
    assert lines[4] == "     - top_k_iou: not held (maps unstable across seeds)"
    assert lines[5] == "         FP-vs-BNN +0.100 [+0.090, +0.110]; FP-vs-FP +0.200 [+0.190, +0.220] (95% CI)"
    # a part whose statistic is compared with a bound shows both, then its levels
    assert lines[6] == "     - below chance: not held  -0.023 [-0.111, +0.000] (95% CI), bound +0.020"
    assert lines[7] == "         FP +0.023 [+0.000, +0.111] (95% CI)"
    assert lines[8].startswith("2  Some BNN maps are nonsense ") and lines[8].endswith("  inconclusive")
    assert "fragile" not in lines[8]


def test_report_hint_says_where_the_report_is_and_how_to_open_it(tmp_path):
    text = report_hint(tmp_path / "run")
    page = (tmp_path / "run" / "report.html").resolve()
    assert str(page) in text and f"python -m webbrowser {page.as_uri()}" in text
    assert f"binsight report {tmp_path / 'run'}" in text
