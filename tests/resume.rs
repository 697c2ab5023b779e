//! Retries that continue the conversation (docs/workers.md, "Retries resume the session"): a
//! retry after a stop that kept the work resumes the earlier run's session with the failure
//! appended and records `resumed_from`; a session that cannot be continued starts fresh with a
//! `session_fresh` event saying why.
//!
//! The first tests run the real `oxi` with `oxi-fake-worker` (offline); the live ones run the
//! pinned claude and codex against the project's mock model server, including a session id the
//! CLI does not know.

use std::path::Path;

use oxi::ledger::{Ledger, TaskState};
use oxi_testkit::mock_model::{MockModelServer, Script, Step};
use serde_json::Value;

use crate::support::live::{self, Cli, Scratch};
use crate::support::{OxiToml, Sandbox, Worker, git};

const TASK: &str = "**T0-1 · Write the notes**\nWrite the notes for new contributors: where to start, what a first pull request looks like, and whom to ask.\n";

/// A verification that is red the first time it runs and green after (a marker outside the
/// work tree remembers the first run).
fn red_once(marker: &Path) -> String {
    let script = format!(
        "if [ -f {m} ]; then exit 0; fi; touch {m}; echo 'notes are incomplete' >&2; exit 1",
        m = marker.display()
    );
    format!(
        "[verify]\ntier0 = [{{ name = \"notes\", argv = [\"sh\", \"-c\", {script:?}], timeout = \"30s\" }}]\n"
    )
}

