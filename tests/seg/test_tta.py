"""Test-time augmentation of the StarDist backend: grid alignment and ray permutation are exact."""

from __future__ import annotations

import numpy as np
import pytest

from tissuegraph._errors import InputError
from tissuegraph.seg import _stardist as sd


def _equivariant_net(grid, n_rays, reach=3):
    """A stand-in network that commutes exactly with flips and transposes: the probability map samples
    the input at the grid points, and ray ``k`` reads the input ``reach`` px away in direction k (its
    offset rounded to whole pixels, symmetric under the dihedral group when n_rays is a multiple of 8).
    """
    phi = 2 * np.pi * np.arange(n_rays) / n_rays
    off = np.stack([np.round(reach * np.sin(phi)), np.round(reach * np.cos(phi))], 1).astype(int)

    def net(z):
        img = z[..., 0]
        pad = np.pad(img, reach, mode="reflect")
        gy, gx = grid
        ys = np.arange(0, img.shape[0], gy)
        xs = np.arange(0, img.shape[1], gx)
        prob = img[np.ix_(ys, xs)]
        dist = np.stack([pad[np.ix_(ys + reach + dy, xs + reach + dx)] for dy, dx in off], -1)
        return prob, dist

    return net


@pytest.mark.parametrize("grid", [(1, 1), (2, 2), (4, 4)])
@pytest.mark.parametrize("n", [2, 4, 8])
def test_tta_of_an_equivariant_net_is_the_plain_prediction(grid, n):
    rng = np.random.default_rng(0)
    x = rng.random((64, 96, 1)).astype(np.float32)
    net = _equivariant_net(grid, 16)
    prob0, dist0 = net(x)
    prob, dist = sd._tta_predict(net, x, 16, n)
    assert prob.shape == prob0.shape and dist.shape == dist0.shape
    # away from the border (where mirrored inputs see reflected padding) every transform agrees exactly
    b = 4
    inner = (slice(b, -b), slice(b, -b))
    np.testing.assert_allclose(prob[inner], prob0[inner], atol=1e-6)
    np.testing.assert_allclose(dist[inner], dist0[inner], atol=1e-6)


