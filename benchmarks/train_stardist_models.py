"""Train the StarDist models that ship with tissuegraph (``tissuegraph/seg/models/``).

The exact commands used for the shipped models are recorded in ``tissuegraph/seg/models/README.md``.

    # fluorescence model, DSB 2018 stage-1 fluorescence images (CC0)
    python benchmarks/train_stardist_models.py fluo --out tissuegraph/seg/models
    # brightfield (H&E-like) model, DSB 2018 brightfield images (CC0)
    python benchmarks/train_stardist_models.py he --out tissuegraph/seg/models
    # H&E model from CRCHisto nucleus centres (research use only: for the benchmark, never shipped)
    python benchmarks/train_stardist_models.py crchisto --out /tmp/tg_models
    # shipped H&E model tg_nuinsseg_he: NuInsSeg (CC BY 4.0), split by organ, 0.5 um/px, HED + scale jitter
    python benchmarks/train_stardist_models.py nuinsseg --out RUN_DIR
    # ... an interrupted run: complete the folder from its best checkpoint
    python benchmarks/train_stardist_models.py nuinsseg --finalize RUN_DIR/tg_nuinsseg_he --no-optimize --log LOG
    # ... or continue it first for the remaining epochs (same split, augmentation and seed; a fresh optimiser),
    # then finalize the continued run with both logs (the card records the epochs of each run)
    python benchmarks/train_stardist_models.py nuinsseg --out RUN2 --init RUN_DIR/tg_nuinsseg_he --epochs 18
    python benchmarks/train_stardist_models.py nuinsseg --finalize RUN2/tg_nuinsseg_he --no-optimize \
        --log LOG LOG2 --trained-by "CMD1" "CMD2"
    # run 3 (the shipped 77-epoch weights): 50 more epochs x 100 steps from the 27-epoch weights; with
    # --add-dsb-brightfield --dsb-repeat 2 also on tg_dsb2018_he's CC0 train split (= tg_nuinsseg_dsb_he)
    python benchmarks/train_stardist_models.py nuinsseg --out RUN3 --init tissuegraph/seg/models/tg_nuinsseg_he \
        --epochs 50 --steps 100 --threads 1 [--add-dsb-brightfield --dsb-repeat 2]
    # the stain-normalisation references (Reinhard, Macenko) of the training organs' images, into the card
    python benchmarks/train_stardist_models.py nuinsseg --stain-reference tissuegraph/seg/models/tg_nuinsseg_he

Data: ``../shared/data/dsb2018/train`` (or ``$TISSUEGRAPH_SHARED_DATA/dsb2018/train``), never copied
into the package.  The split is deterministic (see :func:`dsb_split`):

- fluorescence: the first 25 fluorescence images of ``index.csv`` are the issue's reference test set;
  50 more fluorescence images are held out for testing (random, seed 0); of the rest, 10 % validate
  (early stopping + threshold optimisation) and the others train.
- brightfield: the first 20 brightfield images of ``index.csv`` are held out for testing; of the rest
  10 % validate and the others train.  The brightfield model reads the haematoxylin optical density
  (``rgb_to='hematoxylin'``) and is fine-tuned from the fluorescence model.

- crchisto: CRCHistoPhenotypes *train* images only (centres, no masks): pseudo-masks from the centres
  (:func:`tissuegraph.seg.labels_from_points` cut by the watershed foreground); 60 train / 10 validate
  (:func:`crchisto_split`); CRCHisto's validation folder stays the test set.

- nuinsseg: ``../shared/data/nuinsseg`` (665 H&E images, 31 organ folders, one slide each), split by
  organ (:func:`nuinsseg_split`: 3 human + 1 mouse organs validate, 3 + 1 more are the test set, 23
  train); images resampled from the assumed 0.25 to 0.5 µm/px, each training image plus 2 HED-jittered
  copies (:func:`hed_jitter`), scale jitter ×0.75-1.33 on the fly; fine-tuned from the fluorescence
  model on the haematoxylin density.  Thresholds are chosen on the validation organs with
  ``benchmarks/bench_seg_accuracy_nuinsseg.py choose``.

The split (image ids) is stored in each model's ``tissuegraph.json``.  Accuracy is measured by
``benchmarks/bench_seg_accuracy_stardist.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real-data folder (the library's lookup), or where it would be when it is absent."""
    from tissuegraph.datasets import shared_data_dir as lookup

    return lookup() or (REPO / ".." / "shared" / "data").resolve()


def dsb_index(data: Path):
    import pandas as pd

    return pd.read_csv(data / "dsb2018" / "train" / "index.csv")


