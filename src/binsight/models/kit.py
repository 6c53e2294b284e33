"""The pieces an architecture is assembled from, in either precision.

An architecture is written once against a :class:`LayerKit`; the kit decides what each piece is:

=============  ==========================  ==============================================
piece          precision "fp"              precision "bnn"
=============  ==========================  ==============================================
``conv``       ``nn.Conv2d``               ``BinaryConv2d`` (``nn.Conv2d`` for the first layer)
``linear``     ``nn.Linear``               ``BinaryLinear`` (``nn.Linear`` for the last layer)
``act``        ``nn.ReLU``                 ``SignActivation`` (always placed right after a batch norm)
=============  ==========================  ==============================================

The first and last layers stay full precision in a BNN when ``first_last_fp`` is True (the default).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from binsight.nn import BinaryConv2d, BinaryLinear, SignActivation

PRECISIONS = ("fp", "bnn")


@dataclass(frozen=True)
class LayerKit:
    """Builds convs, linears and activations for one precision (see the module docstring)."""

    precision: str = "fp"
    surrogate: str = "ste"
    scaling: bool = False
    first_last_fp: bool = True

    @property
    def binary(self) -> bool:
        return self.precision == "bnn"

    def _binary_here(self, edge: bool) -> bool:
        return self.binary and not (edge and self.first_last_fp)

    def conv(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, *, edge: bool = False) -> nn.Conv2d:
        """A bias-free ``kernel`` x ``kernel`` conv with 'same' padding; ``edge`` marks the first layer."""
        args = dict(kernel_size=kernel, stride=stride, padding=kernel // 2, bias=False)
        if self._binary_here(edge):
            return BinaryConv2d(cin, cout, scaling=self.scaling, **args)
        return nn.Conv2d(cin, cout, **args)

    def linear(self, fin: int, fout: int, *, edge: bool = False) -> nn.Module:
        """A linear layer with bias; ``edge`` marks the classifier (last layer).

        A binary classifier is followed by a BatchNorm1d so its logits have a trainable scale.
        """
        if self._binary_here(edge):
            return nn.Sequential(BinaryLinear(fin, fout, bias=False, scaling=self.scaling), nn.BatchNorm1d(fout))
        return nn.Linear(fin, fout)

    def act(self) -> nn.Module:
        """ReLU (fp) or SignActivation with the kit's surrogate (bnn)."""
        return SignActivation(self.surrogate) if self.binary else nn.ReLU(inplace=False)
