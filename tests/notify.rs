//! Notifications end to end: the real `oxi` against a webhook receiver on loopback
//! (oxi_testkit::receiver) and a shell script for the command sink. Each kind's payload, event
//! filtering, retries across ticks, a sink that is down or hangs never failing a tick, nothing
//! sent twice, secrets masked, `oxi notify test`, `oxi doctor`, and bad config.

use std::time::Duration;

use oxi::ledger::events::{Event, TaskStateChanged};
use oxi::ledger::{Ledger, TaskState};
use oxi_testkit::receiver::{Answer, Receiver};
use serde_json::{Value, json};

use crate::support::{OxiToml, Run, Sandbox, Worker, git};

/// One item, already done: nothing to dispatch, so a tick is only its upkeep and the notifier.
const EMPTY_ROADMAP: &str = "# Roadmap\n\n- [x] set things up\n";

struct Setup {
    s: Sandbox,
    rx: Receiver,
}

/// A repository whose roadmap is `roadmap`, with the fake worker and `notify` as its
/// `[notify]` part (`{rx}` in it is replaced by the receiver's address).
fn setup(roadmap: &str, notify: &str, worker_file: &str) -> Setup {
    let rx = Receiver::start().unwrap();
    let s = Sandbox::git_repo();
    s.write("roadmap.md", roadmap);
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .project()
            .worker(
                Worker::fake("fake")
                    .env("ANTHROPIC_API_KEY")
                    .scenario("edit")
                    .set_env("OXI_FAKE_FILE", worker_file),
            )
            .routing(&["fake"], &["fake"])
            .raw(&notify.replace("{rx}", &rx.url(""))),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    Setup { s, rx }
}

const SECRET: &str = "sk-ant-notify-test-secret-000000000000";

impl Setup {
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ANTHROPIC_API_KEY", SECRET.to_owned()),
            ("HOOK_URL", self.rx.url("/hook/tok3n-in-the-path")),
            ("SLACK_URL", self.rx.url("/slack/T000/B000/XXXX")),
            ("NTFY_URL", self.rx.url("/oxi-alerts")),
        ]
    }

    fn oxi(&self, args: &[&str]) -> Run {
        let env = self.env();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.s.oxi_env(args, &pairs)
    }

    fn tick(&self) -> Run {
        self.oxi(&["tick"])
    }

    fn ledger(&self) -> Ledger {
        Ledger::open_existing(&self.s.file(".oxi/ledger.db")).unwrap()
    }

    fn query(&self, sql: &str) -> Vec<Vec<Value>> {
        let mut ledger = self.ledger();
        let conn = ledger.raw_connection();
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            Ok((0..n)
                .map(|i| match r.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => Value::Null,
                    rusqlite::types::ValueRef::Integer(i) => json!(i),
                    rusqlite::types::ValueRef::Real(f) => json!(f),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        json!(String::from_utf8_lossy(t))
                    }
                })
                .collect())
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn count(&self, sql: &str) -> i64 {
        self.query(sql)[0][0].as_i64().unwrap()
    }

    /// Records a task state change in the ledger, as the pipeline would.
    fn seed(&self, task: &str, to: TaskState, reason: &str) {
        self.ledger()
            .record(
                Some(task),
                None,
                Event::TaskStateChanged(TaskStateChanged {
                    from: TaskState::Verifying,
                    to,
                    reason: reason.to_owned(),
                    held_reason: (to == TaskState::Held).then(|| reason.to_owned()),
                    failure_class: None,
                }),
            )
            .unwrap();
    }

    /// `(sink, attempt, status, http_status, error)` of every attempt, oldest first.
    fn attempts(&self) -> Vec<Vec<Value>> {
        self.query(
            "SELECT sink, attempt, status, http_status, error FROM notifications ORDER BY id",
        )
    }
}

