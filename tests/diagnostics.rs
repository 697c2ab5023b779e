//! Honest diagnostics (issue 13, items 11–13): authentication failures of the live CLIs are a
//! class of their own that blocks the worker until `oxi doctor` passes; doctor checks what a
//! tick needs and says "dispatch blocked" exactly when a tick would refuse; exit codes follow
//! docs/cli.md; a cause is printed once; operator actions name a user; the scheduling recipes
//! run as printed in an empty environment.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use oxi_testkit::mock_model::{MockModelServer, Script, Step};
use serde_json::Value;

use crate::support::live::{self, Cli, Scratch};
use crate::support::{OxiToml, Run, Sandbox, Worker, git};

const OXI: &str = env!("CARGO_BIN_EXE_oxi");
const FAKE: &str = env!("CARGO_BIN_EXE_oxi-fake-worker");

// ---------------------------------------------------------------------------------------------
// Item 11: authentication failures, live.

/// oxi.toml for one live worker `live` against `server` (as tests/run_live.rs writes it).
fn live_config(scratch: &Scratch, cli: Cli, bin: &Path, server: &MockModelServer) {
    OxiToml::new()
        .project()
        .worker(live::worker(cli, "live", bin, server))
        .routing(&["live"], &["live"])
        .write_in(&scratch.repo);
    std::fs::write(
        scratch.repo.join("roadmap.md"),
        "# Roadmap\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n",
    )
    .unwrap();
    std::fs::write(scratch.repo.join(".gitignore"), ".oxi/\n").unwrap();
    git(&scratch.repo, &["add", "-A"]);
    git(&scratch.repo, &["commit", "-q", "-m", "oxi setup"]);
}

/// `oxi run --format json` against the live worker, and its report.
async fn oxi_run_json(scratch: &Scratch, env: &[(&str, &str)]) -> (Run, Value) {
    let run = oxi_async(scratch, &["run", "--format", "json", "--", "say hi"], env).await;
    let report = run.json();
    (run, report)
}

