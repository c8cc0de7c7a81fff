"""Train (or fine-tune) a StarDist 2-D model on instance-labelled images: :func:`train_stardist`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._errors import InputError
from .._logging import logger, timed
from .._validate import check_image, check_labels, check_positive
from ._stardist import (
    TG_INFO_FILE,
    StarDistBackend,
    _check_model_folder,
    _init_tensorflow,
    _quiet_stdout,
    _resolve_model,
    _weights_file,
    rgb_to_channel,
)

__all__ = ["train_stardist"]


def _as_list(data: Any, name: str) -> list[np.ndarray]:
    if isinstance(data, np.ndarray):
        if data.ndim < 2:
            raise InputError(f"{name} must be a list of 2-D images or an (N, H, W[, C]) array, got shape "
                             f"{data.shape}.")
        return [data] if data.ndim == 2 else list(data)
    if isinstance(data, (str, bytes)) or not hasattr(data, "__len__"):
        raise InputError(f"{name} must be a list of arrays or an (N, H, W[, C]) array, got "
                         f"{type(data).__name__}.")
    return [np.asarray(d) for d in data]


def _check_pairs(images, labels, what: str, *, rgb_to: str | None = None
                 ) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    X = _as_list(images, f"{what} images")
    Y = _as_list(labels, f"{what} labels")
    if len(X) == 0:
        raise InputError(f"No {what} images given.")
    if len(X) != len(Y):
        raise InputError(f"{len(X)} {what} image(s) but {len(Y)} label image(s); they must pair up.")
    n_ch = None
    for i, (x, y) in enumerate(zip(X, Y)):
        x = check_image(x, f"{what} image {i}")
        y = check_labels(y, f"{what} labels {i}")
        if x.shape[:2] != y.shape:
            raise InputError(f"{what} image {i} has shape {x.shape} but its labels have shape {y.shape}; "
                             "the first two dimensions must match.")
        c = 1 if x.ndim == 2 else x.shape[2]
        if rgb_to is not None and c != 1:
            if c != 3:
                raise InputError(f"rgb_to={rgb_to!r} needs RGB (H, W, 3) or single-channel images; {what} "
                                 f"image {i} has shape {x.shape}.")
            x, c = rgb_to_channel(x, how=rgb_to), 1
        elif c == 1 and x.ndim == 3:
            x = x[..., 0]
        if n_ch is None:
            n_ch = c
        elif c != n_ch:
            raise InputError(f"{what} image {i} has {c} channel(s) but image 0 has {n_ch}; all images must "
                             "have the same channels.")
        if y.max() == 0:
            logger.warning("%s labels %d contain no objects (background only).", what, i)
        X[i], Y[i] = x, y
    return X, Y, int(n_ch)


def _normalise(x: np.ndarray, percentiles, joint: bool) -> np.ndarray:
    x = x.astype(np.float32)
    if x.ndim == 2:
        x = x[..., None]
    if joint:
        lo, hi = np.percentile(x, percentiles)
    else:
        lo, hi = np.percentile(x.reshape(-1, x.shape[-1]), percentiles, axis=0)
    return ((x - lo) / (hi - lo + 1e-20)).astype(np.float32)


def _zoom_pair(x: np.ndarray, y: np.ndarray, s: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Zoom a (patch, labels) pair by ``s`` about a random point, keeping the patch shape.

    ``s > 1`` magnifies (a random ``1/s`` crop resized up); ``s < 1`` shrinks (the patch is
    mirror-padded to ``1/s`` its size, then resized down).  Mirrored labels get new ids, so a nucleus
    cut by the border and its mirror image stay two objects.  Image bilinear, labels nearest.
    """
    from skimage.transform import resize

    h, w = y.shape
    sh, sw = max(1, int(round(h / s))), max(1, int(round(w / s)))
    if s >= 1:
        oy, ox = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
        xs, ys = x[oy:oy + sh, ox:ox + sw], y[oy:oy + sh, ox:ox + sw]
    else:
        py, px = sh - h, sw - w
        top, left = int(rng.integers(0, py + 1)), int(rng.integers(0, px + 1))
        pad = ((top, py - top), (left, px - left))
        xs = np.pad(x, pad + ((0, 0),) * (x.ndim - 2), mode="symmetric")
        ys = np.pad(y, pad, mode="symmetric").astype(np.int64)
        ry = np.pad(np.zeros(h, np.int64), pad[0], mode="constant", constant_values=0)
        ry[:top], ry[top + h:] = 1, 2
        rx = np.pad(np.zeros(w, np.int64), pad[1], mode="constant", constant_values=0)
        rx[:left], rx[left + w:] = 1, 2
        region = 3 * ry[:, None] + rx[None, :]
        ys = np.where(ys > 0, ys + region * (int(y.max()) + 1), 0)
    xo = resize(xs, x.shape, order=1, preserve_range=True, anti_aliasing=s < 1).astype(np.float32)
    yo = resize(ys, y.shape, order=0, preserve_range=True, anti_aliasing=False).astype(y.dtype if s >= 1 else np.int32)
    return xo, yo


