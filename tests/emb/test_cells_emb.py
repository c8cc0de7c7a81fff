"""tg.emb.cells: per-nucleus embeddings pooled from one feature map per tile (never a crop per nucleus)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
anndata = pytest.importorskip("anndata")

import tissuegraph as tg  # noqa: E402
from tissuegraph._anndata import set_slide_metadata  # noqa: E402
from tissuegraph._contours import label_contours  # noqa: E402
from tissuegraph._errors import InputError  # noqa: E402

from ..torch_fixtures import _one_torch_thread  # noqa: F401  (autouse: one torch thread)

H, W, MPP = 240, 300, 0.5
ARCH, LAYER, STRIDE = "resnet18", 2, 8
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _scene(seed=0):
    """A textured RGB slide with elliptic nuclei (label image), their contours and the cells AnnData."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (H // 4 + 1, W // 4 + 1, 3)).astype(np.float64)
    img = np.kron(base, np.ones((4, 4, 1)))[:H, :W] * 0.6 + rng.integers(0, 100, (H, W, 3))
    labels = np.zeros((H, W), np.int32)
    yy, xx = np.mgrid[:H, :W]
    centres = [(20, 30), (63, 64), (64, 130), (120, 127), (200, 60), (230, 200), (150, 290), (5, 250),
               (100, 200), (180, 180)]
    nid = 0
    for i, (cy, cx) in enumerate(centres):
        a, b = 3 + (i % 4) * 2, 3 + (i % 3) * 2
        m = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1
        nid += 1
        labels[m & (labels == 0)] = nid
        img[m] *= 0.4
    labels[100, 20] = nid + 1  # a one-pixel nucleus
    img = np.clip(img, 0, 255).astype(np.uint8)
    cont = label_contours(labels)
    ids = np.array(sorted(cont), dtype=np.int64)
    cy_, cx_ = [], []
    for i in ids:
        r, c = np.nonzero(labels == i)
        cy_.append(r.mean())
        cx_.append(c.mean())
    nuclei = pd.DataFrame({"nucleus_id": ids, "x": cx_, "y": cy_, "contour": [cont[i] for i in ids]})
    obs = pd.DataFrame({"nucleus_id": ids, "slide": pd.Categorical(["s1"] * len(ids))}, index=ids.astype(str))
    cells = anndata.AnnData(X=np.zeros((len(ids), 1), np.float32), obs=obs)
    cells.obsm["spatial"] = np.stack([cx_, cy_], 1)
    set_slide_metadata(cells, "s1", mpp=MPP)
    return img, labels, nuclei, cells


IMG, LABELS, NUCLEI, CELLS = _scene()


def _slide():
    return tg.io.open_slide(IMG, mpp=MPP)


