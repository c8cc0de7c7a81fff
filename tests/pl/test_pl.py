"""tg.pl: every function returns its Axes, draws what it was given, saves, and names the missing step."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402

import tissuegraph as tg  # noqa: E402
from tissuegraph._contours import label_contours  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def scene():
    import anndata as ad

    from tissuegraph._anndata import set_slide_metadata

    syn = tg.datasets.synthetic_tissue((320, 320), seed=1, tissue_fraction=1)
    truth = syn.nuclei
    contours = label_contours(syn.labels.astype(np.int64), ids=truth["nucleus_id"].to_numpy())
    nuclei = truth[["nucleus_id", "x", "y"]].copy()
    nuclei["contour"] = [contours[i] for i in nuclei["nucleus_id"]]
    cells = ad.AnnData(X=np.c_[truth["area_px"].to_numpy(), truth["major_axis_um"].to_numpy()].astype(np.float32),
                       obs=pd.DataFrame({"nucleus_id": truth["nucleus_id"].to_numpy(),
                                         "cell_type": pd.Categorical(truth["cell_type"])},
                                        index=truth["nucleus_id"].astype(str).to_numpy()))
    cells.var_names = ["area_px", "major_axis_um"]
    cells.obsm["spatial"] = truth[["x", "y"]].to_numpy()
    set_slide_metadata(cells, "synthetic", mpp=syn.mpp)
    tg.graph.delaunay(cells, max_edge_um=30)
    samples = tg.graph.grid_samples(cells, size_um=64)
    return syn, nuclei, cells, samples


def _polys(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_slide_overlay_outlines_edges_samples(scene, tmp_path):
    syn, nuclei, cells, samples = scene
    slide = tg.io.open_slide(syn.image, mpp=syn.mpp)
    out = tmp_path / "overlay.png"
    ax = tg.pl.slide_overlay(cells, slide=slide, nuclei=nuclei, color="cell_type", samples=samples, save=out,
                             show=False)
    assert isinstance(ax, plt.Axes) and out.stat().st_size > 10_000
    polys = _polys(ax)
    assert len(polys[0].get_paths()) == cells.n_obs  # every nucleus outlined
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    n_undirected = (cells.obsp["spatial_connectivities"].nnz) // 2
    assert len(lines[0].get_segments()) == n_undirected
    assert ax.images and ax.images[0].get_array().shape[:2] == (320, 320)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(legend) == set(cells.obs["cell_type"].cat.categories)


def test_slide_overlay_region_at_mpp_and_feature_colour(scene):
    syn, nuclei, cells, _ = scene
    slide = tg.io.open_slide(syn.image, mpp=syn.mpp)
    ax = tg.pl.slide_overlay(cells, slide=slide, region=(100, 100, 200, 180), mpp=1.0, color="area_px", edges=False)
    assert ax.images[0].get_array().shape[:2] == (40, 50)  # 100 x 80 level-0 px at 0.5 µm/px shown at 1 µm/px
    xy = cells.obsm["spatial"]
    inside = ((xy[:, 0] >= 100) & (xy[:, 0] < 200) & (xy[:, 1] >= 100) & (xy[:, 1] < 180)).sum()
    assert len(ax.collections[0].get_offsets()) == inside  # centroids (no nuclei table given)
    assert len(ax.figure.axes) == 2  # a colour bar for a numeric feature


def test_slide_overlay_errors_name_the_step(scene):
    _, _, cells, _ = scene
    bare = cells.copy()
    del bare.obsp["spatial_connectivities"]
    with pytest.raises(tg.InputError, match="tg.graph.delaunay"):
        tg.pl.slide_overlay(bare)
    with pytest.raises(tg.InputError, match="neither an obs column nor a var name"):
        tg.pl.slide_overlay(cells, color="nope")


def test_segmentation_grid_with_truth(scene, tmp_path):
    syn, nuclei, _, _ = scene
    axes = tg.pl.segmentation_grid(syn.image, nuclei=nuclei, truth=syn.labels.astype(np.int64), n_tiles=4,
                                   tile_px=96, seed=0, slide_mpp=syn.mpp, save=tmp_path / "g.png")
    assert len(axes) >= 4 and (tmp_path / "g.png").exists()
    for a in axes[:4]:
        found, true = _polys(a)
        # the segmentation here *is* the truth: same outlines in both layers
        assert len(found.get_paths()) >= len(true.get_paths()) > 0
        assert "true" in a.get_title()
    with pytest.raises(tg.InputError, match="tg.seg.nuclei"):
        tg.pl.segmentation_grid(syn.image, nuclei=None)


def test_embedding_and_missing_basis(scene):
    _, _, cells, samples = scene
    cells.obsm["X_pca"] = np.c_[cells.X, cells.obsm["spatial"]]
    ax = tg.pl.embedding(cells, basis="X_pca", color="cell_type")
    assert len(ax.collections[0].get_offsets()) == cells.n_obs
    ax = tg.pl.embedding(cells, basis="X_pca", color="area_px", components=(1, 2))
    np.testing.assert_allclose(ax.collections[0].get_offsets()[:, 0], cells.obsm["X_pca"][:, 1])
    with pytest.raises(tg.InputError, match=r"tg.tl.embed\(adata, use_rep='X_structural'\)"):
        tg.pl.embedding(samples, basis="X_structural_umap")


def test_nhood_and_cooccurrence_plots(scene):
    _, _, cells, _ = scene
    with pytest.raises(tg.InputError, match=r"tg.tl.nhood_enrichment\(adata, cluster_key='cell_type'\)"):
        tg.pl.nhood_enrichment(cells, cluster_key="cell_type")
    tg.tl.nhood_enrichment(cells, cluster_key="cell_type", n_perms=20)
    ax = tg.pl.nhood_enrichment(cells, cluster_key="cell_type")
    k = len(cells.obs["cell_type"].cat.categories)
    np.testing.assert_allclose(ax.images[0].get_array(), cells.uns["cell_type_nhood_enrichment"]["zscore"])
    assert len(ax.get_xticklabels()) == k
    with pytest.raises(tg.InputError, match="tg.tl.co_occurrence"):
        tg.pl.co_occurrence(cells, cluster_key="cell_type")
    tg.tl.co_occurrence(cells, cluster_key="cell_type", interval_um=np.linspace(0, 40, 9))
    ax = tg.pl.co_occurrence(cells, cluster_key="cell_type")
    assert len(ax.get_lines()) == k + 1 and ax.get_lines()[0].get_xdata().max() == pytest.approx(40)


def _eval_tables():
    reps = ["X_structural", "X_gnn_gin_features_untrained_s0", "X_gnn_gin_features_dgi"]
    summary = pd.DataFrame({"representation": reps, "protocol": "knn", "metric": "balanced_accuracy",
                            "mean": [0.70, 0.66, 0.74], "ci_low": [0.65, 0.61, 0.70], "ci_high": [0.75, 0.71, 0.78],
                            "n": 5})
    gaps = pd.DataFrame({"representation": reps[1:], "reference": "X_structural", "protocol": "knn",
                         "metric": "balanced_accuracy", "diff": [-0.04, 0.04], "ci_low": [-0.09, -0.01],
                         "ci_high": [0.01, 0.09], "verdict": ["not distinguishable", "not distinguishable"]})
    cka = pd.DataFrame(np.array([[1, 0.3, 0.5], [0.3, 1, 0.8], [0.5, 0.8, 1.0]]), index=reps, columns=reps)
    return {"results": pd.DataFrame(), "summary": summary, "gaps": gaps, "cka": cka, "knn_overlap": cka,
            "probes": pd.DataFrame(), "flags": [], "params": {}}


def test_eval_plots_from_the_contract_tables(scene):
    import anndata as ad

    samples = ad.AnnData(obs=pd.DataFrame(index=["a", "b"]))
    with pytest.raises(tg.InputError, match=r"tg.eval.evaluate\(samples\)"):
        tg.pl.eval_scores(samples)
    samples.uns["tg_eval"] = _eval_tables()
    samples.uns["representations"] = {"X_gnn_gin_features_untrained_s0": {"learned": True, "trained": False}}
    ax = tg.pl.eval_scores(samples)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["gnn_gin_features_untrained_s0", "structural", "gnn_gin_features_dgi"]  # sorted by mean
    assert any(line.get_linestyle() == "--" for line in ax.get_lines())  # baseline line
    ax = tg.pl.baseline_gaps(samples)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["gnn_gin_features_untrained_s0", "gnn_gin_features_dgi"]
    ax = tg.pl.cka_heatmap(samples)
    np.testing.assert_allclose(ax.images[0].get_array(), samples.uns["tg_eval"]["cka"].to_numpy())
    with pytest.raises(tg.InputError, match="metric='nope' is not in the table"):
        tg.pl.eval_scores(samples, metric="nope")


def test_plate_heatmap_well_and_row_column():
    rows = "ABCDEFGH"
    wells = [f"{r}{c:02d}" for r in rows for c in range(1, 13)]
    df = pd.DataFrame({"plate": "P1", "well": wells, "map": np.arange(96) / 96.0})
    df = pd.concat([df, df.assign(plate="P2", map=1.0)])
    with pytest.raises(tg.InputError, match="pass plate="):
        tg.pl.plate_heatmap(df, value="map")
    ax = tg.pl.plate_heatmap(df, value="map", plate="P1")
    M = ax.images[0].get_array()
    assert M.shape == (8, 12) and M[1, 2] == pytest.approx(df["map"].iloc[14])  # B03
    rc = pd.DataFrame({"row": ["A", "A", "P"], "column": [1, 1, 24], "count": [3.0, 5.0, 7.0]})
    ax = tg.pl.plate_heatmap(rc, value="count", agg="sum")
    M = ax.images[0].get_array()
    assert M.shape == (16, 24) and M[0, 0] == 8.0 and M[15, 23] == 7.0 and np.ma.is_masked(M[3, 3])
    with pytest.raises(tg.InputError, match="'well' column"):
        tg.pl.plate_heatmap(pd.DataFrame({"v": [1.0]}), value="v")


def test_slide_overlay_draws_spots_as_circles_of_their_diameter(scene):
    from matplotlib.collections import PatchCollection

    _, _, cells, _ = scene
    spots = tg.graph.spot_samples(cells, np.array([[100.0, 100.0], [220.0, 200.0]]), diameter_um=55)
    spots.obs["label"] = pd.Categorical(["a", "b"])
    ax = tg.pl.slide_overlay(cells, samples=spots, sample_color="label", edges=False)
    patches = [c for c in ax.collections if isinstance(c, PatchCollection)][0]
    paths = patches.get_paths()
    assert len(paths) == 2
    ext = patches.get_paths()[0].get_extents()
    # 55 µm at 0.5 µm/px = 110 px across (circle radius 55 px)
    assert ext.width == pytest.approx(110, rel=0.02)
