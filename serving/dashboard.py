"""The dashboard pages (``/``, ``/temperature``, ``/volume``) and their JSON twins (``/rain``,
``/temperature.json``; ``/volume``'s is ``/predict``).

Pages are server-side Jinja2 templates with inline SVG charts, so they work offline and with
JavaScript off; only the rain table's once-a-minute refresh uses a few lines of inline script.
Every handler reads the in-memory ``Snapshot`` (``serving.warehouse_snapshot``), never DuckDB.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, TypeAdapter, ValidationError

from resources import clock
from serving.charts import Series, line_chart
from serving.predict_api import (
    AdjCloseRollingMed,
    VolMovingAvg,
    holder_of,
    predicted_volume,
)
from serving.warehouse_snapshot import RAIN_STALE_AFTER, SnapshotHolder

router = APIRouter()
templates = Jinja2Templates(directory=str(Path(__file__).with_name("templates")))

FORM_FIELDS = {
    "vol_moving_avg": TypeAdapter(VolMovingAvg),
    "adj_close_rolling_med": TypeAdapter(AdjCloseRollingMed),
}


def snapshots_of(request: Request) -> SnapshotHolder:
    return request.app.state.snapshots


class RainRow(BaseModel):
    location_id: str
    name: str
    lat: float
    lon: float
    window_start: datetime
    next_hour_precipitation_mm: float | None
    minutes_covered: int
    answered_at: datetime | None = None
    """When the API answered (rows from the stream's real-time view; null from the warehouse)."""


class DataStatus(BaseModel):
    warehouse_read_at: datetime | None
    warehouse_read_age_seconds: float | None
    rain_as_of: datetime | None
    rain_age_seconds: float | None
    rain_stale: bool
    rain_source: str
    last_error: str | None
    last_error_at: datetime | None


class TemperaturePoint(BaseModel):
    hour: datetime
    actual_c: float | None
    predicted_c: float | None
    model_version: str | None


class AccuracyPoint(BaseModel):
    target_hour: datetime
    squared_error: float | None
    mse_24h: float | None
    hours_24h: int | None
    mse_7d: float | None
    hours_7d: int | None
    model_version: str | None


class TemperatureData(BaseModel):
    status: DataStatus
    model_version: str | None
    model_made_at: datetime | None
    points: list[TemperaturePoint]
    accuracy: list[AccuracyPoint]


def _age_headers(response: Response, status: dict[str, Any]) -> None:
    """How old the data is, for scripts that read the JSON list of ``/rain``."""
    if status["rain_as_of"] is not None:
        response.headers["X-Data-As-Of"] = status["rain_as_of"].isoformat()
        response.headers["X-Data-Age-Seconds"] = f"{status['rain_age_seconds']:.0f}"
    response.headers["X-Data-Stale"] = str(status["rain_stale"]).lower()
    response.headers["X-Data-Source"] = status["rain_source"]
    if status["warehouse_read_at"] is not None:
        response.headers["X-Warehouse-Read-At"] = status["warehouse_read_at"].isoformat()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def rain_page(request: Request) -> HTMLResponse:
    holder = snapshots_of(request)
    return templates.TemplateResponse(
        request,
        "rain.html",
        {
            "rows": holder.rain()[0],
            "status": holder.status(),
            "stale_after_minutes": int(RAIN_STALE_AFTER.total_seconds() // 60),
        },
    )


@router.get(
    "/rain",
    response_model=list[RainRow],
    tags=["dashboard"],
    summary="Next-hour rain per coordinate (the stream's real-time view, else the warehouse)",
    description="Each coordinate's latest next-hour total: from the rain stream's real-time "
    "view seconds after the API answered, or the latest rolling_precipitation_sum rows when the "
    "log is not reachable. The office first, then the wettest. Headers X-Data-As-Of, "
    "X-Data-Age-Seconds, X-Data-Stale (older than 3 minutes) and X-Data-Source say how old the "
    "numbers are and where they come from.",
)
def rain_json(request: Request, response: Response) -> list[dict[str, Any]]:
    holder = snapshots_of(request)
    _age_headers(response, holder.status())
    return holder.rain()[0]


def _temperature(holder: SnapshotHolder) -> dict[str, Any]:
    snap = holder.current
    return {
        "status": holder.status(),
        "model_version": snap.model_version,
        "model_made_at": snap.model_made_at,
        "points": snap.temperature,
        "accuracy": snap.accuracy,
    }


@router.get(
    "/temperature.json",
    response_model=TemperatureData,
    tags=["dashboard"],
    summary="Predicted vs actual office temperature and the rolling MSE, last 7 days",
)
def temperature_json(request: Request) -> dict[str, Any]:
    return _temperature(snapshots_of(request))


@router.get("/temperature", response_class=HTMLResponse, include_in_schema=False)
def temperature_page(request: Request) -> HTMLResponse:
    data = _temperature(snapshots_of(request))
    points, accuracy = data["points"], data["accuracy"]
    forecast_chart = line_chart(
        [
            Series("actual", [(p["hour"], p["actual_c"]) for p in points], "#1f6feb"),
            Series("predicted", [(p["hour"], p["predicted_c"]) for p in points], "#d73a49", True),
        ],
        title="Office temperature, predicted vs actual",
        unit="°C",
    )
    mse_chart = line_chart(
        [
            Series("MSE 24 h", [(a["target_hour"], a["mse_24h"]) for a in accuracy], "#6f42c1"),
            Series("MSE 7 d", [(a["target_hour"], a["mse_7d"]) for a in accuracy], "#2da44e"),
        ],
        title="Rolling mean squared error",
        unit="°C²",
    )
    latest = accuracy[-1] if accuracy else None
    return templates.TemplateResponse(
        request,
        "temperature.html",
        {
            **data,
            "forecast_chart": forecast_chart,
            "mse_chart": mse_chart,
            "latest": latest,
            "next_prediction": next((p for p in reversed(points) if p["actual_c"] is None), None),
        },
    )


def _form_errors(values: dict[str, str | None]) -> tuple[dict[str, float], dict[str, str]]:
    """The /predict API's own validation, with its messages ("query parameter x: ...")."""
    parsed: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name, adapter in FORM_FIELDS.items():
        raw = values.get(name)
        if raw is None or not raw.strip():
            errors[name] = f"query parameter {name}: Field required"
            continue
        try:
            parsed[name] = adapter.validate_python(raw.strip())
        except ValidationError as exc:
            errors[name] = f"query parameter {name}: {exc.errors()[0]['msg']}"
    return parsed, errors


@router.get("/volume", response_class=HTMLResponse, include_in_schema=False)
async def volume_page(
    request: Request,
    vol_moving_avg: Annotated[str | None, Query()] = None,
    adj_close_rolling_med: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    values = {"vol_moving_avg": vol_moving_avg, "adj_close_rolling_med": adj_close_rolling_med}
    submitted = any(v is not None for v in values.values())
    prediction = None
    unavailable = None
    errors: dict[str, str] = {}
    status_code = 200
    if submitted:
        parsed, errors = _form_errors(values)
        if errors:
            status_code = 422
        else:
            try:
                prediction = await predicted_volume(
                    holder_of(request), parsed["vol_moving_avg"], parsed["adj_close_rolling_med"]
                )
            except HTTPException as exc:
                detail = exc.detail  # a message, or /predict's list of errors
                unavailable = detail[0]["msg"] if isinstance(detail, list) else detail
                status_code = exc.status_code
    return templates.TemplateResponse(
        request,
        "volume.html",
        {
            "values": {k: v or "" for k, v in values.items()},
            "errors": errors,
            "prediction": prediction,
            "unavailable": unavailable,
            "model": holder_of(request).status(),
            "now": clock.utcnow(),
        },
        status_code=status_code,
    )
