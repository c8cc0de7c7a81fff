"""Benchmark data sets with defined tasks: one container (:class:`BenchDataset`) for every source.

A :class:`BenchDataset` is what ``tg.bench`` needs to run the whole pipeline from pixels and evaluate
every representation: **one image** (an in-memory array or a file: a whole-section image, or a mosaic
of many small images separated by glass), its µm/px, the **samples** defined on it (rectangular or
polygonal regions, or circular spots, in level-0 px), one row of ``obs`` per sample (labels, groups),
optional per-sample **targets** (e.g. spot expression) and the **tasks** (which column or target to
predict, how, and which column groups the splits).

Loaders here read local paths only (nothing is downloaded) and raise :class:`~tissuegraph.InputError`
naming the missing file:

* :func:`load_kather2016` - Kather et al. 2016 tiles (tissue class; splits grouped by source image);
* :func:`load_crchisto_patches` - CRCHistoPhenotypes patches labelled by their dominant annotated
  cell type (the annotations are never an input to any representation);
* :func:`load_her2st` - a legacy Spatial Transcriptomics section (``image.jpg``, ``spots.csv``,
  ``counts.h5ad``) with the HEST-Benchmark targets (top highly variable genes, ``log1p`` counts);
* layouts users bring: :func:`load_patch_folder` (class = folder), :func:`load_spots` (any image +
  spot table + counts), :func:`load_visium` (10x ``spatial/`` folder), :func:`load_hest`
  (HEST-1k: ``wsis/``, ``st/``, ``metadata/``) and :func:`load_regions` (QuPath GeoJSON regions).

Coordinates follow tissuegraph's convention: level-0 px, pixel centres at integers, ``(x, y)`` =
(column, row); a mosaic tile whose pixels are columns ``c0 .. c0 + w - 1`` spans ``[c0 - 0.5, c0 + w - 0.5)``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .. import _keys as K
from .._errors import InputError
from .._logging import logger, progress
from .._validate import check_positive
from ._real import CRCHISTO_MPP, _read_rgb, _root, load_crchisto, load_kather2016_samples

__all__ = [
    "BenchDataset",
    "KATHER2016_MPP",
    "mosaic",
    "hest_gene_selection",
    "load_kather2016",
    "load_patch_folder",
    "load_crchisto_patches",
    "load_spots",
    "load_her2st",
    "load_visium",
    "load_hest",
    "load_regions",
]

KATHER2016_MPP = 0.495
"""µm/px of the Kather et al. 2016 tiles (Aperio ScanScope, 20x), as stated by the authors."""

_MAX_MOSAIC_BYTES = 4_000_000_000
GLASS_RGB = 246  # white level of the glass between mosaic tiles (the synthetic renderer's glass)


@dataclass
class BenchDataset:
    """An image, the samples defined on it, their labels/targets, and the tasks to evaluate.

    Attributes
    ----------
    name
        Short name (``'kather2016'``, ``'diagnostic'``, ...).
    image
        (H, W, 3) uint8 array or a path :func:`tissuegraph.io.open_slide` reads.
    mpp
        µm per level-0 pixel of ``image``.
    slide_id
        Slide id used in the cells and samples AnnData.
    kind
        ``'region'`` (``regions``: one shapely polygon per sample, level-0 px, pixel-centre
        convention) or ``'spot'`` (``centers`` (n, 2) level-0 px and ``diameter_um``).
    obs
        One row per sample (index = sample ids, in the order of ``regions``/``centers``): labels,
        groups (``patient``/``group``) and any metadata.
    tasks
        One dict per task: ``name``, ``label_key`` (an ``obs`` column or a ``targets`` key), ``task``
        (``'classification'``, ``'regression'``, ``'retrieval'``), ``group_key`` (``obs`` column whose
        values never straddle a train/test split) and optionally ``subset`` (``{column: value}``:
        evaluate only those samples).
    targets
        ``{key: (array (n, k), names)}``; ``tg.bench`` stores them in ``samples.obsm[key]`` and
        ``samples.uns[f'{key}_names']``.
    tiles
        For mosaics: (m, 4) level-0 boxes ``x0, y0, x1, y1`` (edges) of the source images; cell-graph
        edges between different tiles are removed (they would join unrelated images).
    truth
        Ground-truth nucleus table when known (synthetic data), level-0 px of ``image``.
    metadata
        Source, licence notes, parameters.
    """

    name: str
    image: Any
    mpp: float
    slide_id: str
    kind: str
    obs: pd.DataFrame
    tasks: list[dict] = field(default_factory=list)
    regions: list | None = None
    centers: np.ndarray | None = None
    diameter_um: float | None = None
    targets: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)
    tiles: np.ndarray | None = None
    truth: pd.DataFrame | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ("region", "spot"):
            raise InputError(f"kind must be 'region' or 'spot', got {self.kind!r}.")
        n = len(self.obs)
        if self.kind == "region" and (self.regions is None or len(self.regions) != n):
            raise InputError(f"{self.name}: {n} samples in obs but "
                             f"{0 if self.regions is None else len(self.regions)} regions.")
        if self.kind == "spot":
            c = np.asarray(self.centers, dtype=np.float64) if self.centers is not None else None
            if c is None or c.shape != (n, 2):
                raise InputError(f"{self.name}: spot centres must have shape ({n}, 2).")
            self.centers = c
            self.diameter_um = float(check_positive(self.diameter_um, "diameter_um"))
        if not self.obs.index.is_unique:
            raise InputError(f"{self.name}: sample ids must be unique.")
        for key, (arr, names) in self.targets.items():
            if len(arr) != n or len(names) != np.shape(arr)[1]:
                raise InputError(f"{self.name}: target {key!r} has shape {np.shape(arr)} for {n} samples and "
                                 f"{len(names)} names.")
        for t in self.tasks:
            lk = t.get("label_key")
            if lk not in self.obs.columns and lk not in self.targets:
                raise InputError(f"{self.name}: task {t.get('name')!r} predicts {lk!r}, which is neither an obs "
                                 "column nor a target.")

    @property
    def n_samples(self) -> int:
        return len(self.obs)

    def open(self):
        """The image as a :class:`tissuegraph.io.Slide` with the data set's µm/px and slide id."""
        from ..io import open_slide

        return open_slide(self.image, mpp=self.mpp, slide_id=self.slide_id)

    def __repr__(self) -> str:
        shape = getattr(self.image, "shape", None) or str(self.image)
        return (f"BenchDataset({self.name!r}, {self.n_samples} {self.kind} samples, image {shape}, "
                f"mpp={self.mpp:g}, tasks={[t['name'] for t in self.tasks]})")


