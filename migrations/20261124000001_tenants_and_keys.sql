-- Tenants: one row per 3Dolphins `owner`. Every other table's key starts with `owner`.
CREATE TABLE tenants (
    owner          text PRIMARY KEY,
    name           text NOT NULL DEFAULT '',
    timezone       text NOT NULL DEFAULT 'Asia/Jakarta',
    -- The public endpoint settings exactly as the admin API shows them
    -- ({thirdParty, dolphins, delivery}), minus secrets. A JSON document keeps the
    -- admin PATCH (a JSON merge patch) a merge on one value instead of a column map.
    settings       jsonb NOT NULL,
    -- Secrets that must be read back (they sign and authenticate outbound calls),
    -- so they cannot be hashed. Kept out of `settings` so no query that serves the
    -- admin API can leak them by accident.
    signing_secret text NOT NULL,
    dolphins_password text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- DELETE revokes keys and cancels deliveries but keeps the data for audits.
    deleted_at     timestamptz
);

-- API keys. Only a SHA-256 of the key is stored: keys are 160 random bits, so a
-- fast hash is enough and lookups stay one index probe.
CREATE TABLE api_keys (
    owner        text NOT NULL REFERENCES tenants (owner),
    id           uuid NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('inbound', 'third_party', 'read')),
    -- First characters of the key, shown in listings so an operator can tell keys apart.
    prefix       text NOT NULL,
    key_hash     bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    PRIMARY KEY (owner, id)
);
-- The one lookup that cannot start with `owner`: the credential is what tells us the owner.
CREATE UNIQUE INDEX api_keys_by_hash ON api_keys (key_hash);
