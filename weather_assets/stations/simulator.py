"""Deterministic weather "truth" and the raw station feed derived from it (no Dagster here).

Everything is a pure function of (seed, coordinate, absolute UTC time), so any window - one
daily partition, five days of training history, one hour of actuals - can be generated on its
own and agrees exactly with its neighbours: there is no state carried from day to day.

Temperature is the sum of what a forecaster would recognise:

* climatology: an annual mean falling with latitude and an annual cycle (peak ~20 July in the
  north, ~20 January in the south) growing with latitude;
* a diurnal cycle in local solar time, coldest just after sunrise and warmest ~14-15 h, whose
  half-range follows the noon sun and a day-to-day "cloudiness" factor;
* synoptic weather: eastward-travelling waves (periods 2.5-20 days, wavelengths of thousands of
  km, so neighbouring places see the same systems) plus fronts (a sharp tanh of a second wave
  field: steps of several °C within a few hours);
* showers: random cooling events (sudden drop of 0.5-3.5 °C, recovery within 1-2 h), more
  frequent and stronger in summer;
* unpredictable hour-scale and minute-scale noise (a few tenths of a °C).

Pressure is anticorrelated with the synoptic temperature anomaly, humidity with the diurnal
temperature, wind is a smooth random vector around a prevailing westerly with gusts.

Randomness: wave parameters come from ``numpy.random.SeedSequence`` on integers; per-knot
values from a vectorised splitmix64 hash keyed with ``blake2b`` of (seed, coordinate, stream).
Both are stable across processes and platforms, unlike the salted built-in ``hash``. Slow
components are evaluated on an absolute 5-minute grid and interpolated linearly (error below
0.01 °C), fast noise is a cubic B-spline through hashed knots at absolute multiples of its
period; so ~6 million one-second readings take a few seconds.

Raw feed junk (``raw_readings``): every reading independently becomes junk with probability
``junk_rate`` (default 0.02); the kind is then drawn with these shares (``JUNK_SHARES``):

============  =====  =============  ======================================================
kind          share  at rate 0.02   what it looks like
============  =====  =============  ======================================================
null          0.30   0.60 %         one value field (uniform over the five) is null
sentinel      0.15   0.30 %         one value field is -999
absurd        0.15   0.30 %         one field impossible: temperature 85 or -120, humidity
                                    140, pressure 0, wind speed 150, wind direction 540
spike         0.15   0.30 %         temperature off the truth by +/- 8..20 °C
duplicate     0.15   0.30 %         the row is sent twice, byte-identical (the extra copy
                                    arrives just after the original)
out_of_order  0.10   0.20 %         a correct row arriving 1-30 minutes late (at least two
                                    intervals), after newer rows of its station
============  =====  =============  ======================================================

Rates are per reading (before duplication), so a day of N readings has N rows plus about
``N * junk_rate * 0.15`` duplicate copies. A reading is junk of at most one kind; duplicated
and out-of-order rows carry correct values. ``label_junk=True`` adds the ground truth as a
``junk_kind`` column. Values outside ``VALID_RANGES`` are always junk and clean values are
always inside them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache

import numpy as np
import polars as pl

from weather_assets.locations import Location

VALUE_COLUMNS = ("temperature_c", "humidity_pct", "pressure_hpa", "wind_speed_ms", "wind_deg")
SENTINEL = -999.0
JUNK_SHARES = {
    "null": 0.30,
    "sentinel": 0.15,
    "absurd": 0.15,
    "spike": 0.15,
    "duplicate": 0.15,
    "out_of_order": 0.10,
}
ABSURD_VALUES = {
    "temperature_c": (85.0, -120.0),
    "humidity_pct": (140.0,),
    "pressure_hpa": (0.0,),
    "wind_speed_ms": (150.0,),
    "wind_deg": (540.0,),
}
# Physically possible at the surface; clean readings always fall inside, absurd ones never.
VALID_RANGES = {
    "temperature_c": (-90.0, 60.0),
    "humidity_pct": (0.0, 100.0),
    "pressure_hpa": (850.0, 1090.0),
    "wind_speed_ms": (0.0, 75.0),
    "wind_deg": (0.0, 360.0),
}
SPIKE_RANGE_C = (8.0, 20.0)
OUT_OF_ORDER_DELAY_S = (60.0, 1800.0)
HOURLY_SAMPLES = 120  # truth samples averaged into one hourly actual (every 30 s)

GRID_S = 300.0  # slow components are evaluated on this absolute grid
YEAR_S = 365.2422 * 86400.0
SUMMER_PEAK_UNIX = 963_446_400.0  # 2000-07-20T00:00Z: warmest time of year in the north
MARCH_EQUINOX_UNIX = 953_596_800.0  # 2000-03-21T00:00Z
KM_PER_DEG = 111.2

# Diurnal half-range (°C) = (base + sun * sin(noon elevation)) * cloudiness; cloudiness ~0.9.
DIURNAL_BASE_C, DIURNAL_SUN_C = 1.2, 3.6
SHOWER_EPOCH_S = 3 * 3600.0
SHOWER_TAIL_EPOCHS = 6  # a shower's recovery is ~e^-9 after 18 h: negligible

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_BSPLINE_SD = math.sqrt(0.479)  # mean sd of a cubic B-spline through unit-variance knots


# ---------------------------------------------------------------------------------------------
# Stable hashing and smooth noise


def _key(*parts: object) -> int:
    """A 64-bit stream key; blake2b so it is the same in every process (no salted hash())."""
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrap-around multiplication is intended)."""
    x = x ^ (x >> _S30)
    x = x * _M1
    x = x ^ (x >> _S27)
    x = x * _M2
    return x ^ (x >> _S31)


