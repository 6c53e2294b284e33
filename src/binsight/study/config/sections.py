"""The study's configuration sections: dataclasses whose defaults are the embedded default study.

Each field is documented where it is declared, by :func:`setting` (``help`` in the field's metadata, one
line of Markdown); docs/settings.md and ``binsight study --print-config`` read that text
(:mod:`binsight.study.settings_reference`). A class's docstring is its section's summary. Reading,
checking, writing and hashing a configuration: :mod:`binsight.study.config`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

from binsight.errors import BinsightError
from binsight.models import PRECISIONS


class ConfigError(BinsightError):
    """A study configuration that cannot be used; the message names the key and what to do."""


def setting(default: Any = dataclasses.MISSING, *, help: str, factory: Callable[[], Any] | None = None) -> Any:
    """A configuration field with its description ``help`` (one line, Markdown). ``default``: the value (a
    list or dict is copied for each instance); ``factory``: a function building it instead."""
    if factory is None and isinstance(default, (list, dict)):
        factory = functools.partial(copy.deepcopy, default)  # one copy per instance
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def help_of(f: dataclasses.Field) -> str:
    """The description a field was declared with ("" for a field without one, such as a section)."""
    return f.metadata.get("help", "")


@dataclass
class DataConfig:
    """Which images are explained."""

    name: str = setting("fashion-mnist", help='a registered dataset ("fashion-mnist", "cifar-10", "image-folder", '
                                              '...).')
    split: str = setting("test", help='the split the images are drawn from ("test" or "train").')
    root: str = setting("", help="the dataset's files (\"\" = the default place, downloading where allowed).")
    download: bool = setting(True, help="fetch a missing dataset into the cache (where the dataset has a download).")
    masks: str = setting("", help="image-folder only, a side file of foreground masks or boxes.")
    image_size: int = setting(0, help="image-folder only (0 = the reader's default).")
    channels: int = setting(0, help="image-folder only (0 = the reader's default).")
    n_images: int = setting(128, help="how many images of `split` are explained.")
    seed: int = setting(0, help="the seed the images are drawn with, without replacement.")


@dataclass
class CheckpointConfig:
    """A user's own model, used instead of training: a binsight checkpoint (.safetensors + .json)."""

    path: str = setting("", help="the checkpoint (`X`, `X.safetensors` or `X.json`; a relative path is taken from "
                                 "the working directory).")
    name: str = setting("", help="the model's label in tables, `[A-Za-z0-9][A-Za-z0-9_.-]*` (at most 64 characters, "
                                 "unique, not of the automatic form \"fp-N\" / \"bnn-N\"); \"\" = precision and position, "
                                 "e.g. \"bnn-1\".")
    precision: str = setting("", help='"fp" or "bnn" ("" = the one recorded in the checkpoint).')


