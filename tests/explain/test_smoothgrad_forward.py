"""smoothgrad-forward: the gradient of the Gaussian-smoothed network by Stein's identity, from forward passes only.

Known answers, each within a Monte Carlo tolerance derived from the estimator's variance (module docs of
binsight.explain.smoothgrad_forward): per pixel j, one pair's term is (f(x + z) - f(x - z)) z_j / (2 sigma^2)
with z = sigma e, e ~ N(0, I); its mean over n pairs has standard error sqrt(E[term_j^2] / n), and 5 standard
errors are allowed (the draws are seeded, so each test is deterministic)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from binsight._utils import BinsightWarning
from binsight.explain import ExplainerError, explainer_class, get_explainer
from binsight.explain.smoothgrad import image_noise
from binsight.explain.smoothgrad_forward import SmoothGradForward
from binsight.models import build_model
from binsight.nn import sign
from support import TinyNet, assert_same_state, model_state  # noqa: F401  (tests/ is on sys.path)

pytestmark = pytest.mark.filterwarnings("ignore:smoothgrad-forward maps are not converged")

SIDE = 4  # images 1 x 4 x 4: 16 pixels, so that the Monte Carlo error is small at affordable n
D = SIDE * SIDE


def weights(seed: int = 0) -> torch.Tensor:
    """A unit-norm direction over the D pixels, float32 (D,)."""
    w = torch.randn(D, generator=torch.Generator().manual_seed(seed))
    return w / w.norm()


class Linear(nn.Module):
    """Logits (x . w, 0)."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        first = x.flatten(1) @ self.w
        return torch.stack([first, torch.zeros_like(first)], 1)


class Bent(Linear):
    """Logits (fn(x . w - c), 0): with fn = sign a one-neuron BNN whose smoothed gradient is known in closed
    form; with fn = tanh a smooth model, |f(x + z) - f(x - z)| <= 2 |z . w|."""

    def __init__(self, w: torch.Tensor, c: float, fn):
        super().__init__(w)
        self.c, self.fn = c, fn

    def forward(self, x):
        first = self.fn(x.flatten(1) @ self.w - self.c)
        return torch.stack([first, torch.zeros_like(first)], 1)


class NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward was called")


class Guarded(Linear):
    """A linear model whose backward pass raises."""

    def forward(self, x):
        return super().forward(NoBackward.apply(x))


def images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 1, SIDE, SIDE, generator=torch.Generator().manual_seed(7))


def stein(model: nn.Module, x: torch.Tensor, **options) -> torch.Tensor:
    """The signed per-pixel estimate for class 0, float32 (N, D)."""
    return SmoothGradForward(model, reduction="none", signed=True, **options).attribute(x, 0).flatten(1)


def test_equals_steins_sum_and_the_gradient_of_a_linear_model():
    """For a linear model each pair's term is (z . w) z / sigma^2 exactly (the draws are SmoothGrad's), and its
    mean is w within 5 SE, Var(term_j) = |w|^2 + w_j^2 (E e_j^4 = 3)."""
    w, x, n, std = weights(), images(), 4000, 0.2
    got = stein(Linear(w), x, n_samples=n, noise_std=std, seed=5)
    for i in range(x.shape[0]):
        z = image_noise(5, i, n, (1, SIDE, SIDE), std).flatten(1).double()
        exact = ((z @ w.double())[:, None] * z).mean(0) / std**2
        assert torch.allclose(got[i].double(), exact, rtol=1e-3, atol=1e-4)
        tolerance = 5 * ((w.norm() ** 2 + w**2) / n).sqrt()
        assert ((got[i] - w).abs() <= tolerance).all()


def test_a_sign_step_gives_the_closed_form_smoothed_gradient_without_a_surrogate():
    """sign(w . x - c) smoothed by N(0, sigma^2 I): gradient 2 phi(u) w / (sigma |w|), u = (w . x - c) / (sigma |w|).
    A pair's term is (f+ - f-) e_j / (2 sigma), |f+ - f-| <= 2, so Var(term_j) <= 1 / sigma^2."""
    w, x, n, std = weights(1), images(1), 40000, 0.5
    c = float(x.flatten(1)[0] @ w) - 0.3 * std  # u = 0.3: the step is well inside the noise
    u = 0.3
    expected = 2 * math.exp(-u * u / 2) / math.sqrt(2 * math.pi) * w / std
    for surrogate in ("ste", "identity"):  # the surrogate changes nothing: no gradient is taken
        got = stein(Bent(w, c, sign), x, n_samples=n, noise_std=std, surrogate=surrogate)[0]
        assert ((got - expected).abs() <= 5 / (std * math.sqrt(n))).all()
    assert (expected.abs() > 10 / (std * math.sqrt(n))).sum() >= D // 2  # the test can tell the answer from 0


