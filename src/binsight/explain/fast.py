"""Opt-in fast paths for the iterative explainers (SmoothGrad, NeuroMask): one step replayed many times.

``fast=``:

* ``False`` (default): eager PyTorch.
* ``"graph"``: on CUDA, one whole step (a function of fixed-shape tensors, e.g. forward + backward of a chunk
  of noisy copies, or NeuroMask's mask + forward + loss + backward + RMSProp update) is captured once as a
  CUDA graph (after three warm-up runs on a side stream, into static input and output buffers) and replayed;
  a step of another shape (a smaller last chunk) is captured separately. The step must not synchronise with
  the host; a model that does (or fails to capture for another reason) runs eager with a
  :class:`~binsight._utils.BinsightWarning`. On any other device ``"graph"`` runs eager, silently: the maps
  are then exactly the eager maps.
* ``"compile"``: the model is wrapped by ``torch.compile`` (once per explainer); where that fails (no
  compiler, an unsupported model) the step runs eager with a warning.

``precision=``: ``"fp32"`` (default) or ``"bf16"``: on CUDA the model's forward pass runs under bf16
autocast with channels_last inputs (gradients and losses stay float32); elsewhere it is ignored with a
warning. bf16 maps are not equal to fp32 maps; check them (``benchmarks/bench_gpu.py`` reports rank
correlation and top-k agreement) before relying on them.

Every path computes the same function; maps of ``"graph"`` and ``"compile"`` agree with eager maps to
float rounding (1e-5).
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
import weakref
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from binsight._utils import BinsightWarning
from binsight.errors import BinsightError

FAST_MODES = (False, "graph", "compile")
PRECISIONS = ("fp32", "bf16")
_WARMUP_RUNS = 3
_MAX_GRAPHS = 4  # captured graphs kept per explainer (each holds its own static buffers)


def check_fast(fast: Any, *, error: type[BinsightError] = BinsightError) -> str | bool:
    """``fast`` if it is one of :data:`FAST_MODES` (None means False); anything else raises ``error``."""
    if fast is None or fast is False:
        return False
    if isinstance(fast, str) and fast in FAST_MODES:
        return fast
    raise error(f"fast must be False, 'graph' or 'compile', got {fast!r}")


def check_precision(precision: Any, *, error: type[BinsightError] = BinsightError) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`; anything else raises ``error``."""
    if precision not in PRECISIONS:
        raise error(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def applies(device: torch.device, precision: str) -> bool:
    """Whether ``precision`` takes effect on ``device``: bf16 only on CUDA (elsewhere a warning, then fp32)."""
    if precision == "bf16" and device.type != "cuda":
        warnings.warn(f"precision='bf16' applies on CUDA only; running float32 on {device.type}",
                      BinsightWarning, stacklevel=4)
        return False
    return precision == "bf16"


@contextlib.contextmanager
def autocast(enabled: bool) -> Iterator[None]:
    """bf16 autocast on CUDA where ``enabled``; nothing otherwise."""
    if not enabled:
        yield
        return
    with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):  # no weight cache: graph-safe
        yield


def model_input(x: torch.Tensor, bf16: bool) -> torch.Tensor:
    """``x`` in channels_last memory format for the bf16 path (4-D inputs only), else as it is."""
    return x.contiguous(memory_format=torch.channels_last) if bf16 and x.dim() == 4 else x


def model_fingerprint(model: nn.Module) -> tuple:
    """What a captured graph depends on besides its inputs: the identity and storage of every parameter and
    buffer, each module's mode, hook counts, surrogate and instance ``forward`` (a switched quantiser).
    Values written in place do not change it: a replay reads the current values."""
    parts: list[Any] = []
    for m in model.modules():
        parts.append((id(m), m.training, getattr(m, "surrogate", None), id(m.__dict__.get("forward")),
                      len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)))
        parts.extend((id(t), t.data_ptr()) for t in (*m._parameters.values(), *m._buffers.values()) if t is not None)
    return tuple(parts)


