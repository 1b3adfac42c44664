-- Indexes for the query and reporting API. Every one starts with `owner`.

-- `q`: case-insensitive prefix search on ticket number or customer name.
CREATE INDEX tickets_by_number_prefix ON tickets (owner, lower(ticket_number) text_pattern_ops);
CREATE INDEX tickets_by_name_prefix ON tickets (owner, lower(customer_name) text_pattern_ops);
-- Reports: first responses counted when they happen; open tickets now.
CREATE INDEX tickets_by_first_response ON tickets (owner, first_response_at) WHERE first_response_at IS NOT NULL;
CREATE INDEX tickets_open ON tickets (owner, channel) WHERE status = 'open';
-- Reports: messages committed in a window.
CREATE INDEX messages_by_time ON messages (owner, at);
