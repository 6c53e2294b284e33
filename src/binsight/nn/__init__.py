"""Binarized building blocks: sign with surrogate gradients, binary layers, surrogate switching."""

from binsight.nn.layers import (
    BinaryConv2d,
    BinaryLinear,
    SignActivation,
    binarize_weight,
    binary_layers,
    clip_latent_weights,
    sign,
)
from binsight.nn.surrogates import (
    DEFAULT_SURROGATE,
    SURROGATES,
    SurrogateError,
    get_surrogate,
    register_surrogate,
    surrogates,
)
from binsight.nn.switch import MIXED, sign_activations, surrogate_of, use_surrogate

__all__ = [
    "BinaryConv2d",
    "BinaryLinear",
    "DEFAULT_SURROGATE",
    "MIXED",
    "SURROGATES",
    "SignActivation",
    "SurrogateError",
    "binarize_weight",
    "binary_layers",
    "clip_latent_weights",
    "get_surrogate",
    "register_surrogate",
    "sign",
    "sign_activations",
    "surrogate_of",
    "surrogates",
    "use_surrogate",
]
