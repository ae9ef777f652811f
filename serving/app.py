"""The ASGI app (``uvicorn serving.app:app``): routers plus the per-worker model holder.

Configuration is read when a worker starts (not at import), so one image serves any deployment:
``resources.settings`` (the object store and warehouse variables, ``MODEL_RELOAD_SECONDS``,
``DASHBOARD_REFRESH_SECONDS``), from the environment and ``.env``. A bad variable stops the
worker before it serves anything, with every problem in the log. New pages and JSON routes go
in their own modules as routers, included in ``create_app``.

``.env`` is loaded the way Dagster loads it (``resources.settings.dotenv_environ``): into
``os.environ``, a variable of the file replacing an exported one, so that the dashboard, boto3
(``AWS_*``) and Dagster see the same values. Not uvicorn's ``--env-file``: that calls
python-dotenv's ``load_dotenv()`` without ``override``, so an exported variable would win in
the web service and lose in Dagster, and it would cover only the commands that pass the flag.
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
from resources.jetstream import nats_url_from
from resources.object_store import object_store_from
from resources.settings import Settings, SettingsError, dotenv_environ, load_settings
from serving import dashboard, predict_api
from serving.model_holder import ModelHolder, log
from serving.realtime_rain import RealtimeRain
from serving.warehouse_snapshot import SnapshotHolder


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    with dotenv_environ() as loaded:
        if loaded:
            # Names only: the file holds secrets.
            log.info("loaded from .env (as Dagster does): %s", ", ".join(sorted(loaded)))
        try:
            settings = load_settings()
        except SettingsError as exc:
            log.error("refusing to start, %s", exc)
            raise
        async with _serving(app, settings):
            yield


@asynccontextmanager
async def _serving(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    store = object_store_from(settings)
    holder = ModelHolder(store, reload_seconds=settings.model_reload_seconds)
    app.state.settings = settings
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
        refresh_seconds=settings.dashboard_refresh_seconds,
        realtime=RealtimeRain(nats_url_from(settings)),
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
