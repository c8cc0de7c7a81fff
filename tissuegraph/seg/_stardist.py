"""StarDist nuclei segmentation backend (pretrained, shipped or user-trained models).

TensorFlow, csbdeep and stardist are imported only inside the functions that need them, so importing
this module stays light.  A backend object holds the model folder; the Keras network is built on first
use (and is dropped when the backend is pickled, so that it can be sent to worker processes).

The two phases of StarDist are exposed separately so a tiled runner can pipeline them:

``predict(image)``
    percentile normalisation + the network (TensorFlow): object probability and radial distances at
    the model's grid (:class:`StarDistPrediction`).
``postprocess(raw)``
    non-maximum suppression + polygon rendering (numpy / C, no TensorFlow): labels and scores.

``segment(image, mpp=...) == postprocess(predict(image, mpp=...))``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._errors import DependencyError, InputError, WeightsUnavailableError
from .._logging import logger
from .._settings import settings
from .._validate import check_image, check_positive

__all__ = [
    "StarDistBackend",
    "AutoStarDistBackend",
    "default_model_available",
    "StarDistPrediction",
    "load_stardist",
    "stardist_models",
    "rgb_to_channel",
    "PRETRAINED_STARDIST_MODELS",
]

#: StarDist's registered 2-D pretrained models (downloaded by ``stardist`` from GitHub releases).
PRETRAINED_STARDIST_MODELS: dict[str, str] = {
    "2D_versatile_fluo": "https://github.com/stardist/stardist-models/releases/download/v0.1/"
                         "python_2D_versatile_fluo.zip",
    "2D_versatile_he": "https://github.com/stardist/stardist-models/releases/download/v0.1/"
                       "python_2D_versatile_he.zip",
    "2D_paper_dsb2018": "https://github.com/stardist/stardist-models/releases/download/v0.1/"
                        "python_2D_paper_dsb2018.zip",
    "2D_demo": "https://github.com/stardist/stardist-models/releases/download/v0.1/python_2D_demo.zip",
}
_ALIASES = {
    "Versatile (fluorescent nuclei)": "2D_versatile_fluo",
    "Versatile (H&E nuclei)": "2D_versatile_he",
    "DSB 2018 (from StarDist 2D paper)": "2D_paper_dsb2018",
}

#: Models that ship inside the package (``tissuegraph/seg/models/<name>``), trained by
#: ``benchmarks/train_stardist_models.py`` on CC0 data; the offline defaults.
SHIPPED_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODELS = {"fluorescence": "tg_dsb2018_fluo", "brightfield": "tg_nuinsseg_he"}

TG_INFO_FILE = "tissuegraph.json"
_WEIGHT_PATTERNS = ("*.h5", "*.hdf5")
_DEFAULT_PERCENTILES = (1.0, 99.8)
_MAX_TILE_PX = 2048  # images larger than this (per side) are predicted in tiles by StarDist itself
_TTA_CHOICES = (1, 2, 4, 8)  # identity; + horizontal flip; + vertical flips; + transposes (all of D4)


# ----------------------------------------------------------------------------------------------------
# TensorFlow set-up
# ----------------------------------------------------------------------------------------------------
_TF_CONFIGURED = False


def _tf_threads(n_threads: int | None) -> int:
    if n_threads is None:
        env = os.environ.get("TISSUEGRAPH_TF_THREADS")
        n_threads = int(env) if env else min(os.cpu_count() or 1, 8)
    return max(1, int(n_threads))


def _init_tensorflow(n_threads: int | None = None):
    """Import TensorFlow quietly and bound its thread pools (only possible before TF's first use)."""
    global _TF_CONFIGURED
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from .._compat import before_tensorflow

    before_tensorflow()
    try:
        import tensorflow as tf
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise DependencyError("The StarDist backend needs TensorFlow: pip install tensorflow-cpu "
                              "(Linux) or tensorflow, and stardist.") from exc
    if not _TF_CONFIGURED:
        n = _tf_threads(n_threads)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, n))
            logger.debug("TensorFlow limited to %d intra-op thread(s).", n)
        except RuntimeError:  # TF already initialised by someone else: keep its settings
            logger.debug("TensorFlow already initialised; thread settings left unchanged.")
        _TF_CONFIGURED = True
    return tf


def _import_stardist():
    _init_tensorflow()
    try:
        from stardist.models import StarDist2D
    except ImportError as exc:  # pragma: no cover
        raise DependencyError("The StarDist backend needs the 'stardist' and 'csbdeep' packages: "
                              "pip install stardist csbdeep.") from exc
    return StarDist2D