# ------------------------------------------------------------------------------------------------ mosaic
def _box(x0: float, y0: float, x1: float, y1: float):
    from shapely.geometry import box

    return box(x0, y0, x1, y1)


def mosaic(images: Sequence[np.ndarray], *, gap_px: int = 32, n_cols: int | None = None,
           background: int = GLASS_RGB) -> tuple[np.ndarray, np.ndarray]:
    """Place RGB images on one canvas, row by row, separated by ``gap_px`` of glass.

    Parameters
    ----------
    images
        (h, w, 3) uint8 arrays (sizes may differ; each cell of the grid is as large as the largest).
    gap_px
        Glass between neighbouring images, px.
    n_cols
        Images per row (default: about square).
    background
        Grey level of the glass.

    Returns
    -------
    ``(canvas, boxes)``: the (H, W, 3) uint8 canvas and (n, 4) float boxes ``x0, y0, x1, y1`` of each
    image in level-0 px *edges* (pixel centres at integers: columns ``c0..c0+w-1`` span
    ``[c0 - 0.5, c0 + w - 0.5)``).
    """
    n = len(images)
    if n == 0:
        raise InputError("mosaic needs at least one image.")
    gap_px = int(gap_px)
    if gap_px < 0:
        raise InputError(f"gap_px must be >= 0, got {gap_px}.")
    shapes = []
    for i, im in enumerate(images):
        a = np.asarray(im)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise InputError(f"mosaic: image {i} must be (h, w, 3) uint8, got {a.shape} {a.dtype}.")
        shapes.append(a.shape[:2])
    ch = max(s[0] for s in shapes)
    cw = max(s[1] for s in shapes)
    n_cols = int(n_cols) if n_cols else max(1, int(np.ceil(np.sqrt(n * ch / cw))))
    n_rows = int(np.ceil(n / n_cols))
    H = n_rows * ch + (n_rows + 1) * gap_px
    W = n_cols * cw + (n_cols + 1) * gap_px
    if H * W * 3 > _MAX_MOSAIC_BYTES:
        raise InputError(f"A mosaic of {n} images would take {H * W * 3 / 1e9:.1f} GB in memory (limit "
                         f"{_MAX_MOSAIC_BYTES / 1e9:.0f} GB); use fewer images (e.g. limit_per_class=).")
    canvas = np.full((H, W, 3), background, np.uint8)
    boxes = np.zeros((n, 4))
    for i, im in enumerate(images):
        r, c = divmod(i, n_cols)
        y0 = gap_px + r * (ch + gap_px)
        x0 = gap_px + c * (cw + gap_px)
        h, w = shapes[i]
        canvas[y0:y0 + h, x0:x0 + w] = im
        boxes[i] = (x0 - 0.5, y0 - 0.5, x0 + w - 0.5, y0 + h - 0.5)
    return canvas, boxes


def _region_dataset(name: str, images: Sequence[np.ndarray], obs: pd.DataFrame, *, mpp: float, gap_px: int,
                    tasks: list[dict], metadata: dict, sub_boxes: Sequence[Sequence[tuple]] | None = None,
                    sub_obs: pd.DataFrame | None = None) -> BenchDataset:
    """Mosaic ``images``; samples = whole images (``sub_boxes=None``) or boxes inside each image."""
    canvas, boxes = mosaic(images, gap_px=gap_px)
    if sub_boxes is None:
        regions = [_box(*b) for b in boxes]
        out_obs = obs
    else:
        regions = []
        for b, subs in zip(boxes, sub_boxes):
            for (sx0, sy0, sx1, sy1) in subs:  # pixel edges inside the image (0 = left edge)
                regions.append(_box(b[0] + sx0, b[1] + sy0, b[0] + sx1, b[1] + sy1))
        out_obs = sub_obs
    return BenchDataset(name=name, image=canvas, mpp=float(mpp), slide_id=name, kind="region", obs=out_obs,
                        regions=regions, tasks=tasks, tiles=boxes, metadata=metadata)