/// The receiver's requests to `path_prefix`.
fn at(rx: &Receiver, path_prefix: &str) -> Vec<oxi_testkit::receiver::Received> {
    rx.received()
        .into_iter()
        .filter(|r| r.path.starts_with(path_prefix))
        .collect()
}

/// A notification's fields that change from run to run, replaced.
fn stable(mut value: Value) -> Value {
    for key in ["at", "repo", "event_id"] {
        if value.get(key).is_some_and(|v| !v.is_null()) {
            value[key] = json!(format!("[{key}]"));
        }
    }
    value
}

#[test]
fn each_sink_kind_gets_its_own_shape_after_the_tick_and_nothing_twice() {
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let notify = format!(
        r#"[[notify.sinks]]
name = "hook"
kind = "webhook"
url_env = "HOOK_URL"
events = ["framework_fix_needed", "held"]

[[notify.sinks]]
kind = "slack"
url_env = "SLACK_URL"
events = ["framework_fix_needed"]

[[notify.sinks]]
kind = "ntfy"
url_env = "NTFY_URL"
tags = ["ci"]
events = ["framework_fix_needed"]

[[notify.sinks]]
kind = "command"
argv = ["sh", "-c", "cat > \"$1\"", "sh", "{}"]
events = ["framework_fix_needed"]

[[notify.sinks]]
name = "only-failed"
kind = "webhook"
url_env = "HOOK_URL"
events = ["failed"]
"#,
        out_file.path().display()
    );
    let t = setup(
        "# Roadmap\n\n## Tier 0\n\n**T0-1 · Touch the workflow**\nEdit the CI file.\n",
        &notify,
        ".github/workflows/ci.yml",
    );
    let run = t.tick();
    assert_eq!(run.code, 7, "a governance stop is a failure: {run:?}");
    let hook = at(&t.rx, "/hook/");
    assert_eq!(hook.len(), 1, "one event, one sink wanting it: {hook:?}");
    assert_eq!(hook[0].headers["content-type"], "application/json");
    insta::assert_json_snapshot!("webhook_payload", stable(hook[0].json()));
    let slack = at(&t.rx, "/slack/");
    assert_eq!(slack.len(), 1);
    insta::assert_json_snapshot!("slack_payload", slack[0].json());
    let ntfy = at(&t.rx, "/oxi-alerts");
    assert_eq!(ntfy.len(), 1);
    insta::assert_json_snapshot!(
        "ntfy_request",
        json!({
            "title": ntfy[0].headers["title"],
            "priority": ntfy[0].headers["priority"],
            "tags": ntfy[0].headers["tags"],
            "content-type": ntfy[0].headers["content-type"],
            "body": ntfy[0].body,
        })
    );
    let command: Value =
        serde_json::from_str(&std::fs::read_to_string(out_file.path()).unwrap()).unwrap();
    assert_eq!(
        stable(command),
        stable(hook[0].json()),
        "the command reads the webhook's JSON"
    );
    let attempts = t.attempts();
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    assert!(attempts.iter().all(|a| a[2] == "delivered"), "{attempts:?}");

    // The next ticks find nothing new: nothing is sent again.
    t.tick();
    t.tick();
    assert_eq!(t.rx.received().len(), 3);
    assert_eq!(t.attempts().len(), 4);
}

#[test]
fn a_sink_answering_500_is_retried_on_the_next_tick_and_only_wanted_events_go() {
    let t = setup(
        EMPTY_ROADMAP,
        "[notify]\nretry_backoff = \"0s\"\n\n[[notify.sinks]]\nkind = \"webhook\"\nurl_env = \"HOOK_URL\"\nevents = [\"held\"]\n",
        "hello.txt",
    );
    t.tick().ok();
    t.seed("T0-7", TaskState::Failed, "not wanted by this sink");
    t.seed("T0-8", TaskState::Held, "needs a human");
    t.rx.script(&[Answer::Status(500)]);
    let events_before = t.count("SELECT COUNT(*) FROM events");
    t.tick().ok();
    assert_eq!(
        t.count("SELECT COUNT(*) FROM events"),
        events_before,
        "the notifier writes no events, only its own rows"
    );
    assert_eq!(
        t.attempts(),
        vec![vec![
            json!("webhook"),
            json!(1),
            json!("failed"),
            json!(500),
            json!("HTTP 500: scripted")
        ]]
    );
    t.tick().ok();
    let attempts = t.attempts();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        attempts[1][1..4],
        [json!(2), json!("delivered"), json!(200)]
    );
    t.tick().ok();
    let got = at(&t.rx, "/hook/");
    assert_eq!(got.len(), 2, "one failed, one delivered, none after");
    assert!(got.iter().all(|r| r.json()["task_id"] == "T0-8"));
    assert_eq!(got[1].json()["event"], "held");
}

