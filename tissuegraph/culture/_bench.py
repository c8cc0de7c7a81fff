"""``tissuegraph culture demo`` / ``tissuegraph culture bench``: plates -> profiles and networks -> evaluation.

This module is the command-line layer of the culture path (it imports ``tissuegraph.eval`` and
``tissuegraph.bench`` lazily); it is not exported from ``tg.culture``.  It writes what ``tissuegraph bench``
writes (``results.csv``, ``summary.md`` with scores, intervals and baseline gaps, ``summary.csv``, ``gaps.csv``,
the plots) through the same writers (``tissuegraph.bench._evaluate_tasks`` / ``_write_tables`` /
``_summary_md``), plus the screen metrics (replicate and mechanism mAP, NSC, NSCB, percent replicating).

Representations: the hand-crafted profile (``X_profile``: CellProfiler-style single-cell features aggregated
to wells, or the given per-well profiles), and, when the data set has images, multichannel encoders of
single-cell crops (``tg.culture.embed_cells``): untrained twins (one per seed) and the same architecture
trained with SimCLR on the crops.  The baseline of the gaps is ``X_profile``.
"""

from __future__ import annotations

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
    # a treatment is compound @ concentration (or dose); a screen without doses (RxRx siRNAs): the compound
    dose = wells.obs.get(C.concentration, wells.obs.get("dose"))
    treat = (wells.obs[C.compound].astype(str) + "@" + (dose.astype(str) if dose is not None else "")).to_numpy()
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


def _profile_pipeline(wells, *, normalize: str, corr: float | None = None, select: str = "none",
                      transform: str = "none", align: str = "none", post: str = "none",
                      weight: str = "none", similarity: str = "cosine") -> None:
    """The profile pipeline of the culture bench and ``benchmarks/bench_bbbc021.py`` (one code path).

    Per-plate normalisation against the controls; features non-finite anywhere dropped; ``select`` in
    ``'none'``, ``'corr T'``, ``'icc M'`` or ``'icc M + corr T'`` (``corr=T`` is the older spelling of
    ``'corr T'``); ``transform`` ``'none'`` or a :func:`rank_transform` method; ``align`` fitted on the
    controls only: ``'ZCA eps E'``, ``'TVN eps E'`` (PCA whitening), ``'CORAL eps E'`` (per batch) or
    ``'FA N'`` (factor analysis); ``post`` ``'none'`` or a :func:`rank_transform` method applied after the
    alignment (pooled over all wells: whitened or aligned features made Gaussian again, per feature);
    ``weight`` ``'none'`` or ``'icc P'``: last, every feature multiplied by its replicate ICC to the power P
    (:func:`weight_reproducible`).  ``similarity`` is recorded by the caller.
    """
    from ._profiles import normalize as _norm
    from ._profiles import rank_transform, select_features, select_reproducible, weight_reproducible

    _norm(wells, method=normalize)
    X = wells.obsm[C.profile].astype(float)
    bad = ~np.isfinite(X).all(axis=0) | (np.abs(X) > 1e6).any(axis=0)
    wells.obsm[C.profile] = np.where(bad[None, :], np.nan, X).astype(np.float32)
    select_features(wells, operations=["missing", "variance"], na_cutoff=0.0)
    steps = [t.strip() for t in select.split("+")] if select and select != "none" else []
    if corr:
        steps.append(f"corr {corr}")
    for step in steps:
        kind, value = step.split()
        if kind == "icc":
            select_reproducible(wells, min_icc=float(value))
        elif kind == "corr":
            select_features(wells, operations=["correlation"], corr_threshold=float(value))
        else:
            raise InputError(f"Unknown feature selection step {step!r}: use 'icc M' or 'corr T'.")
    if transform != "none":
        rank_transform(wells, method=transform, by=None)
    if post not in ("none", "inverse_normal", "uniform"):
        raise InputError(f"Unknown post transform {post!r}: use 'none', 'inverse_normal' or 'uniform'.")
    if align != "none":
        _align(wells, align)
    if post != "none":
        rank_transform(wells, method=post, by=None)
    if weight != "none":
        kind, _, value = weight.partition(" ")
        if kind != "icc":
            raise InputError(f"Unknown weight {weight!r}: use 'none' or 'icc P'.")
        weight_reproducible(wells, power=float(value or 1.0))