/// A fast-mode repository whose executors are the fake workers `exec` and `other`.
fn repo(executor: &str, extra: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", format!("# Roadmap\n\n## Tier 0\n\n{TASK}"));
    s.write(".gitignore", ".oxi/\n");
    let marker = s.path().join(".oxi-red-once");
    write_config(&s, executor, &format!("{}{extra}", red_once(&marker)));
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

fn write_config(s: &Sandbox, executor: &str, extra: &str) {
    s.config(
        &OxiToml::new()
            .raw("[run]\nmode = \"fast\"\nmax_parallel_jobs = 1\n")
            .worker(Worker::fake("exec").scenario("edit"))
            .worker(Worker::fake("other").scenario("edit"))
            .worker(Worker::fake("reviewer").scenario("review:approve"))
            .routing(&[executor], &["reviewer"])
            .raw(extra),
    );
}

/// `(id, attempt, session_id, resumed_from, run_dir)` of the task's executor runs, in order.
type RunLine = (String, u32, Option<String>, Option<String>, String);

fn executor_runs(ledger_path: &Path, task: &str) -> Vec<RunLine> {
    let mut l = Ledger::open_existing(ledger_path).unwrap();
    let conn = l.raw_connection();
    let mut stmt = conn
        .prepare("SELECT id, attempt, session_id, resumed_from, run_dir FROM runs WHERE task_id = ?1 AND role = 'executor' ORDER BY started_at_ms, rowid")
        .unwrap();
    stmt.query_map([task], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn events(ledger_path: &Path, task: &str, kind: &str) -> Vec<Value> {
    let mut l = Ledger::open_existing(ledger_path).unwrap();
    let conn = l.raw_connection();
    let mut stmt = conn
        .prepare("SELECT data FROM events WHERE task_id = ?1 AND kind = ?2 ORDER BY id")
        .unwrap();
    stmt.query_map([task, kind], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
        .collect()
}

fn set_session(ledger_path: &Path, run_id: &str, session: Option<&str>) {
    let mut l = Ledger::open_existing(ledger_path).unwrap();
    l.raw_connection()
        .execute(
            "UPDATE runs SET session_id = ?2 WHERE id = ?1",
            rusqlite::params![run_id, session],
        )
        .unwrap();
}

fn argv_of(run_dir: &str) -> String {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{run_dir}/meta.json")).unwrap())
            .unwrap();
    meta["argv"].to_string()
}

fn prompt_of(run_dir: &str) -> String {
    std::fs::read_to_string(format!("{run_dir}/prompt.md")).unwrap()
}

fn state(ledger_path: &Path, task: &str) -> TaskState {
    Ledger::open_existing(ledger_path)
        .unwrap()
        .read()
        .task(task)
        .unwrap()
        .unwrap()
        .state
}

#[test]
fn a_retry_after_a_red_verification_resumes_the_session_with_the_failure() {
    let s = repo("exec", "");
    let ledger = s.file(".oxi/ledger.db");
    s.oxi(&["tick"]);
    assert_eq!(state(&ledger, "T0-1"), TaskState::Queued);
    s.oxi(&["tick"]);
    assert_eq!(state(&ledger, "T0-1"), TaskState::Delivered);
    let runs = executor_runs(&ledger, "T0-1");
    assert_eq!(runs.len(), 2, "{runs:?}");
    let (first, second) = (&runs[0], &runs[1]);
    let session = first.2.clone().expect("the first run recorded its session");
    assert_eq!(second.3.as_deref(), Some(first.0.as_str()));
    let argv = argv_of(&second.4);
    assert!(
        argv.contains(&format!(r#""--resume","{session}""#)),
        "{argv}"
    );
    assert!(!argv_of(&first.4).contains("--resume"));
    // The resumed session gets the failure, not the brief again.
    let prompt = prompt_of(&second.4);
    assert!(
        prompt.contains("continuing the same conversation"),
        "{prompt}"
    );
    assert!(prompt.contains("notes are incomplete"), "{prompt}");
    assert!(!prompt.contains("whom to ask"), "{prompt}");
    let resumed = events(&ledger, "T0-1", "session_resumed");
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(resumed[0]["from_run"], first.0.as_str());
    assert_eq!(resumed[0]["session_id"], session.as_str());
    assert_eq!(resumed[0]["after"], "verify_failed");
    assert!(events(&ledger, "T0-1", "session_fresh").is_empty());
    // `oxi show` tells it.
    let show = s.oxi(&["show", "T0-1"]).ok().to_owned();
    assert!(show.contains("session_resumed"), "{show}");
}

#[test]
fn a_retry_on_another_worker_starts_fresh_and_says_so() {
    let s = repo("exec", "");
    let ledger = s.file(".oxi/ledger.db");
    s.oxi(&["tick"]);
    let marker = s.path().join(".oxi-red-once");
    write_config(&s, "other", &red_once(&marker));
    s.oxi(&["tick"]);
    assert_eq!(state(&ledger, "T0-1"), TaskState::Delivered);
    let runs = executor_runs(&ledger, "T0-1");
    assert_eq!(runs[1].3, None);
    assert!(!argv_of(&runs[1].4).contains("--resume"));
    // The fresh run gets the whole brief and the failure.
    let prompt = prompt_of(&runs[1].4);
    assert!(prompt.contains("whom to ask") && prompt.contains("notes are incomplete"));
    let fresh = events(&ledger, "T0-1", "session_fresh");
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert_eq!(fresh[0]["reason"], "other_worker");
    assert_eq!(fresh[0]["from_run"], runs[0].0.as_str());
    assert!(fresh[0]["detail"].as_str().unwrap().contains("other"));
}

#[test]
fn no_recorded_session_or_resume_turned_off_starts_fresh_and_says_so() {
    for (extra, reason) in [("", "no_session"), ("", "disabled")] {
        let s = repo("exec", extra);
        let ledger = s.file(".oxi/ledger.db");
        s.oxi(&["tick"]);
        let first = executor_runs(&ledger, "T0-1")[0].0.clone();
        if reason == "no_session" {
            set_session(&ledger, &first, None);
        } else {
            let marker = s.path().join(".oxi-red-once");
            let toml = s
                .read("oxi.toml")
                .replace("[run]\n", "[run]\nresume_sessions = false\n");
            s.write("oxi.toml", toml);
            drop(marker);
        }
        s.oxi(&["tick"]);
        assert_eq!(state(&ledger, "T0-1"), TaskState::Delivered);
        let runs = executor_runs(&ledger, "T0-1");
        assert_eq!(runs[1].3, None);
        assert!(!argv_of(&runs[1].4).contains("--resume"));
        let fresh = events(&ledger, "T0-1", "session_fresh");
        assert_eq!(fresh.len(), 1, "{fresh:?}");
        assert_eq!(fresh[0]["reason"], reason);
    }
}

// ---- live CLIs against the mock model server ----

/// A scratch repository for a live CLI: the task, the red-once check, `max_attempts = 3`.
fn live_repo(scratch: &Scratch, cli: Cli, bin: &Path, server: &MockModelServer, extra: &str) {
    let marker = scratch.home.join(".oxi-red-once");
    OxiToml::new()
        .raw(&format!("[run]\nmode = \"fast\"\n{extra}"))
        .worker(live::worker(cli, "live", bin, server))
        .routing(&["live"], &["live"])
        .raw(&red_once(&marker))
        .write_in(&scratch.repo);
    std::fs::write(scratch.repo.join(".gitignore"), ".oxi/\noxi.toml\n").unwrap();
    std::fs::write(
        scratch.repo.join("roadmap.md"),
        format!("# Roadmap\n\n## Tier 0\n\n{TASK}"),
    )
    .unwrap();
    git(&scratch.repo, &["add", "-A"]);
    git(&scratch.repo, &["commit", "-q", "-m", "roadmap"]);
}

/// The two attempts' model turns: the first writes one file, the second another. The second
/// path is absolute for claude: a resumed session's history states the first attempt's
/// directory, which the mock would otherwise take (a model is told the new one by the resume
/// prompt).
fn two_attempts(cli: Cli, scratch: &Scratch) -> Script {
    let second = match cli {
        Cli::Claude => scratch
            .repo
            .join(".oxi/worktrees/t0-1-a2/notes/ask.md")
            .display()
            .to_string(),
        Cli::Codex => "notes/ask.md".to_owned(),
    };
    Script::steps([
        Step::write_file("notes/start.md", "# Start here\n"),
        Step::text("Wrote the start.\nOXI_RESULT {\"status\":\"done\"}"),
        Step::write_file(second, "# Whom to ask\n"),
        Step::text("Wrote the rest.\nOXI_RESULT {\"status\":\"done\"}"),
    ])
}

async fn tick(scratch: &Scratch) -> (Option<i32>, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_oxi"));
    command
        .args(["tick", "--format", "json"])
        .current_dir(&scratch.repo)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &scratch.home)
        .env("LANG", "C.UTF-8")
        .env("ANTHROPIC_API_KEY", "sk-test-live-key")
        .env("MOCK_API_KEY", "sk-test-live-key")
        .env("CODEX_HOME", &scratch.codex_home)
        .kill_on_drop(true);
    let output = tokio::time::timeout(live::HARD_TIMEOUT, command.output())
        .await
        .expect("tick finishes")
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// What a retried task cost with the live CLI: the second attempt's model requests and their
/// bytes, and the tokens oxi recorded for its runs.
#[derive(Debug)]
struct Retried {
    requests: usize,
    request_bytes: usize,
    input_tokens: u64,
    output_tokens: u64,
    /// The prompt oxi sent the retry's executor (the last run of attempt 2).
    prompt_bytes: u64,
}

/// Runs the two-attempt scenario; `corrupt` replaces the recorded session id between the
/// attempts (a session the CLI does not know).
async fn retried_task(cli: Cli, extra: &str, corrupt: bool) -> Option<(Scratch, Retried)> {
    let bin = live::require(cli)?;
    let scratch = Scratch::new();
    let server = MockModelServer::start(two_attempts(cli, &scratch))
        .await
        .unwrap();
    live_repo(&scratch, cli, &bin, &server, extra);
    let ledger = scratch.repo.join(".oxi/ledger.db");
    let (code, out) = tick(&scratch).await;
    assert_eq!(state(&ledger, "T0-1"), TaskState::Queued, "{code:?} {out}");
    let first_requests = server.model_requests().len();
    if corrupt {
        let first = executor_runs(&ledger, "T0-1")[0].0.clone();
        set_session(
            &ledger,
            &first,
            Some("0b7e57ed-0000-4000-8000-000000000000"),
        );
    }
    let (code, out) = tick(&scratch).await;
    assert_eq!(
        state(&ledger, "T0-1"),
        TaskState::Delivered,
        "{code:?} {out}"
    );
    let later = &server.model_requests()[first_requests..];
    let l = Ledger::open_existing(&ledger).unwrap();
    let runs = l.read().runs_for_task("T0-1").unwrap();
    let retried: Vec<_> = runs.iter().filter(|r| r.attempt == 2).collect();
    let measured = Retried {
        requests: later.len(),
        request_bytes: later
            .iter()
            .map(|r| serde_json::to_string(&r.body).unwrap().len())
            .sum(),
        input_tokens: retried.iter().map(|r| r.input_tokens).sum(),
        output_tokens: retried.iter().map(|r| r.output_tokens).sum(),
        prompt_bytes: retried
            .last()
            .and_then(|r| l.read().prompt_bytes(&r.id).unwrap())
            .unwrap_or(0),
    };
    server.shutdown().await.unwrap();
    Some((scratch, measured))
}

async fn live_retry_resumes(cli: Cli) {
    let Some((scratch, measured)) = retried_task(cli, "", false).await else {
        return;
    };
    let ledger = scratch.repo.join(".oxi/ledger.db");
    let runs = executor_runs(&ledger, "T0-1");
    assert_eq!(runs.len(), 2, "{runs:?}");
    let session = runs[0].2.clone().expect("the CLI's session id was read");
    assert_eq!(runs[1].3.as_deref(), Some(runs[0].0.as_str()));
    // The same session went on: claude keeps its session id, codex its thread id.
    assert_eq!(runs[1].2.as_deref(), Some(session.as_str()));
    let argv = argv_of(&runs[1].4);
    let flag = match cli {
        Cli::Claude => format!(r#""--resume","{session}""#),
        Cli::Codex => format!(r#""resume","{session}""#),
    };
    assert!(argv.contains(&flag), "{argv}");
    // Both files are on the branch; the resumed conversation carried the first attempt's
    // brief to the model although the retry's prompt did not.
    let l = Ledger::open_existing(&ledger).unwrap();
    let branch = l.read().task("T0-1").unwrap().unwrap().branch.unwrap();
    let tree = git(&scratch.repo, &["ls-tree", "-r", "--name-only", &branch]);
    let transcript =
        std::fs::read_to_string(format!("{}/transcript.md", runs[1].4)).unwrap_or_default();
    assert!(
        tree.contains("notes/start.md") && tree.contains("notes/ask.md"),
        "{tree}\n{transcript}"
    );
    assert!(!prompt_of(&runs[1].4).contains("whom to ask"));
    assert!(measured.requests >= 1, "{measured:?}");
    if cli == Cli::Claude {
        // claude's `total_cost_usd` after `--resume` is the session's: the resumed run is
        // charged only its own part, which equals the first run's (the same two turns).
        let costs: Vec<i64> = l
            .read()
            .runs_for_task("T0-1")
            .unwrap()
            .iter()
            .filter(|r| r.role == "executor")
            .map(|r| r.cost_microusd)
            .collect();
        assert!(
            costs[0] > 0 && (costs[0] - costs[1]).abs() <= 1,
            "{costs:?}"
        );
    }
    // Each run is charged its own part: the resumed run's tokens are one session's worth of
    // the mock's fixed usage per request, not the session's running total.
    assert_eq!(
        measured.input_tokens,
        measured.requests as u64 * if cli == Cli::Claude { 1500 } else { 1200 },
        "{measured:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_claude_retry_resumes_its_session() {
    live_retry_resumes(Cli::Claude).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_codex_retry_resumes_its_thread() {
    live_retry_resumes(Cli::Codex).await;
}

/// The recorded session id is one the CLI does not know: the CLI says so, the refused run is
/// followed by a fresh one with the whole brief, and `session_fresh` says why.
async fn live_unknown_session_starts_fresh(cli: Cli) {
    let Some((scratch, _)) = retried_task(cli, "", true).await else {
        return;
    };
    let ledger = scratch.repo.join(".oxi/ledger.db");
    let runs = executor_runs(&ledger, "T0-1");
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert_eq!(runs[1].1, 2);
    assert_eq!(runs[2].1, 2);
    assert_eq!(runs[1].3.as_deref(), Some(runs[0].0.as_str()));
    assert_eq!(runs[2].3, None);
    assert!(!argv_of(&runs[2].4).contains("0b7e57ed"));
    assert!(prompt_of(&runs[2].4).contains("whom to ask"));
    let fresh = events(&ledger, "T0-1", "session_fresh");
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert_eq!(fresh[0]["reason"], "unknown_session");
    let detail = fresh[0]["detail"].as_str().unwrap();
    let said = match cli {
        Cli::Claude => "No conversation found with session ID",
        Cli::Codex => "no rollout found for thread id",
    };
    assert!(detail.contains(said), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_claude_retry_with_an_unknown_session_starts_fresh() {
    live_unknown_session_starts_fresh(Cli::Claude).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_codex_retry_with_an_unknown_thread_starts_fresh() {
    live_unknown_session_starts_fresh(Cli::Codex).await;
}

/// The measurement behind docs/benchmarks.md ("Retries: resumed or fresh"): the same scripted
/// two-attempt task with `resume_sessions` on and off, per CLI. Prints the figures; asserts
/// only what the scenario fixes (no timing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_per_retried_task_with_and_without_resume() {
    for cli in [Cli::Claude, Cli::Codex] {
        let mut figures = Vec::new();
        for (label, extra) in [("resumed", ""), ("fresh", "resume_sessions = false\n")] {
            let Some((_scratch, m)) = retried_task(cli, extra, false).await else {
                return;
            };
            println!(
                "retried task, {cli:?}, {label}: prompt {} bytes, {} model request(s), {} request bytes, {} input / {} output tokens recorded",
                m.prompt_bytes, m.requests, m.request_bytes, m.input_tokens, m.output_tokens
            );
            figures.push(m);
        }
        assert_eq!(figures[0].requests, figures[1].requests);
        // The resumed session is sent the failure, not the brief again.
        assert!(
            figures[0].prompt_bytes < figures[1].prompt_bytes,
            "{figures:?}"
        );
    }
}
