"""Per-nucleus features: morphology, stain intensity and texture, vectorised over nuclei.

* :func:`nuclei_features` -- nucleus table + slide -> the cells AnnData (``X`` = features with units
  in ``var_names``, ``obsm['spatial']`` = centroids).
* :func:`label_features` -- the pure kernel: any label image (+ optional intensity image) -> a
  DataFrame indexed by label.  Agrees with :func:`skimage.measure.regionprops_table` wherever both
  define a feature, and is much faster (``benchmarks/bench_features.py``).
* :func:`feature_catalog` -- every feature name with its unit, group and definition.

numpy / scipy / pandas only at import time (anndata is imported inside :func:`nuclei_features`).
"""

from ._kernels import GROUPS, STATS, FeatureSpec, feature_catalog, label_features
from ._nuclei import nuclei_features
from ._stain import STAIN_RGB_OD, stain_od

__all__ = ["nuclei_features", "label_features", "feature_catalog", "FeatureSpec", "GROUPS", "STATS",
           "STAIN_RGB_OD", "stain_od"]
