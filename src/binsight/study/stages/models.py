"""Stage ``models``: the run's models, ready to explain.

From the run folder if already recorded (models.json: binsight checkpoints from the run folder's copies,
own models rebuilt by their factories with the weights the run recorded, checked by their sha256, so a
factory whose weights changed since never mixes two networks' maps under one name); else each
:class:`~binsight.study.plan.ModelSource` obtained (the cached trained model, the user's checkpoint or own
model), copied into models/ and recorded. Names are checked unique before anything of the models is
written. models.json lists every model of the table: the base models, then each BNN's surrogate variants
(``"base"`` names their model). Several processes:
missing models are trained spread over the ranks (model j by rank j % K, alone, into the cache), then
rank 0 records them and the others load them from the run folder.

Before any map is computed, every method's explainer is built once for each model, so that an option an
explainer refuses (e.g. a GradCAM layer a model lacks) is reported before hours of work. A base model whose
backward pass carries no gradient to its input (a BNN binarizing with ``torch.sign``) is recorded with
``no_gradient`` and named in a warning at every invocation: its input-gradient maps are all zero.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from binsight._io import atomic_path
from binsight._utils import BinsightWarning
from binsight.models.checkpoint import checkpoint_paths, load_checkpoint
from binsight.models.factory import (ModelSpec, declared_gradcam_layer, load_model, model_from_module, read_state_dict,
                                     surrogate_label)
from binsight.nn import surrogate_of
from binsight.nn.foreign import no_input_gradient, sign_report
from binsight.study.config import ConfigError
from binsight.study.context import RunContext
from binsight.study.errors import RunFolderError
from binsight.study.names import check_unique_names
from binsight.study.plan import ModelSource, StudyModel, explain_surrogate, variants
from binsight.study.records import OWN_KIND, ModelRecord
from binsight.study.stages.images import dataset
from binsight.study.stages.maps import check_explainers
from binsight.train import cached_model, evaluate


@dataclass
class Obtained:
    """A model as obtained: its source with name and precision filled in, the module, its checkpoint
    file (None for an own model) and the checkpoint's metadata."""

    source: ModelSource
    module: nn.Module
    checkpoint: Path | None
    meta: dict[str, Any]


class ModelsStage:
    """Sets ``ctx.base`` (the base models) and ``ctx.models`` (with the surrogate variants)."""

    name = "models"

    def run(self, ctx: RunContext) -> None:
        recorded = ctx.folder.records.read_models()
        if recorded is None and ctx.ranks > 1:
            for source in ctx.mine([s for s in ctx.plan.sources if s.trained]):
                obtain(ctx, source)
            ctx.sync()
            if ctx.main:
                record_models(ctx)
            ctx.sync()
            recorded = ctx.folder.records.read_models()
        ctx.base = record_models(ctx) if recorded is None else reload(ctx, recorded)
        surrogates = ctx.config.verdicts.robustness_surrogates
        ctx.models = ctx.base + [v for m in ctx.base for v in variants(m, surrogates)]
        if ctx.main:
            warn_no_gradient(ctx.base)
        check_explainers(ctx.plan, ctx.models)


def reload(ctx: RunContext, recorded: list[ModelRecord]) -> list[StudyModel]:
    """The base models listed in models.json: binsight checkpoints from the run folder's copies, own
    models rebuilt with the weights the run recorded (:func:`reload_own`; the same names as recorded, else
    refused)."""
    check_unique_names([r.name for r in recorded])
    base = [r for r in recorded if not r.is_variant]
    own = ctx.plan.own_models
    if sorted(own) != sorted(r.name for r in base if r.is_own):
        raise RunFolderError(f"the own models given ({', '.join(sorted(own)) or 'none'}) are not those this run "
                             f"started with (models.json in {ctx.folder.root}); give the same models or a new --out")
    models = []
    for record in base:
        if record.is_own:
            module = reload_own(ctx, record, own[record.name])
        else:
            module = load_checkpoint(ctx.folder.path(record.checkpoint))[0]
        models.append(study_model(ctx, record, module))
    return models