# ------------------------------------------------------------------------------------ patch folders


def load_patch_folder(root: str | os.PathLike, *, mpp: float, groups: str | dict | None = None,
                      limit_per_class: int | None = None, seed: int = 0, gap_px: int = 32,
                      name: str | None = None, progress_bar: bool | None = None) -> BenchDataset:
    """Labelled patches in class folders (Kather / NCT-CRC-HE layout: ``root/<class>/<image>``).

    Parameters
    ----------
    root
        Folder with one sub-folder per class (``01_TUMOR`` -> class ``TUMOR``: a leading number and
        underscore are dropped).
    mpp
        µm/px of the patches (required: nothing in a PNG records it reliably).
    groups
        How to group patches for splits: ``None`` (each patch its own group; only honest when patches
        are independent), a regular expression whose first group (or whole match) applied to the file
        name gives the group, or a ``{file name: group}`` mapping.
    limit_per_class
        Keep at most this many patches per class (a seeded random choice).
    seed
        Seed of that choice.
    gap_px
        Glass between the patches in the mosaic.

    Returns
    -------
    :class:`BenchDataset` (``kind='region'``): ``obs['label']`` = class, ``obs['group']``, ``obs['file']``;
    one task: classification of ``label`` grouped by ``group``.
    """
    mpp = float(check_positive(mpp, "mpp"))
    root_p = Path(root).expanduser()
    if not root_p.is_dir():
        raise InputError(f"The patch folder {str(root_p)!r} does not exist.")
    tiles = load_kather2016_samples(root_p)  # class folders -> (file, label), lazily read
    keys = tiles.keys
    if not keys:
        raise InputError(f"No images (.png, .tif, .jpg) in the class folders of {str(root_p)!r}.")
    files = [Path(f) for f, _ in keys]
    labels = [lab for _, lab in keys]
    sel = np.arange(len(files))
    if limit_per_class is not None:
        rng = np.random.default_rng(seed)
        keep = []
        for lab in sorted(set(labels)):
            idx = [i for i in sel if labels[i] == lab]
            if len(idx) > limit_per_class:
                idx = sorted(rng.choice(idx, size=int(limit_per_class), replace=False).tolist())
            keep += idx
        sel = np.array(sorted(keep))
    if groups is None:
        grp = [f"{f.parent.name}/{f.name}" for f in files]
    elif isinstance(groups, dict):
        missing = [f.name for f in files if f.name not in groups]
        if missing:
            raise InputError(f"groups has no entry for {len(missing)} file(s), e.g. {missing[:3]}.")
        grp = [str(groups[f.name]) for f in files]
    else:
        pat = re.compile(groups)
        grp = []
        for f in files:
            m = pat.search(f.name)
            if m is None:
                raise InputError(f"groups pattern {groups!r} does not match the file name {f.name!r}.")
            grp.append(m.group(1) if m.groups() else m.group(0))
    images = []
    for i in progress(sel, total=len(sel), desc="read patches", enabled=progress_bar):
        im = _read_rgb(files[i])
        images.append(im)
    ids = [f"{files[i].parent.name}/{files[i].stem}" for i in sel]
    obs = pd.DataFrame({K.obs.label: pd.Categorical([labels[i] for i in sel]),
                        "group": [grp[i] for i in sel], "file": [str(files[i]) for i in sel]},
                       index=pd.Index(ids))
    name = name or root_p.name
    tasks = [dict(name=f"{name}: class", label_key=K.obs.label, task="classification", group_key="group")]
    return _region_dataset(name, images, obs, mpp=mpp, gap_px=gap_px, tasks=tasks,
                           metadata={"source": str(root_p), "n_classes": int(obs[K.obs.label].nunique())})


_KATHER_SOURCE = re.compile(r"(CRC-Prim-HE-.+?)_Row_")


def load_kather2016(root: str | os.PathLike | None = None, *, limit_per_class: int | None = None, seed: int = 0,
                    gap_px: int = 32, progress_bar: bool | None = None) -> BenchDataset:
    """Kather et al. 2016 colorectal texture tiles as a benchmark: tissue class of 150 px tiles.

    Tiles cut from one larger source image are spatially adjacent (``<id>_CRC-Prim-HE-<slide>[_<img>]
    _Row_<r>_Col_<c>``), so the task groups splits by that source image (everything between the tile id
    and ``_Row``: ``obs['group']``; the slide ``CRC-Prim-HE-XX`` is in ``obs['slide_name']``). 0.495 µm/px.

    Parameters
    ----------
    root
        The ``kather2016`` folder (class folders and ``index.csv``); default: under
        :func:`~tissuegraph.datasets.shared_data_dir`. Also accepts ``kather2016_samples``.
    limit_per_class, seed
        Keep a seeded random subset of at most this many tiles per class.
    gap_px
        Glass between the tiles of the mosaic.
    """
    root_p = _root(root, "kather2016", "Kather 2016")
    ds = load_patch_folder(root_p, mpp=KATHER2016_MPP, groups=_KATHER_SOURCE.pattern,
                           limit_per_class=limit_per_class, seed=seed, gap_px=gap_px, name="kather2016",
                           progress_bar=progress_bar)
    ds.obs["slide_name"] = ds.obs["group"].str.extract(r"(CRC-Prim-HE-\d+)")[0].to_numpy()
    ds.tasks = [dict(name="kather2016: tissue class", label_key=K.obs.label, task="classification",
                     group_key="group")]
    ds.metadata.update(mpp_source="Kather et al. 2016 (0.495 µm/px)", licence="CC BY 4.0",
                       groups="source image 'CRC-Prim-HE-XX_YYY' (tiles of one image are neighbours)")
    return ds


