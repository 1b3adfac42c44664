-- The counts a timeseries needs of each day's hour rows, packed in one row per UTC day and
-- channel: a month by the hour reads 30 rows a channel instead of 720 (reading and decoding
-- the hour rows was most of that report's time). Kept by the rollup task with the hour and
-- day rows, in the same transaction; read only for days whose every hour a report would
-- otherwise read from the hour rows, so it holds exactly what they hold.
CREATE TABLE report_day_hours (
    owner    text NOT NULL,
    -- UTC midnight.
    day      timestamptz NOT NULL,
    channel  text NOT NULL,
    -- For each hour after `day` (0–23) that has an hour row, ascending: the hour, then that
    -- row's tickets opened, tickets closed, messages in and messages out, each an 8-byte
    -- big-endian integer (`int8send`), 40 bytes an hour. Packed rather than arrays:
    -- PostgreSQL sends an array element by element, and a month of arrays cost half a
    -- millisecond to send and as much again to decode; a bytea goes in one piece.
    hours    bytea NOT NULL,
    PRIMARY KEY (owner, day, channel)
);

INSERT INTO report_day_hours (owner, day, channel, hours)
SELECT owner, day, channel,
       string_agg(int8send((extract(epoch FROM start - day) / 3600)::bigint) || int8send(tickets_opened)
                  || int8send(tickets_closed) || int8send(messages_in) || int8send(messages_out),
                  ''::bytea ORDER BY start)
FROM (SELECT *, date_bin('1 day', start, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day
      FROM report_rollups WHERE span = 'hour') h
GROUP BY owner, day, channel;
