//! A PostgreSQL ledger reached the way psql reaches a database, against a real cluster whose
//! role must give its password: the password from `~/.pgpass` (a Unix socket matching as
//! `localhost`), a connection service (`postgres:///?service=NAME`) from the service file, and
//! `oxi init --ledger-url` creating the shared ledger on one host and joining it on another.
//! Each `oxi` runs with its own HOME, so no file of this machine is read.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use oxi_testkit::pg::{PgCluster, cluster_or_skip};

use crate::support::{Run, Sandbox};

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting**\nSay hello.\n\n**T0-2 · Add a farewell**\nSay goodbye.\n";

/// A fresh database and a role that must give `password` to reach it over the socket.
struct Guarded {
    cluster: &'static PgCluster,
    db: String,
    role: String,
}

impl Guarded {
    fn new(test: &str, password: &str) -> Option<Self> {
        let cluster = cluster_or_skip(test)?;
        let url = cluster.database(test).expect("create the test database");
        // postgres://postgres@/NAME?host=…
        let db = url
            .split_once("@/")
            .and_then(|(_, rest)| rest.split_once('?'))
            .map(|(name, _)| name.to_owned())
            .expect("the cluster's URL names its database");
        let role = format!("oxi_pw_{db}");
        cluster
            .require_password(&role, password)
            .expect("a role that needs a password");
        Some(Self { cluster, db, role })
    }

    fn socket(&self) -> String {
        self.cluster.socket_dir().display().to_string()
    }

    /// The ledger URL, password-free, over the socket.
    fn url(&self) -> String {
        format!(
            "postgres://{}@/{}?host={}&port=5432",
            self.role,
            self.db,
            self.socket()
        )
    }
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `oxi ARGS` with HOME (so `~/.pgpass` and `~/.pg_service.conf`) and the system service
/// directory both in `home`.
fn oxi_at_home(s: &Sandbox, home: &Path, args: &[&str]) -> Run {
    let home = home.display().to_string();
    s.oxi_env(args, &[("HOME", &home), ("PGSYSCONFDIR", &home)])
}

#[test]
fn init_creates_and_joins_a_shared_ledger_with_the_password_from_pgpass() {
    let Some(pg) = Guarded::new("conninfo_init", "s3cret:pw") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    // A colon in the password is escaped; the socket matches as localhost.
    write_mode(
        &pgpass,
        &format!(
            "# oxi's fleet ledger\nlocalhost:5432:{}:{}:s3cret\\:pw\n",
            pg.db, pg.role
        ),
        0o600,
    );
    let url = pg.url();

    let first = Sandbox::git_repo();
    first.write("roadmap.md", ROADMAP);
    // Unreachable without the password: said so, and no oxi.toml names the ledger yet.
    let nowhere = tempfile::tempdir().unwrap();
    let err = oxi_at_home(&first, nowhere.path(), &["init", "--ledger-url", &url]);
    assert_ne!(err.code, 0, "{err:?}");
    assert!(
        err.stderr.contains("oxi found no password for it"),
        "{}",
        err.stderr
    );
    assert!(!first.file("oxi.toml").exists());
    let out = oxi_at_home(&first, home.path(), &["init", "--ledger-url", &url])
        .ok()
        .to_owned();
    assert!(out.contains(&format!("ledger   {url} (schema v")), "{out}");
    assert!(out.contains("shared; 0 tasks in it"), "{out}");
    let config = first.read("oxi.toml");
    assert!(
        config.contains(&format!("[ledger]\nurl = \"{url}\"")),
        "{config}"
    );
    assert!(
        !first.file(".oxi/ledger.db").exists(),
        "a shared ledger leaves no SQLite file behind"
    );
    oxi_at_home(&first, home.path(), &["ingest"]).ok();

    // A second host joins the same queue.
    let second = Sandbox::git_repo();
    let out = oxi_at_home(&second, home.path(), &["init", "--ledger-url", &url])
        .ok()
        .to_owned();
    assert!(out.contains("shared; 2 tasks in it"), "{out}");
    let tasks = oxi_at_home(&second, home.path(), &["tasks", "--format", "json"]).json();
    assert_eq!(tasks.as_array().map(Vec::len), Some(2), "{tasks}");

    // A password file others can read is ignored, as libpq ignores it: the server's refusal.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = oxi_at_home(&second, home.path(), &["tasks"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("has group or world access and is ignored; chmod 0600 it"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("cannot connect to the ledger at"),
        "{}",
        run.stderr
    );

    // No password anywhere: the same refusal, and nothing was written by the failed opens.
    std::fs::remove_file(&pgpass).unwrap();
    let run = oxi_at_home(&second, home.path(), &["tasks"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("password"), "{}", run.stderr);
}

#[test]
fn a_connection_service_names_the_ledger() {
    let Some(pg) = Guarded::new("conninfo_service", "svc-pw") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    write_mode(
        &home.path().join(".pg_service.conf"),
        &format!(
            "# psql \"service=oxi\" reaches the same database\n[oxi]\nhost={}\nport=5432\ndbname={}\nuser={}\n",
            pg.socket(),
            pg.db,
            pg.role
        ),
        0o644,
    );
    write_mode(
        &home.path().join(".pgpass"),
        &format!("*:*:{}:{}:svc-pw\n", pg.db, pg.role),
        0o600,
    );
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    let out = oxi_at_home(
        &s,
        home.path(),
        &["init", "--ledger-url", "postgres:///?service=oxi"],
    )
    .ok()
    .to_owned();
    assert!(out.contains("shared; 0 tasks in it"), "{out}");
    oxi_at_home(&s, home.path(), &["ingest"]).ok();
    let status = oxi_at_home(&s, home.path(), &["status", "--format", "json"]).json();
    assert_eq!(status["tasks"]["queued"], 2, "{status}");

    // A service no file defines: named, with the files searched; nothing written.
    let other = Sandbox::git_repo();
    let err = oxi_at_home(
        &other,
        home.path(),
        &["init", "--ledger-url", "postgres:///?service=nope"],
    );
    assert_ne!(err.code, 0, "{err:?}");
    assert!(
        err.stderr
            .contains("connection service \"nope\" is not defined in"),
        "{}",
        err.stderr
    );
    assert!(err.stderr.contains(".pg_service.conf"), "{}", err.stderr);
}

#[test]
fn init_refuses_ledger_flags_it_cannot_honour() {
    let s = Sandbox::git_repo();
    let err = s.oxi(&["init", "--password-env", "OXI_PW"]);
    assert_ne!(err.code, 0, "{err:?}");
    assert!(
        err.stderr.contains("give --ledger-url too"),
        "{}",
        err.stderr
    );
    assert!(!s.file("oxi.toml").exists());

    s.oxi(&["init"]).ok();
    let kept = s.read("oxi.toml");
    let err = s.oxi(&["init", "--ledger-url", "postgres://oxi@db/oxi"]);
    assert_ne!(err.code, 0, "{err:?}");
    assert!(
        err.stderr.contains("use --force to overwrite it"),
        "{}",
        err.stderr
    );
    assert_eq!(s.read("oxi.toml"), kept, "the kept oxi.toml is untouched");

    // A URL the config would refuse never reaches the file.
    let fresh = Sandbox::git_repo();
    let err = fresh.oxi(&["init", "--ledger-url", "postgres://oxi:hunter2@db/oxi"]);
    assert_ne!(err.code, 0, "{err:?}");
    assert!(
        err.stderr.contains("has a password in it"),
        "{}",
        err.stderr
    );
    assert!(!err.stderr.contains("hunter2"), "{}", err.stderr);
    assert!(!fresh.file("oxi.toml").exists());
}
