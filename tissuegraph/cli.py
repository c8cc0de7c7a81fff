"""The ``tissuegraph`` command line.

    tissuegraph demo OUTDIR                      # synthetic slide -> the whole pipeline (no downloads)
    tissuegraph run SLIDE -o OUTDIR [...]        # tiles -> nuclei -> features -> graph -> samples
    tissuegraph segment INPUT -o LABELS.tif      # nuclei only
    tissuegraph synth OUT.tiff --size N --seed S # a synthetic H&E slide with ground truth
    tissuegraph culture demo|bench [...] -o OUTDIR  # cell culture: plates -> profiles -> mAP / NSC / NSCB
    tissuegraph bench [--quick] [--dataset D] -o OUTDIR  # every representation, evaluated the same way
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from ._version import __version__

__all__ = ["main", "build_parser"]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-jobs", type=int, default=None,
                   help="parallel workers (default None = tg.settings.n_jobs, 1; -1 = all cores)")
    p.add_argument("--seed", type=int, default=0, help="seed for every random choice")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")


def _add_reps(p: argparse.ArgumentParser) -> None:
    """The representation options of ``demo`` and ``run``."""
    p.add_argument("--reps", nargs="*", default=["color", "gnn", "cnn"], choices=["color", "gnn", "cnn"],
                   metavar="REP", help="representations added beside X_structural: color (colour control), gnn "
                                       "(untrained GIN twins), cnn (untrained ResNet-18 twin); give none for only "
                                       "the structural baseline")
    p.add_argument("--train", action="store_true",
                   help="also train a GIN (deep graph infomax) and a ResNet-18 (SimCLR) on this slide's samples")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help with every option's default shown (not for required options, nor a None the text explains)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required or (action.default is None and "None" in text):
            return text
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Sub-command parser with every default shown."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tissuegraph", formatter_class=_Formatter,
        description="Graph-based tissue analysis: whole-slide tiling, nuclei, cell graphs and structural "
                    "baselines to compare learned representations against.",
        epilog="Run 'tissuegraph COMMAND --help' for the options of a command. Outputs: cells.h5ad, samples.h5ad, "
               "nuclei.parquet, manifest.json and report.html in OUTDIR.")
    parser.add_argument("--version", action="version", version=f"tissuegraph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=_Parser)

    p = sub.add_parser("demo", help="make the built-in synthetic slide and run the whole pipeline on it",
                       description="Write a synthetic H&E slide with ground truth into OUTDIR/slide, run the whole "
                                   "pipeline on it, score the nuclei against the truth and write report.html.")
    p.add_argument("outdir", type=Path, help="output folder (created): the slide, its ground truth, the results "
                                              "and report.html")
    p.add_argument("--size", type=int, default=4096, help="slide edge in pixels")
    p.add_argument("--mpp", type=float, default=0.5, help="µm/px of the synthetic slide")
    p.add_argument("--segmenter", default="auto", choices=["auto", "watershed", "stardist"],
                   help="nucleus segmentation method ('auto': the best measured for the modality)")
    p.add_argument("--graph", default="delaunay", choices=["knn", "radius", "delaunay"], help="cell graph")
    _add_reps(p)
    _add_common(p)

    p = sub.add_parser("run", help="tiles -> nuclei -> features -> graph -> samples on one slide",
                       description="Segment the nuclei of one slide tile by tile, measure them, build the cell graph, "
                                   "cut the slide into samples with structural descriptors, and write the results "
                                   "and report.html into OUTDIR (an interrupted run resumes).")
    p.add_argument("slide", type=Path, help="whole-slide image or plain image (OpenSlide formats, TIFF, PNG, ...)")
    p.add_argument("-o", "--outdir", type=Path, required=True,
                   help="output folder: cells.h5ad, samples.h5ad, nuclei.parquet, manifest.json, report.html")
    p.add_argument("--segmenter", default="auto", choices=["auto", "watershed", "stardist", "labels"],
                   help="nucleus segmentation method ('labels': read --labels from another tool)")
    p.add_argument("--model", default=None, help="StarDist model name or local folder (None: the default model)")
    p.add_argument("--labels", default=None, help="labels from another tool (TIFF/zarr/GeoJSON/CSV)")
    p.add_argument("--mpp", type=float, default=None, help="the slide's µm/px if its metadata lacks it")
    p.add_argument("--seg-mpp", type=float, default=None, help="µm/px to segment at (None: the model's)")
    p.add_argument("--graph", default="delaunay", choices=["knn", "radius", "delaunay"], help="cell graph")
    p.add_argument("--k", type=int, default=6, help="neighbours for --graph knn")
    p.add_argument("--radius-um", type=float, default=None, help="radius in µm for --graph radius (required there)")
    p.add_argument("--max-edge-um", type=float, default=50.0, help="longest Delaunay edge kept, µm")
    p.add_argument("--sample-size-um", type=float, default=256.0, help="edge of the grid-patch samples, µm")
    p.add_argument("--min-tissue-fraction", type=float, default=0.5,
                   help="keep grid patches with at least this fraction on tissue (0 keeps all)")
    p.add_argument("--tile-size", type=int, default=1024, help="segmentation tile edge in working pixels")
    p.add_argument("--overwrite", action="store_true", help="replace a run with other parameters in OUTDIR")
    _add_reps(p)
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
    p.add_argument("--stain-norm", default=None, choices=["none", "reinhard", "macenko"],
                   help="--method stardist, H&E: map the image's colours onto the model's training stain "
                        "first (Reinhard in L*a*b* or Macenko; the model stores the reference), or 'none' "
                        "(default: the model's own setting, else none)")
    p.add_argument("--tile-size", type=int, default=1024, help="tile edge in working pixels (default: %(default)s)")
    _add_common(p)

    p = sub.add_parser("synth", help="write a synthetic H&E slide with ground truth",
                       description="Write a synthetic H&E slide (pyramidal TIFF) with its ground truth: nucleus "
                                   "table, label image, regions and glands.")
    p.add_argument("output", type=Path, help="OUT.tiff (ground truth is written next to it)")
    p.add_argument("--size", type=int, default=4096, help="slide edge in pixels")
    p.add_argument("--mpp", type=float, default=0.5, help="µm/px")
    p.add_argument("--tissue-fraction", type=float, default=0.6, help="share of the slide covered by tissue")
    p.add_argument("--density", type=float, default=1.0, help="nucleus density relative to the default")
    p.add_argument("--blur-um", type=float, default=0.0, help="Gaussian blur (out of focus), µm")
    p.add_argument("--noise", type=float, default=0.02, help="pixel noise level (fraction of the range)")
    p.add_argument("--compression", default="deflate", choices=["deflate", "jpeg"], help="TIFF compression")
    _add_common(p)

    _add_culture(sub)
    p = sub.add_parser("bench", help="run every representation on a benchmark data set and evaluate them the "
                                     "same way (results.csv, summary.md, plots)")
    p.add_argument("--dataset", default="synthetic",
                   help="synthetic | synthetic_spots | kather2016 | crchisto | her2st | PATH (class folders, "
                        "Visium, HEST-1k, or image + spots.csv + counts.h5ad); default synthetic")
    p.add_argument("-o", "--outdir", type=Path, required=True,
                   help="output folder: results.csv, summary.md, plots, cache of finished steps")
    p.add_argument("--quick", action="store_true", help="small data, one seed, untrained networks only")
    p.add_argument("--mpp", type=float, default=None, help="µm/px of patches in a PATH of class folders")
    p.add_argument("--segmenter", default="auto", choices=["auto", "watershed", "stardist"],
                   help="nuclei segmentation backend")
    p.add_argument("--representations", nargs="*", default=None,
                   help="representation steps to run (default: all available; none = structural only)")
    p.add_argument("--no-resume", action="store_true", help="ignore finished steps cached in OUTDIR/cache")
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
               graph=args.graph, n_jobs=args.n_jobs, reps=args.reps, train=args.train)
    rep = res.manifest.get("demo", {})
    print(f"demo: {rep.get('n_detected')} nuclei detected ({rep.get('segmenter')}), {rep.get('n_true')} true; "
          f"centroid F1 {rep.get('f1', float('nan')):.3f} within {rep.get('centroid_match_radius_um')} µm")
    print(f"outputs in {res.outdir}: " + ", ".join(sorted(res.manifest.get('outputs', {}).values())))
    return 0


def _cmd_run(args) -> int:
    from .pipeline import run

    res = run(args.slide, args.outdir, segmenter=args.segmenter, model=args.model, labels=args.labels,
              mpp=args.mpp, seg_mpp=args.seg_mpp, graph=args.graph, k=args.k, radius_um=args.radius_um,
              max_edge_um=args.max_edge_um, sample_size_um=args.sample_size_um,
              min_tissue_fraction=args.min_tissue_fraction, tile_size=args.tile_size,
              n_jobs=args.n_jobs, seed=args.seed, overwrite=args.overwrite, reps=args.reps, train=args.train)
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
    if args.stain_norm is not None:
        if args.method != "stardist":
            raise InputError(f"--stain-norm applies to --method stardist, not --method {args.method}.")
        extra["stain_norm"] = None if args.stain_norm == "none" else args.stain_norm
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


def _add_culture(sub) -> None:
    p = sub.add_parser("culture", help="cell culture: plates -> single cells -> well profiles -> mAP / NSC / NSCB")
    csub = p.add_subparsers(dest="culture_command", metavar="CULTURE_COMMAND", required=True,
                            help="demo: the synthetic screen; bench: a screen's profiles evaluated")
    for name, helptext in (("demo", "the built-in synthetic screen, quick"),
                           ("bench", "hand-crafted profiles (and networks when installed) on a screen")):
        q = csub.add_parser(name, help=helptext)
        q.add_argument("-o", "--outdir", type=Path, required=True, help="output folder (created)")
        q.add_argument("--dataset", default="synthetic",
                       help="'synthetic', 'bbbc021' (shared per-well profiles) or PATH, whose layout is detected: "
                            "a BBBC021 folder (BBBC021_v1_image.csv + BBBC021_v1_moa.csv + TIFFs), an RxRx folder "
                            "(metadata.csv + images/<experiment>/Plate<p>/<well>_s<site>_w<ch>.png), a JUMP "
                            "load_data CSV, a CSV of image paths (columns plate, well, [site], path_<channel> per "
                            "channel or --channels, a label column 'moa' or --label-key, 'compound'), or per-well "
                            "profiles (CSV with Cells_/Nuclei_ columns, or a folder with profiles.csv "
                            "[+ metadata.csv])")
        q.add_argument("--label-key", default=None,
                       help="column of the label evaluated (mechanism / class of each treatment; None: 'moa')")
        q.add_argument("--compound-key", default=None,
                       help="column of the treatment held out as a whole (None: 'compound', else 'perturbation')")
        q.add_argument("--control", default=None,
                       help="value of the compound column that marks control wells (None: an is_control "
                            "column, else DMSO)")
        q.add_argument("--channels", nargs="+", default=None, metavar="NAME[=COLUMN]",
                       help="a CSV of image paths: the path column of each channel (None: the path_<NAME> "
                            "columns); RxRx: the channel numbers (None: 1..6)")
        q.add_argument("--metadata", type=Path, default=None,
                       help="per-well CSV (plate, well or Metadata_Plate, Metadata_Well; compound, moa, ...) joined "
                            "onto PATH's sites or wells, e.g. the plate map of a JUMP load_data CSV (None: no join)")
        q.add_argument("--dna", default=None, help="DNA channel name for segmentation (None: guessed from the "
                                                   "names, DNA/DAPI/Hoechst/w1, else the first)")
        q.add_argument("--cytoplasm", default=None,
                       help="cytoplasm channel name for the cell bodies (None: guessed, actin/AGP/phalloidin/w3)")
        q.add_argument("--mpp", type=float, default=None,
                       help="µm/px of the images: segmentation scale and µm features (None: pixel units)")
        q.add_argument("--quick", action="store_true", default=name == "demo", help="a smaller run")
        q.add_argument("--segmenter", default="stardist", choices=["stardist", "watershed", "truth"],
                       help="nuclei of an image plate (truth = the synthetic plate's ground-truth labels)")
        q.add_argument("--null-size", type=int, default=2000, help="random rankings per mAP null (default 2000)")
        q.add_argument("--no-networks", action="store_true",
                       help="skip the encoders of single-cell crops (untrained twins and SimCLR)")
        q.add_argument("--epochs", type=int, default=None,
                       help="SimCLR epochs of the crop encoder (None: 10 with --quick, else 20)")
        q.add_argument("--device", default=None, help="torch device of the crop encoders (None: tg.settings)")
        _add_common(q)


def _culture_command(args) -> str:
    """The command line of a culture run, for summary.md (the options that change the result)."""
    parts = [f"tissuegraph culture {args.culture_command} --dataset {args.dataset}"]
    if args.quick:
        parts.append("--quick")
    if args.dataset != "bbbc021":
        parts.append(f"--segmenter {args.segmenter}")
    for opt in ("label_key", "compound_key", "control", "metadata", "dna", "cytoplasm", "mpp"):
        if getattr(args, opt) is not None:
            parts.append(f"--{opt.replace('_', '-')} {getattr(args, opt)}")
    if args.channels:
        parts.append("--channels " + " ".join(args.channels))
    if args.no_networks:
        parts.append("--no-networks")
    parts.append(f"-o {args.outdir}")
    return " ".join(parts)


def _cmd_culture(args) -> int:
    from .culture._bench import culture_bench

    info = culture_bench(args.outdir, dataset=args.dataset, quick=args.quick, seed=args.seed,
                         segmenter=args.segmenter, null_size=args.null_size, networks=not args.no_networks,
                         epochs=args.epochs, device=args.device, progress=False if args.no_progress else None,
                         label_key=args.label_key, compound_key=args.compound_key, control=args.control,
                         channels=args.channels, metadata=args.metadata, dna=args.dna, cytoplasm=args.cytoplasm, mpp=args.mpp,
                         command=_culture_command(args))
    for r in info["screen"].itertuples():
        print(f"{r.representation:34s} {r.protocol:34s} {r.metric:30s} {r.value:.3f}")
    for k, v in info["skipped"].items():
        print(f"skipped {k}: {v}")
    print(f"results.csv, summary.md, plots{', report.html' if 'report' in info['paths'] else ''} -> {args.outdir}")
    return 0


def _cmd_synth(args) -> int:
    from .datasets import synthetic_slide

    syn = synthetic_slide(args.output, size=args.size, seed=args.seed, mpp=args.mpp,
                          tissue_fraction=args.tissue_fraction, density=args.density, blur_um=args.blur_um,
                          noise=args.noise, compression=args.compression)
    print(f"wrote {syn.path} and its ground truth ({syn.nuclei_path.name}, {syn.labels_path.name})")
    return 0


def _cmd_bench(args) -> int:
    from .bench import run_bench

    seeds = (args.seed, args.seed + 1, args.seed + 2)
    res = run_bench(args.dataset, args.outdir, quick=args.quick, seeds=seeds, segmenter=args.segmenter,
                    representations=args.representations, mpp=args.mpp, n_jobs=args.n_jobs,
                    resume=not args.no_resume, command="tissuegraph " + " ".join(sys.argv[1:]))
    print(f"bench: {res.samples.n_obs} samples, representations "
          f"{', '.join(k for k in res.samples.obsm if k.startswith('X_'))} -> {res.paths['summary']}")
    for step, why in res.skipped.items():
        print(f"  skipped {step}: {why}")
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
        return {"demo": _cmd_demo, "run": _cmd_run, "segment": _cmd_segment, "synth": _cmd_synth,
                "culture": _cmd_culture, "bench": _cmd_bench}[args.command](args)
    except TissuegraphError as exc:
        print(f"tissuegraph {args.command}: error: {exc.for_cli()}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
