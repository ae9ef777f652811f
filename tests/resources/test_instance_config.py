"""dagster.yaml for `make run`: the template, plus PostgreSQL storage when DAGSTER_PG_URL is set."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from resources.instance_config import (
    TEMPLATE,
    InstanceConfigError,
    instance_yaml,
    main,
    validate_pg_url,
)


def test_without_a_url_the_template_is_written_unchanged(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    target = tmp_path / "home" / "dagster.yaml"
    assert main([str(target)]) == 0
    assert target.read_text() == TEMPLATE.read_text()
    assert "storage" not in yaml.safe_load(target.read_text())


def test_with_a_url_storage_names_the_variable_not_the_password() -> None:
    url = "postgresql+psycopg2://dagster:s3cret-pw@db.internal:5432/dagster"
    text = instance_yaml(TEMPLATE.read_text(), url)
    config = yaml.safe_load(text)
    assert config["storage"] == {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
    assert config["concurrency"] == yaml.safe_load(TEMPLATE.read_text())["concurrency"]
    assert "s3cret-pw" not in text and "db.internal" not in text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://u:pw@host/db", "must start with postgresql\\+psycopg2://"),
        ("postgres://u:pw@host/db", "must start with postgresql\\+psycopg2://"),
        ("host:5432/db", "must start with"),
        ("postgresql+psycopg2://u:pw@host", "must name a host and a database"),
        ("postgresql+psycopg2:///db", "must name a host and a database"),
    ],
)
def test_unusable_urls_are_refused_without_showing_the_password(url, message) -> None:
    with pytest.raises(InstanceConfigError, match=message) as caught:
        validate_pg_url(url)
    assert "pw" not in str(caught.value).replace("password", "")


def test_a_refused_url_fails_the_command_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_PG_URL", "postgresql://u:pw@host/db")
    target = tmp_path / "dagster.yaml"
    assert main([str(target)]) == 1
    assert "DAGSTER_PG_URL must start with" in capsys.readouterr().err
    assert not target.exists()


@pytest.mark.integration
def test_the_written_file_opens_an_instance_on_postgresql(
    tmp_path, monkeypatch, postgres_database
) -> None:
    """The generated dagster.yaml, loaded the way `dagster dev` loads it, on the local server."""
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_database)
    home = tmp_path / "home"
    assert main([str(home / "dagster.yaml")]) == 0
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"

        @dg.asset
        def probe() -> int:
            return 1

        assert dg.materialize([probe], instance=instance).success
        assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None


def test_the_instance_monitors_runs_frees_their_slots_and_bounds_its_ticks(tmp_path, monkeypatch):
    """Run monitoring on (a dead worker's run is failed, its pool slots freed), and every kind
    of tick purged after a bounded number of days."""
    from dagster._core.scheduler.instigation import InstigatorType
    from dagster._daemon.daemon import MonitoringDaemon

    from resources.run_worker import LocalRunLauncher

    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    assert main([str(tmp_path / "dagster.yaml")]) == 0
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_monitoring_enabled
        assert MonitoringDaemon.daemon_type() in instance.get_required_daemon_types()
        assert isinstance(instance.run_launcher, LocalRunLauncher)
        assert instance.run_launcher.supports_check_run_worker_health
        settings = instance.run_monitoring_settings
        assert 0 < settings["poll_interval_seconds"] <= 30
        assert 0 < settings["free_slots_after_run_end_seconds"] <= 30
        for kind in (InstigatorType.SENSOR, InstigatorType.SCHEDULE):
            days = instance.get_tick_retention_settings(kind)
            assert all(0 < d <= 30 for d in days.values()), (kind, days)
