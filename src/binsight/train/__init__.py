"""Training, evaluation and the model cache: :mod:`binsight.train.loop` (the recipe, ``train``,
``evaluate``) and :mod:`binsight.train.cache` (``cached_model``, ``train_checkpoint``, ``evaluate_checkpoint``).
"""

from binsight.train.cache import *  # noqa: F401,F403
from binsight.train.cache import __all__ as _cache_all
from binsight.train.loop import *  # noqa: F401,F403
from binsight.train.loop import __all__ as _loop_all

__all__ = [*_loop_all, *_cache_all]
