"""binsight: explain full-precision and binarized image classifiers, and measure the explanations."""

__version__ = "0.1.0"
