-- Report rollups by the minute: the finest row is a minute (it was a quarter hour), so a
-- report reads raw only the parts of a minute at its window's edges and the minutes after
-- the watermark (which moves by whole minutes), however many rows a quarter hour holds.
-- Quarter hour rows stay, summed from the minutes (every time zone's hours start on a quarter
-- hour; dirty marks stay per quarter).
ALTER TABLE report_rollups DROP CONSTRAINT report_rollups_span_check;
ALTER TABLE report_rollups ADD CONSTRAINT report_rollups_span_check
    CHECK (span IN ('minute', 'quarter', 'hour', 'day'));

-- A waiting delivery is listed under the minute it was created in.
ALTER TABLE report_unsettled RENAME COLUMN quarter TO start;
ALTER INDEX report_unsettled_by_quarter RENAME TO report_unsettled_by_start;

-- The rollups so far have no minute rows: forget them; the rollup task builds them again
-- from the raw rows (a day per step; reports are exact meanwhile, read from the raw rows).
TRUNCATE report_rollups, report_histograms, report_dirty, report_unsettled, report_unknown_channel,
         report_totals, report_watermarks;
