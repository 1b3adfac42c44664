-- Report rollups: the figures of the summary and the timeseries per tenant, channel and
-- quarter hour (every time zone's hours start on a quarter hour), with hour and day rows
-- summed from them so a long window reads few rows. Maintained off the webhook path by
-- the rollup task (src/rollup_task.rs) up to a watermark; reports add the raw rows after it.
CREATE TABLE report_rollups (
    owner             text NOT NULL,
    -- 'quarter', 'hour' or 'day' (UTC); `start` is aligned to it.
    span              text NOT NULL CHECK (span IN ('quarter', 'hour', 'day')),
    start             timestamptz NOT NULL,
    -- The ticket's channel; '' when 3Dolphins never named one.
    channel           text NOT NULL,
    tickets_opened    bigint NOT NULL DEFAULT 0,
    tickets_closed    bigint NOT NULL DEFAULT 0,
    tickets_reopened  bigint NOT NULL DEFAULT 0,
    messages_in       bigint NOT NULL DEFAULT 0,
    messages_out      bigint NOT NULL DEFAULT 0,
    -- Durations: count and exact sum in microseconds (their histograms are in
    -- report_histograms).
    first_response_n      bigint NOT NULL DEFAULT 0,
    first_response_sum_us bigint NOT NULL DEFAULT 0,
    resolution_n          bigint NOT NULL DEFAULT 0,
    resolution_sum_us     bigint NOT NULL DEFAULT 0,
    -- Deliveries created in the span that were settled when it was rolled up; the ones still
    -- waiting then are in report_unsettled and counted by their status at query time.
    deliveries_delivered  bigint NOT NULL DEFAULT 0,
    deliveries_dead       bigint NOT NULL DEFAULT 0,
    deliveries_cancelled  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, span, start, channel)
);

-- The duration histograms of the same rows (bin keys ascending and their counts, see
-- src/reports/histogram.rs), apart so the rows of counts stay narrow: a month's hourly
-- timeseries reads two thousand of them, which with the histograms inline took 10 ms.
CREATE TABLE report_histograms (
    owner                 text NOT NULL,
    span                  text NOT NULL,
    start                 timestamptz NOT NULL,
    channel               text NOT NULL,
    first_response_bins   integer[] NOT NULL,
    first_response_counts bigint[] NOT NULL,
    resolution_bins       integer[] NOT NULL,
    resolution_counts     bigint[] NOT NULL,
    PRIMARY KEY (owner, span, start, channel)
);

-- Per tenant: every quarter before `rolled_to` is in report_rollups (except the dirty ones).
-- Locked by the rollup task for its whole transaction, so two processes never roll the
-- same tenant at once.
CREATE TABLE report_watermarks (
    owner     text PRIMARY KEY REFERENCES tenants (owner),
    rolled_to timestamptz NOT NULL
);

-- Quarters before the watermark whose raw rows changed after they were rolled up (a ticket
-- whose createdDate lies in the past, a manual retry of a settled delivery). Reports read
-- them raw until the rollup task recomputes them.
-- One row per change (`source`: the ticket number or the delivery id), not per quarter: a
-- burst of such tickets in one quarter would otherwise all wait on one row's lock.
CREATE TABLE report_dirty (
    owner     text NOT NULL,
    start     timestamptz NOT NULL,
    source    text NOT NULL,
    marked_at timestamptz NOT NULL,
    PRIMARY KEY (owner, start, source)
);

-- Deliveries of rolled-up quarters that were still waiting (pending, failed) when rolled up.
CREATE TABLE report_unsettled (
    owner       text NOT NULL,
    delivery_id uuid NOT NULL,
    quarter     timestamptz NOT NULL,
    PRIMARY KEY (owner, delivery_id)
);
CREATE INDEX report_unsettled_by_quarter ON report_unsettled (owner, quarter);

-- Tickets that had no channel when rows of theirs were rolled up: when one gets a channel,
-- the rollup task recomputes its quarters under it.
CREATE TABLE report_unknown_channel (
    owner         text NOT NULL,
    ticket_number text NOT NULL,
    PRIMARY KEY (owner, ticket_number)
);

-- Per tenant and channel, the sums over every rolled-up quarter of opened, closed and
-- reopened tickets: tickets open now = opened - closed + reopened.
CREATE TABLE report_totals (
    owner            text NOT NULL,
    channel          text NOT NULL,
    tickets_opened   bigint NOT NULL DEFAULT 0,
    tickets_closed   bigint NOT NULL DEFAULT 0,
    tickets_reopened bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (owner, channel)
);

-- A ticket's channel is the first one 3Dolphins names (as its createdDate is): a ticket is
-- one channel's conversation, and its rolled-up figures stay under that channel.