# ----------------------------------------------------------------------------------------- CRCHisto
CRCHISTO_TYPES = ("epithelial", "fibroblast", "inflammatory", "others")


def load_crchisto_patches(root: str | os.PathLike | None = None, *, split: str = "all", patch_um: float = 55.0,
                          min_nuclei: int = 5, min_fraction: float = 0.5, gap_px: int = 32,
                          limit_images: int | None = None, progress_bar: bool | None = None) -> BenchDataset:
    """CRCHistoPhenotypes patches labelled by the dominant annotated nucleus type.

    Each 500 x 500 image is cut into a grid of square patches of ``patch_um``. A patch becomes a sample
    when it holds at least ``min_nuclei`` annotated nuclei of a known type (``epithelial``,
    ``fibroblast``, ``inflammatory``, ``others``; ``unlabelled`` does not count) and one type is at least
    ``min_fraction`` of them; that type is the label. The annotations only define the labels: no
    representation ever reads them. Splits are grouped by source image (``obs['group']``).

    Parameters
    ----------
    root
        The ``crchisto`` folder (``train/``, ``validation/``).
    split
        ``'train'``, ``'validation'`` or ``'all'``.
    patch_um
        Edge of a patch, µm (default 55 µm = 100 px at 0.55 µm/px).
    limit_images
        Use only the first images (natural order) of each split (for quick runs).
    """
    splits = ("train", "validation") if split == "all" else (split,)
    min_fraction = float(min_fraction)
    if not 0 < min_fraction <= 1:
        raise InputError(f"min_fraction must lie in (0, 1], got {min_fraction}.")
    patch_px = int(round(float(check_positive(patch_um, "patch_um")) / CRCHISTO_MPP))
    images, sub_boxes, rows, ids = [], [], [], []
    for sp in splits:
        recs = load_crchisto(root, split=sp)
        n = len(recs) if limit_images is None else min(len(recs), int(limit_images))
        for i in progress(range(n), total=n, desc=f"crchisto/{sp}", enabled=progress_bar):
            rec = recs[i]
            h, w = rec.image.shape[:2]
            boxes = []
            c = rec.centres
            known = c[c["type"].isin(CRCHISTO_TYPES)]
            for r0 in range(0, h - patch_px + 1, patch_px):
                for c0 in range(0, w - patch_px + 1, patch_px):
                    # a centre (x, y) is in the patch when c0 - 0.5 <= x < c0 + patch - 0.5
                    inside = known[(known.x >= c0 - 0.5) & (known.x < c0 + patch_px - 0.5)
                                   & (known.y >= r0 - 0.5) & (known.y < r0 + patch_px - 0.5)]
                    if len(inside) < min_nuclei:
                        continue
                    counts = inside["type"].value_counts()
                    top, top_n = counts.index[0], int(counts.iloc[0])
                    if top_n / len(inside) < min_fraction or (len(counts) > 1 and counts.iloc[1] == top_n):
                        continue
                    boxes.append((c0, r0, c0 + patch_px, r0 + patch_px))
                    row = {K.obs.label: top, "group": f"{sp}/{rec.id}", "split": sp,
                           "n_annotated": int(len(inside))}
                    for t in CRCHISTO_TYPES:
                        row[f"frac_{t}"] = float(counts.get(t, 0)) / len(inside)
                    rows.append(row)
                    ids.append(f"{sp}/{rec.id}/r{r0}_c{c0}")
            images.append(rec.image)
            sub_boxes.append(boxes)
    if not rows:
        raise InputError("No CRCHisto patch passed min_nuclei/min_fraction; lower them.")
    obs = pd.DataFrame(rows, index=pd.Index(ids))
    obs[K.obs.label] = pd.Categorical(obs[K.obs.label])
    tasks = [dict(name="crchisto: dominant cell type", label_key=K.obs.label, task="classification",
                  group_key="group")]
    meta = {"source": "CRCHistoPhenotypes (research use only)", "patch_px": patch_px, "min_nuclei": min_nuclei,
            "min_fraction": min_fraction, "mpp_source": "approximate (20x)"}
    return _region_dataset("crchisto", images, None, mpp=CRCHISTO_MPP, gap_px=gap_px, tasks=tasks, metadata=meta,
                           sub_boxes=sub_boxes, sub_obs=obs)


