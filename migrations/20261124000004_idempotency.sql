-- Replies of requests that carried an Idempotency-Key (or webhook-id), per tenant, for 24 h.
-- Written in the request's own transaction, so only committed replies are ever replayed.
CREATE TABLE idempotency_keys (
    owner          text NOT NULL,
    key            text NOT NULL,
    -- SHA-256 over method, path and body: the same key on a different request is a client bug (422).
    request_hash   bytea NOT NULL,
    response_status integer NOT NULL,
    response_body  jsonb NOT NULL,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);