@contextlib.contextmanager
def _quiet_stdout(what: str):
    """StarDist/csbdeep print to stdout; send that to the debug log instead."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    text = buf.getvalue().strip()
    if text:
        logger.debug("%s: %s", what, text.replace("\n", " | "))


# ----------------------------------------------------------------------------------------------------
# Model folders
# ----------------------------------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} {path} is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must hold a JSON object, got {type(data).__name__}.")
    return data


def _weights_file(folder: Path) -> Path | None:
    files = [f for pat in _WEIGHT_PATTERNS for f in folder.glob(pat)]
    if not files:
        return None
    for preferred in ("weights_best.h5", "weights_best.weights.h5"):
        if (folder / preferred).is_file():
            return folder / preferred
    best = [f for f in files if "best" in f.name]
    return sorted(best or files, key=lambda f: f.stat().st_mtime)[-1]


def _check_model_folder(folder: Path, *, need_thresholds: bool = True) -> dict:
    """Validate a StarDist 2-D model folder and return its config; clear errors when incomplete."""
    if not folder.is_dir():
        raise WeightsUnavailableError(f"StarDist model folder {folder} does not exist.")
    config_path = folder / "config.json"
    missing = []
    if not config_path.is_file():
        missing.append("config.json (the network configuration)")
    if _weights_file(folder) is None:
        missing.append("weights_best.h5 or *.weights.h5 (the trained weights)")
    if need_thresholds and not (folder / "thresholds.json").is_file():
        missing.append("thresholds.json (probability and NMS thresholds; or pass prob_thresh= and "
                       "nms_thresh= explicitly)")
    if missing:
        raise WeightsUnavailableError(
            f"Incomplete StarDist model folder {folder}: missing {'; '.join(missing)}. A StarDist model "
            "folder holds config.json, the weights file and thresholds.json, exactly as StarDist writes "
            "them (copy the whole folder).")
    config = _read_json(config_path, "StarDist config")
    if config.get("n_dim", 2) != 2 or "n_rays" not in config or "grid" not in config:
        raise InputError(f"{config_path} is not a StarDist 2-D configuration (needs n_dim=2, n_rays, grid).")
    return config


def _keras_cache_dir() -> Path:
    base = os.environ.get("KERAS_HOME")
    if base:
        return Path(base)
    home = Path(os.path.expanduser("~")) / ".keras"
    return home if os.access(home.parent, os.W_OK) else Path("/tmp") / ".keras"


def _find_folder_with_config(root: Path, max_depth: int = 3) -> Path | None:
    if not root.is_dir():
        return None
    if (root / "config.json").is_file():
        return root
    if max_depth == 0:
        return None
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        found = _find_folder_with_config(child, max_depth - 1)
        if found is not None:
            return found
    return None


def _pretrained_search_dirs(key: str) -> list[Path]:
    return [
        Path(settings.cache_dir) / "stardist" / key,
        _keras_cache_dir() / "models" / "StarDist2D" / key,
    ]


def _cached_pretrained(key: str) -> Path | None:
    for root in _pretrained_search_dirs(key):
        folder = _find_folder_with_config(root)
        if folder is not None and _weights_file(folder) is not None:
            return folder
    return None


def _network_available(host: str = "github.com", port: int = 443, timeout: float = 3.0) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _download_pretrained(key: str) -> Path:
    """Download a registered StarDist model into the Keras cache (StarDist's own mechanism)."""
    if not _network_available():
        raise OSError("no connection to github.com (checked with a 3 s timeout)")
    _init_tensorflow()
    from csbdeep.models.pretrained import get_model_folder
    from stardist.models import StarDist2D

    with _quiet_stdout("stardist download"):
        return Path(get_model_folder(StarDist2D, key))


def _offline_message(key: str, reason: str) -> str:
    searched = ", ".join(str(p) for p in _pretrained_search_dirs(key))
    shipped = ", ".join(repr(n) for n in _shipped_names()) or "none"
    return (
        f"The pretrained StarDist model {key!r} is not in the local cache and could not be downloaded "
        f"({reason}). Searched: {searched}.\n"
        "To use it on a machine without internet access:\n"
        f"  1. on a machine with internet, download {PRETRAINED_STARDIST_MODELS[key]} and unzip it (or run "
        f"python -c \"from stardist.models import StarDist2D; StarDist2D.from_pretrained('{key}')\" and "
        f"take the folder from ~/.keras/models/StarDist2D/{key}/);\n"
        f"  2. copy the model folder (config.json, weights_best.h5, thresholds.json) to this machine, e.g. "
        f"to {Path(settings.cache_dir) / 'stardist' / key} (found automatically), or anywhere else and "
        f"pass model='/path/to/{key}' (command line: --model /path/to/{key}).\n"
        f"Models shipped with tissuegraph that work offline: {shipped}."
    )


def _shipped_names() -> list[str]:
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "config.json").is_file())


def stardist_models() -> dict[str, str]:
    """Model names :func:`load_stardist` understands, with where each comes from.

    Returns
    -------
    dict
        ``{name: 'shipped' | 'cached' | 'download'}``: shipped with tissuegraph (offline), found in a
        local cache, or registered with StarDist and downloaded on first use (needs internet).
    """
    out = {name: "shipped" for name in _shipped_names()}
    for key in PRETRAINED_STARDIST_MODELS:
        out[key] = "cached" if _cached_pretrained(key) is not None else "download"
    return out


def _resolve_model(model: str | os.PathLike, *, allow_download: bool) -> tuple[Path, str]:
    """Model folder and display name for a shipped name, pretrained name/alias or a folder path."""
    text = os.fspath(model)
    key = _ALIASES.get(text, text)
    if key in _shipped_names():
        return SHIPPED_DIR / key, key
    if key in PRETRAINED_STARDIST_MODELS:
        cached = _cached_pretrained(key)
        if cached is not None:
            logger.info("Using cached StarDist model %r from %s.", key, cached)
            return cached, key
        if not allow_download:
            raise WeightsUnavailableError(_offline_message(key, "downloads disabled (allow_download=False)"))
        try:
            folder = _download_pretrained(key)
        except Exception as exc:  # any network / archive failure -> one clear message
            raise WeightsUnavailableError(_offline_message(key, f"{type(exc).__name__}: {exc}")) from exc
        found = _find_folder_with_config(folder)
        if found is None:
            raise WeightsUnavailableError(_offline_message(key, f"the download in {folder} has no config.json"))
        return found, key
    path = Path(text).expanduser()
    if path.exists():
        if path.is_file():
            raise InputError(f"model={text!r} is a file; pass the StarDist model *folder* that holds "
                             "config.json, the weights and thresholds.json.")
        return path, path.name
    known = [*_shipped_names(), *PRETRAINED_STARDIST_MODELS]
    raise InputError(f"model={text!r} is neither an existing StarDist model folder nor a known model name. "
                     f"Known names: {', '.join(known)}.")


