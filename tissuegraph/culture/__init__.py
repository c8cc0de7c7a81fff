"""Cell culture (``tg.culture``): plates, wells, sites and channels -> well profiles in a samples AnnData.

* Loaders (local paths only): :func:`read_bbbc021`, :func:`read_rxrx`, :func:`read_jump_load_data`,
  :func:`read_image_table` give a :class:`PlateImages` (one row per site, one file per channel);
  :func:`read_profiles` / :func:`read_bbbc021_profiles` give a wells AnnData with ``obsm['X_profile']``.
* Profiles (pycytominer's operations on AnnData): :func:`aggregate` (cells -> wells), :func:`normalize`
  (per-plate robust z-score / standardisation against controls), :func:`spherize` (ZCA/PCA whitening, TVN,
  fitted on controls), :func:`select_features` (missing values, variance, correlation), :func:`consensus`
  (treatment profiles); label-free additions: :func:`feature_reproducibility` / :func:`select_reproducible`
  (ICC across replicate wells), :func:`weight_reproducible` (features weighted by that ICC),
  :func:`rank_transform` (per-plate inverse-normal), :func:`factor_analysis` (scikit-learn FA fitted on controls), :func:`coral` (per-batch covariance alignment to the pooled controls).
* A synthetic screen with ground truth: :func:`synthetic_plate` (mechanisms, plate/batch/edge effects).
* Single cells: :func:`segment_cells` (StarDist nuclei + seeded watershed cells), :func:`cell_features`
  (CellProfiler-style per-cell features), :func:`single_cells` (a whole plate -> cells AnnData).
* Networks on single-cell crops: :func:`cell_crops` (a box around each nucleus, per-channel scaling),
  :func:`embed_cells` (multichannel CNN / ViT encoders of ``tg.models``, untrained twins per seed or trained,
  pooled per well into ``wells.obsm['X_cnn_<arch>_...']`` with provenance), :func:`train_cell_encoder`
  (SimCLR on the crops with fluorescence augmentations).  torch / timm load inside the functions.

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
from ._profiles import (
    aggregate,
    consensus,
    coral,
    factor_analysis,
    feature_reproducibility,
    normalize,
    rank_transform,
    select_features,
    select_reproducible,
    spherize,
    weight_reproducible,
)
from ._synthetic import MECHANISMS, SyntheticPlate, synthetic_plate
from ._cells import cell_features, segment_cells, single_cells
from ._crops import cell_crops, embed_cells, train_cell_encoder

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
    "feature_reproducibility",
    "select_reproducible",
    "weight_reproducible",
    "rank_transform",
    "factor_analysis",
    "coral",
    "synthetic_plate",
    "SyntheticPlate",
    "MECHANISMS",
    "segment_cells",
    "cell_features",
    "single_cells",
    "cell_crops",
    "embed_cells",
    "train_cell_encoder",
]
