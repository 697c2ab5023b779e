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
    /// `run.mode` (`release` unless a test compares with `fast`).
    pub mode: &'a str,
    /// Appended to `[run]` (after `mode`).
    pub run: &'a str,
    /// Appended to `[github]`.
    pub github: &'a str,
    /// Appended to `[routing]` (after its `executor` and `reviewer` chains).
    pub routing: &'a str,
    /// More tables, appended to `oxi.toml` (e.g. `[sources.github_issues]`).
    pub tables: &'a str,
    /// The executor's fake-worker scenario.
    pub executor: &'a str,
    /// The critic's fake-worker scenario.
    pub critic: &'a str,
    /// The reviewer chain's one worker: `critic` (the default) or `fake`, the executor itself
    /// (then no critic worker is configured).
    pub reviewer: &'a str,
    /// The fake serves GitHub Enterprise Server's paths (`/api/v3`, `/api/graphql`).
    pub enterprise: bool,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            roadmap: None,
            mode: "release",
            run: "",
            github: "",
            routing: "",
            tables: "",
            executor: "edit",
            critic: "review:approve",
            reviewer: "critic",
            enterprise: false,
        }
    }
}

pub struct World {
    pub s: Sandbox,
    pub bare: PathBuf,
    _bare_dir: tempfile::TempDir,
    pub github: FakeGithub,
}

/// One `oxi tick --format json`, whatever its exit code.
pub struct Tick {
    pub code: i32,
    pub report: Value,
    pub stderr: String,
}

impl Tick {
    /// The release actions named `name`.
    pub fn actions(&self, name: &str) -> Vec<Value> {
        self.report["release"]
            .as_array()
            .map(|a| a.iter().filter(|x| x["action"] == name).cloned().collect())
            .unwrap_or_default()
    }
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
        let github = if setup.enterprise {
            FakeGithub::start_enterprise(REPO, TOKEN, bare.clone()).await
        } else {
            FakeGithub::start(REPO, TOKEN, bare.clone()).await
        }
        .unwrap();
        let mut toml = OxiToml::new()
            .raw("[project]\nbase_branch = \"main\"\n")
            .raw(&format!(
                "[run]\nmode = \"{}\"\n{}\n",
                setup.mode, setup.run
            ))
            .worker(Worker::fake("fake").scenario(setup.executor));
        if setup.reviewer == "critic" {
            toml = toml.worker(Worker::fake("critic").scenario(setup.critic));
        }
        s.config(
            &toml
                .routing(&["fake"], &[setup.reviewer])
                .raw(setup.routing)
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
        self.oxi_env(args, &[]).await
    }

    /// [`oxi`](Self::oxi) with more variables set.
    pub async fn oxi_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        self.oxi_as(TOKEN, args, env).await
    }

    /// [`oxi_env`](Self::oxi_env) with `token` in the token's variable instead of the one the
    /// fake accepts.
    pub async fn oxi_as(&self, token: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_oxi"))
            .args(args)
            .current_dir(self.s.path())
            .env("NO_COLOR", "1")
            .env("USER", "tester")
            .env("OXI_TEST_GH_TOKEN", token)
            .env_remove("GITHUB_TOKEN")
            .env_remove("GH_TOKEN")
            .env_remove("OXI_RUN_MODE")
            .env_remove("OXI_CONFIG")
            .envs(env.iter().copied())
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
        self.tick_env(&[]).await
    }

    /// [`tick`](Self::tick) with more variables set.
    pub async fn tick_env(&self, env: &[(&str, &str)]) -> Value {
        let out = self.oxi_env(&["tick", "--format", "json"], env).await;
        assert!(
            out.code == 0 || out.code == oxi::exit::TASK_FAILURES,
            "tick exit {}:\n{}\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        out.json()
    }

    /// `oxi tick --format json` with `token` and `env`, whatever its exit code; its output
    /// must be the JSON report.
    pub async fn tick_as(&self, token: &str, env: &[(&str, &str)]) -> Tick {
        let out = self.oxi_as(token, &["tick", "--format", "json"], env).await;
        let report = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "tick output is not JSON ({e}):\n{}\n{}",
                out.stdout, out.stderr
            )
        });
        Tick {
            code: out.code,
            report,
            stderr: out.stderr,
        }
    }

    /// [`tick_as`](Self::tick_as) with the fake's token.
    pub async fn tick_full(&self) -> Tick {
        self.tick_as(TOKEN, &[]).await
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

    /// The pull request number of task `id`.
    pub fn pr(&self, id: &str) -> u64 {
        self.task(id).pr_number.unwrap()
    }

    /// `oxi approve ID --merge`.
    pub fn approve_merge(&self, id: &str) {
        self.s.oxi(&["approve", id, "--merge"]).ok();
    }

    /// The commit `branch` points at on origin.
    pub fn head(&self, branch: &str) -> String {
        git(&self.bare, &["rev-parse", &format!("refs/heads/{branch}")])
    }

    /// Whether origin has `branch`.
    pub fn bare_has(&self, branch: &str) -> bool {
        std::process::Command::new("git")
            .args([
                "-C",
                self.bare.to_str().unwrap(),
                "rev-parse",
                "--verify",
                "--quiet",
            ])
            .arg(format!("refs/heads/{branch}"))
            .output()
            .unwrap()
            .status
            .success()
    }

    /// Someone else's branch on origin: `change` run in a clone of main (`["write", path,
    /// text]` writes a file, anything else is git's arguments), committed, pushed.
    pub fn push_branch(&self, branch: &str, change: &[&[&str]]) {
        let dir = tempfile::tempdir().unwrap();
        let clone = dir.path().join("c");
        git(
            dir.path(),
            &["clone", "-q", self.bare.to_str().unwrap(), "c"],
        );
        git(&clone, &["checkout", "-q", "-b", branch]);
        for args in change {
            if args[0] == "write" {
                std::fs::write(clone.join(args[1]), args[2]).unwrap();
            } else {
                git(&clone, args);
            }
        }
        git(&clone, &["add", "-A"]);
        git(&clone, &["commit", "-q", "-m", "someone's change"]);
        git(&clone, &["push", "-q", "origin", branch]);
    }

    /// How many requests the fake saw with `method` and a path ending in `path_end`.
    pub fn requests(&self, method: &str, path_end: &str) -> usize {
        self.github
            .requests()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(path_end))
            .count()
    }

    /// Replaces `from` (which must be there) with `to` in oxi.toml.
    pub fn set_toml(&self, from: &str, to: &str) {
        let config = self.s.read("oxi.toml");
        assert!(config.contains(from), "{config}");
        self.s.write("oxi.toml", config.replace(from, to));
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
