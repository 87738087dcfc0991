-- Control schema, request path (docs/request-path.md): API keys, the tenant job queue, and the
-- least-privileged role the API and worker use for the control plane.
--
-- API keys live here, not in the tenant schema's `api_keys` table: a key must resolve to its
-- tenant BEFORE the request knows which schema to use (one indexed lookup, no scan of tenant
-- schemas), and a tenant role must not be able to read or forge its own key hashes.

CREATE TABLE control.api_keys (
    key_id       text PRIMARY KEY CHECK (key_id ~ '^[0-9a-f]{16}$'),   -- public; part of the key
    tenant_id    text NOT NULL REFERENCES control.tenants (tenant_id),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    prefix       text NOT NULL,                  -- "<tier at issue>_<key_id>", what WAF and logs see
    key_hash     bytea NOT NULL CHECK (length(key_hash) = 32),      -- SHA-256 of the whole key
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_keys_tenant_idx ON control.api_keys (tenant_id, created_at);

-- Durable tenant jobs (services/worker). Claimed with FOR UPDATE SKIP LOCKED in `fair_rank`
-- order: a job's rank is its position in its tenant's backlog when enqueued, so one tenant's
-- 10,000 queued jobs never delay another tenant's first. A claimed job holds a lease
-- (`locked_until`); a worker that dies loses it and the job runs again (at-least-once).
CREATE TABLE control.jobs (
    id           bigserial PRIMARY KEY,
    tenant_id    text NOT NULL REFERENCES control.tenants (tenant_id),
    kind         text NOT NULL CHECK (kind ~ '^[a-z_]{1,40}$'),
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key   text,                   -- at most one queued job per (tenant, kind, dedupe_key)
    fair_rank    bigint NOT NULL,
    state        text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts     integer NOT NULL DEFAULT 0,
    run_after    timestamptz NOT NULL DEFAULT now(),
    locked_until timestamptz,
    last_error   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX jobs_claim_idx ON control.jobs (fair_rank, id) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_tenant_backlog_idx ON control.jobs (tenant_id, fair_rank) WHERE state IN ('queued', 'running');
CREATE UNIQUE INDEX jobs_dedupe_idx ON control.jobs (tenant_id, kind, dedupe_key)
    WHERE state = 'queued' AND dedupe_key IS NOT NULL;
CREATE INDEX jobs_finished_idx ON control.jobs (finished_at) WHERE state IN ('done', 'failed');

-- The services' control-plane role ("<provisioner>_gateway"): reads keys and tenants, runs the
-- job queue, nothing else (no DDL, no tenant data, no audit log). The login user the services
-- use is made a member of it; they act through SET ROLE.
DO $$
DECLARE
    gateway text := current_user || '_gateway';
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = gateway) THEN
        EXECUTE format('CREATE ROLE %I NOLOGIN', gateway);
    END IF;
    EXECUTE format('GRANT %I TO %I', gateway, session_user);
    EXECUTE format('GRANT USAGE ON SCHEMA control TO %I', gateway);
    EXECUTE format('GRANT SELECT (key_id, tenant_id, prefix, key_hash, revoked_at) ON control.api_keys TO %I', gateway);
    EXECUTE format('GRANT SELECT (tenant_id, schema_name, role_name, tier, state, schema_version) '
                   'ON control.tenants TO %I', gateway);
    EXECUTE format('GRANT SELECT ON control.schema_migrations TO %I', gateway);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON control.jobs TO %I', gateway);
    EXECUTE format('GRANT USAGE ON SEQUENCE control.jobs_id_seq TO %I', gateway);
END
$$;
