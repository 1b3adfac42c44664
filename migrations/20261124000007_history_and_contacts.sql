-- Conversation history merged from 3Dolphins: one key per history line, so merging the
-- same history twice stores nothing new.
ALTER TABLE messages ADD COLUMN history_key text;
CREATE UNIQUE INDEX messages_history_key ON messages (owner, ticket_number, history_key) WHERE history_key IS NOT NULL;

-- Contact API documents cached for BRIDGE_CONTACT_TTL (a stale copy is served when
-- 3Dolphins is down).
CREATE TABLE contacts (
    owner      text NOT NULL REFERENCES tenants (owner),
    contact_id text NOT NULL,
    document   jsonb NOT NULL,
    fetched_at timestamptz NOT NULL,
    PRIMARY KEY (owner, contact_id)
);