def _make_augmenter(seed: int, *, intensity: bool = True, noise: float = 0.02,
                    scale: tuple[float, float] | None = None):
    """Random 90° rotations, flips, intensity scale/shift, a little Gaussian noise and, with ``scale``
    = (lo, hi), a random zoom drawn log-uniformly from [lo, hi] (seeded)."""
    rng = np.random.default_rng(seed)
    if scale is not None:
        lo, hi = (float(v) for v in scale)
        if not 0 < lo <= hi:
            raise InputError(f"augment scale must be (lo, hi) with 0 < lo <= hi, got {scale!r}.")

    def augment(x, y):
        k = int(rng.integers(4))
        x, y = np.rot90(x, k, axes=(0, 1)), np.rot90(y, k, axes=(0, 1))
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        if scale is not None and hi > lo:
            s = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            if abs(np.log(s)) > 0.02:
                x, y = _zoom_pair(np.asarray(x), np.asarray(y), s, rng)
        if intensity:
            x = x * np.float32(rng.uniform(0.6, 1.4)) + np.float32(rng.uniform(-0.2, 0.2))
        if noise > 0:
            x = x + rng.normal(0, noise * rng.random(), size=x.shape).astype(np.float32)
        return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y)

    return augment


def _max_object_px(labels: list[np.ndarray]) -> int:
    """Object size the model is expected to return: the 99.9th percentile of the training objects'
    extents (bounding-box side, px) with a 25 % margin (the runner sizes its tile overlap from it)."""
    from scipy import ndimage as ndi

    extents = [max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start)
               for y in labels for sl in ndi.find_objects(y) if sl is not None]
    if not extents:
        return 32
    return int(np.ceil(1.25 * max(8.0, float(np.percentile(extents, 99.9)))))


