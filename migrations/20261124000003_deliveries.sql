-- The transactional outbox: a delivery row is written in the same transaction as the
-- event it forwards, so nothing accepted is lost and nothing unstored is sent.
CREATE TABLE deliveries (
    owner           text NOT NULL,
    id              uuid NOT NULL,
    ticket_number   text NOT NULL,
    message_id      uuid,
    target          text NOT NULL CHECK (target IN ('third_party_incoming', 'third_party_outgoing',
                        'third_party_command', 'dolphins_message', 'dolphins_command')),
    -- Which peer the target belongs to: ordering is per (ticket, peer), so a close never
    -- overtakes the reply before it.
    peer            text NOT NULL CHECK (peer IN ('third_party', 'dolphins')),
    sequence        integer NOT NULL,
    -- The exact bytes to send (kept as text, not jsonb, so key order and signature are stable).
    body            text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'failed', 'delivered', 'dead', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    -- A claim: the row belongs to one dispatcher until lease_until. The token fences a late
    -- result from an expired lease out of a newer one.
    lease_until     timestamptz,
    lease_token     uuid,
    last_error      text,
    created_at      timestamptz NOT NULL,
    delivered_at    timestamptz,
    PRIMARY KEY (owner, id),
    UNIQUE (owner, ticket_number, peer, sequence),
    FOREIGN KEY (owner, ticket_number) REFERENCES tickets (owner, ticket_number)
);
-- The dispatcher's due-work index: the one index that must find work across tenants.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('pending', 'failed');
-- Per-ticket FIFO check: "is an earlier delivery of this ticket to this peer still waiting?"
CREATE INDEX deliveries_waiting_by_ticket ON deliveries (owner, ticket_number, peer, sequence)
    WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_by_created ON deliveries (owner, created_at DESC, id);
CREATE INDEX deliveries_by_message ON deliveries (owner, message_id);

CREATE TABLE delivery_attempts (
    owner         text NOT NULL,
    delivery_id   uuid NOT NULL,
    n             integer NOT NULL,
    at            timestamptz NOT NULL,
    duration_ms   integer NOT NULL,
    http_status   integer,
    error         text,
    -- First KiB of the reply, enough to see what the peer complained about.
    response_head text,
    PRIMARY KEY (owner, delivery_id, n),
    FOREIGN KEY (owner, delivery_id) REFERENCES deliveries (owner, id)
);
