"""The main job: slide -> tiles -> nuclei -> features -> cell graph -> samples -> structural descriptors.

``tg.pipeline.run`` (and ``tissuegraph run``) writes into an output folder:

- ``cells.h5ad``: one row per nucleus (features, centroids, graph in ``obsp``; squidpy-ready);
- ``samples.h5ad``: one row per sample (grid patch by default) with ``obsm['X_structural']``;
- ``nuclei.parquet``: the nucleus table with contours (level-0 px);
- ``manifest.json``: input file hash, all parameters, seeds, package versions and timings.

``tg.pipeline.demo`` makes the built-in synthetic slide and runs the same job on it (no downloads),
then scores the detected nuclei against the slide's ground truth.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import _keys as K
from ._errors import InputError
from ._logging import logger, progress_bar, timed
from ._settings import settings
from ._version import __version__

__all__ = ["run", "demo", "RunResult", "file_sha256", "write_nuclei", "read_nuclei", "GRAPHS"]

GRAPHS = ("knn", "radius", "delaunay")
# Representations `run` adds to samples.h5ad beside X_structural (tg.emb): the colour control, untrained
# GNN twins (features and topology only) and an untrained CNN twin by default; `train=True` adds a
# self-supervised GNN (deep graph infomax) and CNN (SimCLR) trained on the slide's own samples.
REPS = ("color", "gnn", "cnn")
REP_MPP = 2.0  # µm/px of the colour control and the CNN patches (a 256 µm sample -> 128 px)
_PACKAGES = ("numpy", "scipy", "pandas", "scikit-image", "scikit-learn", "anndata", "scanpy", "tifffile",
             "openslide-python", "openslide-bin", "tensorflow-cpu", "tensorflow", "stardist", "csbdeep", "torch",
             "torch-geometric", "squidpy", "networkx", "zarr", "shapely")


@dataclass
class RunResult:
    """What :func:`run` produced (the AnnData objects, the nucleus table and the output paths)."""

    cells: Any
    samples: Any
    nuclei: Any
    outdir: Path
    manifest: dict = field(default_factory=dict)

    @property
    def paths(self) -> dict[str, Path]:
        return {k: self.outdir / v for k, v in self.manifest.get("outputs", {}).items()}


def file_sha256(path: str | os.PathLike, *, chunk: int = 8 << 20, progress: bool | None = None) -> str:
    """SHA-256 of a file, streamed (constant memory)."""
    p = Path(path)
    h = hashlib.sha256()
    size = p.stat().st_size
    with open(p, "rb") as fh, progress_bar(total=max(1, size // chunk + 1), desc="hash input",
                                           enabled=progress and size > 256 << 20) as bar:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
            bar.update()
    return h.hexdigest()


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"tissuegraph": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def _graph(cells, graph: str, *, k: int, radius_um: float | None, max_edge_um: float | None) -> None:
    from . import graph as G

    if graph == "knn":
        G.knn(cells, k=k)
    elif graph == "radius":
        if radius_um is None:
            raise InputError("graph='radius' needs radius_um= (e.g. 30).")
        G.radius(cells, radius_um=radius_um)
    else:
        G.delaunay(cells, max_edge_um=max_edge_um)


def run(slide: Any, outdir: str | os.PathLike, *, segmenter: Any = "auto", model: Any = None,
        labels: Any = None, mpp: float | None = None, seg_mpp: float | None = None, graph: str = "delaunay",
        k: int = 6, radius_um: float | None = None, max_edge_um: float | None = 50.0,
        sample_size_um: float = 256.0, min_tissue_fraction: float = 0.5, features: Any = "all",
        tile_size: int = 1024, n_jobs: int | None = None,
        seed: int | None = None, progress: bool | None = None, write_labels: bool = True,
        resume: bool = True, overwrite: bool = False, report: bool = True, reps: Any = REPS,
        train: bool = False, train_epochs: int | None = None) -> RunResult:
    """Run tiles -> nuclei -> features -> graph -> samples -> descriptors on one slide.

    Parameters
    ----------
    slide
        Path of a slide or image (anything :func:`tissuegraph.io.open_slide` reads) or a Slide.
    outdir
        Output folder (created). An existing non-empty folder needs ``overwrite=True`` or a run with
        the same parameters (``resume=True`` continues an interrupted segmentation from its checkpoint).
    segmenter, model, labels
        Nuclei segmentation: ``'auto'``, ``'watershed'``, ``'stardist'`` (``model`` = name or folder) or
        ``'labels'`` (``labels`` = label image / GeoJSON / CSV from another tool).
    mpp
        The slide's µm/px when its metadata lacks it (overrides the metadata).
    seg_mpp
        µm/px to segment at (default: the model's, else native).
    graph, k, radius_um, max_edge_um
        Cell graph: ``'knn'`` (``k``), ``'radius'`` (``radius_um``) or ``'delaunay'`` (edges longer than
        ``max_edge_um`` removed).
    sample_size_um
        Edge of the square grid patches that become samples.
    min_tissue_fraction
        A grid patch becomes a sample only if at least this fraction of it lies on tissue (inside the
        image and the slide's tissue mask, :func:`tissuegraph.io.tissue_mask`; for fluorescence and
        other non-brightfield images, where the segmentation uses no mask, the whole image counts as
        tissue). Every sample records ``image_area_um2``, ``tissue_area_um2`` and ``tissue_fraction``,
        and densities use the tissue area. ``0`` keeps every patch with a cell.
    reps
        Representations added to ``samples.h5ad`` beside ``X_structural`` (:mod:`tissuegraph.emb`), any of
        ``'color'`` (colour/intensity control), ``'gnn'`` (untrained GIN twins, 3 seeds, on the nucleus
        features and on topology only), ``'cnn'`` (an untrained ResNet-18 twin on 128 px patches at
        2 µm/px); ``None`` or ``()`` for none.
    train, train_epochs
        Also train a GIN by deep graph infomax and a ResNet-18 by SimCLR on this slide's own samples
        (``train_epochs`` each; default 10 for the GNN, 3 for the CNN), save them under
        ``outdir/models/`` and add their embeddings (same ``twin_group`` as the untrained twins).
    report
        Also write ``outdir/report.html`` (:func:`tissuegraph.report.write_report`).
    """
    import anndata  # noqa: F401  (fail early with a clear ImportError)

    from . import feat, seg
    from . import graph as G
    from .io import open_slide

    if graph not in GRAPHS:
        raise InputError(f"graph must be one of {GRAPHS}, got {graph!r}.")
    reps = _check_reps(reps)
    seed = settings.seed if seed is None else int(seed)
    out = _make_outdir(outdir)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    params = dict(segmenter=segmenter if isinstance(segmenter, str) else type(segmenter).__name__,
                  model=None if model is None else str(model), labels=None if labels is None else str(labels),
                  mpp=mpp, seg_mpp=seg_mpp, graph=graph, k=k, radius_um=radius_um, max_edge_um=max_edge_um,
                  sample_size_um=sample_size_um, min_tissue_fraction=min_tissue_fraction, features=features,
                  tile_size=tile_size, reps=list(reps), train=bool(train), train_epochs=train_epochs,
                  n_jobs=settings.resolve_n_jobs(n_jobs), seed=seed)
    manifest_path = out / "manifest.json"
    if manifest_path.exists() and not overwrite:
        old = json.loads(manifest_path.read_text())
        if old.get("parameters") != json.loads(json.dumps(params, default=str)) and not resume:
            raise InputError(f"{out} holds a run with other parameters; pass overwrite=True or another folder.")

    s = open_slide(slide, mpp=mpp)
    input_info: dict[str, Any] = {"slide_id": s.slide_id, "backend": s.backend, "dimensions": list(s.dimensions),
                                  "mpp": s.mpp, "mpp_source": s.mpp_source}
    if s.path is not None and s.path.is_file():
        with timed("hash input", timings=timings):
            input_info.update(path=str(s.path.resolve()), sha256=file_sha256(s.path, progress=progress),
                              bytes=s.path.stat().st_size)
    s.require_mpp("the pipeline (features in µm, graphs, samples)")

    stages = ["segment", "features", "graph", "samples", "descriptors", "representations", "write"]
    with progress_bar(total=len(stages), desc=f"run {s.slide_id}", enabled=progress, unit="stage") as bar:
        with timed("segment", timings=timings):
            nuc = seg.nuclei(s, method=segmenter, model=model, labels=labels, mpp=seg_mpp, tile_size=tile_size,
                             n_jobs=n_jobs, progress=progress, checkpoint=out / ".checkpoint" if resume else None,
                             labels_out=out / "labels.tiff" if write_labels else None, seed=seed)
        bar.update()
        if len(nuc) == 0:
            logger.warning("%s: no nuclei found; the cells and samples tables will be empty.", s.slide_id)
        with timed("features", timings=timings):
            cells = feat.nuclei_features(nuc, s, features=features, n_jobs=n_jobs, progress=progress)
        bar.update()
        with timed(f"graph ({graph})", timings=timings):
            _graph(cells, graph, k=k, radius_um=radius_um, max_edge_um=max_edge_um)
        bar.update()
        with timed("samples", timings=timings):
            tmask = _sample_tissue(s)
            samples = G.grid_samples(cells, size_um=sample_size_um, tissue=tmask,
                                     min_tissue_fraction=min_tissue_fraction or None)
        bar.update()
        with timed("descriptors", timings=timings):
            G.descriptors(cells, samples)
        bar.update()
        if samples.n_obs and (reps or train):
            _representations(samples, cells, s, reps=reps, train=train, epochs=train_epochs, seed=seed,
                             out=out, timings=timings, n_jobs=n_jobs)
        bar.update()
        with timed("write", timings=timings):
            outputs = _write_outputs(out, cells, samples, nuc, write_labels=write_labels)
        bar.update()

    manifest = dict(tissuegraph=__version__, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), input=input_info,
                    parameters=params, seeds={"seed": seed}, segmentation=_jsonable(dict(nuc.attrs)),
                    tissue={"method": tmask.params.get("method"), "fraction": tmask.fraction,
                            "mask_shape": list(tmask.mask.shape), "params": _jsonable(tmask.params),
                            "min_tissue_fraction": min_tissue_fraction,
                            "patches_dropped": int(samples.uns[K.uns.membership]["params"].get("n_dropped_tissue", 0))},
                    counts={"nuclei": int(len(nuc)), "samples": int(samples.n_obs),
                            "tiles": int(nuc.attrs.get("n_tiles", 0))},
                    outputs=outputs, versions=_versions(),
                    timings={k2: round(v, 3) for k2, v in {**timings, "total": time.perf_counter() - t0}.items()})
    manifest_path.write_text(json.dumps(_jsonable(manifest), indent=2))
    if report:
        _report(out, cells=cells, samples=samples, nuclei=nuc, slide=s, manifest=manifest)
    logger.info("%s: %d nuclei, %d samples -> %s (%.1fs)", s.slide_id, len(nuc), samples.n_obs, out,
                manifest["timings"]["total"])
    return RunResult(cells=cells, samples=samples, nuclei=nuc, outdir=out, manifest=manifest)


def _check_reps(reps: Any) -> tuple[str, ...]:
    if reps is None or reps == "none":
        return ()
    reps = (reps,) if isinstance(reps, str) else tuple(reps)
    unknown = [r for r in reps if r not in REPS]
    if unknown:
        raise InputError(f"Unknown representation(s) {unknown}: choose from {list(REPS)} (or none).")
    return reps


def _representations(samples, cells, slide, *, reps: tuple[str, ...], train: bool, epochs: int | None, seed: int,
                     out: Path, timings: dict, n_jobs: int | None = None) -> None:
    """The representations of ``run`` (tg.emb), each timed; see :data:`REPS`."""
    from . import emb

    seeds = (seed, seed + 1, seed + 2)
    if "color" in reps:
        with timed("color control", timings=timings):
            emb.color(samples, slide, mpp=REP_MPP)
    if "gnn" in reps:
        with timed("gnn twins", timings=timings):
            emb.gnn_twins(samples, cells, model="gin", inputs="features", seeds=seeds, topology=True,
                           n_jobs=n_jobs)
    if "cnn" in reps:
        with timed("cnn twin", timings=timings):
            emb.patch_twins(samples, slide, model="resnet18", seeds=(seed,), mpp=REP_MPP, size=128)
    if train:
        with timed("gnn training (dgi)", timings=timings):
            model = emb.train_gnn(samples, cells, objective="dgi", model="gin", inputs="features",
                                  epochs=epochs or 10, seed=seed, save_to=out / "models" / "gnn_gin_dgi")
            emb.gnn(samples, cells, model=model, n_jobs=n_jobs)
        with timed("cnn training (simclr)", timings=timings):
            from .models import save_model

            enc, card = emb.train_patches(samples, slide, model="resnet18", objective="simclr", mpp=REP_MPP,
                                          size=96, crop_size=128, seed=seed, epochs=epochs or 3)
            save_model(enc, out / "models" / "cnn_resnet18_simclr", card=card)
            emb.patches(samples, slide, model=enc, mpp=REP_MPP, size=128)


def _report(out: Path, **objects) -> None:
    """``OUTDIR/report.html`` (tg.report); a failure there is logged, never fails the run."""
    try:
        from .report import write_report

        write_report(out, **objects)
    except Exception as exc:  # noqa: BLE001
        logger.warning("report.html not written: %s: %s", type(exc).__name__, exc)


def _sample_tissue(slide):
    """The tissue mask the samples are measured against: the brightfield tissue mask (what the
    segmentation's ``mask='auto'`` finds on H&E), else the whole image (fluorescence fields of view
    have no glass to skip, so the segmentation uses no mask either)."""
    from .io import TissueMask, tissue_mask

    if slide.is_rgb and float(np.mean(slide.background)) > 127:
        return tissue_mask(slide)
    w, h = slide.dimensions
    return TissueMask(np.ones((1, 1), bool), (w, h), {"method": "all (not brightfield)"})


def _make_outdir(outdir: str | os.PathLike) -> Path:
    """Create the output folder, or raise one clear error saying why it cannot be created."""
    out = Path(outdir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        if out.exists() and not out.is_dir():
            why = "a file of that name exists"
        raise InputError(f"Cannot create the output folder {out} ({why}); pass an outdir you can write to.",
                         cli=f"Cannot create the output folder {out} ({why}); pass -o/--outdir a folder "
                             "you can write to.") from exc
    return out


def _write_outputs(out: Path, cells, samples, nuc, *, write_labels: bool) -> dict[str, str]:
    cells.write_h5ad(out / "cells.h5ad")
    samples.write_h5ad(out / "samples.h5ad")
    write_nuclei(nuc, out / "nuclei.parquet")
    outputs = {"cells": "cells.h5ad", "samples": "samples.h5ad", "nuclei": "nuclei.parquet",
               "manifest": "manifest.json"}
    if write_labels and (out / "labels.tiff").exists():
        outputs["labels"] = "labels.tiff"
    return outputs


def write_nuclei(nuclei, path: str | os.PathLike) -> Path:
    """Write a nucleus table to parquet (contours flattened; ``attrs`` into a JSON file beside it)."""
    table = nuclei.copy()
    table[K.nuclei.contour] = [None if c is None else np.asarray(c, np.float32).ravel().tolist()
                               for c in table[K.nuclei.contour]]
    table.attrs = {}
    path = Path(path)
    table.to_parquet(path, index=False)
    path.with_suffix(".attrs.json").write_text(json.dumps(_jsonable(dict(nuclei.attrs)), indent=1))
    return path


def read_nuclei(path: str | os.PathLike):
    """Read ``nuclei.parquet`` written by :func:`run` back into a nucleus table (contours as arrays)."""
    import pandas as pd

    path = Path(path)
    df = pd.read_parquet(path)
    attrs = path.with_suffix(".attrs.json")
    if attrs.exists():
        df.attrs.update(json.loads(attrs.read_text()))
    df[K.nuclei.contour] = [None if c is None else np.asarray(c, np.float32).reshape(-1, 2)
                            for c in df[K.nuclei.contour]]
    return df


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return None if not np.isfinite(obj) else float(obj)
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def demo(outdir: str | os.PathLike, *, size: int = 4096, seed: int = 0, mpp: float = 0.5, segmenter: Any = "auto",
         graph: str = "delaunay", n_jobs: int | None = None, progress: bool | None = None,
         match_radius_um: float = 3.0, reps: Any = REPS, train: bool = False) -> RunResult:
    """The main job on the built-in default: a synthetic H&E slide with ground truth, no downloads.

    Writes the slide and its ground truth under ``outdir/slide/``, runs :func:`run` into ``outdir``,
    and scores the detected nuclei against the ground truth (centroid F1 within ``match_radius_um``),
    stored in the manifest and in ``outdir/demo_report.json``.
    """
    import pandas as pd

    from .datasets import synthetic_slide
    from .seg import detection_scores

    out = _make_outdir(outdir)
    with timed("synthetic slide"):
        syn = synthetic_slide(out / "slide" / "synthetic.tiff", size=size, seed=seed, mpp=mpp, progress=progress)
    result = run(syn.path, out, segmenter=segmenter, graph=graph, n_jobs=n_jobs, progress=progress, seed=seed,
                 report=False, reps=reps, train=train)
    truth = pd.read_csv(syn.nuclei_path)
    sc = detection_scores(result.nuclei[[K.nuclei.x, K.nuclei.y]].to_numpy(),
                          truth[[K.truth.x, K.truth.y]].to_numpy(), radius_um=match_radius_um, mpp=mpp)
    report = {"slide": str(syn.path), "size": size, "seed": seed, "mpp": mpp,
              "segmenter": result.nuclei.attrs.get("method"),
              "n_true": int(len(truth)), "n_detected": int(len(result.nuclei)),
              "centroid_match_radius_um": match_radius_um, **{k2: _jsonable(v) for k2, v in dict(sc).items()}}
    (out / "demo_report.json").write_text(json.dumps(report, indent=2))
    result.manifest["demo"] = report
    (out / "manifest.json").write_text(json.dumps(_jsonable(result.manifest), indent=2))
    _report(out, cells=result.cells, samples=result.samples, nuclei=result.nuclei, manifest=result.manifest)
    logger.info("demo: %d of %d true nuclei detected, centroid F1 %.3f", report.get("tp", 0), len(truth),
                report.get("f1", float("nan")))
    return result
