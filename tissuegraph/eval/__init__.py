"""Evaluation of representations on the samples AnnData, and the diagnostics that show what they learned.

- :func:`evaluate`: every representation x classification / regression / retrieval / clustering on
  the same grouped, stratified, seeded splits; summary with bootstrap intervals; baseline gaps
  (learned vs the structural baseline and vs untrained twins) with verdicts; shortcut, confound and
  biological probes; CKA and k-NN overlap; metric-disagreement flags. Stored in ``uns['tg_eval']``.
- :func:`summarize`: the markdown report of an evaluation.
- :func:`gnn_controls`, :func:`perturb_cells`, :func:`rewire_degree_preserving`: what a GNN relies on.
- Retrieval and profiling kernels (copairs' definitions): :func:`average_precision`,
  :func:`mean_average_precision`, :func:`nsc`, :func:`nscb`, :func:`nn_accuracy`, :func:`percent_replicating`.
- Kernels: :func:`linear_cka`, :func:`knn_overlap`, :func:`bootstrap_ci`, :func:`paired_difference`,
  :func:`make_splits`.

Heavy dependencies (scanpy for Leiden) are imported only inside the functions that use them.
"""

from __future__ import annotations

from ._controls import CONTROLS, gnn_controls, perturb_cells, rewire_degree_preserving
from ._evaluate import evaluate
from ._probes import probe_targets
from ._profiling import nn_accuracy, nsc, nscb, percent_replicating
from ._retrieval import average_precision, mean_average_precision
from ._similarity import knn_indices, knn_overlap, linear_cka
from ._splits import make_splits
from ._stats import bootstrap_ci, paired_difference
from ._summary import summarize

__all__ = ["evaluate", "summarize", "gnn_controls", "perturb_cells", "rewire_degree_preserving", "CONTROLS",
           "probe_targets", "linear_cka", "knn_indices", "knn_overlap", "make_splits", "bootstrap_ci",
           "paired_difference", "average_precision", "mean_average_precision", "nn_accuracy", "nsc", "nscb",
           "percent_replicating"]
