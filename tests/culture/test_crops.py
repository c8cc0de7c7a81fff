"""Single-cell crops -> multichannel encoders -> well embeddings (tg.culture.cell_crops / embed_cells /
train_cell_encoder) and the culture bench's tables, on a tiny synthetic plate (ground-truth masks)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

import tissuegraph as tg  # noqa: E402
from tissuegraph._errors import InputError  # noqa: E402

ARCH = "resnet18"


@pytest.fixture(scope="module")
def screen():
    plate = tg.culture.synthetic_plate(n_batches=2, plates_per_batch=1, rows=3, columns=4,
                                       compounds_per_mechanism=2, size=64, cells_per_site=6, seed=3)
    cells = tg.culture.single_cells(plate, use_truth=True)
    wells = tg.culture.aggregate(cells, method="median")
    return plate, cells, wells


@pytest.fixture(scope="module")
def twins(screen):
    plate, cells, wells = screen
    w = wells.copy()
    tg.culture.embed_cells(w, plate, cells=cells, model=ARCH, seeds=(0, 1), progress=False)
    return w


def test_crops_match_a_hand_made_box_around_the_true_nucleus(screen):
    plate, cells, _ = screen
    size = 16
    crops = tg.culture.cell_crops(cells, plate, size=size, progress=False)
    assert crops.shape == (cells.n_obs, 3, size, size) and crops.dtype == np.float32
    assert crops.min() >= 0 and crops.max() <= 1
    # independent reference: the plate's 0.1 / 99.9 percentiles of every pixel (64 px sites: all pixels are
    # used), the nucleus centroid from the ground-truth labels, a zero-padded box
    for row in (0, cells.n_obs // 2, cells.n_obs - 1):
        o = cells.obs.iloc[row]
        i, label = int(o["site_index"]), int(o["cell"])
        same_plate = np.flatnonzero(plate.sites["plate"].to_numpy() == plate.sites["plate"].iloc[i])
        px = np.concatenate([plate.images[j].reshape(-1, 3) for j in same_plate]).astype(np.float64)
        lo, hi = np.percentile(px, [0.1, 99.9], axis=0)
        img = np.clip((plate.images[i] - lo) / (hi - lo), 0, 1)
        yy, xx = np.nonzero(plate.nuclei[i] == label)
        cx, cy = int(np.floor(xx.mean())), int(np.floor(yy.mean()))
        pad = np.zeros((64 + 2 * size, 64 + 2 * size, 3))
        pad[size:size + 64, size:size + 64] = img
        ref = pad[cy - size // 2 + size:cy + size // 2 + size, cx - size // 2 + size:cx + size // 2 + size]
        np.testing.assert_allclose(crops[row], ref.transpose(2, 0, 1), atol=1e-6)
    # rows= picks cells in the caller's order
    sub = tg.culture.cell_crops(cells, plate, size=size, rows=[5, 0, 3], progress=False)
    np.testing.assert_array_equal(sub, crops[[5, 0, 3]])


def test_twins_deterministic_per_seed_and_differ_across_seeds(screen, twins):
    plate, cells, wells = screen
    a, b = twins.obsm["X_cnn_resnet18_untrained_s0"], twins.obsm["X_cnn_resnet18_untrained_s1"]
    assert a.shape == (wells.n_obs, 512) and np.isfinite(a).all()
    again = wells.copy()
    tg.culture.embed_cells(again, plate, cells=cells, model=ARCH, seed=0, progress=False)
    np.testing.assert_array_equal(again.obsm["X_cnn_resnet18_untrained_s0"], a)
    assert not np.allclose(a, b, rtol=1e-3, atol=1e-4)
    reps = twins.uns["representations"]
    r0, r1 = reps["X_cnn_resnet18_untrained_s0"], reps["X_cnn_resnet18_untrained_s1"]
    for r, s in ((r0, 0), (r1, 1)):
        assert (r["family"], r["trained"], r["learned"], r["objective"], r["seed"]) == ("cnn", False, True, None, s)
        assert r["params"]["channels"] == ["DNA", "actin", "tubulin"] and r["params"]["pool"] == "mean"
    assert r0["twin_group"] == r1["twin_group"] and r0["weights_sha256"] != r1["weights_sha256"]


def test_batching_equals_per_crop_reference(screen, twins):
    """The well mean of embed_cells = the mean of the encoder run on each crop alone (batch of one)."""
    plate, cells, wells = screen
    crops = tg.culture.cell_crops(cells, plate, size=32, progress=False)
    rec = twins.uns["representations"]["X_cnn_resnet18_untrained_s0"]
    enc = tg.models.PatchEncoder(ARCH, in_chans=3, img_size=32, seed=0, mean=rec["params"]["mean"],
                                 std=rec["params"]["std"]).eval()
    key = (cells.obs["plate"].astype(str) + "/" + cells.obs["well"].astype(str)).to_numpy()
    some = list(wells.obs_names[[0, 5, wells.n_obs - 1]])  # three wells: every one of their cells alone
    rows = np.flatnonzero(np.isin(key, some))
    with torch.inference_mode():
        per_cell = np.stack([enc(torch.from_numpy(crops[r][None]))[0].numpy() for r in rows]).astype(np.float64)
    ref = pd.DataFrame(per_cell).groupby(key[rows]).mean().reindex(some).to_numpy()
    got = twins[some].obsm["X_cnn_resnet18_untrained_s0"]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    # and batch size does not change the result
    w1 = wells.copy()
    tg.culture.embed_cells(w1, plate, cells=cells, model=ARCH, seed=0, batch_size=7, progress=False)
    np.testing.assert_allclose(w1.obsm["X_cnn_resnet18_untrained_s0"], twins.obsm["X_cnn_resnet18_untrained_s0"],
                               rtol=1e-4, atol=1e-5)


def test_median_pool(screen):
    plate, cells, wells = screen
    w = wells.copy()
    tg.culture.embed_cells(w, plate, cells=cells, model=ARCH, seed=0, pool="median", progress=False)
    Z = w.obsm["X_cnn_resnet18_untrained_s0_median"]
    rec = w.uns["representations"]["X_cnn_resnet18_untrained_s0_median"]
    crops = tg.culture.cell_crops(cells, plate, size=32, progress=False)
    enc = tg.models.PatchEncoder(ARCH, in_chans=3, img_size=32, seed=0, mean=rec["params"]["mean"],
                                 std=rec["params"]["std"]).eval()
    with torch.inference_mode():
        per_cell = enc(torch.from_numpy(crops)).numpy().astype(np.float64)
    key = (cells.obs["plate"].astype(str) + "/" + cells.obs["well"].astype(str)).to_numpy()
    ref = pd.DataFrame(per_cell).groupby(key).median().reindex(w.obs_names).to_numpy()
    np.testing.assert_allclose(Z, ref, rtol=1e-4, atol=1e-5)
    assert rec["params"]["pool"] == "median" and "median per well" in rec["twin_group"]


def test_trained_differs_from_its_twin_and_shares_its_group(screen, twins):
    plate, cells, wells = screen
    enc, card = tg.culture.train_cell_encoder(cells, plate, model=ARCH, epochs=1, batch_size=32, max_crops=64,
                                              seed=0, progress=False)
    assert card["objective"] == "simclr" and card["augmentations"]["color"] == "channel"
    assert card["data"]["n_crops"] == 64 and len(card["loss_log"]) == 1
    w = twins.copy()
    tg.culture.embed_cells(w, plate, cells=cells, model=enc, seeds=(0,), progress=False)
    trained, twin = w.obsm["X_cnn_resnet18_simclr"], w.obsm["X_cnn_resnet18_untrained_s0"]
    np.testing.assert_array_equal(twin, twins.obsm["X_cnn_resnet18_untrained_s0"])  # same twin, same pass
    assert not np.allclose(trained, twin, rtol=1e-3, atol=1e-4)
    reps = w.uns["representations"]
    r, t = reps["X_cnn_resnet18_simclr"], reps["X_cnn_resnet18_untrained_s0"]
    assert (r["trained"], r["objective"], r["learned"]) == (True, "simclr", True)
    assert r["twin_group"] == t["twin_group"] and r["weights_sha256"] != t["weights_sha256"]
    # tg.eval compares the trained encoder with the profile and with its twins
    w.obsm["X_profile"] = np.nan_to_num(w.obsm["X_profile"])
    w = w[~w.obs["is_control"].to_numpy(bool)].copy()
    tg.eval.evaluate(w, label_key="moa", task="retrieval", baseline="X_profile", n_splits=2, seeds=(0,),
                     diagnostics=False, similarity=False, n_boot=50)
    gaps = w.uns["tg_eval"]["gaps"]
    assert {"X_profile", "untrained twins"} <= set(gaps.loc[gaps.representation == "X_cnn_resnet18_simclr",
                                                            "reference"])


def test_bad_input_is_a_clear_error(screen):
    import anndata as ad

    plate, cells, wells = screen
    two = tg.models.PatchEncoder(ARCH, in_chans=2, seed=0)
    with pytest.raises(InputError, match="in_chans=2.*3"):
        tg.culture.embed_cells(wells.copy(), plate, cells=cells, model=two, progress=False)
    with pytest.raises(InputError, match="in_chans=2"):
        tg.culture.train_cell_encoder(cells, plate, model=two, epochs=1, progress=False)
    # the same encoder fits two chosen channels
    w = wells.copy()
    tg.culture.embed_cells(w, plate, cells=cells, model=two, channels=["DNA", "tubulin"], key_added="two",
                           progress=False)
    assert w.obsm["X_two"].shape == (wells.n_obs, 512)
    with pytest.raises(InputError, match="channel 'GFP'"):
        tg.culture.cell_crops(cells, plate, channels=["GFP"], progress=False)
    with pytest.raises(InputError, match="normalize"):
        tg.culture.cell_crops(cells, plate, normalize="image", progress=False)
    with pytest.raises(InputError, match="site_index"):
        tg.culture.cell_crops(ad.AnnData(obs=cells.obs.drop(columns="site_index")), plate)
    from tissuegraph.models._patch_train import augment

    with pytest.raises(InputError, match="3-channel"):
        augment(torch.zeros(2, 2, 16, 16), torch.Generator().manual_seed(0), size=16, color="hed")


def test_culture_bench_tables_and_plots(tmp_path, screen):
    from tissuegraph.culture._bench import culture_bench

    plate = screen[0]
    info = culture_bench(tmp_path, dataset=plate, quick=True, segmenter="truth", null_size=50, seeds=(0, 1),
                         epochs=1, progress=False)
    res = pd.read_csv(tmp_path / "results.csv")
    assert list(res.columns) == ["dataset", "task", "representation", "protocol", "metric", "split", "seed", "value"]
    reps = {"X_profile", "X_cnn_resnet18_untrained_s0", "X_cnn_resnet18_untrained_s1", "X_cnn_resnet18_simclr"}
    assert set(res.representation) == reps
    screen_rows = res[res.task == "screen (all wells)"]
    assert set(screen_rows.metric) >= {"mAP", "NSC", "NSCB", "percent replicating"}
    evald = res[res.task != "screen (all wells)"]
    assert {"linear_probe", "knn", "retrieval"} <= set(evald.protocol) and evald.split.nunique() == 3
    gaps = pd.read_csv(tmp_path / "gaps.csv")
    sim = gaps[gaps.representation == "X_cnn_resnet18_simclr"]
    assert set(sim.reference) == {"X_profile", "untrained twins"}
    assert set(gaps.verdict) <= {"better", "not distinguishable", "worse"}
    assert (gaps.ci_low <= gaps["diff"] + 1e-12).all() and (gaps["diff"] <= gaps.ci_high + 1e-12).all()
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# tissuegraph culture bench")
    for part in ("## Scores: mean [95 % interval]", "## Baseline gaps", "## Screen metrics", "X_cnn_resnet18_simclr"):
        assert part in md
    for f in ("scores_0.png", "gaps_0.png", "cka_0.png", "cka_0.csv", "summary.csv", "wells.h5ad", "manifest.json"):
        assert (tmp_path / f).is_file(), f
    assert info["skipped"] == {}


def test_fluorescence_jitter_keeps_channels_apart():
    """color='channel' scales and shifts each channel on its own; H&E stain jitter ('hed', the RGB default)
    mixes them, which would be wrong for three independent stains."""
    from tissuegraph.models._patch_train import augment

    x = torch.ones(4, 3, 8, 8) * torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1)
    x2 = x.clone()
    x2[:, 0] = 0.3
    kw = dict(size=8, crop_scale=(0.7, 1.0), stain_jitter=0.1, blur_p=0.0)
    out, out2 = (augment(v, torch.Generator().manual_seed(0), color="channel", **kw) for v in (x, x2))
    assert float(out.std(dim=(2, 3)).max()) < 1e-6  # a constant channel stays constant under any geometry
    assert torch.allclose(out[:, 1:], out2[:, 1:]) and not torch.allclose(out[:, 0], out2[:, 0])
    hed, hed2 = (augment(v, torch.Generator().manual_seed(0), color="hed", **kw) for v in (x, x2))
    assert not torch.allclose(hed[:, 1:], hed2[:, 1:])
    # 'auto' on 3 channels is the H&E jitter (the tissue default is unchanged)
    auto = augment(x, torch.Generator().manual_seed(0), color="auto", **kw)
    assert torch.equal(auto, hed)


def test_vit_on_crops(screen):
    plate, cells, wells = screen
    w = wells.copy()
    tg.culture.embed_cells(w, plate, cells=cells, model="vit_tiny_patch16_224", seeds=(0,), size=32,
                           channels=["DNA", "actin"], progress=False)
    Z = w.obsm["X_vit_tiny_patch16_224_untrained_s0"]
    rec = w.uns["representations"]["X_vit_tiny_patch16_224_untrained_s0"]
    assert Z.shape == (wells.n_obs, 192) and np.isfinite(Z).all()
    assert rec["family"] == "vit" and rec["params"]["in_chans"] == 2 and rec["params"]["channels"] == ["DNA", "actin"]
