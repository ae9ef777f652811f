# Code location image: the platform's definitions served over gRPC to a Dagster webserver and
# daemon (see README "Deployment"). Java 17 is for PySpark; Spark runs in-process (local[*])
# unless SPARK_MASTER points at a cluster.
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install --yes --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    DATA_DIR=/opt/platform/data

WORKDIR /opt/platform

COPY . .
# constraints.txt pins the exact versions CI tested (dagster 1.13.27 / integrations 0.29.27).
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --create-home --uid 10001 dagster \
    && mkdir -p "$DATA_DIR" && chown -R dagster "$DATA_DIR"
USER dagster

EXPOSE 4000
# The gRPC code server a Dagster deployment's workspace.yaml points at (grpc_server: host, port 4000).
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "definitions"]
