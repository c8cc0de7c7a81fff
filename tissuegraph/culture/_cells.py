"""Single cells of a plate: nuclei, cell bodies, and CellProfiler-style per-cell features.

* :func:`segment_cells`: nuclei from ``tg.seg`` on the DNA channel (StarDist's shipped fluorescence model by
  default, or the classical watershed, or given labels), then cell bodies by a watershed on the cytoplasm
  channel seeded with the nuclei (CellProfiler's IdentifySecondaryObjects, "Watershed - Image"); cell ``k``
  owns nucleus ``k``; the cytoplasm is the cell minus its nucleus.
* :func:`cell_features`: per cell, for the compartments Nuclei, Cells and Cytoplasm: shape, intensity per
  channel and texture from the vectorised kernels of ``tg.feat.label_features``; plus the Pearson correlation
  between every pair of channels in the cell, CellProfiler's radial intensity distribution (fraction of the
  intensity in 4 rings from the nucleus centre to the cell edge, ``FracAtD`` / ``MeanFrac``), and the number
  of nuclei of each cell.  Column names follow CellProfiler's ``<Compartment>_<feature>`` pattern.
* :func:`single_cells`: all sites of a :class:`~tissuegraph.culture.PlateImages` or synthetic plate -> a cells
  AnnData (``obs`` = plate, well, site and the well metadata; ``X`` = features; ``obsm['spatial']``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from .. import _keys as K
from .._errors import InputError
from .._logging import logger, progress
from .._validate import check_image

__all__ = ["segment_cells", "cell_features", "single_cells"]

C = K.culture
NUCLEUS_XY = "spatial_nucleus"  # cells.obsm key: nucleus centroid (x, y) px of each cell


def _channel_index(names: Sequence[str], ch: str | int, what: str) -> int:
    if isinstance(ch, (int, np.integer)):
        if not 0 <= int(ch) < len(names):
            raise InputError(f"{what} channel index {ch} is out of range for {len(names)} channels.")
        return int(ch)
    if ch not in names:
        raise InputError(f"{what} channel {ch!r} not among the channels {list(names)}.")
    return list(names).index(ch)


def segment_cells(image: np.ndarray, *, dna: int = 0, cytoplasm: int = 1, nuclei: Any = "stardist",
                  mpp: float | None = None, min_nucleus_area: int = 10,
                  backend: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Nuclei and cell labels of one (H, W, C) field.

    Parameters
    ----------
    dna, cytoplasm
        Channel indices of the DNA stain and of the cytoplasm/actin stain.
    nuclei
        ``'stardist'`` (tissuegraph's shipped fluorescence model), ``'watershed'``, a tg.seg backend object, or
        an (H, W) nucleus label image to use as is.
    mpp
        µm/px of the field (lets StarDist rescale to its training resolution; ``None`` = native).
    backend
        A ready backend (reused across fields: loading StarDist once saves seconds per field).

    Returns
    -------
    (nuclei, cells): int32 label images; cell ``k`` contains nucleus ``k`` (labels 1..n, consecutive).
    """
    image = check_image(image, "image", allow_2d=False)
    H, W, nc = image.shape
    if nc < 2:
        raise InputError("segment_cells needs at least a DNA and a cytoplasm channel.")
    dna_img = image[..., dna].astype(np.float32)
    cyto = image[..., cytoplasm].astype(np.float32)
    if isinstance(nuclei, np.ndarray):
        nuc = nuclei.astype(np.int32)
        if nuc.shape != (H, W):
            raise InputError(f"nuclei labels have shape {nuc.shape}, the image {(H, W)}.")
    else:
        if backend is None:
            from ..seg import get_backend

            backend = get_backend(nuclei, modality="fluorescence")
        out = backend.segment(dna_img, mpp=mpp)
        nuc = np.asarray(out[0] if isinstance(out, tuple) else out, dtype=np.int32)
    # drop specks, relabel 1..n
    if nuc.max() > 0:
        area = np.bincount(nuc.ravel())
        small = area < min_nucleus_area
        small[0] = False
        nuc[small[nuc]] = 0
    from skimage.segmentation import relabel_sequential, watershed
    from skimage.filters import threshold_otsu

    nuc = relabel_sequential(nuc)[0].astype(np.int32)
    if nuc.max() == 0:
        return nuc, nuc.copy()
    smooth = ndi.gaussian_filter(cyto, 1.0)
    try:
        thr = threshold_otsu(smooth)
    except ValueError:  # a constant field
        thr = smooth.max()
    fg = (smooth > thr) | (nuc > 0)
    cells = watershed(-smooth, markers=nuc, mask=fg).astype(np.int32)
    # a nucleus pixel always belongs to its own cell
    cells[nuc > 0] = nuc[nuc > 0]
    return nuc, cells


