//! Every setting declared once ([`SETTINGS`]): its variable, flag, default and help. The
//! command line is built from this table (so `--help` lists each setting with its
//! variable and default), and [`super::Config::from_lookup`] takes the defaults from it.

use super::{DEFAULT_DATABASE_URL, DEFAULT_RETRY_SCHEDULE};

/// One setting: its environment variable, the flag that overrides it, its default, and
/// whether its value may hold a secret (then `--help` never shows the value set).
pub struct Setting {
    pub var: &'static str,
    pub flag: &'static str,
    pub default: Option<&'static str>,
    pub secret: bool,
    pub help: &'static str,
}

const fn setting(var: &'static str, flag: &'static str, default: Option<&'static str>, help: &'static str) -> Setting {
    Setting { var, flag, default, secret: false, help }
}

const fn secret(var: &'static str, flag: &'static str, help: &'static str) -> Setting {
    Setting { var, flag, default: None, secret: true, help }
}

/// Every setting, declared here once: `--help` lists them from this table (with their
/// variables and defaults), the command line reads them, and [`super::Config::from_lookup`] checks
/// them. A flag overrides its variable.
pub const SETTINGS: &[Setting] = &[
    Setting {
        var: "DATABASE_URL",
        flag: "database-url",
        default: Some(DEFAULT_DATABASE_URL),
        // The URL may hold a password: `--help` shows the default, never the value set.
        secret: true,
        help: "PostgreSQL the bridge writes to (created if missing): one host, or libpq's host list with target_session_attrs",
    },
    secret("BRIDGE_READ_DATABASE_URL", "read-database-url",
        "Where lists, reports and CSV exports read (a standby); default: DATABASE_URL"),
    setting("BRIDGE_LISTEN", "http-listen", Some("127.0.0.1:8080"), "HTTP listen address"),
    secret("BRIDGE_ADMIN_TOKEN", "admin-token",
        "Bearer token of the admin API (at least 16 characters); unset: the admin API answers 403"),
    secret("BRIDGE_SECRET_KEY", "secret-key",
        "32-byte base64 key sealing signing secrets and 3Dolphins passwords at rest (openssl rand -base64 32)"),
    setting("BRIDGE_WORKERS", "workers", Some("16"), "Deliveries in flight at once in this process (1-1024)"),
    setting("BRIDGE_RETRY_SCHEDULE", "retry-schedule", Some(DEFAULT_RETRY_SCHEDULE),
        "Delays between attempts: N delays = N+1 attempts, then dead"),
    setting("BRIDGE_DELIVERY_TIMEOUT", "delivery-timeout", Some("15s"), "Per-attempt HTTP timeout (kept below the lease)"),
    setting("BRIDGE_LEASE", "lease", Some("30s"), "How long a claimed delivery belongs to one process"),
    setting("BRIDGE_POLL_INTERVAL", "poll-interval", Some("1s"),
        "How often the dispatcher looks for due work nobody woke it for"),
    setting("BRIDGE_ECHO_WINDOW", "echo-window", Some("5m"), "Echo suppression window (0s: off)"),
    setting("BRIDGE_DEDUPE_WINDOW", "dedupe-window", Some("0s"),
        "Fold identical Incoming Events within this window (0s: off)"),
    setting("BRIDGE_INTAKE_WINDOW", "intake-window", Some("2ms"),
        "How long an accepted message may wait for others to share its database write and commit (0ms: none; at most 100ms)"),
    setting("BRIDGE_CONTACT_TTL", "contact-ttl", Some("15m"), "Contact API cache lifetime"),
    setting("BRIDGE_MAX_BODY", "max-body", Some("256KiB"), "Request body limit (413 above it)"),
    setting("BRIDGE_HEADER_TIMEOUT", "header-timeout", Some("10s"), "A client must send its request headers within this"),
    setting("BRIDGE_REQUEST_TIMEOUT", "request-timeout", Some("30s"), "A whole request is answered 408 after this"),
    setting("BRIDGE_MAX_CONNECTIONS", "max-connections", Some("4096"), "Connections served at once"),
    setting("BRIDGE_RATE_LIMIT", "rate-limit", Some("1000/s"),
        "Per-credential limit on the third-party webhooks and /api/v1: N/s, N/m, N/s,BURST or off"),
    setting("BRIDGE_LOG_FORMAT", "log-format", Some("pretty"), "pretty or json"),
    setting("RUST_LOG", "log", Some("info,sqlx=warn"), "Log filter (tracing's EnvFilter syntax, e.g. debug or info,dolphin_bridge=debug)"),
    setting("BRIDGE_COOKIE_SECURE", "cookie-secure", Some("auto"),
        "When the console's cookie says Secure: auto (over HTTPS, X-Forwarded-Proto honoured), always or never"),
];

/// The settings as given on the command line or in the environment (flattened into the
/// CLI, so every subcommand's `--help` lists them); checked by [`super::Config::from_settings`].
#[derive(Debug, Clone, Default)]
pub struct Settings(std::collections::HashMap<&'static str, String>);

impl Settings {
    /// The value given for `var`, if any (`Config::from_lookup` treats an empty one as unset).
    pub fn get(&self, var: &str) -> Option<String> {
        self.0.get(var).cloned()
    }
}

impl clap::FromArgMatches for Settings {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut values = std::collections::HashMap::new();
        for s in SETTINGS {
            // The default is applied by `Config::from_lookup`, so only given values count.
            let given = !matches!(matches.value_source(s.var), None | Some(clap::parser::ValueSource::DefaultValue));
            if let (true, Some(value)) = (given, matches.get_one::<String>(s.var)) {
                values.insert(s.var, value.clone());
            }
        }
        Ok(Settings(values))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for Settings {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.next_help_heading("Settings (each flag overrides its environment variable)").args(SETTINGS.iter().map(
            |s| {
                let arg = clap::Arg::new(s.var)
                    .long(s.flag)
                    .env(s.var)
                    .value_name("VALUE")
                    .help(s.help)
                    .global(true)
                    .hide_env_values(s.secret);
                match s.default {
                    Some(default) => arg.default_value(default),
                    None => arg,
                }
            },
        ))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}
