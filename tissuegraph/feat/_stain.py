"""Colour deconvolution of brightfield RGB into stain optical densities.

Stain vectors: Ruifrok & Johnston (2001), "Quantification of histochemical staining by color
deconvolution", the same fixed vectors as :func:`skimage.color.rgb2hed`:

=========== ======= ======= =======
stain         R OD    G OD    B OD
=========== ======= ======= =======
hematoxylin  0.65    0.70    0.29
eosin        0.07    0.99    0.11
DAB          0.27    0.57    0.78
=========== ======= ======= =======

Optical density is base-10: ``OD_c = -log10(I_c / I_white)`` with ``I_white`` the white level of the
dtype (255 for uint8, 65535 for uint16, 1.0 for floats in [0, 1]); pixel values of 0 are treated as 1
(``uint8``: OD at most ``log10(255) ~ 2.41``).  Stain amounts are ``OD @ inv(M)`` with ``M`` the
matrix above (rows = stains), not clipped at 0.  Compared with skimage:
``rgb2hed(img) == clip(stain_od(img) / 6, 0)`` up to the treatment of zero-valued pixels
(skimage divides natural-log OD by ``ln(1e-6)``).
"""

from __future__ import annotations

import numpy as np

from .._errors import InputError

__all__ = ["STAIN_RGB_OD", "white_level", "rgb_to_od", "stain_od"]

STAIN_RGB_OD = np.array([[0.65, 0.70, 0.29],
                         [0.07, 0.99, 0.11],
                         [0.27, 0.57, 0.78]])
"""Rows: hematoxylin, eosin, DAB optical-density vectors (R, G, B)."""

_OD_TO_STAIN = np.linalg.inv(STAIN_RGB_OD)


def white_level(dtype: np.dtype, values: np.ndarray | None = None) -> float:
    """Intensity of unstained (white) light for an image dtype."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    if values is not None and values.size and float(np.max(values)) > 1.0:
        raise InputError("A floating-point brightfield RGB image must hold values in [0, 1] "
                         f"(max here {float(np.max(values)):.4g}); convert to uint8 or rescale it.")
    return 1.0


def rgb_to_od(rgb: np.ndarray, white: float) -> np.ndarray:
    """Base-10 optical density of RGB values (any leading shape, last axis = 3)."""
    if rgb.dtype in (np.uint8, np.uint16):  # lookup table: exact and much faster than log10
        levels = np.arange(np.iinfo(rgb.dtype).max + 1, dtype=np.float64)
        lut = -np.log10(np.maximum(levels, 1.0) / white)
        return lut[rgb]
    floor = 1.0 if white > 1.0 else 1.0 / 255.0
    v = np.maximum(rgb.astype(np.float64), floor)
    return -np.log10(v / white)


def stain_od(rgb: np.ndarray, white: float) -> np.ndarray:
    """Hematoxylin, eosin and DAB amounts (base-10 OD units), shape ``rgb.shape``."""
    od = rgb_to_od(rgb, white)
    out = np.empty(od.shape, dtype=np.float64)
    r, g, b = od[..., 0], od[..., 1], od[..., 2]
    for k in range(3):  # explicit 3x3 product (avoids a slow BLAS call on an (N, 3) array)
        out[..., k] = r * _OD_TO_STAIN[0, k] + g * _OD_TO_STAIN[1, k] + b * _OD_TO_STAIN[2, k]
    return out