#[test]
fn a_sink_that_keeps_failing_is_given_up_and_doctor_warns() {
    let t = setup(
        EMPTY_ROADMAP,
        "[notify]\nretry_backoff = \"0s\"\nmax_attempts = 3\n\n[[notify.sinks]]\nname = \"pager\"\nkind = \"webhook\"\nurl_env = \"HOOK_URL\"\nevents = [\"held\"]\n",
        "hello.txt",
    );
    t.tick().ok();
    t.seed("T0-8", TaskState::Held, "needs a human");
    t.rx.script(&[
        Answer::Status(500),
        Answer::Status(502),
        Answer::Status(503),
    ]);
    for _ in 0..4 {
        t.tick().ok();
    }
    let statuses: Vec<Value> = t.attempts().into_iter().map(|a| a[2].clone()).collect();
    assert_eq!(
        statuses,
        [json!("failed"), json!("failed"), json!("gave_up")]
    );
    assert_eq!(at(&t.rx, "/hook/").len(), 3, "nothing after giving up");
    let doctor = t.oxi(&["doctor", "--format", "json"]);
    let checks = doctor.json();
    let check = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "notify pager")
        .unwrap_or_else(|| panic!("{checks:#}"));
    assert_eq!(check["status"], "warn", "{check:#}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("last 3 attempts failed; the last: HTTP 503"),
        "{check:#}"
    );
    let status = t.oxi(&["notify", "status"]);
    assert!(status.ok().contains("gave_up"), "{}", status.stdout);
}

#[test]
fn a_sink_down_or_hanging_never_fails_the_tick() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/gone", closed.local_addr().unwrap());
    drop(closed);
    let t = setup(
        EMPTY_ROADMAP,
        &format!(
            "[[notify.sinks]]\nname = \"dead\"\nkind = \"webhook\"\nurl = \"{dead}\"\nevents = [\"held\"]\n\n[[notify.sinks]]\nname = \"slow\"\nkind = \"webhook\"\nurl_env = \"HOOK_URL\"\ntimeout = \"1s\"\nevents = [\"held\"]\n"
        ),
        "hello.txt",
    );
    t.tick().ok();
    t.seed("T0-8", TaskState::Held, "needs a human");
    t.rx.script(&[Answer::Hang(Duration::from_secs(5))]);
    let events_before = t.count("SELECT COUNT(*) FROM events");
    let run = t.tick();
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(t.count("SELECT COUNT(*) FROM events"), events_before);
    let attempts = t.attempts();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let error = |sink: &str| {
        attempts
            .iter()
            .find(|a| a[0] == sink)
            .map(|a| a[4].as_str().unwrap_or("").to_owned())
            .unwrap()
    };
    assert!(error("dead").contains("refused"), "{attempts:?}");
    assert_eq!(error("slow"), "no answer within 1s");
    assert!(
        t.count("SELECT COUNT(*) FROM notify_outbox WHERE state = 'pending'") == 2,
        "both stay queued for a later pass"
    );
}

