-- Control schema, billing (Stripe): per-tenant Stripe ids and payment state, the usage-report
-- cursor, and the webhook events already processed. Applied by `init` (search_path = control).

-- One row per tenant id that ever reached Stripe. No foreign key to control.tenants: the row must
-- outlive a rolled-back signup, because `attempt` (part of every idempotency key) is bumped when
-- a failed signup's customer is deleted, so the retry makes a fresh customer instead of being
-- handed the deleted one by Stripe's idempotency replay.
CREATE TABLE control.billing_accounts (
    tenant_id              text PRIMARY KEY CHECK (tenant_id ~ '^[a-z][a-z0-9-]{2,39}$'),
    attempt                integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    stripe_customer_id     text UNIQUE,
    stripe_subscription_id text UNIQUE,
    tier                   text,
    payment_state          text NOT NULL DEFAULT 'ok' CHECK (payment_state IN ('ok', 'grace', 'suspended')),
    grace_until            timestamptz,
    -- Stripe's `created` of the newest invoice / subscription event applied: Stripe does not
    -- deliver in order, and an older event arriving late must not undo a newer one.
    payment_event_at       timestamptz,
    subscription_event_at  timestamptz,
    -- Set when Stripe ended the subscription: the tenant is offboarded (exported, dropped) after it.
    offboard_after         timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK ((payment_state = 'ok') = (grace_until IS NULL))
);

-- The enforcer looks for expired grace periods every cycle.
CREATE INDEX billing_accounts_grace_idx ON control.billing_accounts (grace_until) WHERE grace_until IS NOT NULL;

-- How much of a tenant's measured usage (control.tenant_usage) Stripe has accepted. `pending_*`
-- is the outbox: the interval being sent is frozen (committed) before the call to Stripe and
-- re-sent verbatim until Stripe accepts it, so a crash or an overlapping run can never report an
-- overlapping interval under a different meter-event identifier.
CREATE TABLE control.billing_usage_cursor (
    tenant_id          text NOT NULL,
    period_start       date NOT NULL,
    quantity           text NOT NULL,
    reported           bigint NOT NULL DEFAULT 0 CHECK (reported >= 0),
    pending_to         bigint,
    pending_identifier text,
    pending_timestamp  timestamptz,
    reported_at        timestamptz,
    -- Stripe refused the pending interval for good (too old, customer gone): parked, so it is not
    -- re-sent every cycle, until an operator retries it or marks it billed (docs/billing.md).
    failed_at          timestamptz,
    failed_reason      text,
    PRIMARY KEY (tenant_id, period_start, quantity),
    CHECK ((pending_to IS NULL) = (pending_identifier IS NULL)),
    CHECK (pending_to IS NULL OR pending_to > reported)
);

-- Webhook events already handled (Stripe delivers at least once and retries for days).
CREATE TABLE control.stripe_webhook_events (
    event_id     text PRIMARY KEY,
    type         text NOT NULL,
    created      timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    tenant_id    text,
    outcome      text NOT NULL
);

CREATE INDEX stripe_webhook_events_tenant_idx ON control.stripe_webhook_events (tenant_id, created);
