"""``tissuegraph culture demo`` / ``tissuegraph culture bench``: plates -> profiles -> retrieval metrics.

This module is the command-line layer of the culture path (it imports ``tissuegraph.eval`` lazily); it is not
exported from ``tg.culture``.  It writes ``results.csv`` (tidy: representation, protocol, metric, value) and
``summary.md`` in the output folder.

Representations: the hand-crafted profile (``X_profile``: CellProfiler-style single-cell features aggregated
to wells, or the given per-well profiles).  Network representations of single-cell crops (untrained and
trained encoders from ``tg.models`` via ``tg.emb``) are added when those modules exist in this installation,
and skipped with a log line otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import _keys as K
from .._errors import InputError
from .._logging import logger, timed

C = K.culture


def _metrics(wells, rep: str, *, null_size: int, seed: int, metric: str, consensus_method: str) -> list[dict]:
    from ..eval._profiling import nsc, nscb, percent_replicating
    from ..eval._retrieval import mean_average_precision
    from ._profiles import consensus

    rows = []
    X = np.asarray(wells.obsm[rep], dtype=np.float64)
    treated = ~wells.obs[C.control].to_numpy(dtype=bool)
    treat = (wells.obs[C.compound].astype(str) + "@" + wells.obs.get(C.concentration, wells.obs.get("dose", ""))
             .astype(str)).to_numpy()
    m = mean_average_precision(X[treated], treat[treated], metric=metric, null_size=null_size, seed=seed)
    rows += [{"protocol": "replicate retrieval (wells)", "metric": "mAP", "value": float(m["mAP"].mean())},
             {"protocol": "replicate retrieval (wells)", "metric": "fraction retrieved (q < 0.05)",
              "value": float(m["below_q"].mean())}]
    pr, _ = percent_replicating(X[treated], treat[treated], metric="correlation" if metric != "spearman" else "spearman",
                                null_size=min(null_size, 1000), seed=seed)
    rows.append({"protocol": "replicate retrieval (wells)", "metric": "percent replicating", "value": pr})
    # treatment profiles per batch: a compound screened in several batches gives one profile per batch, so
    # that NSCB can leave out the query's batch
    by = [C.compound] + ([C.concentration] if C.concentration in wells.obs else []) + [C.batch]
    t = consensus(wells, by=by, method=consensus_method, rows=treated, reps=[rep])
    T = np.asarray(t.obsm[rep], dtype=np.float64)
    mm = mean_average_precision(T, t.obs[C.moa].astype(str).to_numpy(), metric=metric, null_size=null_size, seed=seed)
    rows.append({"protocol": "mechanism retrieval (treatments)", "metric": "mAP", "value": float(mm["mAP"].mean())})
    acc = nsc(T, t.obs[C.moa], compound=t.obs[C.compound], metric=metric)
    rows.append({"protocol": "mechanism 1-NN (treatments)", "metric": "NSC", "value": acc})
    if t.obs[C.batch].nunique() > 1:
        accb = nscb(T, t.obs[C.moa], compound=t.obs[C.compound], batch=t.obs[C.batch], metric=metric)
        rows.append({"protocol": "mechanism 1-NN (treatments)", "metric": "NSCB", "value": accb})
    return rows


def _profile_pipeline(wells, *, normalize: str, corr: float | None, similarity: str) -> None:
    from ._profiles import normalize as _norm
    from ._profiles import select_features

    _norm(wells, method=normalize)
    X = wells.obsm[C.profile].astype(float)
    bad = ~np.isfinite(X).all(axis=0) | (np.abs(X) > 1e6).any(axis=0)
    wells.obsm[C.profile] = np.where(bad[None, :], np.nan, X).astype(np.float32)
    select_features(wells, operations=["missing", "variance"] + (["correlation"] if corr else []),
                    corr_threshold=corr or 0.9, na_cutoff=0.0)


def _network_reps(plate, cells, wells) -> list[str]:
    """Crop encoders from tg.models/tg.emb when this installation has them; else nothing (logged)."""
    missing = [m for m in ("tissuegraph.models", "tissuegraph.emb", "tissuegraph.eval.evaluate")
               if importlib.util.find_spec(m.rsplit(".", 1)[0] if m.endswith("evaluate") else m) is None]
    if missing or not hasattr(importlib.import_module("tissuegraph.eval"), "evaluate"):
        logger.info("culture bench: network representations skipped (%s not available in this installation).",
                    ", ".join(missing) or "tissuegraph.eval.evaluate")
        return []
    emb = importlib.import_module("tissuegraph.emb")
    fn = getattr(emb, "cell_crops", None) or getattr(emb, "crop_embeddings", None)
    if fn is None:
        logger.info("culture bench: tg.emb has no single-cell crop encoder entry point; networks skipped.")
        return []
    return fn(wells, plate=plate, cells=cells)  # pragma: no cover - depends on the merged emb module


def synthetic_wells(*, quick: bool, seed: int, segmenter: str):
    """The built-in synthetic screen -> single cells (segmented with ``segmenter``, or ``'truth'``) -> wells."""
    from ._cells import single_cells
    from ._profiles import aggregate
    from ._synthetic import synthetic_plate

    kw = dict(n_batches=2, plates_per_batch=2, rows=4, columns=6, compounds_per_mechanism=2, size=160)
    if quick:
        kw = dict(n_batches=2, plates_per_batch=1, rows=4, columns=4, compounds_per_mechanism=2, size=128)
    with timed("synthetic plate"):
        plate = synthetic_plate(seed=seed, **kw)
    with timed(f"single cells ({segmenter})"):
        cells = single_cells(plate, use_truth=segmenter == "truth",
                             nuclei="watershed" if segmenter == "truth" else segmenter, mpp=plate.mpp)
    wells = aggregate(cells, method="median")
    return plate, cells, wells


def culture_bench(outdir: str | Path, *, dataset: str = "synthetic", quick: bool = False, seed: int = 0,
                  segmenter: str = "stardist", null_size: int = 2000) -> dict[str, Any]:
    """Run the culture benchmark and write ``results.csv`` + ``summary.md`` (+ ``wells.h5ad``) in ``outdir``.

    dataset
        ``'synthetic'`` (the built-in plate: images -> nuclei (``segmenter``) -> cells -> features -> wells),
        ``'bbbc021'`` (the per-well BBBC021 profiles in ``$TISSUEGRAPH_SHARED_DATA/bbbc021_profiles``), or a
        folder laid out like that one.
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    info: dict[str, Any] = {"dataset": dataset, "quick": quick, "seed": seed}
    plate = cells = None
    if dataset == "synthetic":
        plate, cells, wells = synthetic_wells(quick=quick, seed=seed, segmenter=segmenter)
        info.update(sites=len(plate), cells=int(cells.n_obs), segmenter=segmenter)
        pipelines = {"X_profile": dict(normalize="mad_robustize", corr=0.9, similarity="cosine")}
    else:
        from ._io import read_bbbc021_profiles

        root = Path(dataset) if dataset != "bbbc021" else Path(os.environ.get("TISSUEGRAPH_SHARED_DATA", Path(
            __file__).resolve().parents[3] / "shared" / "data")) / "bbbc021_profiles"
        if not root.is_dir():
            raise InputError(f"BBBC021 profiles folder not found: {root} (set TISSUEGRAPH_SHARED_DATA or pass a path).")
        wells = read_bbbc021_profiles(root)
        # the label-free choice of benchmarks/bench_bbbc021.py, and the reference pipeline
        pipelines = {"X_profile": dict(normalize="standardize", corr=0.9, similarity="spearman"),
                     "X_profile_reference": dict(normalize="standardize", corr=None, similarity="cosine")}
    rows = []
    for rep, cfg in pipelines.items():
        w = wells.copy()
        with timed(f"profiles {rep}"):
            _profile_pipeline(w, normalize=cfg["normalize"], corr=cfg["corr"], similarity=cfg["similarity"])
        for r in _metrics(w, C.profile, null_size=null_size, seed=seed, metric=cfg["similarity"],
                          consensus_method="median"):
            rows.append({"representation": rep, **r, "similarity": cfg["similarity"],
                         "pipeline": json.dumps(cfg)})
        if rep == "X_profile":
            wells = w
    _network_reps(plate, cells, wells)
    res = pd.DataFrame(rows)
    res.to_csv(out / "results.csv", index=False)
    try:
        from .._anndata import _plain

        w = wells.copy()
        w.uns[K.uns.representations] = _plain(dict(w.uns.get(K.uns.representations, {})))
        for c in w.obs.columns:
            if w.obs[c].dtype == object:
                w.obs[c] = w.obs[c].astype(str)
        w.write_h5ad(out / "wells.h5ad")
    except Exception as exc:  # pragma: no cover - h5ad writing edge cases
        logger.warning("could not write wells.h5ad: %s", exc)
    info["seconds"] = time.perf_counter() - t0
    md = [f"# tissuegraph culture bench: {dataset}{' (quick)' if quick else ''}", "",
          ", ".join(f"{k}: {v}" for k, v in info.items() if k != "seconds") + f"; {info['seconds']:.0f} s.", "",
          "| representation | protocol | metric | value |", "|---|---|---|---|",
          *[f"| {r.representation} | {r.protocol} | {r.metric} | {r.value:.3f} |" for r in res.itertuples()], "",
          "Network representations of single-cell crops are added when tg.models / tg.emb / tg.eval.evaluate are "
          "installed (see the log).", ""]
    (out / "summary.md").write_text("\n".join(md))
    info["results"] = res
    return info