def _align(wells, align: str) -> None:
    """One operation fitted on the controls (see :func:`_profile_pipeline`)."""
    from ._profiles import coral, factor_analysis, spherize

    tokens = align.split()
    kind = tokens[0]
    value = tokens[1] if kind == "FA" and len(tokens) > 1 else tokens[-1]  # 'FA 50' or 'FA 50 on DMSO'
    if kind == "ZCA":
        spherize(wells, method="ZCA", epsilon=float(value), relative=True)
    elif kind == "TVN":
        spherize(wells, method="PCA", epsilon=float(value), relative=True)
    elif kind == "CORAL":
        coral(wells, by="batch", epsilon=float(value))
    elif kind == "FA":
        factor_analysis(wells, n_components=int(value), seed=0)
    else:
        raise InputError(f"Unknown alignment {align!r}: use 'ZCA eps E', 'TVN eps E', 'CORAL eps E' or 'FA N'.")


#: the label-free choice of the second grid of ``benchmarks/bench_bbbc021.py``, and the reference; the third grid's
#: criteria (replicate or compound identity) picked worse pipelines, so this one is kept (benchmarks/results/bbbc021.md)
BBBC021_PIPELINES = {
    "X_profile": dict(normalize="standardize", select="icc 0.2 + corr 0.9", transform="inverse_normal",
                      align="CORAL eps 0.3", similarity="correlation"),
    "X_profile_reference": dict(normalize="standardize", similarity="cosine"),
}


NETWORK_NOTE_NO_IMAGES = ("No network representation: this data set holds per-well profiles only (no images), so no "
                          "encoder of single-cell crops can run; only the hand-crafted profiles are evaluated.")


def _network_reps(plate, cells, wells, *, quick: bool, seeds: tuple[int, ...], arch: str, epochs: int | None,
                  device: str | None, progress: bool | None, skipped: dict[str, str]) -> list[str]:
    """Untrained twins (one per seed) and a SimCLR-trained encoder of the single-cell crops, pooled per well
    (``tg.culture.embed_cells``), then standardised per plate against the controls like the profile.

    A step that fails is reported in ``skipped`` (and the summary) and the others still run."""
    from ._crops import embed_cells, train_cell_encoder
    from ._profiles import normalize

    before = set(wells.obsm)
    steps = [("cnn_untrained", lambda: embed_cells(wells, plate, cells=cells, model=arch, seeds=seeds,
                                                   device=device, progress=progress))]

    def _ssl():
        enc, _ = train_cell_encoder(cells, plate, model=arch, seed=seeds[0], device=device, progress=progress,
                                    epochs=epochs if epochs is not None else (10 if quick else 20),
                                    max_crops=1024 if quick else 4096, batch_size=128)
        embed_cells(wells, plate, cells=cells, model=enc, device=device, progress=progress)

    steps.append(("cnn_ssl", _ssl))
    for name, fn in steps:
        done = set(wells.obsm)
        try:
            with timed(f"culture bench: {name}"):
                fn()
        except Exception as exc:  # one failing network must not lose the others; it is reported
            skipped[name] = f"failed: {type(exc).__name__}: {exc}"
            logger.error("culture bench: %s failed", name, exc_info=True)
            for k in set(wells.obsm) - done:
                del wells.obsm[k]
    keys = [k for k in wells.obsm if k not in before]
    for k in keys:
        # per-plate z-score against the controls, as the profile (a constant column counts as std 1)
        normalize(wells, rep=k, method="standardize")
    return keys


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


def _tasks(wells) -> list[dict]:
    """The evaluation tasks of the culture bench: the mechanism of treated wells, from splits that leave whole
    compounds out (as NSC does), by linear / kNN probes and retrieval."""
    treated = ~wells.obs[C.control].to_numpy(dtype=bool)
    # shortcut probes: can a representation tell the batch / plate apart (plate effects)?  Biological: the
    # cells per well (a treatment effect in a screen, not a shortcut as on tissue)
    confounds = [c for c in (C.batch, C.plate) if c in wells.obs.columns]
    probes = {"cells per well": K.obs.n_cells} if K.obs.n_cells in wells.obs.columns else {}
    tasks = [{"name": "mechanism (compounds held out)", "label_key": C.moa, "task": ["classification", "retrieval"],
              "group_key": C.compound, "subset": {C.control: "False"}, "confounds": confounds, "probes": probes}]
    if wells.obs.loc[treated, C.compound].nunique() < 4:
        raise InputError("the screen has fewer than 4 treated compounds: too few to hold compounds out.")
    return tasks


def _screen_rows(wells, reps: list[str], *, null_size: int, seed: int, metrics: dict[str, str]) -> list[dict]:
    rows = []
    for rep in reps:
        with timed(f"screen metrics {rep}"):
            for r in _metrics(wells, rep, null_size=null_size, seed=seed, metric=metrics.get(rep, "cosine"),
                              consensus_method="median"):
                rows.append({"representation": rep, **r, "similarity": metrics.get(rep, "cosine")})
    return rows


