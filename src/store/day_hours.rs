//! The hour counts of each UTC day and channel packed in one row (`report_day_hours`, see
//! its migration): a timeseries by the hour reads a month as 30 rows a channel instead of
//! 720 hour rows. Written by the rollup step right after the hour rows it copies, in the
//! same transaction (`recompute`); read only for days all of whose hours a report would
//! otherwise read from hour rows ([`take_whole_days_of_hours`]), so it never has to be more
//! right than they are.

use chrono::{DateTime, Duration, DurationRound, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor};

use super::rollups::{runs, Piece, Range, Span};

/// The hour rows' counts of one UTC day and channel, packed (`report_day_hours`).
#[derive(Debug, Clone, FromRow)]
pub struct DayHours {
    pub day: DateTime<Utc>,
    /// 40 bytes for each hour with a row: the hour after `day`, tickets opened, tickets
    /// closed, messages in, messages out, each an 8-byte big-endian integer.
    pub hours: Vec<u8>,
}

/// The counts of one hour of a [`DayHours`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourCounts {
    pub start: DateTime<Utc>,
    pub tickets_opened: i64,
    pub tickets_closed: i64,
    pub messages_in: i64,
    pub messages_out: i64,
}

impl DayHours {
    /// Its hours' counts, ascending (an hour that is no instant, which the task never
    /// writes, is skipped rather than panicked on).
    pub fn hours(&self) -> impl Iterator<Item = HourCounts> + '_ {
        self.hours.chunks_exact(40).filter_map(|chunk| {
            let field = |i: usize| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&chunk[i * 8..i * 8 + 8]);
                i64::from_be_bytes(bytes)
            };
            let start = Duration::try_hours(field(0)).and_then(|h| self.day.checked_add_signed(h))?;
            Some(HourCounts {
                start,
                tickets_opened: field(1),
                tickets_closed: field(2),
                messages_in: field(3),
                messages_out: field(4),
            })
        })
    }
}

/// The SQL expression packing an hour row `h` of the day `d.day` as [`DayHours::hours`] holds it.
const PACK_HOUR: &str = "int8send((extract(epoch FROM h.start - d.day) / 3600)::bigint)
     || int8send(h.tickets_opened) || int8send(h.tickets_closed) || int8send(h.messages_in) || int8send(h.messages_out)";

/// Takes out of `pieces` (distinct) the UTC days all 24 of whose hours are among them:
/// those are read as one row of packed hours a channel ([`read`]) instead of 24.
/// Returns the days (ascending) and the pieces left.
pub fn take_whole_days_of_hours(pieces: Vec<Piece>) -> (Vec<DateTime<Utc>>, Vec<Piece>) {
    let day_of = |t: DateTime<Utc>| t.duration_trunc(Span::Day.width()).unwrap_or(t);
    // Pieces are distinct (a report's buckets do not overlap): count each day's hours.
    let mut hours_of_day: std::collections::BTreeMap<DateTime<Utc>, u32> = Default::default();
    for (span, start) in &pieces {
        if *span == Span::Hour {
            *hours_of_day.entry(day_of(*start)).or_default() += 1;
        }
    }
    let days: Vec<DateTime<Utc>> = hours_of_day.into_iter().filter(|(_, n)| *n == 24).map(|(day, _)| day).collect();
    let rest = pieces
        .into_iter()
        .filter(|(span, start)| *span != Span::Hour || days.binary_search(&day_of(*start)).is_err())
        .collect();
    (days, rest)
}

/// The packed hour counts of `days` (UTC midnights, ascending), one row per day and channel;
/// consecutive days are read as one index range.
pub async fn read(
    db: impl PgExecutor<'_>,
    owner: &str,
    channel: Option<&str>,
    days: &[DateTime<Utc>],
) -> Result<Vec<DayHours>, sqlx::Error> {
    if days.is_empty() {
        return Ok(Vec::new());
    }
    let pieces: Vec<(Span, DateTime<Utc>)> = days.iter().map(|d| (Span::Day, *d)).collect();
    let (_, froms, tos) = runs(&pieces);
    sqlx::query_as(
        "SELECT x.* FROM unnest($3::timestamptz[], $4::timestamptz[]) AS r(s, e)
         JOIN LATERAL (SELECT day, hours FROM report_day_hours x
                       WHERE x.owner = $1 AND x.day >= r.s AND x.day < r.e
                         AND ($2::text IS NULL OR x.channel = $2) OFFSET 0) x ON true",
    )
    .bind(owner)
    .bind(channel)
    .bind(froms)
    .bind(tos)
    .fetch_all(db)
    .await
}

