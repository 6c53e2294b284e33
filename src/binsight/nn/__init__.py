"""Binarized building blocks: sign with surrogate gradients, binary layers, surrogate switching."""

from binsight.nn.foreign import (
    OWN,
    SignReport,
    describe_surrogate,
    no_input_gradient,
    sign_report,
    use_surrogate_foreign,
    warn_if_no_gradient,
)
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
    "OWN",
    "SURROGATES",
    "SignActivation",
    "SignReport",
    "SurrogateError",
    "binarize_weight",
    "binary_layers",
    "clip_latent_weights",
    "describe_surrogate",
    "get_surrogate",
    "no_input_gradient",
    "register_surrogate",
    "sign",
    "sign_activations",
    "sign_report",
    "surrogate_of",
    "surrogates",
    "use_surrogate",
    "use_surrogate_foreign",
    "warn_if_no_gradient",
]
