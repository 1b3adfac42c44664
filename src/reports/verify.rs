//! `dolphin-bridge rollups verify`: the summary as the API answers it (rollups and raw
//! rows) against the same figures computed straight from the raw rows by their
//! definitions (`store::reports`). Counts must be equal, percentiles within the
//! histograms' 1 %, means within rounding.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{Figures, Window};
use crate::store::reports::{self, ReportScope};

/// The differences found for `owner` over `[from, to)`, overall and per channel (empty:
/// the rollups agree with the raw rows).
pub async fn differences(
    pool: &PgPool,
    owner: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    let window = Window { owner, from, to, channel: None };
    let mut rolled: BTreeMap<Option<String>, Figures> = BTreeMap::new();
    for (channel, f) in super::summary(pool, &window).await? {
        rolled.entry(None).or_default().merge(&f);
        rolled.entry(Some(channel)).or_default().merge(&f);
    }
    let raw = reports::summary(pool, &ReportScope { owner, from, to, channel: None, sla_seconds: None }).await?;
    let key =
        |total: bool, channel: &Option<String>| if total { None } else { Some(channel.clone().unwrap_or_default()) };
    let mut found = Vec::new();
    let differ = |what: &str, at: &Option<String>, rolled: i64, raw: i64| {
        (rolled != raw).then(|| format!("{}: {what} {rolled} from rollups, {raw} from the raw rows", label(at)))
    };
    let empty = Figures::default();
    let of = |k: &Option<String>| rolled.get(k).unwrap_or(&empty).clone();
    for r in &raw.opened {
        let k = key(r.total, &r.channel);
        found.extend(differ("ticketsOpened", &k, of(&k).tickets_opened, r.n));
    }
    for r in &raw.open_now {
        let k = key(r.total, &r.channel);
        found.extend(differ("ticketsOpenNow", &k, of(&k).tickets_open_now, r.n));
    }
    for r in &raw.messages {
        let k = key(r.total, &r.channel);
        found.extend(differ("messagesIn", &k, of(&k).messages_in, r.n_in));
        found.extend(differ("messagesOut", &k, of(&k).messages_out, r.n_out));
    }
    for r in &raw.deliveries {
        let k = key(r.total, &r.channel);
        let d = of(&k).deliveries;
        for (what, a, b) in [
            ("deliveries.delivered", d.delivered, r.delivered),
            ("deliveries.failed", d.failed, r.failed),
            ("deliveries.dead", d.dead, r.dead),
            ("deliveries.pending", d.pending, r.pending),
            ("deliveries.cancelled", d.cancelled, r.cancelled),
        ] {
            found.extend(differ(what, &k, a, b));
        }
    }
    for (what, rows, pick) in [
        ("ticketsClosed / resolution", &raw.closed, (|f: &Figures| f.resolution.clone()) as fn(&Figures) -> _),
        ("first responses", &raw.first_response, |f: &Figures| f.first_response.clone()),
    ] {
        for r in rows {
            let k = key(r.total, &r.channel);
            let d = pick(&of(&k));
            if what.starts_with("ticketsClosed") {
                found.extend(differ("ticketsClosed", &k, of(&k).tickets_closed, r.n));
            }
            let close = |a: Option<f64>, b: Option<f64>, tolerance: f64| match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() <= tolerance * b.abs() + 1e-6,
                (a, b) => a.is_none() && b.is_none(),
            };
            let (p50, p90) = (d.histogram.percentile(0.5), d.histogram.percentile(0.9));
            if !close(p50, r.p50, 0.01) || !close(p90, r.p90, 0.01) || !close(d.mean(), r.mean, 1e-9) {
                found.push(format!(
                    "{}: {what} p50/p90/mean {p50:?}/{p90:?}/{:?} from rollups, {:?}/{:?}/{:?} from the raw rows",
                    label(&k),
                    d.mean(),
                    r.p50,
                    r.p90,
                    r.mean
                ));
            }
        }
    }
    Ok(found)
}

fn label(key: &Option<String>) -> String {
    match key.as_deref() {
        None => "overall".into(),
        Some("") => "channel unknown".into(),
        Some(c) => format!("channel {c}"),
    }
}