def culture_bench(outdir: str | Path, *, dataset: Any = "synthetic", quick: bool = False, seed: int = 0,
                  segmenter: str = "stardist", null_size: int = 2000, networks: bool = True,
                  seeds: tuple[int, ...] | None = None, arch: str = "resnet18", epochs: int | None = None,
                  device: str | None = None, progress: bool | None = None,
                  command: str | None = None, label_key: str | None = None, compound_key: str | None = None,
                  control: Any = None, channels: Any = None, dna: str | int | None = None,
                  cytoplasm: str | int | None = None, mpp: float | None = None, metadata: Any = None,
                  report: bool = True) -> dict[str, Any]:
    """Run the culture benchmark; write what ``tissuegraph bench`` writes, plus the screen metrics.

    ``OUTDIR/results.csv`` (tidy: dataset, task, representation, protocol, metric, split, seed, value: the
    ``tg.eval.evaluate`` rows of every (split, seed), then the screen metrics of the whole screen with
    ``split='all'``: replicate mAP, percent replicating, mechanism mAP, NSC, NSCB), ``summary.md`` (scores with
    95 % intervals, baseline gaps to the hand-crafted profile ``X_profile`` and to the untrained twins with
    verdicts, flags, the screen metrics), ``summary.csv`` / ``gaps.csv`` / ``cka_0.csv``, the plots
    (``scores_0.png``, ``gaps_0.png``, ``cka_0.png``), ``manifest.json``, ``wells.h5ad`` and ``report.html``.

    dataset
        ``'synthetic'`` (the built-in plate: images -> nuclei (``segmenter``) -> cells -> features -> wells, and
        single-cell crops -> networks), ``'bbbc021'`` (the per-well BBBC021 profiles in
        ``$TISSUEGRAPH_SHARED_DATA/bbbc021_profiles``: no images, so no network can run; the summary says so),
        a PATH (folder or CSV) in any layout of :func:`tissuegraph.culture._detect.detect_layout`: BBBC021 images
        (image + MOA CSVs, one TIFF per channel), RxRx (``metadata.csv`` + PNGs), a JUMP ``load_data`` CSV, a
        table of image paths (``plate``, ``well``, ``site``, ``path_<channel>`` columns or ``channels``), or
        per-well profiles (a folder like the BBBC021 profiles one, or a CSV of ``Cells_*``/``Nuclei_*`` columns);
        or a plate object.  Image plates run the whole path: nuclei (``segmenter``), cells, per-cell features,
        well profiles, crop encoders, evaluation.
    label_key, compound_key, control
        The label evaluated (default the ``moa`` column), the treatment column held out as a whole (default
        ``compound``, else ``perturbation``) and the control value of that column (default: an ``is_control``
        column, else DMSO); see :func:`~tissuegraph.culture._detect.prepare_screen`.
    channels, dna, cytoplasm, mpp
        Path columns of a generic table (``['DNA=col', ...]``) or RxRx channel numbers; the DNA and cytoplasm
        channels used for segmentation (name or index; default guessed from the names); µm/px of the images.
    metadata
        A per-well table (``plate``, ``well`` or ``Metadata_Plate``, ``Metadata_Well``, plus e.g. ``compound``,
        ``moa``) joined onto a PATH's sites or wells: a JUMP ``load_data`` CSV carries no treatment.
    report
        Also write ``OUTDIR/report.html`` (``tissuegraph.report.write_report``, as ``tissuegraph bench`` does);
        a failure there is logged and never fails the bench.
    networks, seeds, arch, epochs
        Network representations of the crops (plates with images): untrained twins of ``arch`` (one per seed;
        default ``(seed, seed + 1, seed + 2)``) and the same architecture trained with SimCLR on the crops
        (``epochs``: 10 on up to 1,024 crops with ``quick``, else 20 on up to 4,096).
    """
    import functools

    from .. import bench as B

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    seeds = tuple(int(s) for s in (seeds if seeds is not None else (seed, seed + 1, seed + 2)))
    info: dict[str, Any] = {"dataset": dataset, "quick": quick, "seed": seed}
    plate = cells = None
    screen_kw = dict(label_key=label_key, compound_key=compound_key, control=control)
    image_pipelines = {"X_profile": dict(normalize="mad_robustize", corr=0.9, similarity="cosine")}
    if isinstance(dataset, (str, os.PathLike)) and str(dataset) not in ("synthetic", "bbbc021"):
        from ._detect import open_dataset, prepare_screen

        layout, loaded = open_dataset(dataset, channels=channels, control=control, metadata=metadata)
        info["layout"] = layout
        if layout == "bbbc021_profiles":
            wells, pipelines = loaded, BBBC021_PIPELINES
        elif layout == "profiles":
            obs = prepare_screen(loaded.obs, where=str(dataset), **screen_kw)
            wells = loaded[obs.index].copy()
            wells.obs = obs
            pipelines = image_pipelines
        else:
            loaded.sites = prepare_screen(loaded.sites, where=str(dataset), **screen_kw).reset_index(drop=True)
            dataset = loaded  # an image plate: the whole path below
        if segmenter == "truth" and not isinstance(dataset, (str, os.PathLike)):
            raise InputError(f"--segmenter truth needs the synthetic plate's ground truth; {layout} images have "
                             "none. Use --segmenter stardist or watershed.")
    if not isinstance(dataset, (str, os.PathLike)):  # a plate object (PlateImages or SyntheticPlate)
        from ._cells import single_cells
        from ._detect import default_channels
        from ._profiles import aggregate

        plate = dataset
        if not hasattr(plate, "read") or not hasattr(plate, "sites"):
            raise InputError(f"dataset must be 'synthetic', 'bbbc021', a folder or a plate, got {type(plate).__name__}.")
        if not hasattr(plate, "nuclei"):  # a plate of files: label, compounds and controls checked before work
            from ._detect import prepare_screen

            plate.sites = prepare_screen(plate.sites, where=repr(plate), **screen_kw).reset_index(drop=True)
        g_dna, g_cyt = default_channels(plate.channels)
        with timed(f"single cells ({segmenter})"):
            cells = single_cells(plate, use_truth=segmenter == "truth",
                                 nuclei="watershed" if segmenter == "truth" else segmenter,
                                 dna=dna if dna is not None else g_dna,
                                 cytoplasm=cytoplasm if cytoplasm is not None else g_cyt,
                                 mpp=mpp if mpp is not None else getattr(plate, "mpp", None),
                                 spacing=mpp)  # µm features when the µm/px is given, else the plate's own
        wells = aggregate(cells, method="median")
        dataset = str(info["dataset"]) if "layout" in info else type(plate).__name__
        info.update(dataset=dataset, sites=len(plate), cells=int(cells.n_obs), segmenter=segmenter,
                    channels=list(plate.channels))
        pipelines = image_pipelines
    elif dataset == "synthetic":
        plate, cells, wells = synthetic_wells(quick=quick, seed=seed, segmenter=segmenter)
        info.update(sites=len(plate), cells=int(cells.n_obs), segmenter=segmenter)
        pipelines = image_pipelines
    elif dataset == "bbbc021":
        from ._io import read_bbbc021_profiles

        root = Path(os.environ.get("TISSUEGRAPH_SHARED_DATA", Path(
            __file__).resolve().parents[3] / "shared" / "data")) / "bbbc021_profiles"
        if not root.is_dir():
            raise InputError(f"BBBC021 profiles folder not found: {root} (set TISSUEGRAPH_SHARED_DATA or pass a path).")
        wells = read_bbbc021_profiles(root)
        pipelines = BBBC021_PIPELINES
    info["wells"] = int(wells.n_obs)
    similarity: dict[str, str] = {}
    made = {}
    for rep, cfg in pipelines.items():
        w = wells.copy()
        with timed(f"profiles {rep}"):
            _profile_pipeline(w, **cfg)
        rec = dict((w.uns.get(K.uns.representations) or {}).get(C.profile) or {})
        rec.setdefault("params", {})["pipeline"] = dict(cfg)
        made[rep] = (w.obsm[C.profile], w.uns.get(K.uns.feature_names(C.profile)), rec)
        similarity[rep] = cfg["similarity"]
    wells = wells.copy()
    for rep, (X, names, rec) in made.items():
        wells.obsm[rep] = np.asarray(X, dtype=np.float32)
        if names is not None:
            wells.uns[K.uns.feature_names(rep)] = np.asarray(names, dtype=object)
        wells.uns.setdefault(K.uns.representations, {})[rep] = rec
    skipped: dict[str, str] = {}
    if plate is None:
        skipped["networks"] = NETWORK_NOTE_NO_IMAGES
    elif not networks:
        skipped["networks"] = "not run (networks=False / --no-networks)"
    else:
        _network_reps(plate, cells, wells, quick=quick, seeds=seeds, arch=arch, epochs=epochs, device=device,
                      progress=progress, skipped=skipped)
    reps = [k for k in wells.obsm if str(k).startswith("X_")]
    logger.info("culture bench: representations %s", ", ".join(reps))

    # the screen metrics of every representation (whole screen, no splits)
    screen = pd.DataFrame(_screen_rows(wells, reps, null_size=null_size, seed=seed, metrics=similarity))
    # the same evaluation as tissuegraph bench, with the hand-crafted profile as the baseline
    from ..eval import evaluate

    ev = B._evaluate_tasks(wells, _tasks(wells), functools.partial(evaluate, baseline=C.profile), quick=quick,
                           seeds=seeds, dataset=str(dataset))
    extra = screen.assign(dataset=str(dataset), task="screen (all wells)", split="all", seed=seed)
    ev["results"] = pd.concat([ev["results"], extra[["dataset", "task", "representation", "protocol", "metric",
                                                     "split", "seed", "value"]]], ignore_index=True)
    paths = B._write_tables(out, ev, skipped)
    info["seconds"] = time.perf_counter() - t0
    title = f"tissuegraph culture bench: {dataset}{' (quick)' if quick else ''}"
    cmd = command or f"tissuegraph culture bench --dataset {dataset}{' --quick' if quick else ''} -o {out}"
    md = B._summary_md(str(dataset), ev, wells, skipped, quick=quick, command=cmd, seconds=info["seconds"],
                       title=title)
    md += "\n" + "\n".join(_screen_md(screen, wells, info, plate is None)) + "\n"
    paths["summary"].write_text(md)
    (out / "manifest.json").write_text(json.dumps({
        "params": {"dataset": str(dataset), "quick": quick, "seed": seed, "seeds": list(seeds),
                   "segmenter": segmenter, "null_size": null_size, "networks": networks, "arch": arch,
                   "epochs": epochs},
        "skipped": skipped, "representations": reps, "info": {k: v for k, v in info.items()},
        "seconds": round(info["seconds"], 1),
        # read by tissuegraph.report ("What was run")
        "parameters": {"dataset": str(dataset), "layout": info.get("layout", dataset), "quick": quick,
                       "seed": seed, "segmenter": segmenter if plate is not None else None, "networks": networks,
                       "arch": arch, "label_key": label_key or C.moa},
        "counts": {k: int(info[k]) for k in ("sites", "cells", "wells") if isinstance(info.get(k), (int, np.integer))},
        "timings": {"total": round(info["seconds"], 1)}}, indent=2, default=str))
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
    if report:
        try:  # the same report writer as tissuegraph bench; a failure is logged, never fails the bench
            B._bench_report(out, ev, samples=wells, cells=None, slide=None, title=title)
        except Exception as exc:  # noqa: BLE001
            logger.warning("report.html not written: %s: %s", type(exc).__name__, exc)
        if (out / "report.html").is_file():
            paths["report"] = out / "report.html"
    info.update(results=ev["results"], screen=screen, summary=ev["summary"], gaps=ev["gaps"], skipped=skipped,
                paths=paths, wells=wells)
    return info