def dsb_split(index, modality: str, *, seed: int = 0) -> dict[str, list[str]]:
    """Deterministic train / val / test split of the DSB 2018 ids of one modality."""
    ids = list(index.loc[index["modality"] == modality, "id"])
    if modality == "fluorescence":
        reference, rest = ids[:25], ids[25:]
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(rest))
        extra_test = sorted(rest[i] for i in order[:50])
        pool = sorted(rest[i] for i in order[50:])
        test = reference + extra_test
    elif modality == "brightfield":
        reference, pool = ids[:20], sorted(ids[20:])
        test = list(reference)
    else:
        raise ValueError(modality)
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(pool))
    n_val = max(1, int(round(0.1 * len(pool))))
    val = sorted(pool[i] for i in order[:n_val])
    train = sorted(pool[i] for i in order[n_val:])
    assert not set(train) & set(test) and not set(val) & set(test) and not set(train) & set(val)
    return {"reference": list(reference), "test": test, "val": val, "train": train}


def load_dsb(data: Path, ids, modality: str):
    import tifffile
    from PIL import Image

    X, Y = [], []
    for i in ids:
        img = np.asarray(Image.open(data / "dsb2018" / "train" / f"{i}.png"))
        if img.ndim == 3:
            img = img[..., :3]
        if modality == "fluorescence":
            img = img[..., 0] if img.ndim == 3 else img  # grey stored as RGB with equal channels
        X.append(img)
        Y.append(tifffile.imread(data / "dsb2018" / "train" / f"{i}_labels.tif").astype(np.int32))
    return X, Y


CRC_MPP = 0.55  # CRCHistoPhenotypes' pixel size (20x)
CRC_POINT_RADIUS_UM = (5.0, 2.0)  # (largest, core) pseudo-mask radius


CONFIGS = {
    "fluo": dict(modality="fluorescence", name="tg_dsb2018_fluo", epochs=40, steps=75, lr=1e-3,
                 description="StarDist 2-D, fluorescence nuclei; trained by tissuegraph on the DSB 2018 "
                             "stage-1 fluorescence images (BBBC038, CC0). Pixel size unknown (mpp=None)."),
    # single-channel model on the haematoxylin optical density (colour deconvolution) of brightfield
    # images, fine-tuned from the fluorescence model (haematoxylin density looks like a nuclear stain)
    "he": dict(modality="brightfield", name="tg_dsb2018_he", epochs=15, steps=75, lr=5e-4,
               rgb_to="hematoxylin", init=str(REPO / "tissuegraph" / "seg" / "models" / "tg_dsb2018_fluo"),
               description="StarDist 2-D, brightfield (H&E / haematoxylin) nuclei; input = haematoxylin "
                           "optical density of RGB images (colour deconvolution); fine-tuned by tissuegraph "
                           "from tg_dsb2018_fluo on the DSB 2018 stage-1 brightfield images (BBBC038, CC0). "
                           "Pixel size unknown (mpp=None)."),
    # CRCHistoPhenotypes (research use only: never shipped): nucleus centres only, so the masks are
    # pseudo-labels from the centres (labels_from_points, cut by the watershed foreground); trained at
    # the data's 0.55 µm/px on the haematoxylin density, fine-tuned from the shipped fluorescence model
    "crchisto": dict(modality="he", name="tg_crchisto_points", epochs=20, steps=75, lr=5e-4, mpp=CRC_MPP,
                     rgb_to="hematoxylin", init=str(REPO / "tissuegraph" / "seg" / "models" / "tg_dsb2018_fluo"),
                     description="StarDist 2-D, H&E nuclei at {mpp} um/px; input = {input}; {origin} "
                                 "CRCHistoPhenotypes train images with pseudo-masks made from the annotated "
                                 "nucleus centres (labels_from_points). CRCHisto is for research use only: "
                                 "this model must not be redistributed."),
    # NuInsSeg (CC BY 4.0, shipped): H&E instance masks of 31 organs, split by organ; trained at 0.5 µm/px
    # (images resampled from the assumed 0.25) on the haematoxylin density with stain (HED) and scale
    # jitter, fine-tuned from the shipped fluorescence model
    "nuinsseg": dict(modality="he", name="tg_nuinsseg_he", epochs=30, steps=50, lr=5e-4, mpp=0.5,
                     rgb_to="hematoxylin", init=str(REPO / "tissuegraph" / "seg" / "models" / "tg_dsb2018_fluo"),
                     patch=224, stain_copies=2, scale=(0.75, 1.33),
                     description="StarDist 2-D, H&E nuclei at {mpp} um/px; input = {input}; {origin} "
                                 "NuInsSeg (Mahbod et al., Sci Data 2024, CC BY 4.0; 23 of its 31 human and "
                                 "mouse organs, images resampled from 0.25 um/px) with stain (HED) and scale "
                                 "jitter."),
}