# ----------------------------------------------------------------------------------------------------
# Backend
# ----------------------------------------------------------------------------------------------------
def rgb_to_channel(image: np.ndarray, *, how: str) -> np.ndarray:
    """One float32 channel from an RGB image: ``'grey'`` (luminance, ITU-R 709 weights) or
    ``'hematoxylin'`` (haematoxylin optical density from colour deconvolution, as
    ``skimage.color.rgb2hed``; bright where nuclei are)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"Expected an RGB image (H, W, 3), got shape {image.shape}.")
    if how == "grey":
        return image.astype(np.float32) @ np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)
    if how == "hematoxylin":
        from skimage.color import rgb2hed

        rgb = image if image.dtype == np.uint8 else np.clip(image, 0, None)
        return rgb2hed(rgb)[..., 0].astype(np.float32)
    raise InputError(f"Unknown RGB conversion {how!r}; use 'grey' or 'hematoxylin'.")


def _equal_colour_channels(image: np.ndarray) -> bool:
    """True for an (H, W, 3) or (H, W, 4) image whose colour channels are identical (grey stored as
    RGB or RGBA; an alpha channel is ignored): one of them carries all the information."""
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        return False
    c0 = image[..., 0]
    return bool(np.array_equal(c0, image[..., 1]) and np.array_equal(c0, image[..., 2]))


# ----------------------------------------------------------------------------------------------------
# test-time augmentation (flips and transposes, grid-aligned)
# ----------------------------------------------------------------------------------------------------
def _tta_transforms(n: int) -> list[tuple[bool, bool, bool]]:
    """The first ``n`` of the 8 elements of the dihedral group D4 as (transpose, flip_y, flip_x)."""
    order = [(False, False, False), (False, False, True), (False, True, False), (False, True, True),
             (True, False, False), (True, False, True), (True, True, False), (True, True, True)]
    return order[:n]


def _ray_permutation(n_rays: int, how: str) -> np.ndarray:
    """Ray index map for a mirrored image: ``dist_back = dist_mirrored[..., perm]``.

    StarDist's ray ``k`` points at angle ``phi_k = 2 pi k / n`` with ``(dy, dx) = (sin, cos)``; mirroring
    x sends ``phi -> pi - phi`` (``k -> n/2 - k``), mirroring y ``phi -> -phi`` (``k -> -k``), swapping
    the axes ``phi -> pi/2 - phi`` (``k -> n/4 - k``), all modulo ``n``.  Each is its own inverse.
    """
    k = np.arange(n_rays)
    shift = {"x": n_rays // 2, "y": 0, "t": n_rays // 4}[how]
    return (shift - k) % n_rays


def _flip_input(x: np.ndarray, axis: int) -> np.ndarray:
    """Mirror ``x`` along ``axis`` so that the network's grid stays aligned with the original one.

    Pixel ``i`` of the result is original pixel ``N - i`` (``N`` = the axis length, a multiple of the
    grid), so map cell ``j`` of the mirrored prediction sits on original grid cell ``N/g - j``.  The
    one pixel beyond the end that this needs is a reflection, as in StarDist's own padding.
    """
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, 1)
    xq = np.pad(x, pad, mode="reflect" if n > 1 else "edge")
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(n, 0, -1)
    return np.ascontiguousarray(xq[tuple(idx)])


def _unflip_map(m: np.ndarray, axis: int) -> np.ndarray:
    """Map of a mirrored input back onto the original grid (see :func:`_flip_input`): cell ``j`` takes
    cell ``M - j``.  Cell 0 has no counterpart (it gets cell 0, and is left out of the average)."""
    return np.roll(np.flip(m, axis), 1, axis)


def _tta_predict(net, x: np.ndarray, n_rays: int, n: int):
    """Average the probability and distance maps of ``net`` over ``n`` flips / transposes of ``x``.

    ``net(z) -> (prob (h, w), dist (h, w, n_rays))`` for an input ``z`` whose sides are multiples of the
    network's divisor (and so of its grid, whatever it is); ``x`` is such an input.  Each prediction is mapped back onto the original grid
    (cells shifted so that grid points coincide, rays permuted) before averaging; the few border cells a
    mirrored prediction does not cover are averaged over the predictions that do.
    """
    prob_sum = dist_sum = count = None
    for transpose, flip_y, flip_x in _tta_transforms(n):
        z = np.swapaxes(x, 0, 1) if transpose else x
        if flip_y:
            z = _flip_input(z, 0)
        if flip_x:
            z = _flip_input(z, 1)
        prob, dist = net(z)
        prob = np.asarray(prob, np.float32)
        dist = np.asarray(dist, np.float32)
        valid = np.ones(prob.shape, bool)
        for flip, axis, how in ((flip_x, 1, "x"), (flip_y, 0, "y")):  # undo in reverse order
            if flip:
                prob, valid = _unflip_map(prob, axis), _unflip_map(valid, axis)
                dist = _unflip_map(dist, axis)[..., _ray_permutation(n_rays, how)]
                valid[(slice(None), 0) if axis == 1 else 0] = False
        if transpose:
            prob, valid = prob.T, valid.T
            dist = np.swapaxes(dist, 0, 1)[..., _ray_permutation(n_rays, "t")]
        if prob_sum is None:
            prob_sum = np.zeros(prob.shape, np.float32)
            dist_sum = np.zeros(dist.shape, np.float32)
            count = np.zeros(prob.shape, np.float32)
        if prob.shape != prob_sum.shape:
            raise RuntimeError(f"test-time augmentation: map shape {prob.shape} != {prob_sum.shape}")
        w = valid.astype(np.float32)
        prob_sum += prob * w
        dist_sum += dist * w[..., None]
        count += w
    count = np.maximum(count, 1.0)
    return prob_sum / count, dist_sum / count[..., None]


@dataclass
class StarDistPrediction:
    """Raw output of :meth:`StarDistBackend.predict` (the network phase).

    Attributes
    ----------
    prob
        (h, w) float32 object probability at the model's grid (``h >= ceil(H_net / grid_y)``: the
        maps may cover the padding StarDist adds to make the input divisible by its U-Net).
    dist
        (h, w, n_rays) float32 radial distances, in network-input pixels.
    grid
        Subsampling of the maps relative to the network input, (gy, gx).
    image_shape
        (H, W) of the image the labels are rendered into (the caller's image).
    scale
        Network-input px per caller px (``!= 1`` when :meth:`StarDistBackend.predict` resampled the
        image to the model's µm/px).
    net_shape
        (H_net, W_net) of the network input before padding (``round(image_shape * scale)``).
    model
        Name of the model that predicted the maps.
    """

    prob: np.ndarray
    dist: np.ndarray
    grid: tuple[int, int]
    image_shape: tuple[int, int]
    scale: float = 1.0
    net_shape: tuple[int, int] | None = None
    model: str | None = None


def _receptive_radius(config: dict) -> int:
    """Receptive-field radius (input px) of StarDist's 2-D U-Net, from its configuration."""
    k = max(int(v) for v in config.get("unet_kernel_size", (3, 3)))
    half = (k - 1) // 2
    n_conv = int(config.get("unet_n_conv_per_depth", 2))
    pool = max(int(v) for v in config.get("unet_pool", (2, 2)))
    grid = max(int(v) for v in config.get("grid", (1, 1)))
    depth = int(config.get("unet_n_depth", 3))
    r, stride = 0, 1
    while stride < grid:  # StarDist pools the input down to the grid first (convs + max-pool)
        r += n_conv * half * stride + (2 - 1) * stride
        stride *= 2
    for _ in range(depth):  # contracting path
        r += n_conv * half * stride + (pool - 1) * stride
        stride *= pool
    r += n_conv * half * stride  # bottom
    for _ in range(depth):  # expanding path
        stride //= pool
        r += n_conv * half * stride
    if int(config.get("net_conv_after_unet", 0)) > 0:
        r += half * stride
    return int(r)


class StarDistBackend:
    """A StarDist 2-D model as a tissuegraph segmentation backend.

    Prefer :func:`load_stardist`, which also resolves model names.

    Parameters
    ----------
    folder
        StarDist model folder (config.json, weights_best.h5 / *.weights.h5, thresholds.json; optional
        tissuegraph.json with ``mpp``, ``max_object_px``, normalisation and training notes).
    name
        Display name (default: the folder name).
    mpp
        µm/px the model works at.  Default: ``mpp`` from tissuegraph.json, else ``None`` (any
        resolution: images are segmented at their own pixel size).
    prob_thresh, nms_thresh
        Override the thresholds of thresholds.json.
    max_object_px
        Largest object diameter (model px) the backend returns; the tiled runner sizes its overlap from
        it.  Default: tissuegraph.json's value, else the network's receptive-field radius.
    percentiles
        Percentile normalisation (low, high) applied to each image, StarDist's convention (1, 99.8).
    norm_range
        Fixed intensity range ``(low, high)`` used instead of per-image percentiles (scalars, or one
        value per channel).  Use :meth:`fit_normalization` on a representative image (e.g. a slide
        thumbnail) so that all tiles of a slide are normalised alike.
    channel
        For single-channel (fluorescence) models: which channel of a multi-channel image to use.
    rgb_to
        For single-channel models only: how an RGB image is turned into the model's one channel
        (never silently): ``'grey'`` (luminance) or ``'hematoxylin'`` (the haematoxylin optical
        density of a colour deconvolution, Ruifrok & Johnston: nuclei bright, eosin removed).
        Default: the model's own setting in tissuegraph.json (models trained on haematoxylin
        channels declare ``'hematoxylin'``), else ``None``: an RGB image is an error.
    rgb_to_grey
        Shorthand for ``rgb_to='grey'``.
    invert
        Single-channel models: negate the intensities (dark brightfield nuclei become bright, as in
        fluorescence).
    n_threads
        TensorFlow intra-op threads (default: env ``TISSUEGRAPH_TF_THREADS``, else up to 8 cores).
        Only effective before TensorFlow's first use in the process.
    tta
        Test-time augmentation: average the network's maps over this many mirror images of the input
        (1 = off; 2 = + horizontal flip; 4 = + vertical flips; 8 or ``True`` = all flips and
        transposes).  The maps are mapped back onto the original grid (rays permuted) before
        non-maximum suppression.  Costs ``tta`` x the network time.  Default: the model's ``tta`` in
        tissuegraph.json (chosen with its thresholds), else 1.
    stain_norm
        Stain normalisation of RGB (H&E) input to the model's training stain before anything else:
        ``'reinhard'`` or ``'macenko'`` (see :func:`tissuegraph.seg.normalize_stain`), or ``None``.  The
        reference is the model's ``stain_targets`` in tissuegraph.json (the statistics of its training
        images) unless ``stain_target`` is given.  Each image is mapped from its own stain statistics, or,
        with :meth:`calibrate` (the tiled runner), from those of the slide's calibration patches.
        Default: the model's ``stain_norm`` in tissuegraph.json (chosen with its thresholds), else ``None``.
    stain_target
        A reference from :func:`tissuegraph.seg.fit_stain_reference` (e.g. of your own training images)
        used instead of the model's; its method is used when ``stain_norm`` is not given.
    """

    def __init__(self, folder: str | os.PathLike, *, name: str | None = None, mpp: Any = "auto",
                 prob_thresh: float | None = None, nms_thresh: float | None = None,
                 max_object_px: int | None = None, percentiles: Sequence[float] | None = None,
                 norm_range: Sequence[Any] | None = None, channel: int | None = None,
                 rgb_to: str | None = "auto", rgb_to_grey: bool = False, invert: bool = False,
                 n_threads: int | None = None, tta: int | bool | None = None,
                 stain_norm: str | None = "auto", stain_target: dict | None = None):
        folder = Path(folder).expanduser().resolve()
        explicit_thresh = prob_thresh is not None and nms_thresh is not None
        self.config = _check_model_folder(folder, need_thresholds=not explicit_thresh)
        self.folder = folder
        self.name = str(name) if name is not None else folder.name
        info_path = folder / TG_INFO_FILE
        self.info: dict = _read_json(info_path, "tissuegraph model info") if info_path.is_file() else {}

        thresholds = {}
        if (folder / "thresholds.json").is_file():
            thresholds = _read_json(folder / "thresholds.json", "StarDist thresholds")
        self.prob_thresh = self._check_thresh(prob_thresh if prob_thresh is not None
                                              else thresholds.get("prob"), "prob_thresh")
        self.nms_thresh = self._check_thresh(nms_thresh if nms_thresh is not None
                                             else thresholds.get("nms"), "nms_thresh")

        if isinstance(mpp, str) and mpp == "auto":
            mpp = self.info.get("mpp")
        self.mpp: float | None = None if mpp is None else float(check_positive(mpp, "mpp"))

        self.n_channel_in = int(self.config.get("n_channel_in", 1))
        self.n_rays = int(self.config["n_rays"])
        self.grid = tuple(int(g) for g in self.config["grid"])
        if len(self.grid) != 2:
            raise InputError(f"{folder / 'config.json'}: grid must have 2 entries, got {self.grid}.")
        if self.config.get("n_classes") not in (None, 0):
            logger.info("Model %s predicts %s classes; tissuegraph uses its object channel only.",
                        self.name, self.config.get("n_classes"))
        self.context_px = _receptive_radius(self.config)
        if max_object_px is None:
            max_object_px = self.info.get("max_object_px", self.context_px)
        self.max_object_px = int(check_positive(max_object_px, "max_object_px", integer=True))

        norm = self.info.get("normalize", {})
        pcts = tuple(percentiles if percentiles is not None else norm.get("percentiles", _DEFAULT_PERCENTILES))
        if len(pcts) != 2 or not (0 <= pcts[0] < pcts[1] <= 100):
            raise InputError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {pcts}.")
        self.percentiles = (float(pcts[0]), float(pcts[1]))
        self.joint_channels = bool(norm.get("joint_channels", self.n_channel_in == 3))
        self.norm_range = None if norm_range is None else self._check_norm_range(norm_range)

        if rgb_to_grey:
            if rgb_to not in ("auto", None, "grey"):
                raise InputError(f"rgb_to_grey=True contradicts rgb_to={rgb_to!r}.")
            rgb_to = "grey"
        if isinstance(rgb_to, str) and rgb_to == "auto":
            rgb_to = None if channel is not None else self.info.get("rgb_to")
        if rgb_to not in (None, "grey", "hematoxylin"):
            raise InputError(f"rgb_to must be None, 'grey' or 'hematoxylin', got {rgb_to!r}.")
        if channel is not None and rgb_to is not None:
            raise InputError("Pass either channel= or an RGB conversion (rgb_to= / rgb_to_grey=), not both.")
        if (channel is not None or rgb_to is not None or invert) and self.n_channel_in != 1:
            raise InputError(f"channel=, rgb_to= / rgb_to_grey= and invert= apply to single-channel models only; "
                             f"{self.name} takes {self.n_channel_in} channels.")
        self.channel = None if channel is None else int(channel)
        self.rgb_to = rgb_to
        self.invert = bool(invert)
        self.n_threads = n_threads
        if tta is None:
            tta = self.info.get("tta", 1)
        if isinstance(tta, bool):
            tta = 8 if tta else 1
        if tta not in _TTA_CHOICES:
            raise InputError(f"tta must be one of {_TTA_CHOICES} (number of flips / transposes averaged; "
                             f"True = 8), got {tta!r}.")
        if tta > 1 and self.n_rays % 2:
            raise InputError(f"tta={tta} needs an even number of rays; {self.name} has {self.n_rays}.")
        if tta > 4 and (self.n_rays % 4 or self.grid[0] != self.grid[1]):
            raise InputError(f"tta={tta} (transposes) needs a square grid and a number of rays divisible "
                             f"by 4; {self.name} has grid {self.grid} and {self.n_rays} rays. Use tta=4.")
        self.tta = int(tta)
        self.stain_norm, self.stain_target = self._check_stain(stain_norm, stain_target)
        self._model = None
        self._lock = threading.Lock()

    # -- properties ---------------------------------------------------------------------------------
    @property
    def modality(self) -> str:
        """``'fluorescence'`` (1 input channel), ``'brightfield'`` (RGB) or from tissuegraph.json."""
        if "modality" in self.info:
            return str(self.info["modality"])
        return "fluorescence" if self.n_channel_in == 1 else ("brightfield" if self.n_channel_in == 3
                                                               else "multichannel")

    @property
    def model(self):
        """The ``stardist.models.StarDist2D`` object (built and loaded on first access)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    _init_tensorflow(self.n_threads)
                    StarDist2D = _import_stardist()
                    with _quiet_stdout(f"loading StarDist model {self.name}"), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model = StarDist2D(None, name=self.folder.name, basedir=str(self.folder.parent))
                    model.basedir = None  # read-only: never write into the model folder
                    self._model = model
                    logger.info("Loaded StarDist model %s (%s) from %s.", self.name, self.modality, self.folder)
        return self._model

    def __repr__(self) -> str:
        return (f"StarDistBackend(name={self.name!r}, channels={self.n_channel_in}, mpp={self.mpp}, "
                f"grid={self.grid}, prob_thresh={self.prob_thresh:.3g}, nms_thresh={self.nms_thresh:.3g}, "
                f"max_object_px={self.max_object_px}, tta={self.tta}, stain_norm={self.stain_norm!r}, "
                f"folder='{self.folder}')")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_model"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- checks -------------------------------------------------------------------------------------
    @staticmethod
    def _check_thresh(value, name):
        if value is None:
            return 0.5 if name == "prob_thresh" else 0.4
        value = float(value)
        if not 0 < value < 1:
            raise InputError(f"{name} must be in (0, 1), got {value}.")
        return value

    def _check_stain(self, stain_norm, stain_target):
        from ._stainnorm import STAIN_NORM_METHODS, _check_stats

        if isinstance(stain_norm, str) and stain_norm == "auto":
            stain_norm = stain_target["method"] if isinstance(stain_target, dict) and "method" in stain_target \
                else self.info.get("stain_norm")
        if stain_norm is None:
            if stain_target is not None:
                raise InputError("stain_target= is only used with stain_norm='reinhard' or 'macenko'.")
            return None, None
        if stain_norm not in STAIN_NORM_METHODS:
            raise InputError(f"stain_norm must be None, 'auto' or one of {STAIN_NORM_METHODS}, got {stain_norm!r}.")
        if self.n_channel_in != 3 and self.rgb_to is None:
            raise InputError(f"stain_norm={stain_norm!r} maps RGB brightfield (H&E) images; {self.name} takes "
                             f"{self.n_channel_in} channel(s) without an RGB conversion. Drop stain_norm.")
        if stain_target is None:
            stain_target = self.info.get("stain_targets", {}).get(stain_norm)
            if stain_target is None:
                raise InputError(
                    f"Model {self.name} stores no {stain_norm!r} stain reference (tissuegraph.json "
                    "'stain_targets'). Fit one on images like its training images with "
                    f"tg.seg.fit_stain_reference(images, method={stain_norm!r}) and pass stain_target=, or drop "
                    "stain_norm.", cli=f"Model {self.name} stores no {stain_norm!r} stain reference; drop "
                                       "--stain-norm or use a model that has one (e.g. tg_nuinsseg_he).")
        stain_target = _check_stats(stain_target, "stain_target")
        if stain_target["method"] != stain_norm:
            raise InputError(f"stain_target was fitted with method {stain_target['method']!r}, not "
                             f"stain_norm={stain_norm!r}.")
        return stain_norm, stain_target

    def _stain(self, image: np.ndarray, calibration: dict | None = None) -> np.ndarray:
        """``image`` mapped onto the model's training stain (only with :attr:`stain_norm`, RGB input)."""
        if self.stain_norm is None:
            return image
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or _equal_colour_channels(image):
            return image  # not colour: the channel checks that follow report what is wrong
        from ._stainnorm import normalize_stain

        source = (calibration or {}).get("stain_source")
        return normalize_stain(image[..., :3], self.stain_target, source=source)

    def _check_norm_range(self, norm_range):
        if len(norm_range) != 2:
            raise InputError(f"norm_range must be (low, high), got {norm_range!r}.")
        lo = np.asarray(norm_range[0], dtype=np.float32).reshape(-1)
        hi = np.asarray(norm_range[1], dtype=np.float32).reshape(-1)
        if lo.shape != hi.shape or lo.size not in (1, self.n_channel_in):
            raise InputError(f"norm_range needs scalars or {self.n_channel_in} value(s) per end, "
                             f"got {norm_range!r}.")
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
            raise InputError(f"norm_range must be finite with high > low, got {norm_range!r}.")
        return lo, hi

    def _channels_error(self, got: int, shape) -> InputError:
        if self.n_channel_in == 1:
            hint = ("pass one channel (image[..., k], or channel=k when loading), or convert explicitly "
                    "with rgb_to='hematoxylin' (brightfield H&E) or rgb_to_grey=True (add invert=True for "
                    "brightfield, whose nuclei are dark), or "
                    "use an H&E model such as 'tg_nuinsseg_he' / '2D_versatile_he'")
            cli = ("pick the nuclear-stain channel with --channel K (0-based), or for a brightfield H&E "
                   "image use --model tg_nuinsseg_he (or --method watershed)")
            kind = "1 channel (fluorescence)"
        elif self.n_channel_in == 3:
            hint = ("drop an alpha channel with image[..., :3]" if got == 4 else
                    "use a fluorescence model such as 'tg_dsb2018_fluo' / '2D_versatile_fluo' for "
                    "single-channel images")
            cli = ("save the image without its alpha channel" if got == 4 else
                   "use --model tg_dsb2018_fluo (or --method watershed) for single-channel images")
            kind = "3 channels (RGB brightfield, e.g. H&E)"
        else:
            hint = "pass an image with the channels the model was trained on"
            cli = "pass an image with the channels the model was trained on, or use --method watershed"
            kind = f"{self.n_channel_in} channels"
        head = (f"StarDist model {self.name!r} expects {kind}, got {got} channel(s) "
                f"(image shape {tuple(shape)}): ")
        return InputError(f"{head}{hint}.", cli=f"{head}{cli}.")

    def _to_model_channels(self, image: np.ndarray) -> np.ndarray:
        """(H, W, n_channel_in) float32, before normalisation."""
        image = check_image(image, "image")
        n_ch = 1 if image.ndim == 2 else image.shape[2]
        x = image.astype(np.float32, copy=False)
        if self.n_channel_in == 1:
            if self.channel is not None:
                if not -n_ch <= self.channel < n_ch:
                    raise InputError(f"channel={self.channel} is out of range for an image with {n_ch} "
                                     f"channel(s) (shape {image.shape}).")
                x = x if x.ndim == 2 else x[..., self.channel]
            elif self.rgb_to is not None and n_ch != 1:
                if n_ch != 3:
                    raise InputError(f"rgb_to={self.rgb_to!r} needs an RGB image (H, W, 3), got shape "
                                     f"{image.shape}" + (" (drop alpha with image[..., :3])" if n_ch == 4 else "")
                                     + ".")
                x = rgb_to_channel(image, how=self.rgb_to)
            elif n_ch != 1 and _equal_colour_channels(image):
                x = x[..., 0]  # grey stored as RGB(A) with equal channels (many microscopes, DSB 2018)
            elif n_ch != 1:
                raise self._channels_error(n_ch, image.shape)
            x = x.reshape(x.shape[0], x.shape[1])
            if self.invert:
                x = -x
            return x[..., None]
        if n_ch != self.n_channel_in:
            raise self._channels_error(n_ch, image.shape)
        return x

    # -- normalisation --------------------------------------------------------------------------------
    def percentile_range(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) intensities at :attr:`percentiles` of ``image`` (after stain normalisation and
        channel selection)."""
        x = self._to_model_channels(self._stain(image))
        if self.joint_channels:
            lo, hi = np.percentile(x, self.percentiles)
            return np.atleast_1d(np.float32(lo)), np.atleast_1d(np.float32(hi))
        lo, hi = np.percentile(x.reshape(-1, x.shape[-1]), self.percentiles, axis=0)
        return lo.astype(np.float32), hi.astype(np.float32)

    def fit_normalization(self, image: np.ndarray) -> StarDistBackend:
        """Fix the normalisation range to ``image``'s percentiles (e.g. a slide thumbnail); returns self.

        Without it every image (tile) is normalised by its own percentiles, as StarDist does, which
        makes tiles of the same slide that hold few nuclei look brighter than their neighbours.
        """
        lo, hi = self.percentile_range(image)
        if np.any(hi <= lo):
            raise InputError("The image is constant (its low and high percentiles are equal); pick an "
                             "image that contains nuclei.")
        self.norm_range = (lo, hi)
        return self

    def calibrate(self, patches: Sequence[np.ndarray]) -> dict:
        """Slide-wide normalisation from representative patches (used by the tiled runner).

        Returns ``{'norm_low': ..., 'norm_high': ...}``: the :attr:`percentiles` of all patches'
        pixels together; pass it as ``calibration=`` to :meth:`segment` / :meth:`predict` so that
        every tile of a slide is normalised alike (independent of the tile size).  With
        :attr:`stain_norm`, also ``'stain_source'``: the patches' pooled stain statistics, from which
        every tile is mapped (percentiles then measured on the mapped patches).
        """
        patches = list(patches)
        if not patches:
            raise InputError("calibrate() needs at least one patch.")
        extra = {}
        if self.stain_norm is not None:
            from ._stainnorm import stain_reference_of

            rgb = [np.asarray(p)[..., :3] for p in patches
                   if np.ndim(p) == 3 and np.shape(p)[2] in (3, 4) and not _equal_colour_channels(np.asarray(p))]
            source = stain_reference_of(rgb, self.stain_norm) if rgb else None
            if source is not None:
                extra["stain_source"] = source
        xs = [self._to_model_channels(self._stain(p, extra)) for p in patches]
        flat = np.concatenate([x.reshape(-1, x.shape[-1]) for x in xs], axis=0)
        if self.joint_channels:
            lo, hi = np.percentile(flat, self.percentiles)
            lo, hi = np.atleast_1d(np.float32(lo)), np.atleast_1d(np.float32(hi))
        else:
            lo, hi = (v.astype(np.float32) for v in np.percentile(flat, self.percentiles, axis=0))
        if np.any(hi <= lo):
            logger.warning("%s: the calibration patches are constant; falling back to per-tile "
                           "percentile normalisation.", self.name)
            return extra
        return {"norm_low": lo, "norm_high": hi, **extra}

    def _calibrated_range(self, calibration: dict | None):
        if not calibration or ("stain_source" in calibration and "norm_low" not in calibration):
            return self.norm_range
        try:
            return self._check_norm_range((calibration["norm_low"], calibration["norm_high"]))
        except KeyError as exc:
            raise InputError(f"calibration must be the dict returned by calibrate(), with 'norm_low' and "
                             f"'norm_high'; got keys {sorted(calibration)}.") from exc

    def normalize(self, image: np.ndarray, *, calibration: dict | None = None) -> np.ndarray:
        """The network input: (H, W, n_channel_in) float32, normalised by ``calibration`` (see
        :meth:`calibrate`), else :attr:`norm_range`, else the image's own percentiles (after stain
        normalisation with :attr:`stain_norm`)."""
        x = self._to_model_channels(self._stain(image, calibration))
        norm_range = self._calibrated_range(calibration)
        if norm_range is not None:
            lo, hi = norm_range
        elif self.joint_channels:
            lo, hi = (np.float32(v) for v in np.percentile(x, self.percentiles))
        else:
            lo, hi = np.percentile(x.reshape(-1, x.shape[-1]), self.percentiles, axis=0)
        lo = np.asarray(lo, dtype=np.float32)
        hi = np.asarray(hi, dtype=np.float32)
        return ((x - lo) / (hi - lo + np.float32(1e-20))).astype(np.float32, copy=False)

    # -- the two phases -------------------------------------------------------------------------------
    def _scale_for(self, mpp: float | None) -> float:
        if mpp is None or self.mpp is None:
            return 1.0
        mpp = float(check_positive(mpp, "mpp"))
        scale = mpp / self.mpp  # network px per image px
        return 1.0 if abs(scale - 1.0) < 1e-3 else scale

    def predict(self, image: np.ndarray, *, mpp: float | None = None,
                calibration: dict | None = None) -> StarDistPrediction:
        """Network phase: normalise ``image`` and predict probability and distance maps.

        Parameters
        ----------
        image
            (H, W) or (H, W, C) image; channels must match the model (see the class parameters).
        mpp
            µm/px of ``image``.  When both it and the model's :attr:`mpp` are known and differ, the
            image is resampled to the model's resolution here and the labels are rendered back at the
            image's own resolution by :meth:`postprocess`.
        calibration
            Slide-wide normalisation from :meth:`calibrate` (default: the image's own percentiles).
        """
        x = self.normalize(image, calibration=calibration)
        shape = x.shape[:2]
        scale = self._scale_for(mpp)
        if scale != 1.0:
            from scipy.ndimage import zoom

            x = zoom(x, (scale, scale, 1), order=1)
            if min(x.shape[:2]) < 1:
                raise InputError(f"image of shape {shape} is too small to resample by {scale:.3g}.")
        net_shape = (int(x.shape[0]), int(x.shape[1]))
        model = self.model

        def net(z):
            if max(z.shape[:2]) <= _MAX_TILE_PX:
                # a direct (eager) call: no tf.function retracing for each new tile shape
                out = model.keras_model([np.ascontiguousarray(z[None])], training=False)
                return np.asarray(out[0])[0, ..., 0], np.asarray(out[1])[0]
            # large input: StarDist's own overlapping tiles
            n_tiles = tuple(max(1, math.ceil(n / _MAX_TILE_PX)) for n in z.shape[:2]) + (1,)
            return model.predict(z, axes="YXC", n_tiles=n_tiles, show_tile_progress=False, verbose=0)[:2]

        with self._lock, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if max(net_shape) <= _MAX_TILE_PX or self.tta > 1:
                # as StarDist's predict_instances: pad at the end to a multiple of the network's
                # divisor and keep the padded maps (candidates are filtered to the image later)
                div = self._div_by()
                pad = [(0, (-n) % d) for n, d in zip(net_shape, div)] + [(0, 0)]
                xp = np.pad(x, pad, mode="reflect") if any(p[1] for p in pad) else x
                if self.tta > 1:
                    prob, dist = _tta_predict(net, xp, self.n_rays, self.tta)
                else:
                    prob, dist = net(xp)
            else:  # large input: StarDist pads and crops the maps itself
                prob, dist = net(x)
        return StarDistPrediction(prob=np.asarray(prob, dtype=np.float32),
                                  dist=np.asarray(dist, dtype=np.float32), grid=self.grid,
                                  image_shape=(int(shape[0]), int(shape[1])), scale=scale,
                                  net_shape=net_shape, model=self.name)

    def _div_by(self) -> tuple[int, int]:
        pool = tuple(int(p) for p in self.config.get("unet_pool", (2, 2)))
        depth = int(self.config.get("unet_n_depth", 3))
        return tuple(p ** depth * g for p, g in zip(pool, self.grid))

    def postprocess(self, raw: StarDistPrediction, *, image_shape: Sequence[int] | None = None,
                    prob_thresh: float | None = None, nms_thresh: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Non-maximum suppression and polygon rendering (no TensorFlow; safe to run in parallel).

        Candidates are the map pixels with probability above ``prob_thresh`` (two grid cells from
        the border excluded, and centres inside the image), suppressed greedily by polygon overlap
        above ``nms_thresh``, exactly as StarDist's ``predict_instances``.

        Returns
        -------
        labels
            (H, W) int32, 0 = background, objects 1..n in order of decreasing score.
        scores
            (n,) float64 object probability of label ``i + 1`` at ``scores[i]``.
        """
        from stardist.geometry import polygons_to_label
        from stardist.nms import _ind_prob_thresh, non_maximum_suppression_sparse

        if not isinstance(raw, StarDistPrediction):
            raise InputError(f"raw must be the StarDistPrediction returned by predict(), got {type(raw).__name__}.")
        shape = tuple(raw.image_shape) if image_shape is None else tuple(int(s) for s in image_shape[:2])
        if len(shape) != 2 or min(shape) < 1:
            raise InputError(f"image_shape must be (H, W), got {image_shape!r}.")
        net_shape = (tuple(raw.net_shape) if raw.net_shape is not None
                     else tuple(int(round(n * raw.scale)) for n in shape))
        if raw.net_shape is not None and image_shape is not None and \
                tuple(int(round(n * raw.scale)) for n in shape) != net_shape:
            raise InputError(f"image_shape {shape} does not match the predicted image "
                             f"({raw.image_shape}).")
        lo = tuple(math.ceil(n / g) for n, g in zip(net_shape, raw.grid))
        hi = tuple(math.ceil(n / d) * d // g for n, d, g in zip(net_shape, self._div_by(), raw.grid))
        if raw.prob.ndim != 2 or not all(a <= n <= b for a, n, b in zip(lo, raw.prob.shape, hi)) or \
                raw.dist.shape[:2] != raw.prob.shape or raw.dist.ndim != 3:
            raise InputError(f"The prediction maps {raw.prob.shape} do not belong to an image of shape "
                             f"{shape} at grid {raw.grid} (expected maps of shape {lo}).")
        pt = self.prob_thresh if prob_thresh is None else self._check_thresh(prob_thresh, "prob_thresh")
        nt = self.nms_thresh if nms_thresh is None else self._check_thresh(nms_thresh, "nms_thresh")

        inds = _ind_prob_thresh(raw.prob, pt, b=2)
        points = np.stack(np.nonzero(inds), axis=1) * np.asarray(raw.grid).reshape(1, 2)
        inside = np.all(points < np.asarray(net_shape).reshape(1, 2), axis=1)
        prob = raw.prob[inds][inside]
        dist = np.maximum(raw.dist[inds][inside], 1e-3)  # as StarDist: rays must be positive
        points = points[inside]
        if len(points) == 0:
            return np.zeros(shape, np.int32), np.zeros(0, np.float64)
        points, probi, disti, _ = non_maximum_suppression_sparse(dist, prob, points, nms_thresh=nt,
                                                                 verbose=False)
        if raw.scale != 1.0:
            points = points / raw.scale
            rescale = (1.0 / raw.scale, 1.0 / raw.scale)
        else:
            rescale = (1.0, 1.0)
        if len(points) == 0:
            return np.zeros(shape, np.int32), np.zeros(0, np.float64)
        labels = polygons_to_label(disti, points, prob=probi, shape=shape, scale_dist=rescale)
        # label k+1 <-> polygon k (in NMS order, decreasing score); drop polygons fully covered by
        # higher-scoring ones (or outside the image) and renumber 1..n
        present = np.unique(labels)
        present = present[present > 0]
        lut = np.zeros(len(points) + 1, np.int32)
        lut[present] = np.arange(1, len(present) + 1, dtype=np.int32)
        labels = lut[labels]
        scores = np.asarray(probi, dtype=np.float64)[present - 1]
        return labels.astype(np.int32, copy=False), scores

    def segment(self, image: np.ndarray, *, mpp: float | None = None,
                calibration: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Segment nuclei: ``postprocess(predict(image, mpp=mpp, calibration=calibration))``.

        Returns ``(labels, scores)``: (H, W) int32 labels (0 = background) and (n,) float scores.
        """
        return self.postprocess(self.predict(image, mpp=mpp, calibration=calibration))


def _modality_key(modality: str | None) -> str:
    mod = "auto" if modality is None else str(modality).lower()
    mod = {"he": "brightfield", "h&e": "brightfield", "rgb": "brightfield", "fluo": "fluorescence"}.get(mod, mod)
    if mod not in (*DEFAULT_MODELS, "auto"):
        raise InputError(f"modality must be 'fluorescence', 'brightfield' ('he') or 'auto', got {modality!r}.")
    return mod


def default_model_available(modality: str | None = "auto") -> bool:
    """Whether a model shipped with tissuegraph (offline) covers ``modality``.

    ``'auto'`` needs both the fluorescence and the brightfield model (the modality is chosen per image).
    """
    mod = _modality_key(modality)
    shipped = _shipped_names()
    if mod == "auto":
        return all(DEFAULT_MODELS[m] in shipped for m in DEFAULT_MODELS)
    return DEFAULT_MODELS[mod] in shipped


class AutoStarDistBackend:
    """The default StarDist model for each image's modality: single-channel images go to the
    fluorescence model, RGB images to the brightfield (H&E) model.  Made by
    ``load_stardist(modality='auto')``; each model is loaded on first use."""

    name = "stardist"

    def __init__(self, **kwargs):
        allow_download = kwargs.pop("allow_download", True)
        self._backends: dict[str, StarDistBackend] = {}
        self._errors: dict[str, Exception] = {}
        for mod in DEFAULT_MODELS:  # model folders only: the networks are built on first use
            try:
                folder, name = _resolve_model(_default_name(mod), allow_download=allow_download)
                self._backends[mod] = StarDistBackend(folder, **{"name": name, **kwargs})
            except WeightsUnavailableError as exc:
                self._errors[mod] = exc
        if not self._backends:
            raise next(iter(self._errors.values()))
        probes = list(self._backends.values())
        mpps = {b.mpp for b in probes}
        self.mpp = mpps.pop() if len(mpps) == 1 else None
        if self.mpp is None and any(b.mpp is not None for b in probes):
            logger.warning("The default fluorescence and brightfield models were trained at different µm/px; "
                           "modality='auto' segments at the image's resolution. Pick a modality to use the "
                           "model's resolution.")
        self.max_object_px = max(b.max_object_px for b in probes)
        self.context_px = max(b.context_px for b in probes)

    def backend_for(self, image: np.ndarray) -> StarDistBackend:
        image = np.asarray(image)
        n_ch = 1 if image.ndim == 2 else image.shape[-1]
        if _equal_colour_channels(image):
            n_ch = 1  # grey stored as RGB(A): the fluorescence model, which reads one of the channels
        mod = {1: "fluorescence", 3: "brightfield"}.get(n_ch)
        if mod in self._errors:
            raise self._errors[mod]
        if mod is not None:
            return self._backends[mod]
        raise InputError(f"modality='auto' segments single-channel (fluorescence) or RGB (brightfield) images; "
                         f"got {n_ch} channels (shape {image.shape}). Pick one channel, or load a model for "
                         "these channels.")

    def calibrate(self, patches):
        patches = list(patches)
        return self.backend_for(patches[0]).calibrate(patches) if patches else {}

    def predict(self, image, *, mpp=None, calibration=None):
        return self.backend_for(image).predict(image, mpp=mpp, calibration=calibration)

    def postprocess(self, raw, **kwargs):
        for be in self._backends.values():
            if be.name == getattr(raw, "model", None):
                return be.postprocess(raw, **kwargs)
        raise InputError("raw does not come from this backend's predict().")

    def segment(self, image, *, mpp=None, calibration=None):
        return self.backend_for(image).segment(image, mpp=mpp, calibration=calibration)

    def __repr__(self):
        return f"AutoStarDistBackend({', '.join(f'{m}={b.name!r}' for m, b in self._backends.items())})"


def _default_name(mod: str) -> str:
    name = DEFAULT_MODELS[mod]
    if name in _shipped_names():
        return name
    return "2D_versatile_he" if mod == "brightfield" else "2D_versatile_fluo"


def load_stardist(model: str | os.PathLike | None = None, *, modality: str | None = None,
                  allow_download: bool = True, **kwargs) -> StarDistBackend:
    """Load a StarDist model as a segmentation backend.

    Parameters
    ----------
    model
        One of

        - a model shipped with tissuegraph (offline): ``'tg_dsb2018_fluo'`` (fluorescence) and
          ``'tg_nuinsseg_he'`` (H&E, 0.5 µm/px, trained on NuInsSeg, CC BY 4.0); see
          :func:`stardist_models`;
        - a StarDist pretrained name (``'2D_versatile_he'``, ``'2D_versatile_fluo'``,
          ``'2D_paper_dsb2018'``): looked up in ``tg.settings.cache_dir / 'stardist' / name`` and the
          Keras cache (``$KERAS_HOME`` or ``~/.keras``, ``models/StarDist2D/name``), else downloaded
          (needs internet; offline this raises :class:`~tissuegraph.WeightsUnavailableError` that says
          how to copy the folder over);
        - the path of any StarDist 2-D model folder (config.json, weights, thresholds.json);
        - ``None``: the default model for ``modality`` (the shipped one where there is one, else
          StarDist's versatile model).
    modality
        ``'fluorescence'``, ``'brightfield'`` (``'he'``), or ``'auto'``: picks the default model when
        ``model`` is None (``'auto'`` and None choose per image by its channels, see
        :class:`AutoStarDistBackend`).  Ignored when ``model`` is given.
    allow_download
        Allow downloading a pretrained model that is not cached.
    **kwargs
        Passed to :class:`StarDistBackend` (``mpp``, ``prob_thresh``, ``nms_thresh``, ``channel``,
        ``rgb_to``, ``rgb_to_grey``, ``invert``, ``norm_range``, ``max_object_px``, ``n_threads`` ...).

    Returns
    -------
    StarDistBackend
    """
    if model is None:
        mod = _modality_key(modality)
        if mod == "auto":
            return AutoStarDistBackend(allow_download=allow_download, **kwargs)
        model = _default_name(mod)
    elif isinstance(model, (StarDistBackend, AutoStarDistBackend)):
        return model
    elif not isinstance(model, (str, os.PathLike)):
        raise InputError(f"model must be a model name or a folder path, got {type(model).__name__}.")
    else:
        _modality_key(modality)  # still validate the argument
    folder, name = _resolve_model(model, allow_download=allow_download)
    kwargs.setdefault("name", name)
    return StarDistBackend(folder, **kwargs)
