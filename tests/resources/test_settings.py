"""``resources.settings``: defaults, rules, every bad variable at once, ``.env`` (read the way
Dagster reads it, by Settings and by the web service), the start-up check, and no settings read
at import time beyond the two accepted places."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import resources.settings as settings_module
from resources.settings import (
    DEFAULT_LOCATIONS_FILE,
    ESIOS_BASE_URL,
    NASA_IMAGES_BASE_URL,
    OPENWEATHERMAP_BASE_URL,
    Settings,
    SettingsError,
    dotenv_environ,
    env_name,
    load_settings,
    read_env_file,
)

REPO = Path(__file__).resolve().parents[2]
VARIABLES = [env_name(name) for name in Settings.model_fields]


@pytest.fixture
def clean_env(monkeypatch) -> pytest.MonkeyPatch:
    """No platform variable set (tests/conftest.py already switches .env off)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def dotenv_dir(tmp_path, clean_env) -> Path:
    """A working directory whose .env is read, as in ``make run``."""
    clean_env.chdir(tmp_path)
    clean_env.setattr(settings_module, "ENV_FILE", ".env")
    return tmp_path


def test_every_platform_variable_is_a_setting():
    assert VARIABLES == [
        "SOURCE_MODE", "DATA_DIR", "WAREHOUSE_PATH", "S3_BUCKET", "S3_BUCKET_NAME", "S3_PREFIX",
        "S3_ENDPOINT_URL", "OPENWEATHERMAP_BASE_URL", "OPENWEATHERMAP_CALLS_PER_MINUTE",
        "LOCATIONS_FILE",
        "SIMULATOR_SEED", "SIMULATOR_FAULT_RATE", "RAIN_PARTITION_DAYS",
        "RAIN_RAW_RETENTION_HOURS", "RUN_RETENTION_HOURS", "FAILED_RUN_RETENTION_DAYS", "NATS_URL", "NATS_PORT", "RAIN_STREAM_MAX_AGE_HOURS",
        "RAIN_STREAM_REPLICAS", "RAIN_MINUTE_GRACE_SECONDS", "RAIN_PRODUCERS", "RAIN_CHECKPOINT_DIR",
        "OBSERVATION_STATIONS", "ESIOS_BASE_URL",
        "STOCK_DATASET_DIR", "STOCK_SIMULATED_SIZE", "NASA_IMAGES_BASE_URL",
        "SEARCH_RESULT_SAMPLING_FACTOR", "NASA_MAX_DOWNLOAD_MB", "SPARK_MASTER",
        "SPARK_DRIVER_MEMORY",
        "SPARK_JARS_PACKAGES", "MODEL_RELOAD_SECONDS", "DASHBOARD_REFRESH_SECONDS",
    ]  # fmt: skip
    secrets = ("KEY", "TOKEN", "PASSWORD", "SECRET", "SQL_DATABASE_URL", "PG_URL", "WEBHOOK")
    assert not [name for name in VARIABLES if any(word in name for word in secrets)]


def test_defaults(clean_env):
    s = load_settings()
    assert (s.source_mode, s.simulated) == ("simulated", True)
    assert s.data_dir == Path("data")
    assert s.warehouse_path == Path("data/warehouse.duckdb")
    assert s.objects_dir == Path("data/objects")
    assert (s.s3_bucket, s.s3_prefix, s.s3_endpoint_url) == (None, "dagster", None)
    assert s.openweathermap_base_url == OPENWEATHERMAP_BASE_URL
    assert s.openweathermap_calls_per_minute == 60
    assert s.locations_file == DEFAULT_LOCATIONS_FILE == REPO / "weather_assets" / "locations.csv"
    assert s.locations_file.is_file()
    assert (s.simulator_seed, s.simulator_fault_rate) == (0, 0.0)
    assert (s.nats_url, s.nats_port) == (None, 14222)
    assert (s.rain_stream_max_age_hours, s.rain_stream_replicas) == (48, 1)
    assert (s.rain_minute_grace_seconds, s.rain_producers) == (90, 1)
    assert (s.rain_partition_days, s.rain_raw_retention_hours) == (30, 48)
    assert (s.run_retention_hours, s.failed_run_retention_days) == (48, 14)
    assert s.observation_stations == "office,amsterdam,rotterdam,eindhoven,groningen"
    assert s.esios_base_url == ESIOS_BASE_URL
    assert (s.stock_dataset_dir, s.stock_simulated_size) == (None, "small")
    assert s.nasa_images_base_url == NASA_IMAGES_BASE_URL
    assert s.search_result_sampling_factor == 1
    assert s.nasa_max_download_mb == 64
    assert (s.spark_master, s.spark_driver_memory, s.spark_jars_packages) == (
        "local[*]",
        None,
        None,
    )
    assert (s.model_reload_seconds, s.dashboard_refresh_seconds) == (5.0, 10.0)