#[test]
fn a_command_past_its_timeout_is_killed_with_its_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("child.pid");
    let t = setup(
        EMPTY_ROADMAP,
        &format!(
            "[[notify.sinks]]\nkind = \"command\"\nargv = [\"sh\", \"-c\", \"sleep 60 & echo $! > {}; wait\"]\ntimeout = \"1s\"\nevents = [\"held\"]\n",
            pid_file.display()
        ),
        "hello.txt",
    );
    t.tick().ok();
    t.seed("T0-8", TaskState::Held, "needs a human");
    t.tick().ok();
    let attempts = t.attempts();
    assert_eq!(attempts[0][2], "failed");
    assert_eq!(
        attempts[0][4],
        "the command ran past 1s; its process group was killed"
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ");
    assert!(!alive, "the command's child {pid} outlived the timeout");
}

#[test]
fn secrets_are_masked_in_what_is_sent_and_recorded() {
    let t = setup(
        EMPTY_ROADMAP,
        "[[notify.sinks]]\nkind = \"webhook\"\nurl_env = \"HOOK_URL\"\nevents = [\"held\"]\n",
        "hello.txt",
    );
    t.tick().ok();
    t.seed(
        "T0-8",
        TaskState::Held,
        &format!("the worker printed {SECRET} and ghp_0123456789abcdefghijklmnopqrstuvwxyz"),
    );
    t.tick().ok();
    let got = at(&t.rx, "/hook/");
    assert_eq!(got.len(), 1);
    assert!(!got[0].body.contains(SECRET), "{}", got[0].body);
    assert!(!got[0].body.contains("ghp_0123"), "{}", got[0].body);
    assert!(got[0].body.contains("[REDACTED]"), "{}", got[0].body);
    let stored = t.query("SELECT payload FROM notify_outbox");
    assert!(!stored[0][0].as_str().unwrap().contains(SECRET));
}

#[test]
fn the_daily_digest_is_sent_once_a_day() {
    let t = setup(
        EMPTY_ROADMAP,
        "[[notify.sinks]]\nkind = \"slack\"\nurl_env = \"SLACK_URL\"\nevents = [\"digest\"]\n",
        "hello.txt",
    );
    t.tick().ok();
    t.tick().ok();
    let got = at(&t.rx, "/slack/");
    assert_eq!(got.len(), 1, "{got:?}");
    let yesterday = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24))
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    let text = got[0].json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with(&format!(
            "*oxi daily digest for {yesterday}*\n{yesterday}: 0 run(s)"
        )),
        "{text}"
    );
}