@dataclass
class ModelsConfig:
    """The networks compared: ``arch`` trained once per (precision, seed), or the user's checkpoints."""

    arch: str = setting("small-cnn", help="the registered architecture trained (see `binsight train --help`).")
    precisions: list[str] = setting(list(PRECISIONS), help='"fp", "bnn" or both.')
    seeds: list[int] = setting([0, 1, 2], help="one model per precision and seed; the FP and BNN models of one seed "
                                               "share no initialisation and no data order (training seeds from "
                                               "(seed, precision)).")
    epochs_fp: int = setting(0, help="training epochs (0 = the precision's recipe).")
    epochs_bnn: int = setting(0, help="training epochs (0 = the precision's recipe).")
    lr_fp: float = setting(0.0, help="peak learning rate of FP training (0 = the recipe's: 0.2, SGD with a one-cycle "
                                     "schedule).")
    lr_bnn: float = setting(0.0, help="peak learning rate of BNN training (0 = the recipe's: 0.002, Adam with a "
                                      "one-cycle schedule).")
    augment: bool = setting(True, help="random horizontal flips and shifts of up to one pixel of the training images.")
    train_subset: int = setting(0, help="train on this many images (0 = all).")
    matched_fp: list[int] = setting([], help="the accuracy-matched FP control (stage `matched`, docs/verdicts.md): "
                                             "training-set sizes, each below `train_subset` where set; each trained "
                                             "FP model is trained again by its recipe and seed on these many images, "
                                             "in ascending order until its test accuracy reaches the BNN's of its "
                                             "seed, and the closest is kept ([] = off: it trains up to one model per "
                                             "size and seed).")
    train_batch_size: int = setting(0, help="training batch (0 = the recipe's).")
    test_subset: int = setting(0, help="the accuracy recorded at training time, and that of checkpoints and own "
                                       "models, is measured on this many images of the split (0 = all).")
    train_surrogate: str = setting("ste", help="the sign surrogate a BNN is trained with.")
    first_last_fp: bool = setting(True, help="keep a BNN's first and last layers full precision.")
    explain_surrogate: str = setting("", help='the surrogate a BNN is explained with ("" = the one it was trained '
                                              'with).')
    checkpoints: list[CheckpointConfig] = setting([], help="`[[models.checkpoints]]` tables, binsight checkpoints "
                                                           "used instead of training.")
    own: list[dict[str, Any]] = setting([], help="`[[models.own]]` tables, the user's own models built by their own "
                                                 "code (keys of `SPEC_KEYS`: factory, kwargs, weights, precision, "
                                                 "name, group, gradcam_layer, mean, std or normalize = \"inside\", "
                                                 "input_size, num_classes; input_size and num_classes default to "
                                                 "the dataset's).")
    own_dir: str = setting("", help="the folder relative `weights` paths and factory modules are looked up in, "
                                    "relative to the configuration file's folder (\"\" = that folder); a run "
                                    "folder's config.toml holds it relative to the run folder, and the hash leaves "
                                    "it out, so a project folder can move. Checkpoints and own models replace "
                                    "training.")

    def learning_rate(self, precision: str) -> float | None:
        """The peak learning rate a model of ``precision`` ("fp" or "bnn") is trained with (None = the recipe's)."""
        return (self.lr_fp if precision == "fp" else self.lr_bnn) or None


@dataclass
class MethodConfig:
    """One method's table ``[methods.NAME]``: generic study keys, then the explainer's options."""

    explainer: str = setting("", help="the registered explainer (\"\" = the table's name).")
    n_images: int = setting(0, help="explain only the first n_images of the study's images (0 = all).")
    sanity: bool = setting(False, help="take part in the cascading randomisation check.")
    sanity_options: dict[str, Any] = setting({}, help="options overridden in that check (e.g. fewer iterations).")
    robustness: bool = setting(False, help="BNNs are also explained under each of `verdicts.robustness_surrogates`.")
    convergence: dict[str, Any] = setting({}, help="options overridden for a convergence check on the first "
                                                   "`measures.convergence_images` images ({} = no check); the "
                                                   "noise method's check is verdict 2's (`verdicts.convergence_method` "
                                                   "follows it).")
    convergence_label: str = setting("", help="the method label the convergence check's maps are stored under "
                                              "(\"\" = `NAME-convergence`).")
    seed_check_images: int = setting(0, help="a seed check on the first n images (0 = none; the default study's "
                                             "neuromask: 16), for an explainer with a `start` option (NeuroMask): "
                                             "every base model explains them again from its next starting draw "
                                             "(`start` + 1, stored as `NAME-start1`); their start-to-start "
                                             "similarity is the method's own seed baseline in the similarity "
                                             "verdicts (docs/verdicts.md).")
    options: dict[str, Any] = setting({}, help="every other key, passed to the explainer.")


SEED_CHECK_IMAGES = 16
"""The default study's NeuroMask seed check: images explained again from a second start (docs/verdicts.md)."""


