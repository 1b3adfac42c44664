//! Instants in JSON as chrono writes them (RFC 3339 in UTC with `Z`, a fraction only when
//! there is one), written directly when the instant is a whole second of a four-digit year:
//! a month's hourly timeseries spent a tenth of its CPU formatting its buckets' starts
//! through `fmt`, character by character.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

/// `serialize_with` for a `DateTime<Utc>` field.
pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    if t.nanosecond() != 0 || !(0..=9999).contains(&t.year()) {
        return t.serialize(s);
    }
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut n: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, t.year().unsigned_abs());
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    match std::str::from_utf8(&out) {
        Ok(text) => s.serialize_str(text),
        Err(_) => t.serialize(s),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    #[derive(Serialize)]
    struct Fast(#[serde(serialize_with = "serialize")] DateTime<Utc>);

    #[test]
    fn writes_what_chrono_writes() {
        let mut instants = vec![
            Utc.with_ymd_and_hms(2026, 11, 2, 17, 0, 0).single(),
            Utc.with_ymd_and_hms(999, 1, 1, 0, 0, 0).single(),
            Utc.with_ymd_and_hms(1972, 1, 7, 0, 44, 30).single(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single(),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        // A fraction, and years past four digits, go chrono's way.
        instants.extend(instants.clone().iter().map(|t| *t + Duration::milliseconds(250)));
        instants.push(DateTime::<Utc>::MAX_UTC);
        let mut t = Utc.with_ymd_and_hms(2024, 2, 28, 22, 59, 58).single().unwrap_or_default();
        for _ in 0..5000 {
            instants.push(t);
            t += Duration::seconds(3_607);
        }
        for t in instants {
            let want = serde_json::to_string(&t).unwrap_or_default();
            assert_eq!(serde_json::to_string(&Fast(t)).unwrap_or_default(), want);
        }
    }
}
