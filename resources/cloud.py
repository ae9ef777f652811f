"""Which cloud this process runs on: environment variables first, then the instance-metadata
endpoints, each with a short timeout, so a laptop or an offline machine answers at once.

The three clouds serve instance metadata at the link-local address 169.254.169.254 (GCP's
``metadata.google.internal`` resolves to it); probing the address avoids a DNS lookup that can
hang offline. Each probe asks for the region or zone only, never for credentials:

* AWS (IMDSv2): ``PUT /latest/api/token``, then ``GET /latest/meta-data/placement/region``;
* GCP: ``GET /computeMetadata/v1/instance/zone`` with ``Metadata-Flavor: Google``;
* Azure: ``GET /metadata/instance/compute/location`` with ``Metadata: true``.

The probes run in parallel on daemon threads and the answer waits at most ``deadline_s``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import requests

METADATA_URL = "http://169.254.169.254"
NONE_DETECTED = "none detected"
PROBE_TIMEOUT_S = 0.25
DEADLINE_S = 1.0
AZURE_API_VERSION = "2021-02-01"

# Variables each cloud's managed runtimes set (Lambda/ECS/Batch, Cloud Run/Functions/App
# Engine, App Service/Functions/Container Apps): a process there may not reach the endpoint.
ENVIRONMENT_MARKERS: tuple[tuple[str, str], ...] = (
    ("aws", "AWS_EXECUTION_ENV"),
    ("aws", "AWS_LAMBDA_FUNCTION_NAME"),
    ("aws", "ECS_CONTAINER_METADATA_URI_V4"),
    ("aws", "AWS_BATCH_JOB_ID"),
    ("gcp", "K_SERVICE"),
    ("gcp", "CLOUD_RUN_JOB"),
    ("gcp", "FUNCTION_TARGET"),
    ("gcp", "GAE_ENV"),
    ("azure", "WEBSITE_INSTANCE_ID"),
    ("azure", "CONTAINER_APP_NAME"),
    ("azure", "FUNCTIONS_EXTENSION_VERSION"),
)


@dataclass(frozen=True)
class CloudInfo:
    """``cloud`` is ``aws``, ``gcp``, ``azure`` or ``none detected``; ``evidence`` says why."""

    cloud: str
    evidence: str


def from_environment(env: Mapping[str, str]) -> CloudInfo | None:
    """The cloud named by a managed runtime's variable, or None."""
    for cloud, name in ENVIRONMENT_MARKERS:
        if env.get(name):
            return CloudInfo(cloud, f"environment variable {name}={env[name]}")
    return None


def probe_aws(session: requests.Session, base_url: str, timeout_s: float) -> str | None:
    token = session.put(
        f"{base_url}/latest/api/token",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        timeout=timeout_s,
    )
    if token.status_code != 200 or not token.text:
        return None
    region = session.get(
        f"{base_url}/latest/meta-data/placement/region",
        headers={"X-aws-ec2-metadata-token": token.text},
        timeout=timeout_s,
    )
    return f"region {region.text.strip()}" if region.status_code == 200 and region.text else None


def probe_gcp(session: requests.Session, base_url: str, timeout_s: float) -> str | None:
    zone = session.get(
        f"{base_url}/computeMetadata/v1/instance/zone",
        headers={"Metadata-Flavor": "Google"},
        timeout=timeout_s,
    )
    if zone.status_code != 200 or zone.headers.get("Metadata-Flavor") != "Google":
        return None
    return f"zone {zone.text.strip().rsplit('/', 1)[-1]}"


def probe_azure(session: requests.Session, base_url: str, timeout_s: float) -> str | None:
    location = session.get(
        f"{base_url}/metadata/instance/compute/location",
        params={"api-version": AZURE_API_VERSION, "format": "text"},
        headers={"Metadata": "true"},
        timeout=timeout_s,
    )
    if location.status_code != 200 or not location.text.strip():
        return None
    return f"location {location.text.strip()}"


Probe = Callable[[requests.Session, str, float], "str | None"]
PROBES: tuple[tuple[str, Probe], ...] = (
    ("aws", probe_aws),
    ("gcp", probe_gcp),
    ("azure", probe_azure),
)


def detect_cloud(
    env: Mapping[str, str],
    *,
    metadata_url: str = METADATA_URL,
    probes: tuple[tuple[str, Probe], ...] = PROBES,
    timeout_s: float = PROBE_TIMEOUT_S,
    deadline_s: float = DEADLINE_S,
) -> CloudInfo:
    """The cloud of this process: ``env`` first, then ``probes`` against ``metadata_url`` in
    parallel (the first to answer wins); ``none detected`` after ``deadline_s`` at most.
    A probe that fails for any reason (refused, timeout, an unexpected answer) says no."""
    found = from_environment(env)
    if found:
        return found
    answers: dict[str, str] = {}
    done = threading.Event()
    pending = [len(probes)]
    lock = threading.Lock()

    def run(cloud: str, probe: Probe) -> None:
        try:
            with requests.Session() as session:
                session.trust_env = False  # a proxy must not answer for the link-local address
                answer = probe(session, metadata_url.rstrip("/"), timeout_s)
        except Exception:  # any failure means "not this cloud"
            answer = None
        with lock:
            if answer:
                answers[cloud] = answer
            pending[0] -= 1
            if answer or pending[0] == 0:
                done.set()

    for cloud, probe in probes:
        threading.Thread(target=run, args=(cloud, probe), daemon=True).start()
    done.wait(deadline_s)
    with lock:
        first = next(iter(answers.items()), None)
    if first:
        return CloudInfo(first[0], f"instance metadata at {metadata_url}: {first[1]}")
    return CloudInfo(NONE_DETECTED, f"no cloud variable set, no metadata at {metadata_url}")