/// Rebuilds the packed hours (`report_day_hours`) of the UTC days `ranges` touch from their
/// hour rows, just rebuilt by the rollup step (`rollup_steps::roll_step`), in its transaction.
pub(super) async fn recompute(tx: &mut PgConnection, owner: &str, ranges: &[Range]) -> Result<(), sqlx::Error> {
    let mut days: Vec<DateTime<Utc>> = Vec::new();
    for (s, e) in ranges {
        let mut day = s.duration_trunc(Span::Day.width()).unwrap_or(*s);
        while day < *e {
            days.push(day);
            day += Span::Day.width();
        }
    }
    days.sort();
    days.dedup();
    sqlx::query(
        "DELETE FROM report_day_hours x USING unnest($2::timestamptz[]) AS d(day) WHERE x.owner = $1 AND x.day = d.day",
    )
    .bind(owner)
    .bind(&days)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO report_day_hours (owner, day, channel, hours)
             SELECT $1, d.day, h.channel, string_agg({PACK_HOUR}, ''::bytea ORDER BY h.start)
             FROM unnest($2::timestamptz[]) AS d(day)
             JOIN LATERAL (SELECT start, channel, tickets_opened, tickets_closed, messages_in, messages_out
                           FROM report_rollups h
                           WHERE h.owner = $1 AND h.span = 'hour' AND h.start >= d.day
                             AND h.start < d.day + interval '1 day' OFFSET 0) h ON true
             GROUP BY d.day, h.channel"
    ))
    .bind(owner)
    .bind(&days)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    fn hours(from: &str, n: i64) -> Vec<Piece> {
        (0..n).map(|h| (Span::Hour, at(from) + Duration::hours(h))).collect()
    }

    #[test]
    fn only_days_whose_every_hour_is_a_piece_are_taken() {
        // From 22:00 on the 1st to 02:00 on the 4th: the 2nd and 3rd are whole.
        let mut pieces = hours("2026-11-01T22:00:00Z", 52);
        pieces.push((Span::Minute, at("2026-11-04T02:00:00Z")));
        let (days, rest) = take_whole_days_of_hours(pieces);
        assert_eq!(days, vec![at("2026-11-02T00:00:00Z"), at("2026-11-03T00:00:00Z")]);
        assert_eq!(rest.len(), 2 + 2 + 1, "{rest:?}");
        assert!(rest
            .iter()
            .all(|(span, t)| *span == Span::Minute || *t < days[0] || *t >= days[1] + Duration::days(1)));
    }

    #[test]
    fn packed_hours_unpack_in_order() {
        let day = at("2026-11-02T00:00:00Z");
        let mut hours = Vec::new();
        for (hour, counts) in [(3i64, [1i64, 0, 7, 2]), (23, [0, 5, 0, i64::MAX])] {
            hours.extend(hour.to_be_bytes());
            counts.iter().for_each(|n| hours.extend(n.to_be_bytes()));
        }
        hours.extend(i64::MAX.to_be_bytes());
        hours.extend([0u8; 32]);
        let packed = DayHours { day, hours };
        let got: Vec<HourCounts> = packed.hours().collect();
        assert_eq!(got.len(), 2, "the damaged third hour is skipped");
        assert_eq!(got[0].start, day + Duration::hours(3));
        assert_eq!((got[0].tickets_opened, got[0].messages_in, got[0].messages_out), (1, 7, 2));
        assert_eq!(
            (got[1].start, got[1].tickets_closed, got[1].messages_out),
            (day + Duration::hours(23), 5, i64::MAX)
        );
    }

    #[test]
    fn a_day_missing_an_hour_keeps_its_hour_pieces() {
        // Hour 13 is read otherwise (a dirty quarter, say): the day is not taken.
        let mut pieces = hours("2026-11-02T00:00:00Z", 24);
        pieces.retain(|(_, t)| *t != at("2026-11-02T13:00:00Z"));
        pieces.push((Span::Quarter, at("2026-11-02T13:00:00Z")));
        let (days, rest) = take_whole_days_of_hours(pieces.clone());
        assert!(days.is_empty());
        assert_eq!(rest, pieces);
    }
}
