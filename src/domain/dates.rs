//! Reading 3Dolphins' `createdDate`: a zone-less `yyyy-MM-dd'T'HH:mm[:ss[.fraction]]` in
//! the tenant's timezone (Java drops zero seconds), or RFC 3339 with an offset.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// What a `createdDate` should look like, for warnings and 400 replies.
pub const CREATED_DATE_PROBLEM: &str =
    "expected yyyy-MM-dd'T'HH:mm[:ss[.SSS]] (tenant's timezone) or RFC 3339 with an offset";

/// Parses a `createdDate`; `None` when it is not one of the accepted shapes or names a
/// local time that does not exist in `tz` (a DST gap). An ambiguous local time (DST
/// overlap) takes the earlier instant.
pub fn parse_created_date(raw: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = parse_local(raw)?;
    tz.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&Utc))
}

/// The first instant at which the clock in `tz` reads `local` or later: the earlier of the
/// two in a DST overlap; when `local` falls in a gap, the instant the clock jumps past it.
/// This is where a local hour or day begins (a day whose midnight is skipped begins when
/// the clock jumps), so it is how report windows and buckets turn local times into instants.
pub fn first_instant_at(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let reads_local_or_later = |t: DateTime<Utc>| t.with_timezone(&tz).naive_local() >= local;
    // The first local time at or after `local`, by whole minutes, that exists (gaps are at
    // most a day long).
    let mut minute = local;
    for _ in 0..=24 * 60 {
        if let Some(t) = tz.from_local_datetime(&minute).earliest() {
            let mut after = t.with_timezone(&Utc);
            if minute == local {
                return after;
            }
            // A gap may end between whole minutes (Liberia, 1972): the jump lies in the last
            // minute before `after`; find its second.
            let mut before = after - Duration::minutes(1);
            while after - before > Duration::seconds(1) {
                let mid = before + (after - before) / 2;
                if reads_local_or_later(mid) {
                    after = mid;
                } else {
                    before = mid;
                }
            }
            return after;
        }
        minute += Duration::minutes(1);
    }
    // No zone skips more than a day; read the clock as UTC rather than fail.
    local.and_utc()
}

/// `yyyy-MM-dd'T'HH:mm`, then optional `:ss`, then optional `.` + 1–9 digits. Nothing else.
fn parse_local(raw: &str) -> Option<NaiveDateTime> {
    let (date, time) = raw.split_once('T')?;
    if date.len() != 10 {
        return None;
    }
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let (clock, fraction) = match time.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (time, None),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let two_digits = |s: &str| -> Option<u32> {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let (hour, minute, second) = match parts.as_slice() {
        [h, m] if fraction.is_none() => (two_digits(h)?, two_digits(m)?, 0),
        [h, m, s] => (two_digits(h)?, two_digits(m)?, two_digits(s)?),
        _ => return None,
    };
    let nanos = match fraction {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            let digits: u32 = f.parse().ok()?;
            digits * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
    };
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(date.and_time(time))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("test literal").with_timezone(&Utc)
    }

    #[test]
    fn the_documented_pattern_is_read_in_the_tenant_timezone() {
        let jakarta: Tz = "Asia/Jakarta".parse().expect("known zone");
        assert_eq!(parse_created_date("2026-11-24T09:15:02.345", jakarta), Some(utc("2026-11-24T02:15:02.345Z")));
    }

    #[test]
    fn seconds_and_fraction_are_optional() {
        let tz = Tz::UTC;
        assert_eq!(parse_created_date("2026-11-24T09:15", tz), Some(utc("2026-11-24T09:15:00Z")));
        assert_eq!(parse_created_date("2026-11-24T09:15:07", tz), Some(utc("2026-11-24T09:15:07Z")));
        assert_eq!(parse_created_date("2026-11-24T09:15:07.5", tz), Some(utc("2026-11-24T09:15:07.5Z")));
        assert_eq!(
            parse_created_date("2026-11-24T09:15:07.123456789", tz),
            Some(utc("2026-11-24T09:15:07.123456789Z"))
        );
    }

    #[test]
    fn rfc3339_with_an_offset_ignores_the_tenant_timezone() {
        let jakarta: Tz = "Asia/Jakarta".parse().expect("known zone");
        assert_eq!(parse_created_date("2026-11-24T09:15:02+02:00", jakarta), Some(utc("2026-11-24T07:15:02Z")));
    }

    #[test]
    fn other_shapes_are_refused() {
        let tz = Tz::UTC;
        for bad in [
            "",
            "yesterday",
            "2026-11-24",
            "2026-11-24 09:15:02",
            "2026-11-24T9:15",
            "2026-11-24T09:15.5",
            "2026-11-24T09:15:02.",
            "2026-11-24T09:15:02.1234567890",
            "2026-13-24T09:15:02",
            "2026-11-24T25:15:02",
            "24/11/2026T09:15",
        ] {
            assert_eq!(parse_created_date(bad, tz), None, "{bad:?} must not parse");
        }
    }

    fn local(s: &str) -> NaiveDateTime {
        s.parse().expect("test literal")
    }

    #[test]
    fn a_local_time_begins_at_its_first_instant_through_gaps_and_overlaps() {
        let ny: Tz = "America/New_York".parse().expect("known zone");
        // An ordinary hour.
        assert_eq!(first_instant_at(ny, local("2026-03-08T01:00:00")), utc("2026-03-08T06:00:00Z"));
        // 02:00 and 02:30 do not exist on the spring-forward day: the clock jumps at 07:00Z.
        assert_eq!(first_instant_at(ny, local("2026-03-08T02:00:00")), utc("2026-03-08T07:00:00Z"));
        assert_eq!(first_instant_at(ny, local("2026-03-08T02:30:00")), utc("2026-03-08T07:00:00Z"));
        assert_eq!(first_instant_at(ny, local("2026-03-08T03:00:00")), utc("2026-03-08T07:00:00Z"));
        // 01:30 happens twice on the fall-back day: the first time.
        assert_eq!(first_instant_at(ny, local("2026-11-01T01:30:00")), utc("2026-11-01T05:30:00Z"));
        // Samoa skipped 30 December 2011: that day begins when the 31st does.
        let samoa: Tz = "Pacific/Apia".parse().expect("known zone");
        assert_eq!(first_instant_at(samoa, local("2011-12-30T00:00:00")), utc("2011-12-30T10:00:00Z"));
        // Liberia's clock jumped from 00:00 to 00:44:30 on 7 January 1972.
        let monrovia: Tz = "Africa/Monrovia".parse().expect("known zone");
        assert_eq!(first_instant_at(monrovia, local("1972-01-07T00:00:00")), utc("1972-01-07T00:44:30Z"));
        // Lord Howe moves by half an hour.
        let lord_howe: Tz = "Australia/Lord_Howe".parse().expect("known zone");
        assert_eq!(first_instant_at(lord_howe, local("2026-10-04T02:00:00")), utc("2026-10-03T15:30:00Z"));
    }

    #[test]
    fn a_local_time_in_a_dst_gap_does_not_parse_and_an_overlap_takes_the_earlier() {
        let ny: Tz = "America/New_York".parse().expect("known zone");
        assert_eq!(parse_created_date("2026-03-08T02:30:00", ny), None);
        assert_eq!(parse_created_date("2026-11-01T01:30:00", ny), Some(utc("2026-11-01T05:30:00Z")));
    }
}