class StepRunner:
    """Runs ``step(*tensors) -> tensor or tuple of tensors`` eagerly, as CUDA graphs, or with a compiled model.

    ``step`` receives the model to call as its first argument (the compiled module on the ``"compile"``
    path). Outputs of a graph replay are static buffers, overwritten by the next replay of the same shape:
    the caller consumes (or clones) them first. Tensors the step writes in place (e.g. NeuroMask's w) must
    be passed as arguments; on the graph path they are copied into the static buffers before the replay and
    back after it (``inplace`` lists their argument positions).
    """

    def __init__(self, model: nn.Module, step: Callable[..., Any], fast: str | bool, *, inplace: Sequence[int] = ()):
        self.model, self.fast, self.inplace = model, fast, tuple(inplace)
        # A bound method of the explainer that owns this runner is held weakly: a strong reference would be a
        # cycle (explainer -> runner -> method -> explainer) that keeps the captured graphs' GPU memory until
        # Python's cyclic garbage collector happens to run.
        self._step = weakref.WeakMethod(step) if inspect.ismethod(step) else (lambda: step)
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], Any] | None] = {}
        self._compiled: nn.Module | None = None

    @property
    def step(self) -> Callable[..., Any]:
        """The step function (its owner, for a bound method, must still exist)."""
        step = self._step()
        if step is None:
            raise RuntimeError("the explainer that owns this StepRunner no longer exists")
        return step

    def __call__(self, *args: torch.Tensor) -> Any:
        if self.fast == "graph" and args[0].device.type == "cuda":
            return self._replay(args)
        if self.fast == "compile":
            return self._run_compiled(args)
        return self.step(self.model, *args)

    # -- CUDA graphs ---------------------------------------------------------------------------------
    def _replay(self, args: tuple[torch.Tensor, ...]) -> Any:
        key = (tuple((tuple(a.shape), a.dtype) for a in args), model_fingerprint(self.model))
        if key not in self._graphs:
            if len(self._graphs) >= _MAX_GRAPHS:
                self._graphs.clear()
            self._graphs[key] = self._capture(args)
        captured = self._graphs[key]
        if captured is None:  # capture failed once for this shape: eager from then on
            return self.step(self.model, *args)
        graph, static_args, static_out = captured
        for s, a in zip(static_args, args):
            s.copy_(a)
        graph.replay()
        for i in self.inplace:
            args[i].copy_(static_args[i])
        return static_out

    def _capture(self, args: tuple[torch.Tensor, ...]):
        static_args = [a.detach().clone() for a in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(side):
                for _ in range(_WARMUP_RUNS):  # warm-up: autograd and cuDNN set up outside the capture
                    warm = [a.clone() for a in static_args]
                    self.step(self.model, *warm)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self.step(self.model, *static_args)
        except RuntimeError as e:
            torch.cuda.synchronize()
            warnings.warn(f"the step could not be captured as a CUDA graph ({str(e).splitlines()[0]}); running eager",
                          BinsightWarning, stacklevel=5)
            return None
        return graph, static_args, static_out

    # -- torch.compile --------------------------------------------------------------------------------
    def _run_compiled(self, args: tuple[torch.Tensor, ...]) -> Any:
        if self._compiled is None:
            before = {i: args[i].clone() for i in self.inplace}
            try:
                self._compiled = torch.compile(self.model)
                return self.step(self._compiled, *args)
            except BinsightError:
                raise
            except Exception as e:  # noqa: BLE001 - no compiler, an unsupported model: eager it is
                for i, saved in before.items():
                    args[i].copy_(saved)  # undo a partial in-place update before the eager run
                self.fast = False
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                              "running eager", BinsightWarning, stacklevel=4)
                return self.step(self.model, *args)
        return self.step(self._compiled, *args)
