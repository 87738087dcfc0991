-- Tenant schema, version 1: what the AI-cost-optimization product needs on day one.
-- Runs inside the tenant's schema (search_path = that schema only), as the provisioner role.
-- Rules (docs/tenants.md): no customer data in CHECK/DEFAULT/partial-index expressions (catalogs
-- are readable by every role); no functions; every table gets its DML grants automatically.

CREATE TABLE users (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email          text NOT NULL UNIQUE,
    display_name   text,
    role           text NOT NULL DEFAULT 'member',
    created_at     timestamptz NOT NULL DEFAULT now(),
    deactivated_at timestamptz
);

CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    key_prefix   text NOT NULL UNIQUE,
    key_hash     bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id);

CREATE TABLE projects (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_by  bigint REFERENCES users (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    archived_at timestamptz
);

CREATE TABLE ai_usage_records (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id    bigint NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    api_key_id    bigint REFERENCES api_keys (id) ON DELETE SET NULL,
    provider      text NOT NULL,
    model         text NOT NULL,
    input_tokens  bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cost_usd      numeric(14, 6) NOT NULL CHECK (cost_usd >= 0),
    occurred_at   timestamptz NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX ai_usage_records_project_time_idx ON ai_usage_records (project_id, occurred_at);

CREATE TABLE budgets (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id    bigint REFERENCES projects (id) ON DELETE CASCADE,  -- NULL: the whole tenant
    period        text NOT NULL DEFAULT 'month',
    amount_usd    numeric(14, 2) NOT NULL CHECK (amount_usd > 0),
    warn_at_share numeric(4, 3) NOT NULL DEFAULT 0.8 CHECK (warn_at_share > 0 AND warn_at_share <= 1),
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX budgets_project_idx ON budgets (project_id);

CREATE TABLE alerts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    budget_id       bigint NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
    kind            text NOT NULL,
    message         text NOT NULL,
    triggered_at    timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by bigint REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX alerts_budget_idx ON alerts (budget_id, triggered_at);
