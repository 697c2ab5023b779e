//! `[ledger]`: a Postgres URL oxi can connect with, and a password that never sits in
//! oxi.toml.

use super::{Problem, is_env_name, problem};
use crate::config::Config;

/// `ledger.url` and `ledger.password_env`.
pub(super) fn check(config: &Config, problems: &mut Vec<Problem>) {
    let ledger = &config.ledger;
    if let Some(var) = &ledger.password_env {
        if ledger.url.is_none() {
            problems.push(problem(
                &["ledger", "password_env"],
                "password_env is for a PostgreSQL ledger: set [ledger] url too, or remove it",
            ));
        } else if !is_env_name(var) {
            problems.push(problem(
                &["ledger", "password_env"],
                format!(
                    "{var:?} is not an environment variable name: give the NAME of the variable that holds the password (e.g. OXI_LEDGER_PASSWORD), never the password"
                ),
            ));
        }
    }
    if let Some(url) = &ledger.url
        && let Some(message) = url_problem(url)
    {
        problems.push(problem(&["ledger", "url"], message));
    }
}

/// What is wrong with `url` as a Postgres ledger's URL, if anything.
fn url_problem(url: &str) -> Option<String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Some(format!(
            "{url:?} is not a PostgreSQL URL: write postgres://USER@HOST/DB (or postgres://USER@/DB?host=/run/postgresql for a Unix socket), or remove [ledger] url for the SQLite ledger .oxi/ledger.db"
        ));
    }
    // `service` is libpq's, not the client crate's: the service may name the database.
    let (without_service, service) = crate::ledger::split_service(url);
    if service.as_deref() == Some("") {
        return Some(format!(
            "{} names an empty service: write ?service=NAME (a section of ~/.pg_service.conf)",
            shown(url)
        ));
    }
    match without_service.parse::<postgres::Config>() {
        Err(e) => Some(format!(
            "{} is not a usable PostgreSQL URL: {}",
            shown(url),
            crate::ledger::client_error_with_cause(&e)
        )),
        Ok(parsed) if parsed.get_password().is_some() => Some(format!(
            "{} has a password in it; remove it from the URL and name the environment variable holding it in [ledger] password_env (or use ~/.pgpass or a service file)",
            shown(url)
        )),
        Ok(parsed) if parsed.get_dbname().is_none() && service.is_none() => Some(format!(
            "{} names no database: add /DB after the host, e.g. postgres://oxi@db.internal/oxi, or name a connection service that does (postgres:///?service=oxi)",
            shown(url)
        )),
        Ok(_) => None,
    }
}

/// The URL as a message may show it: a password blanked.
fn shown(url: &str) -> String {
    crate::ledger::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::url_problem;

    #[test]
    fn urls() {
        assert_eq!(url_problem("postgres://oxi@db.internal/oxi"), None);
        assert_eq!(url_problem("postgres://oxi@/oxi?host=/run/pg"), None);
        assert_eq!(url_problem("postgresql://oxi@db:6543/oxi"), None);
        let password = url_problem("postgres://oxi:hunter2@db/oxi").unwrap_or_default();
        assert!(password.contains("has a password"), "{password}");
        assert!(!password.contains("hunter2"), "{password}");
        assert!(url_problem("mysql://db/oxi").is_some());
        assert!(url_problem("postgres://oxi@db").is_some_and(|m| m.contains("names no database")));
        assert_eq!(url_problem("postgres:///?service=oxi"), None);
        assert_eq!(
            url_problem("postgres://oxi@/oxi?host=/run/pg&service=a%20b"),
            None
        );
        assert!(url_problem("postgres:///?service=").is_some_and(|m| m.contains("empty service")));
    }
}
