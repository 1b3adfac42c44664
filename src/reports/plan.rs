//! How a report reads a window: which parts come from rollup rows (the largest clean rows
//! that fit: days, then hours, then quarters) and which from the raw rows (the edges that
//! are not whole quarters, everything from the watermark on, and dirty quarters).

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
    let first = ceil(from, Span::Quarter);
    let end = floor(to, Span::Quarter).min(rolled_to);
    if first >= end {
        p.raw.push((from, to));
        return p;
    }
    let is_dirty = |s: DateTime<Utc>, e: DateTime<Utc>| {
        let i = dirty.partition_point(|d| *d < s);
        dirty.get(i).is_some_and(|d| *d < e)
    };
    let mut raw = vec![(from, first), (end, to)];
    let mut t = first;
    while t < end {
        let span = [Span::Day, Span::Hour]
            .into_iter()
            .find(|span| floor(t, *span) == t && t + span.width() <= end && !is_dirty(t, t + span.width()));
        match span {
            Some(span) => {
                p.rolled.push((span, t));
                t += span.width();
            }
            None if is_dirty(t, t + QUARTER) => {
                raw.push((t, t + QUARTER));
                t += QUARTER;
            }
            None => {
                p.rolled.push((Span::Quarter, t));
                t += QUARTER;
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

    /// Every instant of the window is read exactly once.
    fn covers_once(p: &Plan, from: DateTime<Utc>, to: DateTime<Utc>) {
        let mut parts: Vec<Range> = p.raw.clone();
        parts.extend(p.rolled.iter().map(|(s, t)| (*t, *t + s.width())));
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
        let (from, to) = (at("2026-11-01T10:07:00Z"), at("2026-11-30T15:00:00Z"));
        let p = plan(from, to, Some(at("2026-11-30T12:30:00Z")), &[]);
        covers_once(&p, from, to);
        assert_eq!(p.raw, vec![(from, at("2026-11-01T10:15:00Z")), (at("2026-11-30T12:30:00Z"), to)]);
        let days = p.rolled.iter().filter(|(s, _)| *s == Span::Day).count();
        assert_eq!(days, 28);
        assert!(p.rolled.len() < 28 + 14 + 3 + 12 + 3, "{}", p.rolled.len());
    }

    #[test]
    fn dirty_quarters_are_read_raw_and_break_their_day_and_hour() {
        let (from, to) = (at("2026-11-01T00:00:00Z"), at("2026-11-03T00:00:00Z"));
        let dirty = [at("2026-11-01T13:45:00Z")];
        let p = plan(from, to, Some(to), &dirty);
        covers_once(&p, from, to);
        assert!(p.raw.contains(&(dirty[0], dirty[0] + QUARTER)));
        assert!(p.rolled.contains(&(Span::Day, at("2026-11-02T00:00:00Z"))));
        assert!(!p.rolled.contains(&(Span::Day, from)));
        assert!(!p.rolled.contains(&(Span::Hour, at("2026-11-01T13:00:00Z"))));
        assert!(p.rolled.contains(&(Span::Quarter, at("2026-11-01T13:30:00Z"))));
    }

    #[test]
    fn without_a_watermark_or_before_it_everything_is_raw() {
        let (from, to) = (at("2026-11-01T00:00:00Z"), at("2026-11-02T00:00:00Z"));
        assert_eq!(plan(from, to, None, &[]).raw, vec![(from, to)]);
        assert_eq!(plan(from, to, Some(from), &[]).raw, vec![(from, to)]);
        let short = plan(from + Duration::minutes(1), from + Duration::minutes(14), Some(to), &[]);
        assert_eq!(short.raw.len(), 1);
        assert!(short.rolled.is_empty());
    }
}
