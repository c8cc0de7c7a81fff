"""Offline training of patch encoders: SimCLR-style self-supervision and supervised fine-tuning.

Tensors in, tensors out: ``images`` is a ``(N, C, H, W)`` float tensor in [0, 1] (or a ``(N, H, W, C)``
uint8 array), e.g. the crops :func:`tissuegraph.emb.train_patches` reads from a slide.

Augmentations (batched, on the training device, drawn from one seeded ``torch.Generator``):

- random resized crop (area fraction ``crop_scale``, aspect ratio 3/4-4/3) with a random flip and a random
  multiple of 90° rotation, in one affine resampling (bilinear, reflection padding) to ``size`` px;
- colour jitter (``color=``): ``'hed'``, stain jitter in HED space (Tellez et al. 2018): RGB -> optical
  density -> hematoxylin/eosin/DAB amounts (Ruifrok-Johnston vectors, as :mod:`tissuegraph.feat._stain`), each
  scaled by ``U(1-s, 1+s)`` and shifted by ``U(-s, s)``, back to RGB; ``'channel'``, a per-channel intensity
  scale ``U(1-2s, 1+2s)`` and shift ``U(-s, s)`` (fluorescence: each stain varies on its own);
  ``'auto'`` (default) = ``'hed'`` for 3 channels, ``'channel'`` otherwise;
- Gaussian blur with probability ``blur_p`` (sigma ``U(0.1, 1.5)`` px).

Reproducibility: the same seed gives the same weights and embeddings on the same machine with the same
number of torch threads (recorded in the card); ``torch.use_deterministic_algorithms`` is on during
training and restored afterwards.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._errors import InputError
from .._logging import logger, progress_bar
from .._settings import settings
from .patch import PatchEncoder

__all__ = ["train_patch_simclr", "train_patch_supervised", "augment"]

_STAIN = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64)
_STAIN_INV = torch.linalg.inv(_STAIN)


@contextmanager
def _deterministic():
    prev = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev, warn_only=prev_warn)


def _as_images(images) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise InputError(f"images must be (N, H, W, C), got shape {images.shape}.")
        if images.dtype == np.uint8:
            return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
        images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2)
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise InputError("images must be a (N, C, H, W) float tensor in [0, 1] or a (N, H, W, C) uint8 array.")
    if not images.is_floating_point():
        raise InputError(f"A tensor of images must be floating point in [0, 1], got {images.dtype}.")
    if not torch.isfinite(images).all():
        raise InputError("images contain NaN or infinite values.")
    return images.float()


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, *shape) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand((n, *shape), generator=g)


def _color_mode(color: str, c: int) -> str:
    if color not in ("auto", "hed", "channel"):
        raise InputError(f"color must be 'auto', 'hed' or 'channel', got {color!r}.")
    if color == "hed" and c != 3:
        raise InputError(f"color='hed' (H&E stain jitter) needs 3-channel RGB images, got {c} channels; use "
                         "color='channel' (per-channel intensity jitter).")
    return ("hed" if c == 3 else "channel") if color == "auto" else color


def augment(x: torch.Tensor, g: torch.Generator, *, size: int, crop_scale=(0.35, 1.0), stain_jitter: float = 0.05,
            blur_p: float = 0.5, color: str = "auto") -> torch.Tensor:
    """One random view of each image of ``x`` (N, C, H, W) in [0, 1] -> (N, C, size, size) (see module docs)."""
    n, c = x.shape[:2]
    mode = _color_mode(color, c)
    dev = x.device
    # geometry: crop + flip + rot90 as one affine map from output to input coordinates ([-1, 1] units)
    area = _uniform(n, crop_scale[0], crop_scale[1], g)
    log_r = _uniform(n, math.log(3 / 4), math.log(4 / 3), g)
    r = torch.exp(log_r)
    w = torch.clamp(torch.sqrt(area * r), max=1.0)
    h = torch.clamp(torch.sqrt(area / r), max=1.0)
    cx = (torch.rand(n, generator=g) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=g) * 2 - 1) * (1 - h)
    k = torch.randint(0, 4, (n,), generator=g)
    flip = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    cos = torch.tensor([1.0, 0.0, -1.0, 0.0])[k]
    sin = torch.tensor([0.0, 1.0, 0.0, -1.0])[k]
    rot = torch.stack([torch.stack([cos * flip, -sin], 1), torch.stack([sin * flip, cos], 1)], 1)  # (n, 2, 2)
    theta = torch.cat([torch.diag_embed(torch.stack([w, h], 1)) @ rot, torch.stack([cx, cy], 1)[:, :, None]], 2)
    grid = F.affine_grid(theta.to(dev), (n, c, size, size), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # colour
    if stain_jitter > 0:
        if mode == "hed":
            alpha = _uniform(n, 1 - stain_jitter, 1 + stain_jitter, g, 1, 3).to(dev)
            beta = _uniform(n, -stain_jitter, stain_jitter, g, 1, 3).to(dev)
            od = -torch.log10(torch.clamp(out, min=1.0 / 255.0)).permute(0, 2, 3, 1).reshape(n, -1, 3)
            hed = od @ _STAIN_INV.to(dev, torch.float32)
            od = (hed * alpha + beta) @ _STAIN.to(dev, torch.float32)
            out = torch.clamp(10.0 ** (-od), 0.0, 1.0).reshape(n, size, size, 3).permute(0, 3, 1, 2)
        else:
            alpha = _uniform(n, 1 - 2 * stain_jitter, 1 + 2 * stain_jitter, g, c, 1, 1).to(dev)
            beta = _uniform(n, -stain_jitter, stain_jitter, g, c, 1, 1).to(dev)
            out = torch.clamp(out * alpha + beta, 0.0, 1.0)
    if blur_p > 0:
        sig = _uniform(n, 0.1, 1.5, g)
        on = torch.rand(n, generator=g) < blur_p
        t = torch.arange(-3, 4, dtype=torch.float32)
        ker = torch.exp(-(t[None, :] ** 2) / (2 * sig[:, None] ** 2))
        ker = ker / ker.sum(1, keepdim=True)
        ker = torch.where(on[:, None], ker, (t == 0).float()[None, :].expand(n, -1))  # identity when off
        kk = ker.repeat_interleave(c, 0).to(dev)  # (n*c, 7)
        y = out.reshape(1, n * c, size, size)
        y = F.conv2d(F.pad(y, (3, 3, 0, 0), mode="reflect"), kk[:, None, None, :], groups=n * c)
        y = F.conv2d(F.pad(y, (0, 0, 3, 3), mode="reflect"), kk[:, None, :, None], groups=n * c)
        out = y.reshape(n, c, size, size)
    return out.contiguous()


def _encoder(model, in_chans: int, size: int, seed: int) -> PatchEncoder:
    if isinstance(model, PatchEncoder):
        if model.in_chans != in_chans:
            raise InputError(f"The encoder takes in_chans={model.in_chans}; the images have {in_chans} channels.")
        return copy.deepcopy(model)
    if not isinstance(model, str):
        raise InputError(f"model must be a timm architecture name or a PatchEncoder, got {type(model).__name__}.")
    return PatchEncoder(model, in_chans=in_chans, img_size=size, seed=seed)


def _steps(n: int, bs: int) -> int:
    """Batches per epoch: every image once; a last batch of a single image is dropped (BatchNorm, pairs)."""
    return max(1, n // bs + (1 if n % bs >= 2 else 0))


def _check(images, size, epochs, batch_size, lr):
    x = _as_images(images)
    if len(x) < 2:
        raise InputError(f"Training needs at least 2 images, got {len(x)}.")
    for v, name in ((size, "size"), (epochs, "epochs"), (batch_size, "batch_size")):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be a positive int, got {v!r}.")
    if not lr > 0:
        raise InputError(f"lr must be positive, got {lr}.")
    return x


def _optimiser(enc, head, n: int, *, seed, batch_size, epochs, lr, weight_decay, device):
    """Batch-order generator, batch size, steps per epoch, AdamW over encoder + head and its cosine schedule.

    Moves both modules to ``device`` in train mode.
    """
    g = torch.Generator().manual_seed(int(seed))
    bs = min(batch_size, n)
    steps_per_epoch = _steps(n, bs)
    enc.to(device).train()
    head.to(device).train()
    opt = torch.optim.AdamW(list(enc.parameters()) + list(head.parameters()), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    return g, bs, steps_per_epoch, opt, sched


def _step(loss, opt, sched, losses: list, ep_loss: list) -> None:
    """One optimiser and schedule step on ``loss``; appends the loss to the step and epoch logs."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    losses.append(float(loss.detach()))
    ep_loss.append(losses[-1])


