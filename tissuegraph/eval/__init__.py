"""Evaluation (``tg.eval``): metric kernels as pure functions.

Minimal package init of the ``culture`` branch, exporting only the retrieval/profiling kernels; the ``eval``
branch owns this file (the lead merges the exports below into it).
"""

from ._profiling import nn_accuracy, nsc, nscb, percent_replicating
from ._retrieval import average_precision, mean_average_precision

__all__ = ["average_precision", "mean_average_precision", "nn_accuracy", "nsc", "nscb", "percent_replicating"]