def test_converges_to_smoothgrads_mean_gradient_on_a_smooth_model():
    """Both estimate the smoothed gradient: Stein's term_j has E[term_j^2] <= |w|^2 + 2 w_j^2, SmoothGrad's
    gradient sech^2(.) w_j is at most |w_j|; each within 5 SE of the common mean."""
    w, x, n = weights(2), images(), 20000
    model = Bent(w, float(x.flatten(1).mean(0) @ w), torch.tanh)
    ours = stein(model, x, n_samples=n, noise_level=0.3)
    theirs = get_explainer("smoothgrad", model, n_samples=n, noise_level=0.3, reduction="none",
                           signed=True).attribute(x, 0).flatten(1)
    tolerance = 5 * ((1 + 2 * w**2) / n).sqrt() + 5 * w.abs() / math.sqrt(n)
    assert ((ours - theirs).abs() <= tolerance).all()
    assert (theirs.abs() > 2 * tolerance).any()  # a real gradient, not two zeros


def test_never_calls_backward():
    w, x = weights(), images()
    with pytest.raises(RuntimeError, match="backward was called"):
        get_explainer("gradient", Guarded(w)).attribute(x, 0)  # the model's backward does raise
    maps = get_explainer("smoothgrad-forward", Guarded(w), n_samples=50).attribute(x, 0)
    assert maps.shape == (2, 1, SIDE, SIDE) and torch.isfinite(maps).all() and maps.abs().sum() > 0


def test_deterministic_by_seed_and_independent_of_batch_size():
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    before = model_state(model)
    full = get_explainer("smoothgrad-forward", model, n_samples=5, seed=3).attribute(x, 1)
    assert_same_state(before, model_state(model))
    assert torch.equal(full, get_explainer("smoothgrad-forward", model, n_samples=5, seed=3).attribute(x, 1))
    assert not torch.equal(full, get_explainer("smoothgrad-forward", model, n_samples=5, seed=4).attribute(x, 1))
    for batch_size in (1, 3, 7):  # a pair is two copies: 1 splits a pair, 3 and 7 split images' pairs across chunks
        chunked = get_explainer("smoothgrad-forward", model, n_samples=5, seed=3, batch_size=batch_size).attribute(x, 1)
        assert torch.allclose(chunked, full, rtol=1e-4, atol=1e-6 * float(full.abs().max())), batch_size


def test_a_bnn_is_explained_as_found_and_the_surrogate_changes_nothing():
    torch.manual_seed(0)
    model = build_model("small-cnn", "bnn").eval()
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    before = model_state(model)
    ste = get_explainer("smoothgrad-forward", model, n_samples=5, surrogate="ste").explain(x, 1)
    identity = get_explainer("smoothgrad-forward", model, n_samples=5, surrogate="identity").explain(x, 1)
    assert_same_state(before, model_state(model))
    assert torch.equal(ste.maps, identity.maps) and torch.isfinite(ste.maps).all() and ste.maps.abs().sum() > 0


def test_split_half_check_both_sides():
    w, x = weights(), images()
    with pytest.warns(BinsightWarning, match=r"smoothgrad-forward maps are not converged at n_samples=4"):
        few = get_explainer("smoothgrad-forward", Linear(w), n_samples=4).explain(x, 0)
    assert few.extras["unconverged"].all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", BinsightWarning)
        many = get_explainer("smoothgrad-forward", Linear(w), n_samples=20000).explain(x, 0)
    assert (many.extras["split_half_reliability"] > 0.9).all() and not many.extras["unconverged"].any()
    one = get_explainer("smoothgrad-forward", Linear(w), n_samples=1).explain(x, 0)
    assert torch.isnan(one.extras["split_half_reliability"]).all()


def test_class_and_options():
    cls = explainer_class("smoothgrad-forward")
    assert cls is SmoothGradForward and cls.seeded and not cls.signed
    params = get_explainer("smoothgrad-forward", Linear(weights())).params()
    assert params["n_samples"] == 1000 and params["noise_level"] == 0.15 and params["seed"] == 0
    model = Linear(weights())
    for bad, message in [({"n_samples": 0}, "n_samples must be a positive integer"),
                         ({"n_samples": 2.5}, "n_samples must be a positive integer"),
                         ({"noise_level": 0}, "divides by the noise std"),
                         ({"noise_std": 0.0}, "divides by the noise std"),
                         ({"noise_std": -1.0}, "noise_std must be a finite number"),
                         ({"seed": -1}, "seed must be a non-negative integer"),
                         ({"reduction": "median"}, "unknown channel reduction")]:
        with pytest.raises(ExplainerError, match=message):
            get_explainer("smoothgrad-forward", model, **bad)
    with pytest.raises(ExplainerError, match="image 1 is constant.*give noise_std > 0"):
        get_explainer("smoothgrad-forward", model, n_samples=2).attribute(torch.cat([images(1), torch.ones(1, 1, 4, 4)]), 0)
    maps = get_explainer("smoothgrad-forward", model, n_samples=2, noise_std=0.1).attribute(torch.ones(1, 1, 4, 4), 0)
    assert torch.isfinite(maps).all()
