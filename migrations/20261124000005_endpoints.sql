-- Per (tenant, target) delivery state shared by every bridge process: the operator's
-- pause switch and the circuit breaker. A row exists only once something happened to
-- the endpoint; no row means "closed and not paused".
CREATE TABLE endpoints (
    owner                text NOT NULL REFERENCES tenants (owner),
    target               text NOT NULL CHECK (target IN ('third_party_incoming', 'third_party_outgoing',
                             'third_party_command', 'dolphins_message', 'dolphins_command')),
    paused               boolean NOT NULL DEFAULT false,
    paused_at            timestamptz,
    -- closed: deliveries flow; open: none is claimed until retry_at; half_open: one
    -- delivery (the probe) is in flight until probe_until, the rest wait.
    state                text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    consecutive_failures integer NOT NULL DEFAULT 0,
    opened_at            timestamptz,
    retry_at             timestamptz,
    probe_until          timestamptz,
    PRIMARY KEY (owner, target)
);

-- A manual retry or replay restarts the retry schedule without renumbering attempts:
-- the schedule position is `attempts - schedule_base`.
ALTER TABLE deliveries ADD COLUMN schedule_base integer NOT NULL DEFAULT 0;
