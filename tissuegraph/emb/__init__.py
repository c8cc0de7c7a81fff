"""Representations of samples, written into ``samples.obsm['X_<name>']`` with provenance in
``samples.uns['representations']``.

- :func:`patches`, :func:`patch_twins`, :func:`train_patches`: timm patch encoders (CNN / ViT) on the
  samples' pixels, their untrained twins, offline training (SimCLR, supervised);
- :func:`color`: the non-learned colour / intensity control.

Light at import: torch and timm load inside the functions.
"""

from __future__ import annotations

from ._color import color
from ._patches import patch_twins, patches, train_patches

__all__ = ["patches", "patch_twins", "train_patches", "color"]
