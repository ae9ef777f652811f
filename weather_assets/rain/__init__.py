"""The minute rain nowcast: One Call 3.0 ``minutely`` -> per-minute forecasts -> next-hour totals.

``transforms`` (pure), ``client`` and ``simulator`` (the API and its offline twin, with the
synthetic ``rain_field``), ``assets``/``checks``/``jobs``/``retention`` (Dagster wiring) and
``latest`` (``python -m weather_assets.rain.latest`` prints the newest totals).
"""

from weather_assets.rain.transforms import (
    forecasts_frame,
    minutely_rows,
    next_hour_precipitation,
)

__all__ = ["forecasts_frame", "minutely_rows", "next_hour_precipitation"]