def test_values_are_read_and_converted(clean_env):
    values = {
        "SOURCE_MODE": "LIVE",
        "DATA_DIR": "/srv/platform",
        "S3_BUCKET": "weather",
        "S3_PREFIX": "/models/",
        "S3_ENDPOINT_URL": "http://minio:9000",
        "OPENWEATHERMAP_CALLS_PER_MINUTE": "600",
        "SIMULATOR_SEED": "-3",
        "SIMULATOR_FAULT_RATE": "0.25",
        "RAIN_PARTITION_DAYS": "69",
        "RAIN_RAW_RETENTION_HOURS": "1",
        "STOCK_SIMULATED_SIZE": "Kaggle",
        "SEARCH_RESULT_SAMPLING_FACTOR": "7",
        "NASA_MAX_DOWNLOAD_MB": "500",
        "SPARK_MASTER": "spark://head:7077",
        "MODEL_RELOAD_SECONDS": " 0 ",
        "DASHBOARD_REFRESH_SECONDS": "2.5",
    }
    for name, value in values.items():
        clean_env.setenv(name, value)
    s = load_settings()
    assert (s.source_mode, s.simulated) == ("live", False)
    assert s.warehouse_path == Path("/srv/platform/warehouse.duckdb"), "derived from DATA_DIR"
    assert s.objects_dir == Path("/srv/platform/objects")
    assert (s.s3_bucket, s.s3_prefix, s.s3_endpoint_url) == (
        "weather",
        "models",
        values["S3_ENDPOINT_URL"],
    )
    assert (s.openweathermap_calls_per_minute, s.simulator_seed) == (600, -3)
    assert (s.simulator_fault_rate, s.rain_partition_days, s.rain_raw_retention_hours) == (
        0.25,
        69,
        1,
    )
    assert (s.stock_simulated_size, s.search_result_sampling_factor) == ("kaggle", 7)
    assert s.nasa_max_download_mb == 500
    assert (s.spark_master, s.model_reload_seconds, s.dashboard_refresh_seconds) == (
        "spark://head:7077", 0.0, 2.5,
    )  # fmt: skip
    clean_env.setenv("WAREHOUSE_PATH", "/elsewhere/w.duckdb")
    assert load_settings().warehouse_path == Path("/elsewhere/w.duckdb")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SOURCE_MODE", "offline", "SOURCE_MODE must be one of simulated, live, got 'offline'"),
        ("SOURCE_MODE", " live", "SOURCE_MODE must be one of simulated, live, got ' live'"),
        ("OPENWEATHERMAP_CALLS_PER_MINUTE", "0", "OPENWEATHERMAP_CALLS_PER_MINUTE must be >= 1, got 0"),
        ("OPENWEATHERMAP_CALLS_PER_MINUTE", "1.5", "OPENWEATHERMAP_CALLS_PER_MINUTE must be an integer, got '1.5'"),
        ("SIMULATOR_SEED", "x", "SIMULATOR_SEED must be an integer, got 'x'"),
        ("SIMULATOR_FAULT_RATE", "abc", "SIMULATOR_FAULT_RATE must be a number, got 'abc'"),
        ("SIMULATOR_FAULT_RATE", "1", "SIMULATOR_FAULT_RATE must be at least 0 and below 1"),
        ("SIMULATOR_FAULT_RATE", "-0.2", "SIMULATOR_FAULT_RATE must be at least 0 and below 1"),
        ("SIMULATOR_FAULT_RATE", "nan", "SIMULATOR_FAULT_RATE must be at least 0 and below 1"),
        ("RAIN_PARTITION_DAYS", "0", "RAIN_PARTITION_DAYS must be between 1 and 69 (Dagster recommends at most 100,000 partitions per asset), got 0"),
        ("RAIN_PARTITION_DAYS", "70", "RAIN_PARTITION_DAYS must be between 1 and 69"),
        ("RAIN_PARTITION_DAYS", "thirty", "RAIN_PARTITION_DAYS must be an integer, got 'thirty'"),
        ("RAIN_RAW_RETENTION_HOURS", "0", "RAIN_RAW_RETENTION_HOURS must be >= 1, got 0"),
        ("RUN_RETENTION_HOURS", "0", "RUN_RETENTION_HOURS must be >= 1, got 0"),
        ("FAILED_RUN_RETENTION_DAYS", "-1", "FAILED_RUN_RETENTION_DAYS must be >= 1, got -1"),
        ("STOCK_SIMULATED_SIZE", "huge", "STOCK_SIMULATED_SIZE must be one of small, kaggle, got 'huge'"),
        ("SEARCH_RESULT_SAMPLING_FACTOR", "0", "SEARCH_RESULT_SAMPLING_FACTOR must be >= 1 (keep one result in N), got 0"),
        ("NASA_MAX_DOWNLOAD_MB", "0", "NASA_MAX_DOWNLOAD_MB must be >= 1, got 0"),
        ("NASA_MAX_DOWNLOAD_MB", "1.5", "NASA_MAX_DOWNLOAD_MB must be an integer, got '1.5'"),
        ("MODEL_RELOAD_SECONDS", "soon", "MODEL_RELOAD_SECONDS must be a number, got 'soon'"),
        ("MODEL_RELOAD_SECONDS", "-1", "MODEL_RELOAD_SECONDS must be a finite number >= 0, got '-1'"),
        ("MODEL_RELOAD_SECONDS", "inf", "MODEL_RELOAD_SECONDS must be a finite number >= 0, got 'inf'"),
        ("DASHBOARD_REFRESH_SECONDS", "0", "DASHBOARD_REFRESH_SECONDS must be > 0, got '0'"),
        ("DASHBOARD_REFRESH_SECONDS", "soon", "DASHBOARD_REFRESH_SECONDS must be a number, got 'soon'"),
    ],
)  # fmt: skip
def test_each_rule_names_the_variable(clean_env, name, value, message):
    clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert isinstance(caught.value, ValueError)
    (line,) = caught.value.problems
    assert line.startswith(message)
    assert str(caught.value) == line


