"""Deterministic synthetic rain field: moving Gaussian rain cells on a global grid.

The field is a pure function of (seed, latitude, longitude, absolute time), so a nowcast
fetched at minute t and one fetched at t+1 agree on their overlap, a backfill of a past
minute reproduces what a live run saw, and neighbouring places see the same cells pass by
with a delay that matches the cells' drift.

How it works: the globe is cut into 4° tiles and time into 3 h epochs. Each
(seed, tile, epoch) seeds its own ``numpy.random.Generator`` (via ``SeedSequence`` on
integers, so the result is stable across processes, unlike the salted built-in ``hash``)
and draws a Poisson number of cells: birth time, lifetime, start position, velocity,
radius and peak intensity. The rate at a point sums every cell born in the tiles and
epochs that could have drifted within reach. Cell tables are cached per (tile, 6 h block),
so repeated requests around the same place and time cost a few tens of microseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TILE_DEG = 4.0
EPOCH_S = 3 * 3600
# Evaluation blocks: cell tables are cached per (tile, block); 6 h keeps most 61-minute
# windows inside one block.
BLOCK_S = 6 * 3600
NOWCAST_REGION_DEG = 5.0
NOWCAST_MAX_ABS_LAT = 75.0
MIN_RATE_MM_PER_H = 0.01

KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON_EQUATOR = 111.320

# Cell population. CELLS_PER_TILE_EPOCH is the Poisson mean of a 4°x4° equatorial tile per
# epoch at regime 1; tuned so a mid-latitude place is wet in roughly 10-20% of minutes.
CELLS_PER_TILE_EPOCH = 10.0
MIN_LIFE_S, MAX_LIFE_S = 30 * 60, 4 * 3600
MIN_SPEED_KMH, MAX_SPEED_KMH = 20.0, 70.0
HEADING_SPREAD_RAD = math.radians(25.0)
CONVECTIVE_SHARE = 0.12
STRATIFORM_PEAK_MAX = 8.0  # mm/h; clipped so the reach bound below holds
STRATIFORM_PEAK_MEDIAN = 2.0  # mm/h; edges and the fade in/out make most wet minutes lighter
STRATIFORM_LOG_SD = 0.75
CONVECTIVE_PEAK_MIN, CONVECTIVE_PEAK_MAX = 10.0, 40.0
STRATIFORM_RADIUS_KM = (10.0, 60.0)
CONVECTIVE_RADIUS_KM = (5.0, 15.0)
# Gaussian sigma = 0.4 radius: at the nominal radius a cell is down to ~4% of its peak.
SIGMA_PER_RADIUS = 0.4
# Contributions below this are dropped (they cannot change a value rounded to 0.01 mm/h).
NEGLIGIBLE_MM_PER_H = 1e-3

# Regimes: a per (8° block, day) multiplier of the cell count, so there are dry spells and
# wet spells instead of uniform drizzle statistics.
REGIME_BLOCK_TILES = 2
REGIME_SHAPE = 1.5


def _reach_km(peak: float | np.ndarray, sigma_km: float | np.ndarray) -> float | np.ndarray:
    """Distance beyond which a cell contributes less than NEGLIGIBLE_MM_PER_H."""
    ratio = np.maximum(np.asarray(peak, dtype=float) / NEGLIGIBLE_MM_PER_H, 1.0)
    return sigma_km * np.sqrt(2.0 * np.log(ratio))


# Worst case distance between a cell's birth position and a point it can still wet.
MAX_REACH_KM = MAX_SPEED_KMH * MAX_LIFE_S / 3600 + float(
    max(
        _reach_km(STRATIFORM_PEAK_MAX, STRATIFORM_RADIUS_KM[1] * SIGMA_PER_RADIUS),
        _reach_km(CONVECTIVE_PEAK_MAX, CONVECTIVE_RADIUS_KM[1] * SIGMA_PER_RADIUS),
    )
)

_N_LAT_TILES = round(180 / TILE_DEG)
_N_LON_TILES = round(360 / TILE_DEG)

# Columns of a cell array.
_LAT0, _LON0, _BIRTH, _LIFE, _VLAT, _VLON, _SIGMA, _PEAK, _SPEED, _REACH = range(10)
_N_COLS = 10

# Stream tags keep the different random draws of one seed independent.
_TAG_CELLS, _TAG_REGIME, _TAG_NOWCAST = 1, 2, 3


def _zigzag(n: int) -> int:
    """Map any int to a non-negative int (SeedSequence entropy must be >= 0)."""
    return 2 * n if n >= 0 else -2 * n - 1


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng([_zigzag(int(p)) for p in parts])


def _lat_tile(lat: float) -> int:
    return min(math.floor((lat + 90.0) / TILE_DEG), _N_LAT_TILES - 1)


def _lon_tile(lon: float) -> int:
    return math.floor((lon + 180.0) / TILE_DEG) % _N_LON_TILES


@lru_cache(maxsize=65536)
def _regime(seed: int, block_lat: int, block_lon: int, day: int) -> float:
    """Gamma(mean 1) multiplier of the cell count for one 8° block and UTC day."""
    return float(
        _rng(seed, _TAG_REGIME, block_lat, block_lon, day).gamma(REGIME_SHAPE, 1.0 / REGIME_SHAPE)
    )


def _heading_mean(lat: float) -> float:
    """Mean direction of motion (radians, 0 = towards east, counter-clockwise).

    Westerlies (moving east) between 30° and 65°, easterlies (moving west) in the trades
    and polar easterlies elsewhere.
    """
    return 0.0 if 30.0 <= abs(lat) < 65.0 else math.pi


@lru_cache(maxsize=32768)
def _tile_cells(seed: int, lat_tile: int, lon_tile: int, epoch: int) -> np.ndarray:
    """The cells born in one tile during one epoch, as a read-only (n, _N_COLS) array.

    All uniforms are drawn in one block: this runs for every tile and epoch a request
    touches for the first time, so per-call numpy overhead dominates its cost.
    """
    lat_lo = -90.0 + lat_tile * TILE_DEG
    lon_lo = -180.0 + lon_tile * TILE_DEG
    lat_c = lat_lo + TILE_DEG / 2
    regime = _regime(
        seed,
        lat_tile // REGIME_BLOCK_TILES,
        lon_tile // REGIME_BLOCK_TILES,
        (epoch * EPOCH_S) // 86400,
    )
    rng = _rng(seed, _TAG_CELLS, lat_tile, lon_tile, epoch)
    # Poisson mean proportional to the tile's area, so density per km² is latitude-free.
    n = int(rng.poisson(CELLS_PER_TILE_EPOCH * math.cos(math.radians(lat_c)) * regime))
    out = np.empty((n, _N_COLS))
    if n:
        u = rng.random((8, n))
        z = rng.standard_normal((2, n))
        convective = u[0] < CONVECTIVE_SHARE
        lat0 = lat_lo + TILE_DEG * u[1]
        out[:, _LAT0] = lat0
        out[:, _LON0] = lon_lo + TILE_DEG * u[2]
        out[:, _BIRTH] = epoch * EPOCH_S + EPOCH_S * u[3]
        # Lifetimes skewed short; convective cells live 30-90 min.
        out[:, _LIFE] = MIN_LIFE_S + np.where(
            convective, 3600 * u[4], (MAX_LIFE_S - MIN_LIFE_S) * u[4] ** 1.5
        )
        speed_kmh = MIN_SPEED_KMH + (MAX_SPEED_KMH - MIN_SPEED_KMH) * u[5]
        heading = _heading_mean(lat_c) + HEADING_SPREAD_RAD * z[0]
        cos_lat0 = np.maximum(np.cos(np.radians(lat0)), 1e-3)
        out[:, _VLAT] = speed_kmh * np.sin(heading) / (3600 * KM_PER_DEG_LAT)
        out[:, _VLON] = speed_kmh * np.cos(heading) / (3600 * KM_PER_DEG_LON_EQUATOR * cos_lat0)
        out[:, _SPEED] = speed_kmh / 3600
        # Heavy tail: lognormal stratiform peaks (0.2-8 mm/h), some 10-40 mm/h showers.
        out[:, _PEAK] = np.where(
            convective,
            CONVECTIVE_PEAK_MIN * (CONVECTIVE_PEAK_MAX / CONVECTIVE_PEAK_MIN) ** u[6],
            np.clip(
                STRATIFORM_PEAK_MEDIAN * np.exp(STRATIFORM_LOG_SD * z[1]), 0.2, STRATIFORM_PEAK_MAX
            ),
        )
        lo, hi = (
            np.where(convective, CONVECTIVE_RADIUS_KM[0], STRATIFORM_RADIUS_KM[0]),
            np.where(convective, CONVECTIVE_RADIUS_KM[1], STRATIFORM_RADIUS_KM[1]),
        )
        out[:, _SIGMA] = (lo + (hi - lo) * u[7]) * SIGMA_PER_RADIUS
        out[:, _REACH] = _reach_km(out[:, _PEAK], out[:, _SIGMA])
    out.setflags(write=False)
    return out


# Rows of a block's cell table. Each cell is described around its own reference time
# t_ref, the middle of the part of its life that falls in the block.
_B_LAT, _B_LON, _B_TREF, _B_VLAT, _B_VLON, _B_BIRTH = range(6)
_B_PHASE_RATE, _B_INV_2S2, _B_LOG_PEAK = range(6, 9)


@dataclass(frozen=True, slots=True)
class _BlockCells:
    """Cells alive during one time block near one tile, laid out for per-request work."""

    rows: np.ndarray  # (9, n), one contiguous row per _B_* attribute
    margin2: np.ndarray  # squared km a point may be from the t_ref position and get rain


def _neighbour_tiles(lat_tile: int, lon_tile: int) -> tuple[list[int], list[int]]:
    """Tiles whose cells can reach a point of this tile (MAX_REACH_KM from its edge)."""
    d_lat = math.ceil(MAX_REACH_KM / (KM_PER_DEG_LAT * TILE_DEG))
    lat_tiles = [i for i in range(lat_tile - d_lat, lat_tile + d_lat + 1) if 0 <= i < _N_LAT_TILES]
    # Longitude tiles narrow towards the poles: size the search for the most poleward
    # edge among the latitude tiles considered.
    max_abs_lat = max(
        max(abs(-90.0 + i * TILE_DEG), abs(-90.0 + (i + 1) * TILE_DEG)) for i in lat_tiles
    )
    km_per_lon_tile = KM_PER_DEG_LON_EQUATOR * TILE_DEG * math.cos(math.radians(max_abs_lat))
    if km_per_lon_tile <= 0 or MAX_REACH_KM / km_per_lon_tile >= _N_LON_TILES / 2:
        return lat_tiles, list(range(_N_LON_TILES))
    d_lon = math.ceil(MAX_REACH_KM / km_per_lon_tile)
    return lat_tiles, sorted(
        {j % _N_LON_TILES for j in range(lon_tile - d_lon, lon_tile + d_lon + 1)}
    )


# ~10 kB each: enough for every tile of a country over a day of blocks.
@lru_cache(maxsize=1024)
def _block_cells(seed: int, lat_tile: int, lon_tile: int, block: int) -> _BlockCells:
    """All cells alive during one time block that could reach any point of one tile."""
    t_lo, t_hi = block * BLOCK_S, (block + 1) * BLOCK_S
    lat_tiles, lon_tiles = _neighbour_tiles(lat_tile, lon_tile)
    parts = [
        _tile_cells(seed, i, j, e)
        for e in range((t_lo - MAX_LIFE_S) // EPOCH_S, (t_hi - 1) // EPOCH_S + 1)
        for i in lat_tiles
        for j in lon_tiles
    ]
    cells = np.concatenate(parts)
    death = cells[:, _BIRTH] + cells[:, _LIFE]
    alive = (cells[:, _BIRTH] < t_hi) & (death > t_lo)
    c = cells[alive].T
    start = np.maximum(c[_BIRTH], t_lo)
    end = np.minimum(death[alive], t_hi)
    t_ref = 0.5 * (start + end)
    age_ref = t_ref - c[_BIRTH]
    rows = np.empty((9, c.shape[1]))
    rows[_B_LAT] = c[_LAT0] + c[_VLAT] * age_ref
    rows[_B_LON] = c[_LON0] + c[_VLON] * age_ref
    rows[_B_TREF] = t_ref
    rows[_B_VLAT] = c[_VLAT]
    rows[_B_VLON] = c[_VLON]
    rows[_B_BIRTH] = c[_BIRTH]
    rows[_B_PHASE_RATE] = np.pi / c[_LIFE]
    rows[_B_INV_2S2] = 0.5 / (c[_SIGMA] * c[_SIGMA])
    rows[_B_LOG_PEAK] = np.log(c[_PEAK])
    # Within the block a cell stays within speed * half its time there of its t_ref
    # position; 10 km more absorbs the equirectangular approximation.
    margin = c[_REACH] + c[_SPEED] * 0.5 * (end - start) + 10.0
    margin2 = margin * margin
    rows.setflags(write=False)
    margin2.setflags(write=False)
    return _BlockCells(rows=rows, margin2=margin2)


def _wrap_deg(d: np.ndarray) -> np.ndarray:
    return (d + 180.0) % 360.0 - 180.0


def _rate_in_block(
    bc: _BlockCells, lat: float, lon: float, km_per_deg_lon: float, t: np.ndarray
) -> np.ndarray:
    """Sum of cell contributions at one point for times t that all lie within one block."""
    # Keep only the cells that come within reach of the point during the block. The filter
    # depends only on (block, point), never on t, so each time is computed from the same
    # cells whatever else was asked for (a forecast fetched a minute later agrees exactly).
    y0 = (bc.rows[_B_LAT] - lat) * KM_PER_DEG_LAT
    x0 = _wrap_deg(bc.rows[_B_LON] - lon) * km_per_deg_lon
    near = np.flatnonzero(x0 * x0 + y0 * y0 <= bc.margin2)
    if not near.size:
        return np.zeros(t.shape)
    r = bc.rows[:, near]
    x0, y0 = x0[near], y0[near]
    vx, vy = r[_B_VLON] * km_per_deg_lon, r[_B_VLAT] * KM_PER_DEG_LAT
    s = r[_B_INV_2S2]
    # log(peak * gaussian) is a quadratic in tau = t - t_ref: the offset
    # (x0 + vx tau, y0 + vy tau) squared. Per-cell coefficients keep the (cells x times)
    # work to a handful of array operations.
    e0 = (r[_B_LOG_PEAK] - s * (x0 * x0 + y0 * y0))[:, None]
    e1 = (-2.0 * s * (x0 * vx + y0 * vy))[:, None]
    e2 = (-s * (vx * vx + vy * vy))[:, None]
    tau = t[None, :] - r[_B_TREF, :, None]
    log_rate = e0 + tau * (e1 + e2 * tau)
    # sin² envelope over the lifetime: zero with zero slope at birth and death, so cells
    # fade in and out; the phase is clamped to [0, pi] outside the lifetime.
    phase = (t[None, :] - r[_B_BIRTH, :, None]) * r[_B_PHASE_RATE, :, None]
    envelope = np.sin(np.minimum(np.maximum(phase, 0.0, out=phase), np.pi, out=phase), out=phase)
    envelope *= envelope
    envelope *= np.exp(log_rate, out=log_rate)
    return envelope.sum(axis=0)


def rain_rate_mm_per_h(
    lat: float, lon: float, unix_seconds: np.ndarray, seed: int = 0
) -> np.ndarray:
    """Precipitation rate (mm/h) at one point for any array of unix times.

    Deterministic in (seed, lat, lon, time); the value at a given time does not depend on
    the other times requested. Rates below 0.01 mm/h are returned as 0 (not rounded
    otherwise, callers round for presentation).
    """
    if not (-90.0 <= lat <= 90.0) or not math.isfinite(lon):
        raise ValueError(f"invalid coordinate ({lat}, {lon})")
    lon = (lon + 180.0) % 360.0 - 180.0
    seed = int(seed)
    t = np.asarray(unix_seconds, dtype=np.float64)
    flat = t.ravel()
    if not flat.size:
        return np.zeros(t.shape)
    k = KM_PER_DEG_LON_EQUATOR * max(math.cos(math.radians(lat)), 1e-3)  # km per deg lon
    lat_tile, lon_tile = _lat_tile(lat), _lon_tile(lon)
    blocks = np.floor(flat / BLOCK_S)
    b_lo, b_hi = int(blocks.min()), int(blocks.max())
    if b_lo == b_hi:  # e.g. a nowcast window, except when it straddles a block boundary
        out = _rate_in_block(_block_cells(seed, lat_tile, lon_tile, b_lo), lat, lon, k, flat)
    else:
        out = np.zeros(flat.shape)
        order = np.argsort(blocks, kind="stable")
        splits = np.flatnonzero(np.diff(blocks[order])) + 1
        for sel in np.split(order, splits):
            bc = _block_cells(seed, lat_tile, lon_tile, int(blocks[sel[0]]))
            out[sel] = _rate_in_block(bc, lat, lon, k, flat[sel])
    out[out < MIN_RATE_MM_PER_H] = 0.0
    return out.reshape(t.shape)


@lru_cache(maxsize=65536)
def _region_draw(seed: int, region_lat: int, region_lon: int) -> float:
    return float(_rng(seed, _TAG_NOWCAST, region_lat, region_lon).random())


def has_nowcast(lat: float, lon: float, seed: int = 0, share: float = 0.03) -> bool:
    """Whether a minutely nowcast exists here: stable per 5° region, none beyond ±75°.

    Mirrors the real API, which omits ``minutely`` where it has no radar nowcast.
    """
    if abs(lat) > NOWCAST_MAX_ABS_LAT:
        return False
    lon = (lon + 180.0) % 360.0 - 180.0
    region_lat = math.floor((lat + 90.0) / NOWCAST_REGION_DEG)
    region_lon = math.floor((lon + 180.0) / NOWCAST_REGION_DEG)
    return _region_draw(int(seed), region_lat, region_lon) >= share
