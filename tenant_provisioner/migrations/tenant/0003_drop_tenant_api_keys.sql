-- Tenant schema, version 3: the per-tenant `api_keys` table of version 1 goes. API keys live in
-- `control.api_keys` (control migration 0004): a key must lead to its tenant before a request
-- knows its schema, and a tenant role must not read or forge its own key hashes
-- (docs/request-path.md). Nothing ever wrote this table; `ai_usage_records.api_key_id`, which
-- referenced it and was always NULL, goes with it. A schema whose table holds rows anyway (written
-- by hand) stops here, with nothing changed, instead of losing them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM api_keys) THEN
        RAISE EXCEPTION 'tenant schema % has rows in api_keys, which migration 0003 drops: copy them out '
                        '(keys belong in control.api_keys: tenant-provisioner keys create), delete them, '
                        'then run tenant-provisioner migrate again', current_schema();
    END IF;
END $$;
ALTER TABLE ai_usage_records DROP COLUMN api_key_id;
DROP TABLE api_keys;
