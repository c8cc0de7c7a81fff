"""Loading weights from local files only: state dicts (``torch.load(..., weights_only=True)``) or safetensors.

No download ever happens here: a pretrained network is a file the user keeps on disk (e.g. a pathology
foundation model saved in timm form) and passes as ``weights='/path/model.safetensors'``.

Accepted layouts
----------------
- a flat state dict ``{name: tensor}`` (timm or torchvision names), or a checkpoint dict holding one
  under ``'state_dict'``, ``'model'``, ``'model_state_dict'``, ``'module'``, ``'teacher'`` or ``'student'``;
- key prefixes shared by every key (``module.`` from DataParallel, ``model.``, ``_orig_mod.`` from
  ``torch.compile``, ``backbone.``, ``encoder.``, ``trunk.``) are stripped;
- the classifier of the source (``fc.*`` of torchvision/timm ResNets, ``head.*`` of ViTs, ...) is dropped
  when the encoder has no classifier (``num_classes=0``); timm's own ``checkpoint_filter_fn`` of the
  architecture is applied (it converts e.g. other ViT layouts and resamples position embeddings to the
  encoder's image size);
- torchvision ResNet names are the same as timm's (``conv1``, ``bn1``, ``layerN.i.convK``,
  ``downsample.0/1``), so a torchvision ResNet state dict loads into the timm model of the same depth;
- a torchvision ``VisionTransformer`` state dict (``vit_b_16``, ``vit_l_16``, ...: ``class_token``,
  ``conv_proj``, ``encoder.pos_embedding``, ``encoder.layers.encoder_layer_{i}.*``, ``encoder.ln``,
  ``heads.head``) is renamed to timm's ViT layout (``cls_token``, ``patch_embed.proj``, ``pos_embed``,
  ``blocks.{i}.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2``, ``norm``, ``head``) when it is loaded into
  a timm ViT of the same size (``vit_b_16`` = ``vit_base_patch16_224``, ``vit_l_16`` =
  ``vit_large_patch16_224``, ``vit_h_14`` = ``vit_huge_patch14_224`` ...); both use the same
  pre-norm blocks, LayerNorm eps 1e-6, exact GELU and class-token pooling, so the outputs agree;
- a first convolution with 3 input channels loaded into an encoder with another ``in_chans`` is adapted
  with timm's ``adapt_input_conv`` (channel mean repeated, as timm does for pretrained weights).

Anything else (a missing key, an unexpected key, a tensor of the wrong shape) is an :class:`InputError`
that names the first few keys and the count. A file that holds pickled Python objects other than tensors
is refused (``weights_only=True``): convert it to safetensors in a trusted environment.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .._errors import InputError, WeightsUnavailableError
from .._logging import logger

__all__ = ["read_state_dict", "file_sha256", "state_dict_sha256", "match_state_dict", "PRETRAINED_WORDS",
           "convert_torchvision_vit", "is_torchvision_vit"]

_WRAPPERS = ("state_dict", "model", "model_state_dict", "module", "teacher", "student", "net", "network")
_PREFIXES = ("module.", "model.", "_orig_mod.", "backbone.", "encoder.", "trunk.", "timm_model.")
PRETRAINED_WORDS = ("pretrained", "imagenet", "timm", "default", "download", "hub")
_STATE_EXT = (".pt", ".pth", ".bin", ".ckpt", ".tar")


def file_sha256(path: str | os.PathLike, chunk: int = 8 << 20) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def state_dict_sha256(state: dict) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and values (in name order): equal weights, equal hash."""
    import torch

    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().to("cpu").contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _describe_keys(keys, n: int = 5) -> str:
    keys = sorted(keys)
    head = ", ".join(repr(k) for k in keys[:n])
    return f"{len(keys)} ({head}{', ...' if len(keys) > n else ''})"


def read_state_dict(path: str | os.PathLike) -> dict:
    """Read a state dict from a local ``.safetensors`` or torch file (``weights_only=True``), unwrapped.

    Raises :class:`WeightsUnavailableError` for a missing file and :class:`InputError` for a file that is
    not a state dict of tensors (pickled objects are refused).
    """
    import torch

    p = Path(os.fspath(path)).expanduser()
    if not p.is_file():
        raise WeightsUnavailableError(
            f"Weights file {str(p)!r} does not exist. tissuegraph never downloads weights: pass the path of "
            "a local state dict (.pt/.pth/.bin) or .safetensors file, e.g. weights='/data/models/uni.safetensors'.")
    if p.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(p), device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError / OSError types
            raise InputError(f"{p} is not a readable safetensors file ({exc}).") from exc
    else:
        try:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as exc:
            import pickle

            if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc).lower() or \
                    "unsupported global" in str(exc).lower():
                raise InputError(
                    f"{p} contains pickled Python objects, not only tensors; tissuegraph loads weights with "
                    "torch.load(..., weights_only=True) and refuses arbitrary objects (loading them would run "
                    "code). In an environment you trust, save model.state_dict() with torch.save or "
                    "safetensors.torch.save_file and pass that file.") from exc
            raise InputError(f"{p} is not a readable torch state dict ({type(exc).__name__}: {exc}).") from exc
    return unwrap_state_dict(state, str(p))


