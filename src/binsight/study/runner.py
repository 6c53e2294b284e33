"""The study, stage by stage: data -> models -> predictions -> maps -> measures -> pairs -> sanity -> verdicts.

The report is built from the finished folder by the layer above (``binsight.report``, called by the
command line), so that the study never imports the report.

The runner knows no method by name: it loops over the method labels of :func:`binsight.study.plan.method_specs`
(configured methods through the explainer registry, their convergence variants, the chance maps) and
over the models of the run (trained or given, and each BNN's surrogate variants, :mod:`binsight.study.plan`).
Every stage is a list of work units; a unit whose output file exists in the run folder is skipped, so a
stopped run continues where it stopped (see :mod:`binsight.study.store`). Units are computed with fixed
seeds (a seeded explainer gets the chunk's index, chance maps and ROAD too), so a unit recomputed after a
stop gives the same numbers as it would have the first time.

Several processes (``torchrun --nproc-per-node K -m binsight study ...``): rank 0 claims the folder and
prepares the models (missing ones are trained, spread over the ranks, each by one process); the other
ranks join the claimed folder and load the models it records. The units of every stage, in a fixed
order, go to ranks in turn (unit i to rank i % K); every rank skips its units already done; all ranks
wait for each other after every stage; rank 0 alone merges the table and writes the shared files
(models.json, measurements.csv, verdicts.json, timings.json). Seeds depend on the unit only, so the
results do not depend on K. A single process sets up nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from binsight import distributed
from binsight._io import atomic_write_text
from binsight.errors import BinsightError
from binsight.study import verdicts as verdicts_module
from binsight.study.config import ConfigError, StudyConfig, load_config, own_specs, resolve_device, surrogate_names
from binsight.study.measures import CHANCE_MAPS, map_values, pair_values
from binsight.study.plan import MethodSpec, StudyModel, explain_surrogate, method_specs, variants
from binsight.study.store import Row, RunFolder, RunFolderError, check_unique_names, iter_chunks, validate_model_name

EXAMPLES = 8  # images kept in examples.npz, for the report's grid


@dataclass
class StudyImages:
    """The explained images: dataset indices (n,), images (n, C, H, W) in [0, 1], labels (n,), masks
    (n, 1, H, W) or None, class names."""

    indices: np.ndarray
    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    classes: list[str]


class StudyRunner:
    """Runs (or continues) one study in one run folder. ``run()`` does every stage and returns verdicts.json."""

    def __init__(self, config: StudyConfig, out: str | Path, *, models: Sequence[Any] = ()):
        """``models``: the caller's own models besides the configuration's, each a
        :class:`binsight.models.factory.ModelSpec` (built by its factory) or ``(module, spec)``."""
        self.config = config
        resolve_device(config.run.device)  # refused before anything is written (and before any process group)
        self.own = [*[(None, spec) for spec in own_specs(config.models)], *(_own_pair(m) for m in models)]
        check_unique_names([validate_model_name(ck.name) for ck in config.models.checkpoints if ck.name]
                           + [validate_model_name(spec.display_name()) for _, spec in self.own])
        self.specs = method_specs(config)
        self.started_group = distributed.launched() and not distributed.is_distributed()
        self.device = torch.device(distributed.init(config.run.device) if distributed.launched()
                                   else resolve_device(config.run.device))
        self.rank, self.ranks = distributed.rank(), distributed.world_size()
        self.folder = self._claim(out)
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.cpu_by_method: dict[str, float] = {}
        self._history: list[dict[str, float]] | None = None  # stages of earlier invocations of this run
        if config.run.threads:
            torch.set_num_threads(config.run.threads)

    def _claim(self, out: str | Path) -> RunFolder:
        """Rank 0 claims ``out`` (:meth:`RunFolder.create`, holding its lock); the others learn whether it
        could (a broadcast status) and join it, or stop with an error when it could not."""
        if self.ranks == 1:
            return RunFolder.create(out, self.config)
        folder, error = None, None
        if self.rank == 0:
            try:
                folder = RunFolder.create(out, self.config)
            except BinsightError as e:
                error = e
        if distributed.broadcast_int(0 if error is None and self.rank == 0 else 1) != 0:
            self._leave()
            if error is not None:
                raise error
            raise RunFolderError(f"rank 0 could not claim {out} (its message says why); nothing was run")
        return folder if folder is not None else RunFolder.open_for_rank(out, self.config)

    @property
    def main(self) -> bool:
        """Whether this process writes the run's shared files (rank 0, or the only process)."""
        return self.rank == 0

    def mine(self, units: Sequence[Any]) -> list[Any]:
        """This rank's share of a stage's units (in their fixed order, unit i to rank i % K)."""
        return list(units[self.rank::self.ranks])

    def sync(self) -> None:
        """Wait for every rank (after a stage); nothing in a single process."""
        distributed.barrier()

    def _leave(self) -> None:
        if self.started_group:
            distributed.cleanup()
            self.started_group = False

    # -- the whole run -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Every stage in order; returns verdicts.json's content (on every rank)."""
        started = time.perf_counter()
        try:
            if self.main:
                self.record_provenance()
            with self.stage("data"):
                data = self.load_images()
            with self.stage("models"):
                base = self.load_models()
            models = base + [v for m in base for v in variants(m, self.config.verdicts.robustness_surrogates)]
            self.check_explainers(models)
            for name, compute, which in (("predictions", self.compute_predictions, base),
                                         ("maps", self.compute_maps, models), ("measures", self.compute_measures, models),
                                         ("pairs", self.compute_pairs, models), ("sanity", self.compute_sanity, base)):
                with self.stage(name):
                    compute(which, data)
                    self.sync()
            with self.stage("verdicts"):
                verdicts = self.compute_verdicts(models) if self.main else None
                self.sync()
            self.timings["total_this_run"] = time.perf_counter() - started
            self.cpu["total_this_run"] = sum(self.cpu.values())
            self.save_timings()
            if verdicts is None:
                verdicts = json.loads(self.folder.path("verdicts.json").read_text(encoding="utf-8"))
        finally:
            self.folder.close()
            self._leave()
        return verdicts

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage: wall seconds in ``self.timings``, this process's CPU seconds in ``self.cpu``
        (both accumulated and saved to timings.json; on a shared machine CPU time tells the work apart
        from the waiting)."""
        start, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
            self.save_timings()

    @contextlib.contextmanager
    def clock(self, name: str) -> Iterator[None]:
        """Accumulate this process's CPU seconds of the body under ``name`` (timings.json's ``cpu_by_method``)."""
        start = time.process_time()
        try:
            yield
        finally:
            self.cpu_by_method[name] = self.cpu_by_method.get(name, 0.0) + time.process_time() - start

    def save_timings(self) -> None:
        """timings.json (rank 0): this invocation's stages (wall and CPU seconds of rank 0; ``ranks``: the
        processes that ran it), and the earlier invocations'."""
        if not self.main:
            return
        if self._history is None:
            old = self.folder.read_json("timings.json") or {}
            self._history = list(old.get("history", [])) + ([old["stages"]] if old.get("stages") else [])
        self.folder.write_json("timings.json", {"stages": self.timings, "cpu": self.cpu, "ranks": self.ranks,
                                                "cpu_by_method": self.cpu_by_method, "history": self._history})

    def record_provenance(self) -> None:
        """run.json's ``invocations``: versions (Python, torch, numpy, binsight), device and threads."""
        self.folder.record_provenance(self.device)

    @property
    def shows_progress(self) -> bool:
        """Progress bars on: ``run.progress``, and this is rank 0 (several ranks' bars on one terminal garble)."""
        return self.config.run.progress and self.rank == 0

    def progress(self, total: int, desc: str) -> tqdm:
        """A bar of this process's ``total`` units (under torchrun: rank 0's share, said in the label)."""
        label = desc if self.ranks == 1 else f"{desc} (process 1 of {self.ranks}, its share)"
        return tqdm(total=total, desc=label, unit="unit", disable=not self.shows_progress, leave=False)

    def spec(self, label: str) -> MethodSpec:
        return next(s for s in self.specs if s.label == label)

    # -- data ----------------------------------------------------------------------------------------
    def dataset(self):
        """The configured dataset split (:class:`binsight.data.ImageDataset`)."""
        from binsight.data import load_dataset

        d = self.config.data
        options = {key: value for key, value in (("masks", d.masks), ("size", d.image_size), ("channels", d.channels))
                   if value}
        return load_dataset(d.name, split=d.split, root=d.root or None, download=d.download, **options)

    def load_images(self) -> StudyImages:
        """The dataset's images chosen for the study (same ones on every rerun); recorded in images.json."""
        d = self.config.data
        ds = self.dataset()
        if d.n_images > len(ds):
            raise ConfigError(f"data.n_images = {d.n_images} but {d.name} ({d.split}) has only {len(ds)} images; "
                              "lower data.n_images")
        indices = np.sort(np.random.default_rng(d.seed).choice(len(ds), size=d.n_images, replace=False))
        index = torch.from_numpy(indices)
        data = StudyImages(indices, ds.images[index], ds.labels[index],
                           None if ds.masks is None else ds.masks[index], list(ds.classes))
        record = {"dataset": ds.name, "split": ds.split, "source": ds.source, "n": int(indices.size),
                  "checksum": _checksum(data), "has_masks": data.masks is not None, "classes": data.classes,
                  "indices": indices.tolist()}
        old = self.folder.read_json("images.json")
        self.data_shape, self.n_classes = tuple(data.images.shape[1:]), len(data.classes)
        if not self.main:
            return data
        if old is not None and old["checksum"] != record["checksum"]:
            raise RunFolderError(f"the images of {d.name} differ from those this run started with "
                                 f"(checksum {old['checksum'][:12]} then, {record['checksum'][:12]} now): the dataset "
                                 "files changed; use a new --out folder")
        self.folder.write_json("images.json", record)
        self.folder.save_examples(data.images[:EXAMPLES].numpy(), data.labels[:EXAMPLES].numpy())
        return data

    # -- models ------------------------------------------------------------------------------------
    def load_models(self) -> list[StudyModel]:
        """The run's models: from the run folder if already there; else trained (cached), the user's
        checkpoints or the user's own models. Names are checked unique before anything of the models is
        written. models.json lists every model of the table: the base models, then each BNN's surrogate
        variants (``"base"`` names their model). Several processes: missing models are trained spread over
        the ranks, then rank 0 records them and the others load them from the run folder."""
        recorded = self.folder.read_json("models.json")
        if recorded is None and self.ranks > 1:
            self._train_spread()
            if self.main:
                self._record_models()
            self.sync()
            recorded = self.folder.read_json("models.json")
        if recorded is None:
            return self._record_models()
        return self._reload(recorded)

    def _reload(self, recorded: list[dict[str, Any]]) -> list[StudyModel]:
        """The base models listed in models.json: binsight checkpoints from the run folder's copies, own
        models rebuilt from their specs (the same names as recorded, else refused)."""
        from binsight.models.checkpoint import load_checkpoint

        check_unique_names([info["name"] for info in recorded])
        base = [info for info in recorded if info.get("base", info["name"]) == info["name"]]
        own = {spec.display_name(): (module, spec) for module, spec in self.own}
        if sorted(own) != sorted(info["name"] for info in base if info.get("kind") == "own"):
            raise RunFolderError(f"the own models given ({', '.join(sorted(own)) or 'none'}) are not those this run "
                                 f"started with (models.json in {self.folder.root}); give the same models or a new --out")
        models = []
        for info in base:
            if info.get("kind") == "own":
                module = self._build_own(own[info["name"]])
            else:
                module = load_checkpoint(self.folder.path(info["checkpoint"]))[0]
            models.append(self._study_model(info, module))
        return models

    def _record_models(self) -> list[StudyModel]:
        obtained = [self._obtain(spec) for spec in self._model_specs()]
        check_unique_names([spec["name"] for spec, _, _, _ in obtained])
        models = []
        for spec, module, source, meta in tqdm(obtained, desc="models", disable=not self.shows_progress, leave=False):
            info = self._record_model(spec, module, source, meta)
            models.append(self._study_model(info, module))
        listed = [m.info for m in models] + [
            {**m.info, "name": v.name, "surrogate": v.surrogate, "base": m.name}
            for m in models for v in variants(m, self.config.verdicts.robustness_surrogates)]
        check_unique_names([info["name"] for info in listed])
        self.folder.write_json("models.json", listed)
        return models

    def _train_spread(self) -> None:
        """Models to be trained, spread over the ranks (model j by rank j % K, alone) into the cache."""
        for spec in self.mine([s for s in self._model_specs() if not s["path"] and "own" not in s]):
            self._obtain(spec)
        self.sync()

    def _study_model(self, info: dict[str, Any], module: nn.Module) -> StudyModel:
        return StudyModel(info["name"], info["precision"], info["group"], info["surrogate"], self._ready(module),
                          base=info["name"], info=info)

    def _model_specs(self) -> list[dict[str, Any]]:
        m = self.config.models
        own = [{"name": spec.display_name(), "precision": spec.precision, "path": "", "group": spec.group,
                "own": (module, spec)} for module, spec in self.own]
        if m.checkpoints or own:
            return [{"name": ck.name, "precision": ck.precision, "path": ck.path, "position": i, "group": str(i)}
                    for i, ck in enumerate(m.checkpoints)] + own
        return [{"name": f"{p}-{s}", "precision": p, "seed": s, "path": "", "group": str(s)}
                for p in m.precisions for s in m.seeds]

    def _build_own(self, own: tuple[nn.Module | None, Any]) -> nn.Module:
        """A user's own model ready for the study (:class:`binsight.models.factory.Normalized`): built by its
        factory (modules looked up in ``models.own_dir`` first) or the given module prepared; input_size
        and num_classes default to the dataset's."""
        from binsight.models.factory import load_model, model_from_module

        module, spec = own
        spec = dataclasses.replace(spec, input_size=spec.input_size or self.data_shape,
                                   num_classes=spec.num_classes or self.n_classes)
        if module is not None:
            return model_from_module(module, spec)
        own_dir = self.config.models.own_dir
        return load_model(spec, search_path=[own_dir] if own_dir else [])

    def _obtain(self, spec: dict[str, Any]) -> tuple[dict[str, Any], nn.Module, Path | None, dict[str, Any]]:
        """(spec with its name, model, checkpoint file, metadata): the user's checkpoint or own model, or
        the cached (trained) model. Training seeds from (seed, precision), so FP and BNN share no
        initialisation."""
        from binsight.nn import surrogate_of
        from binsight.models.checkpoint import load_checkpoint
        from binsight.train import cached_model

        if "own" in spec:
            return spec, self._build_own(spec["own"]), None, {}
        if spec["path"]:
            path = Path(spec["path"]).expanduser()
            module, meta = load_checkpoint(path)
            if not spec["precision"]:
                spec["precision"] = "bnn" if surrogate_of(module) is not None else "fp"
            if not spec["name"]:
                spec["name"] = f"{spec['precision']}-{spec['position']}"
            return spec, module, path, meta
        m, d = self.config.models, self.config.data
        epochs = m.epochs_fp if spec["precision"] == "fp" else m.epochs_bnn
        module, meta = cached_model(
            m.arch, spec["precision"], d.name, spec["seed"], epochs or None,
            data_root=d.root or None, train_subset=m.train_subset or None, batch_size=m.train_batch_size or None,
            test_subset=m.test_subset or None, surrogate=m.train_surrogate, first_last_fp=m.first_last_fp,
            device=str(self.device), progress=self.shows_progress, data_parallel=False,
        )
        return spec, module, Path(meta["checkpoint"]), meta

    def _record_model(self, spec: dict[str, Any], module: nn.Module, source: Path | None,
                      meta: dict[str, Any]) -> dict[str, Any]:
        """Copy the checkpoint (an own model: its weights) into models/ and describe the model (incl. its
        test accuracy and the surrogate it is explained with)."""
        if "own" in spec:
            return self._record_own(spec, module)
        from binsight.nn import surrogate_of

        from binsight.models.checkpoint import checkpoint_paths

        target = self.folder.model_path(spec["name"])
        for src, dst in zip(checkpoint_paths(source), checkpoint_paths(target)):  # weights, then the side file
            _copy_atomic(src, dst)
        accuracy, n = self._accuracy(module, meta, trained=not spec["path"])
        spec_of = getattr(module, "binsight_spec", {}) or {}
        surrogate = explain_surrogate(self.config, module, spec["precision"])
        return {
            "name": spec["name"], "precision": spec["precision"], "seed": spec.get("seed"), "group": spec["group"],
            "arch": spec_of.get("name", type(module).__name__), "kind": "binsight",
            "checkpoint": str(target.relative_to(self.folder.root)), "source": str(source),
            "trained_here": not spec["path"], "accuracy": accuracy, "accuracy_images": n,
            "surrogate_trained": surrogate_of(module), "surrogate": surrogate,
            "gradcam_layer": getattr(module, "gradcam_layer", None),
            "first_last_fp": spec_of.get("first_last_fp"), "epochs": meta.get("epochs"),
        }

    def _record_own(self, spec: dict[str, Any], module: nn.Module) -> dict[str, Any]:
        """An own model's record: its weights as used (models/NAME.safetensors), its factory and
        normalisation, and the surrogate its BNN sign uses backward ("own" where binsight cannot switch it)."""
        from safetensors.torch import save_file

        from binsight._io import atomic_path
        from binsight.models.factory import declared_gradcam_layer, surrogate_label
        from binsight.nn.foreign import sign_report

        user = spec["own"][1]
        target = self.folder.model_path(spec["name"])
        with atomic_path(target) as tmp:
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in module.model.state_dict().items()}, str(tmp))
        accuracy, n = self._accuracy(module, {}, trained=False)
        report = sign_report(module) if user.precision == "bnn" else None
        factory = user.factory if isinstance(user.factory, str) else getattr(user.factory, "__qualname__", "")
        return {
            "name": spec["name"], "precision": user.precision, "seed": None, "group": user.group,
            "arch": type(module.model).__name__, "kind": "own", "factory": factory or "(module given)",
            "kwargs": dict(user.kwargs), "checkpoint": str(target.relative_to(self.folder.root)),
            "source": str(user.weights) or "(weights as built)", "trained_here": False, "accuracy": accuracy,
            "accuracy_images": n, "surrogate_trained": None, "surrogate": surrogate_label(module),
            "sign": report.surrogate if report else "", "switchable": bool(report and report.switchable),
            "gradcam_layer": declared_gradcam_layer(module),
            "normalisation": ({"mean": list(user.mean), "std": list(user.std)} if user.mean is not None else "inside"),
            "first_last_fp": None, "epochs": None,
        }

    def _accuracy(self, module: nn.Module, meta: dict[str, Any], trained: bool) -> tuple[float, int]:
        """(top-1 accuracy, images): on the split the study draws from (not only the explained images;
        ``models.test_subset`` images of it, drawn with seed 0, where set); for a model trained here on
        the test split, the accuracy measured at training time."""
        d = self.config.data
        if trained and d.split == "test" and meta.get("test_accuracy") is not None:
            return float(meta["test_accuracy"]), int(meta.get("num_test", 0))
        from binsight.train import evaluate

        ds = self.dataset()
        subset = self.config.models.test_subset
        if 0 < subset < len(ds):
            ds = ds.subset(subset, seed=0)
        return evaluate(self._ready(module), ds, batch_size=self.config.run.batch_size, device=str(self.device)), len(ds)

    def _predict(self, module: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Predicted classes (N,) on the CPU, ``run.batch_size`` images at a time."""
        with torch.no_grad():
            return torch.cat([module(x.to(self.device)).argmax(1).cpu()
                              for x in torch.split(images, self.config.run.batch_size)])

    def _ready(self, module: nn.Module) -> nn.Module:
        return module.to(self.device).eval()

    # -- predictions ---------------------------------------------------------------------------------
    def compute_predictions(self, models: list[StudyModel], data: StudyImages) -> None:
        """Rows ``predicted`` (class index) and ``correct`` (0/1) of every model on every image."""
        for m in self.mine(models):
            if self.folder.unit_done("predictions", m.name):
                continue
            predicted = self._predict(m.module, data.images)
            values = {"predicted": predicted.numpy(), "correct": (predicted == data.labels).numpy()}
            self.folder.save_unit("predictions", m.name, to_rows(values, data.indices, method="", model=m.name))

    # -- maps ----------------------------------------------------------------------------------------
    def map_units(self, models: list[StudyModel]) -> list[tuple[StudyModel, MethodSpec, int, slice]]:
        """(model, method, chunk, positions): base models get every method; surrogate variants only the
        methods in the robustness check; chance maps only the base models."""
        units = []
        for m in models:
            for spec in self.specs:
                if m.is_variant and not spec.robustness:
                    continue
                units += [(m, spec, c, s) for c, s in iter_chunks(spec.n_images, self.config.run.chunk_size)]
        return units

    def compute_maps(self, models: list[StudyModel], data: StudyImages) -> None:
        """Maps of every model x method x chunk not yet in maps/."""
        todo = [u for u in self.mine(self.map_units(models)) if not self.folder.maps_done(u[0].name, u[1].label, u[2])]
        with self.progress(len(todo), "maps") as bar:
            for m, spec, c, s in todo:
                bar.set_postfix_str(f"{m.name} {spec.label}")
                with self.clock(f"maps/{spec.label}"):
                    maps, targets = self.explain(m, spec, data.images[s].to(self.device), data.labels[s], chunk=c)
                self.folder.save_maps(m.name, spec.label, c, maps.cpu().numpy(), targets.cpu().numpy(), data.indices[s])
                bar.update()

    def explain(self, model: StudyModel, spec: MethodSpec, x: torch.Tensor, labels: torch.Tensor, chunk: int,
                options: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(maps (n, 1, H, W), targets (n,)) of ``spec`` for images ``x``: the true labels explained by
        default (``methods.target``), else each model's predicted class."""
        targets = labels.to(x.device) if self.config.methods.target == "label" else None
        if spec.chance:
            with torch.no_grad():
                targets = model.module(x).argmax(1) if targets is None else targets
            maps = CHANCE_MAPS.get(spec.label)((x.shape[0], 1, x.shape[2], x.shape[3]), self._chance_seed(chunk))
            return maps.to(x.device), targets
        explanation = self.explainer(model, spec, chunk, options).explain(x, targets)
        return explanation.maps, explanation.targets

    def _chance_seed(self, chunk: int) -> int:
        return self.config.data.seed * 100_003 + chunk

    def explainer(self, model: StudyModel, spec: MethodSpec, chunk: int, options: dict[str, Any] | None = None):
        """The registered explainer of ``spec`` for ``model`` (see :func:`create_explainer`)."""
        return create_explainer(spec, model, chunk=chunk, batch_size=self.config.run.batch_size, options=options)

    def check_explainers(self, models: list[StudyModel]) -> None:
        """Build every method's explainer once for each model before any map is computed, so that an option
        an explainer refuses (e.g. a GradCAM layer a model lacks) is reported before hours of work."""
        for spec in self.specs:
            if not spec.chance:
                for m in models:
                    self.explainer(m, spec, chunk=0)

    # -- measures of single maps -----------------------------------------------------------------
    def compute_measures(self, models: list[StudyModel], data: StudyImages) -> None:
        """Degeneracy, noise, faithfulness, localisation and chance tests of every map chunk not yet measured."""
        todo = [(m, spec, c, s) for m, spec, c, s in self.mine(self.map_units(models))
                if not self.measured(m, spec, c)]
        with self.progress(len(todo), "measures") as bar:
            for m, spec, c, s in todo:
                bar.set_postfix_str(f"{m.name} {spec.label}")
                stored = self.folder.load_maps(m.name, spec.label, c)
                masks = None if data.masks is None else data.masks[s]
                with self.clock(f"measures/{spec.label}"):
                    rows = self.measure_chunk(m, spec, c, stored, data.images[s], masks)
                self.folder.save_unit("measures", (m.name, spec.label, c), rows)
                bar.update()

    def measured(self, model: StudyModel, spec: MethodSpec, chunk: int) -> bool:
        """Whether a chunk's measures are done: its rows stored and, with faithfulness, its curves too."""
        return (self.folder.unit_done("measures", (model.name, spec.label, chunk))
                and (not self.config.measures.faithfulness or self.folder.curves_done(model.name, spec.label, chunk)))

    def measure_chunk(self, model: StudyModel, spec: MethodSpec, chunk: int, stored: dict[str, np.ndarray],
                      images: torch.Tensor, masks: torch.Tensor | None) -> list[Row]:
        """Rows of every single-map measure for one chunk; writes the chunk's deletion / insertion curves."""
        ms = self.config.measures
        maps, targets = torch.from_numpy(stored["maps"]), torch.from_numpy(stored["targets"])
        values = map_values(maps, masks, noise_measures=ms.noise, localisation=ms.localisation,
                            dilation=ms.mask_dilation)
        if ms.faithfulness:
            values.update(self.faithfulness(model, spec.label, chunk, images, maps, targets))
        rows = to_rows(values, stored["images"], method=spec.label, model=model.name)
        tested = self.chance_positions(spec, chunk, len(stored["images"]))
        if tested.numel():
            chance = self.chance_test(model, chunk, images[tested], maps[tested], targets[tested],
                                      None if masks is None else masks[tested])
            rows += to_rows(chance, stored["images"][tested.numpy()], method=spec.label, model=model.name, omit_undefined=True)
        return rows

    def chance_positions(self, spec: MethodSpec, chunk: int, n: int) -> torch.Tensor:
        """Positions within a chunk of ``n`` images whose maps get the below-chance test: methods in
        ``measures.chance_methods``, on the first ``measures.chance_images`` images of the study."""
        ms = self.config.measures
        if not spec.chance_test:
            return torch.zeros(0, dtype=torch.long)
        first = chunk * self.config.run.chunk_size
        limit = ms.chance_images or self.config.data.n_images
        return torch.arange(n)[torch.arange(first, first + n) < limit]

    def chance_test(self, model: StudyModel, chunk: int, images: torch.Tensor, maps: torch.Tensor,
                    targets: torch.Tensor, masks: torch.Tensor | None) -> dict[str, np.ndarray]:
        """``below_chance`` and ``chance_fraction_M`` per map (NaN, left out of the table, for degenerate
        maps): ``measures.chance_maps`` unstructured and smoothness-matched chance maps of each map."""
        from binsight.metrics import chance

        ms = self.config.measures
        result = chance.below_chance(model.module, images.to(self.device), maps.to(self.device), targets.to(self.device),
                                     masks, n_chance=ms.chance_maps, seed=chunk, percentages=ms.road_percentages,
                                     dilation=ms.mask_dilation, batch_size=self.config.run.batch_size)
        return result.table_values()

    def faithfulness(self, model: StudyModel, label: str, chunk: int, images: torch.Tensor, maps: torch.Tensor,
                     targets: torch.Tensor) -> dict[str, np.ndarray]:
        """Deletion / insertion areas onto black (reference) and onto a blurred copy (curves saved to
        curves/), and ROAD most- and least-relevant-first."""
        from binsight.metrics import faithfulness

        ms, batch = self.config.measures, self.config.run.batch_size
        x, mp, t = images.to(self.device), maps.to(self.device), targets.to(self.device)
        curves = {substrate: faithfulness.deletion_insertion(model.module, x, mp, t, steps=ms.curve_steps,
                                                             substrate=substrate, insertion_substrate=substrate,
                                                             batch_size=batch)
                  for substrate in ("black", "blur")}
        self.folder.save_curves(model.name, label, chunk, fractions=curves["blur"].fractions,
                                deletion=curves["blur"].deletion, insertion=curves["blur"].insertion,
                                deletion_black=curves["black"].deletion, insertion_black=curves["black"].insertion)
        road = {order: faithfulness.road(model.module, x, mp, t, percentages=ms.road_percentages, order=order,
                                         seed=chunk, batch_size=batch) for order in ("morf", "lerf")}
        return {"deletion_auc": curves["black"].deletion_area, "insertion_auc": curves["black"].insertion_area,
                "deletion_blur_auc": curves["blur"].deletion_area, "insertion_blur_auc": curves["blur"].insertion_area,
                "road_morf": road["morf"].area, "road_lerf": road["lerf"].area}

    # -- similarity of pairs of models ---------------------------------------------------------------
    def pair_units(self, models: list[StudyModel]) -> list[tuple[StudyModel, StudyModel, MethodSpec]]:
        """(a, b, method): every pair of base models for each explanation method; for a method in the
        robustness check, also every pair within each surrogate's model set (FP models and the BNNs
        explained with that surrogate)."""
        base = [m for m in models if not m.is_variant]
        units, seen = [], set()
        for spec in (s for s in self.specs if not s.chance and s.label in self.config.methods.run):
            sets = [base] + ([self._surrogate_set(models, s) for s in self.config.verdicts.robustness_surrogates]
                             if spec.robustness else [])
            for group in sets:
                for i, a in enumerate(group):
                    for b in group[i + 1:]:
                        if (a.name, b.name, spec.label) not in seen:
                            seen.add((a.name, b.name, spec.label))
                            units.append((a, b, spec))
        return units

    @staticmethod
    def _surrogate_set(models: list[StudyModel], surrogate: str) -> list[StudyModel]:
        """FP models, and the BNNs explained with ``surrogate`` (a base model or its variant)."""
        return [m for m in models if m.precision == "fp" or (m.precision == "bnn" and m.surrogate == surrogate)]

    def compute_pairs(self, models: list[StudyModel], data: StudyImages) -> None:
        """Whole-map, object-mask and image-shuffled similarity of the maps of every pair of models."""
        if not self.config.measures.similarity:
            return
        todo = [(a, b, spec) for a, b, spec in self.mine(self.pair_units(models))
                if not self.folder.unit_done("pairs", (a.name, b.name, spec.label))]
        with self.progress(len(todo), "pairs") as bar:
            for a, b, spec in todo:
                rows = self.pair_rows(a.name, b.name, spec.label, data)
                self.folder.save_unit("pairs", (a.name, b.name, spec.label), rows)
                bar.update()

    def pair_rows(self, a: str, b: str, label: str, data: StudyImages) -> list[Row]:
        """Pair measures of the maps of models ``a`` and ``b`` on every image ``label`` explains."""
        from binsight.metrics import localisation, similarity

        ma, mb = self.folder.read_all_maps(a, label), self.folder.read_all_maps(b, label)
        if not np.array_equal(ma["images"], mb["images"]):
            raise RunFolderError(f"maps of {a} and {b} ({label}) cover different images; delete {self.folder.root / 'maps'} "
                                 "entries of one of them and rerun")
        n = ma["images"].size
        masks = None if data.masks is None else data.masks[:n]
        perm = similarity.shuffled_pairs(n, seed=self.config.data.seed) if n >= 2 else None
        grown = None if masks is None else localisation.dilate(masks, self.config.measures.mask_dilation)
        values = pair_values(torch.from_numpy(ma["maps"]), torch.from_numpy(mb["maps"]), top_k=self.config.measures.top_k,
                             masks=grown, perm=perm)
        return to_rows(values, ma["images"], method=label, model=a, model_b=b)

    # -- sanity ----------------------------------------------------------------------------------------
    def compute_sanity(self, models: list[StudyModel], data: StudyImages) -> None:
        """Cascading randomisation (Adebayo et al. 2018) on the first ``measures.sanity_images`` images,
        for the methods whose table sets ``sanity``."""
        if not self.config.measures.sanity:
            return
        n = min(self.config.measures.sanity_images, self.config.data.n_images)
        units = [(m, spec) for m in models for spec in self.specs if spec.sanity]
        todo = [(m, spec) for m, spec in self.mine(units) if not self.folder.unit_done("sanity", (m.name, spec.label))]
        with self.progress(len(todo), "sanity") as bar:
            for m, spec in todo:
                bar.set_postfix_str(f"{m.name} {spec.label}")
                rows = self.sanity_rows(m, spec, data.images[:n].to(self.device), data.labels[:n], data.indices[:n])
                self.folder.save_unit("sanity", (m.name, spec.label), rows)
                bar.update()

    def sanity_rows(self, model: StudyModel, spec: MethodSpec, x: torch.Tensor, labels: torch.Tensor,
                    idx: np.ndarray) -> list[Row]:
        """Similarity (Spearman, SSIM) of each image's map after randomising 1, 2, ... layers from the top
        (cascading) to its original map; the layers' names go to ``sanity_layers_MODEL.json``."""
        from binsight.metrics import sanity

        def explain(module: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            other = StudyModel(model.name, model.precision, model.group, model.surrogate, module)
            return self.explainer(other, spec, chunk=0, options=spec.sanity_options).attribute(images, targets)

        targets = labels.to(x.device) if self.config.methods.target == "label" else None
        result = sanity.randomisation_test(model.module, x, explain, targets=targets, mode="cascading",
                                           measures=("spearman", "ssim"), seed=0)
        self.folder.write_json(f"sanity_layers_{model.name}.json", list(result.layers))
        return [row for measure, table in result.similarity.items() for step, sims in enumerate(table, start=1)
                for row in to_rows({f"sanity_{measure}": sims}, idx, method=spec.label, model=model.name, step=step)]

    # -- verdicts -------------------------------------------------------------------------------------
    def compute_verdicts(self, models: list[StudyModel]) -> dict[str, Any]:
        """verdicts.json from the merged table and every model of the run (surrogate variants included)."""
        rows = self.folder.merge_measurements()
        infos = [model_info(m) for m in models]
        result = verdicts_module.compute_verdicts(rows, infos, self.config.verdicts, methods=list(self.config.methods.run))
        text = result.to_json()
        atomic_write_text(self.folder.path("verdicts.json"), text)
        return json.loads(text)


def run_study(config: StudyConfig | str | Path | None, out: str | Path, *,
              models: Sequence[Any] = ()) -> dict[str, Any]:
    """Run (or continue) a study from Python, e.g. in a notebook, on models the caller holds.

    config: a :class:`StudyConfig`, a TOML file or None (the default study). models: each a
    :class:`binsight.models.factory.ModelSpec` (built by its factory) or ``(module, spec)`` for a module
    already built (prepared by :func:`binsight.models.factory.model_from_module`); with models given (or
    ``[[models.own]]`` tables) nothing is trained. Every given module is left as it was (mode, weights,
    hooks, attributes). Returns verdicts.json's content; the report is built from ``out`` by
    ``binsight report``.
    """
    from binsight._utils import preserved_model

    if not isinstance(config, StudyConfig):
        config = load_config(config)
    with contextlib.ExitStack() as stack:
        for item in models:
            if isinstance(item, tuple):
                stack.enter_context(preserved_model(item[0]))
        return StudyRunner(config, out, models=models).run()


def _own_pair(item: Any) -> tuple[nn.Module | None, Any]:
    """(module or None, spec) of one entry of ``models``: a ModelSpec, or (module, ModelSpec)."""
    from binsight.models.factory import FactoryError, ModelSpec

    if isinstance(item, ModelSpec):
        return None, item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], ModelSpec):
        return item[0], item[1]
    raise FactoryError(f"models: expected a ModelSpec or (module, ModelSpec), got {type(item).__name__}; "
                       "describe each model with binsight.models.ModelSpec")


