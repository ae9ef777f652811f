# Code location image: the platform's definitions served over gRPC on port 4000 to a Dagster
# webserver and daemon (Dagster's deploy_docker "Dockerfile_user_code"; see docs/deployment.md).
# Runs launched by the daemon execute here too (DefaultRunLauncher), and the same image serves
# the web service (`uvicorn serving.app:app`) and the one-shot `python -m esios_assets.sql_setup`.
# Java 17 is for PySpark; Spark runs in-process (local[*]) unless SPARK_MASTER points at a cluster.
# No secret is baked in: .dockerignore keeps .env out, and everything is read from the environment.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install --yes --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*

# No JAVA_HOME: Spark then takes `java` from PATH, which is right on amd64 and arm64 alike.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/opt/platform/data \
    DAGSTER_HOME=/opt/dagster/dagster_home

WORKDIR /opt/platform

COPY . .
# constraints.txt pins the exact versions CI tested (dagster 1.13.27 / integrations 0.29.27);
# the mssql extra is the SQL Server driver of the ESIOS load (SQL_DATABASE_URL=mssql+pymssql://).
# DAGSTER_HOME gets the deployment's instance config for CLI use inside the container; runs
# launched by the daemon receive the daemon's instance (same file) with the run.
RUN pip install --no-cache-dir -c constraints.txt ".[mssql]" \
    && useradd --create-home --uid 10001 dagster \
    && mkdir -p "$DATA_DIR" "$DAGSTER_HOME/storage" \
    && cp deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
    && chown -R dagster "$DATA_DIR" "$DAGSTER_HOME"
USER dagster

EXPOSE 4000
# The gRPC code server deploy/workspace.yaml points at (grpc_server: host user_code, port 4000).
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "definitions"]
