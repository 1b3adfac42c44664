-- Tickets, keyed as 3Dolphins keys them: ticket numbers are unique only per owner.
CREATE TABLE tickets (
    owner             text NOT NULL,
    ticket_number     text NOT NULL,
    status            text NOT NULL CHECK (status IN ('open', 'closed')),
    channel           text,
    account_id        text,
    contact_id        text,
    customer_name     text,
    group_id          text,
    language          text,
    -- 3Dolphins' `createdDate`, first parseable value seen (the raw string stays in messages.raw).
    created_date      timestamptz,
    -- created_date when known, else when the bridge first stored the ticket. Reports key on it.
    opened_at         timestamptz NOT NULL,
    first_message_at  timestamptz,
    -- First outbound message from either side; never reset by a reopen (report definition).
    first_response_at timestamptz,
    closed_at         timestamptz,
    last_message_at   timestamptz,
    messages_in       integer NOT NULL DEFAULT 0,
    messages_out      integer NOT NULL DEFAULT 0,
    reopen_count      integer NOT NULL DEFAULT 0,
    -- Last `x-ticket-sequence` handed out per peer (deliveries are ordered per ticket and peer).
    seq_third_party   integer NOT NULL DEFAULT 0,
    seq_dolphins      integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (owner, ticket_number)
);
CREATE INDEX tickets_by_opened ON tickets (owner, opened_at DESC, ticket_number DESC);
CREATE INDEX tickets_by_contact ON tickets (owner, contact_id);

-- Every message in either direction, with the JSON exactly as received (after NUL removal).
CREATE TABLE messages (
    owner         text NOT NULL,
    id            uuid NOT NULL,
    ticket_number text NOT NULL,
    direction     text NOT NULL CHECK (direction IN ('in', 'out')),
    message_type  text,
    message       text,
    media_link    text,
    source        text NOT NULL CHECK (source IN ('3dolphins', 'third_party', 'history')),
    -- When the bridge committed it (history rows: 3Dolphins' own time).
    at            timestamptz NOT NULL,
    -- Lenient-side problems found in the payload: [{field, problem}].
    warnings      jsonb NOT NULL DEFAULT '[]',
    raw           jsonb NOT NULL,
    -- Set when 3Dolphins posted this (bridge-delivered) message back to us: one echo
    -- absorbs one original, so an agent sending "ok" twice still gets both echoes caught.
    echo_seen_at  timestamptz,
    PRIMARY KEY (owner, id),
    FOREIGN KEY (owner, ticket_number) REFERENCES tickets (owner, ticket_number)
);
CREATE INDEX messages_by_ticket ON messages (owner, ticket_number, at, id);

-- Append-only lifecycle audit of each ticket.
CREATE TABLE ticket_events (
    owner         text NOT NULL,
    id            bigint GENERATED ALWAYS AS IDENTITY,
    ticket_number text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('created', 'message_in', 'message_out', 'closed',
                      'reopened', 'command', 'delivered', 'delivery_failed', 'dead', 'retried',
                      'cancelled', 'not_forwarded', 'echo', 'purged', 'paused', 'resumed')),
    at            timestamptz NOT NULL,
    actor         text NOT NULL,
    detail        jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (owner, id),
    FOREIGN KEY (owner, ticket_number) REFERENCES tickets (owner, ticket_number)
);
CREATE INDEX ticket_events_by_ticket ON ticket_events (owner, ticket_number, id);
CREATE INDEX ticket_events_by_kind_time ON ticket_events (owner, kind, at);