def default_method_tables() -> dict[str, MethodConfig]:
    """The default study's method tables."""
    return {
        "gradient": MethodConfig(sanity=True, robustness=True),
        "smoothgrad": MethodConfig(sanity=True, robustness=True, convergence={"n_samples": 200},
                                   convergence_label="smoothgrad-n200",
                                   options={"n_samples": 50, "noise_level": 0.15}),
        "gradcam": MethodConfig(sanity=True, robustness=True),
        "neuromask": MethodConfig(n_images=64, seed_check_images=SEED_CHECK_IMAGES,
                                  options={"iterations": 2000, "return_history": False}),
        # verdict 2's surrogate-free check; not in methods.run by default (its cost: docs/verdicts.md, verdict 2)
        "smoothgrad-forward": MethodConfig(n_images=16, convergence={"n_samples": 16000},
                                           convergence_label="smoothgrad-forward-n16000",
                                           options={"n_samples": 4000, "noise_level": 0.15}),
    }


@dataclass
class MethodsConfig:
    """Which methods are run (``run``, in order), what they explain, and each one's table."""

    run: list[str] = setting(["gradient", "smoothgrad", "gradcam", "neuromask"],
                             help="the registered explainers run, in order (`binsight explain --help` lists them).")
    target: str = setting("label", help="\"label\" (every model explains the image's true class) or \"predicted\" (each "
                                        "model its own predicted class).")
    tables: dict[str, MethodConfig] = setting(factory=default_method_tables,
                                              help="`[methods.NAME]` by name (see `MethodConfig`).")

    def table(self, name: str) -> MethodConfig:
        """The table of method ``name`` (an empty table when it has none)."""
        return self.tables.get(name) or MethodConfig()


@dataclass
class MeasuresConfig:
    """Which families of measures are taken, and their parameters."""

    similarity: bool = setting(True, help="FP-vs-BNN and within-precision map similarity of every pair of models.")
    noise: bool = setting(True, help="total variation and high-frequency energy of every map, of its values and of "
                                     "its within-map ranks.")
    faithfulness: bool = setting(True, help="deletion / insertion and ROAD of every map.")
    localisation: bool = setting(True, help="pointing game and energy on the object mask (where the dataset has "
                                            "masks).")
    sanity: bool = setting(True, help="the cascading randomisation check.")
    baselines: bool = setting(True, help='also "explain" with the chance maps (methods "random" and '
                                         '"smooth-random").')
    top_k: float = setting(0.1, help="fraction of pixels in the top-k IoU.")
    curve_steps: int = setting(14, help="points of the deletion / insertion curves.")
    road_percentages: list[float] = setting([10.0, 30.0, 50.0, 70.0, 90.0], help="percent of pixels imputed by ROAD.")
    mask_dilation: int = setting(2, help="pixels the object mask grows by for localisation and object-restricted "
                                         "similarity.")
    sanity_images: int = setting(8, help="images in the cascading randomisation check.")
    convergence_images: int = setting(16, help="images of each method's convergence check.")
    chance_methods: list[str] = setting(["gradient", "smoothgrad", "gradcam", "neuromask"],
                                        help="methods whose maps get the chance test (`nonsensical`: not better "
                                             "than chance on a majority of measures, or degenerate; verdict 3 (b)); "
                                             "left out: every method of `methods.run`.")
    chance_maps: int = setting(20, help="chance maps of each kind per tested map (unstructured, and as many "
                                        "smoothness-matched); at least 10, so that a map can be better than chance "
                                        "at the test's level 0.05 (its smallest p-value is 1 / (2 chance_maps + 1)).")
    chance_images: int = setting(128, help="the test runs on the first chance_images images (0 = all). A tested "
                                           "map costs 18 + R forward passes (10-step deletion onto a blur and onto "
                                           "the mean, their two ends shared by every map of an image; ROAD, R the "
                                           "number of road_percentages) and R ROAD imputations, and as much for each "
                                           "smooth chance map the sequential test still needs (at most chance_maps; "
                                           "a measure stops once two chance maps do as well as the map); each "
                                           "image's unstructured chance maps cost chance_maps x (18 + R) passes once "
                                           "per network, shared by every method and surrogate variant.")
    control_images: int = setting(32, help="the controls (chance_controls) are tested on the first control_images "
                                           "of the chance-tested images (0 = all of them): they check that the test "
                                           "can flag a map and does not flag the image's edges, for which 32 images "
                                           "per model suffice; each costs about a tested map.")
    chance_controls: bool = setting(True, help="also test the control maps of each tested map (the map inverted, "
                                               "another image's map, the image's edges, a centred blob): whether "
                                               "they are flagged as expected decides whether verdict 3 (b) can "
                                               "decide; the first two are tested like the map (mostly flagged, so "
                                               "cheaply: the test stops early), edges and blob once per network "
                                               "and image.")