def _timm_model(seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # PatchEncoder builds random ResNets with live residual branches (zero_init_last=False)
        m = timm.create_model(ARCH, pretrained=False, num_classes=0, in_chans=3, zero_init_last=False)
    return m.eval()


def _hand_map(model, tile):
    x = torch.from_numpy(((tile / 255.0 - MEAN) / STD).astype(np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        f = model.forward_intermediates(x, indices=[LAYER], intermediates_only=True)[0]
    return f[0].permute(1, 2, 0).double().numpy()


def _tile_of(cx, cy, core, margin, T):
    X = int(np.floor((cx + 0.5) / core) * core - margin)
    Y = int(np.floor((cy + 0.5) / core) * core - margin)
    pad = np.full((H + 2 * T, W + 2 * T, 3), 255, np.uint8)  # outside the slide: white background
    pad[T:T + H, T:T + W] = IMG
    lab = np.zeros((H + 2 * T, W + 2 * T), np.int32)
    lab[T:T + H, T:T + W] = LABELS
    return pad[Y + T:Y + 2 * T, X + T:X + 2 * T], lab[Y + T:Y + 2 * T, X + T:X + 2 * T]


def test_mask_pool_equals_hand_masked_mean_of_timm_map():
    c = CELLS.copy()
    tg.emb.cells(c, _slide(), nuclei=NUCLEI, model=ARCH, layer=LAYER, mpp=MPP, tile_size=64, seed=3,
                 key_added="emb", progress=False)
    Z = c.obsm["X_emb"]
    rec = c.uns["representations"]["X_emb"]
    assert rec["family"] == "cnn" and rec["trained"] is False and rec["learned"] is True and rec["seed"] == 3
    assert rec["layer"] == LAYER and rec["params"]["pool"] == "mask" and rec["params"]["stride"] == STRIDE
    core, M, T = rec["params"]["tile_size"], rec["params"]["margin"], rec["params"]["tile_input"]
    assert Z.shape == (c.n_obs, 128) and Z.dtype == np.float32 and np.isfinite(Z).all()
    model = _timm_model(3)
    for r in range(c.n_obs):
        nid = int(c.obs["nucleus_id"].iat[r])
        cx, cy = c.obsm["spatial"][r]
        tile, lab = _tile_of(cx, cy, core, M, T)
        F = _hand_map(model, tile)
        mask = (lab == nid).astype(np.float64)
        w = mask.reshape(T // STRIDE, STRIDE, T // STRIDE, STRIDE).sum(axis=(1, 3))
        ref = (w[..., None] * F).sum((0, 1)) / w.sum()
        np.testing.assert_allclose(Z[r], ref, rtol=1e-4, atol=1e-5)


def test_small_nucleus_takes_the_cell_under_its_centroid_and_centroid_pool_is_bilinear():
    c = CELLS.copy()
    tg.emb.cells(c, _slide(), model=ARCH, layer=LAYER, tile_size=64, pool="centroid", key_added="ctr",
                 progress=False)
    rec = c.uns["representations"]["X_ctr"]["params"]
    core, M, T = rec["tile_size"], rec["margin"], rec["tile_input"]
    model = _timm_model(0)
    for r in range(c.n_obs):
        cx, cy = c.obsm["spatial"][r]
        tile, _ = _tile_of(cx, cy, core, M, T)
        F = torch.from_numpy(_hand_map(model, tile)).permute(2, 0, 1)[None]
        X = np.floor((cx + 0.5) / core) * core - M
        Y = np.floor((cy + 0.5) / core) * core - M
        g = torch.tensor([[[[2 * (cx - X + 0.5) / T - 1, 2 * (cy - Y + 0.5) / T - 1]]]], dtype=F.dtype)
        ref = torch.nn.functional.grid_sample(F, g, mode="bilinear", padding_mode="border", align_corners=False)
        np.testing.assert_allclose(c.obsm["X_ctr"][r], ref.flatten().numpy(), rtol=1e-4, atol=1e-5)


def test_independent_of_tile_size_and_batch_size():
    outs = []
    for ts, bs in ((32, 1), (64, 3), (152, 2)):
        c = CELLS.copy()
        # zero_init_last=False: the residual branches are live (timm starts their last norm gain at 0), so the
        # whole receptive field matters, as in a trained network
        tg.emb.cells(c, _slide(), nuclei=NUCLEI, model=ARCH, layer=LAYER, tile_size=ts, batch_size=bs,
                     model_kwargs={"zero_init_last": False}, key_added="e", progress=False)
        outs.append((c.obsm["X_e"], c.uns["representations"]["X_e"]["params"]["n_tiles"]))
    assert len({n for _, n in outs}) >= 2  # the nuclei sit at other places in other tiles
    for Z, _ in outs[1:]:
        np.testing.assert_allclose(Z, outs[0][0], rtol=0, atol=1e-5 * max(1.0, float(np.abs(outs[0][0]).max())))
    # the margin matters: too little context changes the embeddings of nuclei near tile borders
    thin = []
    for ts in (32, 152):
        c = CELLS.copy()
        tg.emb.cells(c, _slide(), nuclei=NUCLEI, model=ARCH, layer=LAYER, tile_size=ts, margin=8,
                     model_kwargs={"zero_init_last": False}, key_added="e", progress=False)
        thin.append(c.obsm["X_e"])
    assert np.abs(thin[0] - thin[1]).max() > 1e-2


def test_seeds_twins_and_empty():
    a, b = CELLS.copy(), CELLS.copy()
    tg.emb.cells(a, _slide(), nuclei=NUCLEI, model=ARCH, layer=1, seeds=(0, 1), tile_size=64, progress=False)
    tg.emb.cells(b, _slide(), nuclei=NUCLEI, model=ARCH, layer=1, seed=0, tile_size=64, progress=False)
    k0, k1 = "X_cnn_resnet18_l1_mask_untrained_s0", "X_cnn_resnet18_l1_mask_untrained_s1"
    np.testing.assert_array_equal(a.obsm[k0], b.obsm[k0])
    assert not np.allclose(a.obsm[k0], a.obsm[k1])
    r0, r1 = a.uns["representations"][k0], a.uns["representations"][k1]
    assert r0["twin_group"] == r1["twin_group"] and r0["weights_sha256"] != r1["weights_sha256"]
    empty = CELLS[:0].copy()
    tg.emb.cells(empty, _slide(), nuclei=NUCLEI, model=ARCH, layer=1, key_added="z", progress=False)
    assert empty.obsm["X_z"].shape == (0, 64) and empty.obsm["X_z"].dtype == np.float32


def test_clear_errors():
    with pytest.raises(InputError, match="nuclei="):
        tg.emb.cells(CELLS.copy(), _slide(), pool="mask", progress=False)
    far = CELLS.copy()
    far.obsm["spatial"] = far.obsm["spatial"] + np.array([W, 0.0])
    with pytest.raises(InputError, match="outside slide"):
        tg.emb.cells(far, _slide(), pool="centroid", progress=False)
    with pytest.raises(InputError, match="no nucleus"):
        tg.emb.cells(CELLS.copy(), _slide(), nuclei=NUCLEI.iloc[1:], progress=False)
    with pytest.raises(InputError, match="layer=-1"):
        tg.emb.cells(CELLS.copy(), _slide(), layer=-1, progress=False)
    bare = CELLS.copy()
    bare.uns.pop("spatial")
    with pytest.raises(tg.TissuegraphError, match="µm/px|mpp"):
        tg.emb.cells(bare, tg.io.open_slide(IMG), pool="centroid", progress=False)


def test_vit_patch_token_grid():
    c = CELLS.copy()
    tg.emb.cells(c, _slide(), nuclei=NUCLEI, model="vit_tiny_patch16_224", layer=1, tile_size=96,
                 key_added="v", progress=False)
    rec = c.uns["representations"]["X_v"]
    assert rec["family"] == "vit" and rec["params"]["stride"] == 16 and rec["params"]["tile_input"] == 96
    assert c.obsm["X_v"].shape == (c.n_obs, 192) and np.isfinite(c.obsm["X_v"]).all()


def test_nuclei_parquet_of_tissuegraph_run_gives_the_same_result(tmp_path):
    from tissuegraph.pipeline import write_nuclei

    path = write_nuclei(NUCLEI, tmp_path / "nuclei.parquet")
    a, b = CELLS.copy(), CELLS.copy()
    tg.emb.cells(a, _slide(), nuclei=NUCLEI, model=ARCH, layer=1, tile_size=64, key_added="e", progress=False)
    tg.emb.cells(b, _slide(), nuclei=str(path), model=ARCH, layer=1, tile_size=64, key_added="e", progress=False)
    np.testing.assert_array_equal(a.obsm["X_e"], b.obsm["X_e"])
    assert a.uns["representations"]["X_e"]["inputs"] == "rgb@0.5um/px,nucleus-mask"


def test_resampled_mpp_is_tile_independent_and_tiny_nuclei_take_their_centroid_cell():
    outs = []
    for ts in (32, 96):
        c = CELLS.copy()
        tg.emb.cells(c, _slide(), nuclei=NUCLEI, model=ARCH, layer=1, mpp=1.0, tile_size=ts,
                     model_kwargs={"zero_init_last": False}, key_added="e", progress=False)
        outs.append(c.obsm["X_e"])
    np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-5 * float(np.abs(outs[0]).max()))
    # the one-pixel nucleus covers no pixel centre at 1 µm/px: it takes the cell under its centroid
    rec = c.uns["representations"]["X_e"]["params"]
    assert rec["n_centroid_cell"] == 1
    tiny = int(np.flatnonzero(CELLS.obs["nucleus_id"].to_numpy() == NUCLEI["nucleus_id"].max())[0])
    from tissuegraph.models.patch import PatchEncoder

    enc = PatchEncoder(ARCH, seed=0, model_kwargs={"zero_init_last": False})
    core, M, T, S = rec["tile_size"], rec["margin"], rec["tile_input"], rec["stride"]
    cx, cy = CELLS.obsm["spatial"][tiny]
    s = 2.0
    X = np.floor((cx + 0.5) / (core * s)) * core * s - M * s
    Y = np.floor((cy + 0.5) / (core * s)) * core * s - M * s
    img = tg.emb._pixels.read_tile(_slide(), X, Y, s, T)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        F = enc.feature_maps(x, layers=[1])[0][0].permute(1, 2, 0).double().numpy()
    ux, uy = (cx - X + 0.5) / s - 0.5, (cy - Y + 0.5) / s - 0.5
    ref = F[int(np.floor((uy + 0.5) / S)), int(np.floor((ux + 0.5) / S))]
    np.testing.assert_allclose(outs[1][tiny], ref, rtol=1e-4, atol=1e-5)
