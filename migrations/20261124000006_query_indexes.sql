-- Indexes for the query and reporting API. Every one starts with `owner`.

-- `q`: case-insensitive prefix search on ticket number or customer name.
CREATE INDEX tickets_by_number_prefix ON tickets (owner, lower(ticket_number) text_pattern_ops);
CREATE INDEX tickets_by_name_prefix ON tickets (owner, lower(customer_name) text_pattern_ops);
-- Reports: first responses counted when they happen; open tickets now.
CREATE INDEX tickets_by_first_response ON tickets (owner, first_response_at) WHERE first_response_at IS NOT NULL;
CREATE INDEX tickets_open ON tickets (owner, channel) WHERE status = 'open';
-- Reports: messages committed in a window.
CREATE INDEX messages_by_time ON messages (owner, at);
-- Ticket lists filtered by status and/or channel, newest first, without scanning every
-- ticket of the tenant when few match.
CREATE INDEX tickets_by_status ON tickets (owner, status, opened_at DESC, ticket_number DESC);
CREATE INDEX tickets_by_channel ON tickets (owner, channel, status, opened_at DESC, ticket_number DESC);
