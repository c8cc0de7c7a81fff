"""What a new user hit (issue 14): grey images stored as RGB, CLI wording of errors, ``segment --help``,
truncated TIFFs and output folders that cannot be created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tissuegraph as tg
from tissuegraph.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def _rgb_equal(x: np.ndarray) -> np.ndarray:
    return np.repeat(x[..., None], 3, axis=2)


def _uint8(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, (0.5, 99.9))
    return (np.clip((x - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------------------------
# grey stored as RGB(A) with equal channels
# ---------------------------------------------------------------------------------------------------
def test_equal_channels_are_one_channel(tiny_stardist, nuclei_2d):
    img, _ = nuclei_2d
    x = img[256:, 256:]
    ref, ref_scores = tiny_stardist.segment(x)
    assert ref.max() > 5
    for arr in (_rgb_equal(x), np.concatenate([_rgb_equal(x), np.full(x.shape + (1,), 7, x.dtype)], axis=2)):
        lab, scores = tiny_stardist.segment(arr)
        np.testing.assert_array_equal(lab, ref)
        np.testing.assert_allclose(scores, ref_scores)


def test_different_channels_error_names_python_and_cli_options(tiny_stardist, nuclei_2d):
    img, _ = nuclei_2d
    x = _rgb_equal(img[:128, :128]).copy()
    x[..., 1] //= 2
    with pytest.raises(tg.InputError) as info:
        tiny_stardist.segment(x)
    err = info.value
    assert "channel=k" in str(err) and "rgb_to='hematoxylin'" in str(err)
    cli = err.for_cli()
    assert "--channel K" in cli and "--model" in cli
    assert "rgb_to" not in cli and "channel=" not in cli and "image[" not in cli


def test_cli_segment_auto_on_grey_png_stored_as_rgb(tmp_path, nuclei_2d, keras_home, capsys):
    """``tissuegraph segment image.png`` (--method auto) on a fluorescence image saved as 3 equal
    channels: the same labels as the same image saved with one channel."""
    from PIL import Image
    import tifffile

    img, _ = nuclei_2d
    g = _uint8(img[:256, :256])
    Image.fromarray(_rgb_equal(g)).save(tmp_path / "rgb.png")
    Image.fromarray(g).save(tmp_path / "grey.png")
    assert main(["segment", str(tmp_path / "rgb.png"), "-o", str(tmp_path / "rgb.tif"), "--no-progress"]) == 0
    assert main(["segment", str(tmp_path / "grey.png"), "-o", str(tmp_path / "grey.tif"), "--no-progress"]) == 0
    a, b = tifffile.imread(tmp_path / "rgb.tif"), tifffile.imread(tmp_path / "grey.tif")
    assert a.max() > 20  # the image holds about 40 nuclei
    np.testing.assert_array_equal(a, b)


def test_cli_segment_different_channels_says_channel_option(tmp_path, nuclei_2d, capsys):
    from PIL import Image

    img, lab = nuclei_2d
    g = _uint8(img[:256, :256])
    rgb = np.stack([g, g // 3, np.zeros_like(g)], axis=2)  # nuclear stain in channel 0
    Image.fromarray(rgb).save(tmp_path / "multi.png")
    code = main(["segment", str(tmp_path / "multi.png"), "-o", str(tmp_path / "m.tif"), "--method", "stardist",
                 "--model", "tg_dsb2018_fluo", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--channel K" in err and "rgb_to" not in err and "Traceback" not in err
    assert main(["segment", str(tmp_path / "multi.png"), "-o", str(tmp_path / "m.tif"), "--method", "stardist",
                 "--model", "tg_dsb2018_fluo", "--channel", "0", "--no-progress"]) == 0
    import tifffile

    pred = tifffile.imread(tmp_path / "m.tif")
    s = tg.seg.matching_scores(lab[:256, :256], pred, thresholds=0.5, as_frame=False)
    assert s["f1"] > 0.7, s


def test_segment_help_says_what_options_do_and_their_defaults():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    seg = sub.choices["segment"]
    for action in seg._actions:
        if action.dest == "help":
            continue
        assert action.help and len(action.help) > 10, action.dest
        kind = action.__class__.__name__
        if action.option_strings and not action.required and kind not in ("_StoreTrueAction", "_CountAction"):
            shown = seg.formatter_class(prog="tissuegraph segment")._get_help_string(action)  # what --help prints
            assert "default" in shown.lower(), (action.dest, shown)


# ---------------------------------------------------------------------------------------------------
# truncated TIFFs, output folders
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def truncated_tiff(tmp_path_factory):
    import tifffile

    d = tmp_path_factory.mktemp("trunc")
    rng = np.random.default_rng(0)
    img = (rng.random((2048, 2048)) * 1000).astype(np.uint16)  # incompressible: many large tiles
    full = d / "full.tiff"
    tifffile.imwrite(full, img, tile=(256, 256), compression="zlib", resolution=(20000, 20000),
                     resolutionunit="CENTIMETER")
    data = full.read_bytes()
    out = d / "truncated.tiff"
    out.write_bytes(data[: len(data) // 2])
    return out


def _run(args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=REPO, **kw)


def test_reading_a_truncated_tiff_raises_once_without_asyncio_noise(truncated_tiff):
    """zarr reads chunks concurrently on its own event loop: one bad chunk must not leave the others to
    print "Task was destroyed" / "Event loop is closed" tracebacks at exit."""
    code = ("import sys, tissuegraph as tg\n"
            f"s = tg.io.open_slide({str(truncated_tiff)!r}, backend='tifffile')\n"
            "try:\n    s.read_region((0, 0), 0, s.dimensions)\n"
            "except tg.SlideFormatError as e:\n    print('raised', file=sys.stderr)\n")
    r = _run(["-c", code])
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "raised", r.stderr[-2000:]


def test_cli_run_truncated_tiff_one_line_exit_2(truncated_tiff, tmp_path):
    r = _run(["-m", "tissuegraph.cli", "run", str(truncated_tiff), "-o", str(tmp_path / "out"),
              "--segmenter", "watershed", "--no-progress"])
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if " INFO " not in ln]
    assert len(lines) == 1, r.stderr[-3000:]
    assert lines[0].startswith("tissuegraph run: error:") and "corrupt or truncated" in lines[0]


def test_cli_run_outdir_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main(["run", str(tmp_path / "missing.tiff"), "-o", str(blocker / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "Cannot create the output folder" in err[0] and "-o/--outdir" in err[0], err
    from tissuegraph.pipeline import run

    with pytest.raises(tg.InputError, match="Cannot create the output folder"):
        run(tmp_path / "missing.tiff", blocker / "out")


def test_cli_segment_output_folder_that_cannot_be_created(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = main(["segment", str(tmp_path / "x.png"), "-o", str(blocker / "sub" / "labels.tif"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "-o" in err[0], err
