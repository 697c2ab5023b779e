//! A throwaway PostgreSQL cluster for the tests of oxi's PostgreSQL ledger.
//!
//! One cluster per test process, started on first use: `initdb` into a temporary directory,
//! then `pg_ctl start` listening on a Unix socket in that directory only (no TCP port, so tests
//! running in parallel processes never collide). Each test gets a database of its own
//! ([`PgCluster::database`]). PostgreSQL refuses to run as root, so as root the cluster runs as
//! the `postgres` user Debian's package creates (through `runuser`), in a directory handed to
//! it.
//!
//! A watcher process stops the cluster and deletes its directory when the test process exits
//! (statics are never dropped, and a test process may be killed), so no server outlives its
//! tests.
//!
//! A test that restarts or stops the server gets a cluster of its own
//! ([`private_cluster_or_skip`]), so the tests sharing the process's cluster never see it go.
//!
//! Where PostgreSQL is not installed, [`cluster_or_skip`] skips the test with the command that
//! enables it; under `CI=true` it fails the test instead, so CI can never skip them silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// What enables the PostgreSQL tests on a Debian or Ubuntu machine.
pub const ENABLE_HINT: &str =
    "apt-get install -y postgresql (or set OXI_PG_BIN to a directory holding initdb and pg_ctl)";

/// The Unix-socket "port": it only names the socket file, which lives in the cluster's own
/// directory.
const PORT: u16 = 5432;

/// Why a cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No PostgreSQL server binaries were found.
    #[error("PostgreSQL is not installed here: {ENABLE_HINT}")]
    NotInstalled,
    /// A command of the cluster's setup failed.
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    run_as: Option<String>,
    next_db: AtomicU32,
}

static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();

/// This process's cluster, started on first use; `None` (after saying how to enable the test)
/// when PostgreSQL is not installed and `CI` is not `true`.
///
/// # Panics
/// When the cluster cannot start, or PostgreSQL is missing under `CI=true`.
#[must_use]
pub fn cluster_or_skip(test: &str) -> Option<&'static PgCluster> {
    let cluster = CLUSTER.get_or_init(|| match PgCluster::start() {
        Ok(cluster) => Ok(cluster),
        Err(PgError::NotInstalled) => Err(PgError::NotInstalled.to_string()),
        Err(e) => panic!("cannot start the test PostgreSQL cluster: {e}"),
    });
    match cluster {
        Ok(cluster) => Some(cluster),
        Err(why) => skip(test, why),
    }
}

/// A cluster of `test`'s own, for a test that stops or restarts the server (the shared one
/// must stay up for the tests running beside it): started now, stopped and deleted when
/// dropped (or by its watcher, if the test process dies first). `None` (after saying how to
/// enable the test) when PostgreSQL is not installed and `CI` is not `true`.
///
/// # Panics
/// When the cluster cannot start, or PostgreSQL is missing under `CI=true`.
#[must_use]
pub fn private_cluster_or_skip(test: &str) -> Option<PrivateCluster> {
    match PgCluster::start() {
        Ok(cluster) => Some(PrivateCluster(cluster)),
        Err(PgError::NotInstalled) => skip(test, &PgError::NotInstalled.to_string()),
        Err(e) => panic!("{test}: cannot start a PostgreSQL cluster: {e}"),
    }
}

#[expect(
    clippy::print_stderr,
    reason = "a skipped test says why and how to run it, on the test's own output"
)]
fn skip<T>(test: &str, why: &str) -> Option<T> {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: CI=true requires the PostgreSQL tests to run, but {why}")
    }
    eprintln!("skipping {test}: {why}");
    None
}

/// A cluster owned by one test (see [`private_cluster_or_skip`]); derefs to [`PgCluster`].
#[derive(Debug)]
pub struct PrivateCluster(PgCluster);

impl std::ops::Deref for PrivateCluster {
    type Target = PgCluster;

    fn deref(&self) -> &PgCluster {
        &self.0
    }
}