@dataclass
class VerdictsConfig:
    """How the verdicts are decided (read by :class:`binsight.study.verdicts.VerdictSettings`)."""

    similarity_measures: list[str] = setting(["spearman", "ssim", "top_k_iou"],
                                             help="the measures verdicts 1 and 3 (a) use (each gives its own "
                                                  "reading; each one alone is also a robustness setting).")
    noise_measures: list[str] = setting(["total_variation", "high_frequency_energy", "rank_total_variation",
                                         "rank_high_frequency_energy"],
                                        help="the measures verdict 2 uses (each gives its own reading; "
                                             "each one alone is also a robustness setting); the rank_ ones "
                                             "read each map's within-map ranks, so a monotone remap of the "
                                             "values changes nothing.")
    faithfulness_measures: list[str] = setting(["road_morf", "road_lerf", "deletion_blur_auc", "insertion_blur_auc"],
                                               help="the measures verdict 4 uses (each gives its own "
                                                    "reading; each one alone is also a robustness setting).")
    evidence_measures: list[str] = setting(["energy_inside", "pointing_game"],
                                           help="the localisation measures the evidence verdict (5, planted data) "
                                                "reads on the planted window (each one alone is also a robustness "
                                                "setting).")
    lower_is_better: list[str] = setting(["road_morf", "deletion_blur_auc"],
                                         help="the faithfulness measures where lower is better.")
    primary_similarity: str = setting("spearman", help="the primary measure of verdicts 1 and 3 (a), one of "
                                                       "similarity_measures: its part (whole map) decides the "
                                                       "verdict and enters Holm's correction; the others are "
                                                       "secondary, shown without deciding.")
    primary_noise: str = setting("total_variation", help="the primary measure of verdict 2, one of noise_measures "
                                                         "(as primary_similarity).")
    primary_faithfulness: str = setting("road_morf", help="the primary measure of verdict 4, one of "
                                                          "faithfulness_measures (as primary_similarity).")
    primary_evidence: str = setting("energy_inside", help="the evidence verdict's (5) measure that its robustness "
                                                          "rows keep, one of evidence_measures; verdict 5 is a check "
                                                          "against planted ground truth, outside Holm's correction of "
                                                          "the four findings.")
    similarity_method: str = setting("gradient", help="the method of verdict 1 (maps alike).")
    noise_method: str = setting("smoothgrad", help="the method of verdict 2 (noisier).")
    convergence_method: str = setting("smoothgrad-n200", help="the noise method's convergence variant; left out: "
                                                              "the label of the convergence check of "
                                                              "`noise_method`'s table (`methods.NAME.convergence`).")
    surrogate_free_method: str = setting("smoothgrad-forward", help="verdict 2's surrogate-free method (forward "
                                                                   "passes only, no surrogate gradient): whether "
                                                                   "BNNs' extra noise belongs to the network or to "
                                                                   "its surrogate; measured only when it is in "
                                                                   "methods.run (it is not by default).")
    surrogate_free_convergence_method: str = setting("smoothgrad-forward-n16000",
                                                     help="the surrogate-free method's convergence variant (more "
                                                          "samples, same images), extrapolated with it to "
                                                          "infinitely many samples.")
    gradcam_method: str = setting("gradcam", help="the method of verdict 3.")
    faithfulness_method: str = setting("neuromask", help="the method of verdict 4.")
    similarity_margin: float = setting(0.2, help="verdicts 1 and 3: how far below 1 the agreement ratio (FP-vs-BNN "
                                                 "agreement beyond chance over the seeds', docs/verdicts.md) may lie "
                                                 "and still read alike; one margin for every similarity measure.")
    noise_margin: float = setting(0.05, help="BNN-minus-FP noise as a fraction of FP noise that counts as noisier")
    nonsensical_margin: float = setting(0.02, help="verdict 3 (b): a BNN-minus-FP difference of nonsensical "
                                                   "rates (not better than chance, or degenerate) that counts")
    faithfulness_margin: float = setting(0.01, help="a faithfulness difference, in the measure's units, that counts "
                                                    "as better")
    evidence_margin: float = setting(0.1, help="BNN maps' excess over the area at most this fraction below FP maps' "
                                               "counts as finding the evidence as well (verdict 5)")
    confidence: float = setting(0.95, help="the level of every interval (crossed models-by-images t-intervals; "
                                           "exact intervals clustered by model for proportions).")
    n_resamples: int = setting(2000, help="not used by the verdicts since their intervals are crossed t-intervals "
                                          "(docs/verdicts.md), not a bootstrap; accepted so that configurations "
                                          "that set it still load.")
    seed: int = setting(0, help="not used by the verdicts (no interval of theirs is random); accepted so that "
                                "configurations that set it still load.")
    all_correct_min_images: int = setting(10, help="the robustness row on the images every base model classifies "
                                                    "correctly reads not measured when fewer images remain "
                                                    "(docs/verdicts.md, controls for binarization).")
    predicted_labels: bool = setting(True, help="the robustness row where each model explains its predicted class: "
                                                "the maps of the images a base model misclassifies are made a second "
                                                "time for its predicted class, for the methods of verdicts 1 and 2 "
                                                "(`similarity_method`, `noise_method`; stage `predicted`).")
    robustness_surrogates: list[str] = setting(["ste", "approx", "identity"],
                                               help="the sign surrogates each BNN is also explained with (for the "
                                                    "methods whose table sets `robustness`); every verdict is "
                                                    "recomputed under each.")


@dataclass
class RunConfig:
    """Where and how the work runs."""

    device: str = setting("auto", help='"auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:N" or "mps".')
    batch_size: int = setting(256, help="images through a model at once (hashed: it changes results by float "
                                        "rounding).")
    chunk_size: int = setting(32, help="images per work unit (the most a stop can lose).")
    threads: int = setting(0, help="torch's CPU threads (0 = torch's default; at most the machine's cores).")
    progress: bool = setting(True, help="progress bars on the terminal.")


@dataclass
class StudyConfig:
    """The whole study. Defaults = the embedded default study of ``binsight study``."""

    data: DataConfig = field(default_factory=DataConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    methods: MethodsConfig = field(default_factory=MethodsConfig)
    measures: MeasuresConfig = field(default_factory=MeasuresConfig)
    verdicts: VerdictsConfig = field(default_factory=VerdictsConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def method_names(self) -> list[str]:
        """Every method label of the table: the methods, their convergence variants, then the chance maps."""
        from binsight.study.measures import chance_labels

        labels = list(self.methods.run)
        labels += [self.methods.table(m).convergence_label for m in self.methods.run
                   if self.methods.table(m).convergence]
        return labels + (chance_labels() if self.measures.baselines else [])
