//! A `PostgreSQL` ledger's connection settings, resolved the way libpq resolves them for `psql`:
//! the URL, then the connection service it names (`?service=NAME`, or `PGSERVICE`) from a
//! service file, then the password from `[ledger] password_env` or the password file
//! (`PGPASSFILE`, else `~/.pgpass`). The `postgres` crate reads only the URL; doing the rest
//! here lets an operator's existing psql setup serve oxi too, and keeps every password out of
//! oxi.toml.

use std::path::{Path, PathBuf};

use postgres::config::Host;

/// The port libpq assumes when neither the URL nor the service names one.
const DEFAULT_PORT: u16 = 5432;

/// The system-wide service files libpq's common builds read when `PGSYSCONFDIR` is unset:
/// Debian's and Ubuntu's packages, then Homebrew's on Apple silicon and on Intel.
const SYSTEM_SERVICE_FILES: [&str; 3] = [
    "/etc/postgresql-common/pg_service.conf",
    "/opt/homebrew/etc/pg_service.conf",
    "/usr/local/etc/pg_service.conf",
];

/// Why a ledger URL and the files it leads to give no usable connection settings.
#[derive(Debug, thiserror::Error)]
pub enum ConnInfoError {
    #[error("not a usable PostgreSQL URL: {0}")]
    Url(String),
    #[error(
        "a password in the URL is refused; name an environment variable in [ledger] password_env, or use a password file (~/.pgpass) or a service file"
    )]
    PasswordInUrl,
    #[error("[ledger] password_env names {0}, which is not set in oxi's environment")]
    PasswordEnvUnset(String),
    #[error(
        "connection service {service:?} is not defined in {searched} (PGSERVICEFILE and PGSYSCONFDIR choose the files)"
    )]
    NoSuchService { service: String, searched: String },
    #[error("service file {}: {detail}", path.display())]
    ServiceFile { path: PathBuf, detail: String },
    #[error("service file {}, service [{service}]: {detail}", path.display())]
    ServiceEntry {
        path: PathBuf,
        service: String,
        detail: String,
    },
    #[error("password file {}: {source}", path.display())]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: postgres_secrets::pgpass::LoadError,
    },
}

/// Where the process's environment is read from: the real one, or a test's.
pub(crate) trait Environment {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process's own environment.
pub(crate) struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

/// The settings to connect with: the URL's, completed by its service and a password.
///
/// # Errors
/// As [`ConnInfoError`]: each names the file (and service) it comes from.
pub(crate) fn resolve(
    url: &str,
    password_env: Option<&str>,
    env: &dyn Environment,
) -> Result<postgres::Config, ConnInfoError> {
    let (url, service) = split_service(url);
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| ConnInfoError::Url(with_cause(&e)))?;
    if config.get_password().is_some() {
        return Err(ConnInfoError::PasswordInUrl);
    }
    if let Some(service) = service.or_else(|| env.var("PGSERVICE")) {
        let defined = service_config(&service, env)?;
        fill_unset(&mut config, &defined);
    }
    if config.get_password().is_none() {
        if let Some(var) = password_env {
            let password = env
                .var(var)
                .ok_or_else(|| ConnInfoError::PasswordEnvUnset(var.to_owned()))?;
            config.password(password);
        } else if let Some(password) = password_file_entry(&config, env)? {
            config.password(password);
        }
    }
    Ok(config)
}

/// The URL without its `service` parameter, which the `postgres` crate does not know, and the
/// service it names.
pub(crate) fn split_service(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut service = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.split_once('=') {
            Some(("service", name)) => {
                service = Some(percent_encoding::percent_decode_str(name).decode_utf8_lossy());
                false
            }
            _ => true,
        })
        .collect();
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, service.map(std::borrow::Cow::into_owned))
}

/// The files libpq looks for a service in, in order: the user's, then the system's.
fn service_files(env: &dyn Environment) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(file) = env.var("PGSERVICEFILE") {
        files.push(PathBuf::from(file));
    } else if let Some(home) = env.var("HOME") {
        files.push(Path::new(&home).join(".pg_service.conf"));
    }
    match env.var("PGSYSCONFDIR") {
        Some(dir) => files.push(Path::new(&dir).join("pg_service.conf")),
        None => files.extend(SYSTEM_SERVICE_FILES.iter().map(PathBuf::from)),
    }
    files
}

