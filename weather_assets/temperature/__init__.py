"""The office temperature forecast: a next-hour model trained daily, hourly predictions, the
actuals an hour later and the MSE that compares them.

``model`` holds the pure functions; scikit-learn costs ~1.5 s to import, so they are loaded on
first access here (``weather_assets.temperature.train_temperature_model``), never when the
Dagster wiring in ``assets`` is imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["predict_next_hour", "train_temperature_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from weather_assets.temperature import model

        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
