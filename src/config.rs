//! Typed settings read once from the environment (README *Configuration*), validated at start.
//!
//! Every variable has a default so `serve` starts with none set. A bad value is a
//! [`ConfigError`] naming the variable and the value; `main` prints it on one line and
//! exits with code 2.

use std::{fmt, net::SocketAddr, time::Duration};

use base64::Engine;

use crate::store::database_url::DatabaseUrl;

mod settings;
pub use settings::{Setting, Settings, SETTINGS};

/// A configuration problem: which variable, what it held, what was wrong.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: String,
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// When the console's session cookie carries `Secure` (`BRIDGE_COOKIE_SECURE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieSecure {
    /// When the request came over HTTPS, as a TLS proxy says with `X-Forwarded-Proto: https`
    /// (a browser drops a `Secure` cookie set over plain HTTP, so a trial on a LAN address
    /// can sign in).
    Auto,
    /// Always (behind a TLS proxy that does not send `X-Forwarded-Proto`).
    Always,
    /// Never.
    Never,
}

/// The process settings. Secrets are kept out of `Debug`.
#[derive(Clone)]
pub struct Config {
    /// Where the bridge writes: one host, or libpq's host list with `target_session_attrs`.
    pub database_url: String,
    /// Whether `DATABASE_URL` was given (else it is the default, and `demo` or
    /// `--embedded-db` may bring a database along).
    pub database_url_given: bool,
    /// Where list, report and CSV endpoints read (a standby); `None`: from `database_url`.
    pub read_database_url: Option<String>,
    pub listen: SocketAddr,
    /// Bearer token of the admin API; `None` disables it (403 `admin_disabled`).
    pub admin_token: Option<String>,
    /// 32-byte key for peer secrets at rest (see README: not yet applied, issue 7).
    pub secret_key: Option<[u8; 32]>,
    pub workers: usize,
    pub retry_schedule: Vec<Duration>,
    pub delivery_timeout: Duration,
    pub lease: Duration,
    /// How often the dispatcher looks for due work nobody woke it for (other processes'
    /// deliveries, retries coming due).
    pub poll_interval: Duration,
    pub echo_window: Duration,
    pub dedupe_window: Duration,
    /// How long an accepted message may wait for others to share its write and commit
    /// (`intake::group_commit`): zero writes each at once.
    pub intake_window: Duration,
    pub contact_ttl: Duration,
    pub max_body: usize,
    /// How long a client may take to send its request headers (slow-header clients are cut off).
    pub header_timeout: Duration,
    /// How long one request may take in total, body included (answered 408 after).
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Requests per second and burst per credential on the third-party webhooks and
    /// `/api/v1`; `None` turns limiting off.
    pub rate_limit: Option<RateLimit>,
    pub log_format: LogFormat,
    /// `RUST_LOG`: which logs are written.
    pub log_filter: String,
    pub cookie_secure: CookieSecure,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redact_url(&self.database_url))
            .field("read_database_url", &self.read_database_url.as_deref().map(redact_url))
            .field("listen", &self.listen)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<set>"))
            .field("workers", &self.workers)
            .field("retry_schedule", &self.retry_schedule)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("echo_window", &self.echo_window)
            .field("dedupe_window", &self.dedupe_window)
            .field("intake_window", &self.intake_window)
            .field("contact_ttl", &self.contact_ttl)
            .field("max_body", &self.max_body)
            .field("header_timeout", &self.header_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_connections", &self.max_connections)
            .field("rate_limit", &self.rate_limit)
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("cookie_secure", &self.cookie_secure)
            .finish()
    }
}

