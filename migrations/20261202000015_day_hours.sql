-- The counts a timeseries needs of each day's hour rows, as arrays in one row per UTC day
-- and channel: a month by the hour reads 30 rows a channel instead of 720 (reading and
-- decoding the hour rows was most of that report's time). Kept by the rollup task with the
-- hour and day rows, in the same transaction; read only for days whose every hour a report
-- would otherwise read from the hour rows, so it holds exactly what they hold.
CREATE TABLE report_day_hours (
    owner           text NOT NULL,
    -- UTC midnight.
    day             timestamptz NOT NULL,
    channel         text NOT NULL,
    -- The hours after `day` (0–23) that have an hour row, ascending; the arrays below hold
    -- that row's counts at the same index.
    hours           int[] NOT NULL,
    tickets_opened  bigint[] NOT NULL,
    tickets_closed  bigint[] NOT NULL,
    messages_in     bigint[] NOT NULL,
    messages_out    bigint[] NOT NULL,
    PRIMARY KEY (owner, day, channel)
);

INSERT INTO report_day_hours (owner, day, channel, hours, tickets_opened, tickets_closed, messages_in, messages_out)
SELECT owner, day, channel,
       array_agg((extract(epoch FROM start - day) / 3600)::int ORDER BY start),
       array_agg(tickets_opened ORDER BY start), array_agg(tickets_closed ORDER BY start),
       array_agg(messages_in ORDER BY start), array_agg(messages_out ORDER BY start)
FROM (SELECT *, date_bin('1 day', start, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day
      FROM report_rollups WHERE span = 'hour') h
GROUP BY owner, day, channel;