def test_three_bad_variables_are_reported_at_once(clean_env):
    clean_env.setenv("SOURCE_MODE", "offline")
    clean_env.setenv("RAIN_PARTITION_DAYS", "100")
    clean_env.setenv("SIMULATOR_FAULT_RATE", "often")
    clean_env.setenv("DATA_DIR", "/fine")  # a good one in between changes nothing
    with pytest.raises(SettingsError) as caught:
        load_settings()
    problems = caught.value.problems
    assert [line.split()[0] for line in problems] == [
        "SOURCE_MODE",
        "SIMULATOR_FAULT_RATE",
        "RAIN_PARTITION_DAYS",
    ]
    message = str(caught.value)
    assert message.startswith("3 settings are invalid:\n")
    assert message.splitlines()[1:] == [f"  - {line}" for line in problems]
    assert "got 'offline'" in message and "got 100" in message and "got 'often'" in message
    assert "pydantic" not in message and "WAREHOUSE_PATH" not in message


def test_empty_variables_count_as_unset(clean_env):
    defaults = load_settings().model_dump()
    for name in VARIABLES:
        clean_env.setenv(name, "")
    assert load_settings().model_dump() == defaults
    assert load_settings().model_fields_set == set()


def test_s3_bucket_name_is_the_nasa_briefs_name_for_s3_bucket(clean_env):
    clean_env.setenv("S3_BUCKET_NAME", "nasa-images")
    assert load_settings().s3_bucket == "nasa-images"
    assert "s3://nasa-images/dagster" in load_settings().summary()
    clean_env.setenv("S3_BUCKET", "nasa-images")  # both, the same: fine
    assert load_settings().s3_bucket == "nasa-images"
    clean_env.setenv("S3_BUCKET", "other")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    (line,) = caught.value.problems
    assert line == (
        "S3_BUCKET_NAME is another name for S3_BUCKET, and they differ: "
        "S3_BUCKET='other', S3_BUCKET_NAME='nasa-images'; set one of them"
    )