def _pearson_pairs(labels: np.ndarray, image: np.ndarray, names: Sequence[str], n: int) -> dict[str, np.ndarray]:
    """Per-label Pearson correlation of every channel pair (CellProfiler MeasureColocalization 'Correlation')."""
    lab = labels.ravel()
    m = lab > 0
    lab = lab[m]
    cnt = np.bincount(lab, minlength=n + 1).astype(np.float64)
    V = image.reshape(-1, image.shape[-1])[m].astype(np.float64)
    means = [np.bincount(lab, V[:, c], minlength=n + 1) / np.maximum(cnt, 1) for c in range(V.shape[1])]
    out = {}
    for i in range(V.shape[1]):
        for j in range(i + 1, V.shape[1]):
            di = V[:, i] - means[i][lab]
            dj = V[:, j] - means[j][lab]
            sxy = np.bincount(lab, di * dj, minlength=n + 1)
            sxx = np.bincount(lab, di * di, minlength=n + 1)
            syy = np.bincount(lab, dj * dj, minlength=n + 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                r = sxy / np.sqrt(sxx * syy)
            out[f"Correlation_{names[i]}_{names[j]}"] = r[1:]
    return out


def _radial(cells: np.ndarray, nuclei: np.ndarray, image: np.ndarray, names: Sequence[str], n: int,
            bins: int = 4) -> dict[str, np.ndarray]:
    """CellProfiler-style radial distribution: normalised distance r = d_centre / (d_centre + d_edge), with the
    nucleus centroid as centre (Euclidean distances); FracAtD = intensity fraction per ring, MeanFrac =
    FracAtD / pixel fraction."""
    from skimage.segmentation import find_boundaries

    H, W = cells.shape
    inner = (cells > 0) & ~find_boundaries(cells, mode="inner")
    d_edge = ndi.distance_transform_edt(inner) + 1.0
    lab = cells.ravel()
    m = lab > 0
    yy, xx = np.nonzero(cells > 0)
    lab = lab[m]
    # nucleus centroid of each cell (fallback: the cell's own centroid)
    src = np.where(np.bincount(nuclei.ravel(), minlength=n + 1)[: n + 1] > 0, 1, 0)
    ny, nx = np.nonzero(nuclei > 0)
    nl = nuclei[ny, nx]
    nc = np.bincount(nl, minlength=n + 1).astype(float)
    cy = np.bincount(nl, ny, minlength=n + 1) / np.maximum(nc, 1)
    cx = np.bincount(nl, nx, minlength=n + 1) / np.maximum(nc, 1)
    cc = np.bincount(lab, minlength=n + 1).astype(float)
    ccy = np.bincount(lab, yy, minlength=n + 1) / np.maximum(cc, 1)
    ccx = np.bincount(lab, xx, minlength=n + 1) / np.maximum(cc, 1)
    cy = np.where(src > 0, cy, ccy)
    cx = np.where(src > 0, cx, ccx)
    d_c = np.hypot(yy - cy[lab], xx - cx[lab])
    r = d_c / (d_c + d_edge[yy, xx])
    b = np.minimum((r * bins).astype(np.int64), bins - 1)
    key = lab * bins + b
    pix = np.bincount(key, minlength=(n + 1) * bins).reshape(n + 1, bins)
    pixfrac = pix / np.maximum(pix.sum(axis=1, keepdims=True), 1)
    out = {}
    V = image[yy, xx].astype(np.float64)
    for c, name in enumerate(names):
        tot = np.bincount(key, V[:, c], minlength=(n + 1) * bins).reshape(n + 1, bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = tot / tot.sum(axis=1, keepdims=True)
            mean = frac / pixfrac
        for k in range(bins):
            out[f"RadialDistribution_FracAtD_{name}_{k + 1}of{bins}"] = frac[1:, k]
            out[f"RadialDistribution_MeanFrac_{name}_{k + 1}of{bins}"] = mean[1:, k]
    return out


def cell_features(image: np.ndarray, *, nuclei: np.ndarray, cells: np.ndarray,
                  channel_names: Sequence[str] | None = None, spacing: float = 1.0,
                  texture_levels: int = 16) -> pd.DataFrame:
    """Per-cell CellProfiler-style features of one field (one row per cell label, index = label).

    Compartments ``Nuclei``, ``Cells``, ``Cytoplasm`` (cell minus nucleus): shape, intensity per channel
    (mean, std, min, quartiles, median, max, integrated) and texture (GLCM of the first channel in nuclei,
    of every channel in cells); ``Cells_Correlation_<a>_<b>``; ``Cells_RadialDistribution_*``;
    ``Cells_Children_Nuclei_Count`` (connected nucleus pieces in the cell: 2+ for multinucleated cells).
    Lengths in µm for ``spacing`` µm/px.
    """
    from ..feat import label_features

    image = check_image(image, "image", allow_2d=False)
    H, W, nc = image.shape
    names = list(channel_names) if channel_names is not None else [f"ch{i}" for i in range(nc)]
    if len(names) != nc:
        raise InputError(f"{len(names)} channel names for {nc} channels.")
    for nm, lab in (("nuclei", nuclei), ("cells", cells)):
        if lab.shape != (H, W):
            raise InputError(f"{nm} labels have shape {lab.shape}, the image {(H, W)}.")
    n = int(cells.max())
    if n == 0:
        return pd.DataFrame(index=pd.Index([], name="label"))
    nuclei = np.where(cells > 0, nuclei, 0).astype(np.int32)
    cyto = np.where(nuclei > 0, 0, cells).astype(np.int32)
    labels_all = pd.Index(np.arange(1, n + 1), name="label")
    parts = []
    for comp, lab, feats in (("Nuclei", nuclei, ["shape", "intensity", "texture"]),
                             ("Cells", cells, ["shape", "intensity", "texture"]),
                             ("Cytoplasm", cyto, ["intensity"])):
        if lab.max() == 0:
            continue
        df = label_features(lab, image, spacing=spacing, features=feats, stain="fluorescence",
                            channel_names=names, texture_levels=texture_levels)
        df = df.drop(columns=[c for c in df.columns if c.startswith(("centroid_", "bbox_"))], errors="ignore")
        parts.append(df.add_prefix(f"{comp}_").reindex(labels_all))
    extra = {**_pearson_pairs(cells, image, names, n), **_radial(cells, nuclei, image, names, n)}
    pieces, npieces = ndi.label(nuclei > 0)
    if npieces:
        owner = ndi.maximum(cells, pieces, index=np.arange(1, npieces + 1)).astype(np.int64)
        extra["Children_Nuclei_Count"] = np.bincount(owner, minlength=n + 1)[1:].astype(float)
    else:
        extra["Children_Nuclei_Count"] = np.zeros(n)
    parts.append(pd.DataFrame(extra, index=labels_all).add_prefix("Cells_"))
    out = pd.concat(parts, axis=1)
    yy, xx = np.nonzero(cells)
    lab = cells[yy, xx]
    cnt = np.maximum(np.bincount(lab, minlength=n + 1)[1:], 1)
    out.attrs["centroids"] = np.stack([np.bincount(lab, xx, minlength=n + 1)[1:] / cnt,
                                       np.bincount(lab, yy, minlength=n + 1)[1:] / cnt], axis=1)
    # nucleus centroid of each cell (all its nucleus pixels; the cell's own centroid when it has none)
    ny, nx = np.nonzero(nuclei)
    nl = nuclei[ny, nx]
    ncnt = np.bincount(nl, minlength=n + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        nxy = np.stack([np.bincount(nl, nx, minlength=n + 1)[1:] / ncnt,
                        np.bincount(nl, ny, minlength=n + 1)[1:] / ncnt], axis=1)
    out.attrs["nucleus_centroids"] = np.where((ncnt > 0)[:, None], nxy, out.attrs["centroids"])
    return out


def single_cells(plate: Any, *, dna: str | int = 0, cytoplasm: str | int = 1, nuclei: Any = "stardist",
                 use_truth: bool = False, mpp: float | None = None, sites: Sequence[int] | None = None,
                 spacing: float | None = None):
    """Segment and measure every site of a plate -> a cells AnnData.

    Parameters
    ----------
    plate
        A :class:`~tissuegraph.culture.PlateImages` or :class:`~tissuegraph.culture.SyntheticPlate`.
    dna, cytoplasm
        Channel names or indices.
    nuclei
        As in :func:`segment_cells`.
    use_truth
        For a synthetic plate: use its ground-truth nucleus and cell labels instead of segmenting.
    sites
        Site indices to process (default all).

    Returns
    -------
    AnnData: ``X`` = per-cell features (float32, ``var_names`` CellProfiler-style), ``obs`` = plate, well,
    site, the site's metadata and ``cell``; ``obsm['spatial']`` = cell centroids (x, y) in px,
    ``obsm['spatial_nucleus']`` = nucleus centroids (x, y) in px (the centre of a cell's crop).
    """
    import anndata as ad

    names = list(plate.channels)
    i_dna = _channel_index(names, dna, "DNA")
    i_cyt = _channel_index(names, cytoplasm, "cytoplasm")
    idx = list(range(len(plate))) if sites is None else list(sites)
    if use_truth and not hasattr(plate, "nuclei"):
        raise InputError("use_truth=True needs a synthetic plate with ground-truth labels.")
    backend = None
    if not use_truth and not isinstance(nuclei, np.ndarray) and isinstance(nuclei, str):
        from ..seg import get_backend

        backend = get_backend(nuclei, modality="fluorescence")
    spacing = spacing if spacing is not None else float(getattr(plate, "mpp", 1.0) or 1.0)
    meta_cols = [c for c in plate.sites.columns if not c.startswith("path_")]
    frames, obs, xy, nxy = [], [], [], []
    for i in progress(idx, total=len(idx), desc="single cells", unit="site"):
        img = plate.read(i)
        if use_truth:
            nuc, cel = plate.nuclei[i], plate.cells[i]
        else:
            nuc, cel = segment_cells(img, dna=i_dna, cytoplasm=i_cyt, nuclei=nuclei, mpp=mpp, backend=backend)
        f = cell_features(img, nuclei=nuc, cells=cel, channel_names=names, spacing=spacing)
        if len(f) == 0:
            logger.info("site %d: no cells", i)
            continue
        xy.append(f.attrs["centroids"])
        nxy.append(f.attrs["nucleus_centroids"])
        f = f.reset_index(drop=True)
        f.attrs = {}
        frames.append(f)
        row = plate.sites.iloc[i][meta_cols].to_dict()
        o = pd.DataFrame([row] * len(f))
        o["cell"] = np.arange(1, len(f) + 1)
        o["site_index"] = i
        obs.append(o)
    if not frames:
        raise InputError("no cells were found on any site; check the channels and the segmentation.")
    F = pd.concat(frames, ignore_index=True)
    O = pd.concat(obs, ignore_index=True)
    O.index = [f"{r['site_index']}_{r['cell']}" for _, r in O[["site_index", "cell"]].iterrows()]
    for c in O.columns:
        if O[c].dtype == object:
            O[c] = O[c].astype(str)
    a = ad.AnnData(X=F.to_numpy(dtype=np.float32), obs=O)
    a.var_names = [str(c) for c in F.columns]
    a.obsm[K.obsm.spatial] = np.concatenate(xy).astype(np.float64)
    a.obsm[NUCLEUS_XY] = np.concatenate(nxy).astype(np.float64)
    a.uns["culture_features"] = {"architecture": "tissuegraph cell features", "channels": names,
                                 "nuclei": "truth" if use_truth else str(nuclei), "spacing_um": spacing}
    return a
