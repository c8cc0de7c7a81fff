"""The ``tissuegraph`` command line.

    tissuegraph demo OUTDIR                      # synthetic slide -> the whole pipeline (no downloads)
    tissuegraph run SLIDE -o OUTDIR [...]        # tiles -> nuclei -> features -> graph -> samples
    tissuegraph segment INPUT -o LABELS.tif      # nuclei only
    tissuegraph synth OUT.tiff --size N --seed S # a synthetic H&E slide with ground truth
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ._version import __version__

__all__ = ["main", "build_parser"]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-jobs", type=int, default=None, help="parallel workers (default: tg.settings.n_jobs)")
    p.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tissuegraph",
        description="Graph-based tissue analysis: whole-slide tiling, nuclei, cell graphs and structural "
                    "baselines to compare learned representations against.")
    parser.add_argument("--version", action="version", version=f"tissuegraph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="make the built-in synthetic slide and run the whole pipeline on it")
    p.add_argument("outdir", type=Path)
    p.add_argument("--size", type=int, default=4096, help="slide edge in pixels (default 4096)")
    p.add_argument("--mpp", type=float, default=0.5, help="µm/px of the synthetic slide (default 0.5)")
    p.add_argument("--segmenter", default="auto", choices=["auto", "watershed", "stardist"])
    p.add_argument("--graph", default="delaunay", choices=["knn", "radius", "delaunay"])
    _add_common(p)

    p = sub.add_parser("run", help="tiles -> nuclei -> features -> graph -> samples on one slide")
    p.add_argument("slide", type=Path)
    p.add_argument("-o", "--outdir", type=Path, required=True)
    p.add_argument("--segmenter", default="auto", choices=["auto", "watershed", "stardist", "labels"])
    p.add_argument("--model", default=None, help="StarDist model name or local folder")
    p.add_argument("--labels", default=None, help="labels from another tool (TIFF/zarr/GeoJSON/CSV)")
    p.add_argument("--mpp", type=float, default=None, help="the slide's µm/px if its metadata lacks it")
    p.add_argument("--seg-mpp", type=float, default=None, help="µm/px to segment at (default: model's)")
    p.add_argument("--graph", default="delaunay", choices=["knn", "radius", "delaunay"])
    p.add_argument("--k", type=int, default=6, help="neighbours for --graph knn")
    p.add_argument("--radius-um", type=float, default=None, help="radius for --graph radius")
    p.add_argument("--max-edge-um", type=float, default=50.0, help="longest Delaunay edge kept")
    p.add_argument("--sample-size-um", type=float, default=256.0, help="edge of the grid-patch samples")
    p.add_argument("--tile-size", type=int, default=1024)
    p.add_argument("--overwrite", action="store_true")
    _add_common(p)

    p = sub.add_parser("segment", help="segment nuclei; write an instance-label TIFF (and a table for slides)",
                       description="Segment the nuclei of an image or slide and write an instance-label TIFF "
                                   "(0 = background, 1..N = one id per nucleus); slides also get a nucleus "
                                   "table (.parquet) next to it.")
    p.add_argument("input", type=Path, help="image or slide (PNG/JPEG/TIFF/OME-TIFF/SVS/NDPI/...)")
    p.add_argument("-o", "--output", type=Path, required=True, help="LABELS.tif to write (required)")
    p.add_argument("--method", default="auto", choices=["auto", "watershed", "stardist", "labels"],
                   help="auto (default): the backend that measured best for the image type (StarDist "
                        "tg_dsb2018_fluo for fluorescence, the watershed for H&E); watershed: "
                        "classical, no model; stardist: a StarDist model (--model); labels: read labels "
                        "made by another tool (--labels)")
    p.add_argument("--model", default=None,
                   help="StarDist model name or local model folder (default: the shipped model for the "
                        "image type: tg_dsb2018_fluo for fluorescence, tg_nuinsseg_he for H&E)")
    p.add_argument("--labels", default=None,
                   help="for --method labels: instance labels made by another tool (label TIFF/zarr in "
                        "level-0 px, QuPath GeoJSON or CSV); no default, required with --method labels")
    p.add_argument("--channel", type=int, default=None,
                   help="fluorescence: 0-based index of the nuclear-stain channel of a multi-channel image "
                        "(default: the only channel; grey stored as RGB with equal channels is one channel)")
    p.add_argument("--mpp", type=float, default=None,
                   help="µm/px of the input, used when its metadata lacks it (default: from the metadata)")
    p.add_argument("--seg-mpp", type=float, default=None,
                   help="µm/px to segment at (default: the model's own µm/px, else native resolution)")
    p.add_argument("--tta", type=int, default=None, choices=[1, 2, 4, 8],
                   help="--method stardist: average the maps over this many flips/transposes "
                        "(default: the model's own setting, else 1)")
    p.add_argument("--tile-size", type=int, default=1024, help="tile edge in pixels (default 1024)")
    _add_common(p)

    p = sub.add_parser("synth", help="write a synthetic H&E slide with ground truth")
    p.add_argument("output", type=Path, help="OUT.tiff")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--mpp", type=float, default=0.5)
    p.add_argument("--tissue-fraction", type=float, default=0.6)
    p.add_argument("--density", type=float, default=1.0)
    p.add_argument("--blur-um", type=float, default=0.0)
    p.add_argument("--noise", type=float, default=0.02)
    p.add_argument("--compression", default="deflate", choices=["deflate", "jpeg"])
    _add_common(p)
    return parser


def _setup(args) -> None:
    import tissuegraph as tg
    from ._logging import set_verbosity

    set_verbosity("DEBUG" if args.verbose >= 2 else "INFO")
    tg.settings.progress = not args.no_progress
    tg.settings.seed = args.seed
    if args.n_jobs is not None:
        tg.settings.n_jobs = args.n_jobs


def _cmd_demo(args) -> int:
    from .pipeline import demo

    res = demo(args.outdir, size=args.size, seed=args.seed, mpp=args.mpp, segmenter=args.segmenter,
               graph=args.graph, n_jobs=args.n_jobs)
    rep = res.manifest.get("demo", {})
    print(f"demo: {rep.get('n_detected')} nuclei detected ({rep.get('segmenter')}), {rep.get('n_true')} true; "
          f"centroid F1 {rep.get('f1', float('nan')):.3f} within {rep.get('centroid_match_radius_um')} µm")
    print(f"outputs in {res.outdir}: " + ", ".join(sorted(res.manifest.get('outputs', {}).values())))
    return 0


def _cmd_run(args) -> int:
    from .pipeline import run

    res = run(args.slide, args.outdir, segmenter=args.segmenter, model=args.model, labels=args.labels,
              mpp=args.mpp, seg_mpp=args.seg_mpp, graph=args.graph, k=args.k, radius_um=args.radius_um,
              max_edge_um=args.max_edge_um, sample_size_um=args.sample_size_um, tile_size=args.tile_size,
              n_jobs=args.n_jobs, seed=args.seed, overwrite=args.overwrite)
    print(f"{res.manifest['counts']['nuclei']} nuclei, {res.manifest['counts']['samples']} samples -> {res.outdir}")
    return 0


def _cmd_segment(args) -> int:
    from . import seg
    from ._errors import InputError
    from .io import open_slide

    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot create the folder {args.output.parent} for -o/--output "
                         f"({exc.strerror or exc}); pass -o a path you can write to.") from exc
    slide = open_slide(args.input, mpp=args.mpp)
    if slide.mpp is None and args.seg_mpp is None:
        warnings.warn(f"{args.input}: no µm/px in the metadata and no --mpp: segmenting at the native "
                      "resolution with the backend's size defaults in pixels.", stacklevel=1)
    is_plain = slide.level_count == 1 and max(slide.dimensions) <= 20_000
    extra = {}
    if args.tta is not None:
        if args.method != "stardist":
            raise InputError(f"--tta applies to --method stardist, not --method {args.method}.")
        extra["tta"] = args.tta
    if args.channel is not None:
        if args.method == "labels":
            raise InputError("--channel applies to --method auto, watershed or stardist, not labels.")
        extra["channel"] = args.channel
    df = seg.nuclei(slide, method=args.method, model=args.model, labels=args.labels, mpp=args.seg_mpp,
                    tile_size=args.tile_size, n_jobs=args.n_jobs, labels_out=args.output, seed=args.seed,
                    mask="all" if is_plain else "auto", **extra)
    out = Path(args.output)
    if not is_plain:
        from .pipeline import write_nuclei

        table = write_nuclei(df, out.with_suffix(".parquet"))
        print(f"{len(df)} nuclei -> {out} (labels) and {table} (table)")
    else:
        print(f"{len(df)} nuclei -> {out}")
    return 0


def _cmd_synth(args) -> int:
    from .datasets import synthetic_slide

    syn = synthetic_slide(args.output, size=args.size, seed=args.seed, mpp=args.mpp,
                          tissue_fraction=args.tissue_fraction, density=args.density, blur_um=args.blur_um,
                          noise=args.noise, compression=args.compression)
    print(f"wrote {syn.path} and its ground truth ({syn.nuclei_path.name}, {syn.labels_path.name})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _setup(args)
    from ._errors import TissuegraphError

    try:
        return {"demo": _cmd_demo, "run": _cmd_run, "segment": _cmd_segment, "synth": _cmd_synth}[args.command](args)
    except TissuegraphError as exc:
        print(f"tissuegraph {args.command}: error: {exc.for_cli()}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