def reload_own(ctx: RunContext, record: ModelRecord, own: tuple[nn.Module | None, ModelSpec]) -> nn.Module:
    """An own model of a continued run with the weights the run recorded (models/NAME.safetensors, checked
    against its sha256 in models.json): a factory's model is built and given those weights; a module the
    caller gives must hold them already (it is never changed), else the run is refused."""
    path = ctx.folder.path(record.checkpoint)
    found = file_sha256(path) if path.is_file() else None
    if record.weights_sha256 and found != record.weights_sha256:
        state = "missing" if found is None else f"changed (sha256 {found[:12]}, recorded {record.weights_sha256[:12]})"
        raise RunFolderError(f"the weights this run recorded for own model {record.name!r} ({record.checkpoint}) are "
                             f"{state}; the maps already computed belong to the recorded weights: use a new --out folder")
    module, spec = own
    if module is None:
        return build_own(ctx, (None, dataclasses.replace(spec, weights=str(path))))
    built = build_own(ctx, own)
    recorded = read_state_dict(path)
    given = built.model.state_dict()
    if given.keys() != recorded.keys() or not all(torch.equal(given[k].cpu(), recorded[k]) for k in recorded):
        raise RunFolderError(f"the module given as own model {record.name!r} holds other weights than this run "
                             f"started with ({record.checkpoint}); give the module with those weights, or a new --out")
    return built


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_models(ctx: RunContext) -> list[StudyModel]:
    """Obtain every base model, copy it into models/ and write models.json (base models, then variants)."""
    obtained = [obtain(ctx, source) for source in ctx.plan.sources]
    check_unique_names([o.source.name for o in obtained])
    for o in obtained:
        check_image_shape(ctx, o.source.name, o.module)
    models = []
    for o in tqdm(obtained, desc="models", disable=not ctx.shows_progress, leave=False):
        record = record_own(ctx, o) if o.source.own is not None else record_checkpoint(ctx, o)
        record = dataclasses.replace(record, no_gradient=carries_no_gradient(ctx, o.module))
        models.append(study_model(ctx, record, o.module))
    listed = [m.record for m in models] + [v.record for m in models
                                           for v in variants(m, ctx.config.verdicts.robustness_surrogates)]
    check_unique_names([r.name for r in listed])
    ctx.folder.records.write_models(listed)
    return models


PROBE_IMAGES = 8
"""How many of the study's images the gradient probe runs on (one forward and one backward pass)."""


def carries_no_gradient(ctx: RunContext, module: nn.Module) -> bool:
    """Whether ``module``'s backward pass carries no gradient to its input on the study's first
    :data:`PROBE_IMAGES` images (:func:`binsight.nn.foreign.no_input_gradient`)."""
    return no_input_gradient(ready(ctx, module), ctx.images.images[:PROBE_IMAGES].to(ctx.device))


def warn_no_gradient(models: list[StudyModel]) -> None:
    """One warning per model recorded with ``no_gradient``, naming it, the empty maps and the remedy."""
    for m in models:
        if m.record is not None and m.record.no_gradient:
            warnings.warn(f"model {m.name!r} carries no gradient to its input (no_gradient in models.json): its "
                          "input-gradient maps (Gradient, SmoothGrad) are empty, all zero, and the study compares "
                          "them as they are; binarize with a straight-through sign (binsight.nn.SignActivation, or "
                          "an autograd.Function whose backward passes the gradient on)", BinsightWarning, stacklevel=2)


def check_image_shape(ctx: RunContext, name: str, module: nn.Module) -> None:
    """A binsight model must have been trained on images of the study's shape (C, H, W), as its
    checkpoint's spec records them: every architecture pools adaptively, so a model trained at another size
    would run on the study's images and explain them at a scale it never saw. Own models declare their
    own ``input_size`` (checked when they are built)."""
    spec = getattr(module, "binsight_spec", None)
    if not spec or "input_size" not in spec:
        return
    trained = (spec.get("in_channels"), *spec["input_size"])
    study = tuple(ctx.images.images.shape[1:])
    if trained != study:
        raise ConfigError(f"model {name!r} was trained on {' x '.join(map(str, trained))} images (channels x height x "
                          f"width), the study explains {' x '.join(map(str, study))} ones; set data.image_size and "
                          "data.channels to the model's, or give a model trained at the study's size")


def study_model(ctx: RunContext, record: ModelRecord, module: nn.Module) -> StudyModel:
    return StudyModel(record.name, record.precision, record.group, record.surrogate, ready(ctx, module),
                      base=record.name, record=record)


def ready(ctx: RunContext, module: nn.Module) -> nn.Module:
    return module.to(ctx.device).eval()


def obtain(ctx: RunContext, source: ModelSource) -> Obtained:
    """The user's own model or checkpoint, or the cached (trained) model. Training seeds from (seed,
    precision), so FP and BNN share no initialisation, and reads the images at the study's size and
    channels (``data.image_size``, ``data.channels``: part of the cache key)."""
    if source.own is not None:
        return Obtained(source, build_own(ctx, source.own), None, {})
    if source.path:
        path = Path(source.path).expanduser()
        module, meta = load_checkpoint(path)
        precision = source.precision or ("bnn" if surrogate_of(module) is not None else "fp")
        named = dataclasses.replace(source, precision=precision, name=source.name or f"{precision}-{source.position}")
        return Obtained(named, module, path, meta)
    m, d = ctx.config.models, ctx.config.data
    epochs = m.epochs_fp if source.precision == "fp" else m.epochs_bnn
    module, meta = cached_model(
        m.arch, source.precision, d.name, source.seed, epochs or None,
        data_root=d.root or None, image_size=d.image_size or None, channels=d.channels or None,
        train_subset=m.train_subset or None, batch_size=m.train_batch_size or None,
        test_subset=m.test_subset or None, surrogate=m.train_surrogate, first_last_fp=m.first_last_fp,
        lr=m.learning_rate(source.precision), augment=m.augment,
        device=str(ctx.device), progress=ctx.shows_progress, data_parallel=False,
    )
    return Obtained(source, module, Path(meta["checkpoint"]), meta)


