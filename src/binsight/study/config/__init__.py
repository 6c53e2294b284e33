"""The study's configuration: dataclasses whose defaults are the embedded default study, read from TOML.

* :mod:`~binsight.study.config.sections`: the sections (``[data]``, ``[models]``, ``[methods]``, ...), each
  field documented where it is declared (:func:`~binsight.study.config.sections.setting`);
* :mod:`~binsight.study.config.check`: values that cannot work, checked against binsight's registries;
* :mod:`~binsight.study.config.toml`: reading TOML (:func:`load_config`), writing it back (:func:`to_toml`)
  and the configuration hash (:func:`config_hash`).

Every name is importable from here (``from binsight.study.config import load_config``).

Methods. ``methods.run`` lists the methods explained; each has a table ``[methods.NAME]`` of generic study
keys (:class:`MethodConfig`: how many images, whether it is in the sanity check and the robustness check,
its convergence variant) and, beside them, the explainer's own keyword options (e.g. ``n_samples``), which
are checked against the explainer's signature. A table may name another registered explainer with
``explainer = "..."`` (``"captum:ClassName"`` included), so one explainer can run under two labels.

Hash. :func:`config_hash` covers every key except ``run.progress`` and ``run.threads`` (display and
speed only) and ``models.own_dir`` (where the project folder lies; the own models' tables are hashed as
written, their weights paths relative to it). ``models.lr_fp``, ``lr_bnn`` and ``augment`` are hashed only
where they are not the recipe's (0, 0, true), so that runs from before these settings keep their hash. ``run.batch_size`` and ``models.train_batch_size`` are hashed: the batch size changes the
order of floating-point reductions inside the model (results differ by about 1e-7), and training batches
change the trained weights, so a run continued with another batch size is refused as another
configuration rather than mixed. ``run.device`` is hashed as the device it resolves to ("auto" becomes
"cuda" or "cpu").
"""

from binsight.study.config.check import (AUTOMATIC_NAME, RUNNER_OPTIONS, TARGETS, arch_names, check_model_name,
                                         dataset_names, explainer_class, explainer_options, method_names, own_specs,
                                         resolve_device, surrogate_names, validate)
from binsight.study.config.sections import (CheckpointConfig, ConfigError, DataConfig, MeasuresConfig, MethodConfig,
                                            MethodsConfig, ModelsConfig, RunConfig, StudyConfig, VerdictsConfig,
                                            default_method_tables, help_of, setting)
from binsight.study.config.toml import (as_plain_dict, config_from_dict, config_hash, load_config, to_toml, toml_key,
                                        toml_value, tomllib)

__all__ = [
    "AUTOMATIC_NAME", "RUNNER_OPTIONS", "TARGETS", "CheckpointConfig", "ConfigError", "DataConfig", "MeasuresConfig",
    "MethodConfig", "MethodsConfig", "ModelsConfig", "RunConfig", "StudyConfig", "VerdictsConfig", "arch_names",
    "as_plain_dict", "check_model_name", "config_from_dict", "config_hash", "dataset_names", "default_method_tables",
    "explainer_class", "explainer_options", "help_of", "load_config", "method_names", "own_specs", "resolve_device",
    "setting", "surrogate_names", "to_toml", "toml_key", "toml_value", "tomllib", "validate",
]