def _card(enc, objective, *, x, seed, epochs, batch_size, lr, size, device, losses, epoch_losses, seconds, extra):
    return {"architecture": {"builder": "patch", "kwargs": enc.config()}, "objective": objective, "seed": seed,
            "inputs": f"{'rgb' if enc.in_chans == 3 else f'{enc.in_chans}ch'} crops, {size}px",
            "training_data_sha256": hashlib.sha256(x.numpy().tobytes()).hexdigest(),
            "n_images": int(len(x)), "epochs": epochs, "batch_size": batch_size, "lr": lr, "size": size,
            "device": str(device), "torch_threads": torch.get_num_threads(),
            "loss_log": [float(v) for v in epoch_losses], "step_losses": [float(v) for v in losses],
            "seconds_per_epoch": [float(v) for v in seconds], **extra}


def train_patch_simclr(images, *, model: Any = "resnet18", size: int = 96, epochs: int = 5, batch_size: int = 64,
                       lr: float = 1e-3, weight_decay: float = 1e-6, temperature: float = 0.2, proj_dim: int = 64,
                       crop_scale=(0.35, 1.0), stain_jitter: float = 0.05, blur_p: float = 0.5, color: str = "auto",
                       seed: int = 0, device: str | None = None, progress: bool | None = None):
    """SimCLR-style contrastive training (NT-Xent on two augmented views) of a patch encoder.

    Parameters
    ----------
    images
        ``(N, C, H, W)`` float tensor in [0, 1] or ``(N, H, W, C)`` uint8 array of training crops.
    model
        Architecture name (random init from ``seed``) or a :class:`PatchEncoder` to continue from (copied).
    size
        Side of the augmented views (the network input).
    epochs, batch_size, lr, weight_decay
        AdamW schedule (cosine decay of the learning rate over all steps).
    temperature, proj_dim
        NT-Xent temperature and the width of the 2-layer projection head (discarded after training).
    crop_scale, stain_jitter, blur_p
        Augmentation strengths (see the module docs).
    color
        Colour jitter: ``'auto'`` (HED stain jitter for RGB, per-channel otherwise), ``'hed'`` or ``'channel'``
        (fluorescence: per-channel intensity scale and shift, also for 3 channels).
    seed
        Seed of the initialisation, augmentations and batch order.
    device
        Torch device (default ``tg.settings.device``).

    Returns
    -------
    ``(encoder, card)``: the trained encoder (``objective='simclr'``, eval mode, on the CPU) and a JSON-ready
    card (architecture config, seed, data hash, per-epoch loss log, seconds per epoch).
    """
    x = _check(images, size, epochs, batch_size, lr)
    mode = _color_mode(color, x.shape[1])
    device = torch.device(settings.device if device is None else device)
    enc = _encoder(model, x.shape[1], size, seed)
    d = enc.num_features
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        head = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, proj_dim))
    g, bs, steps_per_epoch, opt, sched = _optimiser(enc, head, len(x), seed=seed, batch_size=batch_size,
                                                    epochs=epochs, lr=lr, weight_decay=weight_decay, device=device)
    losses, epoch_losses, seconds = [], [], []
    with _deterministic(), progress_bar(total=epochs * steps_per_epoch, desc="simclr", enabled=progress,
                                        unit="step") as bar:
        for ep in range(epochs):
            t0 = time.perf_counter()
            order = torch.randperm(len(x), generator=g)
            ep_loss = []
            for st in range(steps_per_epoch):
                idx = order[st * bs:(st + 1) * bs]
                xb = x[idx].to(device)
                v1 = augment(xb, g, size=size, crop_scale=crop_scale, stain_jitter=stain_jitter, blur_p=blur_p,
                             color=mode)
                v2 = augment(xb, g, size=size, crop_scale=crop_scale, stain_jitter=stain_jitter, blur_p=blur_p,
                             color=mode)
                z = F.normalize(head(enc(torch.cat([v1, v2]))), dim=1)
                n = len(idx)
                sim = z @ z.T / temperature
                sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=device), float("-inf"))
                target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(device)
                loss = F.cross_entropy(sim, target)
                _step(loss, opt, sched, losses, ep_loss)
                bar.update(1)
            seconds.append(time.perf_counter() - t0)
            epoch_losses.append(float(np.mean(ep_loss)))
            logger.info("simclr epoch %d/%d: loss %.4f (%.1fs)", ep + 1, epochs, epoch_losses[-1], seconds[-1])
    enc.to("cpu").eval()
    enc.objective = "simclr"
    card = _card(enc, "simclr", x=x, seed=seed, epochs=epochs, batch_size=bs, lr=lr, size=size, device=device,
                 losses=losses, epoch_losses=epoch_losses, seconds=seconds,
                 extra={"temperature": temperature, "proj_dim": proj_dim, "weight_decay": weight_decay,
                        "augmentations": {"crop_scale": list(crop_scale),
                                          ("stain_jitter_hed" if mode == "hed" else "channel_jitter"): stain_jitter,
                                          "color": mode, "blur_p": blur_p, "flips_rot90": True}})
    enc.card = card
    return enc, card


