-- ANALYZE skips the columns that carry payloads: what 3Dolphins sent, the bodies sent on,
-- the audit's details and the attempts' requests and responses. No query narrows rows by
-- them (the duplicate check reads a ticket's messages through messages_by_ticket first),
-- so their statistics never steered a plan, yet sorting a sample of JSON documents was most
-- of what an analysis of these tables cost: the statistics task analyzes them on a fresh
-- database as they grow, and autovacuum does on every server. On 40 000 stored events an
-- ANALYZE of messages took 220-460 ms with them and 51-64 ms without.
ALTER TABLE messages
    ALTER COLUMN raw SET STATISTICS 0,
    ALTER COLUMN warnings SET STATISTICS 0,
    ALTER COLUMN message SET STATISTICS 0,
    ALTER COLUMN media_link SET STATISTICS 0;
ALTER TABLE ticket_events ALTER COLUMN detail SET STATISTICS 0;
ALTER TABLE deliveries
    ALTER COLUMN body SET STATISTICS 0,
    ALTER COLUMN last_error SET STATISTICS 0;
ALTER TABLE delivery_attempts
    ALTER COLUMN request SET STATISTICS 0,
    ALTER COLUMN response_head SET STATISTICS 0,
    ALTER COLUMN error SET STATISTICS 0;