def unwrap_state_dict(state: Any, where: str = "weights") -> dict:
    """Find the tensor dict inside a checkpoint (``state_dict``/``model``/... wrappers) and strip prefixes."""
    import torch

    for _ in range(4):
        if isinstance(state, dict) and state and not any(isinstance(v, torch.Tensor) for v in state.values()):
            inner = next((state[k] for k in _WRAPPERS if k in state and isinstance(state[k], dict)), None)
            if inner is None:
                break
            state = inner
        else:
            break
    if not isinstance(state, dict) or not state:
        raise InputError(f"{where} does not hold a state dict (a dict of tensors); found "
                         f"{type(state).__name__}{' (empty)' if isinstance(state, dict) else ''}.")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputError(f"{where} holds no tensors (keys: {_describe_keys(state.keys())}).")
    changed = True
    while changed:
        changed = False
        for pre in _PREFIXES:
            if all(k.startswith(pre) for k in tensors):
                tensors = {k[len(pre):]: v for k, v in tensors.items()}
                changed = True
    return tensors


_TV_VIT_BLOCK = {"ln_1": "norm1", "ln_2": "norm2", "self_attention.in_proj_weight": "attn.qkv.weight",
                 "self_attention.in_proj_bias": "attn.qkv.bias", "self_attention.out_proj": "attn.proj",
                 "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2", "mlp.linear_1": "mlp.fc1", "mlp.linear_2": "mlp.fc2"}
_TV_VIT_NAMES = {(768, 12, 16): "vit_base_patch16_224", (768, 12, 32): "vit_base_patch32_224",
                 (1024, 24, 16): "vit_large_patch16_224", (1024, 24, 32): "vit_large_patch32_224",
                 (1280, 32, 14): "vit_huge_patch14_224"}


def is_torchvision_vit(state: dict) -> bool:
    """Whether ``state`` has torchvision's ``VisionTransformer`` layout."""
    return "class_token" in state and "conv_proj.weight" in state and "encoder.pos_embedding" in state


def torchvision_vit_summary(state: dict) -> str:
    """``'width W, D blocks, patch P (timm: name)'`` of a torchvision ViT state dict, for messages."""
    import re

    width = int(state["class_token"].shape[-1])
    depth = len({m.group(1) for k in state for m in [re.match(r"encoder\.layers\.encoder_layer_(\d+)\.", k)] if m})
    patch = int(state["conv_proj.weight"].shape[-1])
    name = _TV_VIT_NAMES.get((width, depth, patch))
    return f"width {width}, {depth} blocks, patch {patch}" + (f" (timm: {name!r})" if name else "")


def convert_torchvision_vit(state: dict) -> dict:
    """Rename a torchvision ``VisionTransformer`` state dict to timm's ``VisionTransformer`` names.

    ``class_token`` -> ``cls_token``; ``conv_proj`` -> ``patch_embed.proj``; ``encoder.pos_embedding`` ->
    ``pos_embed``; ``encoder.layers.encoder_layer_{i}.ln_1/ln_2`` -> ``blocks.{i}.norm1/norm2``;
    ``.self_attention.in_proj_weight/bias`` -> ``.attn.qkv.weight/bias`` (q, k, v stacked in the same
    order); ``.self_attention.out_proj`` -> ``.attn.proj``; ``.mlp.0/3`` (or the older ``.mlp.linear_1/2``)
    -> ``.mlp.fc1/fc2``; ``encoder.ln`` -> ``norm``; ``heads.head`` -> ``head``. Tensors are unchanged
    (same shapes in both layouts). Keys it does not know (e.g. ``heads.pre_logits``) keep their names, so
    they surface as unexpected keys.
    """
    import re

    out = {}
    block = re.compile(r"encoder\.layers\.encoder_layer_(\d+)\.(.+)")
    for k, v in state.items():
        new = k
        if k == "class_token":
            new = "cls_token"
        elif k.startswith("conv_proj."):
            new = "patch_embed.proj." + k[len("conv_proj."):]
        elif k == "encoder.pos_embedding":
            new = "pos_embed"
        elif k.startswith("encoder.ln."):
            new = "norm." + k[len("encoder.ln."):]
        elif k.startswith("heads.head."):
            new = "head." + k[len("heads.head."):]
        else:
            m = block.fullmatch(k)
            if m is not None:
                rest = m.group(2)
                for a, b in _TV_VIT_BLOCK.items():
                    if rest == a or rest.startswith(a + "."):
                        new = f"blocks.{m.group(1)}.{b}{rest[len(a):]}"
                        break
        if new in out:
            raise InputError(f"torchvision ViT state dict: {k!r} and another key both map to {new!r}.")
        out[new] = v
    return out


