"""The study's report: figures and one self-contained ``report.html``, built from a run folder alone."""

from binsight.report.build import build_report, tqdm_progress

__all__ = ["build_report", "tqdm_progress"]
