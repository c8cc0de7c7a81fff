"""Stain normalisation of brightfield H&E images to a reference stain (before a segmentation model).

A model trained on one laboratory's H&E sees a new scanner's or stain batch's colours as a domain shift.
Mapping the input onto the colour statistics of the training images, measured once and stored with the
model (``stain_targets`` in its ``tissuegraph.json``), removes part of that shift without labels:

``'reinhard'``
    Reinhard et al. (2001), "Color transfer between images", in CIE L*a*b* (skimage's ``rgb2lab``,
    D65): each channel is standardised by the image's mean and standard deviation and given the
    reference's, then converted back to RGB (clipped to the valid range).  Statistics over all pixels.
``'macenko'``
    Macenko et al. (2009), "A method for normalizing histology slides for quantitative analysis": the
    haematoxylin and eosin optical-density (OD) vectors of the image are estimated from the plane of the
    two leading eigenvectors of its OD covariance (pixels with OD below ``od_threshold`` in any channel
    are background and left out; the stain directions are the ``alpha`` and ``100 - alpha`` percentile
    angles in that plane; haematoxylin = the vector with the larger red OD); every pixel is unmixed into
    the two stain concentrations (least squares), each scaled so that its 99th percentile matches the
    reference's, and re-mixed with the reference stain vectors.  OD uses the natural logarithm,
    ``OD = -ln(max(I, 1) / white)`` with ``white`` the dtype's white level (255 for uint8).

Both return an image of the input's dtype and value range.  :func:`fit_stain_reference` measures the
statistics of one image or of many pooled (the reference of a model: its training images; the *source* of a
slide: representative patches, so all tiles of a slide are mapped alike).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .._errors import InputError
from .._logging import logger

__all__ = ["STAIN_NORM_METHODS", "fit_stain_reference", "normalize_stain"]

STAIN_NORM_METHODS = ("reinhard", "macenko")
_MIN_TISSUE_PX = 100  # fewer tissue pixels than this: no reliable Macenko estimate, image left as is


def _white(image: np.ndarray) -> float:
    if np.issubdtype(image.dtype, np.integer):
        return float(np.iinfo(image.dtype).max)
    m = float(np.nanmax(image)) if image.size else 0.0
    if m <= 1.0:
        return 1.0
    if m <= 255.0:
        return 255.0  # a float copy of 8-bit values
    raise InputError(f"A floating-point RGB image must hold values in [0, 1] or [0, 255] (max here {m:.4g}); "
                     "convert it to uint8 / uint16 or rescale it.")


def _check_rgb(image: Any, what: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"Stain normalisation needs an RGB image (H, W, 3); {what} has shape {image.shape}"
                         + (" (drop alpha with image[..., :3])" if image.ndim == 3 and image.shape[2] == 4 else "")
                         + ".")
    if image.dtype == bool or not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise InputError(f"{what} must be a numeric RGB image, got dtype {image.dtype}.")
    if np.issubdtype(image.dtype, np.floating) and not np.all(np.isfinite(image)):
        raise InputError(f"{what} holds NaN or infinite values; fill or mask them before stain normalisation.")
    if image.size == 0:
        raise InputError(f"{what} is empty (shape {image.shape}).")
    _white(image)  # checks the value range of a float image
    return image


def _to_unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / _white(image)


def _from_unit(rgb01: np.ndarray, like: np.ndarray) -> np.ndarray:
    rgb01 = np.clip(rgb01, 0.0, 1.0)
    white = _white(like)
    if np.issubdtype(like.dtype, np.integer):
        return np.rint(rgb01 * white).astype(like.dtype)
    return (rgb01 * white).astype(like.dtype)


def _od(image: np.ndarray) -> np.ndarray:
    """Natural-log optical density, (..., 3), with pixel values below 1 (of 255) treated as 1."""
    white = _white(image)
    floor = 1.0 if white > 1.0 else 1.0 / 255.0
    return -np.log(np.maximum(image.astype(np.float64), floor) / white)


def _sample_rows(x: np.ndarray, n: int | None, rng: np.random.Generator) -> np.ndarray:
    if n is None or len(x) <= n:
        return x
    return x[rng.choice(len(x), size=n, replace=False)]


def _lab_pixels(image: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(_to_unit(image)).reshape(-1, 3)


def _macenko_vectors(od: np.ndarray, *, alpha: float) -> np.ndarray:
    """(2, 3) unit OD vectors (haematoxylin, eosin) from tissue OD pixels (n, 3)."""
    cov = np.cov(od, rowvar=False)
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
    plane = vecs[:, [2, 1]]  # the two leading directions
    plane[:, 0] *= np.sign(plane[:, 0].sum()) or 1.0  # OD vectors are positive: orient the first one so
    proj = od @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, [alpha, 100.0 - alpha])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    v1 *= np.sign(v1.sum()) or 1.0
    v2 *= np.sign(v2.sum()) or 1.0
    he = np.stack([v1, v2]) if v1[0] >= v2[0] else np.stack([v2, v1])  # haematoxylin: larger red OD
    return he / np.linalg.norm(he, axis=1, keepdims=True)


def _concentrations(od: np.ndarray, he: np.ndarray) -> np.ndarray:
    """(n, 2) least-squares stain amounts of OD pixels (n, 3) for stain vectors ``he`` (2, 3)."""
    return np.linalg.lstsq(he.T, od.T, rcond=None)[0].T


def fit_stain_reference(images: Any, *, method: str = "macenko", od_threshold: float = 0.15,
                        alpha: float = 1.0, max_pixels: int | None = 20000, seed: int = 0) -> dict:
    """Colour statistics of one RGB image or of several pooled: a stain-normalisation reference or source.

    Parameters
    ----------
    images
        One (H, W, 3) RGB image or a sequence of them (uint8/uint16, or float in [0, 1] / [0, 255]).
    method
        ``'reinhard'`` (L*a*b* mean and standard deviation) or ``'macenko'`` (H and E optical-density
        vectors and the 99th percentile of each stain's amount); see the module notes.
    od_threshold, alpha
        Macenko: background = pixels with an optical density below ``od_threshold`` in any channel;
        stain directions = the ``alpha`` / ``100 - alpha`` percentile angles.
    max_pixels
        Pixels drawn at random (``seed``) from each image (``None``: all); the statistics of many images
        are those of the pooled draws.

    Returns
    -------
    dict
        ``{'method': 'reinhard', 'lab_mean': [L, a, b], 'lab_std': [...], 'n_pixels': n}`` or
        ``{'method': 'macenko', 'stain_vectors': [[H r, g, b], [E r, g, b]], 'max_concentration':
        [H, E], 'od_threshold': .., 'alpha': .., 'n_pixels': n}`` (JSON-ready), for
        :func:`normalize_stain`'s ``target`` or ``source``.
    """
    if method not in STAIN_NORM_METHODS:
        raise InputError(f"method must be one of {STAIN_NORM_METHODS}, got {method!r}.")
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    images = list(images)
    if not images:
        raise InputError("fit_stain_reference needs at least one RGB image.")
    if max_pixels is not None and int(max_pixels) < 1:
        raise InputError(f"max_pixels must be a positive integer or None, got {max_pixels!r}.")
    if not 0 <= float(alpha) < 50:
        raise InputError(f"alpha must be a percentile in [0, 50), got {alpha!r}.")
    if not float(od_threshold) >= 0:
        raise InputError(f"od_threshold must be >= 0, got {od_threshold!r}.")
    rng = np.random.default_rng(seed)
    if method == "reinhard":
        pix = np.concatenate([_sample_rows(_lab_pixels(_check_rgb(im, f"images[{i}]")), max_pixels, rng)
                              for i, im in enumerate(images)])
        return {"method": "reinhard", "lab_mean": pix.mean(axis=0).tolist(),
                "lab_std": pix.std(axis=0).tolist(), "n_pixels": int(len(pix))}
    ods = []
    for i, im in enumerate(images):
        od = _od(_check_rgb(im, f"images[{i}]")).reshape(-1, 3)
        ods.append(_sample_rows(od[np.all(od >= od_threshold, axis=1)], max_pixels, rng))
    od = np.concatenate(ods)
    if len(od) < _MIN_TISSUE_PX:
        raise InputError(f"Only {len(od)} stained pixels (optical density >= {od_threshold} in every channel) "
                         f"in the image(s); a Macenko reference needs at least {_MIN_TISSUE_PX}: pass images "
                         "with tissue, or lower od_threshold.")
    he = _macenko_vectors(od, alpha=float(alpha))
    conc = _concentrations(od, he)
    return {"method": "macenko", "stain_vectors": he.tolist(),
            "max_concentration": np.percentile(conc, 99, axis=0).tolist(),
            "od_threshold": float(od_threshold), "alpha": float(alpha), "n_pixels": int(len(od))}


def _check_stats(stats: Any, what: str) -> dict:
    if not isinstance(stats, dict) or stats.get("method") not in STAIN_NORM_METHODS:
        raise InputError(f"{what} must be the dict returned by fit_stain_reference() (with 'method' "
                         f"{' or '.join(map(repr, STAIN_NORM_METHODS))}), got {stats!r:.200}.")
    keys = ("lab_mean", "lab_std") if stats["method"] == "reinhard" else ("stain_vectors", "max_concentration")
    for k in keys:
        v = np.asarray(stats.get(k, []), dtype=np.float64)
        if v.size == 0 or not np.all(np.isfinite(v)):
            raise InputError(f"{what}['{k}'] is missing or not finite; refit it with fit_stain_reference().")
    return stats


def normalize_stain(image: Any, target: dict, *, source: dict | None = None) -> np.ndarray:
    """Map an H&E RGB image onto the colour statistics ``target`` (Reinhard or Macenko, see the module).

    Parameters
    ----------
    image
        (H, W, 3) RGB (uint8/uint16, or float in [0, 1] / [0, 255]).
    target
        The reference: :func:`fit_stain_reference` of the images to look like (a tissuegraph model keeps
        that of its training images in ``tissuegraph.json``).  Its ``method`` is the method used.
    source
        The statistics of the stain to map from (same method), e.g. fitted on representative patches of a
        slide so that every tile is mapped alike.  Default: the image's own.

    Returns
    -------
    np.ndarray
        The normalised image, same shape, dtype and value range as ``image``.  An image with too few
        stained pixels for a Macenko estimate (< 100; e.g. a blank tile) is returned unchanged.
    """
    image = _check_rgb(image)
    target = _check_stats(target, "target")
    method = target["method"]
    if source is not None:
        source = _check_stats(source, "source")
        if source["method"] != method:
            raise InputError(f"source was fitted with method {source['method']!r} but target with {method!r}; "
                             "fit both with the same method.")
    if method == "reinhard":
        from skimage.color import lab2rgb, rgb2lab

        lab = rgb2lab(_to_unit(image))
        if source is None:
            mu, sd = lab.reshape(-1, 3).mean(axis=0), lab.reshape(-1, 3).std(axis=0)
        else:
            mu, sd = np.asarray(source["lab_mean"]), np.asarray(source["lab_std"])
        t_mu, t_sd = np.asarray(target["lab_mean"]), np.asarray(target["lab_std"])
        lab = (lab - mu) * (t_sd / np.maximum(sd, 1e-6)) + t_mu
        return _from_unit(lab2rgb(lab), image)
    if source is None:
        try:
            source = fit_stain_reference(image, method="macenko", od_threshold=target.get("od_threshold", 0.15),
                                         alpha=target.get("alpha", 1.0), max_pixels=None)
        except InputError:
            logger.debug("normalize_stain: too few stained pixels for a Macenko estimate; image left as is.")
            return image.copy()
    od = _od(image).reshape(-1, 3)
    conc = _concentrations(od, np.asarray(source["stain_vectors"], dtype=np.float64))
    conc *= np.asarray(target["max_concentration"]) / np.maximum(np.asarray(source["max_concentration"]), 1e-6)
    od_new = conc @ np.asarray(target["stain_vectors"], dtype=np.float64)
    return _from_unit(np.exp(-od_new).reshape(image.shape), image)


def stain_reference_of(images: Sequence[np.ndarray], method: str) -> dict | None:
    """:func:`fit_stain_reference` of patches, or ``None`` when they hold too little stain (a blank tile)."""
    try:
        return fit_stain_reference(list(images), method=method)
    except InputError:
        return None
