//! Follow-ups to issue 13 ("caps are ceilings, not early exits", "nothing wedged"): a review
//! refused only because runs in flight hold the budget room waits for them and never re-runs
//! (re-pays) the executor; `oxi tick` tells "room held by runs in flight" from "cap reached";
//! `oxi saturate --until-empty` exits when paused with nothing in flight; a delivered branch
//! the operator merged counts as accepted in `oxi report`; `oxi logs TASK --follow` follows the
//! task to its next run.
//!
//! Everything runs the real `oxi` and `oxi-fake-worker` binaries in a real git repository; the
//! room is held by a real `oxi run` of a sleeping worker in another process.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oxi::ledger::{FailureClass, HoldKind, Ledger, TaskState};
use serde_json::Value;

use crate::support::{OxiToml, Sandbox, Worker, git};

const OXI: &str = env!("CARGO_BIN_EXE_oxi");

/// A repository whose executor is `fake` (the worker given), whose reviewer
/// `rev` approves, and whose `hold` worker sleeps (an `oxi run` of it holds budget room).
fn repo(roadmap: &str, fake: Worker, extra: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", roadmap);
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .project()
            .worker(fake)
            .worker(Worker::fake("rev").scenario("review:approve").cost_usd("0.01"))
            .worker(Worker::fake("hold").scenario("sleep").sleep_ms(600000))
            .routing(&["fake"], &["rev"])
            .raw("[verify]\ntier0 = [{ name = \"says hi\", argv = [\"grep\", \"-qx\", \"hi\", \"hello.txt\"], timeout = \"30s\" }]\n")
            .raw(&format!("{extra}\n")),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

const ONE_TASK: &str =
    "# Roadmap\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n";

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap()
}