def _uniform(key: int, index: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) per integer index, a pure function of (key, index)."""
    x = np.asarray(index, dtype=np.int64).view(np.uint64) * _GOLDEN ^ np.uint64(key)
    return (_mix(_mix(x)) >> _S11).astype(np.float64) * (1.0 / 9007199254740992.0)


def _normal(key: int, index: np.ndarray) -> np.ndarray:
    """Standard normal per integer index (Box-Muller on two hashed uniforms)."""
    u1 = 1.0 - _uniform(key, index)
    u2 = _uniform(key ^ 0x5DEECE66D, index)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _knot_lookup(k: np.ndarray, offsets: range) -> tuple[np.ndarray, Callable]:
    """Knot indices needed for ``k + offsets`` and a gather from a table over them.

    A contiguous table when the span is dense (the usual case: cheap, no sort), otherwise the
    unique indices only, so a few timestamps years apart do not allocate a huge table.
    """
    lo, hi = int(k.min()) + offsets.start, int(k.max()) + offsets.stop - 1
    if hi - lo + 1 <= 4 * k.size + 4096:
        knots = np.arange(lo, hi + 1, dtype=np.int64)
        return knots, lambda table, off: table[k + (off - lo)]
    knots = np.unique(np.concatenate([k + off for off in offsets]))
    return knots, lambda table, off: table[np.searchsorted(knots, k + off)]


class _Spline:
    """Cubic B-spline basis at absolute multiples of ``period``; reused for several streams."""

    def __init__(self, t: np.ndarray, period: float) -> None:
        s = t / period
        kf = np.floor(s)
        u = s - kf
        self.k = kf.astype(np.int64)
        u2 = u * u
        u3 = u2 * u
        self.w = (
            (1.0 - 3.0 * u + 3.0 * u2 - u3) / 6.0,
            (4.0 - 6.0 * u2 + 3.0 * u3) / 6.0,
            (1.0 + 3.0 * u + 3.0 * u2 - 3.0 * u3) / 6.0,
            u3 / 6.0,
        )
        self.knots, self.gather = _knot_lookup(self.k, range(-1, 3))

    def noise(self, key: int) -> np.ndarray:
        """Smooth (C2) noise with about unit variance."""
        table = _normal(key, self.knots)
        out = self.w[0] * self.gather(table, -1)
        for i, off in enumerate((0, 1, 2), start=1):
            out += self.w[i] * self.gather(table, off)
        return out * (1.0 / _BSPLINE_SD)


def _noise(key: int, t: np.ndarray, period: float) -> np.ndarray:
    return _Spline(t, period).noise(key)


# ---------------------------------------------------------------------------------------------
# Slow components (evaluated on the absolute grid)


@lru_cache(maxsize=64)
def _wave_field(seed: int, field: int) -> tuple[np.ndarray, ...]:
    """Eastward-travelling waves: (omega rad/s, kx, ky rad/km, phase, amplitude), unit variance."""
    rng = np.random.default_rng(
        np.random.SeedSequence([7919, abs(int(seed)), int(seed < 0), field])
    )
    n = 20
    period_s = 86400.0 * np.exp(rng.uniform(np.log(2.5), np.log(20.0), n))
    speed_kms = rng.uniform(6.0, 16.0, n) / 1000.0
    heading = rng.normal(0.0, np.radians(25.0), n)
    omega = 2.0 * np.pi / period_s
    wavenumber = omega / speed_kms
    amplitude = rng.rayleigh(1.0, n) * (period_s / (5 * 86400.0)) ** 0.3
    amplitude /= np.sqrt(np.sum(amplitude**2) / 2.0)
    return (
        omega,
        wavenumber * np.cos(heading),
        wavenumber * np.sin(heading),
        rng.uniform(0.0, 2.0 * np.pi, n),
        amplitude,
    )


def _waves(seed: int, field: int, lat: float, lon: float, t: np.ndarray) -> np.ndarray:
    omega, kx, ky, phase, amplitude = _wave_field(seed, field)
    x = lon * KM_PER_DEG * math.cos(math.radians(lat))
    y = lat * KM_PER_DEG
    offset = phase - (kx * x + ky * y)
    return np.cos(np.outer(t, omega) + offset) @ amplitude


def _lat_factor(lat: float) -> float:
    """0 in the tropics, 1 from ~55° poleward: how "mid-latitude" the weather is."""
    return min(max((abs(lat) - 10.0) / 45.0, 0.0), 1.0)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _diurnal_shape(hour: np.ndarray, t_min: np.ndarray, t_max: np.ndarray) -> np.ndarray:
    """-1 at t_min (after sunrise), +1 at t_max; faster rise than decay, C1 continuous."""
    rise = t_max - t_min
    since_min = np.mod(hour - t_min, 24.0)
    rising = since_min < rise
    phase = np.where(rising, since_min / rise, (since_min - rise) / (24.0 - rise))
    return np.where(rising, -np.cos(np.pi * phase), np.cos(np.pi * phase))


def _showers(key: int, t: np.ndarray, season: np.ndarray) -> np.ndarray:
    """Cooling (°C, >= 0) from showers: sudden onset over 15 min, exponential recovery."""
    epoch = np.floor(t / SHOWER_EPOCH_S).astype(np.int64)
    out = np.zeros_like(t)
    probability = 0.07 + 0.04 * season
    strength = 0.7 + 0.3 * season
    for lag in range(SHOWER_TAIL_EPOCHS):
        e = epoch - lag
        happens = _uniform(key, e) < probability
        onset = (e + _uniform(key + 1, e)) * SHOWER_EPOCH_S
        size = (0.5 + 3.0 * _uniform(key + 2, e)) * strength
        tau = 60.0 * (40.0 + 80.0 * _uniform(key + 3, e))
        dt = t - onset
        recovery = np.exp(-np.maximum(dt - 900.0, 0.0) / tau)
        out += np.where(happens & (dt > 0), size * _smoothstep(dt / 900.0) * recovery, 0.0)
    return out


def _slow(location: Location, seed: int, t: np.ndarray) -> dict[str, np.ndarray]:
    """Slowly varying components at grid times ``t`` (float unix seconds)."""
    lat, lon = float(location.lat), float(location.lon)
    place = _key(seed, "place", round(lat * 1e6), round(lon * 1e6))
    lat_f = _lat_factor(lat)
    hemisphere = 1.0 if lat >= 0 else -1.0

    # Season: +1 at local midsummer, -1 at midwinter.
    season = hemisphere * np.cos(2.0 * np.pi * (t - SUMMER_PEAK_UNIX) / YEAR_S)
    annual_mean = 27.0 - 0.43 * max(abs(lat) - 14.0, 0.0)
    annual_half_range = 0.5 + 0.12 * abs(lat)
    climate = annual_mean + annual_half_range * season

    # Sun: declination, noon elevation, sunrise in local solar hours.
    decl = np.radians(23.44) * np.sin(2.0 * np.pi * (t - MARCH_EQUINOX_UNIX) / YEAR_S)
    phi = math.radians(lat)
    noon_sin = np.clip(np.cos(phi - decl), 0.05, 1.0)
    cos_h0 = np.clip(-math.tan(phi) * np.tan(decl), -1.0, 1.0)
    day_length = 24.0 / np.pi * np.arccos(cos_h0)
    t_min = np.clip(12.0 - day_length / 2.0 + 0.5, 3.0, 10.0)
    t_max = np.clip(13.0 + day_length / 12.0, 13.5, 15.0)
    solar_hour = np.mod(t / 3600.0 + lon / 15.0, 24.0)

    cloud_noise = _noise(_key(place, "cloud"), t, 6 * 3600.0)
    cloudiness = np.clip(0.9 + 0.4 * cloud_noise, 0.2, 1.7)
    diurnal = (DIURNAL_BASE_C + DIURNAL_SUN_C * noon_sin) * cloudiness
    diurnal = diurnal * _diurnal_shape(solar_hour, t_min, t_max)

    # Synoptic: spatially coherent waves + fronts; larger in winter and at higher latitudes.
    sigma = (0.7 + 2.5 * lat_f) * (1.0 - 0.12 * season)
    s1 = _waves(seed, 1, lat, lon, t)
    fronts = np.tanh(_waves(seed, 2, lat, lon, t) / 0.12)
    synoptic = sigma * (0.85 * s1 + 0.45 * fronts)

    showers = _showers(_key(place, "showers"), t, season)
    hour_noise = 0.55 * _noise(_key(place, "hour"), t, 3600.0) + 0.45 * _noise(
        _key(place, "hours"), t, 3 * 3600.0
    )
    temperature = climate + diurnal + synoptic - showers + hour_noise

    pressure_anomaly = 0.85 * s1 + 0.5 * _waves(seed, 3, lat, lon, t)
    tide = 0.5 * math.cos(phi) * np.cos(4.0 * np.pi * (solar_hour - 10.0) / 24.0)
    pressure = 1013.25 - (1.5 + 7.0 * lat_f) * pressure_anomaly + tide - 0.3 * showers

    humidity = (
        76.0
        + 8.0 * cloud_noise
        - 3.2 * diurnal
        + 6.0 * showers
        + 4.0 * _noise(_key(place, "humid"), t, 6 * 3600.0)
    )

    wind_scale = 1.5 + 2.0 * lat_f
    westerly = 0.6 if 30.0 <= abs(lat) < 65.0 else -0.3
    daytime = 1.0 + 0.15 * _diurnal_shape(solar_hour, t_min, t_max)
    u = wind_scale * (westerly + 0.9 * _noise(_key(place, "u"), t, 8 * 3600.0)) * daytime
    v = wind_scale * 0.9 * _noise(_key(place, "v"), t, 8 * 3600.0) * daytime
    return {
        "temperature": temperature,
        "humidity": humidity,
        "pressure": pressure,
        "u": u,
        "v": v,
    }


def _on_grid(location: Location, seed: int, t: np.ndarray) -> dict[str, np.ndarray]:
    """Slow components at ``t``, linearly interpolated from the absolute GRID_S grid."""
    g = t / GRID_S
    jf = np.floor(g)
    frac = g - jf
    j = jf.astype(np.int64)
    knots, gather = _knot_lookup(j, range(0, 2))
    table = _slow(location, seed, knots.astype(np.float64) * GRID_S)
    return {
        name: gather(values, 0) * (1.0 - frac) + gather(values, 1) * frac
        for name, values in table.items()
    }


# ---------------------------------------------------------------------------------------------
# Public API


def truth(
    location: Location, timestamps_utc: np.ndarray, *, seed: int = 0
) -> dict[str, np.ndarray]:
    """The true weather at ``location`` for unix-second timestamps (any order, any span).

    Returns float64 arrays ``temperature_c``, ``humidity_pct``, ``pressure_hpa``,
    ``wind_speed_ms`` and ``wind_deg`` (direction the wind blows from, 0-360).
    """
    t = np.asarray(timestamps_utc, dtype=np.float64).ravel()
    if t.size == 0:
        return {name: np.empty(0) for name in VALUE_COLUMNS}
    if not np.all(np.isfinite(t)):
        raise ValueError("timestamps_utc must be finite unix seconds")
    place = _key(seed, "place", round(float(location.lat) * 1e6), round(float(location.lon) * 1e6))
    slow = _on_grid(location, seed, t)
    minute = _Spline(t, 60.0)
    ten_minutes = _Spline(t, 600.0)
    temperature = (
        slow["temperature"]
        + 0.2 * minute.noise(_key(place, "t60"))
        + 0.15 * ten_minutes.noise(_key(place, "t600"))
    )
    humidity = np.clip(slow["humidity"] + 0.8 * minute.noise(_key(place, "h60")), 5.0, 100.0)
    pressure = np.clip(slow["pressure"], 900.0, 1080.0)
    gust = np.maximum(1.0 + 0.25 * _noise(_key(place, "gust"), t, 20.0), 0.2)
    speed = np.minimum(np.hypot(slow["u"], slow["v"]) * gust, 60.0)
    direction = np.degrees(np.arctan2(-slow["u"], -slow["v"]))
    direction = np.mod(direction + 8.0 * minute.noise(_key(place, "d60")), 360.0)
    return {
        "temperature_c": temperature,
        "humidity_pct": humidity,
        "pressure_hpa": pressure,
        "wind_speed_ms": speed,
        "wind_deg": direction,
    }


def _as_utc(moment: datetime | date) -> datetime:
    if not isinstance(moment, datetime):
        return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def hourly_temperatures(
    location: Location, start: datetime, end: datetime, *, seed: int = 0
) -> pl.DataFrame:
    """Hourly actuals: every hour overlapping [start, end) (none if end <= start).

    ``timestamp`` is the start of the hour (UTC) and ``temperature_c`` the mean of the truth
    over the hour (120 samples, one every 30 s): what a clean ETL of the feed converges to.
    Naive datetimes are taken as UTC.
    """
    begin, stop = _as_utc(start).timestamp(), _as_utc(end).timestamp()
    first = math.floor(begin / 3600) * 3600
    hours = np.arange(first, stop if stop > begin else first, 3600, dtype=np.int64)
    offsets = (np.arange(HOURLY_SAMPLES) + 0.5) * (3600.0 / HOURLY_SAMPLES)
    samples = (hours[:, None] + offsets[None, :]).ravel()
    values = truth(location, samples, seed=seed)["temperature_c"]
    means = values.reshape(hours.size, HOURLY_SAMPLES).mean(axis=1) if hours.size else values
    return pl.DataFrame(
        {
            "timestamp": pl.Series(hours * 1_000_000, dtype=pl.Int64).cast(
                pl.Datetime("us", "UTC")
            ),
            "temperature_c": pl.Series(means, dtype=pl.Float64),
        }
    )


def _station_times(station_key: int, day_start: int, interval_s: float) -> tuple[np.ndarray, ...]:
    """Integer-second reading times within the UTC day and their absolute reading index."""
    phase = _uniform(station_key, np.array([0]))[0] * interval_s
    first = math.floor((day_start - phase) / interval_s) - 1
    last = math.ceil((day_start + 86400 - phase) / interval_s) + 1
    k = np.arange(first, last + 1, dtype=np.int64)
    # Jitter of at most (interval - 1) / 2 keeps consecutive readings in distinct seconds.
    half_width = min(0.25 * interval_s, (interval_s - 1.0) / 2.0)
    jitter = (2.0 * _uniform(station_key + 1, k) - 1.0) * half_width
    seconds = np.floor(k * interval_s + phase + jitter).astype(np.int64)
    keep = (seconds >= day_start) & (seconds < day_start + 86400)
    keep[1:] &= seconds[1:] != seconds[:-1]  # sub-2-s intervals can collide: keep the first
    return seconds[keep], k[keep]


def raw_readings(
    locations: Sequence[Location],
    day: date,
    *,
    seed: int = 0,
    interval_s: float = 10.0,
    junk_rate: float = 0.02,
    label_junk: bool = False,
) -> pl.DataFrame:
    """One UTC day of the station feed "as received", junk included (see the module docstring).

    Each station reports about every ``interval_s`` seconds with jitter, at whole seconds;
    readings and junk are keyed by absolute time, so adjacent days join seamlessly. Rows are
    in arrival order (by time, then station), apart from the junk's duplicates and late rows.
    """
    if not 0.0 <= junk_rate <= 1.0:
        raise ValueError(f"junk_rate must be within [0, 1], got {junk_rate}")
    if not interval_s >= 1.0:
        raise ValueError(f"interval_s must be >= 1 second, got {interval_s}")
    day_start = int(_as_utc(day).timestamp()) // 86400 * 86400
    shares = np.cumsum(list(JUNK_SHARES.values()))
    kinds = list(JUNK_SHARES)
    frames = []
    for location in locations:
        station = _key(seed, "station", location.location_id)
        seconds, k = _station_times(station, day_start, interval_s)
        values = truth(location, seconds, seed=seed)
        columns = {
            "temperature_c": np.round(values["temperature_c"], 2),
            "humidity_pct": np.round(values["humidity_pct"], 1),
            "pressure_hpa": np.round(values["pressure_hpa"], 1),
            "wind_speed_ms": np.round(values["wind_speed_ms"], 1),
            "wind_deg": np.mod(np.round(values["wind_deg"]), 360.0),
        }
        null_mask = {name: np.zeros(seconds.size, dtype=bool) for name in VALUE_COLUMNS}

        is_junk = _uniform(station + 2, k) < junk_rate
        kind = np.searchsorted(shares, _uniform(station + 3, k) * shares[-1], side="right")
        kind = np.where(is_junk, np.minimum(kind, len(kinds) - 1), -1)
        field = np.minimum((_uniform(station + 4, k) * len(VALUE_COLUMNS)).astype(int), 4)
        pick = _uniform(station + 5, k)
        for f, name in enumerate(VALUE_COLUMNS):
            on_field = field == f
            null_mask[name] |= (kind == kinds.index("null")) & on_field
            sentinel = (kind == kinds.index("sentinel")) & on_field
            columns[name] = np.where(sentinel, SENTINEL, columns[name])
            absurd = (kind == kinds.index("absurd")) & on_field
            options = np.array(ABSURD_VALUES[name])
            choice = options[np.minimum((pick * options.size).astype(int), options.size - 1)]
            columns[name] = np.where(absurd, choice, columns[name])
        spike = kind == kinds.index("spike")
        low, high = SPIKE_RANGE_C
        offset = (low + (high - low) * pick) * np.where(_uniform(station + 6, k) < 0.5, -1, 1)
        columns["temperature_c"] = np.where(
            spike, np.round(columns["temperature_c"] + offset, 2), columns["temperature_c"]
        )

        # File order: arrival time. Late rows arrive 1-30 min (>= 2 intervals) after they
        # were observed, so newer rows of the station precede them; copies follow originals.
        late = kind == kinds.index("out_of_order")
        low, high = OUT_OF_ORDER_DELAY_S
        low, high = max(low, 2.0 * interval_s), max(high, 30.0 * interval_s)
        arrival = seconds + np.where(late, low + (high - low) * pick, 0.0)
        duplicate = kind == kinds.index("duplicate")
        index = np.concatenate([np.arange(seconds.size), np.flatnonzero(duplicate)])
        # The original of a duplicated reading is clean; its extra copy carries the label.
        label = np.concatenate([np.where(duplicate, -1, kind), kind[duplicate]]).astype(np.int8)
        frame = pl.DataFrame(
            {
                "arrival": np.concatenate([arrival, arrival[duplicate] + 0.5]),
                "station_id": pl.repeat(
                    location.location_id, index.size, dtype=pl.String, eager=True
                ),
                "observed_s": seconds[index],
                **{name: columns[name][index] for name in VALUE_COLUMNS},
                **{f"_null_{name}": null_mask[name][index] for name in VALUE_COLUMNS},
                "_kind": label,
            }
        ).with_columns(
            pl.when(pl.col(f"_null_{name}")).then(None).otherwise(pl.col(name)).alias(name)
            for name in VALUE_COLUMNS
        )
        frames.append(frame)
    schema = {
        "arrival": pl.Float64,
        "station_id": pl.String,
        "observed_s": pl.Int64,
        **dict.fromkeys(VALUE_COLUMNS, pl.Float64),
        "_kind": pl.Int8,
    }
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=schema)
    frame = frame.sort(["arrival", "station_id"], maintain_order=True)
    observed = pl.from_epoch(pl.col("observed_s"), time_unit="s").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    columns_out = [
        "station_id",
        observed.alias("observed_at"),
        *VALUE_COLUMNS,
        *(
            [
                pl.col("_kind")
                .replace_strict(dict(enumerate(kinds)), default=None, return_dtype=pl.String)
                .alias("junk_kind")
            ]
            if label_junk
            else []
        ),
    ]
    return frame.select(columns_out)
