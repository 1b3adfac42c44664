//! `DATABASE_URL` in libpq's multi-host URI form, which sqlx cannot parse:
//! `postgres://user:pw@h1:p1,h2:p2,h3/db?target_session_attrs=read-write&sslmode=…`,
//! exactly as `pg_autoctl show uri` or a Patroni setup prints it.
//!
//! The list is split here into one ordinary single-host URL per host (every other
//! parameter kept as written), which sqlx parses as before; `target_session_attrs` says
//! which of them the bridge may use ([`crate::store::topology`] probes them).

use std::fmt;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

/// libpq's `target_session_attrs`: which server of the list a session may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    /// The first server that answers.
    Any,
    /// A server whose new sessions may write (not in recovery, not `default_transaction_read_only`).
    ReadWrite,
    /// A server that is not in recovery.
    Primary,
    /// A server whose new sessions are read-only (a standby, or `default_transaction_read_only`).
    ReadOnly,
    /// A server in recovery.
    Standby,
    /// A standby if one answers, else any server.
    PreferStandby,
}

impl SessionAttrs {
    pub const ALL: [SessionAttrs; 6] = [
        SessionAttrs::Any,
        SessionAttrs::ReadWrite,
        SessionAttrs::Primary,
        SessionAttrs::ReadOnly,
        SessionAttrs::Standby,
        SessionAttrs::PreferStandby,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::Primary => "primary",
            SessionAttrs::ReadOnly => "read-only",
            SessionAttrs::Standby => "standby",
            SessionAttrs::PreferStandby => "prefer-standby",
        }
    }

    /// Whether a server in this state satisfies the attribute (`prefer-standby` takes any
    /// server; its preference is applied when choosing among them).
    pub fn accepts(self, role: ServerRole) -> bool {
        match self {
            SessionAttrs::Any | SessionAttrs::PreferStandby => true,
            SessionAttrs::ReadWrite => !role.read_only,
            SessionAttrs::Primary => !role.in_recovery,
            SessionAttrs::ReadOnly => role.read_only,
            SessionAttrs::Standby => role.in_recovery,
        }
    }

    /// Whether a session that wants this attribute can write.
    pub fn writes(self) -> bool {
        matches!(self, SessionAttrs::ReadWrite | SessionAttrs::Primary | SessionAttrs::Any)
    }
}

impl FromStr for SessionAttrs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SessionAttrs::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = SessionAttrs::ALL.iter().map(|a| a.as_str()).collect();
            format!("unknown target_session_attrs {s:?} (expected one of {})", known.join(", "))
        })
    }
}

/// What a server said of itself when probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerRole {
    /// `pg_is_in_recovery()`: a standby.
    pub in_recovery: bool,
    /// A new session's `transaction_read_only`: a standby, or a primary that refuses writes
    /// (pg_auto_failover keeps a promoted node read-only until its old primary is gone).
    pub read_only: bool,
}

impl fmt::Display for ServerRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.in_recovery, self.read_only) {
            (true, _) => "standby",
            (false, false) => "primary",
            (false, true) => "primary, read-only",
        })
    }
}

/// A parsed `DATABASE_URL`: the hosts in order, each as its own single-host URL.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    hosts: Vec<HostUrl>,
    pub attrs: SessionAttrs,
}

/// One host of the list.
#[derive(Debug, Clone)]
pub struct HostUrl {
    /// `host:port` as written (the port may be absent): for logs, `doctor` and metric labels.
    pub label: String,
    /// The single-host URL for this host, without `target_session_attrs`.
    pub url: String,
}

impl DatabaseUrl {
    /// Parses a `postgres://` URL with one host or a comma-separated host list. The error
    /// names the bad part (and never contains the password).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (scheme, rest) = raw
            .split_once("://")
            .filter(|(s, _)| matches!(*s, "postgres" | "postgresql"))
            .ok_or_else(|| "expected a postgres:// URL".to_string())?;
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let (userinfo, host_list) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (Some(user), hosts),
            None => (None, authority),
        };
        let (path, query) = match tail.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (tail, None),
        };
        let mut attrs = SessionAttrs::Any;
        let mut kept = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "target_session_attrs" => attrs = value.parse()?,
                "host" | "hostaddr" | "port" if value.contains(',') => {
                    return Err(format!(
                        "a list in the {key} parameter is not supported: list the hosts as postgres://h1:p1,h2:p2/db"
                    ));
                }
                _ => kept.push(pair),
            }
        }
        let query = if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) };
        let user = userinfo.map_or(String::new(), |u| format!("{u}@"));
        let entries: Vec<&str> = host_list.split(',').collect();
        let mut hosts = Vec::with_capacity(entries.len());
        for (n, entry) in entries.iter().enumerate() {
            // One empty host is libpq's default (a Unix socket or `?host=`); in a list it is a typo.
            if entries.len() > 1 {
                check_host(entry).map_err(|e| format!("host {} of the list ({entry:?}): {e}", n + 1))?;
            } else if !entry.is_empty() {
                check_host(entry)?;
            }
            let url = format!("{scheme}://{user}{entry}{path}{query}");
            PgConnectOptions::from_str(&url)
                .map_err(|e| format!("{}: {e}", if entry.is_empty() { "the URL" } else { entry }))?;
            let label = if entry.is_empty() { "(default host)".to_string() } else { entry.to_string() };
            hosts.push(HostUrl { label, url });
        }
        Ok(DatabaseUrl { hosts, attrs })
    }

    pub fn hosts(&self) -> &[HostUrl] {
        &self.hosts
    }

    /// Whether the bridge must probe servers before using them: a list to choose from, or an
    /// attribute that a single server may or may not satisfy.
    pub fn needs_probe(&self) -> bool {
        self.hosts.len() > 1 || self.attrs != SessionAttrs::Any
    }
}