def crchisto_split(n: int = 70, *, seed: int = 0, n_val: int = 10) -> tuple[list[int], list[int]]:
    """Positions (in natural name order) of the CRCHisto *train* images used to train / validate.

    The same permutation as the watershed fit (``benchmarks/params/watershed.json``): its last
    ``n_val`` entries validate, the others train; CRCHisto's own validation folder is never used.
    """
    order = np.random.default_rng(seed).permutation(n)
    return sorted(int(i) for i in order[:-n_val]), sorted(int(i) for i in order[-n_val:])


def load_crchisto(data: Path, split: str):
    """(names, RGB images, (n, 2) centre arrays) of one CRCHisto folder, in natural name order."""
    from tissuegraph.datasets import load_crchisto as _load

    recs = list(_load(data / "crchisto", split=split))
    return [r.id for r in recs], [r.image for r in recs], [r.centres[["x", "y"]].to_numpy(float) for r in recs]


def rescale_to(X, P, mpp: float, target_mpp: float):
    """Resample RGB images (bilinear) and their (x, y) centres from ``mpp`` to ``target_mpp``."""
    from skimage.transform import resize

    if target_mpp == mpp:
        return X, P
    f = mpp / target_mpp
    Xo, Po = [], []
    for x, pts in zip(X, P):
        shape = (int(round(x.shape[0] * f)), int(round(x.shape[1] * f)))
        Xo.append(np.clip(resize(x, shape, order=1, preserve_range=True, anti_aliasing=f < 1), 0, 255)
                  .round().astype(np.uint8))
        # pixel centres: x_new + 0.5 = (x_old + 0.5) * (new size / old size)
        Po.append((pts + 0.5) * (np.array(shape[::-1]) / np.array(x.shape[1::-1])) - 0.5)
    return Xo, Po


def crchisto_pseudo_labels(X, P, mpp: float) -> list[np.ndarray]:
    """Pseudo instance masks from the annotated centres, cut by the classical watershed's foreground."""
    import tissuegraph as tg

    out = []
    for x, pts in zip(X, P):
        fg = tg.seg.watershed_nuclei(x, mpp=mpp, modality="he") > 0
        out.append(tg.seg.labels_from_points(pts, x.shape[:2], radius=CRC_POINT_RADIUS_UM[0],
                                             min_radius=CRC_POINT_RADIUS_UM[1], foreground=fg, mpp=mpp))
    return out


# ----------------------------------------------------------------------------------------------------
# NuInsSeg (CC BY 4.0): H&E, 31 human and mouse organs, one slide per organ
# ----------------------------------------------------------------------------------------------------
NUINSSEG_MPP = 0.25  # the data README's assumption (40x; from InstanSeg's loader, not the authors' files)
NUINSSEG_TRAIN_MPP = 0.5  # trained at 0.5 µm/px: near CRCHisto (0.55) and the synthetic slide (0.5)
NUINSSEG_CITATION = ("Mahbod A, Polak C, Feldmann K, et al. NuInsSeg: A fully annotated dataset for nuclei "
                     "instance segmentation in H&E-stained histological images. Scientific Data 11, 295 "
                     "(2024). doi:10.1038/s41597-024-03117-2")


def nuinsseg_index(data: Path):
    import pandas as pd

    return pd.read_csv(data / "nuinsseg" / "index.csv")


def nuinsseg_split(index, *, seed: int = 0, n_val: tuple[int, int] = (3, 1),
                   n_test: tuple[int, int] = (3, 1)) -> dict[str, list[str]]:
    """Split NuInsSeg **by organ** (each organ folder is one slide): ``n_val`` = (human, mouse) organ
    folders validate (early stopping, thresholds, every choice), ``n_test`` more are the test set (never
    used for training or any choice), the rest train.  Drawn with ``seed``; returns folder names."""
    rng = np.random.default_rng(seed)
    out = {"val": [], "test": [], "train": []}
    for k, species in enumerate(("human", "mouse")):
        folders = sorted(index.loc[index["species"] == species, "source_folder"].unique())
        order = [folders[i] for i in rng.permutation(len(folders))]
        out["val"] += order[:n_val[k]]
        out["test"] += order[n_val[k]:n_val[k] + n_test[k]]
        out["train"] += order[n_val[k] + n_test[k]:]
    out = {k: sorted(v) for k, v in out.items()}
    assert not (set(out["val"]) & set(out["test"])) and not (set(out["train"]) & set(out["val"] + out["test"]))
    return out


