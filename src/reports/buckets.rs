//! Where a timeseries' buckets begin: the local hours or days in the report's zone that a
//! window touches, as UTC instants. Computed here rather than by PostgreSQL (720 rows for
//! a month by the hour cost a round trip and most of a millisecond), and by one rule
//! everywhere: a local hour or day begins at the first instant its clock reads its start
//! ([`first_instant_at`]). So an hour skipped by a DST change has no bucket, and an hour
//! that happens twice is one bucket holding both.

use chrono::{DateTime, Duration, NaiveDateTime, Timelike, Utc};
use chrono_tz::Tz;

use crate::domain::dates::first_instant_at;
use crate::store::reports::Interval;

/// The starts of the buckets `[from, to)` touches, ascending and distinct; the first is at
/// or before `from`, each bucket ends where the next begins and the last at `to`.
pub fn bucket_starts(from: DateTime<Utc>, to: DateTime<Utc>, interval: Interval, tz: Tz) -> Vec<DateTime<Utc>> {
    let mut slot = local_slot(from.with_timezone(&tz).naive_local(), interval);
    let mut starts: Vec<DateTime<Utc>> = Vec::new();
    loop {
        let start = first_instant_at(tz, slot);
        if start >= to {
            return starts;
        }
        if starts.last() != Some(&start) {
            starts.push(start);
        }
        slot += match interval {
            Interval::Hour => Duration::hours(1),
            Interval::Day => Duration::days(1),
        };
    }
}

/// The start of the local hour or day holding `local`.
fn local_slot(local: NaiveDateTime, interval: Interval) -> NaiveDateTime {
    let hour = local.date().and_hms_opt(local.hour(), 0, 0).unwrap_or(local);
    match interval {
        Interval::Hour => hour,
        Interval::Day => local.date().and_hms_opt(0, 0, 0).unwrap_or(local),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    fn zone(name: &str) -> Tz {
        name.parse().unwrap_or(Tz::UTC)
    }

    #[test]
    fn hours_across_both_dst_changes_of_a_year() {
        let ny = zone("America/New_York");
        // Spring forward: 02:00 local does not exist, so 01:00 EST is followed by 03:00 EDT.
        let starts = bucket_starts(utc("2026-03-08T05:30:00Z"), utc("2026-03-08T09:00:00Z"), Interval::Hour, ny);
        let want = ["2026-03-08T05:00:00Z", "2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"];
        assert_eq!(starts, want.map(utc));
        // Fall back: the 01:00 bucket holds both 01:00 EDT and 01:00 EST (two hours).
        let starts = bucket_starts(utc("2026-11-01T04:00:00Z"), utc("2026-11-01T08:00:00Z"), Interval::Hour, ny);
        let want = ["2026-11-01T04:00:00Z", "2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z"];
        assert_eq!(starts, want.map(utc));
    }

    #[test]
    fn days_begin_at_local_midnight_or_when_the_clock_jumps_past_it() {
        let jakarta = zone("Asia/Jakarta");
        let starts = bucket_starts(utc("2026-11-19T20:00:00Z"), utc("2026-11-21T17:00:00Z"), Interval::Day, jakarta);
        assert_eq!(starts, ["2026-11-19T17:00:00Z", "2026-11-20T17:00:00Z"].map(utc));
        // Santiago springs forward at midnight: 6 September 2026 begins at 01:00 local.
        let santiago = zone("America/Santiago");
        let starts = bucket_starts(utc("2026-09-05T12:00:00Z"), utc("2026-09-06T12:00:00Z"), Interval::Day, santiago);
        assert_eq!(starts, ["2026-09-05T04:00:00Z", "2026-09-06T04:00:00Z"].map(utc));
    }

    #[test]
    fn a_window_inside_one_bucket_has_that_bucket_and_quarter_hour_zones_keep_their_offset() {
        let kathmandu = zone("Asia/Kathmandu");
        let starts = bucket_starts(utc("2026-11-20T10:20:00Z"), utc("2026-11-20T10:25:00Z"), Interval::Hour, kathmandu);
        assert_eq!(starts, [utc("2026-11-20T10:15:00Z")]);
        let utc_zone = bucket_starts(utc("2026-11-20T00:00:00Z"), utc("2026-11-21T00:00:00Z"), Interval::Hour, Tz::UTC);
        assert_eq!(utc_zone.len(), 24);
        assert!(utc_zone.windows(2).all(|w| w[1] - w[0] == Duration::hours(1)));
    }
}