/// Checks one `host[:port]` entry: a host name or address (IPv6 in brackets) and an
/// optional port from 1 to 65535.
fn check_host(entry: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = entry.strip_prefix('[') {
        let (address, after) = v6.split_once(']').ok_or("an IPv6 address must end with ]")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("expected :port after the IPv6 address")?),
        };
        (address, port)
    } else {
        match entry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (entry, None),
        }
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    match port.map(|p| (p, p.parse::<u16>())) {
        None | Some((_, Ok(1..))) => Ok(()),
        Some((p, _)) => Err(format!("bad port {p:?} (expected 1 to 65535)")),
    }
}

/// Hides the password of a `postgres://user:pass@host[,host…]/db` URL.
pub fn redact(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else { return raw.to_string() };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{hosts}{tail}"),
            None => raw.to_string(),
        },
        None => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pg_auto_failover_uri_becomes_one_url_per_host_with_the_other_parameters_kept() {
        let url = DatabaseUrl::parse(
            "postgres://bridge:pw@127.0.0.1:6001,127.0.0.1:6002,db3/bridge?target_session_attrs=read-write&sslmode=disable",
        )
        .expect("valid");
        assert_eq!(url.attrs, SessionAttrs::ReadWrite);
        let labels: Vec<&str> = url.hosts().iter().map(|h| h.label.as_str()).collect();
        assert_eq!(labels, ["127.0.0.1:6001", "127.0.0.1:6002", "db3"]);
        assert_eq!(url.hosts()[1].url, "postgres://bridge:pw@127.0.0.1:6002/bridge?sslmode=disable");
        assert!(url.needs_probe());
    }

    #[test]
    fn a_single_host_url_is_unchanged_and_needs_no_probe() {
        for raw in
            ["postgres://u@localhost:5432/db", "postgresql:///db?host=/var/run/postgresql", "postgres://[::1]:5433/db"]
        {
            let url = DatabaseUrl::parse(raw).expect(raw);
            assert_eq!(url.hosts().len(), 1);
            assert_eq!(url.hosts()[0].url, raw);
            assert!(!url.needs_probe(), "{raw}");
        }
        let primary = DatabaseUrl::parse("postgres://db.example.com/db?target_session_attrs=primary").expect("valid");
        assert!(primary.needs_probe());
    }

    #[test]
    fn a_malformed_host_list_names_the_bad_part() {
        let cases = [
            ("postgres://a:1,,c/db", "host 2 of the list"),
            ("postgres://a:1,b:x/db", "bad port \"x\""),
            ("postgres://a:1,b:70000/db", "bad port \"70000\""),
            ("postgres://a,b:0/db", "bad port \"0\""),
            ("postgres://a,[::1/db", "must end with ]"),
            ("postgres://a,b/db?target_session_attrs=master", "unknown target_session_attrs \"master\""),
            ("postgres://a/db?host=x,y", "not supported"),
            ("mysql://a/db", "expected a postgres:// URL"),
        ];
        for (raw, expected) in cases {
            let err = DatabaseUrl::parse(raw).expect_err(raw);
            assert!(err.contains(expected), "{raw}: {err}");
        }
    }

    #[test]
    fn every_documented_attribute_parses_and_accepts_what_libpq_accepts() {
        let primary = ServerRole { in_recovery: false, read_only: false };
        let promoting = ServerRole { in_recovery: false, read_only: true };
        let standby = ServerRole { in_recovery: true, read_only: true };
        let accepted = |a: SessionAttrs| [primary, promoting, standby].map(|r| a.accepts(r));
        for attrs in SessionAttrs::ALL {
            assert_eq!(attrs.as_str().parse::<SessionAttrs>(), Ok(attrs));
        }
        assert_eq!(accepted(SessionAttrs::ReadWrite), [true, false, false]);
        assert_eq!(accepted(SessionAttrs::Primary), [true, true, false]);
        assert_eq!(accepted(SessionAttrs::ReadOnly), [false, true, true]);
        assert_eq!(accepted(SessionAttrs::Standby), [false, false, true]);
        assert_eq!(accepted(SessionAttrs::Any), [true, true, true]);
    }

    #[test]
    fn the_password_is_hidden_in_every_form() {
        assert_eq!(redact("postgres://u:secret@a:1,b:2/db?x=1"), "postgres://u:***@a:1,b:2/db?x=1");
        assert_eq!(redact("postgres://u:secret@localhost/db"), "postgres://u:***@localhost/db");
        assert_eq!(redact("postgres://u@a,b/db"), "postgres://u@a,b/db");
        let err = DatabaseUrl::parse("postgres://u:secret@a,b:x/db").expect_err("bad port");
        assert!(!err.contains("secret"), "{err}");
    }
}
