-- Tenant schema, version 2: daily usage rollups, written by the worker's `rollup_usage` job
-- (services/worker/handlers.py). Recomputed per touched day, so a job run twice changes nothing.
CREATE TABLE usage_daily (
    day           date NOT NULL,
    project_id    bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    provider      text NOT NULL,
    model         text NOT NULL,
    requests      bigint NOT NULL,
    input_tokens  bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cost_usd      numeric(18, 6) NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, project_id, provider, model)
);
CREATE INDEX ai_usage_records_recorded_idx ON ai_usage_records (recorded_at);
