-- Signing-secret rotation: while a new secret is being rolled out, deliveries carry a
-- signature with each secret (space-separated `v1,` entries, as Standard Webhooks allows).
ALTER TABLE tenants ADD COLUMN previous_signing_secret text;
