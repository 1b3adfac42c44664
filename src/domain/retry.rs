//! The retry policy: how a peer's answer is classified and when to try again.
//! Pure functions; the dispatcher supplies the jitter so tests need no randomness.

use std::time::Duration;

/// The longest a `Retry-After` may push an attempt back (README *Rules worth knowing*, deliveries).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// What came back from one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The peer answered. `json_status` is the `status` field of a JSON body, if any.
    Http { status: u16, json_status: Option<String>, retry_after: Option<Duration> },
    /// No answer within the delivery timeout.
    Timeout,
    /// No connection (refused, DNS, TLS, reset).
    Connection,
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again; `retry_after` is the peer's own wish, honoured as the README says (*Rules worth knowing*, deliveries).
    Retry {
        retry_after: Option<Duration>,
    },
    /// A permanent refusal: no attempt can succeed (`dead` at once).
    Permanent,
}

/// Success is a 2xx whose JSON `status`, if present, says `success`. 3xx (redirects are
/// not followed), 408, 425, 429, 5xx, timeouts and connection errors are worth retrying;
/// any other 4xx is permanent.
pub fn classify(reply: &Reply) -> Verdict {
    match reply {
        Reply::Timeout | Reply::Connection => Verdict::Retry { retry_after: None },
        Reply::Http { status, json_status, retry_after } => match status {
            200..=299 => match json_status.as_deref() {
                None => Verdict::Delivered,
                Some(s) if s.eq_ignore_ascii_case("success") => Verdict::Delivered,
                Some(_) => Verdict::Retry { retry_after: None },
            },
            429 | 503 => Verdict::Retry { retry_after: *retry_after },
            300..=399 | 408 | 425 | 500..=599 => Verdict::Retry { retry_after: None },
            _ => Verdict::Permanent,
        },
    }
}

/// The delay before the next attempt after `attempts_made` attempts (1-based), or `None`
/// when the schedule is exhausted and the delivery is dead. `jitter` in `[-1, 1]` spreads
/// the delay by up to ±20 %; a `Retry-After` can lengthen the wait (capped at an hour)
/// but never shorten it.
pub fn next_delay(
    schedule: &[Duration],
    attempts_made: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let index = usize::try_from(attempts_made.checked_sub(1)?).ok()?;
    let base = *schedule.get(index)?;
    let factor = 1.0 + 0.2 * jitter.clamp(-1.0, 1.0);
    let scheduled = base.mul_f64(factor);
    Some(match retry_after {
        Some(wish) => scheduled.max(wish.min(MAX_RETRY_AFTER)),
        None => scheduled,
    })
}

/// Parses a `Retry-After` header value given in seconds (HTTP dates are rare from
/// webhook receivers and are ignored).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, json_status: Option<&str>) -> Reply {
        Reply::Http { status, json_status: json_status.map(str::to_string), retry_after: None }
    }

    #[test]
    fn a_2xx_is_success_unless_its_json_status_says_otherwise() {
        assert_eq!(classify(&http(200, None)), Verdict::Delivered);
        assert_eq!(classify(&http(204, None)), Verdict::Delivered);
        assert_eq!(classify(&http(200, Some("success"))), Verdict::Delivered);
        assert_eq!(classify(&http(200, Some("error"))), Verdict::Retry { retry_after: None });
    }

    #[test]
    fn transient_failures_are_retried_and_other_4xx_are_permanent() {
        for status in [301, 302, 408, 425, 429, 500, 502, 503, 504] {
            assert!(matches!(classify(&http(status, None)), Verdict::Retry { .. }), "{status}");
        }
        for status in [400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(classify(&http(status, None)), Verdict::Permanent, "{status}");
        }
        assert!(matches!(classify(&Reply::Timeout), Verdict::Retry { .. }));
        assert!(matches!(classify(&Reply::Connection), Verdict::Retry { .. }));
    }

    #[test]
    fn retry_after_is_kept_only_for_429_and_503() {
        let wish = Some(Duration::from_secs(90));
        let with = |status| Reply::Http { status, json_status: None, retry_after: wish };
        assert_eq!(classify(&with(429)), Verdict::Retry { retry_after: wish });
        assert_eq!(classify(&with(503)), Verdict::Retry { retry_after: wish });
        assert_eq!(classify(&with(500)), Verdict::Retry { retry_after: None });
    }

    #[test]
    fn n_delays_give_n_plus_one_attempts() {
        let schedule = [Duration::from_secs(5), Duration::from_secs(30)];
        assert_eq!(next_delay(&schedule, 1, None, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(next_delay(&schedule, 2, None, 0.0), Some(Duration::from_secs(30)));
        assert_eq!(next_delay(&schedule, 3, None, 0.0), None);
        assert_eq!(next_delay(&[], 1, None, 0.0), None);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let schedule = [Duration::from_secs(10)];
        assert_eq!(next_delay(&schedule, 1, None, 1.0), Some(Duration::from_secs(12)));
        assert_eq!(next_delay(&schedule, 1, None, -1.0), Some(Duration::from_secs(8)));
        assert_eq!(next_delay(&schedule, 1, None, 7.0), Some(Duration::from_secs(12)), "clamped");
    }

    #[test]
    fn retry_after_lengthens_but_never_shortens_and_is_capped_at_an_hour() {
        let schedule = [Duration::from_secs(30)];
        assert_eq!(next_delay(&schedule, 1, Some(Duration::from_secs(120)), 0.0), Some(Duration::from_secs(120)));
        assert_eq!(next_delay(&schedule, 1, Some(Duration::from_secs(1)), 0.0), Some(Duration::from_secs(30)));
        assert_eq!(next_delay(&schedule, 1, Some(Duration::from_secs(86_400)), 0.0), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn retry_after_seconds_are_parsed() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
