"""A synthetic multi-plate screen with ground truth: perturbations in known mechanism groups, plus plate,
batch and row/column effects and control wells.

Each site is a 3-channel fluorescence field (``DNA``, ``actin`` (cytoplasm), ``tubulin``), with cells drawn as
elliptical nuclei inside larger elliptical cell bodies.  Five mechanisms change the cells in known ways:

==================  =======================================================================================
``nuclear_size``    nuclei (and cells) larger by up to +45 %
``cell_count``      fewer cells per field (down to 35 %), the survivors slightly larger
``texture``         grainy DNA: strong speckle inside nuclei (chromatin condensation)
``multinucleation`` most cells carry two nuclei
``channel_ratio``   tubulin / actin intensity ratio up to 2.5x
==================  =======================================================================================

Nuisance effects: a multiplicative gain per batch and channel (``batch_effect``), a smaller one per plate
(``plate_effect``), and a brightness gradient along the plate's rows and columns (``edge_effect``: outer wells
dimmer).  Controls (``DMSO``) sit in every plate.  Everything is drawn from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import _keys as K
from .._errors import InputError
from .._validate import check_positive

__all__ = ["SyntheticPlate", "synthetic_plate", "MECHANISMS"]

C = K.culture
MECHANISMS = ("nuclear_size", "cell_count", "texture", "multinucleation", "channel_ratio")
CHANNELS = ["DNA", "actin", "tubulin"]


@dataclass
class SyntheticPlate:
    """Images, site table and ground truth of :func:`synthetic_plate`.

    ``sites``: one row per site (plate, well, site, batch, row, column, compound, dose, moa, is_control,
    n_cells).  ``images[i]``: (H, W, 3) float32 of site ``i``; ``nuclei[i]`` / ``cells[i]``: int32 label images
    (a multinucleated cell's nuclei share its label).  ``truth``: one row per cell (site, label, x, y,
    nucleus_radius_px, cell_radius_px, n_nuclei).
    """

    sites: pd.DataFrame
    images: list[np.ndarray]
    nuclei: list[np.ndarray]
    cells: list[np.ndarray]
    truth: pd.DataFrame
    channels: list[str] = field(default_factory=lambda: list(CHANNELS))
    mpp: float = 0.65

    def __len__(self) -> int:
        return len(self.sites)

    def __repr__(self) -> str:
        s = self.sites
        return (f"SyntheticPlate({len(s)} sites, {s[C.plate].nunique()} plates, {s[C.batch].nunique()} batches, "
                f"{s[C.compound].nunique()} compounds, {len(self.truth)} cells)")

    def read(self, i: int) -> np.ndarray:
        return self.images[i]


def _ellipse(shape, cx, cy, a, b, theta):
    """Bounding-box slices and boolean mask of an ellipse."""
    H, W = shape
    r = int(np.ceil(max(a, b))) + 1
    y0, y1 = max(0, int(cy) - r), min(H, int(cy) + r + 1)
    x0, x1 = max(0, int(cx) - r), min(W, int(cx) + r + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
    c, s = np.cos(theta), np.sin(theta)
    u, v = (c * dx + s * dy) / a, (-s * dx + c * dy) / b
    return (slice(y0, y1), slice(x0, x1)), (u * u + v * v) <= 1.0


def synthetic_plate(*, n_batches: int = 2, plates_per_batch: int = 2, rows: int = 4, columns: int = 6,
                    compounds_per_mechanism: int = 2, size: int = 160, cells_per_site: int = 24,
                    batch_effect: float = 0.25, plate_effect: float = 0.08, edge_effect: float = 0.15,
                    seed: int = 0) -> SyntheticPlate:
    """Draw a small screen: ``n_batches x plates_per_batch`` plates of ``rows x columns`` wells, one site each.

    Every plate holds each compound once (positions shuffled per plate) and fills the remaining wells with
    DMSO controls (at least two per plate).  Compounds of one mechanism differ in strength (0.6-1.0).
    """
    for name, v in (("n_batches", n_batches), ("plates_per_batch", plates_per_batch), ("rows", rows),
                    ("columns", columns), ("compounds_per_mechanism", compounds_per_mechanism), ("size", size),
                    ("cells_per_site", cells_per_site)):
        check_positive(v, name, integer=True)
    n_comp = len(MECHANISMS) * compounds_per_mechanism
    if rows * columns < n_comp + 2:
        raise InputError(f"a plate of {rows}x{columns} wells cannot hold {n_comp} compounds and 2 controls; "
                         "use more rows/columns or fewer compounds_per_mechanism.")
    if size < 64:
        raise InputError(f"size must be at least 64 px, got {size}.")
    rng = np.random.default_rng(seed)
    compounds = [(f"{m}_{k + 1}", m, 0.6 + 0.4 * k / max(1, compounds_per_mechanism - 1))
                 for m in MECHANISMS for k in range(compounds_per_mechanism)]
    wells = [f"{'ABCDEFGHIJKLMNOP'[r]}{c + 1:02d}" for r in range(rows) for c in range(columns)]
    site_rows, images, nuc_labels, cell_labels, truth = [], [], [], [], []
    for b in range(n_batches):
        gain_b = np.exp(rng.normal(0, batch_effect, 3))
        for p in range(plates_per_batch):
            plate = f"B{b + 1}P{p + 1}"
            gain_p = gain_b * np.exp(rng.normal(0, plate_effect, 3))
            layout = [None] * len(wells)
            order = rng.permutation(len(wells))
            for i, comp in enumerate(compounds):
                layout[order[i]] = comp
            for wi, well in enumerate(wells):
                comp = layout[wi] or ("DMSO", "control", 0.0)
                r, c = wi // columns, wi % columns
                edge = min(r, rows - 1 - r, c, columns - 1 - c)
                gain = gain_p * (1.0 - edge_effect * (edge == 0))
                i_site = len(site_rows)
                img, nl, cl, tr = _draw_site(rng, size, cells_per_site, comp[1], comp[2], gain)
                tr.insert(0, "site_index", i_site)
                images.append(img)
                nuc_labels.append(nl)
                cell_labels.append(cl)
                truth.append(tr)
                site_rows.append({C.plate: plate, C.well: well, C.site: 1, C.batch: f"B{b + 1}",
                                  C.row: well[0], C.column: c + 1, C.compound: comp[0], "dose": comp[2],
                                  C.moa: comp[1], C.control: comp[0] == "DMSO", "n_cells": len(tr)})
    return SyntheticPlate(sites=pd.DataFrame(site_rows), images=images, nuclei=nuc_labels, cells=cell_labels,
                          truth=pd.concat(truth, ignore_index=True))


def _draw_site(rng, size, n0, mech, strength, gain):
    H = W = size
    count = n0 * (1 - 0.65 * strength if mech == "cell_count" else 1.0)
    n = max(1, int(rng.poisson(count)))
    r_nuc = 5.0 * (1 + 0.45 * strength if mech == "nuclear_size" else 1.0)
    r_nuc *= 1 + 0.12 * strength if mech == "cell_count" else 1.0
    # cell centres: a jittered grid with a pitch of 4.4 nuclear radii, n random grid points (capped by capacity)
    pitch = 4.4 * r_nuc
    g = np.arange(pitch / 2 + 2, size - pitch / 2 - 1, pitch)
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    take = rng.permutation(len(grid))[:n]
    pts = grid[take] + rng.uniform(-0.2, 0.2, (len(take), 2)) * pitch
    nuc = np.zeros((H, W), np.int32)
    cell = np.zeros((H, W), np.int32)
    dna = np.zeros((H, W), np.float32)
    act = np.zeros((H, W), np.float32)
    tub = np.zeros((H, W), np.float32)
    ratio = 1.0 + 1.5 * strength if mech == "channel_ratio" else 1.0
    rows = []
    for k, (cx, cy) in enumerate(pts, start=1):
        rn = r_nuc * np.exp(rng.normal(0, 0.08))
        rc = rn * rng.uniform(1.9, 2.2)
        th = rng.uniform(0, np.pi)
        sl, m = _ellipse((H, W), cx, cy, rc, rc * rng.uniform(0.75, 1.0), th)
        free = cell[sl] == 0
        cell[sl][m & free] = k
        a_int = rng.uniform(0.35, 0.5)
        act[sl][m & free] = a_int
        tub[sl][m & free] = a_int * 0.8 * ratio
        multi = mech == "multinucleation" and rng.random() < 0.4 + 0.5 * strength
        centres = [(cx, cy)] if not multi else [(cx - 0.75 * rn * np.cos(th), cy - 0.75 * rn * np.sin(th)),
                                                (cx + 0.75 * rn * np.cos(th), cy + 0.75 * rn * np.sin(th))]
        rr = rn if not multi else rn * 0.8
        for (nx, ny) in centres:
            sln, mn = _ellipse((H, W), nx, ny, rr, rr * rng.uniform(0.8, 1.0), th)
            mn &= cell[sln] == k
            nuc[sln][mn] = k
            base = rng.uniform(0.8, 1.0)
            if mech == "texture":
                speck = rng.gamma(1.0 / (0.05 + 0.6 * strength), 0.05 + 0.6 * strength, mn.shape)
                dna[sln][mn] = (base * speck)[mn]
            else:
                dna[sln][mn] = base * (1 + rng.normal(0, 0.05, mn.shape))[mn]
        rows.append({"label": k, "x": cx, "y": cy, "nucleus_radius_px": rn, "cell_radius_px": rc,
                     "n_nuclei": len(centres)})
    img = np.stack([dna, act, tub], axis=-1)
    img = img * gain[None, None, :].astype(np.float32) + 0.03
    img = img + rng.normal(0, 0.02, img.shape).astype(np.float32)
    return np.clip(img, 0, None).astype(np.float32), nuc, cell, pd.DataFrame(rows)
