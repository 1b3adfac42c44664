//! How a report reads a window: which parts come from rollup rows (the largest clean rows
//! that fit: days, then hours, quarters, minutes) and which from the raw rows (the edges
//! that are not whole minutes, everything from the watermark on, and dirty quarters).
//!
//! The watermark moves by the minute, so the rows holding it (its quarter, hour and day)
//! cover only their part before it; such a row is read when the window reaches the watermark,
//! and the raw rows after it fill the rest.

use chrono::{DateTime, DurationRound, Utc};

use crate::store::rollups::{merge, Range, Span, QUARTER};

/// The reading of one window.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Read from the raw rows.
    pub raw: Vec<Range>,
    /// Read from rollup rows.
    pub rolled: Vec<(Span, DateTime<Utc>)>,
}

impl Plan {
    /// The rolled-up part as ranges (where waiting deliveries are counted live).
    pub fn rolled_ranges(&self) -> Vec<Range> {
        merge(self.rolled.iter().map(|(span, start)| (*start, *start + span.width())).collect())
    }
}

/// The plan of `[from, to)` given the watermark and the (sorted) dirty quarters.
pub fn plan(from: DateTime<Utc>, to: DateTime<Utc>, rolled_to: Option<DateTime<Utc>>, dirty: &[DateTime<Utc>]) -> Plan {
    let mut p = Plan::default();
    if from >= to {
        return p;
    }
    let Some(rolled_to) = rolled_to else {
        p.raw.push((from, to));
        return p;
    };
    let first = ceil(from, Span::Minute);
    // Where the rolled-up part ends: the watermark, when the window reaches it (the rows
    // around it cover only what lies before it), else the window's last whole minute.
    let end = if to >= rolled_to { rolled_to } else { floor(to, Span::Minute) };
    // The end of what a row starting at `t` covers.
    let covers_to = |t: DateTime<Utc>, span: Span| (t + span.width()).min(rolled_to);
    if first >= end {
        p.raw.push((from, to));
        return p;
    }
    // Whether a dirty quarter overlaps `[s, e)`.
    let is_dirty = |s: DateTime<Utc>, e: DateTime<Utc>| {
        let i = dirty.partition_point(|d| *d + QUARTER <= s);
        dirty.get(i).is_some_and(|d| *d < e)
    };
    let mut raw = vec![(from, first), (end, to)];
    let mut t = first;
    while t < end {
        let span = [Span::Day, Span::Hour, Span::Quarter, Span::Minute]
            .into_iter()
            .find(|span| floor(t, *span) == t && covers_to(t, *span) <= end && !is_dirty(t, t + span.width()));
        match span {
            Some(span) => {
                p.rolled.push((span, t));
                t += span.width();
            }
            None => {
                // Inside a dirty quarter: raw to its end.
                let e = (floor(t, Span::Quarter) + QUARTER).min(end).max(t + Span::Minute.width());
                raw.push((t, e));
                t = e;
            }
        }
    }
    p.raw = merge(raw.into_iter().filter(|(s, e)| s < e).collect());
    p
}

fn floor(t: DateTime<Utc>, span: Span) -> DateTime<Utc> {
    t.duration_trunc(span.width()).unwrap_or(t)
}

