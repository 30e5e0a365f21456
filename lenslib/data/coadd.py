"""DR10 coadd tiles: the brick list, per-brick FITS images per band, and cutouts through the WCS.

Layout (authors' bucket): ``dr10/coadd_cache/<brick>/legacysurvey-<brick>-{image,invvar}-<band>.fits[.fz]``
and ``dr10/survey-bricks-dr10-south.fits.gz`` (columns BRICKNAME, RA, DEC, RA1, RA2, DEC1, DEC2).
A cutout is 101 × 101 pixels centred on the pixel that contains (ra, dec), in g, r, z order, in the
tile's units (nanomaggies). Pixels outside the tile or with invvar = 0 are NaN and flagged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits
from astropy.wcs import WCS

from lenslib import LenslibError
from lenslib.survey import BANDS, STAMP

FILE_PATTERN = "{brick}/legacysurvey-{brick}-{kind}-{band}.fits"


class CoaddError(LenslibError, ValueError):
    """A brick, tile or position cannot give a cutout."""


def read_bricks(source: str | Path | bytes) -> pd.DataFrame:
    """The survey-bricks table (FITS, optionally gzipped) as a DataFrame with lower-case columns."""
    try:
        with fits.open(io.BytesIO(source) if isinstance(source, bytes) else source) as hdul:
            table = hdul[1].data
            df = pd.DataFrame({c.lower(): np.asarray(table[c]).astype(
                np.asarray(table[c]).dtype.newbyteorder("=")) for c in table.columns.names})
    except FileNotFoundError:
        raise CoaddError(f"{source}: no such brick list") from None
    except (OSError, IndexError, TypeError) as exc:
        raise CoaddError(f"brick list {source if not isinstance(source, bytes) else ''}: unreadable ({exc})") from None
    need = {"brickname", "ra1", "ra2", "dec1", "dec2"}
    if not need <= set(df.columns):
        raise CoaddError(f"brick list lacks columns {sorted(need - set(df.columns))}")
    df["brickname"] = df["brickname"].astype(str).str.strip()
    return df


def brick_for(bricks: pd.DataFrame, ra: float, dec: float) -> str:
    """Name of the brick whose RA/Dec box contains (ra, dec) (boxes are [ra1, ra2) × [dec1, dec2))."""
    ra = ra % 360.0
    hit = bricks[(bricks["dec1"] <= dec) & (dec < bricks["dec2"]) & (bricks["ra1"] <= ra) & (ra < bricks["ra2"])]
    if hit.empty:
        raise CoaddError(f"no brick contains ra={ra:.6f}, dec={dec:.6f}")
    return str(hit["brickname"].iloc[0])


@dataclass
class CoaddCutout:
    image: np.ndarray  # (3, 101, 101) float32, NaN where there is no valid data
    flags: dict[str, object] = field(default_factory=dict)


def _read_tile(read, brick: str, kind: str, band: str) -> tuple[np.ndarray, WCS] | None:
    """(data, WCS) of one tile; None if the file does not exist. ``read(key)`` returns bytes or raises."""
    from lenslib.data.storage import ArtefactMissing

    for suffix in ("", ".fz"):
        key = FILE_PATTERN.format(brick=brick, kind=kind, band=band) + suffix
        try:
            data = read(key)
        except (FileNotFoundError, ArtefactMissing):
            continue
        try:
            with fits.open(io.BytesIO(data)) as hdul:
                hdu = next(h for h in hdul if h.data is not None and getattr(h.data, "ndim", 0) == 2)
                return np.asarray(hdu.data, dtype=np.float32), WCS(hdu.header)
        except (OSError, StopIteration, ValueError) as exc:
            raise CoaddError(f"{key}: not a readable 2-D FITS image ({exc})") from None
    return None


class BrickTiles:
    """One brick's tiles, each read on first use and then kept: many stamps are cut from one read.

    ``read(key)`` returns the bytes of a key relative to the coadd root (e.g. ``store.read_bytes``). A tile
    that is missing is remembered as missing, one that is unreadable raises the same :class:`CoaddError`
    every time it is asked for (it is read once)."""

    def __init__(self, read, brick: str):
        self.read, self.brick = read, brick
        self._tiles: dict[tuple[str, str], tuple[np.ndarray, WCS] | None | CoaddError] = {}

    def tile(self, kind: str, band: str) -> tuple[np.ndarray, WCS] | None:
        """(data, WCS) of the ``kind`` ("image" or "invvar") tile of ``band``; None if it does not exist."""
        key = (kind, band)
        if key not in self._tiles:
            try:
                self._tiles[key] = _read_tile(self.read, self.brick, kind, band)
            except CoaddError as exc:
                self._tiles[key] = exc
        got = self._tiles[key]
        if isinstance(got, CoaddError):
            raise CoaddError(str(got))
        return got

    def has_image(self) -> bool:
        """Whether the brick has an image tile in at least one band."""
        return any(self.tile("image", band) is not None for band in BANDS)

    def cutout(self, ra: float, dec: float, size: int = STAMP) -> CoaddCutout:
        """The stamp of :func:`cutout_from_tiles` at (ra, dec), cut from the tiles read so far."""
        half = size // 2
        out = np.full((3, size, size), np.nan, np.float32)
        flags: dict[str, object] = {"brick": self.brick, "missing_bands": [], "edge": False, "masked_pixels": {}}
        for b, band in enumerate(BANDS):
            tile = self.tile("image", band)
            if tile is None:
                flags["missing_bands"].append(band)
                continue
            data, wcs = tile
            x, y = wcs.world_to_pixel_values(ra, dec)
            if not (np.isfinite(x) and np.isfinite(y)):
                raise CoaddError(f"({ra}, {dec}) has no pixel position in brick {self.brick} band {band}")
            xc, yc = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
            if band == "r" or "centre_pixel" not in flags:
                flags["centre_pixel"] = (xc, yc)
            ny, nx = data.shape
            y0, x0 = yc - half, xc - half
            ys, xs = slice(max(y0, 0), min(y0 + size, ny)), slice(max(x0, 0), min(x0 + size, nx))
            if ys.start >= ys.stop or xs.start >= xs.stop:
                raise CoaddError(f"({ra}, {dec}) lies outside brick {self.brick} ({band} tile {nx}x{ny})")
            if (ys.stop - ys.start, xs.stop - xs.start) != (size, size):
                flags["edge"] = True
            stamp = data[ys, xs].copy()
            ivar = self.tile("invvar", band)
            masked = ~np.isfinite(stamp)
            if ivar is not None:
                masked |= ~(ivar[0][ys, xs] > 0)
            stamp[masked] = np.nan
            flags["masked_pixels"][band] = int(masked.sum())
            out[b, ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0] = stamp
        if len(flags["missing_bands"]) == 3:
            raise CoaddError(f"brick {self.brick}: no image tile in any band")
        return CoaddCutout(out, flags)


def cutout_from_tiles(read, brick: str, ra: float, dec: float, size: int = STAMP) -> CoaddCutout:
    """Cut a (3, size, size) g, r, z stamp centred on (ra, dec) from one brick's tiles.

    ``read(key)`` returns the bytes of a key relative to the coadd root (e.g. ``store.read_bytes``).
    Flags: ``missing_bands`` (no tile), ``edge`` (part of the stamp outside the tile),
    ``masked_pixels`` per band (invvar = 0 or non-finite), ``centre_pixel`` (x, y) in the r tile.
    Reads the brick's tiles at every call; for many stamps of one brick use :class:`BrickTiles`."""
    return BrickTiles(read, brick).cutout(ra, dec, size)