fn oxi(s: &Sandbox, args: &[&str]) -> Command {
    let mut command = Command::new(OXI);
    command
        .args(args)
        .current_dir(s.path())
        .env_remove("OXI_CONFIG")
        .env_remove("OXI_RUN_MODE")
        .env_remove("OXI_LOG")
        .env("NO_COLOR", "1")
        .env("USER", "tester")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Polls `what` until it holds; panics (with `why`) after a generous bound, so a wedged
/// process fails the test instead of hanging it.
fn wait_for(why: &str, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !what() {
        assert!(Instant::now() < deadline, "timed out waiting for {why}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `child` to exit (killing it and failing after a bound) and returns its exit code,
/// stdout and stderr.
fn finish(mut child: Child, what: &str) -> (i32, String, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("{what} did not exit:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code().unwrap_or(-1), out, err)
}

/// Starts `oxi run --worker hold` (a run that sleeps, holding its per-job reservation) and
/// returns once its run is in flight. It takes one of `run.max_parallel_jobs`' slots.
fn hold_room(s: &Sandbox) -> Child {
    // The ledger must exist before the run is watched for.
    s.oxi(&["ingest"]).ok();
    let child = oxi(s, &["run", "--worker", "hold", "hold the room"])
        .spawn()
        .unwrap();
    wait_for("the holding run to start", || {
        ledger(s).read().running_runs().unwrap().len() == 1
    });
    child
}

/// Ends the holding run as a person would (SIGTERM): its reservation settles at what it spent.
fn release_room(child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    finish(child, "the holding `oxi run`");
}

fn event_count(s: &Sandbox, kind: &str, task: &str) -> i64 {
    ledger(s)
        .raw_connection()
        .query_row(
            "SELECT COUNT(*) FROM events WHERE kind = ?1 AND task_id = ?2",
            [kind, task],
            |r| r.get(0),
        )
        .unwrap()
}

/// The review waits' setup: an executor costing $0.30 (estimated at $0.25) beside a run
/// holding $0.50 of the day's $1.00, so that the review's $0.25 estimate fits only once that
/// run settles. Returns once the review's refusal is recorded and the tick waits: the
/// repository, the holding `oxi run` (its fake's scenario `holder`) and the tick.
fn a_review_waiting_for_room(holder: &str) -> (Sandbox, Child, Child) {
    let s = repo(
        ONE_TASK,
        Worker::fake("fake").cost_usd("0.3"),
        "[run]\nmax_parallel_jobs = 2\n\n[critic]\nauto_approve = false\n\n[caps]\njob_usd = 0.5\ndaily_usd = 1.0\ndaily_soft_warn_usd = 1.0\nestimate_floor_usd = 0.25\nstall_timeout = \"10m\"\n",
    );
    let toml = s
        .read("oxi.toml")
        .replacen("\"sleep\"", &format!("{holder:?}"), 1);
    s.write("oxi.toml", toml);
    let holder = hold_room(&s);
    let tick = oxi(&s, &["tick", "--format", "json"]).spawn().unwrap();
    // The review's admission was refused once (recorded), and the tick goes on waiting.
    wait_for("the review's refusal", || {
        event_count(&s, "budget_refused", "T0-1") >= 1
    });
    (s, holder, tick)
}

/// (a) The executor fits beside the holding run ($0.50 held + $0.25 estimate under $1.00) and
/// costs $0.30; the review's $0.25 estimate then does not fit beside the $0.50 held, but would
/// once it settles ($0.30 + $0.25). The review waits for the room instead of putting the task
/// in `retry_wait` (whose next attempt would re-run and re-pay the executor); when the holding
/// run ends, the review runs and the task is delivered with one executor run.
#[test]
fn a_review_refused_only_for_room_held_by_runs_in_flight_waits_and_never_reruns_the_executor() {
    let (s, holder, tick) = a_review_waiting_for_room("sleep");
    // Past the review's one-second recheck, so it looks again while the room is still held:
    // a look only reads; it neither records another refusal nor gives up.
    std::thread::sleep(Duration::from_millis(2500));
    release_room(holder);
    let (code, stdout, stderr) = finish(tick, "oxi tick");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let job = &report["jobs"][0];
    assert_eq!(job["state"], "delivered", "{report:#}\n{stderr}");
    assert_eq!(job["review"], "approved by rev", "{report:#}");
    let runs = ledger(&s).read().runs_for_task("T0-1").unwrap();
    let executors = runs.iter().filter(|r| r.role == "executor").count();
    assert_eq!(executors, 1, "the executor ran (and was paid) once");
    assert_eq!(runs.iter().filter(|r| r.role == "reviewer").count(), 1);
    assert_eq!(event_count(&s, "budget_refused", "T0-1"), 1, "one refusal");
    assert_eq!(
        stderr.matches("the review waits for budget room").count(),
        1,
        "said once, not at every look: {stderr}"
    );
    assert_eq!(
        ledger(&s).read().task("T0-1").unwrap().unwrap().state,
        TaskState::Delivered
    );
}

/// (a) The same wait, ended by stopping the tick (SIGTERM) while the room is still held: the
/// verified work is held for a person with its commit on the branch — not re-queued, whose
/// next attempt would run the executor again — and `oxi approve` delivers it.
#[test]
fn a_review_waiting_for_room_when_oxi_is_stopped_holds_the_verified_work() {
    let (s, holder, tick) = a_review_waiting_for_room("sleep");
    let pid = nix::unistd::Pid::from_raw(tick.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let (_, stdout, stderr) = finish(tick, "oxi tick");
    release_room(holder);
    let task = ledger(&s).read().task("T0-1").unwrap().unwrap();
    assert_eq!(task.state, TaskState::Held, "{stdout}\n{stderr}");
    let reason = task.held_reason.unwrap();
    assert!(reason.contains("oxi approve T0-1"), "{reason}");
    assert!(reason.contains("until oxi was stopped"), "{reason}");
    let branch = task.branch.unwrap();
    assert_eq!(
        git(s.path(), &["show", &format!("{branch}:hello.txt")]),
        "hi"
    );
    s.oxi(&["approve", "T0-1"]).ok();
    s.oxi(&["tick"]).ok();
    let l = ledger(&s);
    assert_eq!(
        l.read().task("T0-1").unwrap().unwrap().state,
        TaskState::Delivered
    );
    let runs = l.read().runs_for_task("T0-1").unwrap();
    assert_eq!(runs.iter().filter(|r| r.role == "executor").count(), 1);
}

/// (b) Another process's run holds the room ($0.80 of $1.00) that the next claim's $0.25
/// estimate needs, though nothing is spent: the tick says the room is held by runs in flight
/// (its own outcome, exit 0), not that the cap is reached (`budget`, exit 6).
#[test]
fn a_tick_whose_room_is_held_by_runs_in_flight_says_so_and_exits_0() {
    let s = repo(
        ONE_TASK,
        Worker::fake("fake").scenario("edit"),
        "[run]\nmax_parallel_jobs = 2\n\n[caps]\njob_usd = 0.8\ndaily_usd = 1.0\ndaily_soft_warn_usd = 1.0\nestimate_floor_usd = 0.25\nstall_timeout = \"10m\"\n",
    );
    let holder = hold_room(&s);
    let json = s.oxi(&["tick", "--format", "json"]);
    let text = s.oxi(&["tick"]);
    release_room(holder);
    assert_eq!(json.code, 0, "{}\n{}", json.stdout, json.stderr);
    let report = json.json();
    assert_eq!(
        report["outcome"], "budget_held_by_runs_in_flight",
        "{report:#}"
    );
    assert_eq!(text.code, 0, "{}\n{}", text.stdout, text.stderr);
    assert!(
        text.stdout.contains("held by runs in flight"),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("budget_reached"), "{}", text.stdout);
    // Once the room is free, the next tick claims it.
    let after = s.oxi(&["tick", "--format", "json"]).json();
    assert_eq!(after["jobs"][0]["state"], "delivered", "{after:#}");
}

/// (c) Paused with nothing in flight, `oxi saturate --until-empty` cannot empty anything: it
/// exits with reason `paused` and says how to go on, instead of waiting forever.
#[test]
fn saturate_until_empty_while_paused_exits_with_reason_paused() {
    let s = repo(ONE_TASK, Worker::fake("fake").scenario("edit"), "");
    s.oxi(&["pause", "--reason", "lunch"]).ok();
    let child = oxi(&s, &["saturate", "--until-empty", "--concurrency", "1"])
        .spawn()
        .unwrap();
    let (code, stdout, stderr) = finish(child, "oxi saturate --until-empty (paused)");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("saturate stopped (paused)"), "{stdout}");
    assert!(stdout.contains("oxi resume"), "{stdout}");
    assert_eq!(
        ledger(&s).read().task("T0-1").unwrap().unwrap().state,
        TaskState::Queued,
        "nothing was claimed"
    );
}

/// (d) Fast mode: a delivered branch the operator merged (`branch_merged`) is maintainer
/// acceptance, as a merged pull request is in release mode.
#[test]
fn a_delivered_branch_merged_by_the_operator_counts_as_accepted_in_the_report() {
    let s = repo(ONE_TASK, Worker::fake("fake").scenario("edit"), "");
    let first = s.oxi(&["tick", "--format", "json"]).json();
    let branch = first["jobs"][0]["branch"].as_str().unwrap().to_owned();
    assert_eq!(first["jobs"][0]["state"], "delivered", "{first:#}");
    git(
        s.path(),
        &["merge", "--no-ff", "-q", "-m", "merge T0-1", &branch],
    );
    s.oxi(&["tick"]).ok();
    assert_eq!(event_count(&s, "branch_merged", "T0-1"), 1);
    let report = s.oxi(&["report", "--format", "json"]).json();
    assert_eq!(report["maintainer_acceptance_rate"], 1.0, "{report:#}");
}

/// (e) `oxi logs T0-1 --follow`, started before anything ran: attempt 1 fails transiently
/// (`retry_wait`), attempt 2 (the next tick) delivers. The follow goes on to attempt 2's run
/// and ends when the task is delivered.
#[test]
fn logs_follow_of_a_task_follows_it_to_its_retry_and_stops_when_it_is_delivered() {
    let s = repo(
        ONE_TASK,
        Worker::fake("fake").scenario("edit-transient"),
        "[caps]\nretry_backoff = \"1ms\"\nretry_backoff_max = \"1ms\"\n",
    );
    s.oxi(&["ingest"]).ok();
    let follow = oxi(&s, &["logs", "T0-1", "--follow"]).spawn().unwrap();
    let first = s.oxi(&["tick", "--format", "json"]).json();
    assert_eq!(first["jobs"][0]["state"], "retry_wait", "{first:#}");
    let second = s.oxi(&["tick", "--format", "json"]).json();
    assert_eq!(second["jobs"][0]["state"], "delivered", "{second:#}");
    let run2 = second["jobs"][0]["run_id"].as_str().unwrap().to_owned();
    let (code, stdout, stderr) = finish(follow, "oxi logs T0-1 --follow");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&run2),
        "attempt 2's run is followed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("nothing to change"), "{stdout}");
}

/// A review whose estimate crosses the daily cap on spend alone (nothing in flight to wait
/// for): the task waits an hour in `retry_wait`, its verified work committed on the branch.
#[test]
fn a_review_the_daily_cap_can_never_fit_waits_an_hour_as_budget_refused() {
    let s = repo(
        ONE_TASK,
        Worker::fake("fake").cost_usd("0.3"),
        "[critic]\nauto_approve = false\n\n[caps]\njob_usd = 0.5\ndaily_usd = 0.5\ndaily_soft_warn_usd = 0.5\nestimate_floor_usd = 0.25\n",
    );
    let before = oxi::clock::now_ms();
    let out = s.oxi(&["tick", "--format", "json"]);
    let after = oxi::clock::now_ms();
    let report = out.json();
    let task = ledger(&s).read().task("T0-1").unwrap().unwrap();
    assert_eq!(task.state, TaskState::RetryWait, "{report:#}");
    assert_eq!(task.failure_class, Some(FailureClass::BudgetRefused));
    let at = task.retry_at_ms.unwrap();
    assert!(
        (before + 3_600_000..=after + 3_600_000).contains(&at),
        "retry at {at}, tick from {before} to {after}"
    );
    let runs = ledger(&s).read().runs_for_task("T0-1").unwrap();
    assert_eq!(runs.iter().filter(|r| r.role == "reviewer").count(), 0);
}

/// (a) The same wait, but the holding run settles at what leaves no room: it spent $0.49 of
/// the $0.50 it held, so once it ends spend alone ($0.30 + $0.49 + the review's $0.25) crosses
/// the $1.00 cap. The review stops waiting and the task waits an hour as `budget_refused`; it
/// is not held as though the room had never come back.
#[test]
fn a_review_waiting_for_room_that_settles_past_the_cap_waits_an_hour_as_budget_refused() {
    // 163,334 input tokens at claude-sonnet-4-5's $3 per million: $0.49.
    let (s, holder, tick) = a_review_waiting_for_room("spend-then-sleep:163334");
    release_room(holder);
    let (code, stdout, stderr) = finish(tick, "oxi tick");
    let task = ledger(&s).read().task("T0-1").unwrap().unwrap();
    assert_eq!(
        task.state,
        TaskState::RetryWait,
        "{code}\n{stdout}\n{stderr}"
    );
    assert_eq!(task.failure_class, Some(FailureClass::BudgetRefused));
    let runs = ledger(&s).read().runs_for_task("T0-1").unwrap();
    assert_eq!(runs.iter().filter(|r| r.role == "reviewer").count(), 0);
}

/// A reviewer that ends without an `OXI_REVIEW` verdict: the verified work is held for a
/// person, the reason saying which branch to read and that `oxi approve` delivers it, which it
/// does.
#[test]
fn a_review_without_a_verdict_holds_the_work_saying_how_to_deliver_it() {
    let s = repo(
        ONE_TASK,
        Worker::fake("fake"),
        "[critic]\nauto_approve = false\n",
    );
    let toml = s
        .read("oxi.toml")
        .replace("\"review:approve\"", "\"no-result\"");
    s.write("oxi.toml", toml);
    let report = s.oxi(&["tick", "--format", "json"]).json();
    let task = ledger(&s).read().task("T0-1").unwrap().unwrap();
    assert_eq!(task.state, TaskState::Held, "{report:#}");
    assert_eq!(task.hold_kind, Some(HoldKind::ReviewUnavailable));
    let reason = task.held_reason.unwrap_or_default();
    let branch = task.branch.unwrap_or_default();
    assert!(
        reason.ends_with(&format!("; review branch {branch} and `oxi approve T0-1`")),
        "{reason}"
    );
    s.oxi(&["approve", "T0-1"]).ok();
    s.oxi(&["tick"]).ok();
    assert_eq!(
        ledger(&s).read().task("T0-1").unwrap().unwrap().state,
        TaskState::Delivered
    );
}