def load_nuinsseg(data: Path, folders, *, target_mpp: float | None = NUINSSEG_TRAIN_MPP):
    """(ids, RGB uint8 images, instance labels) of the NuInsSeg images of the given organ folders,
    resampled from the assumed 0.25 µm/px to ``target_mpp`` (None: native).  Label ids that are not one
    connected piece keep only their largest piece (the README's 208 fragmented ids)."""
    import tifffile
    from PIL import Image
    from skimage.transform import resize

    index = nuinsseg_index(data)
    rows = index[index["source_folder"].isin(list(folders))].sort_values("id")
    ids, X, Y = [], [], []
    for _, r in rows.iterrows():
        img = np.asarray(Image.open(data / "nuinsseg" / r["image"]).convert("RGB"))
        lab = _largest_pieces(tifffile.imread(data / "nuinsseg" / r["label"]).astype(np.int32))
        if target_mpp is not None and target_mpp != float(r["mpp"]):
            f = float(r["mpp"]) / target_mpp
            shape = (int(round(img.shape[0] * f)), int(round(img.shape[1] * f)))
            img = np.clip(resize(img, shape, order=1, preserve_range=True, anti_aliasing=f < 1), 0, 255
                          ).round().astype(np.uint8)
            lab = resize(lab, shape, order=0, preserve_range=True, anti_aliasing=False).astype(np.int32)
        ids.append(r["id"])
        X.append(img)
        Y.append(lab)
    return ids, X, Y


def write_stain_reference(folder: Path, *, data: Path, seed: int = 0, command: str = "") -> dict:
    """Fit the Reinhard and Macenko stain references (:func:`tissuegraph.seg.fit_stain_reference`) on
    the NuInsSeg images of the model's *training* organs (as recorded in its ``tissuegraph.json``, else
    :func:`nuinsseg_split`), native resolution and colours, and store them as ``stain_targets``."""
    import tissuegraph as tg

    info_path = folder / "tissuegraph.json"
    info = json.loads(info_path.read_text())
    organs = info.get("split", {}).get("train_organs") or nuinsseg_split(nuinsseg_index(data), seed=seed)["train"]
    ids, X, _ = load_nuinsseg(data, organs, target_mpp=None)
    targets = {}
    for method in ("reinhard", "macenko"):
        t0 = time.perf_counter()
        ref = tg.seg.fit_stain_reference(X, method=method, max_pixels=20000, seed=seed)
        targets[method] = dict(ref, n_images=len(ids), seconds=round(time.perf_counter() - t0, 1))
        print(method, json.dumps(targets[method]), flush=True)
    info["stain_targets"] = dict(
        targets, how=f"tg.seg.fit_stain_reference on the {len(ids)} NuInsSeg images of the {len(organs)} "
                     "training organs (native resolution, original colours, 20000 random pixels per image, "
                     f"seed {seed}); used by stain_norm='reinhard' / 'macenko'", command=command)
    info_path.write_text(json.dumps(info, indent=2))
    return targets