def test_tta_averages_over_the_mirror_images():
    """A net that is *not* equivariant (it sees only the left half of its input as bright) gives the
    average of the mirrored predictions, not the plain one."""
    def net(z):
        prob = np.zeros(z.shape[:2], np.float32)
        prob[:, : z.shape[1] // 2] = 1.0
        return prob, np.ones(z.shape[:2] + (8,), np.float32)

    x = np.zeros((32, 32, 1), np.float32)
    prob, _ = sd._tta_predict(net, x, 8, 2)
    # identity: 1 on columns 0..15; the mirror (pixel i <-> 32 - i, so the grid stays aligned): 1 on
    # columns 17..31; column 0 is covered by the identity only, column 16 is dark in both
    np.testing.assert_allclose(prob[:, 1:16], 0.5)
    np.testing.assert_allclose(prob[:, 17:], 0.5)
    assert np.all(prob[:, 0] == 1.0) and np.all(prob[:, 16] == 0.0)


def test_ray_permutations_are_mirrors():
    n = 32
    phi = 2 * np.pi * np.arange(n) / n
    dy, dx = np.sin(phi), np.cos(phi)
    for how, (my, mx) in {"x": (dy, -dx), "y": (-dy, dx), "t": (dx, dy)}.items():
        perm = sd._ray_permutation(n, how)
        np.testing.assert_allclose(np.sin(phi[perm]), my, atol=1e-12)
        np.testing.assert_allclose(np.cos(phi[perm]), mx, atol=1e-12)
        np.testing.assert_array_equal(perm[perm], np.arange(n))  # an involution


def test_tta_segments_like_the_plain_model(keras_home, nuclei_2d):
    """With the shipped fluorescence model on StarDist's packaged real image, every mirrored prediction
    mapped back agrees with the plain one (grid and rays aligned), and the averaged maps segment as
    well as the plain ones."""
    from stardist.matching import matching

    img, mask = nuclei_2d
    folder = sd.SHIPPED_DIR / sd.DEFAULT_MODELS["fluorescence"]
    plain = sd.StarDistBackend(folder)
    tta = sd.StarDistBackend(folder, tta=True)
    assert tta.tta == 8 and "tta=8" in repr(tta)
    r0, r8 = plain.predict(img), tta.predict(img)
    assert r8.prob.shape == r0.prob.shape and r8.dist.shape == r0.dist.shape
    inner = (slice(4, -4), slice(4, -4))
    assert np.corrcoef(r0.prob[inner].ravel(), r8.prob[inner].ravel())[0, 1] > 0.98
    on = r0.prob[inner] > 0.5  # a wrong ray permutation would be off by several px here
    assert np.abs(r0.dist[inner][on] - r8.dist[inner][on]).mean() < 1.0 < r0.dist[inner][on].mean()
    f0 = matching(mask, plain.postprocess(r0)[0], thresh=0.5).f1
    f8 = matching(mask, tta.postprocess(r8)[0], thresh=0.5).f1
    assert f0 > 0.9 and f8 > 0.9 and abs(f8 - f0) < 0.03, (f0, f8)


def test_tta_argument_is_checked(tiny_stardist):
    for bad in (3, 0, "yes", 16):
        with pytest.raises(InputError, match="tta must be one of"):
            sd.StarDistBackend(tiny_stardist.folder, tta=bad)
    assert sd.StarDistBackend(tiny_stardist.folder, tta=False).tta == 1
    assert sd.StarDistBackend(tiny_stardist.folder, tta=4).tta == 4


def test_cli_segment_with_tta(keras_home, nuclei_2d, tmp_path, capsys):
    import tifffile

    from tissuegraph.cli import main

    img, mask = nuclei_2d
    src = tmp_path / "nuclei.tif"
    tifffile.imwrite(src, img)
    out = tmp_path / "labels.tif"
    with pytest.warns(UserWarning, match="µm/px"):
        assert main(["segment", str(src), "-o", str(out), "--method", "stardist", "--model",
                     str(sd.SHIPPED_DIR / sd.DEFAULT_MODELS["fluorescence"]), "--tta", "2",
                     "--no-progress"]) == 0
    from stardist.matching import matching

    assert matching(mask, tifffile.imread(out), thresh=0.5).f1 > 0.85
    # --tta means nothing to the watershed: a clear one-line error, exit code 2
    with pytest.warns(UserWarning, match="µm/px"):
        assert main(["segment", str(src), "-o", str(tmp_path / "w.tif"), "--method", "watershed", "--tta", "8",
                     "--no-progress"]) == 2
    assert "--tta applies to --method stardist" in capsys.readouterr().err


def test_model_folder_sets_the_default_tta_and_the_choice_script_writes_it(tiny_stardist, tmp_path):
    """crchisto_inner_val.py --write-choice stores the chosen (tta, prob_thresh) in a model folder; the
    backend then uses them unless told otherwise."""
    import json
    import shutil

    from tests.helpers import load_benchmark_script

    folder = tmp_path / "model"
    shutil.copytree(tiny_stardist.folder, folder)
    mod = load_benchmark_script("crchisto_inner_val")
    old_prob = json.loads((folder / "thresholds.json").read_text())["prob"]
    mod._write_choice(folder, dict(tta=4, prob_thresh=0.35, model_prob_thresh=old_prob, f1=0.8,
                                   precision=0.8, recall=0.8))
    be = sd.StarDistBackend(folder)
    assert be.tta == 4 and be.prob_thresh == pytest.approx(0.35)
    info = json.loads((folder / "tissuegraph.json").read_text())
    assert info["thresholds_choice"]["previous_prob"] == pytest.approx(old_prob)
    assert sd.StarDistBackend(folder, tta=1).tta == 1  # an explicit argument wins
    # the model's own threshold (prob_thresh 'model') is kept as it is
    mod._write_choice(folder, dict(tta=1, prob_thresh="model", model_prob_thresh=0.35, f1=0.8,
                                   precision=0.8, recall=0.8))
    assert sd.StarDistBackend(folder).prob_thresh == pytest.approx(0.35)


def test_tta_on_an_image_larger_than_one_network_pass(keras_home, nuclei_2d):
    """Above 2048 px StarDist tiles the network input itself; each mirrored pass goes through that path
    and its maps still line up (padded to the network's divisor)."""
    from stardist.matching import matching

    img, _ = nuclei_2d
    big = np.concatenate([img] * 5, axis=0)[:2112, :160]
    folder = sd.SHIPPED_DIR / sd.DEFAULT_MODELS["fluorescence"]
    plain, tta = sd.StarDistBackend(folder), sd.StarDistBackend(folder, tta=2)
    r = tta.predict(big)  # each mirrored pass goes through StarDist's tiled model.predict
    assert max(r.prob.shape) * plain.grid[0] > sd._MAX_TILE_PX

    # reference 1: the same mirrors averaged by hand, each pass one untiled call of the Keras network
    # on the whole (padded) input, so tiling, padding and grid alignment are checked against a path
    # that has none of them
    x = tta.normalize(big)
    pad = [(0, (-n) % d) for n, d in zip(x.shape[:2], tta._div_by())] + [(0, 0)]
    xp = np.pad(x, pad, mode="reflect")

    def whole(z):
        out = tta.model.keras_model([np.ascontiguousarray(z[None])], training=False)
        return np.asarray(out[0])[0, ..., 0], np.asarray(out[1])[0]

    # the mirror that keeps the network's grid on the original one: input column i <- column W - i
    # (one reflected column beyond the end), so map cell j of the mirror is original cell M - j
    W = xp.shape[1]
    xq = np.concatenate([xp, xp[:, W - 2:W - 1]], axis=1)
    fp, fd = whole(np.ascontiguousarray(xq[:, W:0:-1]))
    p0, d0 = whole(xp)
    M = p0.shape[1]
    assert M * tta.grid[1] == W
    p1 = np.zeros_like(p0)
    d1 = np.zeros_like(d0)
    p1[:, 1:] = fp[:, ::-1][:, :M - 1]
    d1[:, 1:] = fd[:, ::-1][:, :M - 1][..., sd._ray_permutation(tta.n_rays, "x")]
    ref_p, ref_d = (p0 + p1) / 2, (d0 + d1) / 2
    assert r.prob.shape == ref_p.shape and r.dist.shape == ref_d.shape
    # away from the padded border (where the two mirrors see different padding) the maps agree to the
    # precision StarDist's overlapping tiles leave (a wrong alignment would be off by whole nuclei)
    gy, gx = tta.grid
    inner = (slice(4, big.shape[0] // gy - 4), slice(4, big.shape[1] // gx - 4))  # map cells
    assert np.abs(r.prob[inner] - ref_p[inner]).mean() < 0.01
    assert np.corrcoef(r.prob[inner].ravel(), ref_p[inner].ravel())[0, 1] > 0.995
    on = ref_p[inner] > 0.5
    assert np.abs(r.dist[inner][on] - ref_d[inner][on]).mean() < 0.1 * ref_d[inner][on].mean()

    # reference 2: the plain prediction (StarDist's own tiling and padding): the averaged maps are close
    # to it and segment the same nuclei
    r0 = plain.predict(big)
    assert np.corrcoef(r0.prob[inner].ravel(), r.prob[inner].ravel())[0, 1] > 0.98
    labels, scores = tta.postprocess(r)
    assert labels.shape == big.shape and len(scores) == labels.max()
    assert matching(plain.postprocess(r0)[0], labels, thresh=0.5).f1 > 0.9
