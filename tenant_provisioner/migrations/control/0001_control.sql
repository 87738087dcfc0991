-- Control schema, version 1: the tenant registry and the audit log (DATA CONTRACT in docs/tenants.md).
-- Applied by `tenant_provisioner init` as the provisioner role with search_path = control.

CREATE TABLE control.tenants (
    tenant_id        text PRIMARY KEY CHECK (tenant_id ~ '^[a-z][a-z0-9-]{2,39}$'),
    schema_name      text NOT NULL UNIQUE CHECK (schema_name ~ '^t_[0-9a-f]{16}$'),
    role_name        text NOT NULL UNIQUE,
    tier             text NOT NULL,
    state            text NOT NULL DEFAULT 'provisioning'
                     CHECK (state IN ('provisioning', 'active', 'suspended', 'offboarding', 'offboarded')),
    schema_version   integer NOT NULL DEFAULT 0 CHECK (schema_version >= 0),
    admin_email      text NOT NULL,
    company_name     text,
    suspended_reason text,
    export_location  text,          -- offboarding: where the data export went
    drop_after       timestamptz,   -- offboarding: schema and role are dropped from then on (retention)
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Fleet migrations look for tenants behind the latest version; the dashboard counts by state.
CREATE INDEX tenants_state_version_idx ON control.tenants (state, schema_version);

-- Append-only history. No foreign key to tenants: entries outlive failed creates and offboarding.
CREATE TABLE control.audit_log (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    tenant_id text,
    action    text NOT NULL,
    actor     text NOT NULL,
    detail    jsonb NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX audit_log_tenant_at_idx ON control.audit_log (tenant_id, at);
CREATE INDEX audit_log_action_at_idx ON control.audit_log (action, at);

-- Warm pool: tenant schemas built ahead of signups (tables at `schema_version`, owned by the
-- provisioner, no role, no grants: unreachable). A signup claims one with SKIP LOCKED and only
-- adds its role and grants; rows at an older version are dropped by the next refill.
CREATE TABLE control.warm_schemas (
    schema_name    text PRIMARY KEY CHECK (schema_name ~ '^t_[0-9a-f]{16}$'),
    schema_version integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX warm_schemas_version_idx ON control.warm_schemas (schema_version, created_at);
