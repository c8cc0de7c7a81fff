"""Slide I/O: one Slide object over OpenSlide, tifffile, Pillow and arrays; tissue masks; tiles; writing."""

from ._slide import BACKENDS, Slide, open_slide
from ._write import SlideWriter, write_slide
from ._tissue import TissueMask, tissue_mask
from ._tiles import Tile, TileGrid, TileSpec, tile_grid, tiles

__all__ = ["BACKENDS", "Slide", "open_slide", "SlideWriter", "write_slide", "TissueMask", "tissue_mask",
           "Tile", "TileGrid", "TileSpec", "tile_grid", "tiles"]
