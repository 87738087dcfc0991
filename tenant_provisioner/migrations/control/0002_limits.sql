-- Control schema, limits: measured usage per billing period, the quota circuit breakers and
-- their transitions (the outbox that makes notification exactly-once), the platform budget
-- levels. Applied by `init` (search_path = control). Written by the enforcer (limits/enforcer.py).

-- Measured usage per tenant, billing period (UTC calendar month) and metered quantity. DATA
-- CONTRACT: read by the cost report (usage share) and by billing (Stripe meter events).
-- Monotonic within a period: a lower measurement (lost Redis counters) never lowers a row.
CREATE TABLE control.tenant_usage (
    tenant_id    text NOT NULL REFERENCES control.tenants (tenant_id),
    period_start date NOT NULL CHECK (extract(day FROM period_start) = 1),
    quantity     text NOT NULL CHECK (quantity IN ('api_requests', 'storage_bytes', 'seats')),
    admitted     bigint NOT NULL CHECK (admitted >= 0),
    attempted    bigint NOT NULL,
    measured_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, period_start, quantity),
    CHECK (attempted >= admitted)
);

CREATE INDEX tenant_usage_period_idx ON control.tenant_usage (period_start, quantity);

-- The current breaker of each tenant and quantity. `generation` grows with every resume (and every
-- tier change that lowers the level) inside a
-- period, so a tenant resumed and abusive again is suspended (and notified) again; the
-- suspension threshold then counts attempts above `attempted_baseline`.
CREATE TABLE control.tenant_breakers (
    tenant_id          text NOT NULL REFERENCES control.tenants (tenant_id),
    quantity           text NOT NULL CHECK (quantity IN ('api_requests', 'storage_bytes', 'seats')),
    level              text NOT NULL CHECK (level IN ('ok', 'warning', 'hard_limit', 'suspended')),
    period_start       date NOT NULL CHECK (extract(day FROM period_start) = 1),
    tier               text NOT NULL,
    generation         integer NOT NULL DEFAULT 0 CHECK (generation >= 0),
    attempted_baseline bigint NOT NULL DEFAULT 0 CHECK (attempted_baseline >= 0),
    changed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, quantity)
);

CREATE INDEX tenant_breakers_level_idx ON control.tenant_breakers (level) WHERE level <> 'ok';

-- Every breaker transition, once: the unique key is what two overlapping enforcer runs collide
-- on. `notified_at` NULL = notification still owed (claimed with FOR UPDATE SKIP LOCKED).
CREATE TABLE control.breaker_transitions (
    id           bigserial PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES control.tenants (tenant_id),
    quantity     text NOT NULL,
    period_start date NOT NULL,
    generation   integer NOT NULL,
    from_level   text NOT NULL,
    to_level     text NOT NULL,
    cause        text NOT NULL CHECK (cause IN ('usage', 'new_period', 'tier_change', 'resumed')),
    admitted     bigint NOT NULL,
    attempted    bigint NOT NULL,
    hard_limit   bigint NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    notified_at  timestamptz,
    UNIQUE (tenant_id, quantity, period_start, generation, to_level, cause)
);

CREATE INDEX breaker_transitions_unnotified_idx ON control.breaker_transitions (id) WHERE notified_at IS NULL;

-- The platform's AWS budget breaker: one row per month and level reached, written once by the
-- budget_breaker Lambda (the unique key makes a repeated SNS delivery a no-op).
CREATE TABLE control.platform_budget_levels (
    period_start date NOT NULL CHECK (extract(day FROM period_start) = 1),
    level        text NOT NULL CHECK (level IN ('warning', 'hard_limit', 'emergency')),
    actual_usd   numeric(12, 2),
    forecast_usd numeric(12, 2),
    budget_usd   numeric(12, 2) NOT NULL,
    actions      jsonb NOT NULL DEFAULT '[]'::jsonb,
    at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (period_start, level)
);