#[test]
fn notify_test_sends_a_sample_to_each_sink_and_names_an_unset_variable() {
    let t = setup(
        EMPTY_ROADMAP,
        "[[notify.sinks]]\nname = \"hook\"\nkind = \"webhook\"\nurl_env = \"HOOK_URL\"\nevents = [\"held\"]\n\n[[notify.sinks]]\nname = \"team\"\nkind = \"slack\"\nurl_env = \"TEAM_SLACK_URL\"\nevents = [\"held\"]\n",
        "hello.txt",
    );
    let run = t.oxi(&["notify", "test"]);
    assert_eq!(run.code, 1, "{run:?}");
    let stdout = regex::Regex::new(r"in \d+ ms")
        .unwrap()
        .replace_all(&run.stdout, "in [ms] ms")
        .into_owned();
    insta::assert_snapshot!("notify_test", stdout);
    assert_eq!(at(&t.rx, "/hook/")[0].json()["event"], "test");
    t.oxi(&["notify", "test", "--sink", "hook"]).ok();
    let unknown = t.oxi(&["notify", "test", "--sink", "nope"]);
    assert!(
        unknown.stderr.contains("no sink named \"nope\""),
        "{unknown:?}"
    );
    let doctor = t.oxi(&["doctor", "--format", "json"]).json();
    let team = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "notify team")
        .unwrap()
        .clone();
    assert_eq!(team["status"], "fail");
    assert_eq!(
        team["detail"],
        "TEAM_SLACK_URL (the sink's url_env) is not set in oxi's environment"
    );
    let status = t.oxi(&["notify", "status", "--format", "json"]).json();
    assert_eq!(status["attempts"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_notify_config_names_file_line_and_key() {
    let cases = [
        (
            "unknown_kind",
            "[[notify.sinks]]\nkind = \"email\"\nurl_env = \"X\"\nevents = [\"held\"]\n",
        ),
        (
            "unknown_event",
            "[[notify.sinks]]\nkind = \"webhook\"\nurl_env = \"X\"\nevents = [\"held\", \"exploded\"]\n",
        ),
        (
            "no_url",
            "[[notify.sinks]]\nkind = \"webhook\"\nevents = [\"held\"]\n",
        ),
        (
            "url_env_is_a_url",
            "[[notify.sinks]]\nkind = \"webhook\"\nurl_env = \"https://example.com/hook\"\nevents = [\"held\"]\n",
        ),
        (
            "literal_url_with_token",
            "[[notify.sinks]]\nkind = \"webhook\"\n\nurl = \"https://example.com/hook?token=abc\"\nevents = [\"held\"]\n",
        ),
        (
            "literal_slack_url",
            "[[notify.sinks]]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/XXXX\"\nevents = [\"held\"]\n",
        ),
        (
            "duplicate_names",
            "[[notify.sinks]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/oxi\"\nevents = [\"held\"]\n\n[[notify.sinks]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/other\"\nevents = [\"failed\"]\n",
        ),
        (
            "command_without_argv",
            "[[notify.sinks]]\nkind = \"command\"\nevents = [\"held\"]\n",
        ),
        (
            "bad_priority",
            "[[notify.sinks]]\nkind = \"ntfy\"\nurl = \"https://ntfy.sh/oxi\"\npriority = \"loud\"\nevents = [\"held\"]\n",
        ),
    ];
    let mut all = String::new();
    for (name, toml) in cases {
        let s = Sandbox::git_repo();
        s.write("oxi.toml", toml);
        s.write("roadmap.md", EMPTY_ROADMAP);
        let run = s.oxi(&["notify", "test"]);
        all.push_str(&format!("## {name}\n{}\n\n", run.fails_with(3).trim_end()));
    }
    insta::assert_snapshot!("notify_config_errors", all);
}

/// Runs of $0.60 under a $1.50 day with a $0.50 soft warning: saturate stops claiming at the
/// cap, and its rounds send the soft warning and the stop.
#[test]
fn saturate_sends_the_soft_budget_warning_and_its_stop() {
    let t = setup(
        "# Roadmap\n\n## Tier 0\n\n**T0-1 · One**\nWrite hello.txt.\n\n**T0-2 · Two**\nWrite hello.txt.\n\n**T0-3 · Three**\nWrite hello.txt.\n",
        "[caps]\njob_usd = 1.0\ndaily_usd = 1.5\ndaily_soft_warn_usd = 0.5\nestimate_floor_usd = 1.0\n\n[[notify.sinks]]\nname = \"stops\"\nkind = \"webhook\"\nurl_env = \"HOOK_URL\"\nevents = [\"saturate_stopped\"]\n\n[[notify.sinks]]\nname = \"money\"\nkind = \"slack\"\nurl_env = \"SLACK_URL\"\nevents = [\"budget\"]\n",
        "hello.txt",
    );
    let toml = t.s.read("oxi.toml").replace(
        "OXI_FAKE_SCENARIO = \"edit\"",
        "OXI_FAKE_SCENARIO = \"edit\", OXI_FAKE_COST_USD = \"0.6\"",
    );
    t.s.write("oxi.toml", toml);
    let run = t.oxi(&["saturate", "--concurrency", "3"]);
    assert!(run.ok().contains("(daily_budget_reached)"), "{run:?}");
    let stops = at(&t.rx, "/hook/");
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0].json()["event"], "saturate_stopped");
    assert_eq!(stops[0].json()["ledger_kind"], "daily_budget_reached");
    let mut money: Vec<String> = at(&t.rx, "/slack/")
        .iter()
        .map(|r| {
            r.json()["text"]
                .as_str()
                .unwrap()
                .lines()
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    money.sort();
    assert_eq!(
        money,
        [
            "*Spend today passed the soft warning ($0.50)*",
            "*oxi saturate stopped claiming: the day's cap is reached*"
        ]
    );
}

#[test]
fn a_quarantined_worker_is_sent_as_quarantined() {
    let t = setup(
        EMPTY_ROADMAP,
        "[[notify.sinks]]\nkind = \"webhook\"\nurl_env = \"HOOK_URL\"\nevents = [\"quarantined\"]\n",
        "hello.txt",
    );
    t.tick().ok();
    t.ledger()
        .record(
            None,
            None,
            Event::WorkerQuarantined(oxi::ledger::events::WorkerQuarantined {
                worker: "fake".into(),
                version: Some("0.170.0".into()),
                mismatch: "session_started: no session_started event among unknown×2".into(),
            }),
        )
        .unwrap();
    t.tick().ok();
    let got = at(&t.rx, "/hook/");
    assert_eq!(got.len(), 1);
    let body = got[0].json();
    assert_eq!(body["event"], "quarantined");
    assert_eq!(body["ledger_kind"], "worker_quarantined");
    assert_eq!(body["title"], "Worker fake is quarantined");
}

#[test]
fn doctor_fails_a_command_sink_whose_program_is_missing() {
    let t = setup(
        EMPTY_ROADMAP,
        "[[notify.sinks]]\nkind = \"command\"\nargv = [\"no-such-notifier-xyz\"]\nevents = [\"held\"]\n",
        "hello.txt",
    );
    let doctor = t.oxi(&["doctor", "--format", "json"]).json();
    let check = doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "notify command")
        .unwrap()
        .clone();
    assert_eq!(check["status"], "fail");
    assert_eq!(
        check["detail"],
        "no-such-notifier-xyz is not found (not an executable path, nor on PATH)"
    );
}

#[test]
fn the_first_pass_does_not_send_history() {
    let t = setup(
        EMPTY_ROADMAP,
        "[[notify.sinks]]\nkind = \"webhook\"\nurl_env = \"HOOK_URL\"\nevents = [\"held\"]\n",
        "hello.txt",
    );
    t.oxi(&["ingest"]).ok();
    t.seed(
        "T0-8",
        TaskState::Held,
        "held before notifications were set up",
    );
    t.tick().ok();
    t.tick().ok();
    assert!(t.rx.received().is_empty(), "{:?}", t.rx.received());
    t.seed("T0-9", TaskState::Held, "held since");
    t.tick().ok();
    let got = at(&t.rx, "/hook/");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["task_id"], "T0-9");
}

#[test]
fn what_a_pass_has_no_time_for_waits_for_the_next() {
    let t = setup(
        EMPTY_ROADMAP,
        "[notify]\npass_budget = \"1s\"\n\n[[notify.sinks]]\nname = \"slow\"\nkind = \"webhook\"\nurl_env = \"HOOK_URL\"\ntimeout = \"10s\"\nevents = [\"held\"]\n\n[[notify.sinks]]\nname = \"next\"\nkind = \"slack\"\nurl_env = \"SLACK_URL\"\nevents = [\"held\"]\n",
        "hello.txt",
    );
    t.tick().ok();
    t.seed("T0-8", TaskState::Held, "needs a human");
    // The first sink answers after the pass's budget is spent: the second waits.
    t.rx.script(&[Answer::Hang(Duration::from_secs(2))]);
    t.tick().ok();
    assert_eq!(
        t.query("SELECT sink, status FROM notifications"),
        [[json!("slow"), json!("delivered")]]
    );
    assert!(at(&t.rx, "/slack/").is_empty());
    t.tick().ok();
    assert_eq!(at(&t.rx, "/slack/").len(), 1);
    assert_eq!(at(&t.rx, "/hook/").len(), 1, "delivered once, never again");
}