# ---------------------------------------------------------------------------------------------- spots
def hest_gene_selection(counts, *, n_top: int = 50, min_spot_fraction: float = 0.1,
                        batch_key: str | None = None) -> list[str]:
    """The HEST-Benchmark choice of target genes: the top highly variable genes.

    As in HEST's gene-set script (``find_geneset``, ``var_50genes.json``): keep genes detected (count
    > 0) in at least ``min_spot_fraction`` of the spots, normalise each spot to 10,000 counts,
    ``log1p``, and take the ``n_top`` genes ranked by ``scanpy.pp.highly_variable_genes``
    (``flavor='seurat'``; ``batch_key`` for several sections).

    Parameters
    ----------
    counts
        AnnData of raw counts (spots x genes).
    """
    import scanpy as sc
    import scipy.sparse as sp

    X = counts.X
    detected = np.asarray((X > 0).sum(axis=0)).ravel() / max(counts.n_obs, 1)
    keep = detected >= float(min_spot_fraction)
    if keep.sum() < n_top:
        raise InputError(f"Only {int(keep.sum())} genes are detected in >= {min_spot_fraction:.0%} of the spots; "
                         f"cannot pick {n_top}.")
    a = counts[:, keep].copy()
    a.X = a.X.astype(np.float64) if not sp.issparse(a.X) else a.X.astype(np.float64)
    sc.pp.normalize_total(a, target_sum=1e4)
    sc.pp.log1p(a)
    sc.pp.highly_variable_genes(a, n_top_genes=int(n_top), flavor="seurat", batch_key=batch_key)
    var = a.var
    if batch_key is None and "dispersions_norm" in var:  # ties can mark more than n_top: keep the top n_top
        order = np.argsort(-np.nan_to_num(var["dispersions_norm"].to_numpy(float), nan=-np.inf), kind="stable")
        return var.index[order[: int(n_top)]].astype(str).tolist()
    hv = var.index[var["highly_variable"].to_numpy()].astype(str).tolist()
    return hv[: int(n_top)]


def _log1p_dense(counts, genes: Sequence[str]) -> np.ndarray:
    import scipy.sparse as sp

    X = counts[:, list(genes)].X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    return np.log1p(X.astype(np.float64)).astype(np.float32)


def load_spots(image: Any, spots: Any, *, mpp: float, diameter_um: float, counts: Any = None,
               x_col: str = "x_px", y_col: str = "y_px", id_col: str | None = "barcode", genes: Any = "hest",
               n_genes: int = 50, name: str = "spots", slide_id: str | None = None) -> BenchDataset:
    """Any image with circular spots and, optionally, their counts (the generic spot layout).

    Parameters
    ----------
    image
        Path (or array) of the full-resolution image the spot positions refer to.
    spots
        CSV path or DataFrame with one row per spot: ``x_col``/``y_col`` = centre in image px (x =
        column), ``id_col`` = spot id (barcode). Rows with ``in_tissue == 0`` are dropped.
    mpp
        µm/px of ``image``.
    diameter_um
        Spot diameter (Visium 55, legacy ST 100).
    counts
        AnnData (or ``.h5ad`` path) of raw counts, spots x genes, obs_names = spot ids. Spots without
        counts are dropped (logged).
    genes
        ``'hest'`` (:func:`hest_gene_selection`, ``n_genes``), a list of gene names, or ``None`` (no
        expression target).

    Returns
    -------
    :class:`BenchDataset` (``kind='spot'``); with counts: target ``'expression'`` = ``log1p`` counts of
    the chosen genes (HEST-Benchmark), task: regression of ``expression`` grouped by ``obs['group']``
    (the image's id: one section means no grouped split is possible, so the folds are over spots; see
    the task's ``note``).
    """
    import anndata as ad

    mpp = float(check_positive(mpp, "mpp"))
    if isinstance(spots, (str, os.PathLike)):
        p = Path(spots)
        if not p.is_file():
            raise InputError(f"The spot table {str(p)!r} does not exist.")
        spots = pd.read_csv(p)
    if not isinstance(spots, pd.DataFrame):
        raise InputError(f"spots must be a CSV path or a DataFrame, got {type(spots).__name__}.")
    missing = [c for c in (x_col, y_col) if c not in spots.columns]
    if missing:
        raise InputError(f"The spot table lacks column(s) {missing}; columns: {list(spots.columns)[:12]}. "
                         "Pass x_col=/y_col=.")
    df = spots.copy()
    if "in_tissue" in df.columns:
        df = df[df["in_tissue"].astype(int) == 1]
    ids = df[id_col].astype(str) if id_col is not None and id_col in df.columns else \
        pd.Series([f"spot{i}" for i in range(len(df))], index=df.index)
    df.index = pd.Index(ids.to_numpy())
    if not np.isfinite(df[[x_col, y_col]].to_numpy(float)).all():
        raise InputError("The spot table has NaN/infinite positions.")
    targets, tasks = {}, []
    meta: dict[str, Any] = {"diameter_um": diameter_um}
    if counts is not None:
        if isinstance(counts, (str, os.PathLike)):
            cp = Path(counts)
            if not cp.is_file():
                raise InputError(f"The counts file {str(cp)!r} does not exist.")
            counts = ad.read_h5ad(cp)
        counts = counts[~counts.obs_names.duplicated()]
        common = df.index.intersection(counts.obs_names.astype(str))
        if len(common) == 0:
            raise InputError("No spot id of the spot table is in the counts' obs_names; check id_col=.")
        if len(common) < len(df):
            logger.info("%s: %d of %d spots have counts; the others are dropped.", name, len(common), len(df))
        df = df.loc[common]
        counts = counts[list(common)]
        if genes is not None:
            gl = hest_gene_selection(counts, n_top=n_genes) if isinstance(genes, str) and genes == "hest" \
                else [str(g) for g in genes]
            unknown = [g for g in gl if g not in counts.var_names]
            if unknown:
                raise InputError(f"Genes not in the counts: {unknown[:5]}.")
            targets["expression"] = (_log1p_dense(counts, gl), gl)
            tasks.append(dict(name=f"{name}: expression (HEST)", label_key="expression", task="regression",
                              group_key="group",
                              note="log1p counts of the HEST-Benchmark genes; PCA + ridge, Pearson r per gene"))
            meta["genes"] = "hest top highly variable" if isinstance(genes, str) else "given"
    obs = pd.DataFrame({"group": slide_id or name, "x_px": df[x_col].to_numpy(float),
                        "y_px": df[y_col].to_numpy(float)}, index=df.index)
    for c in ("array_x", "array_y", "array_row", "array_col"):
        if c in df.columns:
            obs[c] = df[c].to_numpy()
    if isinstance(image, (str, os.PathLike)) and not Path(image).is_file():
        raise InputError(f"The image {str(image)!r} does not exist.")
    return BenchDataset(name=name, image=image, mpp=mpp, slide_id=slide_id or name, kind="spot", obs=obs,
                        centers=obs[["x_px", "y_px"]].to_numpy(float), diameter_um=diameter_um, tasks=tasks,
                        targets=targets, metadata=meta)