def build_own(ctx: RunContext, own: tuple[nn.Module | None, ModelSpec]) -> nn.Module:
    """A user's own model ready for the study (:class:`binsight.models.factory.Normalized`): built by its
    factory (modules looked up in ``models.own_dir`` first) or the given module prepared; input_size
    and num_classes default to the images' (the images stage runs first)."""
    module, spec = own
    spec = dataclasses.replace(spec, input_size=spec.input_size or tuple(ctx.images.images.shape[1:]),
                               num_classes=spec.num_classes or len(ctx.images.classes))
    if module is not None:
        return model_from_module(module, spec)
    own_dir = ctx.config.models.own_dir
    return load_model(spec, search_path=[own_dir] if own_dir else [])


def record_checkpoint(ctx: RunContext, o: Obtained) -> ModelRecord:
    """Copy the checkpoint into models/ and describe the model (incl. its test accuracy and the surrogate
    it is explained with)."""
    target = ctx.folder.records.model_path(o.source.name)
    for src, dst in zip(checkpoint_paths(o.checkpoint), checkpoint_paths(target)):  # weights, then the side file
        copy_atomic(src, dst)
    accuracy, n = model_accuracy(ctx, o.module, o.meta, trained=o.source.trained)
    spec_of = getattr(o.module, "binsight_spec", {}) or {}
    return ModelRecord(
        name=o.source.name, precision=o.source.precision, seed=o.source.seed, group=o.source.group,
        arch=spec_of.get("name", type(o.module).__name__), kind="binsight",
        checkpoint=str(target.relative_to(ctx.folder.root)), source=str(o.checkpoint), trained_here=o.source.trained,
        accuracy=accuracy, accuracy_images=n, surrogate_trained=surrogate_of(o.module),
        surrogate=explain_surrogate(ctx.config, o.module, o.source.precision),
        gradcam_layer=getattr(o.module, "gradcam_layer", None), first_last_fp=spec_of.get("first_last_fp"),
        epochs=o.meta.get("epochs"))


def record_own(ctx: RunContext, o: Obtained) -> ModelRecord:
    """An own model's record: its weights as used (models/NAME.safetensors), its factory and
    normalisation, and the surrogate its BNN sign uses backward ("own" where binsight cannot switch it)."""
    module, user = o.module, o.source.own[1]
    target = ctx.folder.records.model_path(o.source.name)
    with atomic_path(target) as tmp:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in module.model.state_dict().items()}, str(tmp))
        weights_sha256 = file_sha256(tmp)
    accuracy, n = model_accuracy(ctx, module, {}, trained=False)
    report = sign_report(module) if user.precision == "bnn" else None
    factory = user.factory if isinstance(user.factory, str) else getattr(user.factory, "__qualname__", "")
    return ModelRecord(
        name=o.source.name, precision=user.precision, seed=None, group=user.group, arch=type(module.model).__name__,
        kind=OWN_KIND, factory=factory or "(module given)", kwargs=dict(user.kwargs),
        checkpoint=str(target.relative_to(ctx.folder.root)), weights_sha256=weights_sha256,
        source=str(user.weights) or "(weights as built)",
        trained_here=False, accuracy=accuracy, accuracy_images=n, surrogate_trained=None,
        surrogate=surrogate_label(module), sign=report.surrogate if report else "",
        switchable=bool(report and report.switchable), gradcam_layer=declared_gradcam_layer(module),
        normalisation=({"mean": list(user.mean), "std": list(user.std)} if user.mean is not None else "inside"),
        first_last_fp=None, epochs=None)


def model_accuracy(ctx: RunContext, module: nn.Module, meta: dict[str, Any], trained: bool) -> tuple[float, int]:
    """(top-1 accuracy, images): on the split the study draws from (not only the explained images;
    ``models.test_subset`` images of it, drawn with seed 0, where set); for a model trained here on
    the test split, the accuracy measured at training time."""
    if trained and ctx.plan.images.split == "test" and meta.get("test_accuracy") is not None:
        return float(meta["test_accuracy"]), int(meta.get("num_test", 0))
    ds = dataset(ctx.plan.images)
    subset = ctx.config.models.test_subset
    if 0 < subset < len(ds):
        ds = ds.subset(subset, seed=0)
    return evaluate(ready(ctx, module), ds, batch_size=ctx.plan.batch_size, device=str(ctx.device)), len(ds)


def copy_atomic(source: Path, target: Path) -> None:
    if not source.is_file():
        raise RunFolderError(f"checkpoint file {source} not found")
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
