//! `[triage]` through the binary against the mock model server: a task that fails for good
//! gets one gateway call whose summary lands on a `triage_summary` event, in `oxi show` and in
//! the `failed` notification, with every secret masked in what the server saw; a provider
//! that is down or a cap that refuses leaves a `triage_skipped` event and the task's ending
//! unchanged; with the flag off nothing of this happens (two ledgers compared).

use oxi::ledger::Ledger;
use oxi_testkit::mock_model::{ChatCost, MockModelServer, Script, Step};
use serde_json::Value;

use crate::support::{OxiToml, Run, Sandbox, Worker, git};

const KEY_VAR: &str = "OXI_TEST_GATEWAY_KEY";
const KEY: &str = "sk-test-gateway-key-0000";
/// A worker's variable: its value is a secret oxi holds, masked wherever it would leave.
const SECRET_VAR: &str = "OXI_TRIAGE_SECRET";
const SECRET: &str = "hunter2-triage-literal-secret";
/// A token-shaped secret that no variable holds: masked by its shape.
const SHAPED: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";

const SUMMARY: &str = "The verification command exits 1 after printing its log; fix the check.";

/// A repository whose only task is edited fine but fails verification for good (one attempt),
/// the verification log printing both secrets. `triage` is the `[triage]` table (or none).
fn sandbox(base_url: &str, triage: &str, extra: &str) -> Sandbox {
    sandbox_with(
        base_url,
        &format!("echo-env-edit:{SECRET_VAR}"),
        triage,
        extra,
    )
}

