//! A release-mode world: a git repository whose `origin` is a local bare repository, the fake
//! GitHub on 127.0.0.1 serving that bare repository, an `oxi.toml` in release mode pointing at
//! the fake, and `oxi` run against it as a user runs it.

use std::path::PathBuf;

use oxi::ledger::{Ledger, TaskRow};
use oxi_testkit::fake_github::FakeGithub;
use serde_json::Value;

use super::{OxiToml, Sandbox, Worker, git};

pub const TOKEN: &str = "ghp_faketokenfortests000000000000000000";
pub const REPO: &str = "acme/widgets";

/// What differs between worlds.
pub struct Setup<'a> {
    /// `roadmap.md`, if any.
    pub roadmap: Option<&'a str>,
    /// Appended to `[run]` (`mode = "release"` is set).
    pub run: &'a str,
    /// Appended to `[github]`.
    pub github: &'a str,
    /// More tables, appended to `oxi.toml` (e.g. `[sources.github_issues]`).
    pub tables: &'a str,
    /// The executor's fake-worker scenario.
    pub executor: &'a str,
    /// The critic's fake-worker scenario.
    pub critic: &'a str,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            roadmap: None,
            run: "",
            github: "",
            tables: "",
            executor: "edit",
            critic: "review:approve",
        }
    }
}

pub struct World {
    pub s: Sandbox,
    pub bare: PathBuf,
    _bare_dir: tempfile::TempDir,
    pub github: FakeGithub,
}

/// One `oxi` run.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout as JSON (the command ran with `--format json`).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

impl World {
    /// The world, with `origin/main` holding the setup commit. The tier-0 check is that
    /// `hello.txt` says hi (what the fake worker's `edit` scenario writes).
    pub async fn start(setup: Setup<'_>) -> World {
        let s = Sandbox::git_repo();
        let bare_dir = tempfile::tempdir().unwrap();
        let bare = bare_dir.path().join("origin.git");
        git(
            bare_dir.path(),
            &["init", "-q", "--bare", "-b", "main", "origin.git"],
        );
        if let Some(roadmap) = setup.roadmap {
            s.write("roadmap.md", roadmap);
        }
        s.write(".gitignore", ".oxi/\n");
        let github = FakeGithub::start(REPO, TOKEN, bare.clone()).await.unwrap();
        s.config(
            &OxiToml::new()
                .raw("[project]\nbase_branch = \"main\"\n")
                .raw(&format!("[run]\nmode = \"release\"\n{}\n", setup.run))
                .worker(Worker::fake("fake").scenario(setup.executor))
                .worker(Worker::fake("critic").scenario(setup.critic))
                .routing(&["fake"], &["critic"])
                .raw("[verify]\ntier0 = [{ name = \"says hi\", argv = [\"grep\", \"-qix\", \"hi\", \"hello.txt\"], timeout = \"30s\" }]\n")
                .raw(&format!(
                    "[github]\nrepo = \"{REPO}\"\napi_url = \"{}\"\ntoken_env = \"OXI_TEST_GH_TOKEN\"\nmax_rate_limit_wait = \"20s\"\nretry_backoff = \"50ms\"\n{}\n",
                    github.url(),
                    setup.github
                ))
                .raw(setup.tables),
        );
        git(s.path(), &["add", "-A"]);
        git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
        git(
            s.path(),
            &["remote", "add", "origin", bare.to_str().unwrap()],
        );
        git(s.path(), &["push", "-q", "origin", "main"]);
        World {
            s,
            bare,
            _bare_dir: bare_dir,
            github,
        }
    }

    /// Points `github.api_url` somewhere else than the fake (a proxy in front of it).
    pub fn set_api_url(&self, url: &str) {
        let config = self.s.read("oxi.toml").replace(&self.github.url(), url);
        self.s.write("oxi.toml", config);
        git(self.s.path(), &["commit", "-q", "-am", "api_url"]);
    }

    /// Runs `oxi` with the token in its variable and no other GitHub token around.
    pub async fn oxi(&self, args: &[&str]) -> Out {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_oxi"))
            .args(args)
            .current_dir(self.s.path())
            .env("NO_COLOR", "1")
            .env("USER", "tester")
            .env("OXI_TEST_GH_TOKEN", TOKEN)
            .env_remove("GITHUB_TOKEN")
            .env_remove("GH_TOKEN")
            .env_remove("OXI_RUN_MODE")
            .env_remove("OXI_CONFIG")
            .output()
            .await
            .unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `oxi tick --format json`, which must not fail as a whole; its report.
    pub async fn tick(&self) -> Value {
        let out = self.oxi(&["tick", "--format", "json"]).await;
        assert!(
            out.code == 0 || out.code == oxi::exit::TASK_FAILURES,
            "tick exit {}:\n{}\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        out.json()
    }

    pub fn ledger(&self) -> Ledger {
        Ledger::open_existing(&self.s.file(".oxi/ledger.db")).unwrap()
    }

    pub fn task(&self, id: &str) -> TaskRow {
        self.ledger()
            .read()
            .task(id)
            .unwrap()
            .unwrap_or_else(|| panic!("no task {id}"))
    }

    /// The data of every event of `kind`, oldest first.
    pub fn events(&self, kind: &str) -> Vec<Value> {
        let mut ledger = self.ledger();
        let conn = ledger.raw_connection();
        let mut stmt = conn
            .prepare("SELECT data FROM events WHERE kind = ?1 ORDER BY id")
            .unwrap();
        stmt.query_map([kind], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
            .collect()
    }
}
