//! A small builder for tests: a temporary directory (optionally a git repository with a bare
//! `origin`), files in it, and the real `oxi` binary run inside it.

pub mod chaos;
pub mod config;
pub mod live;
pub mod release_world;

pub use config::{FAKE, OxiToml, Worker};

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, Once};

pub struct Sandbox {
    dir: tempfile::TempDir,
}

/// What one `oxi` invocation did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "oxi failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts failure with `code` and returns stderr.
    #[track_caller]
    pub fn fails_with(&self, code: i32) -> &str {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        &self.stderr
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// What a test passes to an `oxi` it starts with a cleared environment, besides its own
/// variables: `LLVM_PROFILE_FILE` when `scripts/coverage` measures the run, so the instrumented
/// binary adds its counts to the measurement instead of writing a `default_*.profraw` into the
/// repository it works in.
pub fn kept_env() -> impl Iterator<Item = (&'static str, std::ffi::OsString)> {
    ["LLVM_PROFILE_FILE"]
        .into_iter()
        .filter_map(|name| std::env::var_os(name).map(|value| (name, value)))
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "oxi-test")
        .env("GIT_AUTHOR_EMAIL", "oxi-test@example.invalid")
        .env("GIT_COMMITTER_NAME", "oxi-test")
        .env("GIT_COMMITTER_EMAIL", "oxi-test@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Sandbox {
    /// An empty temporary directory.
    pub fn empty() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A git repository on `main` with one commit.
    pub fn git_repo() -> Self {
        let sandbox = Self::empty();
        let root = sandbox.path().to_path_buf();
        git(&root, &["init", "-q", "-b", "main"]);
        sandbox.write("README.md", "# sample\n");
        git(&root, &["add", "-A"]);
        git(&root, &["commit", "-q", "-m", "initial"]);
        sandbox
    }

    /// A git repository already set up with `oxi init` and `roadmap`.
    pub fn initialised(roadmap: &str) -> Self {
        let sandbox = Self::git_repo();
        sandbox.oxi(&["init"]).ok();
        sandbox.write("roadmap.md", roadmap);
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the directory after the test (for looking into a failure) and returns its path.
    pub fn keep(self) -> PathBuf {
        self.dir.keep()
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let path = self.file(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, contents).unwrap();
    }

    /// Writes `oxi.toml` (see [`OxiToml`]).
    pub fn config(&self, toml: &OxiToml) {
        toml.write_in(self.path());
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.file(rel)).unwrap()
    }

    /// Runs the real `oxi` binary in the sandbox with a clean, colourless environment.
    pub fn oxi(&self, args: &[&str]) -> Run {
        self.oxi_env(args, &[])
    }

    pub fn oxi_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_oxi"));
        command
            .args(args)
            .current_dir(self.path())
            .env_remove("OXI_CONFIG")
            .env_remove("OXI_RUN_MODE")
            .env_remove("OXI_LOG")
            .env("NO_COLOR", "1")
            .env("USER", "tester");
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().expect("oxi binary runs");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A tmpfs mounted over `dir` (created if missing), unmounted on drop: a small, fillable
/// filesystem for full-disk tests. `None` where mounting is not allowed (it needs root; CI
/// runs as root).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "oxi-test",
            ])
            .arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            .then(|| Self(dir.to_path_buf()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A fixture file's path.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

pub fn fixture_text(rel: &str) -> String {
    std::fs::read_to_string(fixture(rel)).unwrap()
}

/// One skipped test: its group (for the count), what it is, its name, why, and how to run it.
struct Skipped {
    group: &'static str,
    what: String,
    test: String,
    detail: String,
    hint: &'static str,
}

static SKIPPED: Mutex<Vec<Skipped>> = Mutex::new(Vec::new());

/// Records that the running test skips itself, to be reported where a plain `cargo test`
/// shows it. libtest captures `print!`/`eprint!` of a passing test, so a skip printed that way
/// is seen only under `--nocapture`; instead, when the test binary exits (after libtest's
/// `test result:` line) the skips are written to the stderr descriptor, which libtest does not
/// capture: per group a count, the distinct reasons and how to run them, then each test.
pub fn skip(group: &'static str, what: &str, detail: &str, hint: &'static str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    SKIPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Skipped {
            group,
            what: what.to_owned(),
            test,
            detail: detail.to_owned(),
            hint,
        });
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        #[allow(unsafe_code)]
        // SAFETY: `atexit` only stores the pointer of a function with the C ABI that takes
        // nothing and returns nothing, as it requires; the function lives for the program.
        unsafe {
            atexit(report_skips);
        }
    });
}

#[allow(unsafe_code)]
unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

/// Runs when the test binary exits, after libtest's summary; one write, so it is not
/// interleaved with anything else.
extern "C" fn report_skips() {
    let mut skipped = SKIPPED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    skipped.sort_by(|a, b| (a.group, &a.test).cmp(&(b.group, &b.test)));
    let mut groups: Vec<&'static str> = skipped.iter().map(|s| s.group).collect();
    groups.dedup();
    let mut text = String::new();
    for group in groups {
        let of_group: Vec<&Skipped> = skipped.iter().filter(|s| s.group == group).collect();
        let mut reasons: Vec<&str> = of_group.iter().map(|s| s.detail.as_str()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        text.push_str(&format!(
            "\nnote: {} {group} test(s) skipped: {}\n  to run them: {}\n",
            of_group.len(),
            reasons.join("; "),
            of_group[0].hint
        ));
        for s in of_group {
            text.push_str(&format!("  SKIPPED {} {}\n", s.what, s.test));
        }
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// A plain roadmap task for ledger tests: its id, its place in the roadmap, and the rest
/// filled so that tasks differ only where they must.
pub fn plain_task(id: &str, order: u32) -> oxi::ledger::TaskSpec {
    oxi::ledger::TaskSpec {
        id: id.to_owned(),
        priority_tier: 1,
        title: format!("title of {id}"),
        subtitle: None,
        body: "body".into(),
        section: None,
        milestone: None,
        format: "oxi".into(),
        depends_on: vec![],
        file_hints: vec![],
        source_line: 10 + order,
        roadmap_order: order,
        content_hash: format!("hash-{id}"),
        roadmap_done: false,
    }
}
