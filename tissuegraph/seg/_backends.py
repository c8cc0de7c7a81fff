"""Backend registry: ``method=`` names -> segmentation backend objects.

A backend (see docs/architecture.md) has ``name``, ``mpp`` (µm/px it works at, or None),
``max_object_px`` and ``segment(image, *, mpp) -> (labels, scores)``; optionally
``calibrate(patches) -> dict`` (slide-wide normalisation, so results do not depend on tiling),
``predict``/``postprocess`` (two phases the runner can pipeline), and ``reads_labels = True`` with
``read_labels(spec)`` for label sources that are read instead of computed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._errors import InputError

__all__ = ["get_backend", "METHODS", "LabelTileBackend"]

METHODS = ("auto", "watershed", "stardist", "labels")


class LabelTileBackend:
    """Reads instance labels made by another tool (Cellpose, HoVer-Net, QuPath, ...) tile by tile.

    ``source`` is anything :func:`tissuegraph.seg.label_source` accepts (array, TIFF, zarr); labels are
    in level-0 pixels of the slide and are resampled (nearest) to the tile grid.
    """

    name = "labels"
    reads_labels = True

    def __init__(self, source: Any, *, max_object_px: int = 64):
        from ._byo import label_source

        self.source = label_source(source)
        self.mpp = None
        self.max_object_px = int(max_object_px)

    def read_labels(self, spec) -> np.ndarray:
        from ..io._resample import resize_box

        x0, y0 = spec.x0, spec.y0
        w, h = spec.size
        s = spec.scale
        rx0, ry0 = int(np.floor(x0)), int(np.floor(y0))
        rx1, ry1 = int(np.ceil(x0 + w * s)), int(np.ceil(y0 + h * s))
        region = self.source.read_region(rx0, ry0, rx1 - rx0, ry1 - ry0)
        if s == 1.0 and float(x0).is_integer() and float(y0).is_integer():
            return np.asarray(region)
        return resize_box(np.asarray(region), (w, h), (x0 - rx0, y0 - ry0, x0 - rx0 + w * s, y0 - ry0 + h * s),
                          nearest=True)

    def segment(self, image, *, mpp=None):  # pragma: no cover - the runner calls read_labels
        raise InputError("The 'labels' backend reads labels; it cannot segment an image.")


def get_backend(method: Any = "auto", *, model: Any = None, labels: Any = None, modality: str = "auto",
                **kwargs: Any):
    """Make a segmentation backend.

    Parameters
    ----------
    method
        ``'watershed'`` (classical, no model), ``'stardist'`` (``model`` = registered name or local
        folder; default: the shipped tissuegraph model for the modality), ``'labels'`` (``labels`` = a
        label image, TIFF, or zarr made by another tool), ``'auto'`` (the backend that measured best,
        see ``benchmarks/results/seg_accuracy.md``), or a ready backend object.
    modality
        ``'he'`` (brightfield RGB), ``'fluorescence'`` or ``'auto'``; picks default models.
    """
    if not isinstance(method, str):
        if hasattr(method, "segment") or getattr(method, "reads_labels", False):
            return method
        raise InputError(f"method must be one of {METHODS} or a backend object, got {type(method).__name__}.")
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}.")
    if method == "labels":
        if labels is None:
            raise InputError("method='labels' needs labels= (a label image array, TIFF or zarr path).")
        return LabelTileBackend(labels, **kwargs)
    if labels is not None:
        raise InputError(f"labels= is only used with method='labels', not method={method!r}.")
    if method == "auto":
        method = _best_method(modality, model)
    if method == "watershed":
        if model is not None:
            raise InputError("method='watershed' takes no model=; use method='stardist' for a model.")
        from ._watershed import WatershedBackend

        return WatershedBackend(modality=modality, **kwargs)
    from ._stardist import load_stardist

    return load_stardist(model, modality=modality, **kwargs)


def _best_method(modality: str, model: Any) -> str:
    """The default backend: the one that measured best (see benchmarks/results/seg_accuracy.md)."""
    if model is not None:
        return "stardist"
    from ._stardist import default_model_available

    # fluorescence: the shipped tg_dsb2018_fluo model beats the watershed (DSB held-out F1 0.89 vs 0.86).
    # H&E: the shipped tg_nuinsseg_he (77 epochs) beats it on NuInsSeg's held-out organs (F1@0.5 0.66 vs 0.45)
    # and DSB brightfield (0.61 vs 0.55) but not on CRCHisto (detection F1 0.587 vs 0.648 with its
    # validation-chosen inference options tta 8 / 0.42 µm/px; 0.618 after 27 epochs; stain normalisation was
    # not adopted) nor the synthetic slide (0.918 vs 0.980), so the watershed stays the H&E default
    # (seg_accuracy_nuinsseg.md);
    # method='stardist' uses the H&E model
    if modality in ("he", "h&e", "brightfield", "rgb"):
        return "watershed"
    return "stardist" if modality != "auto" and default_model_available(modality) else "watershed"
