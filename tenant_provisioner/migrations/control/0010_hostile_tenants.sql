-- Control schema: what the control plane needs so that a hostile tenant (one holding a session as
-- its own role) can neither stall, outlive nor fool it (issue 10; docs/tenants.md, threat model).

-- Leases replace advisory locks for control-plane coordination (one create per tenant id, one
-- warm-pool refill at a time). Advisory locks live in a namespace every role can use: a tenant
-- could hold our keys, and read from pg_locks who is signing up. These rows are invisible to
-- tenants (no USAGE on schema control). UNLOGGED: a lease is worthless after a crash or failover,
-- and a commit that writes only unlogged rows does not wait for a WAL flush.
CREATE UNLOGGED TABLE control.leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- Invoices whose failed payment started a tenant's payment grace. Only paying (or voiding) these
-- ends the grace or lifts a non-payment suspension; an unrelated paid invoice changes nothing.
CREATE TABLE control.billing_unpaid_invoices (
    invoice_id text PRIMARY KEY,
    tenant_id  text NOT NULL,
    failed_at  timestamptz NOT NULL,
    settled_at timestamptz,
    settled_by text CHECK (settled_by IN ('paid', 'voided', 'marked_uncollectible'))
);
CREATE INDEX billing_unpaid_invoices_open_idx ON control.billing_unpaid_invoices (tenant_id)
    WHERE settled_at IS NULL;

-- The SCRAM verifier the platform set for each tenant role (never the password). A tenant can
-- change its own password (ALTER ROLE CURRENT_USER PASSWORD, allowed by PostgreSQL and not
-- observable in pg_roles); the session reaper re-applies this one every cycle. NULL: no password.
ALTER TABLE control.tenants ADD COLUMN password_verifier text;
