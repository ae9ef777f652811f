-- Runs once, when the postgresql service initializes an empty data volume
-- (/docker-entrypoint-initdb.d). Dagster's storage lives in POSTGRES_DB ("dagster"); the ESIOS
-- SQL target (SQL_DATABASE_URL) gets a database of its own, whose table the sql_setup service
-- creates (python -m resources.sql_setup).
CREATE DATABASE platform;