def load_her2st(root: str | os.PathLike | None = None, *, section: str = "B4", n_genes: int = 50) -> BenchDataset:
    """One HER2ST section (legacy Spatial Transcriptomics, 100 µm spots) with HEST-Benchmark targets.

    Reads ``<root>/<section>/{image.jpg, spots.csv, counts.h5ad, scalefactors.json}`` (the layout of
    ``../shared/data/her2st``) through :func:`load_spots`; µm/px from ``scalefactors.json``
    (``microns_per_pixel``), spot diameter 100 µm (``spot_diameter_fullres`` x µm/px when present).
    """
    base = _root(root, "her2st", "HER2ST")
    folder = base / section if (base / section).is_dir() else base
    need = {"image": folder / "image.jpg", "spots": folder / "spots.csv", "counts": folder / "counts.h5ad"}
    for what, p in need.items():
        if not p.is_file():
            raise InputError(f"HER2ST: {str(p)!r} ({what}) is missing.")
    mpp, diam = None, 100.0
    sf = folder / "scalefactors.json"
    if sf.is_file():
        s = json.loads(sf.read_text())
        mpp = s.get("microns_per_pixel")
        if mpp and s.get("spot_diameter_fullres"):
            diam = float(s["spot_diameter_fullres"]) * float(mpp)
    if mpp is None:
        raise InputError(f"HER2ST: no µm/px (scalefactors.json 'microns_per_pixel') in {str(folder)!r}.")
    ds = load_spots(need["image"], need["spots"], counts=need["counts"], mpp=float(mpp), diameter_um=diam,
                    n_genes=n_genes, name=f"her2st_{section}", slide_id=f"her2st_{section}")
    ds.metadata.update(source="almaan/her2st (Andersson et al. 2021); licence unconfirmed: evaluation only",
                       mpp_source="estimated from the spot lattice")
    for t in ds.tasks:
        t["note"] = ("one section: no grouped split exists, so folds are over spots (neighbouring spots "
                     "are correlated: scores are optimistic). " + t.get("note", ""))
        t["group_key"] = None
    return ds


def _read_positions(spatial: Path) -> pd.DataFrame:
    p_new, p_old = spatial / "tissue_positions.csv", spatial / "tissue_positions_list.csv"
    if p_new.is_file():
        df = pd.read_csv(p_new)
    elif p_old.is_file():
        df = pd.read_csv(p_old, header=None, names=["barcode", "in_tissue", "array_row", "array_col",
                                                     "pxl_row_in_fullres", "pxl_col_in_fullres"])
    else:
        raise InputError(f"Neither {str(p_new)!r} nor {str(p_old)!r} exists (10x Visium spot positions).")
    need = {"barcode", "in_tissue", "pxl_row_in_fullres", "pxl_col_in_fullres"}
    if need - set(df.columns):
        raise InputError(f"The Visium positions lack column(s) {sorted(need - set(df.columns))}.")
    return df


