"""The study, stage by stage: data -> models -> maps -> measures -> pairs -> sanity -> verdicts.

The report is built from the finished folder by the layer above (``binsight.report``, called by the
command line), so that the study never imports the report.

Every stage is a list of work units; a unit whose output file exists in the run folder is skipped, so a
stopped run continues where it stopped (see :mod:`binsight.study.store`). Units are computed with fixed
seeds (SmoothGrad noise, NeuroMask initialisation, the random baseline: seeded by chunk), so a unit
recomputed after a stop gives the same numbers as it would have the first time.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from binsight.study.config import BASELINES, StudyConfig
from binsight.study.store import Row, RunFolder, RunFolderError, iter_chunks
from binsight.study.verdicts import ModelInfo, compute_verdicts

EXAMPLES = 8  # images kept in examples.npz, for the report's grid


@dataclass
class StudyModel:
    """A model of the study: its table name, precision, and the loaded module (eval mode, on the device)."""

    name: str
    precision: str
    module: nn.Module
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyImages:
    """The explained images: dataset indices (n,), images (n, C, H, W) in [0, 1], masks (n, 1, H, W) or None."""

    indices: np.ndarray
    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    classes: list[str]


class StudyRunner:
    """Runs (or continues) one study in one run folder. ``run()`` does every stage and returns the summary."""

    def __init__(self, config: StudyConfig, out: str | Path):
        self.config = config
        self.folder = RunFolder.create(out, config)
        self.timings: dict[str, float] = {}
        self._history: list[dict[str, float]] | None = None  # stages of earlier invocations of this run
        self.device = torch.device(config.run.device)
        self.methods = config.method_names()
        if config.run.threads:
            torch.set_num_threads(config.run.threads)

    # -- the whole run -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Every stage in order; returns verdicts.json's content."""
        started = time.perf_counter()
        try:
            with self.stage("data"):
                data = self.load_images()
            with self.stage("models"):
                models = self.load_models(data)
            with self.stage("maps"):
                self.compute_maps(models, data)
            with self.stage("measures"):
                self.compute_measures(models, data)
            with self.stage("pairs"):
                self.compute_pairs(models, data)
            with self.stage("sanity"):
                self.compute_sanity(models, data)
            with self.stage("verdicts"):
                verdicts = self.compute_verdicts(models)
            self.timings["total_this_run"] = time.perf_counter() - started
            self.save_timings()
        finally:
            self.folder.close()
        return verdicts

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage (seconds, accumulated in ``self.timings`` and saved to timings.json)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
            self.save_timings()

    def save_timings(self) -> None:
        """timings.json: this invocation's stages, and the earlier invocations of the same run."""
        if self._history is None:
            old = self.folder.read_json("timings.json") or {}
            self._history = list(old.get("history", [])) + ([old["stages"]] if old.get("stages") else [])
        self.folder.write_json("timings.json", {"stages": self.timings, "history": self._history})

    def progress(self, total: int, desc: str) -> tqdm:
        return tqdm(total=total, desc=desc, unit="unit", disable=not self.config.run.progress, leave=False)

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
            raise RunFolderError(f"data.n_images = {d.n_images} but {d.name} ({d.split}) has only {len(ds)} images; "
                                 "lower data.n_images")
        indices = np.sort(np.random.default_rng(d.seed).choice(len(ds), size=d.n_images, replace=False))
        index = torch.from_numpy(indices)
        data = StudyImages(indices, ds.images[index], ds.labels[index],
                           None if ds.masks is None else ds.masks[index], list(ds.classes))
        record = {"dataset": ds.name, "split": ds.split, "source": ds.source, "n": int(indices.size),
                  "checksum": _checksum(data), "has_masks": data.masks is not None, "classes": data.classes,
                  "indices": indices.tolist()}
        old = self.folder.read_json("images.json")
        if old is not None and old["checksum"] != record["checksum"]:
            raise RunFolderError(f"the images of {d.name} differ from those this run started with "
                                 f"(checksum {old['checksum'][:12]} then, {record['checksum'][:12]} now): the dataset "
                                 "files changed; use a new --out folder")
        self.folder.write_json("images.json", record)
        self.folder.save_examples(data.images[:EXAMPLES].numpy(), data.labels[:EXAMPLES].numpy())
        return data

    # -- models ------------------------------------------------------------------------------------
    def load_models(self, data: StudyImages) -> list[StudyModel]:
        """Models of the run: from the run folder if already there; else trained (cached) or the user's."""
        from binsight.train import load_checkpoint

        recorded = self.folder.read_json("models.json")
        if recorded is not None:
            models = []
            for info in recorded:
                module, _ = load_checkpoint(self.folder.root / info["checkpoint"])
                models.append(StudyModel(info["name"], info["precision"], self._ready(module), info))
            return models
        specs = self._model_specs()
        models = []
        for spec in tqdm(specs, desc="models", disable=not self.config.run.progress, leave=False):
            module, source, meta = self._obtain(spec, data)
            info = self._record_model(spec, module, source, meta)
            models.append(StudyModel(spec["name"], spec["precision"], self._ready(module), info))
        self.folder.write_json("models.json", [m.info for m in models])
        return models

    def _model_specs(self) -> list[dict[str, Any]]:
        m = self.config.models
        if m.checkpoints:
            return [{"name": ck.name, "precision": ck.precision, "path": ck.path, "position": i}
                    for i, ck in enumerate(m.checkpoints)]
        return [{"name": f"{p}-{s}", "precision": p, "seed": s, "path": ""} for p in m.precisions for s in m.seeds]

    def _obtain(self, spec: dict[str, Any], data: StudyImages) -> tuple[nn.Module, Path, dict[str, Any]]:
        """(model, checkpoint file, its metadata): the user's checkpoint, or the cached (trained) model."""
        from binsight.nn import surrogate_of
        from binsight.train import cached_model, load_checkpoint

        if spec["path"]:
            path = Path(spec["path"]).expanduser()
            module, meta = load_checkpoint(path)
            if not spec["precision"]:
                spec["precision"] = "bnn" if surrogate_of(module) is not None else "fp"
            if not spec["name"]:
                spec["name"] = f"{spec['precision']}-{spec['position']}"
            return module, path, meta
        m, d = self.config.models, self.config.data
        epochs = m.epochs_fp if spec["precision"] == "fp" else m.epochs_bnn
        module, meta = cached_model(
            m.arch, spec["precision"], d.name, spec["seed"], epochs,
            data_root=d.root or None, train_subset=m.train_subset or None, batch_size=m.train_batch_size,
            test_subset=m.test_subset or None, surrogate=m.train_surrogate, first_last_fp=m.first_last_fp,
            device=self.config.run.device, progress=self.config.run.progress,
        )
        return module, Path(meta["checkpoint"]), meta

    def _record_model(self, spec: dict[str, Any], module: nn.Module, source: Path, meta: dict[str, Any]) -> dict[str, Any]:
        """Copy the checkpoint into models/ and describe the model (incl. its test accuracy)."""
        from binsight.nn import surrogate_of

        target = self.folder.root / "models" / f"{spec['name']}.safetensors"
        _copy_atomic(source, target)
        _copy_atomic(source.with_suffix(".json"), target.with_suffix(".json"))
        accuracy, n = self._accuracy(module, meta, trained=not spec["path"])
        spec_of = getattr(module, "binsight_spec", {}) or {}
        return {
            "name": spec["name"], "precision": spec["precision"], "seed": spec.get("seed"),
            "arch": spec_of.get("name", type(module).__name__),
            "checkpoint": str(target.relative_to(self.folder.root)), "source": str(source),
            "trained_here": not spec["path"], "accuracy": accuracy, "accuracy_images": n,
            "surrogate_trained": surrogate_of(module),
            "surrogate_explained": (self.config.models.explain_surrogate or surrogate_of(module)),
            "first_last_fp": spec_of.get("first_last_fp"), "epochs": meta.get("epochs"),
        }

    def _accuracy(self, module: nn.Module, meta: dict[str, Any], trained: bool) -> tuple[float, int]:
        """(top-1 accuracy, images): on the whole split the study draws from (not only the explained
        images); for a model trained here on the test split, the accuracy measured at training time."""
        d = self.config.data
        if trained and d.split == "test" and meta.get("test_accuracy") is not None:
            return float(meta["test_accuracy"]), int(meta.get("num_test", 0))
        ds = self.dataset()
        model = self._ready(module)
        correct = 0
        with torch.no_grad():
            for x, y in zip(torch.split(ds.images, self.config.run.batch_size), torch.split(ds.labels, self.config.run.batch_size)):
                correct += int((model(x.to(self.device)).argmax(1).cpu() == y).sum())
        return correct / len(ds), len(ds)

    def _ready(self, module: nn.Module) -> nn.Module:
        return module.to(self.device).eval()

    # -- maps ----------------------------------------------------------------------------------------
    def chunks(self, method: str) -> list[tuple[int, slice]]:
        """The work units of ``method``: (chunk index, positions in the study's images)."""
        n = self.config.data.n_images
        if method == "neuromask" and self.config.methods.neuromask.n_images:
            n = min(n, self.config.methods.neuromask.n_images)
        return list(iter_chunks(n, self.config.run.chunk_size))

    def compute_maps(self, models: list[StudyModel], data: StudyImages) -> None:
        """Maps of every model x method x chunk not yet in maps/."""
        todo = [(m, method, c, s) for m in models for method in self.methods for c, s in self.chunks(method)
                if not self.folder.maps_path(m.name, method, c).is_file()]
        with self.progress(len(todo), "maps") as bar:
            for m, method, c, s in todo:
                bar.set_postfix_str(f"{m.name} {method}")
                x = data.images[s].to(self.device)
                maps, targets = self.explain(m, method, x, chunk=c)
                self.folder.save_maps(m.name, method, c, maps.cpu().numpy(), targets.cpu().numpy(), data.indices[s])
                bar.update()

    def explain(self, model: StudyModel, method: str, x: torch.Tensor, chunk: int,
                iterations: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(maps (n, 1, H, W), targets (n,)) of ``method`` (or a baseline) for images ``x``, target = predicted."""
        from binsight.metrics.baselines import gaussian_map, random_map

        if method in BASELINES:
            with torch.no_grad():
                targets = model.module(x).argmax(1)
            shape = (x.shape[0], 1, x.shape[2], x.shape[3])
            maps = random_map(shape, seed=self.config.data.seed * 100_003 + chunk) if method == "random" else gaussian_map(shape)
            return maps.to(x.device), targets
        explanation = self.explainer(model.module, method, chunk, iterations).explain(x)
        return explanation.maps, explanation.targets

    def explainer(self, module: nn.Module, method: str, chunk: int, iterations: int | None = None):
        """The configured explainer of ``method`` for ``module``; seeds depend on the chunk only."""
        from binsight.explain import get_explainer

        me, m = self.config.methods, self.config.models
        common = {"surrogate": m.explain_surrogate or None, "batch_size": self.config.run.batch_size}
        if method == "gradient":
            return get_explainer("gradient", module, **common)
        if method == "smoothgrad":
            return get_explainer("smoothgrad", module, n_samples=me.smoothgrad.n_samples,
                                 noise_level=me.smoothgrad.noise, seed=chunk, **common)
        if method == "gradcam":
            return get_explainer("gradcam", module, layer=me.gradcam.layer or None, **common)
        if method == "neuromask":
            preset = None if me.neuromask.preset == "auto" else me.neuromask.preset
            return get_explainer("neuromask", module, preset=preset, iterations=iterations or me.neuromask.iterations,
                                 seed=chunk, return_history=False, **common)
        raise ValueError(f"unknown method {method!r}")

    # -- measures of single maps -----------------------------------------------------------------
    def compute_measures(self, models: list[StudyModel], data: StudyImages) -> None:
        """Noise, faithfulness, localisation and degeneracy of every stored map chunk not yet measured."""
        todo = [(m, method, c, s) for m in models for method in self.methods for c, s in self.chunks(method)
                if not self.folder.unit_done("measures", f"{m.name}__{method}__{c:04d}")]
        with self.progress(len(todo), "measures") as bar:
            for m, method, c, s in todo:
                bar.set_postfix_str(f"{m.name} {method}")
                stored = self.folder.load_maps(m.name, method, c)
                rows = self.measure_chunk(m, method, c, stored, data.images[s], None if data.masks is None else data.masks[s])
                self.folder.save_unit("measures", f"{m.name}__{method}__{c:04d}", rows)
                bar.update()

    def measure_chunk(self, model: StudyModel, method: str, chunk: int, stored: dict[str, np.ndarray],
                      images: torch.Tensor, masks: torch.Tensor | None) -> list[Row]:
        """Rows of every single-map measure for one chunk; writes the chunk's deletion / insertion curves."""
        from binsight.metrics import baselines, localisation, noise

        ms = self.config.measures
        maps, targets, idx = torch.from_numpy(stored["maps"]), torch.from_numpy(stored["targets"]), stored["images"]
        values: dict[str, np.ndarray] = {"degenerate": baselines.is_degenerate(maps).astype(np.float64)}
        if ms.noise:
            values["total_variation"] = noise.total_variation(maps)
            values["high_frequency_energy"] = noise.high_frequency_energy(maps)
        if ms.localisation and masks is not None:
            values["pointing_game"] = localisation.pointing_game(maps, masks)
            values["energy_inside"] = localisation.energy_inside(maps, masks)
        if ms.faithfulness:
            values.update(self.faithfulness(model, method, chunk, images, maps, targets))
        return [Row(measure=name, method=method, model=model.name, model_b="", step=0, image=int(i), value=float(v))
                for name, vals in values.items() for i, v in zip(idx, vals)]

    def faithfulness(self, model: StudyModel, method: str, chunk: int, images: torch.Tensor, maps: torch.Tensor,
                     targets: torch.Tensor) -> dict[str, np.ndarray]:
        """Deletion / insertion areas (curves saved to curves/) and ROAD most- and least-relevant-first."""
        from binsight.metrics import faithfulness

        ms = self.config.measures
        x, mp, t = images.to(self.device), maps.to(self.device), targets.to(self.device)
        batch = self.config.run.batch_size
        curves = faithfulness.deletion_insertion(model.module, x, mp, t, steps=ms.curve_steps, batch_size=batch)
        self.folder.save_curves(model.name, method, chunk, fractions=curves.fractions, deletion=curves.deletion,
                                insertion=curves.insertion)
        road = {order: faithfulness.road(model.module, x, mp, t, percentages=ms.road_percentages, order=order,
                                         seed=chunk, batch_size=batch) for order in ("morf", "lerf")}
        return {"deletion_auc": curves.deletion_area, "insertion_auc": curves.insertion_area,
                "road_morf": road["morf"].area, "road_lerf": road["lerf"].area}

    # -- similarity of pairs of models ---------------------------------------------------------------
    def compute_pairs(self, models: list[StudyModel], data: StudyImages) -> None:
        """Spearman, SSIM and top-k IoU of the two maps of every image, for every pair of models."""
        if not self.config.measures.similarity:
            return
        pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
        todo = [(a, b, method, c) for a, b in pairs for method in self.config.methods.run for c, _ in self.chunks(method)
                if not self.folder.unit_done("pairs", f"{a.name}__{b.name}__{method}__{c:04d}")]
        with self.progress(len(todo), "pairs") as bar:
            for a, b, method, c in todo:
                rows = self.pair_rows(a.name, b.name, method, c)
                self.folder.save_unit("pairs", f"{a.name}__{b.name}__{method}__{c:04d}", rows)
                bar.update()

    def pair_rows(self, a: str, b: str, method: str, chunk: int) -> list[Row]:
        from binsight.metrics import similarity

        ma, mb = self.folder.load_maps(a, method, chunk), self.folder.load_maps(b, method, chunk)
        x, y = torch.from_numpy(ma["maps"]), torch.from_numpy(mb["maps"])
        values = {"spearman": similarity.spearman(x, y), "ssim": similarity.ssim(x, y),
                  "top_k_iou": similarity.top_k_iou(x, y, k=self.config.measures.top_k)}
        return [Row(measure=name, method=method, model=a, model_b=b, step=0, image=int(i), value=float(v))
                for name, vals in values.items() for i, v in zip(ma["images"], vals)]

    # -- sanity ----------------------------------------------------------------------------------------
    def compute_sanity(self, models: list[StudyModel], data: StudyImages) -> None:
        """Cascading randomisation (Adebayo et al. 2018) on the first ``measures.sanity_images`` images."""
        if not self.config.measures.sanity:
            return
        n = min(self.config.measures.sanity_images, self.config.data.n_images)
        methods = [method for method in self.config.methods.run if method in self.config.measures.sanity_methods]
        todo = [(m, method) for m in models for method in methods
                if not self.folder.unit_done("sanity", f"{m.name}__{method}")]
        with self.progress(len(todo), "sanity") as bar:
            for m, method in todo:
                bar.set_postfix_str(f"{m.name} {method}")
                rows = self.sanity_rows(m, method, data.images[:n].to(self.device), data.indices[:n])
                self.folder.save_unit("sanity", f"{m.name}__{method}", rows)
                bar.update()

    def sanity_rows(self, model: StudyModel, method: str, x: torch.Tensor, idx: np.ndarray) -> list[Row]:
        """Similarity (Spearman, SSIM) of each image's map after randomising 1, 2, ... layers from the top
        (cascading) to its original map; the layers' names go to ``sanity_layers_MODEL.json``."""
        from binsight.metrics import sanity

        iterations = None
        if method == "neuromask":
            iterations = self.config.methods.neuromask.sanity_iterations or self.config.methods.neuromask.iterations

        def explain(module: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return self.explainer(module, method, chunk=0, iterations=iterations).attribute(images, targets)

        result = sanity.randomisation_test(model.module, x, explain, mode="cascading", measures=("spearman", "ssim"), seed=0)
        self.folder.write_json(f"sanity_layers_{model.name}.json", list(result.layers))
        return [Row(f"sanity_{measure}", method, model.name, "", step, int(i), float(v))
                for measure, table in result.similarity.items()
                for step, sims in enumerate(table, start=1) for i, v in zip(idx, sims)]

    # -- verdicts -------------------------------------------------------------------------------------
    def compute_verdicts(self, models: list[StudyModel]) -> dict[str, Any]:
        rows = self.folder.merge_measurements()
        infos = [ModelInfo(m.name, m.precision) for m in models]
        verdicts = compute_verdicts(rows, infos, self.methods, self.config.verdicts)
        self.folder.write_json("verdicts.json", verdicts)
        return verdicts


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
