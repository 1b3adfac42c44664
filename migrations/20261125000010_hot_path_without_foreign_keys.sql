-- The four foreign keys checked on every accepted event and every delivery go.
--
-- Measured (issue 6, `bench`): each check is a query PostgreSQL plans once per connection
-- and keeps; planned while the tables were empty, the check of delivery_attempts against
-- deliveries settled on the (owner, message_id) index and read every delivery of the
-- tenant, 30 ms per attempt recorded and growing with the table. The checks against
-- tickets also take a KEY SHARE lock on the hottest rows of the database.
--
-- What they guaranteed holds by construction: a message, audit event or delivery is only
-- written by the statement or transaction that has just updated (and so locked) its ticket
-- row, an attempt only by the statement that has just updated its delivery under its lease,
-- and no ticket or delivery is ever deleted. `dolphin-bridge doctor` counts orphans.
ALTER TABLE messages DROP CONSTRAINT messages_owner_ticket_number_fkey;
ALTER TABLE ticket_events DROP CONSTRAINT ticket_events_owner_ticket_number_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_owner_ticket_number_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_owner_delivery_id_fkey;
