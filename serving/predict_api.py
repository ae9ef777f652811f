"""``GET /predict`` (the volume model) and ``GET /health`` (which model this worker serves)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from market_assets.schema import ADJ_CLOSE_ROLLING_MED, FEATURES, VOL_MOVING_AVG
from serving.model_holder import ModelHolder, log
from serving.predictor import to_volume

# The query parameters are the feature names; fail at import if the schema renames one.
if set(FEATURES) != {"vol_moving_avg", "adj_close_rolling_med"}:
    raise RuntimeError(f"/predict's parameters no longer match the model features {FEATURES}")

NO_MODEL = "no volume model yet: materialize volume_model"
# Plausible ranges, far beyond any listed stock (the busiest trade a few billion shares a day;
# the dearest share costs under a million dollars). Beyond them the answer would be an
# extrapolation at best and an overflow at worst (the ratio model multiplies vol_moving_avg).
MAX_VOL_MOVING_AVG = 1e12
MAX_ADJ_CLOSE_ROLLING_MED = 1e7
NON_FINITE = "non_finite_prediction"

router = APIRouter(tags=["volume model"])


class Message(BaseModel):
    detail: str


class ParameterError(BaseModel):
    # pydantic's error type (missing, float_parsing, greater_than_equal, less_than_equal,
    # finite_number), or non_finite_prediction: the model has no finite answer for the inputs
    type: str
    loc: list[str | int]  # ["query", "<parameter>"] (["query"] for non_finite_prediction)
    msg: str  # "query parameter <parameter>: <what is wrong>"
    input: Any = None
    ctx: dict | None = None


class ValidationErrors(BaseModel):
    detail: list[ParameterError]


class Health(BaseModel):
    # degraded: serving an older version because the newest one failed to load
    status: Literal["ok", "degraded", "no_model"]
    model_version: str | None
    published_at: str | None
    loaded_at: str | None
    source_key: str | None
    predictor: str | None
    last_checked_at: str | None
    last_error: str | None
    last_error_at: str | None


def _feature(description: str, example: float, maximum: float):
    return Query(
        ge=0,
        le=maximum,
        allow_inf_nan=False,
        description=f"{description}; finite, from 0 to {maximum:.0e}.",
        examples=[example],
    )


VolMovingAvg = Annotated[
    float,
    _feature("Mean daily volume (shares) over the last 30 trading days", 9_800, MAX_VOL_MOVING_AVG),
]
AdjCloseRollingMed = Annotated[
    float,
    _feature(
        "Median adjusted close over the last 30 trading days", 41.5, MAX_ADJ_CLOSE_ROLLING_MED
    ),
]


def holder_of(request: Request) -> ModelHolder:
    return request.app.state.model_holder


@router.get(
    "/predict",
    response_model=int,
    summary="Predicted trading volume for one day",
    responses={
        200: {
            "description": "The predicted volume in shares: a JSON integer, rounded, >= 0.",
            "content": {"application/json": {"example": 10350}},
        },
        422: {
            "model": ValidationErrors,
            "description": "A parameter is missing, not a number, negative, above its maximum, "
            "nan or inf; or (type non_finite_prediction) the model has no finite prediction for "
            "these inputs.",
        },
        503: {"model": Message, "description": NO_MODEL + " (or it could not be loaded)"},
    },
)
async def predict(
    request: Request, vol_moving_avg: VolMovingAvg, adj_close_rolling_med: AdjCloseRollingMed
) -> int:
    return await predicted_volume(holder_of(request), vol_moving_avg, adj_close_rolling_med)


async def predicted_volume(
    holder: ModelHolder, vol_moving_avg: float, adj_close_rolling_med: float
) -> int:
    """The current model's prediction (shared by ``/predict`` and the ``/volume`` page);
    HTTP 503 while there is no loadable model, 422 when its prediction is not finite."""
    if holder.check_due():
        await holder.refresh_if_due()
    current = holder.current
    if current is None:
        if holder.published:
            raise HTTPException(503, "the volume model could not be loaded: see /health")
        raise HTTPException(503, NO_MODEL)
    values = {VOL_MOVING_AVG: vol_moving_avg, ADJ_CLOSE_ROLLING_MED: adj_close_rolling_med}
    prediction = current.predictor.predict_one([values[name] for name in FEATURES])
    if not math.isfinite(prediction):
        log.warning("volume model %s predicted %r for %s", current.version, prediction, values)
        error = {
            "type": NON_FINITE,
            "loc": ["query"],
            "msg": "query: the model's prediction for these inputs is not a finite number "
            f"({prediction}); try values closer to real trading data",
            "input": values,
        }
        raise HTTPException(422, [error])
    return to_volume(prediction)


@router.get("/health", response_model=Health, summary="Which model this worker serves")
async def health(request: Request) -> dict:
    holder = holder_of(request)
    await holder.refresh_if_due()
    return holder.status()
