"""Every AnnData slot name and table column name used by tissuegraph lives here and nowhere else.

The graph keys match squidpy's (``squidpy._constants._pkg_constants.Key``) so that ``squidpy.gr.*``
functions work on tissuegraph's cells AnnData directly.
"""

from __future__ import annotations

from types import SimpleNamespace


class obsm:
    spatial = "spatial"  # centroids in level-0 pixels (x, y), same as squidpy / scanpy

    @staticmethod
    def rep(name: str) -> str:
        """Key of a representation in the samples AnnData, ``X_<name>``."""
        return name if name.startswith("X_") else f"X_{name}"

    structural = "X_structural"
    # Samples AnnData: sparse (n_samples x n_cells) CSR membership of cells in samples (1.0 = member).
    # Columns follow ``uns[uns.membership]['obs_names']`` (the cells' obs_names at construction time).
    membership = "cells"


class uns:
    spatial = "spatial"  # {'mpp': float, 'slides': {...}} (tissuegraph metadata, scanpy-style)
    tissuegraph = "tissuegraph"  # provenance: version and parameters of every step
    nuclei_features = "nuclei_features"  # {'params': {...}} of tg.feat.nuclei_features
    # Samples AnnData: {'obs_names': cells' obs_names (columns of obsm[obsm.membership]), 'params': {...}}
    membership = "cells"
    # Samples AnnData: {'X_<name>': provenance record of every representation (family, trained, learned,
    # objective, architecture, inputs, layer, seed, twin_group, weights_sha256, params)}
    representations = "representations"

    @staticmethod
    def spatial_neighbors(key_added: str = "spatial") -> str:
        return f"{key_added}_neighbors"

    @staticmethod
    def feature_names(rep: str) -> str:
        """Column names of ``obsm[rep]`` (AnnData cannot name obsm columns of an ndarray)."""
        rep = obsm.rep(rep)
        return f"{rep}_names"


class obsp:
    @staticmethod
    def connectivities(key_added: str = "spatial") -> str:
        return f"{key_added}_connectivities"

    @staticmethod
    def distances(key_added: str = "spatial") -> str:
        return f"{key_added}_distances"


class var:
    unit = "unit"  # physical unit of a feature column ('µm', 'µm²', 'OD', 'dimensionless', ...)
    group = "group"  # feature group: 'shape', 'intensity', 'texture'
    description = "description"


class obs:
    slide = "slide"
    tile = "tile"
    cell_type = "cell_type"
    region = "region"
    nucleus_id = "nucleus_id"
    sample = "sample"
    label = "label"
    patient = "patient"
    batch = "batch"
    # Samples AnnData geometry columns (written by the tg.graph.*_samples constructors)
    sample_kind = "sample_kind"  # 'grid' | 'region' | 'spot' | 'image' | 'group'
    n_cells = "n_cells"  # member cells
    area_um2 = "area_um2"  # sample area in µm² (patch, spot, polygon, or convex hull of the cells)
    bbox = ("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1")  # grid patch, level-0 px, half-open
    diameter_um = "diameter_um"  # spot diameter
    geometry = "geometry_wkt"  # region polygon as WKT, level-0 px (pixel-centre convention)
    name = "name"  # region name (QuPath ``properties.name``)


# Columns of the nucleus table produced by ``tg.seg.nuclei`` (a pandas DataFrame).
nuclei = SimpleNamespace(
    id="nucleus_id",  # global unique id, 1..N (0 is background in label images)
    x="x",  # centroid, level-0 px
    y="y",
    bbox=("bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"),  # level-0 px, half-open [x0, x1)
    area_px="area_px",  # area in segmentation-resolution pixels
    area_um2="area_um2",  # area in µm² (NaN when µm/px is unknown)
    contour="contour",  # (n, 2) float32 polygon (x, y) in level-0 px through pixel corners
    tile="tile",  # index of the owning tile
    score="score",  # detection probability, NaN when the method has none
    slide="slide",
    cell_type="cell_type",
)
# the table's columns in order (``cell_type`` is optional: present when the source knows the types)
nuclei.columns = [nuclei.id, nuclei.x, nuclei.y, *nuclei.bbox, nuclei.area_px, nuclei.area_um2, nuclei.contour,
                  nuclei.tile, nuclei.score, nuclei.slide]

# Columns of the ground-truth nucleus table written next to a synthetic slide.
truth = SimpleNamespace(
    id="nucleus_id",
    x="x",
    y="y",
    cell_type="cell_type",
    region="region",
    area_px="area_px",  # pixels of the nucleus in the label image
    gland_id="gland_id",  # gland the nucleus lines (0 = none)
    major_axis_um="major_axis_um",  # drawn ellipse axes (before outline perturbation), µm
    minor_axis_um="minor_axis_um",
    orientation_rad="orientation_rad",  # major-axis angle from +x towards +y (image coordinates), [-pi/2, pi/2)
)

# Columns of the ground-truth gland table written next to a synthetic slide.
truth_glands = SimpleNamespace(
    id="gland_id",
    x="x",  # centre, level-0 px
    y="y",
    radius_um="radius_um",  # mean outer (basal) radius
    lumen_radius_um="lumen_radius_um",  # mean lumen radius
    n_nuclei="n_nuclei",  # epithelial nuclei of the gland in the nucleus table
)