def load_visium(path: str | os.PathLike, *, image: Any = None, counts: Any = None, mpp: float | None = None,
                genes: Any = "hest", n_genes: int = 50, diameter_um: float = 55.0) -> BenchDataset:
    """A 10x Visium output folder (Space Ranger ``outs/`` or its ``spatial/`` folder).

    Parameters
    ----------
    path
        The folder holding ``spatial/`` (or ``spatial/`` itself): ``tissue_positions.csv`` (or the
        older header-less ``tissue_positions_list.csv``), ``scalefactors_json.json`` and
        ``tissue_hires_image.png``.
    image
        The full-resolution image the positions refer to (strongly preferred: nuclei are segmented on
        it). Default: ``spatial/tissue_hires_image.png`` with positions scaled by
        ``tissue_hires_scalef`` (nuclei at that resolution are only a few px wide).
    counts
        AnnData/``.h5ad`` of counts, or default ``filtered_feature_bc_matrix.h5`` next to ``spatial/``
        (read with ``scanpy.read_10x_h5``); ``None`` and absent: no expression target.
    mpp
        µm/px of the full-resolution image; default: ``diameter_um / spot_diameter_fullres``.
    """
    folder = Path(path).expanduser()
    spatial = folder if (folder / "scalefactors_json.json").is_file() else folder / "spatial"
    sf_path = spatial / "scalefactors_json.json"
    if not sf_path.is_file():
        raise InputError(f"{str(sf_path)!r} is missing; pass the Visium 'outs' or 'spatial' folder.")
    sf = json.loads(sf_path.read_text())
    pos = _read_positions(spatial)
    spot_px = sf.get("spot_diameter_fullres")
    if mpp is None:
        if not spot_px:
            raise InputError("scalefactors_json.json has no spot_diameter_fullres; pass mpp=.")
        mpp = float(diameter_um) / float(spot_px)
    scale = 1.0
    if image is None:
        hires = spatial / "tissue_hires_image.png"
        if not hires.is_file():
            raise InputError(f"No image: pass image= (the full-resolution image), or provide {str(hires)!r}.")
        image = hires
        scale = float(sf.get("tissue_hires_scalef", 1.0))
        logger.warning("load_visium: using the hires image (scale %.3g); nuclei are small at %.2f µm/px. Pass "
                       "image= with the full-resolution image for cell-level analysis.", scale, mpp / scale)
    spots = pd.DataFrame({"barcode": pos["barcode"].astype(str), "in_tissue": pos["in_tissue"],
                          "x_px": pos["pxl_col_in_fullres"].astype(float) * scale,
                          "y_px": pos["pxl_row_in_fullres"].astype(float) * scale,
                          "array_row": pos.get("array_row"), "array_col": pos.get("array_col")})
    if counts is None:
        h5 = (spatial.parent / "filtered_feature_bc_matrix.h5")
        if h5.is_file():
            import scanpy as sc

            counts = sc.read_10x_h5(h5)
            counts.var_names_make_unique()
    name = folder.name if folder.name != "spatial" else folder.parent.name
    return load_spots(image, spots, mpp=mpp / scale, diameter_um=diameter_um, counts=counts,
                      genes=genes if counts is not None else None, n_genes=n_genes, name=name or "visium")


def load_hest(root: str | os.PathLike, sample_id: str | Sequence[str], *, genes: Any = "hest",
              n_genes: int = 50) -> BenchDataset | list[BenchDataset]:
    """A HEST-1k sample (or several): ``wsis/<id>.tif``, ``st/<id>.h5ad``, ``metadata/<id>.json``.

    Spot centres come from ``obs['pxl_col_in_fullres']``/``obs['pxl_row_in_fullres']`` (else
    ``obsm['spatial']``), µm/px from the metadata's ``pixel_size_um_estimated`` (else
    ``pixel_size_um_embedded``), the spot diameter from ``spot_diameter`` (µm; default 55). For several
    samples the genes are chosen once over all of them (HEST's batch-aware selection) and a list is
    returned, one data set per sample (the group of a spot is its sample).
    """
    import anndata as ad

    root_p = Path(root).expanduser()
    if not root_p.is_dir():
        raise InputError(f"The HEST folder {str(root_p)!r} does not exist.")
    ids = [sample_id] if isinstance(sample_id, str) else list(sample_id)
    parts = []
    for sid in ids:
        wsi = next((p for p in (root_p / "wsis" / f"{sid}{s}" for s in (".tif", ".tiff", ".svs")) if p.is_file()),
                   None)
        st = root_p / "st" / f"{sid}.h5ad"
        meta_p = root_p / "metadata" / f"{sid}.json"
        for what, p in (("whole-slide image (wsis/<id>.tif)", wsi), ("spot AnnData", st), ("metadata", meta_p)):
            if p is None or not Path(p).is_file():
                raise InputError(f"HEST sample {sid!r}: the {what} {str(p) if p else ''} is missing.")
        meta = json.loads(meta_p.read_text())
        mpp = meta.get("pixel_size_um_estimated") or meta.get("pixel_size_um_embedded")
        if not mpp:
            raise InputError(f"HEST sample {sid!r}: metadata has no pixel_size_um_estimated.")
        adata = ad.read_h5ad(st)
        if {"pxl_col_in_fullres", "pxl_row_in_fullres"} <= set(adata.obs.columns):
            xy = adata.obs[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(float)
        elif "spatial" in adata.obsm:
            xy = np.asarray(adata.obsm["spatial"], float)[:, :2]
        else:
            raise InputError(f"HEST sample {sid!r}: no spot positions (obs pxl_*_in_fullres or obsm['spatial']).")
        spots = pd.DataFrame({"barcode": adata.obs_names.astype(str), "x_px": xy[:, 0], "y_px": xy[:, 1]})
        if "in_tissue" in adata.obs:
            spots["in_tissue"] = adata.obs["in_tissue"].to_numpy()
        parts.append((sid, wsi, spots, adata, float(mpp), float(meta.get("spot_diameter") or 55.0)))
    gl = genes
    if isinstance(genes, str) and genes == "hest":
        both = ad.concat([p[3] for p in parts], label="batch", keys=[p[0] for p in parts], join="inner")
        gl = hest_gene_selection(both, n_top=n_genes, batch_key="batch" if len(parts) > 1 else None)
    out = [load_spots(wsi, spots, counts=adata, mpp=mpp, diameter_um=diam, genes=gl, n_genes=n_genes,
                      name=sid, slide_id=sid) for sid, wsi, spots, adata, mpp, diam in parts]
    return out[0] if isinstance(sample_id, str) else out


def _read_geojson(regions: Any) -> tuple[list, list[dict], list[str | None]]:
    """GeoJSON (path, text, dict or feature list) -> polygons, properties, feature ids."""
    from shapely.geometry import shape

    if isinstance(regions, (str, os.PathLike)):
        text = str(regions).lstrip()
        if not (text.startswith("{") or text.startswith("[")):
            p = Path(regions)
            if not p.is_file():
                raise InputError(f"GeoJSON file not found: {str(p)!r}.")
            text = p.read_text(encoding="utf-8")
        try:
            regions = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"Not valid GeoJSON: {exc}.") from exc
    if isinstance(regions, dict):
        kind = regions.get("type")
        feats = regions.get("features") if kind == "FeatureCollection" else [regions] if kind == "Feature" else None
        if feats is None:
            raise InputError(f"Unsupported GeoJSON object of type {kind!r}; expected a FeatureCollection or Feature.")
    elif isinstance(regions, list):
        feats = regions
    else:
        raise InputError(f"regions must be a GeoJSON path, string, dict or feature list, got {type(regions).__name__}.")
    geoms, props, fids = [], [], []
    for i, f in enumerate(feats):
        if not isinstance(f, dict) or f.get("geometry") is None:
            raise InputError(f"GeoJSON feature {i} has no geometry.")
        try:
            g = shape(f["geometry"])
        except Exception as exc:  # shapely raises several types for malformed input
            raise InputError(f"GeoJSON feature {i} has an invalid geometry: {exc}.") from exc
        if g.geom_type not in ("Polygon", "MultiPolygon"):
            raise InputError(f"GeoJSON feature {i} is a {g.geom_type}; regions must be polygons.")
        if not g.is_valid:
            import shapely

            g = shapely.make_valid(g)
        p = dict(f.get("properties") or {})
        geoms.append(g)
        props.append(p)
        fid = f.get("id", p.get("id"))
        fids.append(None if fid is None else str(fid))
    return geoms, props, fids


