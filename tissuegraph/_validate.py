"""Input checks that turn bad input into clear, named errors."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ._errors import InputError, MissingMppError


def check_positive(value: Any, name: str, *, allow_none: bool = False, integer: bool = False) -> Any:
    """Return ``value`` if it is a finite number > 0, else raise :class:`InputError` naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a positive number, got {value!r} ({type(value).__name__}).")
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be a finite number > 0, got {value!r}.")
    if integer:
        if int(value) != value:
            raise InputError(f"{name} must be a whole number, got {value!r}.")
        return int(value)
    return value


def check_nonnegative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise InputError(f"{name} must be an integer >= 0, got {value!r}.")
    return int(value)


def check_mpp(mpp: Any, *, what: str = "this step") -> float:
    """Validate a µm/px value that is required; ``None`` raises :class:`MissingMppError`."""
    if mpp is None:
        raise MissingMppError(
            f"The pixel size (µm/px) is unknown, but {what} needs physical units. Pass it explicitly, "
            "e.g. tg.io.open_slide(path, mpp=0.25) or --mpp 0.25 on the command line."
        )
    return float(check_positive(mpp, "mpp (µm/px)"))


def check_image(image: Any, name: str = "image", *, channels: int | tuple[int, ...] | None = None,
                allow_2d: bool = True, finite: bool = True) -> np.ndarray:
    """Return ``image`` as an ndarray of shape (H, W) or (H, W, C), raising clear errors otherwise.

    ``channels`` restricts the allowed channel counts (a 2-D image counts as one channel).
    """
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except Exception as exc:  # pragma: no cover - exotic objects
            raise InputError(f"{name} must be an array, got {type(image).__name__}.") from exc
    if image.dtype == object or not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise InputError(f"{name} must be a numeric array, got dtype {image.dtype}.")
    if image.ndim == 2:
        if not allow_2d:
            raise InputError(f"{name} must have shape (H, W, C), got a 2-D array of shape {image.shape}.")
        n_ch = 1
    elif image.ndim == 3:
        n_ch = image.shape[2]
    else:
        raise InputError(f"{name} must have shape (H, W) or (H, W, C), got shape {image.shape}.")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{name} is empty (shape {image.shape}).")
    if channels is not None:
        allowed = (channels,) if isinstance(channels, int) else tuple(channels)
        if n_ch not in allowed:
            raise InputError(f"{name} must have {' or '.join(map(str, allowed))} channel(s), got {n_ch} "
                             f"(shape {image.shape}).")
    if finite and np.issubdtype(image.dtype, np.floating) and not np.isfinite(image).all():
        n_bad = int((~np.isfinite(image)).sum())
        raise InputError(f"{name} contains {n_bad} NaN or infinite value(s); clean or mask them first.")
    return image


def check_labels(labels: Any, name: str = "labels") -> np.ndarray:
    """A 2-D integer instance-label image with 0 as background."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"{name} must be a 2-D instance-label image, got shape {labels.shape}.")
    if not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and \
                np.all(labels == np.round(labels)):
            labels = labels.astype(np.int64)
        else:
            raise InputError(f"{name} must hold integer labels, got dtype {labels.dtype}.")
    if labels.size and labels.min() < 0:
        raise InputError(f"{name} has negative values; 0 is background and objects are 1, 2, ...")
    return labels


def check_points(points: Any, name: str = "points") -> np.ndarray:
    """An (n, 2) finite float array of coordinates."""
    pts = np.asarray(points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 2:
        if pts.size == 0:
            return pts.reshape(0, 2)
        raise InputError(f"{name} must have shape (n, 2), got {pts.shape}.")
    if not np.isfinite(pts).all():
        raise InputError(f"{name} contains {int((~np.isfinite(pts)).any(axis=1).sum())} row(s) with NaN "
                         "or infinite coordinates.")
    return pts