fn ceil(t: DateTime<Utc>, span: Span) -> DateTime<Utc> {
    let f = floor(t, span);
    if f == t {
        t
    } else {
        f + span.width()
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    /// Every instant of the window is read exactly once (a row covers up to the watermark).
    fn covers_once(p: &Plan, from: DateTime<Utc>, to: DateTime<Utc>, rolled_to: DateTime<Utc>) {
        let mut parts: Vec<Range> = p.raw.clone();
        parts.extend(p.rolled.iter().map(|(s, t)| (*t, (*t + s.width()).min(rolled_to))));
        parts.sort();
        let mut t = from;
        for (s, e) in parts {
            assert_eq!(s, t, "gap or overlap at {t}: {p:?}");
            t = e;
        }
        assert_eq!(t, to);
    }

    #[test]
    fn a_long_window_reads_days_in_the_middle_and_raw_edges() {
        let (from, to) = (at("2026-11-01T10:07:30Z"), at("2026-11-30T15:00:00Z"));
        let p = plan(from, to, Some(at("2026-11-30T12:30:00Z")), &[]);
        covers_once(&p, from, to, at("2026-11-30T12:30:00Z"));
        // Raw: the part of a minute at the start, and after the watermark.
        assert_eq!(p.raw, vec![(from, at("2026-11-01T10:08:00Z")), (at("2026-11-30T12:30:00Z"), to)]);
        // 28 whole days, and the day holding the watermark up to it.
        let days = p.rolled.iter().filter(|(s, _)| *s == Span::Day).count();
        assert_eq!(days, 29);
        // Then 13 hours, 3 quarters and 7 minutes at the start.
        assert_eq!(p.rolled.len(), 29 + 13 + 3 + 7, "{p:?}");
    }

    #[test]
    fn dirty_quarters_are_read_raw_and_break_their_day_and_hour() {
        let (from, to) = (at("2026-11-01T00:00:00Z"), at("2026-11-03T00:00:00Z"));
        let dirty = [at("2026-11-01T13:45:00Z")];
        let p = plan(from, to, Some(to), &dirty);
        covers_once(&p, from, to, to);
        assert!(p.raw.contains(&(dirty[0], dirty[0] + QUARTER)));
        assert!(p.rolled.contains(&(Span::Day, at("2026-11-02T00:00:00Z"))));
        assert!(!p.rolled.contains(&(Span::Day, from)));
        assert!(!p.rolled.contains(&(Span::Hour, at("2026-11-01T13:00:00Z"))));
        assert!(p.rolled.contains(&(Span::Quarter, at("2026-11-01T13:30:00Z"))));
        // A window that starts inside the dirty quarter reads the rest of it raw, no minute row.
        let inside = at("2026-11-01T13:50:00Z");
        let p = plan(inside, to, Some(to), &dirty);
        covers_once(&p, inside, to, to);
        assert_eq!(p.raw, vec![(inside, at("2026-11-01T14:00:00Z"))]);
        assert!(!p.rolled.iter().any(|(s, _)| *s == Span::Minute), "{p:?}");
    }

    #[test]
    fn the_rows_holding_a_watermark_between_quarters_are_read_up_to_it() {
        let rolled_to = at("2026-11-30T12:37:00Z");
        let (from, to) = (at("2026-11-29T00:00:00Z"), at("2026-11-30T12:40:30Z"));
        let p = plan(from, to, Some(rolled_to), &[]);
        covers_once(&p, from, to, rolled_to);
        assert_eq!(p.raw, vec![(rolled_to, to)]);
        assert!(p.rolled.contains(&(Span::Day, at("2026-11-30T00:00:00Z"))), "{p:?}");
        // A window that ends before the watermark reads whole rows only.
        let earlier = at("2026-11-30T12:36:20Z");
        let p = plan(from, earlier, Some(rolled_to), &[]);
        covers_once(&p, from, earlier, rolled_to);
        assert_eq!(p.raw, vec![(at("2026-11-30T12:36:00Z"), earlier)]);
        assert!(p.rolled.contains(&(Span::Quarter, at("2026-11-30T12:15:00Z"))), "{p:?}");
        assert!(p.rolled.contains(&(Span::Minute, at("2026-11-30T12:35:00Z"))), "{p:?}");
        // The watermark's quarter dirty: read raw, up to the window's end.
        let p = plan(from, to, Some(rolled_to), &[at("2026-11-30T12:30:00Z")]);
        covers_once(&p, from, to, rolled_to);
        assert_eq!(p.raw, vec![(at("2026-11-30T12:30:00Z"), to)]);
    }

    #[test]
    fn without_a_watermark_or_before_it_everything_is_raw() {
        let (from, to) = (at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z"));
        assert_eq!(plan(from, to, None, &[]).raw, vec![(from, to)]);
        assert_eq!(plan(from, to, Some(from), &[]).raw, vec![(from, to)]);
        let short = plan(from + Duration::seconds(10), from + Duration::seconds(50), Some(to), &[]);
        assert_eq!(short.raw.len(), 1);
        assert!(short.rolled.is_empty());
    }
}