/// Runs `oxi` off the async runtime (the mock server must keep answering meanwhile).
async fn oxi_async(scratch: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let scratch_repo = scratch.repo.clone();
    let home = scratch.home.clone();
    let codex_home = scratch.codex_home.clone();
    tokio::task::spawn_blocking(move || {
        let paths = ScratchPaths {
            repo: scratch_repo,
            home,
            codex_home,
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        paths.oxi(&args, &env)
    })
    .await
    .unwrap()
}

struct ScratchPaths {
    repo: PathBuf,
    home: PathBuf,
    codex_home: PathBuf,
}

impl ScratchPaths {
    fn oxi(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = Command::new(OXI);
        command
            .args(args)
            .current_dir(&self.repo)
            .env_clear()
            .envs(crate::support::kept_env())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("LANG", "C.UTF-8")
            .env("NO_COLOR", "1")
            .env("USER", "tester")
            .env("CODEX_HOME", &self.codex_home);
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn assert_auth_failed(run: &Run, report: &Value, quote: &str) {
    assert_eq!(run.code, 1, "{report:#}\n{}", run.stderr);
    assert_eq!(report["classification"], "auth_failed", "{report:#}");
    assert_eq!(report["retryable"], false, "{report:#}");
    let detail = report["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(quote),
        "detail must quote the CLI ({quote:?}): {detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_not_logged_in_is_auth_failed_not_transient() {
    let Some(bin) = live::require(Cli::Claude) else {
        return;
    };
    let scratch = Scratch::new();
    let server = MockModelServer::start(Script::new()).await.unwrap();
    live_config(&scratch, Cli::Claude, &bin, &server);
    // No ANTHROPIC_API_KEY and an empty HOME: the pinned claude is not logged in.
    let (run, report) = oxi_run_json(&scratch, &[]).await;
    assert_auth_failed(&run, &report, "Not logged in · Please run /login");
    assert!(server.model_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_401_and_403_are_auth_failed() {
    let Some(bin) = live::require(Cli::Claude) else {
        return;
    };
    for (code, quote) in [
        (401, "Invalid API key"),
        (403, "Failed to authenticate. API Error: 403"),
    ] {
        let scratch = Scratch::new();
        let server = MockModelServer::start(Script::new().fallback(Step::status(code, None)))
            .await
            .unwrap();
        live_config(&scratch, Cli::Claude, &bin, &server);
        let (run, report) = oxi_run_json(&scratch, &[("ANTHROPIC_API_KEY", "sk-bad")]).await;
        assert_auth_failed(&run, &report, quote);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_401_403_and_missing_key_are_auth_failed() {
    let Some(bin) = live::require(Cli::Codex) else {
        return;
    };
    for (code, quote) in [
        (401, "unexpected status 401 Unauthorized"),
        (403, "unexpected status 403 Forbidden"),
    ] {
        let scratch = Scratch::new();
        let server = MockModelServer::start(Script::new().fallback(Step::status(code, None)))
            .await
            .unwrap();
        live_config(&scratch, Cli::Codex, &bin, &server);
        let (run, report) = oxi_run_json(&scratch, &[("MOCK_API_KEY", "sk-bad")]).await;
        assert_auth_failed(&run, &report, quote);
    }
    let scratch = Scratch::new();
    let server = MockModelServer::start(Script::new()).await.unwrap();
    live_config(&scratch, Cli::Codex, &bin, &server);
    let (run, report) = oxi_run_json(&scratch, &[]).await;
    assert_auth_failed(
        &run,
        &report,
        "Missing environment variable: `MOCK_API_KEY`",
    );
}

/// The `data` of every ledger event of `kind`, oldest first.
fn events_of(scratch: &Scratch, kind: &str) -> Vec<Value> {
    let conn = rusqlite::Connection::open(scratch.repo.join(".oxi/ledger.db")).unwrap();
    let mut statement = conn
        .prepare("SELECT data FROM events WHERE kind = ?1 ORDER BY id")
        .unwrap();
    statement
        .query_map([kind], |row| row.get::<_, String>(0))
        .unwrap()
        .map(|data| serde_json::from_str(&data.unwrap()).unwrap())
        .collect()
}

/// The whole loop with the live claude not logged in: the run is `auth_failed` (quoting the
/// CLI), the task is not retried, the worker is blocked in the ledger, the next tick refuses
/// with the reason, `oxi plan` shows it, doctor fails until claude can authenticate, and a
/// passing doctor clears the block so the next tick dispatches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_worker_is_blocked_until_doctor_passes() {
    let Some(bin) = live::require(Cli::Claude) else {
        return;
    };
    let scratch = Scratch::new();
    let server = MockModelServer::start(Script::new()).await.unwrap();
    live_config(&scratch, Cli::Claude, &bin, &server);

    let first = oxi_async(&scratch, &["tick", "--format", "json"], &[]).await;
    let report = first.json();
    assert_eq!(
        report["jobs"][0]["classification"], "auth_failed",
        "{report:#}\n{}",
        first.stderr
    );
    assert!(
        report["jobs"][0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("Not logged in · Please run /login"),
        "{report:#}"
    );
    assert_eq!(report["jobs"][0]["state"], "queued", "{report:#}");
    let blocked = events_of(&scratch, "worker_blocked");
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(blocked[0]["worker"], "live");

    // The next tick does not dispatch to it, and says why.
    let second = oxi_async(&scratch, &["tick"], &[]).await;
    assert_eq!(second.code, 8, "{}\n{}", second.stdout, second.stderr);
    let said = format!("{}{}", second.stdout, second.stderr);
    assert!(said.contains("worker live is blocked"), "{said}");
    assert!(said.contains("Not logged in"), "{said}");
    assert!(said.contains("oxi doctor"), "{said}");

    let plan = oxi_async(&scratch, &["plan", "--dry-run", "--format", "json"], &[]).await;
    let held = plan.json()[0]["held_reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(held.contains("worker live is blocked"), "{held}");

    // Doctor fails while claude cannot authenticate, and says dispatch is blocked.
    let doctor = oxi_async(&scratch, &["doctor", "--format", "json"], &[]).await;
    assert_eq!(doctor.code, 1, "{}", doctor.stdout);
    let checks = doctor.json()["checks"].as_array().unwrap().clone();
    let find = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks:#?}"))
            .clone()
    };
    assert_eq!(find("worker live login")["status"], "fail", "{checks:#?}");
    let dispatch = find("dispatch");
    assert_eq!(dispatch["status"], "fail");
    assert!(
        dispatch["detail"]
            .as_str()
            .unwrap()
            .starts_with("dispatch blocked"),
        "{dispatch}"
    );
    assert_eq!(events_of(&scratch, "worker_unblocked").len(), 0);

    // With a key claude is logged in: doctor passes the worker and clears the block.
    let key = [("ANTHROPIC_API_KEY", "sk-test-live-key")];
    let doctor = oxi_async(&scratch, &["doctor", "--format", "json"], &key).await;
    let checks = doctor.json()["checks"].as_array().unwrap().clone();
    let login = checks
        .iter()
        .find(|c| c["name"] == "worker live login")
        .unwrap();
    assert_eq!(login["status"], "ok", "{checks:#?}");
    let dispatch = checks.iter().find(|c| c["name"] == "dispatch").unwrap();
    assert_eq!(dispatch["status"], "ok", "{checks:#?}");
    assert_eq!(events_of(&scratch, "worker_unblocked").len(), 1);

    let third = oxi_async(&scratch, &["tick", "--format", "json"], &key).await;
    let report = third.json();
    assert_eq!(
        report["jobs"][0]["classification"], "success",
        "{report:#}\n{}",
        third.stderr
    );
    assert!(!server.model_requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Item 11: doctor.

/// A repository whose executors are the fake worker (as `claude` and `codex`), `env` lists as
/// the template writes them, and a reviewer chain `reviewer`.
fn fake_repo(roadmap: &str, reviewer: &[&str]) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", roadmap);
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .project()
            .worker(
                Worker::fake("claude")
                    .env("ANTHROPIC_API_KEY")
                    .set_env("OXI_FAKE_AUTH_STATUS", "none"),
            )
            .worker(
                Worker::fake_codex("codex")
                    .env("OPENAI_API_KEY")
                    .env("CODEX_HOME"),
            )
            .worker(Worker::codex("gone", "/nonexistent/codex").model("gpt-5.5"))
            .routing(&["claude", "codex"], reviewer)
            .raw("[rates.\"gpt-5.5\"]\ninput_per_mtok = 1.25\noutput_per_mtok = 10.0\n"),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "setup"]);
    s
}

fn doctor_json(s: &Sandbox, env: &[(&str, &str)]) -> (i32, Vec<Value>) {
    let run = s.oxi_env(&["doctor", "--format", "json"], env);
    let json = run.json();
    (run.code, json["checks"].as_array().unwrap().clone())
}

fn check_named<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?}: {checks:#?}"))
}

const ONE_TASK: &str = "# Roadmap\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt`.\n";

/// A Claude login in `~/.claude/.credentials.json` (where the pinned claude keeps it on Linux)
/// stands in for `ANTHROPIC_API_KEY`, and `CODEX_HOME` may be unset (codex uses ~/.codex).
#[test]
fn doctor_accepts_a_claude_login_and_an_unset_codex_home() {
    let s = fake_repo(ONE_TASK, &["claude"]);
    let home = s.file("home");
    std::fs::create_dir_all(home.join(".claude")).unwrap();
    std::fs::write(
        home.join(".claude/.credentials.json"),
        r#"{"claudeAiOauth":{"accessToken":"x","refreshToken":"y","expiresAt":4102444800000}}"#,
    )
    .unwrap();
    let home = home.display().to_string();
    let run = s.oxi_env(
        &["doctor", "--format", "json"],
        &[
            ("HOME", &home),
            ("OPENAI_API_KEY", "sk-test"),
            ("ANTHROPIC_API_KEY", ""),
        ],
    );
    let checks = run.json()["checks"].as_array().unwrap().clone();
    for name in ["worker claude environment", "worker codex environment"] {
        if let Some(c) = checks.iter().find(|c| c["name"] == name) {
            assert_ne!(c["status"], "fail", "{c}");
        }
    }
    let login = check_named(&checks, "worker claude login");
    assert_eq!(login["status"], "ok", "{login}");
    assert_eq!(run.code, 0, "{:#?}", checks);
}

/// A reviewer chain that cannot start fails doctor but does not block a tick; a roadmap that
/// does not parse fails doctor naming file:line and does block a tick — and the dispatch line
/// says "dispatch blocked" exactly then.
#[test]
fn doctor_checks_reviewer_chain_and_roadmap_and_says_when_dispatch_is_blocked() {
    let env = [
        ("ANTHROPIC_API_KEY", "sk-test"),
        ("OPENAI_API_KEY", "sk-test"),
    ];
    let s = fake_repo(ONE_TASK, &["gone"]);
    let (code, checks) = doctor_json(&s, &env);
    assert_eq!(code, 1);
    assert_eq!(check_named(&checks, "reviewer chain")["status"], "fail");
    assert_eq!(check_named(&checks, "roadmap")["status"], "ok");
    let dispatch = check_named(&checks, "dispatch");
    assert_eq!(dispatch["status"], "ok", "{dispatch}");
    assert!(!dispatch["detail"].as_str().unwrap().contains("blocked"));

    let s = fake_repo(
        "# Roadmap\n\n**T0-1 · One**\nx\n\n**T0-1 · Again**\ny\n",
        &["claude"],
    );
    let (code, checks) = doctor_json(&s, &env);
    assert_eq!(code, 1);
    let roadmap = check_named(&checks, "roadmap");
    assert_eq!(roadmap["status"], "fail");
    assert!(
        roadmap["detail"]
            .as_str()
            .unwrap()
            .contains("roadmap.md:6:"),
        "{roadmap}"
    );
    let dispatch = check_named(&checks, "dispatch");
    assert_eq!(dispatch["status"], "fail");
    let detail = dispatch["detail"].as_str().unwrap();
    assert!(detail.starts_with("dispatch blocked"), "{detail}");
    assert!(detail.contains("roadmap"), "{detail}");
    // And a tick does refuse it (exit 5: the roadmap).
    s.oxi_env(&["tick"], &env).fails_with(5);
}

// ---------------------------------------------------------------------------------------------
// Item 12: exit codes, causes, operator names.

fn bare_repo_with(roadmap: &str) -> Sandbox {
    let s = Sandbox::initialised(roadmap);
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "setup"]);
    s
}

#[test]
fn a_malformed_roadmap_exits_5_from_every_command_that_reads_it() {
    let s = bare_repo_with("# Roadmap\n\n**T0-1 · One**\nx\n\n**T0-1 · Again**\ny\n");
    for args in [
        &["ingest"][..],
        &["tick"],
        &["saturate", "--until-empty"],
        &["roadmap", "prune"],
    ] {
        let stderr = s.oxi(args).fails_with(5).to_owned();
        assert!(stderr.contains("roadmap.md:6:"), "{args:?}: {stderr}");
    }
}

#[test]
fn no_such_task_or_run_is_a_usage_error_not_the_ledgers() {
    let s = bare_repo_with(ONE_TASK);
    s.oxi(&["ingest"]).ok();
    for args in [
        &["retry", "T9-9"][..],
        &["approve", "T9-9"],
        &["cancel", "T9-9"],
        &["show", "T9-9"],
        &["logs", "T9-9"],
    ] {
        let stderr = s.oxi(args).fails_with(2).to_owned();
        assert!(stderr.contains("T9-9"), "{args:?}: {stderr}");
    }
    s.oxi(&["report", "--since", "3x"]).fails_with(2);
}

#[test]
fn a_cause_is_printed_once() {
    let s = bare_repo_with(ONE_TASK);
    let stderr = s
        .oxi(&["ingest", "--roadmap", "missing.md"])
        .fails_with(5)
        .to_owned();
    assert_eq!(
        stderr.matches("(os error 2)").count(),
        1,
        "the cause is repeated: {stderr}"
    );
    assert!(stderr.contains("missing.md"), "{stderr}");
}

/// An I/O error names the path it is about (it said only "No such file or directory").
#[test]
fn a_demo_directory_that_cannot_be_made_is_named() {
    let s = Sandbox::empty();
    let stderr = s
        .oxi(&["demo", "--dir", "/proc/oxi-demo-here"])
        .fails_with(1)
        .to_owned();
    assert!(stderr.contains("/proc/oxi-demo-here"), "{stderr}");
    assert_eq!(stderr.matches("(os error").count(), 1, "{stderr}");
}

#[test]
fn operator_actions_name_a_user_without_user_or_logname() {
    let s = bare_repo_with(ONE_TASK);
    let run = Command::new(OXI)
        .args(["pause", "--reason", "lunch"])
        .current_dir(s.path())
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let whoami = Command::new("id").arg("-un").output().unwrap();
    let name = String::from_utf8_lossy(&whoami.stdout).trim().to_owned();
    let status = s.oxi(&["status", "--format", "json"]).json();
    assert_eq!(
        status["killswitch"]["by"],
        format!("operator:{name}"),
        "{status:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 13: the scheduling recipes, run as printed.

/// A repository whose executor is the fake worker under the name `claude`, in a directory of
/// its own that a minimal PATH does not include.
fn scheduled_repo() -> (Sandbox, PathBuf) {
    let s = Sandbox::git_repo();
    let bin = s.file("tools/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(FAKE, bin.join("claude")).unwrap();
    s.write("roadmap.md", ONE_TASK);
    s.write(".gitignore", ".oxi/\ntools/\nhome/\n");
    s.config(
        &OxiToml::new()
            .project()
            .worker(Worker::claude("claude", "claude").model("claude-sonnet-4-5"))
            .routing(&["claude"], &["claude"]),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "setup"]);
    let home = s.file("home");
    std::fs::create_dir_all(&home).unwrap();
    (s, home)
}

fn print_schedule(s: &Sandbox, home: &Path, kind: &str) -> String {
    let path = format!(
        "{}:{}",
        s.file("tools/bin").display(),
        std::env::var("PATH").unwrap()
    );
    let home = home.display().to_string();
    s.oxi_env(
        &["init", "--schedule", kind],
        &[("HOME", &home), ("PATH", &path)],
    )
    .ok()
    .to_owned()
}

/// The command part of the crontab line (after the five schedule fields).
fn cron_command(printed: &str) -> String {
    let line = printed
        .lines()
        .find(|l| l.starts_with("*/15 "))
        .unwrap_or_else(|| panic!("no crontab line in:\n{printed}"));
    // cron turns `\%` into `%` before it hands the line to sh.
    line.splitn(6, ' ').nth(5).unwrap().replace("\\%", "%")
}

/// Runs `command` as cron does: `sh -c` with an almost empty environment.
fn as_cron(command: &str, home: &Path) -> std::process::Output {
    Command::new("env")
        .arg("-i")
        .arg(format!("HOME={}", home.display()))
        .arg("LOGNAME=tester")
        .arg("SHELL=/bin/sh")
        .arg("PATH=/usr/bin:/bin")
        .args(["sh", "-c", command])
        .output()
        .unwrap()
}

#[test]
fn the_cron_line_runs_a_tick_as_printed_in_an_empty_environment() {
    let (s, home) = scheduled_repo();
    let printed = print_schedule(&s, &home, "cron");
    let env_file = home.join(".config/oxi/env");
    let meta = std::fs::metadata(&env_file)
        .unwrap_or_else(|e| panic!("{} not created: {e}\n{printed}", env_file.display()));
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        text.lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#')),
        "{text}"
    );
    assert!(
        printed.contains(&env_file.display().to_string()),
        "{printed}"
    );

    let out = as_cron(&cron_command(&printed), &home);
    let log = std::fs::read_to_string(s.file(".oxi/tick.log")).unwrap_or_default();
    assert!(out.status.success(), "{out:?}\ntick.log:\n{log}");
    // The worker was found on the PATH the line sets, and did the work.
    let ledger = oxi::ledger::Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let runs = ledger.read().runs_for_task("T0-1").unwrap();
    let executor = runs.iter().find(|r| r.role == "executor");
    assert_eq!(
        executor.and_then(|r| r.classification.as_deref()),
        Some("success"),
        "tick.log:\n{log}"
    );
}

#[test]
fn the_cron_line_says_so_when_the_env_file_is_missing() {
    let (s, home) = scheduled_repo();
    let printed = print_schedule(&s, &home, "cron");
    let env_file = home.join(".config/oxi/env");
    let _ = std::fs::remove_file(&env_file);
    let out = as_cron(&cron_command(&printed), &home);
    assert!(!out.status.success(), "{out:?}");
    let log = std::fs::read_to_string(s.file(".oxi/tick.log")).unwrap_or_default();
    assert!(
        log.contains(&env_file.display().to_string()) && log.contains("oxi init --schedule"),
        "tick.log must name the missing file and the fix:\n{log}\n{out:?}"
    );
}

#[test]
fn the_launchd_plist_is_valid_xml_with_a_path_that_finds_the_workers() {
    let (s, home) = scheduled_repo();
    let printed = print_schedule(&s, &home, "launchd");
    let xml = printed
        .split_once("<?xml")
        .map(|(_, rest)| format!("<?xml{rest}"))
        .unwrap_or_else(|| panic!("no plist in:\n{printed}"));
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(&xml, options)
        .unwrap_or_else(|e| panic!("the plist is not XML ({e}):\n{xml}"));
    assert_eq!(doc.root_element().tag_name().name(), "plist");
    let path_key = doc
        .descendants()
        .find(|n| n.has_tag_name("key") && n.text() == Some("PATH"))
        .expect("a PATH key");
    let value = path_key
        .next_sibling_element()
        .and_then(|n| n.text())
        .unwrap_or_default()
        .to_owned();
    let dirs: Vec<&str> = value.split(':').collect();
    for dir in ["/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin"] {
        assert!(dirs.contains(&dir), "{dir} missing from {value}");
    }
    let tools = s.file("tools/bin").canonicalize().unwrap();
    assert!(
        dirs.iter()
            .any(|d| Path::new(d).canonicalize().ok().as_deref() == Some(&*tools)),
        "the worker's directory {} is missing from {value}",
        tools.display()
    );
}
