"""Offline training of patch encoders: SimCLR and supervised fine-tuning (seeded, logged, card-ready)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from tissuegraph._errors import InputError  # noqa: E402
from tissuegraph.models._patch_train import augment, train_patch_simclr, train_patch_supervised  # noqa: E402
from tissuegraph.models.patch import PatchEncoder  # noqa: E402

ARCH = "test_resnet"  # timm's tiny ResNet for tests (the CPU here is shared)


def _images(n=24, size=40, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 250, size=(n, 1, 1, 3))
    noise = rng.integers(-30, 30, size=(n, size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _embed(enc, x):
    with torch.no_grad():
        return enc(x).numpy()


def test_augment_is_seeded_and_keeps_range():
    x = torch.from_numpy(_images(4)).permute(0, 3, 1, 2).float() / 255
    a = augment(x, torch.Generator().manual_seed(1), size=24)
    b = augment(x, torch.Generator().manual_seed(1), size=24)
    c = augment(x, torch.Generator().manual_seed(2), size=24)
    assert a.shape == (4, 3, 24, 24) and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # no jitter, no blur, full crop of a square image with aspect 1: a pure flip/rot90 of the resampled image
    const = torch.full((2, 3, 16, 16), 0.4)
    out = augment(const, torch.Generator().manual_seed(0), size=16, stain_jitter=0.0, blur_p=0.0)
    assert torch.allclose(out, const, atol=1e-6)
    # HED jitter changes the colour of a constant image, but not into a non-constant one
    out = augment(const, torch.Generator().manual_seed(0), size=16, stain_jitter=0.1, blur_p=0.0)
    assert not torch.allclose(out, const, atol=1e-3)
    assert torch.allclose(out, out[:, :, :1, :1].expand_as(out), atol=1e-6)


def test_simclr_seeded_logged_and_different_from_its_twin():
    imgs = _images(12, 32)
    x = torch.from_numpy(imgs[:6]).permute(0, 3, 1, 2).float() / 255
    kw = dict(model=ARCH, size=24, epochs=2, batch_size=6, seed=0)
    e1, card = train_patch_simclr(imgs, **kw)
    e2, _ = train_patch_simclr(imgs, **kw)
    e3, _ = train_patch_simclr(imgs, **{**kw, "seed": 1})
    assert e1.parameters_sha256() == e2.parameters_sha256()
    assert np.array_equal(_embed(e1, x), _embed(e2, x))
    assert e1.parameters_sha256() != e3.parameters_sha256()
    twin = PatchEncoder(ARCH, seed=0, img_size=24)
    assert not np.allclose(_embed(e1, x), _embed(twin, x))
    assert e1.objective == "simclr" and e1.config()["objective"] == "simclr" and not e1.training
    assert len(card["loss_log"]) == 2 and len(card["step_losses"]) == 2 * 2 and np.isfinite(card["loss_log"]).all()
    assert card["architecture"]["builder"] == "patch" and card["n_images"] == 12
    json.dumps(card)  # card-ready
    # the trained encoder rebuilds from its config + state dict
    again = PatchEncoder.from_config(card["architecture"]["kwargs"])
    again.load_state_dict(e1.state_dict())
    assert np.array_equal(_embed(again, x), _embed(e1, x))


def test_supervised_learns_an_easy_label():
    rng = np.random.default_rng(0)
    n = 16
    y = np.arange(n) % 2
    imgs = np.where(y[:, None, None, None] == 1, 200, 60) + rng.integers(-20, 20, size=(n, 24, 24, 3))
    imgs = np.clip(imgs, 0, 255).astype(np.uint8)
    enc, card = train_patch_supervised(imgs, y, model=ARCH, size=24, epochs=4, batch_size=8, lr=3e-3, seed=0)
    assert enc.objective == "supervised" and card["n_classes"] == 2
    assert card["loss_log"][-1] < card["loss_log"][0]
    assert card["metrics"]["train_accuracy"][-1] >= 0.75
    with pytest.raises(InputError, match="2 classes"):
        train_patch_supervised(imgs, np.zeros(n, int), model=ARCH, size=32, epochs=1)
    with pytest.raises(InputError, match="labels has"):
        train_patch_supervised(imgs, y[:5], model=ARCH, size=32, epochs=1)