def train_patch_supervised(images, labels, *, model: Any = "resnet18", size: int = 96, epochs: int = 5,
                           batch_size: int = 64, lr: float = 3e-4, weight_decay: float = 1e-4,
                           crop_scale=(0.6, 1.0), stain_jitter: float = 0.05, blur_p: float = 0.2, seed: int = 0,
                           device: str | None = None, progress: bool | None = None):
    """Supervised fine-tuning of a patch encoder on class labels (cross-entropy through a linear head).

    Parameters
    ----------
    images
        As :func:`train_patch_simclr`.
    labels
        ``(N,)`` integer class codes (``-1`` = unlabelled, left out).
    model, size, epochs, batch_size, lr, weight_decay, crop_scale, stain_jitter, blur_p, seed, device
        As :func:`train_patch_simclr` (milder default augmentations).

    Returns
    -------
    ``(encoder, card)`` with ``objective='supervised'``; the card logs loss and training accuracy per epoch.
    """
    x = _check(images, size, epochs, batch_size, lr)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)
    if len(y) != len(x):
        raise InputError(f"labels has {len(y)} entries for {len(x)} images.")
    keep = y >= 0
    x, y = x[keep], y[keep]
    n_classes = int(y.max()) + 1 if len(y) else 0
    if len(torch.unique(y)) < 2:
        raise InputError("Supervised training needs at least 2 classes among the labelled images.")
    device = torch.device(settings.device if device is None else device)
    enc = _encoder(model, x.shape[1], size, seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        head = nn.Linear(enc.num_features, n_classes)
    g, bs, steps_per_epoch, opt, sched = _optimiser(enc, head, len(x), seed=seed, batch_size=batch_size,
                                                    epochs=epochs, lr=lr, weight_decay=weight_decay, device=device)
    losses, epoch_losses, seconds, accs = [], [], [], []
    with _deterministic(), progress_bar(total=epochs * steps_per_epoch, desc="supervised", enabled=progress,
                                        unit="step") as bar:
        for ep in range(epochs):
            t0 = time.perf_counter()
            order = torch.randperm(len(x), generator=g)
            ep_loss, correct, seen = [], 0, 0
            for st in range(steps_per_epoch):
                idx = order[st * bs:(st + 1) * bs]
                xb = augment(x[idx].to(device), g, size=size, crop_scale=crop_scale, stain_jitter=stain_jitter,
                             blur_p=blur_p)
                yb = y[idx].to(device)
                logits = head(enc(xb))
                loss = F.cross_entropy(logits, yb)
                _step(loss, opt, sched, losses, ep_loss)
                correct += int((logits.argmax(1) == yb).sum())
                seen += len(idx)
                bar.update(1)
            seconds.append(time.perf_counter() - t0)
            epoch_losses.append(float(np.mean(ep_loss)))
            accs.append(correct / max(seen, 1))
            logger.info("supervised epoch %d/%d: loss %.4f, train accuracy %.3f (%.1fs)", ep + 1, epochs,
                        epoch_losses[-1], accs[-1], seconds[-1])
    enc.to("cpu").eval()
    enc.objective = "supervised"
    card = _card(enc, "supervised", x=x, seed=seed, epochs=epochs, batch_size=bs, lr=lr, size=size, device=device,
                 losses=losses, epoch_losses=epoch_losses, seconds=seconds,
                 extra={"n_classes": n_classes, "metrics": {"train_accuracy": [float(a) for a in accs]},
                        "weight_decay": weight_decay,
                        "augmentations": {"crop_scale": list(crop_scale), "stain_jitter_hed": stain_jitter,
                                          "blur_p": blur_p, "flips_rot90": True}})
    enc.card = card
    return enc, card