/// Hides the password of a `postgres://user:pass@host[,host…]/db` URL.
pub fn redact_url(raw: &str) -> String {
    crate::store::database_url::redact(raw)
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres:postgres@localhost:5432/dolphin_bridge";
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,30s,2m,10m,30m,1h,3h,6h,12h,24h";
/// The longest `BRIDGE_INTAKE_WINDOW` allowed: every webhook's answer may wait that long.
const MOST_INTAKE_WINDOW: Duration = Duration::from_millis(100);

impl Config {
    /// Checks the settings the command line read (flags and environment).
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Self::from_lookup(|var| settings.get(var))
    }

    /// Reads settings through `lookup` (variable name → value), so tests can pass a map
    /// instead of the environment. Unset or empty values take their default from [`SETTINGS`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let lookup = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let default = |var: &str| SETTINGS.iter().find(|s| s.var == var).and_then(|s| s.default).unwrap_or("");
        let get = |var: &'static str| -> String { lookup(var).unwrap_or_else(|| default(var).to_string()) };
        fn parse_with_any<T>(
            value: String,
            var: &'static str,
            f: impl Fn(&str) -> Result<T, String>,
        ) -> Result<T, ConfigError> {
            f(&value).map_err(|reason| ConfigError { var, value, reason })
        }
        let parse_with =
            |var: &'static str, f: &dyn Fn(&str) -> Result<Duration, String>| parse_with_any(get(var), var, f);

        let database_url_given = lookup("DATABASE_URL").is_some();
        let database_url = get("DATABASE_URL");
        let checked = |var: &'static str, url: String, writes: bool| {
            let reason = match DatabaseUrl::parse(&url) {
                Err(reason) => reason,
                Ok(parsed) if writes && !parsed.attrs.writes() => format!(
                    "the bridge writes through this URL: target_session_attrs={} never reaches a server it can \
                     write to (use read-write, and put standbys in BRIDGE_READ_DATABASE_URL)",
                    parsed.attrs.as_str()
                ),
                Ok(_) => return Ok(url),
            };
            Err(ConfigError { var, value: redact_url(&url), reason })
        };
        let database_url = checked("DATABASE_URL", database_url, true)?;
        let read_database_url = match lookup("BRIDGE_READ_DATABASE_URL").filter(|v| !v.trim().is_empty()) {
            Some(url) => Some(checked("BRIDGE_READ_DATABASE_URL", url, false)?),
            None => None,
        };
        let listen = parse_with_any(get("BRIDGE_LISTEN"), "BRIDGE_LISTEN", |v| {
            v.parse::<SocketAddr>().map_err(|e| e.to_string())
        })?;
        let admin_token = lookup("BRIDGE_ADMIN_TOKEN").filter(|t| !t.is_empty());
        if let Some(t) = &admin_token {
            if t.len() < 16 {
                return Err(ConfigError {
                    var: "BRIDGE_ADMIN_TOKEN",
                    value: "<hidden>".into(),
                    reason: "must be at least 16 characters".into(),
                });
            }
        }
        let secret_key = match lookup("BRIDGE_SECRET_KEY").filter(|t| !t.is_empty()) {
            None => None,
            Some(raw) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(raw.trim()).map_err(|e| ConfigError {
                    var: "BRIDGE_SECRET_KEY",
                    value: "<hidden>".into(),
                    reason: format!("not base64: {e}"),
                })?;
                let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| ConfigError {
                    var: "BRIDGE_SECRET_KEY",
                    value: "<hidden>".into(),
                    reason: format!("must decode to 32 bytes, got {}", b.len()),
                })?;
                Some(key)
            }
        };
        let workers = parse_with_any(get("BRIDGE_WORKERS"), "BRIDGE_WORKERS", |v| match v.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(n),
            _ => Err("expected a whole number from 1 to 1024".into()),
        })?;
        let retry_schedule = parse_with_any(get("BRIDGE_RETRY_SCHEDULE"), "BRIDGE_RETRY_SCHEDULE", parse_schedule)?;
        let positive = |v: &str| match parse_duration(v)? {
            d if d.is_zero() => Err("must be greater than zero".to_string()),
            d => Ok(d),
        };
        let delivery_timeout = parse_with("BRIDGE_DELIVERY_TIMEOUT", &positive)?;
        let lease = parse_with("BRIDGE_LEASE", &positive)?;
        let poll_interval = parse_with("BRIDGE_POLL_INTERVAL", &positive)?;
        let echo_window = parse_with("BRIDGE_ECHO_WINDOW", &parse_duration)?;
        let dedupe_window = parse_with("BRIDGE_DEDUPE_WINDOW", &parse_duration)?;
        let intake_window = parse_with("BRIDGE_INTAKE_WINDOW", &|v: &str| match parse_duration(v)? {
            d if d > MOST_INTAKE_WINDOW => Err("at most 100ms: every webhook's answer may wait that long".to_string()),
            d => Ok(d),
        })?;
        let contact_ttl = parse_with("BRIDGE_CONTACT_TTL", &parse_duration)?;
        let max_body = parse_with_any(get("BRIDGE_MAX_BODY"), "BRIDGE_MAX_BODY", parse_size)?;
        let header_timeout = parse_with("BRIDGE_HEADER_TIMEOUT", &positive)?;
        let request_timeout = parse_with("BRIDGE_REQUEST_TIMEOUT", &positive)?;
        let max_connections =
            parse_with_any(get("BRIDGE_MAX_CONNECTIONS"), "BRIDGE_MAX_CONNECTIONS", |v| match v.parse::<usize>() {
                Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
                _ => Err("expected a whole number from 1 to 1000000".into()),
            })?;
        let rate_limit = parse_with_any(get("BRIDGE_RATE_LIMIT"), "BRIDGE_RATE_LIMIT", parse_rate_limit)?;
        let log_format = parse_with_any(get("BRIDGE_LOG_FORMAT"), "BRIDGE_LOG_FORMAT", |v| match v {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected pretty or json".into()),
        })?;
        let cookie_secure = parse_with_any(get("BRIDGE_COOKIE_SECURE"), "BRIDGE_COOKIE_SECURE", |v| match v {
            "auto" => Ok(CookieSecure::Auto),
            "always" => Ok(CookieSecure::Always),
            "never" => Ok(CookieSecure::Never),
            _ => Err("expected auto, always or never".into()),
        })?;
        Ok(Config {
            database_url,
            database_url_given,
            read_database_url,
            listen,
            admin_token,
            secret_key,
            workers,
            retry_schedule,
            delivery_timeout,
            lease,
            poll_interval,
            echo_window,
            dedupe_window,
            intake_window,
            contact_ttl,
            max_body,
            header_timeout,
            request_timeout,
            max_connections,
            rate_limit,
            log_format,
            log_filter: get("RUST_LOG"),
            cookie_secure,
        })
    }
}

