"""torchvision VisionTransformer state dicts load into timm ViTs (renamed to timm's layout), same outputs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
tv = pytest.importorskip("torchvision")

from tissuegraph._errors import InputError  # noqa: E402
from tissuegraph.models._weights import convert_torchvision_vit, match_state_dict  # noqa: E402
from tissuegraph.models.patch import PatchEncoder  # noqa: E402

# a small torchvision ViT: 32 px images, 8 px patches, width 32, 2 blocks, 4 heads, MLP 64, 5 classes
IMG, PATCH, WIDTH, DEPTH, HEADS, MLP, CLASSES = 32, 8, 32, 2, 4, 64, 5
# the same architecture in timm (vit_base_patch16_224 with its sizes overridden)
TIMM_KW = dict(img_size=IMG, patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS,
               mlp_ratio=MLP / WIDTH)


def _torchvision_vit(seed: int = 0):
    from torchvision.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    m = VisionTransformer(image_size=IMG, patch_size=PATCH, num_layers=DEPTH, num_heads=HEADS, hidden_dim=WIDTH,
                          mlp_dim=MLP, num_classes=CLASSES)
    # torchvision zero-initialises the head and the class token: give every tensor random values, so that a
    # wrongly mapped tensor cannot go unnoticed
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
    return m.eval()


def _tv_features(m, x):
    """torchvision's class-token embedding (after the final LayerNorm, before the head)."""
    h = m._process_input(x)
    h = torch.cat([m.class_token.expand(h.shape[0], -1, -1), h], dim=1)
    return m.encoder(h)[:, 0]


X = torch.rand(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))


def test_names_map_one_to_one_onto_timm():
    src = _torchvision_vit()
    state = src.state_dict()
    conv = convert_torchvision_vit(state)
    target = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=CLASSES, **TIMM_KW).state_dict()
    assert set(conv) == set(target)
    assert all(conv[k].shape == target[k].shape for k in target)
    # a few names by hand
    assert torch.equal(conv["cls_token"], state["class_token"])
    assert torch.equal(conv["blocks.1.attn.qkv.weight"], state["encoder.layers.encoder_layer_1.self_attention.in_proj_weight"])
    assert torch.equal(conv["blocks.0.mlp.fc2.bias"], state["encoder.layers.encoder_layer_0.mlp.3.bias"])
    assert torch.equal(conv["norm.weight"], state["encoder.ln.weight"])
    # the older torchvision MLP names (mlp.linear_1 / linear_2) map to the same keys
    old = {k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): v for k, v in state.items()}
    assert set(convert_torchvision_vit(old)) == set(conv)


def test_timm_vit_with_converted_weights_gives_torchvision_outputs(tmp_path):
    src = _torchvision_vit(seed=3)
    # with the classifier: timm's logits equal torchvision's
    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=CLASSES, **TIMM_KW).eval()
    model.load_state_dict(match_state_dict(model, src.state_dict(), where="tv"), strict=True)
    with torch.no_grad():
        assert torch.allclose(model(X), src(X), atol=1e-4)
    # through PatchEncoder from a file (num_classes=0: the head is dropped): the class-token embedding
    path = tmp_path / "vit_tv.pth"
    torch.save({"model": src.state_dict()}, path)
    enc = PatchEncoder("vit_base_patch16_224", img_size=IMG, weights=path, model_kwargs=TIMM_KW)
    with torch.no_grad():
        want = _tv_features(src, (X - enc.mean) / enc.std)
        got = enc(X)
    assert got.shape == (3, WIDTH)
    assert torch.allclose(got, want, atol=1e-4)
    assert enc.objective == "pretrained"


def test_torchvision_vit_problems_are_named(tmp_path):
    src = _torchvision_vit()
    state = src.state_dict()
    # a missing tensor is named in timm's name
    miss = {k: v for k, v in state.items() if k != "encoder.layers.encoder_layer_1.ln_2.weight"}
    torch.save(miss, tmp_path / "miss.pt")
    with pytest.raises(InputError, match=r"missing keys 1 \('blocks.1.norm2.weight'\).*torchvision VisionTransformer"):
        PatchEncoder("vit_base_patch16_224", img_size=IMG, weights=tmp_path / "miss.pt", model_kwargs=TIMM_KW)
    # an extra tensor is named as in the file
    extra = dict(state)
    extra["encoder.layers.encoder_layer_0.extra.weight"] = torch.zeros(2)
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(InputError, match=r"unexpected keys 1 \('encoder.layers.encoder_layer_0.extra.weight'\)"):
        PatchEncoder("vit_base_patch16_224", img_size=IMG, weights=tmp_path / "extra.pt", model_kwargs=TIMM_KW)
    # a wider timm ViT: shape mismatches, with the file's size in the message
    torch.save(state, tmp_path / "ok.pt")
    wide = dict(TIMM_KW, embed_dim=48, num_heads=4, mlp_ratio=2.0)
    with pytest.raises(InputError, match=r"shape mismatch.*cls_token: file \(1, 1, 32\) vs model \(1, 1, 48\)"
                                         r".*width 32, 2 blocks, patch 8"):
        PatchEncoder("vit_base_patch16_224", img_size=IMG, weights=tmp_path / "ok.pt", model_kwargs=wide)
    # into a CNN: not converted, and the message says what the file is
    with pytest.raises(InputError, match="torchvision VisionTransformer"):
        PatchEncoder("resnet18", weights=tmp_path / "ok.pt")