/// The settings service `name` defines in the first service file that has it.
fn service_config(name: &str, env: &dyn Environment) -> Result<postgres::Config, ConnInfoError> {
    let files = service_files(env);
    // libpq takes values as written: no quotes, no escapes.
    let options = || ini::ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..ini::ParseOption::default()
    };
    for path in &files {
        let parsed = match ini::Ini::load_from_file_opt(path, options()) {
            Ok(parsed) => parsed,
            Err(ini::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ConnInfoError::ServiceFile {
                    path: path.clone(),
                    detail: e.to_string(),
                });
            }
        };
        let Some(section) = parsed.section(Some(name)) else {
            continue;
        };
        let conninfo: Vec<String> = section
            .iter()
            .map(|(key, value)| format!("{key}='{}'", conninfo_quoted(value)))
            .collect();
        return conninfo
            .join(" ")
            .parse()
            .map_err(|e| ConnInfoError::ServiceEntry {
                path: path.clone(),
                service: name.to_owned(),
                detail: with_cause(&e),
            });
    }
    Err(ConnInfoError::NoSuchService {
        service: name.to_owned(),
        searched: files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// A client error with its cause: the `postgres` crate says "invalid connection string" and
/// keeps which key or value in its source.
pub(crate) fn with_cause(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// A value inside single quotes of a key=value connection string.
fn conninfo_quoted(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

/// What the URL leaves unset, taken from the service's settings: the URL wins, as in libpq.
fn fill_unset(config: &mut postgres::Config, service: &postgres::Config) {
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        for host in service.get_hosts() {
            match host {
                Host::Tcp(name) => config.host(name),
                #[cfg(unix)]
                Host::Unix(path) => config.host_path(path),
            };
        }
        for addr in service.get_hostaddrs() {
            config.hostaddr(*addr);
        }
    }
    if config.get_ports().is_empty() {
        for port in service.get_ports() {
            config.port(*port);
        }
    }
    let take = |mine: Option<&str>, theirs: Option<&str>| {
        theirs.filter(|_| mine.is_none()).map(str::to_owned)
    };
    if let Some(user) = take(config.get_user(), service.get_user()) {
        config.user(&user);
    }
    if let Some(dbname) = take(config.get_dbname(), service.get_dbname()) {
        config.dbname(&dbname);
    }
    if let Some(options) = take(config.get_options(), service.get_options()) {
        config.options(&options);
    }
    if let Some(password) = service
        .get_password()
        .filter(|_| config.get_password().is_none())
    {
        config.password(password);
    }
    if let Some(timeout) = service
        .get_connect_timeout()
        .filter(|_| config.get_connect_timeout().is_none())
    {
        config.connect_timeout(*timeout);
    }
    if config.get_ssl_mode() == postgres::config::SslMode::Prefer {
        config.ssl_mode(service.get_ssl_mode());
    }
}

/// The password the password file holds for these settings, if it has one and may be read.
/// The host of a Unix-socket connection matches as `localhost`, as in libpq; a file others
/// can read is ignored with a warning, as libpq does.
fn password_file_entry(
    config: &postgres::Config,
    env: &dyn Environment,
) -> Result<Option<String>, ConnInfoError> {
    let Some(path) = env
        .var("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env.var("HOME").map(|h| Path::new(&h).join(".pgpass")))
    else {
        return Ok(None);
    };
    if !path.is_file() || !private_to_owner(&path) {
        return Ok(None);
    }
    let file =
        postgres_secrets::PgPass::open(&path).map_err(|source| ConnInfoError::PasswordFile {
            path: path.clone(),
            source,
        })?;
    let Some(user) = config
        .get_user()
        .map(str::to_owned)
        .or_else(|| env.var("USER"))
        .or_else(|| env.var("LOGNAME"))
    else {
        return Ok(None);
    };
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        _ => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(DEFAULT_PORT);
    let dbname = config.get_dbname().unwrap_or(&user).to_owned();
    let found = file
        .query()
        .hostname(host)
        .and_then(|q| q.port(port))
        .and_then(|q| q.database(dbname))
        .and_then(|q| q.username(user))
        .ok()
        .and_then(|q| q.find().ok().flatten());
    Ok(found.map(|credentials| credentials.password))
}

/// Whether only its owner may read `path` (libpq ignores a password file others can read).
#[cfg(unix)]
#[allow(
    clippy::verbose_bit_mask,
    reason = "0o077 (group and world) is how chmod and libpq's own check say it"
)]
fn private_to_owner(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let private = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 == 0);
    if !private {
        tracing::warn!(
            "password file {} has group or world access and is ignored; chmod 0600 it",
            path.display()
        );
    }
    private
}

#[cfg(not(unix))]
fn private_to_owner(_path: &Path) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    struct FakeEnv(HashMap<&'static str, String>);

    impl Environment for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    /// An environment whose HOME and system config directory are `dir` (so no real file of
    /// this machine is read), plus `vars`.
    fn env(dir: &Path, vars: &[(&'static str, &str)]) -> FakeEnv {
        let mut map: HashMap<&'static str, String> = HashMap::from([
            ("HOME", dir.display().to_string()),
            ("PGSYSCONFDIR", dir.join("etc").display().to_string()),
            ("USER", "os-user".to_owned()),
        ]);
        map.extend(vars.iter().map(|(k, v)| (*k, (*v).to_owned())));
        FakeEnv(map)
    }

    fn write_private(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn password(config: &postgres::Config) -> Option<String> {
        config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    #[test]
    fn the_service_parameter_is_taken_out_of_the_url() {
        assert_eq!(
            split_service("postgres:///?service=oxi"),
            ("postgres:///".to_owned(), Some("oxi".to_owned()))
        );
        assert_eq!(
            split_service("postgres://u@/db?host=/run/pg&service=a%20b&port=5433"),
            (
                "postgres://u@/db?host=/run/pg&port=5433".to_owned(),
                Some("a b".to_owned())
            )
        );
        assert_eq!(
            split_service("postgres://u@h/db"),
            ("postgres://u@h/db".to_owned(), None)
        );
    }

    #[test]
    fn a_service_fills_what_the_url_leaves_unset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".pg_service.conf");
        std::fs::write(
            &file,
            "# the fleet's ledger\n[other]\ndbname=nope\n\n[oxi]\nhost=/run/pg\nport=6543\ndbname=ledger\nuser=fleet\npassword=from-service\nconnect_timeout=7\n",
        )
        .unwrap();
        let env = env(dir.path(), &[]);
        let config = resolve("postgres:///?service=oxi", None, &env).unwrap();
        assert_eq!(
            config.get_hosts(),
            [Host::Unix(PathBuf::from("/run/pg"))].as_slice()
        );
        assert_eq!(config.get_ports(), [6543].as_slice());
        assert_eq!(config.get_dbname(), Some("ledger"));
        assert_eq!(config.get_user(), Some("fleet"));
        assert_eq!(password(&config).as_deref(), Some("from-service"));
        assert_eq!(
            config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(7))
        );
        // What the URL says wins (a host in a URL comes with its port, 5432 unless given);
        // PGSERVICE names the service when the URL does not.
        let env = self::env(dir.path(), &[("PGSERVICE", "oxi")]);
        let config = resolve("postgres://me@db.internal/mine", None, &env).unwrap();
        assert_eq!(
            config.get_hosts(),
            [Host::Tcp("db.internal".to_owned())].as_slice()
        );
        assert_eq!(config.get_ports(), [5432].as_slice());
        assert_eq!(
            (config.get_user(), config.get_dbname()),
            (Some("me"), Some("mine"))
        );
    }

    #[test]
    fn the_system_service_file_is_read_after_the_users() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join(".pg_service.conf"), "[mine]\ndbname=a\n").unwrap();
        std::fs::write(
            dir.path().join("etc/pg_service.conf"),
            "[oxi]\ndbname=from-system\n",
        )
        .unwrap();
        let config = resolve("postgres://u@h?service=oxi", None, &env(dir.path(), &[])).unwrap();
        assert_eq!(config.get_dbname(), Some("from-system"));
    }

    #[test]
    fn service_problems_name_the_file_and_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("services.conf");
        let file_text = file.display().to_string();
        let env = env(dir.path(), &[("PGSERVICEFILE", &file_text)]);
        let missing = resolve("postgres://u@h?service=oxi", None, &env)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("\"oxi\" is not defined in"), "{missing}");
        assert!(missing.contains(&file_text), "{missing}");
        assert!(missing.contains("pg_service.conf"), "{missing}");

        std::fs::write(&file, "[oxi]\nhots=db\n").unwrap();
        let typo = resolve("postgres://u@h?service=oxi", None, &env)
            .unwrap_err()
            .to_string();
        assert!(
            typo.contains(&format!("service file {file_text}, service [oxi]")),
            "{typo}"
        );
        assert!(typo.contains("hots"), "{typo}");

        std::fs::write(&file, "[oxi\ndbname=x\n").unwrap();
        let broken = resolve("postgres://u@h?service=oxi", None, &env)
            .unwrap_err()
            .to_string();
        assert!(
            broken.starts_with(&format!("service file {file_text}: ")),
            "{broken}"
        );
    }

    #[test]
    fn the_password_file_matches_like_libpq() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".pgpass");
        write_private(
            &file,
            "# host:port:db:user:password\nlocalhost:5432:ledger:fleet:socket-pw\ndb.internal:*:ledger:fleet:tcp\\:pw\n*:*:*:os-user:default-user\n",
        );
        let env = env(dir.path(), &[]);
        // A Unix socket matches as localhost.
        let config = resolve("postgres://fleet@/ledger?host=/run/pg", None, &env).unwrap();
        assert_eq!(password(&config).as_deref(), Some("socket-pw"));
        let config = resolve("postgres://fleet@db.internal:6000/ledger", None, &env).unwrap();
        assert_eq!(password(&config).as_deref(), Some("tcp:pw"));
        // No user in the URL: the OS user's, as libpq does.
        let config = resolve("postgres://db.internal/anything", None, &env).unwrap();
        assert_eq!(password(&config).as_deref(), Some("default-user"));
        let config = resolve("postgres://nobody@db.internal/ledger", None, &env).unwrap();
        assert_eq!(password(&config), None);
    }

    #[test]
    fn password_env_wins_and_must_be_set() {
        let dir = tempfile::tempdir().unwrap();
        write_private(&dir.path().join(".pgpass"), "*:*:*:*:from-file\n");
        let env = env(dir.path(), &[("OXI_PW", "from-env")]);
        let config = resolve("postgres://u@h/db", Some("OXI_PW"), &env).unwrap();
        assert_eq!(password(&config).as_deref(), Some("from-env"));
        let unset = resolve("postgres://u@h/db", Some("OXI_NOPE"), &env)
            .unwrap_err()
            .to_string();
        assert!(
            unset.contains("names OXI_NOPE, which is not set"),
            "{unset}"
        );
    }

    #[test]
    fn a_password_file_others_can_read_is_ignored_and_a_broken_one_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pass");
        let file_text = file.display().to_string();
        let env = env(dir.path(), &[("PGPASSFILE", &file_text)]);
        std::fs::write(&file, "*:*:*:*:leaky\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = resolve("postgres://u@h/db", None, &env).unwrap();
        assert_eq!(password(&config), None);

        write_private(&file, "h:notaport:db:u:pw\n");
        let broken = resolve("postgres://u@h/db", None, &env)
            .unwrap_err()
            .to_string();
        assert!(
            broken.starts_with(&format!("password file {file_text}: ")),
            "{broken}"
        );
    }

    #[test]
    fn a_password_in_the_url_is_refused_without_repeating_it() {
        let dir = tempfile::tempdir().unwrap();
        let refused = resolve("postgres://u:hunter2@h/db", None, &env(dir.path(), &[]))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("password in the URL is refused"),
            "{refused}"
        );
        assert!(!refused.contains("hunter2"), "{refused}");
    }
}
