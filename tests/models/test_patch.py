"""Patch encoders (tg.models.PatchEncoder): seeds, layers, channels and weights from local files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from tissuegraph._errors import InputError, WeightsUnavailableError  # noqa: E402
from tissuegraph.models.patch import PatchEncoder  # noqa: E402

X = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def _out(enc, x=X, **kw):
    with torch.no_grad():
        return enc(x) if not kw else enc.embed(x, **kw)


def test_same_seed_identical_different_seeds_differ():
    a, b, c = PatchEncoder("resnet18", seed=0), PatchEncoder("resnet18", seed=0), PatchEncoder("resnet18", seed=1)
    assert torch.equal(_out(a), _out(b))
    assert a.parameters_sha256() == b.parameters_sha256() != c.parameters_sha256()
    assert not torch.allclose(_out(a), _out(c))
    # the global RNG is untouched by the seeded initialisation
    torch.manual_seed(123)
    r1 = torch.rand(3)
    torch.manual_seed(123)
    PatchEncoder("resnet18", seed=5)
    assert torch.equal(torch.rand(3), r1)


def test_layers_and_normalisation():
    enc = PatchEncoder("resnet18", seed=0)
    assert enc.n_blocks == 5 and enc.num_features == 512
    z0, z2, zf, zm2, z4 = _out(enc, layers=[0, 2, -1, -2, 4])
    assert z0.shape == (2, 64) and z2.shape == (2, 128) and zm2.shape == (2, 256)
    # the last block averaged over positions is the ResNet's own (average-pooled) embedding
    assert torch.allclose(z4, zf, atol=1e-6)
    # intermediate block = the timm feature map of that stage, averaged (independent path: features_only)
    import timm

    torch.manual_seed(0)
    ref = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(2,))
    ref.load_state_dict({k: v for k, v in enc.model.state_dict().items() if not k.startswith("fc.")}, strict=False)
    ref.eval()
    with torch.no_grad():
        fmap = ref((X - enc.mean) / enc.std)[0]
    assert torch.allclose(fmap.mean(dim=(2, 3)), z2, atol=1e-5)
    # ImageNet statistics by default; the input is normalised inside
    assert np.allclose(enc.config()["mean"], [0.485, 0.456, 0.406])
    assert np.allclose(enc.config()["std"], [0.229, 0.224, 0.225])
    with pytest.raises(InputError, match="layer"):
        PatchEncoder("resnet18", layer=7)


def test_vit_and_channels_and_config_roundtrip():
    v = PatchEncoder("vit_tiny_patch16_224", img_size=64, seed=0)
    assert v.family == "vit" and v.n_blocks == 12
    zf, z3 = _out(v, layers=[-1, 3])
    assert zf.shape == (2, 192) and z3.shape == (2, 192)
    assert not torch.allclose(zf, z3)
    for c in (1, 4, 5):
        enc = PatchEncoder("resnet18", in_chans=c, seed=0)
        assert _out(enc, torch.rand(1, c, 32, 32)).shape == (1, 512)
        assert len(enc.config()["mean"]) == c
    with pytest.raises(InputError, match="channels"):
        _out(PatchEncoder("resnet18", in_chans=4), torch.rand(1, 3, 32, 32))
    again = PatchEncoder.from_config(v.config())
    assert again.parameters_sha256() == v.parameters_sha256() and torch.equal(_out(again), zf)


def test_torchvision_resnet_state_dict_loads_into_timm(tmp_path):
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(7)
    ref = tv.models.resnet18(weights=None)
    ref.fc = torch.nn.Identity()  # torchvision's pooled features = the encoder's embedding
    ref.eval()
    full = tv.models.resnet18(weights=None).state_dict()  # with fc.* (dropped on load)
    full.update({k: v for k, v in ref.state_dict().items()})
    path = tmp_path / "tv_resnet18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in full.items()}, "epoch": 3}, path)
    enc = PatchEncoder("resnet18", weights=path, seed=99)
    with torch.no_grad():
        want = ref((X - enc.mean) / enc.std)
    assert torch.allclose(_out(enc), want, atol=1e-5)
    assert enc.objective == "pretrained" and len(enc.weights_sha256) == 64


def test_safetensors_timm_layout_and_channel_adaptation(tmp_path):
    from safetensors.torch import save_file

    src = PatchEncoder("resnet18", seed=3)
    path = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(path))
    enc = PatchEncoder("resnet18", weights=str(path), seed=0)
    assert enc.parameters_sha256() == src.parameters_sha256()
    assert torch.equal(_out(enc), _out(src))
    # 3-channel weights into a 1-channel encoder: timm's adapt_input_conv (sum over RGB for in_chans=1)
    one = PatchEncoder("resnet18", in_chans=1, weights=path)
    w3 = src.model.state_dict()["conv1.weight"]
    assert torch.allclose(one.model.state_dict()["conv1.weight"], w3.sum(dim=1, keepdim=True))


def test_vit_state_dict_roundtrip(tmp_path):
    src = PatchEncoder("vit_tiny_patch16_224", img_size=64, seed=2)
    path = tmp_path / "vit.pt"
    torch.save({"model": src.model.state_dict()}, path)
    enc = PatchEncoder("vit_tiny_patch16_224", img_size=64, weights=path)
    assert torch.equal(_out(enc), _out(src))


def test_missing_extra_and_wrong_shape_keys_are_named(tmp_path):
    state = PatchEncoder("resnet18", seed=0).model.state_dict()
    miss = dict(state)
    del miss["layer3.1.bn2.weight"]
    torch.save(miss, tmp_path / "miss.pt")
    with pytest.raises(InputError, match=r"missing keys 1 \('layer3.1.bn2.weight'\)"):
        PatchEncoder("resnet18", weights=tmp_path / "miss.pt")
    extra = dict(state)
    extra["projector.0.weight"] = torch.zeros(3, 3)
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(InputError, match=r"unexpected keys 1 \('projector.0.weight'\)"):
        PatchEncoder("resnet18", weights=tmp_path / "extra.pt")
    enc = PatchEncoder("resnet18", weights=tmp_path / "extra.pt", strict=False)  # partial loads allowed
    assert enc.parameters_sha256() == PatchEncoder("resnet18", seed=0).parameters_sha256()
    wrong = dict(state)
    wrong["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(InputError, match=r"layer1.0.conv1.weight: file \(64, 64, 1, 1\) vs model \(64, 64, 3, 3\)"):
        PatchEncoder("resnet18", weights=tmp_path / "wrong.pt", strict=False)
    # resnet50 weights into resnet18: many of each, counted
    with pytest.raises(InputError, match=r"unexpected keys \d+ \("):
        torch.save(PatchEncoder("resnet50").model.state_dict(), tmp_path / "r50.pt")
        PatchEncoder("resnet18", weights=tmp_path / "r50.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {"conv1.weight": _Evil()}}, f)
    with pytest.raises(InputError, match="weights_only=True"):
        PatchEncoder("resnet18", weights=path)
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "module.pt")  # a whole pickled module
    with pytest.raises(InputError, match="pickled"):
        PatchEncoder("resnet18", weights=tmp_path / "module.pt")


def test_no_network_pretrained_is_a_clear_error(tmp_path, monkeypatch):
    import tissuegraph as tg

    monkeypatch.setattr(tg.settings, "cache_dir", tmp_path)
    with pytest.raises(WeightsUnavailableError, match="never downloads"):
        PatchEncoder("resnet18", weights="imagenet")
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        PatchEncoder("resnet18", weights=tmp_path / "nope.safetensors")
    with pytest.raises(WeightsUnavailableError):
        PatchEncoder("hf-hub:MahmoodLab/UNI")
    # a file in the cache folder is what 'pretrained' means offline
    (tmp_path / "weights").mkdir()
    torch.save(PatchEncoder("resnet18", seed=4).model.state_dict(), tmp_path / "weights" / "resnet18.pth")
    enc = PatchEncoder("resnet18", weights="pretrained")
    assert enc.parameters_sha256() == PatchEncoder("resnet18", seed=4).parameters_sha256()
    with pytest.raises(InputError, match="Unknown timm architecture"):
        PatchEncoder("resnet_nonexistent")


def test_untrained_resnet_twins_have_live_residual_branches():
    """timm zero-initialises the last norm gain of each residual block (a training trick); an untrained twin must
    be a random network, so PatchEncoder turns that off (recorded), unless the user asks for it."""
    from tissuegraph.models import PatchEncoder

    def zero_gains(enc):
        return [n for n, p in enc.model.named_parameters() if p.dim() == 1 and n.endswith("weight")
                and float(p.detach().abs().sum()) == 0.0]

    enc = PatchEncoder("resnet18", seed=0)
    assert zero_gains(enc) == [] and enc.model_kwargs == {"zero_init_last": False}
    timm_default = PatchEncoder("resnet18", seed=0, model_kwargs={"zero_init_last": True})
    assert len(zero_gains(timm_default)) == 8  # bn2 of each of the 8 basic blocks
    # the residual branches change the embedding
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert not torch.allclose(enc(x), timm_default(x))
    # architectures without the option are built as before
    vit = PatchEncoder("vit_tiny_patch16_224", img_size=32, seed=0)
    assert "zero_init_last" not in vit.model_kwargs
