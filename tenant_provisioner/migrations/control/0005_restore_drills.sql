-- Restore drills (tenant_provisioner/drills/restore.py): what the source held at the restore point,
-- and what the drill measured. One row per drill; the row is written after the restore point, so
-- a restored copy never contains its own drill.

CREATE TABLE control.restore_drills (
    drill_id        text PRIMARY KEY,
    source_instance text NOT NULL,
    restore_time    timestamptz NOT NULL,       -- the point in time the temporary instance is restored to
    captured_at     timestamptz NOT NULL DEFAULT now(),
    -- Fingerprints of every tenant taken just before and just after restore_time: a tenant whose
    -- two fingerprints agree held exactly that state at restore_time.
    before_restore  jsonb NOT NULL,
    after_restore   jsonb NOT NULL,
    outcome         jsonb,                      -- verification, RTO/RPO, cleanup (NULL while running)
    finished_at     timestamptz
);

CREATE INDEX restore_drills_captured_at_idx ON control.restore_drills (captured_at);
