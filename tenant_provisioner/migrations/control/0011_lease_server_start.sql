-- A lease taken before the server last started is free: its holder's connection did not survive the
-- restart (control.leases is UNLOGGED, so a crash empties it, but a clean restart or a Multi-AZ
-- failover to a standby that replayed it keeps the rows until they expire: up to 120 s of a blocked
-- signup for the company whose signup the restart interrupted). tenant_provisioner/leases.py.
ALTER TABLE control.leases ADD COLUMN acquired_at timestamptz NOT NULL DEFAULT now();
