"""The model a worker is serving, and how it follows newly published versions without a restart.

Requests read ``holder.current``: one attribute holding an immutable ``LoadedModel``, so a swap
is a single assignment and a request sees either the old model or the new one, never a mix.
At most every ``reload_seconds`` one request (whichever comes first) reads the pointer in a
worker thread; the event loop keeps answering everyone else with the current model meanwhile.
A version that fails to load leaves the old model in place; the error is kept for /health and
that version is retried only after ``retry_failed_seconds``. /health is public, so it gets a
generic reason (``ModelRefused.reason``, else "see the server log"); exception texts, which can
hold file paths, keys and bucket names, go to the server log only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from market_assets.model_store import VERSION_PATTERN, ModelRefused, load_model, read_pointer
from resources import clock
from resources.object_store import ObjectStore
from resources.settings import DEFAULT_MODEL_RELOAD_SECONDS
from serving.predictor import Predictor, make_predictor

# A child of uvicorn's logger, so these lines show up in the server's log.
log = logging.getLogger("uvicorn.error.serving")

DEFAULT_RELOAD_SECONDS = DEFAULT_MODEL_RELOAD_SECONDS
RETRY_FAILED_SECONDS = 60.0
SEE_LOG = "see the server log"


def _utc_now() -> str:
    return clock.utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class LoadedModel:
    version: str
    published_at: str | None
    loaded_at: str
    model_key: str
    sha256: str
    predictor: Predictor


class ModelHolder:
    """One per worker process; see the module docstring."""

    def __init__(
        self,
        store: ObjectStore,
        reload_seconds: float = DEFAULT_RELOAD_SECONDS,
        retry_failed_seconds: float = RETRY_FAILED_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.reload_seconds = reload_seconds
        self.retry_failed_seconds = max(retry_failed_seconds, reload_seconds)
        self.clock = clock
        self.current: LoadedModel | None = None
        self.published = False  # has the pointer ever been seen?
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.last_checked_at: str | None = None
        self._next_check = 0.0
        self._checking = False
        self._failed: tuple[str, str, float] | None = None  # (version, sha256, when)

    def check_due(self) -> bool:
        """Cheap enough for every request: a clock read and two comparisons."""
        return not self._checking and self.clock() >= self._next_check

    async def refresh_if_due(self) -> None:
        if not self.check_due():
            return
        self._checking = True
        check = asyncio.get_running_loop().run_in_executor(None, self._refresh_and_reschedule)
        # Shielded: a cancelled request must not cancel the check (which clears the flag).
        await asyncio.shield(check)

    def _refresh_and_reschedule(self) -> None:
        try:
            self.refresh()
        finally:
            self._next_check = self.clock() + self.reload_seconds
            self._checking = False

    def refresh(self) -> None:
        """Read the pointer; load and swap in its version if it is new. Blocking; never raises."""
        self.last_checked_at = _utc_now()
        try:
            pointer = read_pointer(self.store)
        except Exception as exc:
            self._fail(f"reading the model pointer failed: {SEE_LOG}", exc)
            return
        if pointer is None:  # nothing published (yet, or any more: keep what we have)
            self.last_error = self.last_error_at = None
            return
        self.published = True
        version, sha256 = str(pointer["version"]), str(pointer["sha256"])
        current = self.current
        if current is not None and (current.version, current.sha256) == (version, sha256):
            self.last_error = self.last_error_at = None
            return
        failed = self._failed
        if failed and failed[:2] == (version, sha256) and not self._retry_due(failed[2]):
            return
        try:
            predictor = make_predictor(load_model(self.store, pointer))
        except Exception as exc:
            self._failed = (version, sha256, self.clock())
            kept = f"; still serving {current.version}" if current else ""
            shown = version if VERSION_PATTERN.fullmatch(version) else "(not a version name)"
            reason = exc.reason if isinstance(exc, ModelRefused) else SEE_LOG
            self._fail(f"loading version {shown} failed: {reason}{kept}", exc)
            return
        self.current = LoadedModel(
            version=version,
            published_at=pointer.get("published_at"),
            loaded_at=_utc_now(),
            model_key=str(pointer["model_key"]),
            sha256=sha256,
            predictor=predictor,
        )
        self._failed = None
        self.last_error = self.last_error_at = None
        log.info(
            "volume model %s loaded from %s (%s predictor)",
            version,
            self.store.uri(pointer["model_key"]),
            predictor.kind,
        )

    def _retry_due(self, failed_at: float) -> bool:
        return self.clock() - failed_at >= self.retry_failed_seconds

    def _fail(self, public: str, exc: Exception) -> None:
        """``public`` for /health; the exception itself (paths, keys) for the log only."""
        self.last_error, self.last_error_at = public, _utc_now()
        log.warning("%s (%s: %s)", public, type(exc).__name__, exc)

    def status(self) -> dict:
        current = self.current
        if current is None:
            status = "no_model"
        elif self.last_error:
            status = "degraded"
        else:
            status = "ok"
        return {
            "status": status,
            "model_version": current.version if current else None,
            "published_at": current.published_at if current else None,
            "loaded_at": current.loaded_at if current else None,
            "source_key": current.model_key if current else None,
            "predictor": current.predictor.kind if current else None,
            "last_checked_at": self.last_checked_at,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }
