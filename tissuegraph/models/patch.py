"""Patch encoders: any timm architecture as a feature extractor, pooled per block, tensors in and out.

>>> enc = PatchEncoder("resnet18", seed=0)                      # random weights, bit-reproducible per seed
>>> enc = PatchEncoder("vit_large_patch16_224", weights="/models/uni.safetensors")   # a local file
>>> z = enc(x)                      # x: (N, C, H, W) float in [0, 1]  ->  (N, d) float32
>>> zs = enc.embed(x, layers=[1, 3, -1])   # pooled intermediate blocks and the final embedding

The encoder normalises its input itself (``(x - mean) / std``; ImageNet statistics by default, those of the
architecture's timm config), so callers pass images scaled to [0, 1].

Layers
------
``layer=-1`` (default) is the network's own embedding: the ``num_classes=0`` output of timm (global
average pool for CNNs, the class token / the architecture's pooling after the final norm for ViTs).
``layer=i >= 0`` is block ``i`` of timm's ``forward_intermediates`` (ResNets: 0 = stem, 1-4 = stages;
ViTs: transformer blocks 0..depth-1), averaged over its spatial positions / patch tokens; negative
``layer=-k`` (k >= 2) counts blocks from the end (``-2`` = the block before the last).
:attr:`PatchEncoder.n_blocks` says how many there are.

Weights
-------
``weights=None``: random initialisation drawn with ``seed`` inside a forked torch RNG (the same seed gives
bit-identical weights, the global RNG is untouched). ``weights=path``: a local state dict or safetensors
file (see :mod:`tissuegraph.models._weights`). Pretrained weights are never downloaded: asking for them by
name (``weights='imagenet'``) looks for ``<tg.settings.cache_dir>/weights/<arch>.safetensors`` (or
``.pth``/``.pt``/``.bin``) and otherwise raises :class:`~tissuegraph.WeightsUnavailableError` saying how
to pass a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .._errors import InputError, WeightsUnavailableError
from .._logging import logger
from ._weights import PRETRAINED_WORDS, file_sha256, match_state_dict, read_state_dict, state_dict_sha256

__all__ = ["PatchEncoder", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _is_vit(model: nn.Module) -> bool:
    return hasattr(model, "patch_embed") and hasattr(model, "blocks")


def _channel_stats(values: Sequence[float] | None, in_chans: int, default: Sequence[float], what: str):
    if values is None:
        v = [float(x) for x in default]
        if len(v) != in_chans:  # e.g. ImageNet RGB statistics for a 1- or 4-channel input: their mean
            v = [sum(v) / len(v)] * in_chans
        return tuple(v)
    v = [float(x) for x in (values if isinstance(values, (list, tuple)) else [values])]
    if len(v) == 1:
        v = v * in_chans
    if len(v) != in_chans:
        raise InputError(f"{what} has {len(v)} values for {in_chans} input channels.")
    if what == "std" and min(v) <= 0:
        raise InputError(f"std must be positive, got {v}.")
    return tuple(v)


def _resolve_weights_path(weights: Any, arch: str) -> Path | None:
    if weights is None:
        return None
    if isinstance(weights, (str, os.PathLike)):
        s = os.fspath(weights)
        if isinstance(weights, str) and (s.lower() in PRETRAINED_WORDS or s.lower().startswith(("hf-hub:", "hf_hub:"))):
            from .._settings import settings

            folder = Path(settings.cache_dir) / "weights"
            for ext in (".safetensors", ".pth", ".pt", ".bin"):
                cand = folder / f"{arch}{ext}"
                if cand.is_file():
                    return cand
            raise WeightsUnavailableError(
                f"Pretrained weights for {arch!r} are not on disk and tissuegraph never downloads weights "
                f"(looked for {folder}/{arch}.safetensors|.pth|.pt|.bin). Pass a local file instead: "
                f"weights='/path/{arch}.safetensors' (a timm or torchvision state dict, e.g. saved once with "
                f"timm.create_model({arch!r}, pretrained=True).state_dict() on a machine with network), or "
                "put it at that cache path. Pathology foundation models kept in timm form work the same way, "
                "e.g. model='vit_large_patch16_224', weights='/path/uni.safetensors' (pass the model's "
                "mean=/std= and any timm kwargs such as model_kwargs={'init_values': 1e-5} it needs).")
        return Path(s).expanduser()
    raise InputError(f"weights must be None, a file path or 'pretrained', got {type(weights).__name__}.")


class PatchEncoder(nn.Module):
    """A timm network as a patch feature extractor (``num_classes=0``), pooled per block.

    Parameters
    ----------
    arch
        Any timm architecture name (``'resnet18'``, ``'resnet50'``, ``'vit_small_patch16_224'``, ...).
    in_chans
        Input channels (3 for H&E; 1-5 for fluorescence).
    layer
        Which embedding ``forward`` returns (see the module docs): ``-1`` = the network's own embedding,
        ``i >= 0`` = block ``i`` averaged over positions, ``-k`` = k-th block from the end.
    img_size
        Input size for architectures that fix it (ViTs: position embeddings); ignored by CNNs.
    weights
        ``None`` (random, ``seed``), a local file, or ``'pretrained'`` (looked up in the cache folder only).
    seed
        Seed of the random initialisation (also recorded when weights come from a file).
    mean, std
        Per-channel normalisation of [0, 1] input; default: the architecture's timm config (ImageNet).
    strict
        Require the weights file to match every key (shape mismatches always raise).
    model_kwargs
        Extra keyword arguments for ``timm.create_model`` (e.g. ``{'init_values': 1e-5}``).
    objective
        Provenance only: how the weights were trained (``None`` = untrained, ``'pretrained'``, ``'simclr'``,
        ``'supervised'``, ...).
    """

    def __init__(self, arch: str = "resnet18", *, in_chans: int = 3, layer: int = -1, img_size: int | None = None,
                 weights: Any = None, seed: int = 0, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, strict: bool = True, model_kwargs: dict | None = None,
                 objective: str | None = None):
        super().__init__()
        import timm

        if not isinstance(arch, str) or not arch:
            raise InputError(f"arch must be a timm architecture name, got {arch!r}.")
        if arch.lower().startswith(("hf-hub:", "hf_hub:", "hf-hub-", "http:", "https:")):
            raise WeightsUnavailableError(
                f"{arch!r} names a model on a hub; tissuegraph never downloads. Use the timm architecture "
                "name (e.g. 'vit_large_patch16_224') and weights='/path/to/file.safetensors'.")
        if not timm.is_model(arch):
            close = timm.list_models(f"*{arch.split('_')[0]}*")[:8]
            raise InputError(f"Unknown timm architecture {arch!r}; similar names: {close}.")
        if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
            raise InputError(f"in_chans must be a positive int, got {in_chans!r}.")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"seed must be an int, got {seed!r}.")
        self.arch = arch
        self.in_chans = int(in_chans)
        self.seed = int(seed)
        self.model_kwargs = dict(model_kwargs or {})
        self.img_size = None if img_size is None else int(img_size)
        kw = dict(self.model_kwargs)
        if self.img_size is not None:
            kw.setdefault("img_size", self.img_size)
        self.model = self._create(arch, kw)
        if "img_size" not in self.model_kwargs and "img_size" in kw and not self._takes_img_size:
            self.img_size = None  # CNNs take any input size
        self.model.eval()
        cfg = getattr(self.model, "pretrained_cfg", None) or {}
        self.family = "vit" if _is_vit(self.model) else "cnn"
        m = _channel_stats(mean, self.in_chans, cfg.get("mean", IMAGENET_MEAN), "mean")
        s = _channel_stats(std, self.in_chans, cfg.get("std", IMAGENET_STD), "std")
        self._norm = (list(m), list(s))
        self.register_buffer("mean", torch.tensor(m, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(s, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.n_blocks = len(getattr(self.model, "feature_info", []) or [])
        self.layer = self._check_layer(layer)
        self.objective = objective
        self.weights_path: str | None = None
        self.weights_sha256: str | None = None
        path = _resolve_weights_path(weights, arch)
        if path is not None:
            self.load_weights(path, strict=strict)
            if self.objective is None:
                self.objective = "pretrained"

    # --- construction -----------------------------------------------------------------------------
    def _create(self, arch: str, kw: dict) -> nn.Module:
        import timm

        self._takes_img_size = True
        # Random weights mean random weights: timm starts the last norm gain of every residual block at zero
        # (``zero_init_last=True``, a training trick), which would leave an untrained ResNet twin with silent
        # residual branches (the stem plus the shortcuts). Architectures that take the option get it off,
        # unless the user sets it; the effective value is kept in ``model_kwargs`` (provenance, save/load).
        zero_default = "zero_init_last" not in self.model_kwargs
        if zero_default:
            kw = {**kw, "zero_init_last": False}
        attempts = [kw, {k: v for k, v in kw.items() if k != "img_size"}]
        i = 0
        while i < len(attempts):
            attempt = attempts[i]
            i += 1
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.seed)
                    # pretrained=False always: timm must never reach for the network
                    model = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=self.in_chans,
                                              **attempt)
            except TypeError as exc:
                if zero_default and "zero_init_last" in attempt and "zero_init_last" in str(exc):
                    # this architecture has no such option: the same attempts without it
                    attempts = [{k: v for k, v in a.items() if k != "zero_init_last"} for a in attempts]
                    i -= 1
                    zero_default = False
                    continue
                if "img_size" in attempt and "img_size" in str(exc) and "img_size" not in self.model_kwargs:
                    self._takes_img_size = False
                    continue
                raise InputError(f"timm.create_model({arch!r}, ...) rejected the arguments {sorted(attempt)}: "
                                 f"{exc}") from exc
            if zero_default:
                self.model_kwargs["zero_init_last"] = False
            return model
        raise AssertionError("unreachable")

    def _check_layer(self, layer) -> int:
        if isinstance(layer, bool) or not isinstance(layer, (int,)) and not hasattr(layer, "__index__"):
            raise InputError(f"layer must be an int, got {layer!r}.")
        layer = int(layer)
        if layer == -1:
            return -1
        n = self.n_blocks
        if n == 0:
            raise InputError(f"{self.arch} exposes no intermediate blocks (timm feature_info); use layer=-1.")
        if not (-n <= layer < n):
            raise InputError(f"layer must be -1 (final embedding) or a block in [-{n}, {n - 1}] for {self.arch} "
                             f"({n} blocks), got {layer}.")
        return layer

    builder = "patch"  # the architecture builder name in a model card (tg.models.save_model / load_model)

    def config(self) -> dict:
        """Everything needed to rebuild this encoder (random weights) with :meth:`from_config` (keyword arguments)."""
        return {"builder": "patch", "arch": self.arch, "in_chans": self.in_chans, "layer": self.layer,
                "img_size": self.img_size, "seed": self.seed, "mean": list(self._norm[0]),
                "std": list(self._norm[1]), "model_kwargs": dict(self.model_kwargs),
                "objective": self.objective}

    @classmethod
    def from_config(cls, config: dict) -> "PatchEncoder":
        """Rebuild an encoder (random weights from its seed) from :meth:`config`; load weights afterwards."""
        cfg = {k: v for k, v in dict(config).items() if k != "builder"}
        if "arch" not in cfg:
            raise InputError("A patch encoder config needs 'arch'.")
        return cls(cfg.pop("arch"), **cfg)

    def load_weights(self, path: str | os.PathLike, *, strict: bool = True) -> "PatchEncoder":
        """Load a local state dict / safetensors file (timm or torchvision layout) into the network."""
        state = read_state_dict(path)
        matched = match_state_dict(self.model, state, strict=strict, where=str(path))
        self.model.load_state_dict(matched, strict=False)
        self.weights_path = str(path)
        self.weights_sha256 = file_sha256(path)
        logger.info("%s: loaded %d tensors from %s", self.arch, len(matched), path)
        return self

    def parameters_sha256(self) -> str:
        """Hash of the network's current weights (equal weights, equal hash)."""
        return state_dict_sha256(self.model.state_dict())

    @property
    def num_features(self) -> int:
        """Width of the embedding ``forward`` returns."""
        return self.layer_width(self.layer)

    def layer_width(self, layer: int) -> int:
        layer = self._check_layer(layer)
        if layer == -1:
            return int(self.model.num_features)
        return int(self.model.feature_info[layer]["num_chs"])

    # --- forward -----------------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise InputError(f"Input must be a (N, C, H, W) tensor, got "
                             f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}.")
        if x.shape[1] != self.in_chans:
            raise InputError(f"Input has {x.shape[1]} channels; this {self.arch} encoder takes in_chans="
                             f"{self.in_chans}.")
        if not x.is_floating_point():
            raise InputError(f"Input must be floating point in [0, 1], got {x.dtype}.")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) float in [0, 1] -> (N, d) embedding of :attr:`layer`."""
        return self.embed(x, layers=[self.layer])[0]

    def embed(self, x: torch.Tensor, *, layers: Sequence[int] | None = None) -> list[torch.Tensor]:
        """Pooled embeddings of several ``layers`` in one pass (list of (N, d_l) tensors)."""
        x = self.normalize(self._check_input(x))
        layers = [self.layer] if layers is None else [self._check_layer(v) for v in layers]
        blocks = sorted({(v % self.n_blocks) for v in layers if v != -1})
        if not blocks:
            return [self.model(x)]
        want_final = -1 in layers
        feats: dict[int, torch.Tensor] = {}
        final = None
        fi = getattr(self.model, "forward_intermediates", None)
        if fi is not None:
            try:
                if want_final:
                    last, inter = fi(x, indices=blocks, intermediates_only=False)
                    final = self.model.forward_head(last, pre_logits=True)
                else:
                    inter = fi(x, indices=blocks, intermediates_only=True, stop_early=True)
                feats = {b: t for b, t in zip(blocks, inter)}
            except NotImplementedError:
                fi = None
        if fi is None:  # hooks on the feature_info modules
            feats, final = self._embed_hooks(x, blocks, want_final)
        out = []
        for v in layers:
            if v == -1:
                out.append(final)
            else:
                t = feats[v % self.n_blocks]
                out.append(t.mean(dim=(2, 3)) if t.ndim == 4 else t.mean(dim=1))
        return out

    def layer_stride(self, layer: int) -> int:
        """Input px per feature-map cell of block ``layer`` (timm ``feature_info`` reduction; ViT: patch size)."""
        layer = self._check_layer(layer)
        if layer == -1:
            raise InputError("layer=-1 is the pooled embedding and has no feature map; choose a block >= 0.")
        return int(self.model.feature_info[layer % self.n_blocks]["reduction"])

    def feature_maps(self, x: torch.Tensor, *, layers: Sequence[int]) -> list[torch.Tensor]:
        """Unpooled feature maps ``(N, C_l, H / stride_l, W / stride_l)`` of blocks ``layers`` (>= 0 or -k),
        in one pass that stops after the deepest one (ViTs: the patch-token grid, prefix tokens dropped)."""
        x = self.normalize(self._check_input(x))
        layers = [self._check_layer(v) for v in layers]
        if any(v == -1 for v in layers):
            raise InputError("layer=-1 is the pooled embedding and has no feature map; choose a block >= 0.")
        blocks = sorted({v % self.n_blocks for v in layers})
        feats = None
        fi = getattr(self.model, "forward_intermediates", None)
        if fi is not None:
            try:
                inter = fi(x, indices=blocks, intermediates_only=True, stop_early=True)
                feats = {b: t for b, t in zip(blocks, inter)}
            except NotImplementedError:
                feats = None
        if feats is None:
            feats, _ = self._embed_hooks(x, blocks, False)
        out = []
        for v in layers:
            t = feats[v % self.n_blocks]
            if t.ndim != 4:
                raise InputError(f"{self.arch} block {v} gives a {t.ndim}-D output, not a spatial feature map.")
            out.append(t)
        return out

    def _embed_hooks(self, x, blocks, want_final):
        modules = dict(self.model.named_modules())
        grabbed: dict[int, torch.Tensor] = {}
        handles = []
        for b in blocks:
            name = self.model.feature_info[b]["module"]
            handles.append(modules[name].register_forward_hook(
                lambda _m, _i, o, b=b: grabbed.__setitem__(b, o[0] if isinstance(o, (tuple, list)) else o)))
        try:
            final = self.model(x)
        finally:
            for h in handles:
                h.remove()
        return grabbed, (final if want_final else None)

    def extra_repr(self) -> str:
        return (f"arch={self.arch!r}, in_chans={self.in_chans}, layer={self.layer}, seed={self.seed}, "
                f"objective={self.objective!r}, weights={self.weights_path!r}")
