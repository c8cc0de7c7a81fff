"""Train the StarDist models that ship with tissuegraph (``tissuegraph/seg/models/``).

The exact commands used for the shipped models are recorded in ``tissuegraph/seg/models/README.md``.

    # fluorescence model, DSB 2018 stage-1 fluorescence images (CC0)
    python benchmarks/train_stardist_models.py fluo --out tissuegraph/seg/models
    # brightfield (H&E-like) model, DSB 2018 brightfield images (CC0)
    python benchmarks/train_stardist_models.py he --out tissuegraph/seg/models
    # H&E model from CRCHisto nucleus centres (research use only: for the benchmark, never shipped)
    python benchmarks/train_stardist_models.py crchisto --out /tmp/tg_models

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
    p.add_argument("--patch", type=int, default=256)
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
    args = p.parse_args(argv)

    import tissuegraph as tg
    from tissuegraph._logging import set_verbosity

    set_verbosity("INFO")
    cfg = CONFIGS[args.which]
    package_models = (REPO / "tissuegraph").resolve()
    if args.which == "crchisto" and Path(args.out).resolve().is_relative_to(package_models):
        p.error("the crchisto model is trained on research-use-only data and must not go into the package: "
                "pass --out DIR outside tissuegraph/")
    if args.which != "crchisto" and args.mpp is not None:
        p.error("--mpp is for crchisto only (DSB 2018 records no pixel size)")
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
        patch_size=(args.patch, args.patch), batch_size=args.batch, learning_rate=args.lr or cfg["lr"],
        unet_n_depth=args.depth, unet_n_filter_base=args.filters, net_conv_after_unet=args.conv_after,
        augment=True, basedir=args.out, name=name, mpp=args.mpp or cfg.get("mpp"), modality=cfg["modality"],
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
    print(f"done in {time.time() - t0:.0f} s: {backend}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
