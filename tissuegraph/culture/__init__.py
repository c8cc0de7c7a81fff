"""Cell culture (``tg.culture``): plates, wells, sites and channels -> well profiles in a samples AnnData.

* Loaders (local paths only): :func:`read_bbbc021`, :func:`read_rxrx`, :func:`read_jump_load_data`,
  :func:`read_image_table` give a :class:`PlateImages` (one row per site, one file per channel);
  :func:`read_profiles` / :func:`read_bbbc021_profiles` give a wells AnnData with ``obsm['X_profile']``.
* Profiles (pycytominer's operations on AnnData): :func:`aggregate` (cells -> wells), :func:`normalize`
  (per-plate robust z-score / standardisation against controls), :func:`spherize` (ZCA/PCA whitening, TVN,
  fitted on controls), :func:`select_features` (missing values, variance, correlation), :func:`consensus`
  (treatment profiles).

The metrics (mAP, NSC/NSCB, percent replicating) live in :mod:`tissuegraph.eval`.
"""

from ._io import (
    PlateImages,
    read_bbbc021,
    read_bbbc021_profiles,
    read_image_table,
    read_jump_load_data,
    read_profiles,
    read_rxrx,
)
from ._profiles import aggregate, consensus, normalize, select_features, spherize

__all__ = [
    "PlateImages",
    "read_bbbc021",
    "read_bbbc021_profiles",
    "read_image_table",
    "read_jump_load_data",
    "read_profiles",
    "read_rxrx",
    "aggregate",
    "normalize",
    "spherize",
    "select_features",
    "consensus",
]