/// Parses `250ms`, `5s`, `2m`, `1h` (a bare number is seconds).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a duration like 500ms, 5s, 2m or 1h"))?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err(format!("{s:?} has an unknown unit (use ms, s, m, h)")),
    };
    ms.map(Duration::from_millis).ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a comma-separated list of delays: N delays mean N+1 attempts.
pub fn parse_schedule(raw: &str) -> Result<Vec<Duration>, String> {
    let delays = raw.split(',').map(parse_duration).collect::<Result<Vec<_>, _>>()?;
    if delays.len() > 50 {
        return Err("at most 50 delays".into());
    }
    Ok(delays)
}

/// A token bucket: `per_second` refill, `burst` capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: f64,
}

/// Parses `1000/s` (burst twice the rate), `60/m`, `1000/s,5000` (explicit burst) or `off`.
pub fn parse_rate_limit(raw: &str) -> Result<Option<RateLimit>, String> {
    let s = raw.trim();
    if s.eq_ignore_ascii_case("off") || s == "0" {
        return Ok(None);
    }
    let bad = || format!("{s:?} is not a rate like 1000/s, 60/m, 1000/s,2000 or off");
    let (rate, burst) = match s.split_once(',') {
        Some((rate, burst)) => (rate, Some(burst.trim().parse::<f64>().map_err(|_| bad())?)),
        None => (s, None),
    };
    let (n, unit) = rate.split_once('/').ok_or_else(bad)?;
    let n: f64 = n.trim().parse().map_err(|_| bad())?;
    let per_second = match unit.trim() {
        "s" => n,
        "m" => n / 60.0,
        "h" => n / 3600.0,
        _ => return Err(bad()),
    };
    let burst = burst.unwrap_or(per_second * 2.0).max(1.0);
    if !(per_second.is_finite() && per_second > 0.0 && burst.is_finite()) {
        return Err(bad());
    }
    Ok(Some(RateLimit { per_second, burst }))
}