def _is_timm_vit(target: dict) -> bool:
    return "cls_token" in target and "patch_embed.proj.weight" in target and "blocks.0.attn.qkv.weight" in target


def match_state_dict(model, state: dict, *, strict: bool = True, where: str = "weights") -> dict:
    """Map ``state`` onto the timm ``model``'s names and check keys and shapes.

    Returns the state dict to pass to ``model.load_state_dict``. Raises :class:`InputError` naming missing
    keys, unexpected keys and shape mismatches (missing/unexpected are only warned about with
    ``strict=False``; shape mismatches always raise).
    """
    import sys

    import torch

    target = model.state_dict()
    state = dict(state)
    tv_vit = is_torchvision_vit(state)
    hint = ""
    if tv_vit:
        summary = torchvision_vit_summary(state)
        if _is_timm_vit(target):
            state = convert_torchvision_vit(state)
            logger.info("%s: torchvision ViT state dict (%s) renamed to timm's layout", where, summary)
            if not any(k.startswith("head.") for k in target):  # no classifier: its pre-logits go with it
                state = {k: v for k, v in state.items() if not k.startswith("heads.")}
            hint = f" The file is a torchvision VisionTransformer ({summary}); use the timm ViT of that size."
        else:
            hint = (f" The file is a torchvision VisionTransformer ({summary}): load it into a timm ViT of "
                    "that size.")
    # timm's own converter for this architecture (other layouts, position-embedding resampling)
    filt = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filt is not None:
        try:
            state = dict(filt(state, model))
        except Exception as exc:  # noqa: BLE001 - a converter that does not apply is not an error
            logger.debug("timm checkpoint_filter_fn of %s did not apply: %s", type(model).__name__, exc)
    # drop the source's classifier when the encoder has none
    classifier = None
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if isinstance(cfg, dict):
        classifier = cfg.get("classifier")
    heads = set()
    for name in ([classifier] if isinstance(classifier, str) else list(classifier or [])) + ["fc", "head", "classifier",
                                                                                             "head.fc"]:
        if not any(k.startswith(name + ".") for k in target):
            heads.add(name + ".")
    dropped = [k for k in state if any(k.startswith(h) for h in heads) and k not in target]
    for k in dropped:
        del state[k]
    if dropped:
        logger.info("%s: dropped the source classifier (%d tensors: %s)", where, len(dropped), ", ".join(dropped[:4]))
    # first convolution with another number of input channels
    first = cfg.get("first_conv") if isinstance(cfg, dict) else None
    if isinstance(first, str):
        wk = first + ".weight"
        if wk in state and wk in target and state[wk].ndim == 4 and target[wk].ndim == 4 and \
                state[wk].shape[1] != target[wk].shape[1] and state[wk].shape[0] == target[wk].shape[0] and \
                state[wk].shape[2:] == target[wk].shape[2:]:
            from timm.models import adapt_input_conv

            n_in = int(target[wk].shape[1])
            logger.info("%s: adapting %s from %d to %d input channels (timm adapt_input_conv)", where, wk,
                        int(state[wk].shape[1]), n_in)
            state[wk] = adapt_input_conv(n_in, state[wk].float()).to(state[wk].dtype)
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
             for k in target if k in state and tuple(state[k].shape) != tuple(target[k].shape)]
    problems = []
    if wrong:
        problems.append(f"shape mismatch in {len(wrong)} tensor(s): " + "; ".join(wrong[:5]) +
                        ("; ..." if len(wrong) > 5 else ""))
    if missing and strict:
        problems.append(f"missing keys {_describe_keys(missing)}")
    if unexpected and strict:
        problems.append(f"unexpected keys {_describe_keys(unexpected)}")
    if problems:
        arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture", "")
        raise InputError(
            f"{where} does not fit {type(model).__name__} ({arch}): "
            + "; ".join(problems) + ". Check the architecture name (model=...), in_chans and img_size, or "
            "pass strict=False to load a partial state dict (shape mismatches are never loaded)." + hint)
    if missing:
        logger.warning("%s: %d missing key(s) keep their random initialisation: %s", where, len(missing),
                       _describe_keys(missing))
    if unexpected:
        logger.warning("%s: %d unexpected key(s) ignored: %s", where, len(unexpected), _describe_keys(unexpected))
    return {k: v.to(target[k].dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in state.items() if k in target}