def test_dotenv_is_read_and_the_environment_beats_it(dotenv_dir, clean_env):
    (dotenv_dir / ".env").write_text(
        "# comments and secrets are fine: only settings are read\n"
        "SOURCE_MODE=live\n"
        "WAREHOUSE_PATH=/from/dotenv.duckdb\n"
        "S3_BUCKET=dotenv-bucket\n"
        "RAIN_PARTITION_DAYS=\n"
        "OPENWEATHERMAP_API_KEY=not-a-setting\n"
    )
    s = load_settings()
    assert (s.source_mode, s.warehouse_path, s.s3_bucket) == (
        "live",
        Path("/from/dotenv.duckdb"),
        "dotenv-bucket",
    )
    assert s.rain_partition_days == 30, "an empty value in .env is unset too"
    assert not hasattr(s, "openweathermap_api_key")

    clean_env.setenv("S3_BUCKET", "exported-bucket")
    clean_env.setenv("SOURCE_MODE", "")  # empty: unset, so .env's value stands
    s = load_settings()
    assert (s.s3_bucket, s.source_mode) == ("exported-bucket", "live")

    (dotenv_dir / ".env").write_text("SOURCE_MODE=offline\nSIMULATOR_SEED=x\n")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert [line.split()[0] for line in caught.value.problems] == ["SOURCE_MODE", "SIMULATOR_SEED"]


TRICKY_DOTENV = """\
# The cases where a loader could differ from Dagster's.
export EXPORTED=1
S3_BUCKET=dotenv-bucket
QUOTED="two words"  # a comment
SINGLE='${NOT_EXPANDED}'
EXPANDED=${HOME}/x
EMPTY=
BARE
AWS_ACCESS_KEY_ID=from-dotenv
"""


def dagster_injected(names: list[str]) -> dict[str, str | None]:
    """What Dagster's CLI puts in the environment from ./.env (dagster dev, asset materialize)."""
    from dagster._cli.utils import _inject_local_env_file

    with _inject_local_env_file(logging.getLogger("test")):
        return {name: os.environ.get(name) for name in names}


def test_dotenv_is_loaded_exactly_as_dagster_loads_it(dotenv_dir, clean_env):
    from dagster._core.secrets.env_file import get_env_var_dict

    (dotenv_dir / ".env").write_text(TRICKY_DOTENV)
    clean_env.setenv("S3_BUCKET", "exported-bucket")
    clean_env.setenv("BARE", "kept")
    clean_env.setenv("EMPTY", "was-set")
    names = ["EXPORTED", "S3_BUCKET", "QUOTED", "SINGLE", "EXPANDED", "EMPTY", "BARE"]
    names.append("AWS_ACCESS_KEY_ID")
    before = {name: os.environ.get(name) for name in names}

    assert read_env_file() == get_env_var_dict(str(dotenv_dir))
    with dotenv_environ() as loaded:
        ours = {name: os.environ.get(name) for name in names}
        settings_inside = load_settings()
    assert set(loaded) == set(names) - {"BARE"}
    assert ours == dagster_injected(names)
    # Dagster's rule: a variable of .env replaces an exported one.
    assert ours["S3_BUCKET"] == settings_inside.s3_bucket == "dotenv-bucket"
    assert (ours["QUOTED"], ours["EMPTY"], ours["BARE"]) == ("two words", "", "kept")
    assert {name: os.environ.get(name) for name in names} == before, "restored on exit"


