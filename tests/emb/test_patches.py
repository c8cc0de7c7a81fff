"""tg.emb.patches: which pixels each sample reads, pooling of tiles, twins, weights, provenance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
anndata = pytest.importorskip("anndata")

import tissuegraph as tg  # noqa: E402
from tissuegraph._errors import InputError  # noqa: E402
from tissuegraph.models.patch import PatchEncoder  # noqa: E402

H, W = 512, 640


def _position_slide(h=H, w=W):
    """Pixel values encode position: R = x mod 256, G = y mod 256, B = 32 * (x // 256) + 8 * (y // 256)."""
    yy, xx = np.mgrid[:h, :w]
    return np.stack([xx % 256, yy % 256, 32 * (xx // 256) + 8 * (yy // 256)], -1).astype(np.uint8)


ARR = _position_slide()


def _slide(arr=ARR, mpp=0.5):
    return tg.io.open_slide(arr, mpp=mpp)


def _mean_encoder():
    """A PatchEncoder whose 'embedding' is the mean [0, 1] pixel value per channel: tests the reading path."""
    enc = PatchEncoder("resnet18", seed=0)
    enc.embed = lambda x, layers=None: [x.mean(dim=(2, 3)) for _ in (layers or [-1])]
    enc.layer_width = lambda layer: 3
    enc.objective = "mean"
    return enc


def _grid(boxes, slide="image"):
    """Grid samples with level-0 pixel *edges* (e0, f0, e1, f1) (stored in pixel-index coordinates)."""
    b = np.asarray(boxes, dtype=float) - 0.5
    obs = pd.DataFrame({"slide": slide, "sample_kind": "grid", "bbox_x0": b[:, 0], "bbox_y0": b[:, 1],
                        "bbox_x1": b[:, 2], "bbox_y1": b[:, 3]}, index=[f"g{i}" for i in range(len(b))])
    return anndata.AnnData(obs=obs)


def _ref(arr, y0, y1, x0, x1):
    return arr[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0) / 255.0


def test_grid_patches_read_their_box_and_large_ones_are_tiled():
    s = _grid([(0, 0, 64, 64), (64, 128, 128, 192), (256, 128, 384, 256), (600, 480, 664, 544)])
    sl = _slide()
    tg.emb.patches(s, sl, model=_mean_encoder(), mpp=0.5, size=64, key_added="m")
    Z = s.obsm["X_m"]
    assert np.allclose(Z[0], _ref(ARR, 0, 64, 0, 64), atol=1e-6)
    assert np.allclose(Z[1], _ref(ARR, 128, 192, 64, 128), atol=1e-6)
    # 128 px at 0.5 µm/px with a 64 px model: 2 x 2 tiles of exactly 64 px, mean-pooled
    assert s.uns["representations"]["X_m"]["params"]["n_tiles"] == 1 + 1 + 4 + 1
    assert np.allclose(Z[2], _ref(ARR, 128, 256, 256, 384), atol=1e-6)
    # a patch over the slide edge: outside is the slide's background
    pad = np.empty((64, 64, 3), np.uint8)
    pad[...] = sl.background
    pad[:32, :40] = ARR[480:512, 600:640]
    assert np.allclose(Z[3], pad.reshape(-1, 3).mean(0) / 255, atol=1e-6)


def test_coarser_mpp_and_small_samples_are_resized():
    s = _grid([(0, 0, 128, 128), (64, 64, 96, 96)])
    tg.emb.patches(s, _slide(), model=_mean_encoder(), mpp=1.0, size=64, key_added="m")
    Z = s.obsm["X_m"]
    # 128 level-0 px at 1 µm/px = 64 model px: one tile, a 2x downsample (mean preserved up to rounding)
    assert np.allclose(Z[0], _ref(ARR, 0, 128, 0, 128), atol=1.5 / 255)
    # a 32 px sample is enlarged to 64 px: bilinear resampling of the same box (mean ~ preserved)
    assert np.allclose(Z[1], _ref(ARR, 64, 96, 64, 96), atol=1.5 / 255)
    assert s.uns["representations"]["X_m"]["params"]["n_tiles"] == 2


def test_spot_region_and_image_samples():
    spot = anndata.AnnData(obs=pd.DataFrame({"slide": "image", "sample_kind": "spot", "diameter_um": 32.0},
                                            index=["s0"]))
    spot.obsm["spatial"] = np.array([[99.5, 149.5]])  # centre in pixel-index coordinates
    tg.emb.patches(spot, _slide(), model=_mean_encoder(), mpp=0.5, size=64, key_added="m")
    # diameter 32 µm = 64 px: the square [68, 132) x [118, 182) in level-0 pixel edges
    assert np.allclose(spot.obsm["X_m"][0], _ref(ARR, 118, 182, 68, 132), atol=1e-6)

    # region: triangle above the diagonal of [64, 192)^2 (edges); WKT in pixel-index coordinates
    tri = "POLYGON ((63.5 63.5, 191.5 63.5, 191.5 191.5, 63.5 63.5))"
    reg = anndata.AnnData(obs=pd.DataFrame({"slide": "image", "sample_kind": "region", "geometry_wkt": [tri]},
                                           index=["r0"]))
    tg.emb.patches(reg, _slide(), model=_mean_encoder(), mpp=0.5, size=64, key_added="m")
    m00, m01 = _ref(ARR, 64, 128, 64, 128), _ref(ARR, 64, 128, 128, 192)
    m11 = _ref(ARR, 128, 192, 128, 192)  # the tile below the diagonal is outside (weight 0)
    assert np.allclose(reg.obsm["X_m"][0], (0.5 * m00 + 1.0 * m01 + 0.5 * m11) / 2.0, atol=1e-6)
    assert reg.uns["representations"]["X_m"]["params"]["n_tiles"] == 3

    img = anndata.AnnData(obs=pd.DataFrame({"slide": "image", "sample_kind": "image"}, index=["image"]))
    tg.emb.patches(img, _slide(), model=_mean_encoder(), mpp=0.5, size=64, key_added="m", mask=None)
    assert np.allclose(img.obsm["X_m"][0], ARR.reshape(-1, 3).mean(0) / 255, atol=1e-6)  # 10 x 8 tiles


def test_same_seed_identical_different_seeds_and_trained_differ(tmp_path):
    s = _grid([(0, 0, 64, 64), (64, 0, 128, 64), (0, 64, 64, 128)])
    sl = _slide()
    tg.emb.patches(s, sl, model="resnet18", mpp=0.5, size=64, seeds=(0, 1))
    a = s.obsm["X_cnn_resnet18_untrained_s0"].copy()
    tg.emb.patches(s, sl, model="resnet18", mpp=0.5, size=64, seed=0)
    assert np.array_equal(a, s.obsm["X_cnn_resnet18_untrained_s0"])  # a separate call: bit-identical
    tg.emb.patches(s, sl, model="resnet18", mpp=0.5, size=64, seed=0, num_workers=0, batch_size=2)
    # other batches: the same up to float32 rounding of the convolution kernels (through 8 live residual blocks)
    assert np.allclose(a, s.obsm["X_cnn_resnet18_untrained_s0"], rtol=1e-4, atol=1e-5)
    assert not np.allclose(a, s.obsm["X_cnn_resnet18_untrained_s1"])
    # a "trained" encoder: weights from a file
    torch.save(PatchEncoder("resnet18", seed=42).model.state_dict(), tmp_path / "w.pt")
    tg.emb.patches(s, sl, model="resnet18", weights=tmp_path / "w.pt", mpp=0.5, size=64)
    t = s.obsm["X_cnn_resnet18_pretrained"]
    assert t.shape == (3, 512) and t.dtype == np.float32 and not np.allclose(t, a)
    reps = s.uns["representations"]
    r0, rt = reps["X_cnn_resnet18_untrained_s0"], reps["X_cnn_resnet18_pretrained"]
    assert (r0["trained"], r0["learned"], r0["family"], r0["seed"], r0["objective"]) == (False, True, "cnn", 0, None)
    assert rt["trained"] and rt["objective"] == "pretrained" and r0["twin_group"] == rt["twin_group"]
    assert rt["weights_sha256"] != r0["weights_sha256"] != reps["X_cnn_resnet18_untrained_s1"]["weights_sha256"]
    # the embedding is the encoder applied to the tile read from the slide
    enc = PatchEncoder("resnet18", seed=0)
    with torch.no_grad():
        x = torch.from_numpy(ARR[0:64, 64:128]).permute(2, 0, 1)[None].float() / 255
        assert np.allclose(enc(x).numpy()[0], a[1], atol=1e-5)
    s.write_h5ad(tmp_path / "s.h5ad")  # provenance is storable
    back = anndata.read_h5ad(tmp_path / "s.h5ad")
    assert back.uns["representations"]["X_cnn_resnet18_untrained_s0"]["objective"] is None


def test_large_sample_pools_the_encoder_over_its_tiles():
    s = _grid([(0, 0, 128, 128)])
    tg.emb.patches(s, _slide(), model="resnet18", mpp=0.5, size=64, layer=[-1, 2], seed=3)
    enc = PatchEncoder("resnet18", seed=3)
    tiles = [ARR[y:y + 64, x:x + 64] for y in (0, 64) for x in (0, 64)]
    x = torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        zf, z2 = enc.embed(x, layers=[-1, 2])
    assert np.allclose(s.obsm["X_cnn_resnet18_untrained_s3"][0], zf.mean(0).numpy(), atol=1e-5)
    assert np.allclose(s.obsm["X_cnn_resnet18_l2_untrained_s3"][0], z2.mean(0).numpy(), atol=1e-5)


def test_vit_multichannel_and_errors():
    s = _grid([(0, 0, 64, 64)])
    tg.emb.patches(s, _slide(), model="vit_tiny_patch16_224", mpp=0.5, size=32, layer=[-1, 1])
    assert s.obsm["X_vit_tiny_patch16_224_untrained_s0"].shape == (1, 192)
    assert s.uns["representations"]["X_vit_tiny_patch16_224_l1_untrained_s0"]["family"] == "vit"
    fluo = np.random.default_rng(0).integers(0, 4000, size=(128, 128, 5)).astype(np.uint16)
    tg.emb.patches(s, tg.io.open_slide(fluo, mpp=0.5), model="resnet18", mpp=0.5, size=32, key_added="f5")
    tg.emb.patches(s, tg.io.open_slide(fluo, mpp=0.5), model="resnet18", mpp=0.5, size=32, channels=[0, 2],
                   value_range=(0, 4000), key_added="f2")
    assert s.obsm["X_f5"].shape == (1, 512) and s.uns["representations"]["X_f2"]["inputs"].startswith("2ch@")
    with pytest.raises(InputError, match="channels"):
        tg.emb.patches(s, tg.io.open_slide(fluo, mpp=0.5), model=PatchEncoder("resnet18"), size=32)
    two = _grid([(0, 0, 64, 64), (0, 0, 64, 64)])
    two.obs["slide"] = ["a", "b"]
    with pytest.raises(InputError, match="2 slides"):
        tg.emb.patches(two, _slide(), model=_mean_encoder(), size=32)
    with pytest.raises(InputError, match="no entry"):
        tg.emb.patches(two, {"a": _slide()}, model=_mean_encoder(), size=32)
    tg.emb.patches(two, {"a": _slide(), "b": _slide(ARR[::-1].copy())}, model=_mean_encoder(), size=64,
                   key_added="m")
    assert np.allclose(two.obsm["X_m"][1], _ref(ARR[::-1], 0, 64, 0, 64), atol=1e-6)
    with pytest.raises(InputError, match="seeds"):
        tg.emb.patches(s, _slide(), weights="x.pt", seeds=(0, 1), size=32)
    s.obs["sample_kind"] = "group"
    with pytest.raises(InputError, match="no pixel geometry"):
        tg.emb.patches(s, _slide(), size=32)
