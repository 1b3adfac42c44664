//! Merging 3Dolphins' conversation history into a ticket's stored conversation.
//!
//! The matching rule: a history line is already known when (a) it was merged before — its
//! key (direction, 3Dolphins time in ms, text) is stored — or (b) a message that came
//! through the bridge has the same direction and text (trimmed) and was committed within
//! [`MATCH_WINDOW`] of the history line's time, and no other history line claimed it.
//! Everything else is stored with source `history` and 3Dolphins' own time; such rows never
//! change the ticket's counters and never count in reports.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::dolphins::client::{ClientError, DolphinsClient, HistoryLine};
use crate::dolphins::token::Account;
use crate::domain::Direction;
use crate::store::messages::{self, LocalLine};

/// How far apart the bridge's commit time and 3Dolphins' time of one message may be.
pub const MATCH_WINDOW: Duration = Duration::minutes(10);

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Fetches the ticket's history (from the day before it opened until today, in the tenant's
/// timezone) and stores the lines the bridge did not have. Answers how many were new.
#[allow(clippy::too_many_arguments)]
pub async fn merge(
    pool: &PgPool,
    client: &DolphinsClient,
    account: &Account,
    owner: &str,
    ticket: &str,
    opened_at: DateTime<Utc>,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<usize, MergeError> {
    let from = (opened_at - Duration::days(1)).with_timezone(&tz).date_naive();
    let to = now.with_timezone(&tz).date_naive();
    let lines = client.conversation(account, ticket, from, to, now).await?;
    let local = messages::local_lines(pool, owner, ticket).await?;
    let mut stored = 0;
    for line in unmatched(&lines, &local) {
        let direction = if line.answer { Direction::Out } else { Direction::In };
        let key = history_key(line);
        if messages::insert_history(pool, owner, ticket, direction, &line.message, line.created, &key, &line.raw)
            .await?
        {
            stored += 1;
        }
    }
    Ok(stored)
}

/// The history lines no local message accounts for (rule (b) above; rule (a) is the
/// unique key at insert).
pub fn unmatched<'a>(lines: &'a [HistoryLine], local: &[LocalLine]) -> Vec<&'a HistoryLine> {
    let mut used = vec![false; local.len()];
    lines
        .iter()
        .filter(|line| {
            let direction = if line.answer { "out" } else { "in" };
            let found = local.iter().enumerate().position(|(i, m)| {
                !used[i]
                    && m.direction == direction
                    && m.message.as_deref().map(str::trim) == Some(line.message.trim())
                    && (m.at - line.created).abs() <= MATCH_WINDOW
            });
            match found {
                Some(i) => {
                    used[i] = true;
                    false
                }
                None => true,
            }
        })
        .collect()
}

fn history_key(line: &HistoryLine) -> String {
    let digest = Sha256::digest(line.message.as_bytes());
    let text: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}|{}|{text}", if line.answer { "out" } else { "in" }, line.created.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(answer: bool, text: &str, at: DateTime<Utc>) -> HistoryLine {
        HistoryLine { answer, message: text.into(), created: at, raw: serde_json::json!({}) }
    }

    fn local(direction: &str, text: &str, at: DateTime<Utc>) -> LocalLine {
        LocalLine { direction: direction.into(), message: Some(text.into()), at }
    }

    #[test]
    fn a_line_the_bridge_relayed_is_matched_once_within_the_window() {
        let t = Utc::now();
        let lines = [line(false, "ok", t), line(false, "ok", t + Duration::seconds(5)), line(true, "ok", t)];
        let stored = [local("in", " ok ", t + Duration::seconds(2))];
        let left = unmatched(&lines, &stored);
        // The first "ok" matches the stored one; the second is a second message; the agent's
        // "ok" has the other direction.
        assert_eq!(left.len(), 2);
        assert!(left[0].created == t + Duration::seconds(5) && !left[0].answer);
        assert!(left[1].answer);
    }

    #[test]
    fn a_line_far_from_any_stored_message_is_new() {
        let t = Utc::now();
        let lines = [line(false, "halo", t)];
        assert_eq!(unmatched(&lines, &[local("in", "halo", t + Duration::minutes(11))]).len(), 1);
        assert_eq!(unmatched(&lines, &[local("in", "halo", t - Duration::minutes(9))]).len(), 0);
    }

    #[test]
    fn keys_differ_by_direction_time_and_text() {
        let t = Utc::now();
        let a = history_key(&line(false, "x", t));
        assert_ne!(a, history_key(&line(true, "x", t)));
        assert_ne!(a, history_key(&line(false, "y", t)));
        assert_ne!(a, history_key(&line(false, "x", t + Duration::milliseconds(1))));
        assert_eq!(a, history_key(&line(false, "x", t)));
    }
}
