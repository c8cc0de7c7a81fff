"""tg.emb.train_patches: training crops from the samples' own pixels, then the trained model and its twins."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

import tissuegraph as tg  # noqa: E402
from tissuegraph._errors import InputError  # noqa: E402

from .test_patches import _grid, _slide  # noqa: E402


def test_train_then_embed_with_twins_in_one_pass():
    s = _grid([(x, y, x + 64, y + 64) for x in (0, 64, 128) for y in (0, 64)])
    sl = _slide()
    enc, card = tg.emb.train_patches(s, sl, model="test_resnet", mpp=1.0, size=32, epochs=1, batch_size=6, seed=0,
                                     progress=False)
    assert card["objective"] == "simclr" and card["data"]["n_crops"] == 6 and len(card["data_sha256"]) == 64
    assert enc.card is card
    tg.emb.patches(s, sl, model=enc, seeds=(0, 1), mpp=1.0, size=32)
    reps = s.uns["representations"]
    trained, twin = reps["X_cnn_test_resnet_simclr"], reps["X_cnn_test_resnet_untrained_s0"]
    assert trained["trained"] and not twin["trained"] and trained["twin_group"] == twin["twin_group"]
    assert trained["params"]["card"]["objective"] == "simclr"
    assert not np.allclose(s.obsm["X_cnn_test_resnet_simclr"], s.obsm["X_cnn_test_resnet_untrained_s0"])
    # the twin equals a fresh random encoder of the same config
    tg.emb.patches(s, sl, model="test_resnet", seed=1, mpp=1.0, size=32, key_added="fresh")
    assert np.allclose(s.obsm["X_fresh"], s.obsm["X_cnn_test_resnet_untrained_s1"], atol=1e-6)

    s.obs["label"] = ["a", "b", "a", "b", "a", np.nan]
    enc2, card2 = tg.emb.train_patches(s, sl, model="test_resnet", objective="supervised", label="label", mpp=1.0,
                                       size=32, epochs=1, batch_size=5, seed=0, progress=False)
    assert card2["classes"] == ["a", "b"] and card2["data"]["n_crops"] == 5 and enc2.objective == "supervised"
    with pytest.raises(InputError, match="label="):
        tg.emb.train_patches(s, sl, model="test_resnet", objective="supervised", size=32)