/// Parses `262144`, `256KiB`, `1MiB` (also `KB`/`MB`, read as binary units).
pub fn parse_size(raw: &str) -> Result<usize, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: usize = digits.parse().map_err(|_| format!("{s:?} is not a size like 256KiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        _ => return Err(format!("{s:?} has an unknown unit (use KiB or MiB)")),
    };
    match n.checked_mul(mult) {
        Some(v) if (1024..=64 * 1024 * 1024).contains(&v) => Ok(v),
        _ => Err("must be between 1KiB and 64MiB".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn every_variable_has_a_default() {
        let c = config(&[]).expect("defaults are valid");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.retry_schedule.len(), 10);
        assert_eq!(c.max_body, 256 * 1024);
        assert_eq!(c.workers, 16);
        assert!(c.admin_token.is_none());
    }

    #[test]
    fn a_bad_value_names_the_variable_and_the_value() {
        let err = config(&[("BRIDGE_LEASE", "soon")]).unwrap_err();
        assert_eq!(err.var, "BRIDGE_LEASE");
        assert!(err.to_string().contains("\"soon\""), "{err}");
        assert_eq!(config(&[("BRIDGE_WORKERS", "0")]).unwrap_err().var, "BRIDGE_WORKERS");
        assert_eq!(config(&[("BRIDGE_LISTEN", "nowhere")]).unwrap_err().var, "BRIDGE_LISTEN");
        assert_eq!(config(&[("BRIDGE_SECRET_KEY", "c2hvcnQ=")]).unwrap_err().var, "BRIDGE_SECRET_KEY");
        assert_eq!(config(&[("DATABASE_URL", "mysql://x")]).unwrap_err().var, "DATABASE_URL");
        assert_eq!(config(&[("BRIDGE_COOKIE_SECURE", "sometimes")]).unwrap_err().var, "BRIDGE_COOKIE_SECURE");
    }

    #[test]
    fn the_intake_window_is_two_milliseconds_unless_set_and_never_long() {
        assert_eq!(config(&[]).expect("defaults").intake_window, Duration::from_millis(2));
        assert_eq!(config(&[("BRIDGE_INTAKE_WINDOW", "0ms")]).expect("off").intake_window, Duration::ZERO);
        let err = config(&[("BRIDGE_INTAKE_WINDOW", "1s")]).unwrap_err();
        assert_eq!(err.var, "BRIDGE_INTAKE_WINDOW");
        assert!(err.to_string().contains("at most 100ms"), "{err}");
    }

    #[test]
    fn durations_accept_the_documented_suffixes() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn rate_limits_read_rate_burst_and_off() {
        assert_eq!(parse_rate_limit("1000/s"), Ok(Some(RateLimit { per_second: 1000.0, burst: 2000.0 })));
        assert_eq!(parse_rate_limit("60/m,5"), Ok(Some(RateLimit { per_second: 1.0, burst: 5.0 })));
        assert_eq!(parse_rate_limit("off"), Ok(None));
        assert!(parse_rate_limit("fast").is_err());
        assert!(parse_rate_limit("-5/s").is_err());
        assert_eq!(config(&[("BRIDGE_RATE_LIMIT", "lots")]).unwrap_err().var, "BRIDGE_RATE_LIMIT");
    }

    #[test]
    fn sizes_accept_binary_units() {
        assert_eq!(parse_size("256KiB"), Ok(262_144));
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = config(&[
            ("BRIDGE_ADMIN_TOKEN", "super-secret-admin-token"),
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
        ])
        .expect("valid");
        let shown = format!("{c:?}");
        assert!(!shown.contains("super-secret-admin-token"));
        assert!(!shown.contains("hunter2"));
    }
}
