"""Save and load a trained model: ``model.safetensors`` (weights, no pickle) + ``card.json``.

A model folder holds exactly two files:

- ``model.safetensors``: the module's ``state_dict`` (safetensors cannot hold code, so loading never
  runs anything);
- ``card.json``: ``{'format': 'tissuegraph-model', 'format_version': 1, 'architecture': {'builder':
  'gnn'|'patch', 'kwargs': {...}}, 'weights_sha256': ..., 'inputs': ..., 'training_data_sha256': ...,
  'seed': ..., 'objective': ..., 'metrics': {...}, 'loss_log': [...], 'tissuegraph_version': ...}``
  plus whatever else the caller put in the card (JSON values only).

:func:`load_model` rebuilds the architecture from the card (``'gnn'`` -> :class:`GNNEncoder`,
``'patch'`` -> ``tissuegraph.models.patch.PatchEncoder``, each through ``from_config(kwargs)``) and loads
the weights strictly: a missing key, an extra key or a wrong shape is an :class:`InputError` naming them.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError

__all__ = ["save_model", "load_model", "load_weights", "weights_sha256"]

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
FORMAT = "tissuegraph-model"
FORMAT_VERSION = 1


def weights_sha256(module_or_state) -> str:
    """SHA-256 of a module's weights: every state-dict entry in key order (name, dtype, shape, bytes).

    It depends on the values only (not on the file), so a saved and reloaded model has the same hash.
    """
    import torch

    state = module_or_state.state_dict() if hasattr(module_or_state, "state_dict") else module_or_state
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if v is None or isinstance(v, (str, int, bool)):
        return v
    if hasattr(v, "item") and callable(v.item):  # torch scalars
        try:
            return _jsonable(v.item())
        except Exception:  # pragma: no cover
            pass
    if isinstance(v, Path):
        return str(v)
    raise InputError(f"the model card must hold JSON values only; got {type(v).__name__}: {v!r}.")


def save_model(module, path, *, card: dict | None = None) -> Path:
    """Write ``path/model.safetensors`` and ``path/card.json``; return the folder.

    Parameters
    ----------
    module
        A torch module with ``config()`` (the keyword arguments of its builder) and a ``builder`` name
        (``'gnn'`` for :class:`GNNEncoder`, ``'patch'`` for the patch encoders); or any module when
        ``card['architecture']`` is given.
    path
        Folder to write (created; existing files in it are replaced).
    card
        Model card: inputs, training-data hash, seed, objective, metrics, loss log, ... (JSON values).
        ``architecture`` and ``weights_sha256`` are filled in from the module.
    """
    import torch
    from safetensors.torch import save_file

    from .._version import __version__

    if not isinstance(module, torch.nn.Module):
        raise InputError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
    card = dict(card or {})
    if "architecture" not in card:
        if not (hasattr(module, "config") and hasattr(module, "builder")):
            raise InputError(f"{type(module).__name__} has no config()/builder; pass card={{'architecture': "
                             "{'builder': ..., 'kwargs': {...}}}.")
        card["architecture"] = {"builder": module.builder, "kwargs": module.config()}
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    card["weights_sha256"] = weights_sha256(state)
    card.setdefault("tissuegraph_version", __version__)
    card = {"format": FORMAT, "format_version": FORMAT_VERSION, **card}
    tmp = path / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "weights_sha256": card["weights_sha256"]})
    tmp.replace(path / WEIGHTS_FILE)
    (path / CARD_FILE).write_text(json.dumps(_jsonable(card), indent=2, sort_keys=False))
    return path


def _read_safetensors(file: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    head = file.read_bytes()[:8] if file.stat().st_size >= 8 else file.read_bytes()
    if head[:2] == b"PK" or head[:1] == b"\x80":
        raise InputError(f"{file} is a pickle (torch.save) file, not safetensors; tissuegraph never unpickles "
                         "weights. Convert it once where you trust it: safetensors.torch.save_file("
                         "torch.load(f, weights_only=True), 'model.safetensors').")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{file} is not a readable safetensors file ({exc}).") from exc


def load_weights(module, state: dict) -> None:
    """Load ``state`` into ``module`` strictly, with an :class:`InputError` naming every missing key,
    extra key and wrong shape."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(state) if tuple(state[k].shape) != tuple(own[k].shape))
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if extra:
            parts.append(f"unexpected keys {extra}")
        if shapes:
            parts.append(f"wrong shapes {shapes}")
        raise InputError(f"The weights do not fit {type(module).__name__}: " + "; ".join(parts) +
                         ". Check that the card's architecture matches the weights file (same builder "
                         "arguments, e.g. depth/width/inputs).")
    module.load_state_dict(state, strict=True)


def load_model(path) -> tuple[Any, dict]:
    """Rebuild a model saved by :func:`save_model`: returns ``(module, card)`` in ``eval()`` mode.

    The weights' SHA-256 is checked against the card's ``weights_sha256``.
    """
    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS_FILE, CARD_FILE):
        path = path.parent
    card_file, weights_file = path / CARD_FILE, path / WEIGHTS_FILE
    if not card_file.is_file() or not weights_file.is_file():
        raise InputError(f"{path} is not a tissuegraph model folder: it needs {CARD_FILE} and {WEIGHTS_FILE} "
                         "(written by tg.models.save_model).")
    try:
        card = json.loads(card_file.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{card_file} is not valid JSON ({exc}).") from exc
    arch = card.get("architecture") if isinstance(card, dict) else None
    if not isinstance(arch, dict) or "builder" not in arch:
        raise InputError(f"{card_file} has no architecture {{'builder': ..., 'kwargs': ...}}.")
    builder, kwargs = arch["builder"], dict(arch.get("kwargs") or {})
    if builder == "gnn":
        from .gnn import GNNEncoder

        module = GNNEncoder.from_config(kwargs)
    elif builder == "patch":
        from .patch import PatchEncoder

        module = PatchEncoder.from_config(kwargs)
    else:
        raise InputError(f"{card_file}: unknown builder {builder!r} (known: 'gnn', 'patch').")
    state = _read_safetensors(weights_file)
    load_weights(module, state)
    want = card.get("weights_sha256")
    if want and weights_sha256(module) != want:
        raise InputError(f"{weights_file} does not match the SHA-256 recorded in {card_file}; the files come "
                         "from different saves.")
    module.eval()
    return module, card
