"""``resources.cloud``: the cloud a process runs on, from its environment or a metadata endpoint
(a local HTTP server stands in for each cloud's), and a quick "none detected" offline."""

from __future__ import annotations

import socket
import time

import pytest
from werkzeug import Response

from resources.cloud import NONE_DETECTED, detect_cloud


@pytest.mark.parametrize(
    ("name", "value", "cloud"),
    [
        ("AWS_EXECUTION_ENV", "AWS_ECS_FARGATE", "aws"),
        ("K_SERVICE", "weather-platform", "gcp"),
        ("WEBSITE_INSTANCE_ID", "abc123", "azure"),
    ],
)
def test_a_managed_runtime_variable_names_the_cloud_without_any_probe(name, value, cloud):
    started = time.perf_counter()
    info = detect_cloud({name: value}, metadata_url="http://127.0.0.1:9")  # never asked
    assert (info.cloud, info.evidence) == (cloud, f"environment variable {name}={value}")
    assert time.perf_counter() - started < 0.1


def test_aws_instance_metadata_v2(httpserver):
    httpserver.expect_request(
        "/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    ).respond_with_data("TOKEN-1")
    httpserver.expect_request(
        "/latest/meta-data/placement/region",
        method="GET",
        headers={"X-aws-ec2-metadata-token": "TOKEN-1"},
    ).respond_with_data("eu-west-1")
    info = detect_cloud({}, metadata_url=httpserver.url_for(""))
    assert info.cloud == "aws"
    assert info.evidence.endswith(": region eu-west-1")


def test_gcp_metadata_server(httpserver):
    httpserver.expect_request(
        "/computeMetadata/v1/instance/zone", headers={"Metadata-Flavor": "Google"}
    ).respond_with_response(
        Response("projects/123/zones/europe-west1-b", headers={"Metadata-Flavor": "Google"})
    )
    info = detect_cloud({}, metadata_url=httpserver.url_for(""))
    assert (info.cloud, info.evidence.rsplit(": ", 1)[1]) == ("gcp", "zone europe-west1-b")


def test_a_gcp_answer_without_googles_header_is_not_gcp(httpserver):
    httpserver.expect_request("/computeMetadata/v1/instance/zone").respond_with_data("zone-x")
    assert detect_cloud({}, metadata_url=httpserver.url_for("")).cloud == NONE_DETECTED


def test_azure_instance_metadata_service(httpserver):
    httpserver.expect_request(
        "/metadata/instance/compute/location",
        headers={"Metadata": "true"},
        query_string={"api-version": "2021-02-01", "format": "text"},
    ).respond_with_data("westeurope")
    info = detect_cloud({}, metadata_url=httpserver.url_for(""))
    assert (info.cloud, info.evidence.rsplit(": ", 1)[1]) == ("azure", "location westeurope")


def test_nothing_there_is_none_detected_at_once():
    """A refused connection (nothing listens) answers in milliseconds."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the probes run
    started = time.perf_counter()
    info = detect_cloud({}, metadata_url=f"http://127.0.0.1:{port}")
    assert info.cloud == NONE_DETECTED
    assert time.perf_counter() - started < 0.5


def test_an_endpoint_that_never_answers_costs_at_most_the_deadline():
    """A black hole, as on a network that drops the packets: the kernel completes the
    connections (listen backlog) and nothing ever replies."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        started = time.perf_counter()
        info = detect_cloud(
            {}, metadata_url=f"http://127.0.0.1:{server.getsockname()[1]}", deadline_s=0.6
        )
        elapsed = time.perf_counter() - started
    assert info.cloud == NONE_DETECTED
    assert elapsed < 0.9
