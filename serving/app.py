"""The ASGI app (``uvicorn serving.app:app``): routers plus the per-worker model holder.

Configuration comes from the environment when a worker starts (not at import), so one image
serves any deployment: the object store and warehouse variables of ``resources.settings``,
``MODEL_RELOAD_SECONDS`` and ``DASHBOARD_REFRESH_SECONDS``. New pages and JSON routes go in their own modules as routers,
included in ``create_app``.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from market_assets.model_store import pointer_key
from resources.object_store import object_store_from
from resources.settings import load_settings
from serving import dashboard, predict_api
from serving.model_holder import ModelHolder, log, reload_seconds_from_env
from serving.warehouse_snapshot import SnapshotHolder, refresh_seconds_from_env


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = load_settings()
    store = object_store_from(settings)
    holder = ModelHolder(store, reload_seconds=reload_seconds_from_env())
    app.state.model_holder = holder
    log.info(
        "following the volume model pointer %s (checked every %g s)",
        store.uri(pointer_key(store)),
        holder.reload_seconds,
    )
    await holder.refresh_if_due()
    if holder.current is None and holder.last_error is None:
        log.warning("no volume model published yet: /predict answers 503 until there is one")
    snapshots = SnapshotHolder(
        settings.warehouse_path,
        settings.locations_file,
        refresh_seconds=refresh_seconds_from_env(),
    )
    app.state.snapshots = snapshots
    await asyncio.to_thread(snapshots.start)
    log.info("dashboard reads %s every %g s", settings.warehouse_path, snapshots.refresh_seconds)
    # Everything imported so far (dagster, sklearn, pydantic: ~240k objects) lives as long as
    # the worker; without this, each full collection walks it all (one took 130 ms on a busy
    # 2-core machine), stalling every request in flight.
    gc.freeze()
    try:
        yield
    finally:
        snapshots.stop()


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's usual 422 body, with each message naming its parameter ("query parameter x: ...")."""
    errors = []
    for error in exc.errors():
        loc = error.get("loc") or ()
        if len(loc) >= 2 and loc[0] in ("query", "path", "header", "cookie"):
            error = {**error, "msg": f"{loc[0]} parameter {loc[-1]}: {error['msg']}"}
        errors.append(error)
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})


def create_app() -> FastAPI:
    app = FastAPI(
        title="Data platform",
        summary="The platform's web service: the dashboard pages (/, /temperature, /volume), "
        "their JSON twins, and /predict from the latest volume model.",
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(predict_api.router)
    app.include_router(dashboard.router)
    return app


app = create_app()
