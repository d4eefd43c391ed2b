-- Runs once, when the PostgreSQL volume is created (the postgres image's /docker-entrypoint-initdb.d).
-- POSTGRES_DB creates `mlflow` (runs, registry); Optuna's studies get a database of their own, so a
-- study can be dropped or restored without touching the run of record.
CREATE DATABASE optuna;