fn sandbox_with(base_url: &str, scenario: &str, triage: &str, extra: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    // The title carries both secrets: it reaches the request unmasked by anything but triage.
    s.write(
        "roadmap.md",
        format!("## Tier 0\n\n- [ ] T0-1 Add a greeting file for {SECRET} and {SHAPED}\n"),
    );
    s.write(".gitignore", ".oxi/\nnotes.jsonl\n");
    let verify = format!(
        "[verify]\ntier0 = [{{ name = \"leaky check\", argv = [\"sh\", \"-c\", \"echo token {SHAPED}; exit 1\"], timeout = \"30s\" }}]\n"
    );
    let provider = format!(
        "[gateway.providers.lite]\nkind = \"litellm\"\nbase_url = \"{base_url}\"\nkey_env = \"{KEY_VAR}\"\ntimeout = \"5s\"\nretries = 0\n"
    );
    s.config(
        &OxiToml::new()
            .project()
            .worker(
                Worker::fake("fake")
                    .env(SECRET_VAR)
                    .scenario(scenario),
            )
            .raw("[caps]\nmax_attempts = 1\n")
            .raw(&verify)
            .raw(&provider)
            .raw("[routing]\nexecutor = [\"fake\"]\nreviewer = []\ntriage = [\"lite:claude-haiku-4-5\"]\n")
            .raw(&format!(
                "[[notify.sinks]]\nkind = \"command\"\nargv = [\"sh\", \"-c\", \"cat >> \\\"$1\\\"\", \"sh\", \"{}\"]\nevents = [\"failed\"]\n",
                s.file("notes.jsonl").display()
            ))
            .raw(triage)
            .raw(extra),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

fn oxi(s: &Sandbox, args: &[&str]) -> Run {
    tokio::task::block_in_place(|| s.oxi_env(args, &[(KEY_VAR, KEY), (SECRET_VAR, SECRET)]))
}

fn tick(s: &Sandbox) -> Run {
    oxi(s, &["tick", "--format", "json"])
}

fn events(s: &Sandbox, kind: &str) -> Vec<Value> {
    let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let connection = ledger.raw_connection();
    let mut statement = connection
        .prepare("SELECT data FROM events WHERE kind = ?1 ORDER BY id")
        .unwrap();
    statement
        .query_map([kind], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
        .collect()
}

/// The ledger's events as (kind, task) in order, and its gateway calls: what must not change
/// when triage is off.
fn trail(s: &Sandbox) -> (Vec<(String, Option<String>)>, i64) {
    let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let connection = ledger.raw_connection();
    let mut statement = connection
        .prepare("SELECT kind, task_id FROM events ORDER BY id")
        .unwrap();
    let kinds = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let calls = connection
        .query_row("SELECT COUNT(*) FROM gateway_calls", [], |r| r.get(0))
        .unwrap();
    (kinds, calls)
}

fn state(s: &Sandbox) -> String {
    let shown = oxi(s, &["show", "T0-1", "--format", "json"]);
    shown.ok();
    shown.json()["task"]["state"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fails_for_good_is_summarised_with_its_secrets_masked() {
    let server = MockModelServer::start(
        Script::steps([Step::text(SUMMARY)]).chat_cost(ChatCost::LitellmHeader("0.000200".into())),
    )
    .await
    .unwrap();
    let s = sandbox(&server.base_url(), "[triage]\nenabled = true\n", "");
    let out = tick(&s);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert_eq!(state(&s), "failed");

    // One call, its request carrying the run's material, masked.
    let requests = server.model_requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let body = &requests[0].body;
    assert_eq!(body["stream"], Value::Bool(false));
    assert_eq!(body["model"], "claude-haiku-4-5");
    let sent = body.to_string();
    assert!(
        sent.contains("End of the failing verification log"),
        "{sent}"
    );
    assert!(sent.contains("[REDACTED]"), "{sent}");
    assert!(
        !sent.contains(SECRET),
        "the literal secret left oxi: {sent}"
    );
    assert!(
        !sent.contains(SHAPED),
        "a token-shaped secret left oxi: {sent}"
    );
    assert!(!sent.contains(KEY), "{sent}");

    // The summary is on its event, in `oxi show` and in the `failed` notification.
    let summaries = events(&s, "triage_summary");
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0]["summary"], SUMMARY);
    assert_eq!(summaries[0]["trigger"], "failed");
    assert_eq!(summaries[0]["choice"], "lite:claude-haiku-4-5");
    let shown = oxi(&s, &["show", "T0-1"]);
    assert!(
        shown
            .ok()
            .contains(&format!("why it failed (lite:claude-haiku-4-5): {SUMMARY}")),
        "{}",
        shown.stdout
    );
    let notes = s.read("notes.jsonl");
    let note: Value = serde_json::from_str(notes.lines().next().unwrap()).unwrap();
    assert_eq!(note["event"], "failed");
    assert_eq!(note["triage"], SUMMARY);
    assert!(note["text"].as_str().unwrap().contains(SUMMARY), "{note}");

    // `oxi report` lists the failure with its class and the summary, in every format.
    let report = oxi(&s, &["report", "--format", "json"]);
    let failed = &report.json()["failed_tasks"];
    assert_eq!(failed.as_array().map(Vec::len), Some(1), "{failed:#}");
    assert_eq!(failed[0]["task_id"], "T0-1");
    assert_eq!(failed[0]["failure_class"], "verify_failed");
    assert_eq!(failed[0]["triage_summary"], SUMMARY);
    for format in ["table", "markdown", "html"] {
        let out = oxi(&s, &["report", "--format", format]);
        let text = out.ok();
        assert!(
            text.contains("failed tasks")
                && text.contains("verify_failed")
                && text.contains(&format!("triage: {SUMMARY}")),
            "{format}:\n{text}"
        );
    }

    // The call is a ledger row of the triage role, settled at the header's cost.
    let calls = oxi(&s, &["gateway", "calls", "--format", "json"]);
    calls.ok();
    let rows = calls.json();
    assert_eq!(rows[0]["role"], "triage");
    assert_eq!(rows[0]["outcome"], "ok");
    assert_eq!(rows[0]["cost_microusd"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_flag_off_the_ledger_is_as_before() {
    let server = MockModelServer::start(Script::steps([Step::text(SUMMARY)]))
        .await
        .unwrap();
    let without = sandbox(&server.base_url(), "", "");
    let off = sandbox(&server.base_url(), "[triage]\nenabled = false\n", "");
    let (a, b) = (tick(&without), tick(&off));
    assert_eq!((a.code, b.code), (7, 7));
    let (trail_a, trail_b) = (trail(&without), trail(&off));
    assert_eq!(trail_a, trail_b);
    assert_eq!(trail_a.1, 0, "no gateway call");
    assert!(server.model_requests().is_empty());
    let note = without.read("notes.jsonl");
    assert!(!note.contains("\"triage\""), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_provider_leaves_an_event_and_the_ending_unchanged() {
    let server = MockModelServer::start(Script::new().fallback(Step::status(500, None)))
        .await
        .unwrap();
    let s = sandbox(&server.base_url(), "[triage]\nenabled = true\n", "");
    let out = tick(&s);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert_eq!(state(&s), "failed");
    let skipped = events(&s, "triage_skipped");
    assert_eq!(skipped.len(), 1);
    let reason = skipped[0]["reason"].as_str().unwrap();
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert_eq!(events(&s, "gateway_unavailable").len(), 1);
    assert!(events(&s, "triage_summary").is_empty());
    let shown = oxi(&s, &["show", "T0-1"]);
    assert!(
        shown.ok().contains("no triage summary:"),
        "{}",
        shown.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_refuses_the_call_in_a_gateway_calls_words() {
    let server = MockModelServer::start(Script::steps([Step::text(SUMMARY)]))
        .await
        .unwrap();
    let s = sandbox(
        &server.base_url(),
        "[triage]\nenabled = true\n",
        "[gateway.caps]\ncall_reserve_usd = 0.05\ntriage_daily_usd = 0.01\n",
    );
    let out = tick(&s);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert_eq!(state(&s), "failed");
    assert!(
        server.model_requests().is_empty(),
        "a refused call is not sent"
    );
    let skipped = events(&s, "triage_skipped");
    let reason = skipped[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("triage role's daily cap $0.01 (gateway.caps.triage_daily_usd)"),
        "{reason}"
    );
    assert!(!reason.contains("this run may cost"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reaped_run_is_summarised_as_reaped() {
    use std::time::{Duration, Instant};
    let server = MockModelServer::start(Script::new().fallback(Step::text(SUMMARY)))
        .await
        .unwrap();
    let s = sandbox_with(
        &server.base_url(),
        "sleep",
        "[triage]\nenabled = true\n",
        "",
    );
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_oxi"))
        .args(["tick", "--format", "json"])
        .current_dir(s.path())
        .env("NO_COLOR", "1")
        .env(KEY_VAR, KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        assert!(Instant::now() < deadline, "no run started");
        if let Ok(ledger) = Ledger::open_existing(&s.file(".oxi/ledger.db"))
            && let Some(run) = ledger
                .read()
                .running_runs()
                .unwrap()
                .into_iter()
                .find(|r| r.pgid.is_some())
        {
            break run;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The supervisor dies mid-run; the next tick's reaper ends the run and (one attempt)
    // fails the task, then asks why.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    first.wait().unwrap();
    let out = tick(&s);
    assert_eq!(
        out.json()["reaped"][0]["run_id"],
        run.id.as_str(),
        "{}",
        out.stdout
    );
    assert_eq!(state(&s), "failed");
    let summaries = events(&s, "triage_summary");
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_eq!(summaries[0]["trigger"], "reaped");
    let sent = server.model_requests()[0].body.to_string();
    assert!(sent.contains("the run was stuck"), "{sent}");
}

#[test]
fn triage_on_without_a_route_is_a_config_error_naming_the_role() {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", "- [ ] something\n");
    s.config(&OxiToml::new().project().raw("[triage]\nenabled = true\n"));
    let out = s.oxi(&["tasks"]);
    let err = out.fails_with(3);
    assert!(
        err.contains("triage.enabled") && err.contains("no route for the triage role"),
        "{err}"
    );
}