def _largest_pieces(lab: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    out = lab.copy()
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        m = lab[sl] == i
        cc, n = ndi.label(m, structure=np.ones((3, 3)))
        if n > 1:
            sizes = np.bincount(cc.ravel())[1:]
            out[sl][m & (cc != 1 + int(np.argmax(sizes)))] = 0
    return out


def hed_jitter(rgb: np.ndarray, rng, *, scale: float = 0.25, shift: float = 0.1, vector: float = 0.05
               ) -> np.ndarray:
    """Stain augmentation of an RGB uint8 H&E image: colour-deconvolve (haematoxylin, eosin, DAB;
    ``skimage.color.rgb2hed``), scale each stain's density by a log-uniform factor in
    [1/(1+scale), 1+scale] and shift it by up to ``shift`` × its 99th percentile, then recompose RGB
    with stain vectors perturbed by N(0, ``vector``) (so a fixed deconvolution afterwards sees some
    eosin in the haematoxylin channel, as on real slides stained differently from the reference)."""
    from skimage.color import combine_stains, rgb2hed, rgb_from_hed

    hed = rgb2hed(rgb)
    for k in range(3):
        ch = hed[..., k]
        a = float(np.exp(rng.uniform(-np.log1p(scale), np.log1p(scale))))
        b = float(rng.uniform(-shift, shift)) * float(np.percentile(ch, 99))
        hed[..., k] = np.clip(ch * a + b, 0, None)
    m = rgb_from_hed + rng.normal(0, vector, size=rgb_from_hed.shape)
    m = np.clip(m, 1e-3, None)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    out = combine_stains(hed, m)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def parse_keras_log(path: Path) -> dict[str, list[float]]:
    """Per-epoch ``loss`` / ``val_loss`` from a Keras progress log (the end-of-epoch lines)."""
    import re

    text = Path(path).read_text(errors="replace")
    out: dict[str, list[float]] = {"loss": [], "val_loss": []}
    for chunk in re.split(r"Epoch \d+/\d+", text)[1:]:
        m_val = re.findall(r"- val_loss: ([0-9.]+)", chunk)
        if not m_val:
            continue  # epoch not finished
        m_loss = re.findall(r" - loss: ([0-9.]+)", chunk.split("val_")[0])
        out["val_loss"].append(float(m_val[-1]))
        out["loss"].append(float(m_loss[-1]) if m_loss else float("nan"))
    return out


def finalize_nuinsseg(folder: Path, *, data: Path, seed: int, log: Path | list[Path] | None, command: str,
                      optimize: bool = True) -> None:
    """Turn an interrupted ``nuinsseg`` training folder (config.json + weights_best.h5, the best
    validation-loss checkpoint so far) into a complete model folder: StarDist's threshold optimisation on
    the validation organs, tissuegraph.json as :func:`tissuegraph.seg.train_stardist` writes it, and the
    other checkpoints removed.  ``log`` may name several training logs, in order: a run continued from
    the previous run's checkpoint (``--init RUN1_DIR/tg_nuinsseg_he --epochs N``); the loss histories
    are joined and the epochs counted over all runs (``epochs_per_run``)."""
    import shutil

    from tissuegraph.seg._stardist import TG_INFO_FILE, _init_tensorflow, rgb_to_channel
    from tissuegraph.seg._train import _max_object_px, _normalise

    cfg = CONFIGS["nuinsseg"]
    organs = nuinsseg_split(nuinsseg_index(data), seed=seed)
    ids, _, Y0 = load_nuinsseg(data, organs["train"], target_mpp=cfg["mpp"])
    vids, Xv, Yv = load_nuinsseg(data, organs["val"], target_mpp=cfg["mpp"])
    from stardist import fill_label_holes

    Xv = [_normalise(rgb_to_channel(x, how="hematoxylin"), (1.0, 99.8), False) for x in Xv]
    Yv = [fill_label_holes(y) for y in Yv]
    _init_tensorflow(2)
    from stardist.models import StarDist2D

    model = StarDist2D(None, name=folder.name, basedir=str(folder.parent))
    model.load_weights("weights_best.h5")
    t0 = time.time()
    if optimize:
        model.optimize_thresholds(Xv, Yv, predict_kwargs={"verbose": 0, "n_tiles": None,
                                                          "show_tile_progress": False})
    else:  # StarDist's defaults; the detection thresholds are then chosen by bench_seg_accuracy_nuinsseg.py
        (folder / "thresholds.json").write_text(json.dumps({"prob": 0.5, "nms": 0.4}))
    print(f"thresholds optimised in {time.time() - t0:.0f} s: {json.loads((folder / 'thresholds.json').read_text())}")
    for extra in ("weights_last.h5", "weights_now.h5"):
        if (folder / extra).exists():
            (folder / extra).unlink()
    if (folder / "logs").is_dir():
        shutil.rmtree(folder / "logs")
    logs = [] if log is None else ([log] if isinstance(log, (str, Path)) else list(log))
    hist: dict[str, list[float]] = {"loss": [], "val_loss": []}
    per_run = []
    for lg in logs:
        h = parse_keras_log(Path(lg))
        per_run.append(len(h["val_loss"]))
        for k in hist:
            hist[k] += h[k]
    conf = json.loads((folder / "config.json").read_text())
    n_epochs = len(hist["val_loss"])
    planned = max(int(conf["train_epochs"]), int(cfg["epochs"])) if len(logs) > 1 else int(conf["train_epochs"])
    if len(logs) > 1:
        how = (f"{n_epochs} epochs in {len(logs)} runs ({' + '.join(map(str, per_run))}; each run after the first "
               "fine-tunes from the previous run's weights_best.h5 = its last completed epoch, with a fresh "
               "optimiser and learning-rate schedule); weights = the best validation loss of the last run "
               "(weights_best.h5); ")
        if n_epochs < planned:
            how = f"training stopped by hand at the time limit after {how}"
    else:
        how = "training stopped by hand at the time limit; weights = best validation loss so far (weights_best.h5); "
    from tissuegraph import __version__

    info = {
        "mpp": cfg["mpp"], "modality": "he", "rgb_to": "hematoxylin",
        "description": cfg["description"].format(
            mpp=cfg["mpp"], input="haematoxylin optical density (colour deconvolution)",
            origin="fine-tuned by tissuegraph from tg_dsb2018_fluo on"),
        "normalize": {"percentiles": [1.0, 99.8], "joint_channels": False},
        "max_object_px": _max_object_px([fill_label_holes(y) for y in Y0] + Yv),
        "training": {
            "n_train_images": len(ids) * (1 + cfg["stain_copies"]), "n_val_images": len(vids),
            "epochs": n_epochs, "epochs_planned": planned, "epochs_per_run": per_run,
            "steps_per_epoch": int(conf["train_steps_per_epoch"]), "batch_size": int(conf["train_batch_size"]),
            "patch_size": list(conf["train_patch_size"]), "learning_rate": float(conf["train_learning_rate"]),
            "augment": {"scale": list(cfg["scale"])}, "seed": seed,
            "init": str(Path("tissuegraph/seg/models/tg_dsb2018_fluo")),
            "stopped_early": how + (
                                 "thresholds optimised afterwards (finalize_nuinsseg)" if optimize else
                                 "thresholds: StarDist's defaults until chosen on the validation organs "
                                 "(bench_seg_accuracy_nuinsseg.py choose --write-choice)"),
            "best_epoch": ((int(np.argmin(hist["val_loss"][-per_run[-1]:])) + 1 + n_epochs - per_run[-1])
                           if per_run and per_run[-1] else None),  # weights_best.h5 of the last run
            "val_loss": hist["val_loss"], "loss": hist["loss"], "tissuegraph_version": __version__,
        },
    }
    (folder / TG_INFO_FILE).write_text(json.dumps(info, indent=2))
    _write_nuinsseg_provenance(folder, data=data, seed=seed, command=command)


def _write_nuinsseg_provenance(folder: Path, *, data: Path, seed: int, command: str, dsb_ids=(),
                               dsb_note: str = "") -> None:
    """Training data note, split, command and licence/citation into tissuegraph.json (``dsb_ids`` /
    ``dsb_note``: the DSB 2018 brightfield images added with ``--add-dsb-brightfield``, kept in the split)."""
    from tissuegraph.seg._stardist import TG_INFO_FILE

    cfg = CONFIGS["nuinsseg"]
    organs = nuinsseg_split(nuinsseg_index(data), seed=seed)
    index = nuinsseg_index(data)
    info = json.loads((folder / TG_INFO_FILE).read_text())
    info["training"]["data"] = (
        f"nuinsseg (NuInsSeg, CC BY 4.0): the images of {len(organs['train'])} organ folders, resampled from "
        f"{NUINSSEG_MPP} (assumed) to {cfg['mpp']} um/px, + {cfg['stain_copies']} HED-jittered copies each "
        f"(hed_jitter, seed {seed + 7}); validation: the organ folders {organs['val']}{dsb_note}")
    info["training"]["command"] = command
    info["split"] = {
        "by": "organ folder (one slide each)",
        "train_organs": organs["train"], "val_organs": organs["val"], "test_organs": organs["test"],
        "train": sorted(index.loc[index["source_folder"].isin(organs["train"]), "id"]),
        "val": sorted(index.loc[index["source_folder"].isin(organs["val"]), "id"]),
        "test": sorted(index.loc[index["source_folder"].isin(organs["test"]), "id"]),
    }
    info["licence"] = {"weights": "CC BY 4.0 (trained on NuInsSeg, CC BY 4.0; see LICENSE.md in this folder)",
                       "data": "NuInsSeg, CC BY 4.0", "citation": NUINSSEG_CITATION}
    if len(dsb_ids):
        held = dsb_split(dsb_index(data), "brightfield", seed=seed)["test"]
        info["split"]["train"] = info["split"]["train"] + sorted(dsb_ids)
        info["split"]["dsb_brightfield_train"] = sorted(dsb_ids)
        info["split"]["dsb_brightfield_test"] = list(held)
        info["licence"]["data"] += "; DSB 2018 stage 1 brightfield images (BBBC038), CC0"
    (folder / TG_INFO_FILE).write_text(json.dumps(info, indent=2))


def _without_option(argv, option: str) -> list[str]:
    """``argv`` without ``option`` and its values (up to the next ``--option``)."""
    out, skip = [], False
    for a in argv:
        if a == option:
            skip = True
        elif skip and a.startswith("--"):
            skip = False
        if not skip:
            out.append(a)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=sorted(CONFIGS))
    p.add_argument("--out", default=str(REPO / "tissuegraph" / "seg" / "models"))
    p.add_argument("--data", default=None, help="shared data folder (default ../shared/data)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="steps per epoch")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--filters", type=int, default=32)
    p.add_argument("--conv-after", type=int, default=128)
    p.add_argument("--patch", type=int, default=None, help="patch size (default 256; nuinsseg 224)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--name", default=None)
    p.add_argument("--mpp", type=float, default=None,
                   help="crchisto: train at this µm/px (images resampled from 0.55; default 0.55)")
    p.add_argument("--rgb", action="store_true",
                   help="he/crchisto: train on the RGB image (3 channels) instead of the haematoxylin density; "
                        "from scratch unless --init names a 3-channel model")
    p.add_argument("--init", default=None, help="fine-tune from this model (name or folder)")
    p.add_argument("--finalize", default=None, metavar="FOLDER",
                   help="nuinsseg: complete an interrupted training folder from its best checkpoint "
                        "(thresholds, tissuegraph.json); --log names the training log for the loss history")
    p.add_argument("--log", default=None, nargs="+",
                   help="with --finalize: the training log(s) (Keras progress); several = a run continued "
                        "from the previous one's checkpoint (--init RUN1_DIR/tg_nuinsseg_he --epochs N), in order")
    p.add_argument("--trained-by", nargs="+", default=None, metavar="CMD",
                   help="with --finalize: the training command(s) that made the folder, recorded in tissuegraph.json")
    p.add_argument("--no-optimize", action="store_true",
                   help="with --finalize: skip StarDist's threshold optimisation (prob 0.5, nms 0.4)")
    p.add_argument("--add-dsb-brightfield", action="store_true",
                   help="nuinsseg: also train on the DSB 2018 brightfield images of tg_dsb2018_he's train split "
                        "(CC0; its 20 held-out images stay a test set)")
    p.add_argument("--dsb-repeat", type=int, default=1,
                   help="with --add-dsb-brightfield: how many times the DSB images (and their jittered copies) "
                        "enter the training set (default 1)")
    p.add_argument("--stain-reference", default=None, metavar="FOLDER",
                   help="nuinsseg: write the Reinhard and Macenko stain references of the training organs' "
                        "images (native resolution, no jitter; tg.seg.fit_stain_reference, 20000 pixels per "
                        "image, seed 0) into FOLDER's tissuegraph.json ('stain_targets')")
    args = p.parse_args(argv)

    import tissuegraph as tg
    from tissuegraph._logging import set_verbosity

    set_verbosity("INFO")
    cfg = CONFIGS[args.which]
    if args.stain_reference:
        if args.which != "nuinsseg":
            p.error("--stain-reference is for nuinsseg")
        write_stain_reference(Path(args.stain_reference), data=Path(args.data) if args.data else shared_data_dir(),
                              seed=args.seed, command="python benchmarks/train_stardist_models.py " + " ".join(
                                  sys.argv[1:] if argv is None else argv))
        return 0
    if args.finalize:
        if args.which != "nuinsseg":
            p.error("--finalize is for nuinsseg")
        finalize_nuinsseg(Path(args.finalize), data=Path(args.data) if args.data else shared_data_dir(),
                          seed=args.seed, log=[Path(x) for x in args.log] if args.log else None,
                          optimize=not args.no_optimize,
                          command=(", then ".join(args.trained_by) if args.trained_by else
                                   "python benchmarks/train_stardist_models.py nuinsseg (stopped by hand)")
                          + ", then python benchmarks/train_stardist_models.py " + " ".join(
                              _without_option(sys.argv[1:] if argv is None else argv, "--trained-by")))
        return 0
    package_models = (REPO / "tissuegraph").resolve()
    if args.which == "crchisto" and Path(args.out).resolve().is_relative_to(package_models):
        p.error("the crchisto model is trained on research-use-only data and must not go into the package: "
                "pass --out DIR outside tissuegraph/")
    if args.which not in ("crchisto", "nuinsseg") and args.mpp is not None:
        p.error("--mpp is for crchisto and nuinsseg only (DSB 2018 records no pixel size)")
    description = cfg["description"]
    init = args.init or (None if args.rgb else cfg.get("init"))
    data = Path(args.data) if args.data else shared_data_dir()
    if args.which == "crchisto":
        names, Xa, Pa = load_crchisto(data, "train")
        tr, va = crchisto_split(len(names), seed=args.seed)
        train_mpp = args.mpp or cfg["mpp"]
        Xa, Pa = rescale_to(Xa, Pa, CRC_MPP, train_mpp)
        Ya = crchisto_pseudo_labels(Xa, Pa, train_mpp)
        X, Y = [Xa[i] for i in tr], [Ya[i] for i in tr]
        Xv, Yv = [Xa[i] for i in va], [Ya[i] for i in va]
        split = {"train": [names[i] for i in tr], "val": [names[i] for i in va],
                 "test": "crchisto/validation (all 10 images; never used here)"}
        description = description.format(
            mpp=train_mpp, input="RGB" if args.rgb else "haematoxylin optical density (colour deconvolution)",
            origin=f"fine-tuned by tissuegraph from {Path(init).name} on" if init else "trained by tissuegraph on")
        data_note = ("crchisto/train (CRCHistoPhenotypes, research use only), pseudo-masks from centres: "
                     f"labels_from_points radius {CRC_POINT_RADIUS_UM[0]} um, core {CRC_POINT_RADIUS_UM[1]} um, "
                     f"cut by watershed_nuclei foreground; images resampled from {CRC_MPP} to {train_mpp} um/px")
    elif args.which == "nuinsseg":
        organs = nuinsseg_split(nuinsseg_index(data), seed=args.seed)
        train_mpp = args.mpp or cfg["mpp"]
        ids, X0, Y0 = load_nuinsseg(data, organs["train"], target_mpp=train_mpp)
        vids, Xv, Yv = load_nuinsseg(data, organs["val"], target_mpp=train_mpp)
        # stain augmentation: each training image plus `stain_copies` HED-jittered copies (seeded)
        rng = np.random.default_rng(args.seed + 7)
        X, Y = list(X0), list(Y0)
        for _ in range(cfg["stain_copies"]):
            X += [hed_jitter(x, rng) for x in X0]
            Y += list(Y0)
        dsb_note, dsb_ids = "", []
        if args.add_dsb_brightfield:
            # the CC0 DSB 2018 brightfield images of tg_dsb2018_he's *train* split (its 20 held-out images
            # stay a test set, its validation images are not used), native resolution (no pixel size is
            # published), with the same HED jitter copies; validation stays the NuInsSeg validation organs
            bsplit = dsb_split(dsb_index(data), "brightfield", seed=args.seed)
            dsb_ids = bsplit["train"]
            Xb, Yb = load_dsb(data, dsb_ids, "brightfield")
            Xb = [np.repeat(x[..., None], 3, axis=-1) if x.ndim == 2 else x for x in Xb]
            for _ in range(args.dsb_repeat):
                X += list(Xb) + [hed_jitter(x, rng) for x in Xb for _ in range(cfg["stain_copies"])]
                Y += list(Yb) + [y for y in Yb for _ in range(cfg["stain_copies"])]
            dsb_note = (f"; + {len(dsb_ids)} DSB 2018 brightfield training images (tg_dsb2018_he's train split, "
                        f"CC0, native resolution) x {args.dsb_repeat} with {cfg['stain_copies']} HED-jittered "
                        "copies each")
        split = {"train_organs": organs["train"], "val_organs": organs["val"], "test_organs": organs["test"],
                 "train": ids + dsb_ids, "val": vids,
                 "test": "nuinsseg images of test_organs (never used here); crchisto; dsb2018 brightfield"
                         + (" held-out 20 (dsb_split 'test')" if dsb_ids else "")}
        description = description.format(
            mpp=train_mpp, input="haematoxylin optical density (colour deconvolution)",
            origin=f"fine-tuned by tissuegraph from {Path(init).name} on" if init else "trained by tissuegraph on")
        if dsb_ids:
            description += (f" Also trained on {len(dsb_ids)} DSB 2018 stage-1 brightfield images (BBBC038, CC0; "
                            "native resolution, no pixel size published).")
        data_note = (f"nuinsseg (NuInsSeg, CC BY 4.0), {len(ids)} images of {len(organs['train'])} organ "
                     f"folders, resampled from {NUINSSEG_MPP} (assumed) to {train_mpp} um/px, + "
                     f"{cfg['stain_copies']} HED-jittered copies each (hed_jitter, seed {args.seed + 7}); "
                     f"validation: {len(vids)} images of the organ folders {organs['val']}{dsb_note}")
    else:
        split = dsb_split(dsb_index(data), cfg["modality"], seed=args.seed)
        X, Y = load_dsb(data, split["train"], cfg["modality"])
        Xv, Yv = load_dsb(data, split["val"], cfg["modality"])
        data_note = "dsb2018/train (DSB 2018 stage 1, BBBC038, CC0), modality " + cfg["modality"]
    print(f"{args.which}: {len(X)} train, {len(Xv)} val images; test: "
          f"{split['test'] if isinstance(split['test'], str) else len(split['test'])}", flush=True)
    epochs = args.epochs or cfg["epochs"]
    steps = args.steps or cfg["steps"]
    name = args.name or cfg["name"]
    t0 = time.time()
    backend = tg.seg.train_stardist(
        X, Y, validation=(Xv, Yv), n_rays=32, grid=(2, 2), epochs=epochs, steps_per_epoch=steps,
        patch_size=(args.patch or cfg.get("patch", 256),) * 2, batch_size=args.batch,
        learning_rate=args.lr or cfg["lr"],
        unet_n_depth=args.depth, unet_n_filter_base=args.filters, net_conv_after_unet=args.conv_after,
        augment={"scale": cfg["scale"]} if cfg.get("scale") else True,
        basedir=args.out, name=name, mpp=args.mpp or cfg.get("mpp"), modality=cfg["modality"],
        description=description, seed=args.seed, n_threads=args.threads, overwrite=True,
        init=init, rgb_to=None if args.rgb else cfg.get("rgb_to"),
        verbose=True,
    )
    info_path = backend.folder / "tissuegraph.json"
    info = json.loads(info_path.read_text())
    info["training"]["data"] = data_note
    info["training"]["command"] = "python benchmarks/train_stardist_models.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    info["split"] = {k: v for k, v in split.items()}
    info_path.write_text(json.dumps(info, indent=2))
    if args.which == "nuinsseg":
        _write_nuinsseg_provenance(backend.folder, data=data, seed=args.seed, command=info["training"]["command"],
                                   dsb_ids=dsb_ids, dsb_note=dsb_note)
    print(f"done in {time.time() - t0:.0f} s: {backend}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
