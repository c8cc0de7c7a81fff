"""Choose between CRCHisto-trained StarDist models on CRCHisto *train* images held out from training.

    python benchmarks/crchisto_inner_val.py /tmp/tg_stage1/tg_crchisto_points /tmp/tg_models/tg_crchisto_points

The 10 inner validation images are those of :func:`train_stardist_models.crchisto_split` (never trained
on; they only drove early stopping and StarDist's threshold choice). CRCHisto's validation folder is
not read here: it is the test set of ``bench_seg_accuracy_stardist.py``. Each model is scored with its
own thresholds, together with the classical watershed on the same images. The score is detection F1
within 3 µm, with counts pooled over the images. Writes
``benchmarks/results/crchisto_inner_val.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_seg_accuracy_stardist import _detection_counts  # noqa: E402
from train_stardist_models import CRC_MPP, crchisto_split, load_crchisto, shared_data_dir  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="StarDist model folders or names")
    p.add_argument("--data", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "crchisto_inner_val.json"))
    args = p.parse_args(argv)

    import tissuegraph as tg

    data = Path(args.data) if args.data else shared_data_dir()
    if not (data / "crchisto" / "train").is_dir():
        print(f"CRCHisto not found under {data}; nothing to do")
        return 0
    names, X, P = load_crchisto(data, "train")
    _, inner = crchisto_split(len(names))
    Xi, Pi = [X[i] for i in inner], [P[i] for i in inner]
    rows = []
    backends = [(m, tg.seg.load_stardist(m, n_threads=args.threads)) for m in args.models]
    backends.append(("watershed", tg.seg.get_backend("watershed", modality="he")))
    for label, be in backends:
        trained = set(getattr(be, "info", {}).get("split", {}).get("train", []))
        assert not trained & {names[i] for i in inner}, f"{label} was trained on inner validation images"
        row = dict(model=str(label), **_detection_counts(be, Xi, Pi, mpp=CRC_MPP))
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = " ".join(sys.argv[1:] if argv is None else argv)
    out.write_text(json.dumps(dict(command=f"python benchmarks/crchisto_inner_val.py {cmd}".strip(),
                                   images=[names[i] for i in inner], radius_um=3.0, mpp=CRC_MPP,
                                   rows=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