def _screen_md(screen: pd.DataFrame, wells, info: dict, no_images: bool) -> list[str]:
    reps_meta = wells.uns.get(K.uns.representations, {}) or {}
    lines = ["## Screen metrics (all wells, no splits)", "",
             "Replicate retrieval of treated wells (mAP, fraction with q < 0.05, percent replicating), mechanism "
             "retrieval of treatment profiles (per batch), NSC / NSCB (1-NN mechanism leaving out the compound, "
             "and the compound and batch). " + ", ".join(f"{k}: {v}" for k, v in info.items() if k != "seconds")
             + ".", ""]
    if not screen.empty:
        cols = list(dict.fromkeys(zip(screen["protocol"], screen["metric"])))
        lines += ["| representation | family | trained | " + " | ".join(f"{m} ({p})" for p, m in cols) + " |",
                  "|---|---|---|" + "---|" * len(cols)]
        for rep, g in screen.groupby("representation", sort=False):
            v = {(r.protocol, r.metric): r.value for r in g.itertuples()}
            meta = reps_meta.get(rep, {}) or {}
            lines.append(f"| {rep} | {meta.get('family', '')} | {meta.get('trained', '')} | "
                         + " | ".join(f"{v[c]:.3f}" if c in v else "" for c in cols) + " |")
        lines.append("")
    if no_images:
        lines += ["## Networks", "", NETWORK_NOTE_NO_IMAGES, ""]
    return lines
