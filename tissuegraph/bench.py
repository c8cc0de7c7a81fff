"""``tissuegraph bench``: every representation on a benchmark data set, evaluated the same way.

:func:`run_bench` takes a :class:`~tissuegraph.datasets.BenchDataset` (or a name: ``'synthetic'``,
``'synthetic_spots'``, ``'kather2016'``, ``'crchisto'``, ``'her2st'``, or a path to a layout the
loaders know) and

1. runs the pipeline from pixels (:func:`build`): nuclei -> features -> cell graph -> the data set's
   samples (regions or spots) -> structural descriptors ``X_structural``;
2. adds every representation in :data:`REPRESENTATIONS` whose module exists (colour control, GNN and
   CNN untrained twins, self-supervised GNN/CNN); a missing module or function is skipped with a
   logged message, so the bench runs with whatever the installed tissuegraph provides, and a step that
   fails is reported (``summary.md``, ``manifest.json``) while the others still run;
3. evaluates every task of the data set with ``tg.eval.evaluate`` (grouped splits, intervals,
   baseline gaps, probes, CKA) and writes ``OUTDIR/results.csv`` (tidy), ``OUTDIR/summary.md``
   (representations x tasks, mean [95 % interval], baseline gaps with verdicts, flags) and plots when
   ``tg.pl`` provides them.

Finished steps are cached in ``OUTDIR/cache`` (``cells.h5ad``, ``samples.h5ad`` after every
representation), so an interrupted run started again with the same arguments resumes.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import _keys as K
from ._errors import InputError
from ._logging import logger, timed
from ._version import __version__

__all__ = ["run_bench", "build", "load_dataset", "REPRESENTATIONS", "BenchResult", "DATASETS"]

DATASETS = ("synthetic", "synthetic_spots", "kather2016", "crchisto", "her2st")
_REPS_KEY = K.uns.representations
_STATE = "bench_state"


# ------------------------------------------------------------------------------------------ datasets
def load_dataset(dataset: Any, *, quick: bool = False, seed: int = 0, mpp: float | None = None):
    """A :class:`~tissuegraph.datasets.BenchDataset` from a name or a path.

    Parameters
    ----------
    dataset
        A BenchDataset (returned as is); ``'synthetic'`` (the diagnostic benchmark, all four factors),
        ``'synthetic_spots'``; ``'kather2016'``, ``'crchisto'``, ``'her2st'`` (from
        ``TISSUEGRAPH_SHARED_DATA`` / ``../shared/data``); or a path: a folder of class folders (needs
        ``mpp``), a 10x Visium ``outs``/``spatial`` folder, a folder with ``image.jpg``, ``spots.csv`` and
        ``counts.h5ad`` (the her2st layout; µm/px from ``scalefactors.json`` or ``mpp``), a HEST-1k
        folder (``wsis/``, ``st/``, ``metadata/``: its first sample), or a folder with one image and one
        QuPath ``.geojson`` of classified regions (needs ``mpp``).
    quick
        Smaller versions (fewer samples/images) for a fast run.
    """
    from . import datasets as D

    if isinstance(dataset, D.BenchDataset):
        return dataset
    if not isinstance(dataset, (str, os.PathLike)):
        raise InputError(f"dataset must be a BenchDataset, a name {DATASETS} or a path, got {type(dataset).__name__}.")
    name = str(dataset)
    if name == "synthetic":
        return D.diagnostic_benchmark(factor="all", n_samples=24 if quick else 96, size_um=128.0 if quick else 160.0,
                                      n_patients=6, seed=seed)
    if name == "synthetic_spots":
        return D.diagnostic_benchmark(spots=True, n_sections=3 if quick else 6,
                                      section_size_um=500.0 if quick else 1000.0, seed=seed)
    if name == "kather2016":
        return D.load_kather2016(limit_per_class=12 if quick else None, seed=seed)
    if name == "crchisto":
        return D.load_crchisto_patches(limit_images=10 if quick else None)
    if name == "her2st":
        return D.load_her2st()
    p = Path(name).expanduser()
    if not p.exists():
        raise InputError(f"Unknown dataset {name!r}: not one of {DATASETS} and no such path.")
    if p.is_dir():
        if (p / "spots.csv").is_file() and (p / "counts.h5ad").is_file():
            return D.load_her2st(p.parent, section=p.name) if mpp is None else D.load_spots(
                next(iter(sorted(p.glob("image.*")))), p / "spots.csv", counts=p / "counts.h5ad", mpp=mpp,
                diameter_um=100.0, name=p.name)
        if (p / "spatial").is_dir() or (p / "scalefactors_json.json").is_file():
            return D.load_visium(p, mpp=mpp)
        if (p / "st").is_dir() and (p / "wsis").is_dir():
            first = sorted(f.stem for f in (p / "st").glob("*.h5ad"))
            if not first:
                raise InputError(f"{str(p / 'st')!r} holds no .h5ad.")
            return D.load_hest(p, first[0])
        gj = sorted(p.glob("*.geojson"))
        imgs = [f for f in sorted(p.iterdir()) if f.suffix.lower() in (".tif", ".tiff", ".svs", ".ndpi", ".png", ".jpg",
                                                                        ".jpeg", ".mrxs", ".scn")]
        if len(gj) == 1 and len(imgs) == 1:
            if mpp is None:
                raise InputError(f"{str(p)!r} holds an image and QuPath regions; pass mpp= (--mpp) for the image.")
            return D.load_regions(imgs[0], gj[0], mpp=mpp)
        if any(c.is_dir() for c in p.iterdir()):
            if mpp is None:
                raise InputError(f"{str(p)!r} looks like a folder of class folders; pass mpp= (--mpp) for its "
                                 "patches.")
            return D.load_patch_folder(p, mpp=mpp, limit_per_class=20 if quick else None, seed=seed)
    raise InputError(f"Cannot tell the layout of {str(p)!r}: expected class folders, a Visium folder, a HEST "
                     "folder, image + spots.csv + counts.h5ad, or one image + one QuPath .geojson.")


# ------------------------------------------------------------------------------------------- pipeline
def _tile_of(xy: np.ndarray, tiles: np.ndarray) -> np.ndarray:
    """Index of the mosaic tile holding each point (-1: none); tiles sit on a grid of columns/rows."""
    out = np.full(len(xy), -1, dtype=np.int64)
    for i in range(len(tiles)):  # tiles are few (<= thousands); points are vectorised
        x0, y0, x1, y1 = tiles[i]
        inside = (xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1)
        out[inside] = i
    return out


def _prune_cross_tile_edges(cells, tiles: np.ndarray, graph_key: str = "spatial") -> int:
    import scipy.sparse as sp

    tile = _tile_of(np.asarray(cells.obsm[K.obsm.spatial], float), tiles)
    cells.obs["mosaic_tile"] = tile
    removed = 0
    for key in (K.obsp.connectivities(graph_key), K.obsp.distances(graph_key)):
        if key not in cells.obsp:
            continue
        A = sp.coo_matrix(cells.obsp[key])
        keep = (tile[A.row] == tile[A.col]) & (tile[A.row] >= 0)
        removed = max(removed, int((~keep).sum()))
        cells.obsp[key] = sp.csr_matrix((A.data[keep], (A.row[keep], A.col[keep])), shape=A.shape,
                                        dtype=A.dtype)
    return removed


def _structural_record(params: dict) -> dict:
    return {"family": "structural", "trained": False, "learned": False, "objective": None,
            "architecture": "tg.graph.descriptors", "inputs": "cells", "layer": None, "seed": None,
            "twin_group": "structural", "weights_sha256": None, "params": params}


def build(ds, *, segmenter: Any = "auto", graph: str = "delaunay", max_edge_um: float = 50.0, k: int = 6,
          structural_features: str | Sequence[str] | bool = "shape", n_jobs: int | None = None,
          progress: bool | None = None, seed: int = 0):
    """Run the pipeline from pixels on a benchmark data set: cells, samples and ``X_structural``.

    Parameters
    ----------
    ds
        A :class:`~tissuegraph.datasets.BenchDataset`.
    segmenter
        ``tg.seg.nuclei`` method (``'auto'``: the best measured backend for the modality).
    graph, max_edge_um, k
        Cell graph: ``'delaunay'`` (edges longer than ``max_edge_um`` removed), ``'knn'`` (``k``) or
        ``'radius'`` (radius ``max_edge_um``). In mosaics, edges between different source images are
        removed.
    structural_features
        Nucleus features aggregated into ``X_structural``: ``'shape'`` (default: the shape group only,
        so that the structural baseline holds no colour and the colour control stays the separate
        shortcut), ``'all'``/``True``, ``False`` or a list of feature names.

    Returns
    -------
    ``(cells, samples, slide)``: samples carry the data set's ``obs`` columns, its targets in ``obsm``
    (names in ``uns['<key>_names']``), ``obsm['X_structural']`` and its provenance record in
    ``uns['representations']``.
    """
    from . import feat, seg
    from . import graph as G

    slide = ds.open()
    timings: dict[str, float] = {}
    mosaic_ = ds.tiles is not None
    with timed(f"bench: segment {ds.name}", timings=timings):
        nuc = seg.nuclei(slide, method=segmenter, mask="all" if mosaic_ else "auto", n_jobs=n_jobs,
                         progress=progress, seed=seed)
    if len(nuc) == 0:
        raise InputError(f"{ds.name}: no nuclei were found; nothing to benchmark.")
    with timed("bench: features", timings=timings):
        cells = feat.nuclei_features(nuc, slide, n_jobs=n_jobs, progress=progress)
    with timed(f"bench: graph ({graph})", timings=timings):
        if graph == "delaunay":
            G.delaunay(cells, max_edge_um=max_edge_um)
        elif graph == "knn":
            G.knn(cells, k=k)
        elif graph == "radius":
            G.radius(cells, radius_um=max_edge_um)
        else:
            raise InputError(f"graph must be 'delaunay', 'knn' or 'radius', got {graph!r}.")
        if mosaic_:
            n = _prune_cross_tile_edges(cells, np.asarray(ds.tiles, float))
            logger.info("bench: removed %d graph entries joining different mosaic images", n)
    ids = [str(i) for i in ds.obs.index]
    with timed("bench: samples", timings=timings):
        if ds.kind == "region":
            samples = G.region_samples(cells, list(ds.regions), ids=ids, pixel_origin="center",
                                       slide=slide.slide_id)
        else:
            samples = G.spot_samples(cells, ds.centers, diameter_um=ds.diameter_um, ids=ids, slide=slide.slide_id)
    own = {K.obs.slide, K.obs.sample_kind, K.obs.n_cells, K.obs.area_um2, K.obs.geometry, K.obs.diameter_um,
           *K.obs.bbox}
    for col in ds.obs.columns:
        if col in own:
            logger.warning("bench: obs column %r of %s clashes with the sample geometry; kept as %r", col, ds.name,
                           f"{col}_input")
            samples.obs[f"{col}_input"] = ds.obs[col].reindex(samples.obs_names).to_numpy()
            continue
        if col in samples.obs.columns:
            samples.obs = samples.obs.drop(columns=[col])
        samples.obs[col] = ds.obs[col].reindex(samples.obs_names).to_numpy()
        if isinstance(ds.obs[col].dtype, pd.CategoricalDtype):
            samples.obs[col] = pd.Categorical(samples.obs[col])
    for key, (arr, names) in ds.targets.items():
        samples.obsm[key] = np.asarray(arr, dtype=np.float32)
        samples.uns[K.uns.feature_names(key) if key.startswith("X_") else f"{key}_names"] = np.asarray(names, object)
    if structural_features == "shape":
        feats: Any = [v for v, g in zip(cells.var_names, cells.var[K.var.group]) if g == "shape"]
    elif structural_features == "all":
        feats = True
    else:
        feats = structural_features
    with timed("bench: structural descriptors", timings=timings):
        G.descriptors(cells, samples, features=feats)
    samples.obsm[K.obsm.structural] = np.asarray(samples.obsm[K.obsm.structural], dtype=np.float32)
    reps = samples.uns.setdefault(_REPS_KEY, {})
    reps.setdefault(K.obsm.structural, _structural_record(
        {"features": "shape group" if structural_features == "shape" else str(structural_features),
         "graph": graph, "max_edge_um": max_edge_um}))
    samples.uns["bench_dataset"] = {"name": ds.name, "kind": ds.kind, "mpp": float(ds.mpp),
                                    "n_nuclei": int(len(nuc)), "segmenter": str(nuc.attrs.get("method")),
                                    "timings": {k2: round(v, 2) for k2, v in timings.items()}}
    return cells, samples, slide


# ----------------------------------------------------------------------------------- representations
@dataclass
class RepStep:
    """One representation step of the bench: ``run(ctx)`` writes one or more ``X_*`` into the samples.

    ``module``/``function`` name what it needs (``tissuegraph.<module>.<function>``); when either is
    missing the step is skipped with a logged message. ``quick`` steps also run with ``--quick``.
    """

    name: str
    module: str
    function: str
    run: Callable[["_Ctx"], None]
    quick: bool = True
    description: str = ""


@dataclass
class _Ctx:
    samples: Any
    cells: Any
    slide: Any
    mpp: float
    quick: bool
    seeds: tuple[int, ...]
    patch_size: int = 224
    train_epochs: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def module(self, name: str):
        return importlib.import_module(f"tissuegraph.{name}")

    def epochs(self, family: str) -> int:
        default = {"gnn": 5, "cnn": 2} if self.quick else {"gnn": 50, "cnn": 20}
        return int(self.train_epochs.get(family, default[family]))


def _seeds(ctx: _Ctx) -> tuple[int, ...]:
    return ctx.seeds[:1] if ctx.quick else ctx.seeds


def _color(ctx: _Ctx) -> None:
    ctx.module("emb").color(ctx.samples, ctx.slide, mpp=ctx.mpp)


def _gnn_untrained(ctx: _Ctx) -> None:
    ctx.module("emb").gnn_twins(ctx.samples, ctx.cells, model="gin", inputs="features", seeds=_seeds(ctx),
                                topology=not ctx.quick)


def _cnn_untrained(ctx: _Ctx) -> None:
    ctx.module("emb").patch_twins(ctx.samples, ctx.slide, model="resnet18", seeds=_seeds(ctx), mpp=ctx.mpp,
                                  size=ctx.patch_size)


def _gnn_ssl(ctx: _Ctx) -> None:
    emb = ctx.module("emb")
    model = emb.train_gnn(ctx.samples, ctx.cells, objective="dgi", model="gin", inputs="features",
                          epochs=ctx.epochs("gnn"), seed=ctx.seeds[0])
    emb.gnn(ctx.samples, ctx.cells, model=model)


def _cnn_ssl(ctx: _Ctx) -> None:
    emb = ctx.module("emb")
    # crops stay inside the sample (mosaic tiles are surrounded by glass): train on 3/4 of the patch
    out = emb.train_patches(ctx.samples, ctx.slide, model="resnet18", objective="simclr", mpp=ctx.mpp,
                            size=max(32, int(ctx.patch_size * 0.75)), crop_size=ctx.patch_size,
                            seed=ctx.seeds[0], epochs=ctx.epochs("cnn"),
                            max_crops=ctx.extra.get("cnn_max_crops", 4096))
    enc = out[0] if isinstance(out, tuple) else out  # (encoder, card)
    emb.patches(ctx.samples, ctx.slide, model=enc, mpp=ctx.mpp, size=ctx.patch_size)


# The representation steps, in order. Adjust names/arguments here when the emb API settles; the rest
# of the bench only reads what the steps write into samples.obsm / samples.uns['representations'].
REPRESENTATIONS: list[RepStep] = [
    RepStep("color", "emb", "color", _color, description="colour control (stain statistics of the sample)"),
    RepStep("gnn_untrained", "emb", "gnn", _gnn_untrained, description="GIN on the cell graph, random weights"),
    RepStep("cnn_untrained", "emb", "patches", _cnn_untrained, description="ResNet-18 on patches, random weights"),
    RepStep("gnn_ssl", "emb", "train_gnn", _gnn_ssl, quick=False, description="GIN trained with DGI"),
    RepStep("cnn_ssl", "emb", "train_patches", _cnn_ssl, quick=False, description="ResNet-18 trained with SimCLR"),
]


def _patch_px(ds) -> int:
    """Patch edge (px at the data set's µm/px) for the CNN steps: the smallest sample region (so a patch
    never reaches into the glass of a mosaic), or the spot diameter; at most 224."""
    if ds.kind == "region":
        b = np.array([g.bounds for g in ds.regions], float)
        side = float(np.min(np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])))
    else:
        side = ds.diameter_um / ds.mpp
    return int(max(32, min(224, np.floor(side))))


def _available(step: RepStep) -> str | None:
    """None when the step can run, else why not."""
    try:
        mod = importlib.import_module(f"tissuegraph.{step.module}")
    except ImportError as exc:
        return f"tissuegraph.{step.module} is not available ({exc})"
    try:
        fn = getattr(mod, step.function, None)
    except Exception as exc:  # a lazy module attribute that fails to import
        return f"tissuegraph.{step.module}.{step.function} cannot be loaded ({type(exc).__name__}: {exc})"
    if not callable(fn):
        return f"tissuegraph.{step.module}.{step.function} does not exist"
    return None


# -------------------------------------------------------------------------------------------- caching
def _plain_uns(value):
    if value is None:
        return "__None__"
    if isinstance(value, dict):
        return {str(k): _plain_uns(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (str, int, float, bool, np.integer, np.floating)) for v in value) and value:
            return list(value) if len({type(v) for v in value}) == 1 else [str(v) for v in value]
        return {str(i): _plain_uns(v) for i, v in enumerate(value)} if value else "__empty__"
    return value


def _unplain_uns(value):
    if isinstance(value, str):
        return None if value == "__None__" else ([] if value == "__empty__" else value)
    if isinstance(value, dict):
        return {k: _unplain_uns(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.dtype == object:
        return value.tolist()
    return value


def _write_samples(samples, path: Path, state: dict) -> None:
    out = samples.copy()
    if _REPS_KEY in out.uns:
        out.uns[_REPS_KEY] = _plain_uns(dict(out.uns[_REPS_KEY]))
    for key in [k for k in out.uns if k.startswith(K.eval_key)]:
        del out.uns[key]
    out.uns[_STATE] = json.dumps(state)
    tmp = path.with_suffix(".tmp.h5ad")
    out.write_h5ad(tmp)
    os.replace(tmp, path)


def _read_samples(path: Path):
    import anndata as ad

    s = ad.read_h5ad(path)
    state = json.loads(str(s.uns.pop(_STATE, "{}")))
    if _REPS_KEY in s.uns:
        s.uns[_REPS_KEY] = _unplain_uns(dict(s.uns[_REPS_KEY]))
    return s, state


# ----------------------------------------------------------------------------------------- evaluation
@dataclass
class BenchResult:
    """What :func:`run_bench` produced."""

    outdir: Path
    samples: Any
    cells: Any
    results: pd.DataFrame
    summary: pd.DataFrame
    gaps: pd.DataFrame
    flags: list[str]
    skipped: dict[str, str]
    paths: dict[str, Path]


_PREFERRED = ("macro_f1", "f1_macro", "balanced_accuracy", "pearson_r", "pearson_mean", "pearson", "mean_pearson", "map",
              "mean_average_precision", "auroc", "accuracy", "ari")


def _primary(summary: pd.DataFrame) -> tuple[Any, Any]:
    """(protocol, metric) reported in the summary table: the most preferred metric present."""
    if summary.empty:
        return None, None
    metrics = [str(m) for m in summary["metric"].unique()]
    for pref in _PREFERRED:
        for m in metrics:
            if m.lower() == pref:
                protos = summary.loc[summary["metric"].astype(str) == m, "protocol"].unique()
                lin = [p for p in protos if "linear" in str(p).lower() or "ridge" in str(p).lower()]
                return (lin[0] if lin else protos[0]), m
    row = summary.iloc[0]
    return row["protocol"], row["metric"]


def _accepts(fn: Callable, name: str) -> bool:
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind == p.VAR_KEYWORD for p in params.values())


def _evaluate_tasks(samples, tasks: list[dict], evaluate: Callable, *, quick: bool, seeds: tuple[int, ...],
                    dataset: str, timings: dict | None = None) -> dict[str, Any]:
    parts: dict[str, list] = {"results": [], "summary": [], "gaps": [], "probes": []}
    eval_timings: dict[str, dict] = {}
    flags: list[str] = []
    cka: dict[str, pd.DataFrame] = {}
    evaluated: dict[str, Any] = {}
    for t in tasks:
        sub = samples
        if t.get("subset"):
            mask = np.ones(samples.n_obs, bool)
            for col, val in t["subset"].items():
                mask &= (samples.obs[col].astype(str) == str(val)).to_numpy()
            sub = samples[mask].copy()
        lk = t["label_key"]
        if lk in sub.obs and isinstance(sub.obs[lk].dtype, pd.CategoricalDtype):
            sub.obs[lk] = sub.obs[lk].cat.remove_unused_categories()
        kwargs = dict(label_key=lk, task=t["task"], group_key=t.get("group_key"))
        for opt in ("probes", "confounds"):
            if t.get(opt) is not None:
                kwargs[opt] = t[opt]
        if _accepts(evaluate, "knn_k"):  # small sets: fewer neighbours than a training fold has samples
            kwargs["knn_k"] = int(max(3, min(20, sub.n_obs // 10)))
        # the run's seeds are the evaluation's too (quick: the first seed, 3 splits)
        if quick:
            kwargs.update(n_splits=3, seeds=seeds[:1])
        else:
            kwargs.update(seeds=tuple(seeds))
        with timed(f"bench: evaluate {t['name']}", timings=timings):
            evaluate(sub, **kwargs)
        ev = sub.uns.get(K.eval_key)
        if ev is None:
            raise InputError(f"evaluate wrote no samples.uns['tg_eval'] for task {t['name']!r}.")
        for key in parts:
            df = ev.get(key)
            if isinstance(df, pd.DataFrame) and len(df):
                df = df.copy()
                df.insert(0, "task", t["name"])
                df.insert(0, "dataset", dataset)
                parts[key].append(df)
        fl = ev.get("flags")
        flags += [f"{t['name']}: {f}" for f in ([] if fl is None else list(np.atleast_1d(fl)))]
        if isinstance(ev.get("timings"), dict):  # seconds inside evaluate, per protocol / diagnostic
            eval_timings[t["name"]] = {str(k): round(float(v), 2) for k, v in ev["timings"].items()}
        if isinstance(ev.get("cka"), pd.DataFrame):
            cka[t["name"]] = ev["cka"]
        evaluated[t["name"]] = sub
    out = {k: (pd.concat(v, ignore_index=True) if v else pd.DataFrame()) for k, v in parts.items()}
    out["flags"] = flags
    out["cka"] = cka
    out["evaluated"] = evaluated
    out["evaluate_timings"] = eval_timings
    return out


def _bench_report(out: Path, ev: dict, *, samples, cells, slide, title: str) -> None:
    """``OUTDIR/report.html`` with the first task's evaluation (the pipeline's report writer: a failure is
    logged, never fatal)."""
    from .pipeline import _report

    shown = next(iter((ev.get("evaluated") or {}).values()), samples)  # first task's samples, uns['tg_eval']
    _report(out, cells=cells, samples=shown, slide=slide, title=title)


def _fmt(m, lo, hi) -> str:
    if not np.isfinite(m):
        return "n/a"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{m:.3f} [{lo:.3f}, {hi:.3f}]"
    return f"{m:.3f}"


def _summary_md(ds_name: str, ev: dict, samples, skipped: dict[str, str], *, quick: bool, command: str,
                seconds: float, title: str | None = None) -> str:
    summ, gaps = ev["summary"], ev["gaps"]
    lines = [f"# {title or f'tissuegraph bench: {ds_name}'}", "",
             f"- command: `{command}`", f"- tissuegraph {__version__}; {'quick' if quick else 'full'} run; "
             f"{samples.n_obs} samples; {time.strftime('%Y-%m-%d %H:%M:%S')}; {seconds:.0f} s",
             f"- load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}", ""]
    reps_meta = samples.uns.get(_REPS_KEY, {}) or {}
    if not summ.empty:
        tasks = list(dict.fromkeys(summ["task"]))
        cols, cells_ = [], {}
        for t in tasks:
            st = summ[summ["task"] == t]
            proto, metric = _primary(st)
            cols.append(f"{t} ({proto}, {metric})")
            sel = st[(st["protocol"] == proto) & (st["metric"] == metric)]
            for _, r in sel.iterrows():
                cells_[(r["representation"], cols[-1])] = _fmt(float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]))
        reps = sorted(dict.fromkeys(summ["representation"]),
                      key=lambda r: (r != K.obsm.structural, not str(r).startswith("X_color"), str(r)))
        lines += ["## Scores: mean [95 % interval]", "",
                  "| representation | family | trained | " + " | ".join(cols) + " |",
                  "|---|---|---|" + "---|" * len(cols)]
        for r in reps:
            meta = reps_meta.get(r, {}) or {}
            lines.append(f"| {r} | {meta.get('family', '')} | {meta.get('trained', '')} | "
                         + " | ".join(cells_.get((r, c), "") for c in cols) + " |")
        lines.append("")
    else:
        lines += ["No evaluation results (tg.eval unavailable or nothing to evaluate).", ""]
    if not gaps.empty and not summ.empty:
        keep = []
        for t in dict.fromkeys(gaps["task"]):
            proto, metric = _primary(summ[summ["task"] == t])
            keep.append(gaps[(gaps["task"] == t) & (gaps["protocol"] == proto) & (gaps["metric"] == metric)])
        gaps = pd.concat(keep, ignore_index=True)
    if not gaps.empty:
        lines += ["## Baseline gaps (paired over the same splits; each task's primary metric, all in gaps.csv)", "",
                  "| task | representation | reference | protocol | metric | difference [95 % interval] | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for _, g in gaps.iterrows():
            lines.append(f"| {g['task']} | {g['representation']} | {g['reference']} | {g['protocol']} | {g['metric']} | "
                         f"{_fmt(float(g['diff']), float(g['ci_low']), float(g['ci_high']))} | {g['verdict']} |")
        lines.append("")
    lines += ["## Flags", ""] + ([f"- {f}" for f in ev["flags"]] or ["- none"]) + [""]
    if ev.get("plot_files"):
        lines += ["## Plots", ""] + [f"- {t}: " + ", ".join(f"[{f}]({f})" for f in files)
                                     for t, files in ev["plot_files"].items()] + [""]
    if skipped:
        lines += ["## Skipped steps", ""] + [f"- {k}: {v}" for k, v in skipped.items()] + [""]
    return "\n".join(lines)


def _plots(outdir: Path, ev: dict, skipped: dict[str, str]) -> dict[str, Path]:
    """Per task: scores with intervals, baseline-gap forest plot, CKA heatmap, from tg.pl when it provides
    them (each missing or failing plot is noted in the report, never fatal)."""
    paths: dict[str, Path] = {}
    if not ev.get("evaluated"):
        return paths
    try:
        from . import pl
    except Exception as exc:  # missing, or failing to import: the results matter more than the plots
        skipped["plots"] = f"tissuegraph.pl is not available ({type(exc).__name__}: {exc})"
        logger.info("bench: no plots (%s)", skipped["plots"])
        return paths
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    for i, (task, sub) in enumerate(ev["evaluated"].items()):
        for fname, file in (("eval_scores", f"scores_{i}.png"), ("baseline_gaps", f"gaps_{i}.png"),
                            ("cka_heatmap", f"cka_{i}.png")):
            fn = getattr(pl, fname, None)
            gaps = (sub.uns.get(K.eval_key) or {}).get("gaps")
            if fname == "baseline_gaps" and isinstance(gaps, pd.DataFrame) and gaps.empty:
                skipped[f"plot {file} ({task})"] = "no baseline gaps: no learned representation was evaluated"
                continue
            if fn is None:
                skipped[f"plot {file}"] = f"tissuegraph.pl.{fname} does not exist"
                continue
            try:
                fn(sub, show=False, save=outdir / file)
                paths[file] = outdir / file
                ev.setdefault("plot_files", {}).setdefault(task, []).append(file)
            except Exception as exc:  # a plot must never lose the results
                skipped[f"plot {file} ({task})"] = f"tissuegraph.pl.{fname} failed: {exc}"
                logger.warning("bench: plot %s failed: %s", file, exc)
            finally:
                plt.close("all")
    return paths


def _write_tables(out: Path, ev: dict, skipped: dict[str, str]) -> dict[str, Path]:
    """``results.csv``, ``summary.csv`` / ``gaps.csv`` / ``probes.csv``, ``cka_<i>.csv`` and the plots of an
    evaluation (:func:`_evaluate_tasks`); shared by ``tissuegraph bench`` and ``tissuegraph culture bench``.
    ``summary.md`` is written by the caller (its path is in the returned dict)."""
    paths = {"results": out / "results.csv", "summary": out / "summary.md"}
    ev["results"].to_csv(paths["results"], index=False)
    for key in ("summary", "gaps", "probes"):
        if not ev[key].empty:
            paths[f"{key}_table"] = out / f"{key}.csv"
            ev[key].to_csv(paths[f"{key}_table"], index=False)
    for i, (task, m) in enumerate(ev["cka"].items()):
        p = out / f"cka_{i}.csv"
        m.to_csv(p)
        paths[f"cka_{i}"] = p
    paths.update(_plots(out, ev, skipped))
    return paths


# ---------------------------------------------------------------------------------------------- main
def run_bench(dataset: Any, outdir: str | os.PathLike, *, quick: bool = False, seeds: Sequence[int] = (0, 1, 2),
              segmenter: Any = "auto", graph: str = "delaunay", max_edge_um: float = 50.0,
              representations: Sequence[str] | None = None, evaluate: Callable | None = None,
              mpp: float | None = None, train_epochs: dict | None = None, n_jobs: int | None = None,
              progress: bool | None = None, resume: bool = True, command: str | None = None,
              cnn_max_crops: int | None = 4096) -> BenchResult:
    """Run the pipeline, every representation and the evaluation on one data set; write the report.

    Parameters
    ----------
    dataset
        A :class:`~tissuegraph.datasets.BenchDataset`, a name (``'synthetic'``, ``'synthetic_spots'``,
        ``'kather2016'``, ``'crchisto'``, ``'her2st'``) or a path (see :func:`load_dataset`).
    outdir
        Output folder: ``results.csv``, ``summary.md``, ``gaps.csv``, plots, and ``cache/``.
    quick
        Smaller data, one seed, untrained networks only (the self-supervised steps are skipped), 3
        splits: a few minutes on 2 cores.
    seeds
        Seeds of the untrained twins and of the evaluation.
    segmenter, graph, max_edge_um
        Pipeline options (see :func:`build`).
    representations
        Names of :data:`REPRESENTATIONS` steps to run (default: all that exist; ``[]``: structural only).
    evaluate
        The evaluation function (default ``tg.eval.evaluate``): called as
        ``evaluate(samples, label_key=, task=, group_key=[, n_splits=, seeds=])`` and expected to write
        ``samples.uns['tg_eval']`` (tables described in docs/architecture.md).
    mpp
        µm/px for a path to patches that do not record it.
    train_epochs
        Epochs of the self-supervised steps, ``{'gnn': 50, 'cnn': 20}`` by default (SimCLR on a CPU takes
        about a minute per epoch and 50 crops on 2 busy cores: lower ``'cnn'`` there, or use a GPU).
    resume
        Reuse finished steps cached in ``outdir/cache`` from a run with the same arguments.
    cnn_max_crops
        The self-supervised CNN (SimCLR) trains on at most this many crops, drawn with the first seed from
        the samples' tiles (``None``: all); every sample is embedded. Lower it on a busy CPU.

    Every step's wall time goes to ``manifest.json`` (``timings``; ``evaluate_timings``: seconds inside
    ``tg.eval.evaluate`` per task and protocol).
    """
    t0 = time.perf_counter()
    out = Path(outdir)
    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise InputError("seeds must hold at least one seed.")
    ds_key = dataset.name if hasattr(dataset, "name") and not isinstance(dataset, (str, os.PathLike)) else str(dataset)
    params = {"dataset": ds_key, "quick": bool(quick), "seeds": list(seeds), "segmenter": str(segmenter),
              "train_epochs": dict(train_epochs or {}), "cnn_max_crops": cnn_max_crops,
              "graph": graph, "max_edge_um": float(max_edge_um), "mpp": mpp, "version": __version__}
    cells_path, samples_path = cache / "cells.h5ad", cache / "samples.h5ad"
    ds = load_dataset(dataset, quick=quick, seed=seeds[0], mpp=mpp)
    # the cache belongs to these samples only (the same name at another size must not resume from it)
    import hashlib

    params["samples"] = {"n": int(len(ds.obs)), "ids_sha256": hashlib.sha256(
        "\n".join(str(i) for i in ds.obs.index).encode()).hexdigest()}
    state: dict = {}
    if resume and cells_path.is_file() and samples_path.is_file():
        import anndata as ad

        samples, state = _read_samples(samples_path)
        if state.get("params") == json.loads(json.dumps(params)):
            cells = ad.read_h5ad(cells_path)
            slide = ds.open()
            logger.info("bench: resuming from %s (done: %s)", cache, ", ".join(state.get("done", [])) or "build")
        else:
            logger.info("bench: the cache in %s is from other arguments; starting again", cache)
            state = {}
    if not state:
        cells, samples, slide = build(ds, segmenter=segmenter, graph=graph, max_edge_um=max_edge_um, n_jobs=n_jobs,
                                      progress=progress, seed=seeds[0])
        state = {"params": json.loads(json.dumps(params)), "done": ["build"],
                 "timings": dict((samples.uns.get("bench_dataset") or {}).get("timings") or {})}
        cells.write_h5ad(cells_path)
        _write_samples(samples, samples_path, state)

    skipped: dict[str, str] = {}
    steps = REPRESENTATIONS if representations is None else [s for s in REPRESENTATIONS if s.name in representations]
    if representations is not None:
        unknown = set(representations) - {s.name for s in REPRESENTATIONS}
        if unknown:
            raise InputError(f"Unknown representation step(s) {sorted(unknown)}; known: "
                             f"{[s.name for s in REPRESENTATIONS]}.")
    done_keys = {k for k in samples.obsm if k.startswith("X_")}
    ctx = _Ctx(samples=samples, cells=cells, slide=slide, mpp=float(ds.mpp), quick=bool(quick), seeds=seeds,
               patch_size=_patch_px(ds), train_epochs=dict(train_epochs or {}),
               extra={"cnn_max_crops": None if cnn_max_crops is None else int(cnn_max_crops)})
    for step in steps:
        if step.name in state["done"]:
            continue
        if quick and not step.quick:
            skipped[step.name] = "not run with --quick"
            continue
        why = _available(step)
        if why is not None:
            skipped[step.name] = why
            logger.info("bench: skipping %s: %s", step.name, why)
            continue
        try:
            with timed(f"bench: representation {step.name}", timings=state.setdefault("timings", {})):
                step.run(ctx)
        except Exception as exc:  # one failing representation must not lose the others; it is reported
            skipped[step.name] = f"failed: {type(exc).__name__}: {exc}"
            logger.error("bench: representation %s failed", step.name, exc_info=True)
            for key in [k for k in samples.obsm if k.startswith("X_") and k not in done_keys]:
                del samples.obsm[key]  # nothing half-written survives
            continue
        done_keys = {k for k in samples.obsm if k.startswith("X_")}
        state["done"].append(step.name)
        _write_samples(samples, samples_path, state)

    reps = [k for k in samples.obsm.keys() if k.startswith("X_")]
    logger.info("bench: representations %s", ", ".join(reps))
    if evaluate is None:
        try:
            from .eval import evaluate as evaluate  # noqa: PLC0415
        except ImportError as exc:
            evaluate = None
            skipped["evaluation"] = f"tissuegraph.eval.evaluate is not available ({exc})"
            logger.warning("bench: %s", skipped["evaluation"])
    for key in [k for k in state.setdefault("timings", {}) if k.startswith(("bench: evaluate", "bench: tables"))]:
        del state["timings"][key]  # always run again on resume: this run's time, not the sum over runs
    if evaluate is not None:
        ev = _evaluate_tasks(samples, ds.tasks, evaluate, quick=quick, seeds=seeds, dataset=ds.name,
                             timings=state.setdefault("timings", {}))
    else:
        ev = {"results": pd.DataFrame(), "summary": pd.DataFrame(), "gaps": pd.DataFrame(),
              "probes": pd.DataFrame(), "flags": [], "cka": {}}
    with timed("bench: tables and plots", timings=state.setdefault("timings", {})):
        paths = _write_tables(out, ev, skipped)
    cmd = command or f"tg.bench.run_bench({ds_key!r}, {str(out)!r}, quick={quick})"
    paths["summary"].write_text(_summary_md(ds.name, ev, samples, skipped, quick=quick, command=cmd,
                                            seconds=time.perf_counter() - t0))
    (out / "manifest.json").write_text(json.dumps({
        "params": state["params"], "done": state["done"], "skipped": skipped, "tasks": ds.tasks,
        "representations": reps, "dataset": {"name": ds.name, "n_samples": int(samples.n_obs),
                                             "metadata": ds.metadata},
        "timings": {k: round(float(v), 2) for k, v in state.get("timings", {}).items()},
        "evaluate_timings": ev.get("evaluate_timings", {}),
        "seconds": round(time.perf_counter() - t0, 1)}, indent=2, default=str))
    _bench_report(out, ev, samples=samples, cells=cells, slide=slide, title=f"tissuegraph bench: {ds.name}")
    logger.info("bench: %s done in %.0fs -> %s", ds.name, time.perf_counter() - t0, out)
    return BenchResult(outdir=out, samples=samples, cells=cells, results=ev["results"], summary=ev["summary"],
                       gaps=ev["gaps"], flags=ev["flags"], skipped=skipped, paths=paths)