def train_stardist(
    images: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[np.ndarray] | np.ndarray,
    *,
    validation: float | tuple[Sequence[np.ndarray], Sequence[np.ndarray]] = 0.15,
    n_rays: int = 32,
    grid: tuple[int, int] = (2, 2),
    epochs: int = 100,
    steps_per_epoch: int = 100,
    patch_size: tuple[int, int] = (256, 256),
    batch_size: int = 4,
    learning_rate: float = 3e-4,
    unet_n_depth: int = 3,
    unet_n_filter_base: int = 32,
    net_conv_after_unet: int = 128,
    augment: bool | dict = True,
    percentiles: tuple[float, float] = (1.0, 99.8),
    joint_channels: bool | None = None,
    rgb_to: str | None = None,
    init: str | os.PathLike | StarDistBackend | None = None,
    basedir: str | os.PathLike = "models",
    name: str = "stardist",
    mpp: float | None = None,
    modality: str | None = None,
    description: str | None = None,
    optimize_thresholds: bool = True,
    overwrite: bool = False,
    seed: int = 0,
    n_threads: int | None = None,
    verbose: bool = False,
) -> StarDistBackend:
    """Train a StarDist 2-D model (or fine-tune one) and return it as a backend.

    Images are percentile-normalised exactly as :class:`StarDistBackend` normalises them at
    prediction time, label holes are filled, and after training the probability and NMS thresholds
    are optimised on the validation images (StarDist's ``optimize_thresholds``).  The model folder
    ``basedir/name`` holds config.json, weights_best.h5, thresholds.json and tissuegraph.json (µm/px,
    normalisation, largest object, training data and parameters).

    Parameters
    ----------
    images
        Training images, a list of (H, W) or (H, W, C) arrays (sizes may differ; every image must be at
        least ``patch_size``), or one (N, H, W[, C]) array.  All must have the same channels.
    labels
        Instance label images (integers, 0 = background), one per image with its (H, W).
    validation
        A fraction in (0, 1) of the images held out (chosen with ``seed``; at least one image), or an
        explicit ``(images, labels)`` pair.  Used for early model selection and threshold optimisation.
    n_rays, grid
        StarDist's number of radial directions and output subsampling (y, x).
    epochs, steps_per_epoch, batch_size, learning_rate
        Training length and optimiser settings (Adam; learning rate halved on validation plateaus).
    patch_size
        Training crop size (y, x); must be divisible by ``2**unet_n_depth * grid``.
    unet_n_depth, unet_n_filter_base, net_conv_after_unet
        Network size (StarDist's defaults: 3, 32, 128).
    augment
        Random 90° rotations, flips, intensity changes and noise (``True``), nothing (``False``), or a
        dict of options: ``scale=(lo, hi)`` adds a random zoom (scale jitter, log-uniform in [lo, hi]),
        ``intensity`` (bool) and ``noise`` (float, default 0.02) as above.
    percentiles, joint_channels
        Normalisation (default: (1, 99.8); channels jointly for RGB, separately otherwise).
    rgb_to
        Train a single-channel model on RGB images converted by ``'grey'`` or ``'hematoxylin'``
        (colour deconvolution; see :func:`~tissuegraph.seg.rgb_to_channel`).  Stored with the model,
        so that it converts RGB input the same way when it segments.  Single-channel images in the
        same training set (e.g. fluorescence) are used as they are.
    init
        Fine-tune from this model (name, folder or backend): its architecture is kept and its weights
        are the starting point; the architecture arguments are then ignored.
    basedir, name
        The model is written to ``basedir/name``.
    mpp
        µm/px of the training images, stored with the model (``None`` = unknown: the model then
        segments images at their native resolution).
    modality, description
        Stored in tissuegraph.json (``modality`` defaults to 'fluorescence' for 1 channel,
        'brightfield' for 3).
    optimize_thresholds
        Optimise prob/NMS thresholds on the validation images (else StarDist's defaults 0.5/0.4).
    overwrite
        Replace an existing ``basedir/name`` (otherwise an existing folder is an error).
    seed
        Seeds the validation split, the patch sampling, augmentation and network initialisation.
    n_threads
        TensorFlow threads (only effective before TensorFlow's first use in the process).
    verbose
        Show Keras' per-epoch progress (otherwise it goes to the debug log).

    Returns
    -------
    StarDistBackend
        The trained model, loaded from its folder.
    """
    seed = int(seed)
    if rgb_to not in (None, "grey", "hematoxylin"):
        raise InputError(f"rgb_to must be None, 'grey' or 'hematoxylin', got {rgb_to!r}.")
    X, Y, n_ch = _check_pairs(images, labels, "training", rgb_to=rgb_to)
    if isinstance(validation, tuple) or (isinstance(validation, list) and len(validation) == 2
                                         and not np.isscalar(validation[0])):
        if len(validation) != 2:
            raise InputError("validation must be a fraction or an (images, labels) pair.")
        X_val, Y_val, n_ch_val = _check_pairs(validation[0], validation[1], "validation", rgb_to=rgb_to)
        if n_ch_val != n_ch:
            raise InputError(f"validation images have {n_ch_val} channel(s) but training images have {n_ch}.")
    else:
        frac = float(check_positive(validation, "validation (fraction)"))
        if not 0 < frac < 1:
            raise InputError(f"validation must be a fraction in (0, 1) or an (images, labels) pair, got "
                             f"{validation!r}.")
        if len(X) < 2:
            raise InputError("Need at least 2 images to split off a validation fraction; pass "
                             "validation=(images, labels) explicitly.")
        order = np.random.default_rng(seed).permutation(len(X))
        n_val = min(len(X) - 1, max(1, int(round(frac * len(X)))))
        val_idx, tr_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        X_val, Y_val = [X[i] for i in val_idx], [Y[i] for i in val_idx]
        X, Y = [X[i] for i in tr_idx], [Y[i] for i in tr_idx]

    for key, val in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch), ("batch_size", batch_size),
                     ("n_rays", n_rays), ("unet_n_depth", unet_n_depth),
                     ("unet_n_filter_base", unet_n_filter_base)):
        check_positive(val, key, integer=True)
    check_positive(learning_rate, "learning_rate")
    grid = tuple(int(g) for g in np.broadcast_to(np.asarray(grid), (2,)))
    patch_size = tuple(int(p) for p in np.broadcast_to(np.asarray(patch_size), (2,)))
    if any(g < 1 or (g & (g - 1)) for g in grid):
        raise InputError(f"grid entries must be powers of 2, got {grid}.")

    init_folder = None
    if init is not None:
        init_folder = init.folder if isinstance(init, StarDistBackend) else _resolve_model(init, allow_download=True)[0]
        init_config = _check_model_folder(init_folder, need_thresholds=False)
        if int(init_config.get("n_channel_in", 1)) != n_ch:
            raise InputError(f"init model {init_folder} takes {init_config.get('n_channel_in', 1)} channel(s) "
                             f"but the training images have {n_ch}.")
        grid = tuple(int(g) for g in init_config["grid"])
        unet_n_depth = int(init_config.get("unet_n_depth", 3))
    div = 2 ** int(unet_n_depth) * max(grid)
    if any(p % div for p in patch_size):
        raise InputError(f"patch_size {patch_size} must be divisible by 2**unet_n_depth * grid = {div}.")
    for what, XX in (("training", X), ("validation", X_val)):
        for i, x in enumerate(XX):
            if x.shape[0] < patch_size[0] or x.shape[1] < patch_size[1]:
                raise InputError(f"{what} image {i} of shape {x.shape[:2]} is smaller than patch_size "
                                 f"{patch_size}; crop/pad it or reduce patch_size.")

    folder = Path(basedir).expanduser() / name
    if folder.exists():
        if not overwrite:
            raise InputError(f"Model folder {folder} already exists; pass overwrite=True or another name.")
        shutil.rmtree(folder)

    joint = (n_ch == 3) if joint_channels is None else bool(joint_channels)
    pcts = (float(percentiles[0]), float(percentiles[1]))
    from stardist import fill_label_holes

    Xn = [_normalise(x, pcts, joint) for x in X]
    Xv = [_normalise(x, pcts, joint) for x in X_val]
    Yn = [fill_label_holes(y.astype(np.int32)) for y in Y]
    Yv = [fill_label_holes(y.astype(np.int32)) for y in Y_val]

    tf = _init_tensorflow(n_threads)
    import keras
    from stardist.models import Config2D, StarDist2D

    keras.utils.set_random_seed(seed)
    tf.random.set_seed(seed)
    if init_folder is not None:
        config_dict = dict(init_config)
        for k in ("n_dim", "n_channel_out"):
            config_dict.pop(k, None)
        config_dict.update(train_patch_size=patch_size, train_batch_size=int(batch_size),
                           train_learning_rate=float(learning_rate), train_epochs=int(epochs),
                           train_steps_per_epoch=int(steps_per_epoch), train_tensorboard=False)
        axes = config_dict.pop("axes", "YXC")
        n_rays = int(config_dict.pop("n_rays"))
        config = Config2D(axes=axes, n_rays=n_rays, **config_dict)
    else:
        config = Config2D(
            n_rays=int(n_rays), grid=grid, n_channel_in=n_ch, train_patch_size=patch_size,
            train_batch_size=int(batch_size), train_learning_rate=float(learning_rate),
            train_epochs=int(epochs), train_steps_per_epoch=int(steps_per_epoch),
            unet_n_depth=int(unet_n_depth), unet_n_filter_base=int(unet_n_filter_base),
            net_conv_after_unet=int(net_conv_after_unet), train_tensorboard=False,
            train_n_val_patches=int(min(64, max(len(Xv), 4 * len(Xv)))),
            train_reduce_lr={"factor": 0.5, "patience": max(5, int(epochs) // 10), "min_delta": 0},
        )
    with _quiet_stdout("StarDist model set-up"):
        model = StarDist2D(config, name=name, basedir=str(folder.parent))
    if init_folder is not None:
        model.keras_model.load_weights(str(_weights_file(init_folder)))
        logger.info("Fine-tuning from %s.", init_folder)

    logger.info("Training StarDist %s: %d training / %d validation image(s), %d epochs x %d steps, "
                "patches %s, grid %s, seed %d.", name, len(Xn), len(Xv), epochs, steps_per_epoch,
                patch_size, grid, seed)
    if isinstance(augment, dict):
        unknown = set(augment) - {"scale", "intensity", "noise"}
        if unknown:
            raise InputError(f"Unknown augment option(s) {sorted(unknown)}; use scale, intensity, noise.")
        augmenter = _make_augmenter(seed, **augment)
    else:
        augmenter = _make_augmenter(seed) if augment else None
    t0 = time.perf_counter()
    with timed(f"training StarDist model {name}"):
        ctx = _quiet_stdout("keras training") if not verbose else contextlib.nullcontext()
        with ctx, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*shuffle=True.*")
            history = model.train(Xn, Yn, validation_data=(Xv, Yv), augmenter=augmenter, seed=seed,
                                  epochs=int(epochs), steps_per_epoch=int(steps_per_epoch))
    train_seconds = time.perf_counter() - t0
    if optimize_thresholds:
        with timed("optimising StarDist thresholds on the validation images"), _quiet_stdout("thresholds"):
            model.optimize_thresholds(Xv, Yv, predict_kwargs={"verbose": 0, "n_tiles": None,
                                                              "show_tile_progress": False})
    else:
        with open(folder / "thresholds.json", "w", encoding="utf-8") as fh:
            json.dump({"prob": 0.5, "nms": 0.4}, fh)

    # keep only the best weights (small, self-contained model folder)
    for extra in ("weights_last.h5", "weights_now.h5"):
        if (folder / extra).exists():
            (folder / extra).unlink()
    if (folder / "logs").is_dir():
        shutil.rmtree(folder / "logs")

    from .. import __version__

    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    info = {
        "mpp": None if mpp is None else float(check_positive(mpp, "mpp")),
        "modality": modality or ("brightfield" if rgb_to == "hematoxylin" or n_ch == 3 else
                                 "fluorescence" if n_ch == 1 else "multichannel"),
        "rgb_to": rgb_to,
        "description": description or "",
        "normalize": {"percentiles": list(pcts), "joint_channels": joint},
        "max_object_px": _max_object_px(Yn + Yv),
        "training": {
            "n_train_images": len(Xn), "n_val_images": len(Xv), "epochs": int(epochs),
            "steps_per_epoch": int(steps_per_epoch), "batch_size": int(batch_size),
            "patch_size": list(patch_size), "learning_rate": float(learning_rate), "augment": (dict(augment) if isinstance(augment, dict) else bool(augment)),
            "seed": seed, "init": None if init_folder is None else str(init_folder),
            "seconds": round(train_seconds, 1),
            "val_loss": [round(v, 5) for v in hist.get("val_loss", [])],
            "loss": [round(v, 5) for v in hist.get("loss", [])],
            "tissuegraph_version": __version__,
        },
    }
    with open(folder / TG_INFO_FILE, "w", encoding="utf-8") as fh:
        json.dump(info, fh, indent=2)
    logger.info("StarDist model written to %s (%.0f s of training).", folder, train_seconds)
    return StarDistBackend(folder, name=name, n_threads=n_threads)
