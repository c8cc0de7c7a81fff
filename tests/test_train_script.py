"""The helpers of benchmarks/train_stardist_models.py that decide what a model is trained on."""

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import load_benchmark_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    return load_benchmark_script("train_stardist_models")


def test_crchisto_split_is_deterministic_disjoint_and_complete(script):
    tr, va = script.crchisto_split(70)
    assert (tr, va) == script.crchisto_split(70)
    assert len(va) == 10 and len(tr) == 60 and not set(tr) & set(va)
    assert sorted(tr + va) == list(range(70))
    # the validation images are the last 10 of the watershed fit's permutation (inside its part B)
    order = np.random.default_rng(0).permutation(70)
    assert set(va) == set(int(i) for i in order[-10:]) and set(va) <= set(int(i) for i in order[50:])


def test_rescale_moves_centres_with_the_image(script):
    img = np.zeros((100, 120, 3), np.uint8)
    img[39:42, 79:82] = 255  # a bright 3x3 dot centred on (x=80, y=40)
    (out,), (pts,) = script.rescale_to([img], [np.array([[80.0, 40.0]])], 0.55, 0.37)
    f = 0.55 / 0.37
    assert out.shape == (round(100 * f), round(120 * f), 3) and out.dtype == np.uint8
    g = out[..., 0].astype(float)
    yy, xx = np.indices(g.shape)
    cy, cx = (g * yy).sum() / g.sum(), (g * xx).sum() / g.sum()
    assert abs(cx - pts[0, 0]) < 0.3 and abs(cy - pts[0, 1]) < 0.3
    same = script.rescale_to([img], [np.array([[1.0, 2.0]])], 0.55, 0.55)
    assert same[0][0] is img


def test_research_use_model_is_never_written_into_the_package(script, capsys):
    with pytest.raises(SystemExit) as exc:
        script.main(["crchisto", "--out", str(REPO / "tissuegraph" / "seg" / "models")])
    assert exc.value.code == 2
    assert "must not go into the package" in capsys.readouterr().err


@pytest.mark.shared_data
def test_pseudo_labels_on_real_crchisto(script):
    from tissuegraph.datasets import shared_data_dir

    root = shared_data_dir()
    if root is None or not (Path(root) / "crchisto" / "train").is_dir():
        pytest.skip("../shared/data/crchisto not available")
    names, X, P = script.load_crchisto(Path(root), "train")
    Y = script.crchisto_pseudo_labels(X[:1], P[:1], script.CRC_MPP)
    ids = np.unique(Y[0])
    assert Y[0].shape == X[0].shape[:2]
    # one object per annotated centre (duplicates on one pixel aside), all within 5 um of it
    assert len(ids) - 1 >= 0.98 * len(P[0])
    import tissuegraph as tg

    cent = tg.seg.centroids_from_labels(Y[0])
    s = tg.seg.detection_scores(cent, P[0], radius_um=3.0, mpp=script.CRC_MPP)
    assert s["recall"] > 0.95
