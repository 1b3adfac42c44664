-- Operational alerts: events about the bridge's own state (an endpoint failing or
-- recovering, a delivery gone dead, a backlog gone stale), POSTed to the tenant's
-- `alerts.url` and delivered through the outbox like any delivery, as target `alerts`.
--
-- Each alert is written by the same transaction as the state change it reports, so there
-- is exactly one per change, none is lost in a crash, and none is written for a change
-- that rolled back. The breaker and dead-delivery changes are caught by the triggers
-- below (the statements that make them stay as they are, and pay nothing while no
-- trigger's condition holds); `backlog.stale` is raised by the bridge's alert task, which
-- calls the same function.
--
-- Alerts never report on themselves: nothing about target `alerts` raises one.

ALTER TABLE deliveries DROP CONSTRAINT deliveries_target_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_target_check CHECK (target IN ('third_party_incoming',
    'third_party_outgoing', 'third_party_command', 'dolphins_message', 'dolphins_command', 'alerts'));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_peer_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_peer_check CHECK (peer IN ('third_party', 'dolphins', 'alerts'));
ALTER TABLE endpoints DROP CONSTRAINT endpoints_target_check;
ALTER TABLE endpoints ADD CONSTRAINT endpoints_target_check CHECK (target IN ('third_party_incoming',
    'third_party_outgoing', 'third_party_command', 'dolphins_message', 'dolphins_command', 'alerts'));

-- A tenant's alerts are one ordered queue (ticket key '#alerts', peer 'alerts'): this is
-- its sequence. The row is locked by the transaction raising an alert until it commits.
CREATE TABLE alert_sequences (
    owner    text PRIMARY KEY,
    sequence integer NOT NULL
);

-- The backlog episodes in progress: a target whose oldest waiting delivery was older than
-- the tenant's `alerts.backlogSeconds` when last checked (one `backlog.stale` per episode).
CREATE TABLE backlog_episodes (
    owner      text NOT NULL,
    target     text NOT NULL,
    started_at timestamptz NOT NULL,
    PRIMARY KEY (owner, target)
);

-- Writes one alert into the outbox, due at once, if the tenant has an `alerts.url`.
-- The body's keys keep this order (json, not jsonb): type, owner, target, at, detail.
CREATE FUNCTION raise_alert(p_owner text, p_type text, p_target text, p_at timestamptz, p_detail jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    next_sequence integer;
BEGIN
    IF p_target = 'alerts' OR NOT EXISTS (
        SELECT 1 FROM tenants WHERE owner = p_owner AND COALESCE(settings #>> '{alerts,url}', '') <> '') THEN
        RETURN;
    END IF;
    INSERT INTO alert_sequences AS s (owner, sequence) VALUES (p_owner, 1)
    ON CONFLICT (owner) DO UPDATE SET sequence = s.sequence + 1
    RETURNING sequence INTO next_sequence;
    INSERT INTO deliveries (owner, id, ticket_number, target, peer, sequence, body, status, next_attempt_at,
                            created_at)
    VALUES (p_owner, gen_random_uuid(), '#alerts', 'alerts', 'alerts', next_sequence,
            json_build_object('type', p_type, 'owner', p_owner, 'target', p_target, 'at', p_at,
                              'detail', p_detail)::text,
            'pending', p_at, p_at);
END $$;

-- How many deliveries of a target wait now (an alert's `queueDepth`).
CREATE FUNCTION waiting_deliveries(p_owner text, p_target text) RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM deliveries WHERE owner = p_owner AND target = p_target AND status IN ('pending', 'failed')
$$;

-- endpoint.failing when a breaker opens from closed; endpoint.recovered when it closes.
-- (A failed probe moves half_open → open: still the same episode, no alert.)
CREATE FUNCTION alert_on_breaker() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_attempt record;
BEGIN
    IF NEW.state = 'open' THEN
        SELECT a.error, a.http_status INTO last_attempt
        FROM delivery_attempts a JOIN deliveries d ON d.owner = a.owner AND d.id = a.delivery_id
        WHERE a.owner = NEW.owner AND d.target = NEW.target
        ORDER BY a.at DESC LIMIT 1;
        PERFORM raise_alert(NEW.owner, 'endpoint.failing', NEW.target, COALESCE(NEW.opened_at, now()),
            jsonb_build_object('consecutiveFailures', NEW.consecutive_failures,
                               'lastError', last_attempt.error, 'lastHttpStatus', last_attempt.http_status,
                               'queueDepth', waiting_deliveries(NEW.owner, NEW.target),
                               'retryAt', NEW.retry_at));
    ELSE
        PERFORM raise_alert(NEW.owner, 'endpoint.recovered', NEW.target, now(),
            jsonb_build_object('openedAt', OLD.opened_at,
                               'queueDepth', waiting_deliveries(NEW.owner, NEW.target)));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER endpoints_alert_opened AFTER UPDATE OF state ON endpoints
    FOR EACH ROW WHEN (OLD.state = 'closed' AND NEW.state = 'open' AND NEW.target <> 'alerts')
    EXECUTE FUNCTION alert_on_breaker();
CREATE TRIGGER endpoints_alert_inserted_open AFTER INSERT ON endpoints
    FOR EACH ROW WHEN (NEW.state = 'open' AND NEW.target <> 'alerts')
    EXECUTE FUNCTION alert_on_breaker();
CREATE TRIGGER endpoints_alert_closed AFTER UPDATE OF state ON endpoints
    FOR EACH ROW WHEN (OLD.state <> 'closed' AND NEW.state = 'closed' AND NEW.target <> 'alerts')
    EXECUTE FUNCTION alert_on_breaker();

-- delivery.dead when a delivery's last attempt made it dead.
CREATE FUNCTION alert_on_dead() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_status integer;
BEGIN
    SELECT http_status INTO last_status FROM delivery_attempts
    WHERE owner = NEW.owner AND delivery_id = NEW.id AND n = NEW.attempts;
    PERFORM raise_alert(NEW.owner, 'delivery.dead', NEW.target, now(),
        jsonb_build_object('deliveryId', NEW.id, 'ticketNumber', NEW.ticket_number, 'attempts', NEW.attempts,
                           'lastHttpStatus', last_status, 'lastError', NEW.last_error));
    RETURN NULL;
END $$;

CREATE TRIGGER deliveries_alert_dead AFTER UPDATE OF status ON deliveries
    FOR EACH ROW WHEN (NEW.status = 'dead' AND OLD.status <> 'dead' AND NEW.target <> 'alerts')
    EXECUTE FUNCTION alert_on_dead();
