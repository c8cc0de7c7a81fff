"""The report lists the evaluation's flags however they are stored (a list, or an array after .h5ad)."""

from __future__ import annotations

import numpy as np
import pandas as pd

import tissuegraph as tg

from .pl.test_pl import _eval_tables
from .tl.conftest import make_cells


def test_report_lists_flags_stored_as_an_array(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    cells = make_cells(200, graph="delaunay", extent=200.0)
    samples = tg.graph.grid_samples(cells, size_um=50)
    samples.obs["label"] = pd.Categorical(np.where(samples.obsm["spatial"][:, 0] < 100, "left", "right"))
    samples.uns["tg_eval"] = _eval_tables()
    # what anndata gives back for a list of strings read from .h5ad (and what `tissuegraph bench` hands over)
    samples.uns["tg_eval"]["flags"] = np.array(["X_color predicts 'slide' better than the label",
                                                "Metric disagreement: macro_f1 and mAP order the representations"],
                                               dtype=object)
    path = tg.report.write_report(tmp_path, cells=cells, samples=samples)
    text = path.read_text()
    assert "Flags raised by the evaluation" in text
    assert "X_color predicts &#x27;slide&#x27; better than the label" in text
    assert "Metric disagreement: macro_f1 and mAP order the representations" in text