def to_rows(values: dict[str, np.ndarray], images: Sequence[int], *, method: str, model: str, model_b: str = "",
            step: int = 0, omit_undefined: bool = False) -> list[Row]:
    """Rows of ``values`` (measure -> (N,) per image); a non-finite value becomes ``"MEASURE:undefined"`` = 1
    (or no row, with ``omit_undefined``: measures that do not apply to a map, such as the chance test of a
    degenerate one)."""
    rows = []
    for measure, vals in values.items():
        for image, v in zip(images, np.asarray(vals, dtype=np.float64)):
            if omit_undefined and not np.isfinite(v):
                continue
            name, value = (measure, float(v)) if np.isfinite(v) else (f"{measure}:undefined", 1.0)
            rows.append(Row(measure=name, method=method, model=model, model_b=model_b, step=step, image=int(image),
                            value=value))
    return rows


def create_explainer(spec: MethodSpec, model: StudyModel, *, chunk: int, batch_size: int,
                     options: dict[str, Any] | None = None):
    """The registered explainer of ``spec`` for ``model``: the method's options (or ``options``), the
    model's surrogate, ``batch_size`` and, for a seeded explainer, the chunk's index as seed. An option
    the explainer refuses is a :class:`ConfigError` naming the method's table."""
    import binsight.explain as explain

    kwargs = dict(spec.options if options is None else options)
    kwargs["batch_size"] = batch_size
    if model.surrogate in surrogate_names():  # binsight's surrogates; a foreign BNN's own one is left as it is
        kwargs["surrogate"] = model.surrogate
    if spec.seeded:
        kwargs["seed"] = chunk
    try:
        return explain.get_explainer(spec.explainer, model.module, **kwargs)
    except ConfigError:
        raise
    except BinsightError as e:
        raise ConfigError(f"methods.{spec.label}: {e}") from None


def model_info(model: StudyModel) -> verdicts_module.ModelInfo:
    """The verdicts' description of a model of the table (name, precision, group, surrogate)."""
    return verdicts_module.ModelInfo(model.name, model.precision, model.group, model.surrogate)


def _checksum(data: StudyImages) -> str:
    import hashlib

    digest = hashlib.sha256(data.images.contiguous().numpy().tobytes())
    digest.update(data.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()


def _copy_atomic(source: Path, target: Path) -> None:
    from binsight._io import atomic_path

    if not source.is_file():
        raise RunFolderError(f"checkpoint file {source} not found")
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