def test_no_dotenv_no_change(dotenv_dir):
    with dotenv_environ() as loaded:
        assert loaded == {}
    assert read_env_file() == {}


@pytest.mark.integration
def test_the_web_service_sees_what_dagster_sees(dotenv_dir, clean_env, moto_server, s3_bucket):
    """A .env in the working directory: the web service reads WAREHOUSE_PATH, S3_BUCKET and the
    AWS credentials boto3 uses from it, the same values Dagster's CLI loads, also where the
    shell exported something else."""
    from serving.app import create_app

    warehouse = dotenv_dir / "from-dotenv" / "warehouse.duckdb"
    (dotenv_dir / ".env").write_text(
        f"WAREHOUSE_PATH={warehouse}\n"
        f"S3_BUCKET={s3_bucket}\n"
        f"S3_ENDPOINT_URL={moto_server}\n"
        "AWS_ACCESS_KEY_ID=from-dotenv\n"
    )
    clean_env.setenv("DATA_DIR", str(dotenv_dir / "data"))
    clean_env.setenv("S3_BUCKET", "exported-but-replaced")
    names = ["WAREHOUSE_PATH", "S3_BUCKET", "S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "DATA_DIR"]
    dagster = dagster_injected(names)

    app = create_app()
    with TestClient(app) as client:
        seen = app.state.settings
        inside = {name: os.environ.get(name) for name in names}
        assert client.get("/health").status_code in (200, 503)
        assert app.state.model_holder.last_error is None, "read the pointer from the .env bucket"
    assert inside == dagster
    assert (seen.warehouse_path, seen.s3_bucket) == (warehouse, s3_bucket)
    assert str(seen.warehouse_path) == dagster["WAREHOUSE_PATH"]
    assert seen.s3_bucket == dagster["S3_BUCKET"]
    assert inside["AWS_ACCESS_KEY_ID"] == "from-dotenv"
    assert os.environ["S3_BUCKET"] == "exported-but-replaced", "restored when the app stops"
    # In a process that loaded nothing, load_settings() reads .env too (exported values win).
    assert load_settings().warehouse_path == warehouse


def test_the_web_service_refuses_to_start(clean_env):
    from serving.app import create_app

    clean_env.setenv("SOURCE_MODE", "offline")
    clean_env.setenv("DASHBOARD_REFRESH_SECONDS", "0")
    with pytest.raises(SettingsError) as caught, TestClient(create_app()):
        pass
    assert [line.split()[0] for line in caught.value.problems] == [
        "SOURCE_MODE",
        "DASHBOARD_REFRESH_SECONDS",
    ]


def run_check(cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "resources.settings"],
        cwd=cwd,
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_startup_check_lists_every_bad_variable(tmp_path):
    done = run_check(
        tmp_path, SOURCE_MODE="offline", RAIN_PARTITION_DAYS="0", STOCK_SIMULATED_SIZE="huge"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout == ""
    assert "3 settings are invalid" in done.stderr
    for line in (
        "SOURCE_MODE must be one of simulated, live, got 'offline'",
        "RAIN_PARTITION_DAYS must be between 1 and 69",
        "STOCK_SIMULATED_SIZE must be one of small, kaggle, got 'huge'",
    ):
        assert f"  - {line}" in done.stderr
    assert "Traceback" not in done.stderr


def test_startup_check_sees_dotenv_as_dagster_does(tmp_path):
    (tmp_path / ".env").write_text(
        "SOURCE_MODE=live\nRAIN_PARTITION_DAYS=7\nNASA_API_KEY=secret-value\n"
    )
    done = run_check(tmp_path, RAIN_PARTITION_DAYS="9", DATA_DIR="/srv/data")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    assert line.startswith(
        "settings (with .env: 3 variables): SOURCE_MODE=live, DATA_DIR=/srv/data"
    )
    assert "RAIN_PARTITION_DAYS=7" in line, ".env replaces the exported 9, as in dagster dev"
    assert "secret-value" not in done.stdout + done.stderr

    (tmp_path / ".env").write_text("SIMULATOR_FAULT_RATE=1\n")
    done = run_check(tmp_path)
    assert done.returncode == 1
    assert "SIMULATOR_FAULT_RATE must be at least 0 and below 1" in done.stderr


# --- nothing reads settings at import time --------------------------------------------------

PLATFORM_PACKAGES = ("resources", "weather_assets", "esios_assets", "nasa_assets", "market_assets")
PLATFORM_PACKAGES += ("sensors", "serving")
IMPORT_ALL = """
import importlib, sys, traceback
from resources.settings import SettingsError
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except SettingsError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        i = next(i for i, f in enumerate(frames) if f.name == "load_settings")
        print(name, "<-", frames[i - 1].filename)
"""


def platform_modules() -> list[str]:
    names = ["definitions"]
    for package in PLATFORM_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_only_the_accepted_modules_read_settings_at_import():
    """Every platform module imported with a bad setting: the only load_settings() calls that
    run are RAIN_PARTITIONS' (weather_assets/partitions.py) and the composition root's."""
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *platform_modules()],
        cwd=REPO,
        env={**env, "SOURCE_MODE": "bogus", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    callers = {line.split(" <- ")[1] for line in done.stdout.splitlines()}
    imported = {line.split(" <- ")[0] for line in done.stdout.splitlines()}
    assert callers == {str(REPO / "weather_assets" / "partitions.py")} or callers == {
        str(REPO / "weather_assets" / "partitions.py"),
        str(REPO / "definitions.py"),
    }
    assert "serving.app" not in imported and "resources.spark" not in imported


def test_no_module_reads_the_environment_at_import():
    """No module-level os.environ/os.getenv read (function and method bodies run later)."""
    found = []
    for package in PLATFORM_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in _import_time_nodes(tree):
                for sub in ast.walk(node):
                    text = ast.unparse(sub) if isinstance(sub, ast.Call | ast.Subscript) else ""
                    if text.startswith(("os.environ.get(", "os.getenv(", "os.environ[")):
                        found.append(f"{path.relative_to(REPO)}:{sub.lineno} {text}")
    assert found == []


def _import_time_nodes(tree: ast.Module):
    """Statements that run at import: the module body and class bodies, not function bodies
    (decorators and default values run at import too)."""
    for node in tree.body:
        yield from _executed(node)


def _executed(node: ast.AST):
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        yield from node.decorator_list
        yield from node.args.defaults
        yield from (d for d in node.args.kw_defaults if d is not None)
    elif isinstance(node, ast.ClassDef):
        yield from node.decorator_list
        for child in node.body:
            yield from _executed(child)
    else:
        yield node


def test_every_setting_is_documented_and_the_example_is_valid(dotenv_dir):
    readme = (REPO / "README.md").read_text()
    configuration = readme[readme.index("## Configuration") : readme.index("## Going live")]
    example = (REPO / ".env.example").read_text()
    for name in VARIABLES:
        assert f"| `{name}` |" in configuration, f"README Configuration lacks {name}"
        assert f"{name}=" in example, f".env.example lacks {name}"
    (dotenv_dir / ".env").write_text(example)
    assert load_settings().source_mode == "simulated"
    uncommented = "\n".join(
        line.removeprefix("# ")
        for line in example.splitlines()
        if line.startswith("# ") and line[2:].split("=")[0] in VARIABLES
    )
    for path in ("LOCATIONS_FILE", "SPARK_JARS_PACKAGES"):  # placeholders, not values
        uncommented = "\n".join(x for x in uncommented.splitlines() if not x.startswith(path))
    (dotenv_dir / ".env").write_text(uncommented)
    given = {line.split("=")[0] for line in uncommented.splitlines()}
    assert len(given) > 15
    read = {env_name(field) for field in load_settings().model_fields_set}
    assert read == given, "every example value is read and accepted"