impl PrivateCluster {
    /// `pg_ctl restart -m immediate`: the server is killed without a checkpoint (as a crash
    /// or a power cut would) and starts again through crash recovery; every session is cut.
    /// Returns once the server accepts connections again.
    ///
    /// # Errors
    /// When `pg_ctl` fails.
    pub fn restart_immediate(&self) -> Result<(), PgError> {
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &["restart", "-m", "immediate", "-w", "-l", &log, "-D"],
            Some(&self.data_dir()),
        )
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["stop", "-m", "immediate", "-D"],
            Some(&self.data_dir()),
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PgCluster {
    fn start() -> Result<Self, PgError> {
        let bin = find_bin().ok_or(PgError::NotInstalled)?;
        let run_as = nix_is_root().then(|| "postgres".to_owned());
        let dir = make_dir(run_as.as_deref())?;
        let cluster = PgCluster {
            bin,
            dir,
            run_as,
            next_db: AtomicU32::new(0),
        };
        cluster.run(
            "initdb",
            &[
                "--auth=trust",
                "--username=postgres",
                "--encoding=UTF8",
                "--no-instructions",
                "-D",
            ],
            Some(&cluster.data_dir()),
        )?;
        // fsync off: this cluster is thrown away, and the ledger's own durability setting
        // (synchronous_commit) is what the tests check, not the disk's.
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c port={PORT} -c fsync=off -c max_connections=200",
            cluster.dir.display()
        );
        let log = cluster.dir.join("server.log");
        cluster.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-o",
                &options,
                "-l",
                &log.display().to_string(),
                "-D",
            ],
            Some(&cluster.data_dir()),
        )?;
        cluster.watch_parent()?;
        Ok(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The directory holding the cluster's socket (a URL's `host`).
    #[must_use]
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// A new, empty database owned by the cluster's superuser; returns its URL
    /// (`postgres://postgres@/NAME?host=DIR&port=PORT`).
    ///
    /// # Errors
    /// When `createdb` fails.
    pub fn database(&self, hint: &str) -> Result<String, PgError> {
        let n = self.next_db.fetch_add(1, Ordering::SeqCst);
        let slug: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("t{n}_{slug}");
        let socket = self.dir.display().to_string();
        let port = PORT.to_string();
        self.run(
            "createdb",
            &["-h", &socket, "-p", &port, "-U", "postgres", &name],
            None,
        )?;
        Ok(self.url(&name))
    }

    /// The URL of database `name` in this cluster.
    #[must_use]
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@/{name}?host={}&port={PORT}",
            self.dir.display()
        )
    }

    /// Runs one of the server's programs (as the cluster's user), `path` appended as its last
    /// argument.
    fn run(&self, program: &str, args: &[&str], path: Option<&Path>) -> Result<(), PgError> {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(&exe);
                cmd
            }
            None => Command::new(&exe),
        };
        cmd.args(args);
        if let Some(path) = path {
            cmd.arg(path);
        }
        // The cluster's user may not be able to read the test's working directory.
        cmd.current_dir(&self.dir);
        let out = cmd.stdin(Stdio::null()).output()?;
        if out.status.success() {
            return Ok(());
        }
        Err(PgError::Command {
            what: program.to_owned(),
            detail: format!(
                "{}; {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        })
    }

    /// A new superuser `role` that must give `password` (SCRAM) on the cluster's socket, while
    /// every other role stays trusted: its line goes first in `pg_hba.conf`, then the server
    /// reloads. For the tests of how oxi finds a password (`~/.pgpass`, a service file).
    ///
    /// # Errors
    /// When the role cannot be created or the server cannot reload.
    pub fn require_password(&self, role: &str, password: &str) -> Result<(), PgError> {
        static HBA: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let socket = self.dir.display().to_string();
        let port = PORT.to_string();
        let sql = format!("CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'");
        self.run(
            "psql",
            &[
                "-h",
                &socket,
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &sql,
            ],
            None,
        )?;
        let _one_editor = HBA
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let hba = self.data_dir().join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba)?;
        std::fs::write(&hba, format!("local all {role} scram-sha-256\n{rules}"))?;
        self.run("pg_ctl", &["reload", "-D"], Some(&self.data_dir()))?;
        // The reload is a signal: wait (bounded) until the role is asked for its password.
        let no_password = [
            "-h", &socket, "-p", &port, "-U", role, "-d", "postgres", "-w", "-c", "SELECT 1",
        ];
        for _ in 0..100 {
            if self.run("psql", &no_password, None).is_err() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(PgError::Command {
            what: "pg_ctl reload".to_owned(),
            detail: format!("{role} still connects without a password after 5 s"),
        })
    }

    /// Starts the process that stops the cluster and removes its directory once this test
    /// process is gone. As the cluster's user, `kill -0` on a root test process fails for want
    /// of permission, so `/proc` is asked too.
    fn watch_parent(&self) -> Result<(), PgError> {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null || [ -e /proc/{pid} ]; do sleep 1; done; {stop} stop -m immediate -D '{data}' >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            stop = self.bin.join("pg_ctl").display(),
            data = self.data_dir().display(),
            dir = self.dir.display(),
        );
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--", "sh", "-c", &script]);
                cmd
            }
            None => {
                let mut cmd = Command::new("sh");
                cmd.args(["-c", &script]);
                cmd
            }
        };
        cmd.current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        Ok(())
    }
}

/// The directory of `initdb` and `pg_ctl`: `OXI_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), else `PATH`.
fn find_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("OXI_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").is_file().then_some(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    })
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A fresh directory for the cluster, owned by `user` when there is one.
fn make_dir(user: Option<&str>) -> Result<PathBuf, PgError> {
    let dir = std::env::temp_dir().join(format!(
        "oxi-pg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir(&dir)?;
    if let Some(user) = user {
        let id = |flag: &str| -> Result<u32, PgError> {
            let out = Command::new("id").args([flag, user]).output()?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .map_err(|_| PgError::Command {
                    what: format!("id {flag} {user}"),
                    detail: format!(
                        "no user {user} to run PostgreSQL as (it refuses root): {ENABLE_HINT}"
                    ),
                })
        };
        std::os::unix::fs::chown(&dir, Some(id("-u")?), Some(id("-g")?))?;
    }
    Ok(dir)
}
