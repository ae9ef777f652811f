"""Where the API resources get their data: the real API (live) or its in-process simulator.

Decided once, where the root ``definitions.py`` builds the resources from ``SOURCE_MODE``,
``SIMULATOR_SEED`` and ``SIMULATOR_FAULT_RATE``; every API resource carries the same
``SourceConfig`` and asks it for a transport adapter, so the client code path (URL, params,
retries, parsing) is the same in both modes and only the socket differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import dagster as dg
from pydantic import field_validator

from resources.settings import LIVE, SIMULATED, SOURCE_MODES
from resources.simulators.faults import FaultPlan

A = TypeVar("A")


class SourceConfig(dg.Config):
    """Simulated or live, and how the simulators behave (ignored when live)."""

    mode: str = SIMULATED
    """``simulated`` (offline, deterministic) or ``live`` (real HTTP with real keys)."""
    seed: int = 0
    """Seed of every simulator: the same seed, coordinate and time give the same answer."""
    fault_rate: float = 0.0
    """Share of simulated requests that fail like a real API (5xx, 429, timeouts, bad bodies)."""

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        if mode not in SOURCE_MODES:
            raise ValueError(f"SOURCE_MODE must be simulated or live, got {mode!r}")
        return mode

    @field_validator("fault_rate")
    @classmethod
    def _fault_share(cls, rate: float) -> float:
        FaultPlan(rate=rate)  # raises with the accepted range
        return rate

    @property
    def live(self) -> bool:
        return self.mode == LIVE

    @property
    def faults(self) -> FaultPlan:
        return FaultPlan(rate=self.fault_rate)

    def adapter(self, simulator: Callable[[], A]) -> A | None:
        """The transport adapter to mount: ``simulator()`` when simulated, None (real HTTP) live."""
        return None if self.live else simulator()