def _geojson_label(p: dict) -> Any:
    cls = p.get("classification")
    if isinstance(cls, dict) and cls.get("name") is not None:  # QuPath
        return cls["name"]
    if isinstance(cls, str):
        return cls
    for k in (K.obs.label, "class"):
        if p.get(k) is not None and not isinstance(p.get(k), (dict, list)):
            return p[k]
    return None


def load_regions(image: Any, regions: Any, *, mpp: float, name: str | None = None,
                 group_key: str | None = None, pixel_origin: str = "corner") -> BenchDataset:
    """Annotated regions (QuPath GeoJSON export) on one image: classify each region by its class.

    Parameters
    ----------
    image
        Path or array of the image the annotations were drawn on.
    regions
        GeoJSON path/str/dict (QuPath ``Export objects as GeoJSON``) or a list of features; the label is
        QuPath's ``classification.name`` (else ``properties.label``/``class``). Regions without a class
        are dropped (logged).
    mpp
        µm/px of ``image``.
    group_key
        A GeoJSON property that groups regions for splits (e.g. ``'patient'``); default: none (each
        region its own group; regions of one image are not independent, so say so when reporting).
    pixel_origin
        ``'corner'`` (QuPath: pixel i spans [i, i+1)) or ``'center'`` (tissuegraph convention).
    """
    mpp = float(check_positive(mpp, "mpp"))
    if pixel_origin not in ("corner", "center"):
        raise InputError(f"pixel_origin must be 'corner' or 'center', got {pixel_origin!r}.")
    if isinstance(image, (str, os.PathLike)) and not Path(image).is_file():
        raise InputError(f"The image {str(image)!r} does not exist.")
    geoms, props, fids = _read_geojson(regions)
    labels = [_geojson_label(p) for p in props]
    keep = [i for i, lab in enumerate(labels) if lab is not None]
    if len(keep) < len(geoms):
        logger.info("load_regions: %d of %d regions have no class and are dropped.", len(geoms) - len(keep), len(geoms))
    if not keep:
        raise InputError("No region has a class (QuPath classification or a 'label' property).")
    import shapely

    shift = -0.5 if pixel_origin == "corner" else 0.0
    regs = [shapely.transform(geoms[i], lambda c: c + shift) for i in keep]
    ids = [fids[i] if fids[i] is not None else f"region{i}" for i in keep]
    if len(set(ids)) != len(ids):
        ids = [f"region{i}" for i in keep]
    grp = [str(props[i].get(group_key)) for i in keep] if group_key else ids
    obs = pd.DataFrame({K.obs.label: pd.Categorical([str(labels[i]) for i in keep]), "group": grp},
                       index=pd.Index(ids))
    nm = name or (Path(image).stem if isinstance(image, (str, os.PathLike)) else "regions")
    tasks = [dict(name=f"{nm}: region class", label_key=K.obs.label, task="classification",
                  group_key="group" if group_key else None)]
    return BenchDataset(name=nm, image=image, mpp=mpp, slide_id=nm, kind="region", obs=obs, regions=regs,
                        tasks=tasks, metadata={"pixel_origin": pixel_origin})
