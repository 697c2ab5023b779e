//! The operator keeps working while oxi does (issue 13, items 1 and 2): commits on the base
//! branch, edits to roadmap.md and oxi.toml made while runs are in flight never fail a run, and
//! a worker that writes into the main checkout or moves one of its refs is still refused
//! (Landlock) or caught and named (the post-run check).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oxi::ledger::{Ledger, TaskState};
use serde_json::Value;

use crate::support::{Sandbox, git};

const FAKE: &str = env!("CARGO_BIN_EXE_oxi-fake-worker");

const ROADMAP: &str = "# Roadmap\n\n**T0-1 · Greet**\nCreate `hello.txt` saying hi.\n";

/// A repository whose worker `fake` runs `command` (the fake worker unless a script is given)
/// with `scenario`; `extra` is appended to oxi.toml.
fn repo(command: &str, scenario: &str, extra: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write(".gitignore", ".oxi/\n");
    s.write(
        "oxi.toml",
        format!(
            r#"[workers.fake]
kind = "claude"
command = ["{command}"]
model = "claude-sonnet-4-5"
set_env = {{ OXI_FAKE_SCENARIO = "{scenario}" }}

[routing]
executor = ["fake"]
reviewer = ["fake"]

[verify]
tier0 = [{{ name = "says hi", argv = ["grep", "-qx", "hi", "hello.txt"], timeout = "30s" }}]

[caps]
kill_grace = "1s"
{extra}
"#
        ),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap()
}

fn spawn_oxi(s: &Sandbox, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_oxi"))
        .args(args)
        .current_dir(s.path())
        .env("NO_COLOR", "1")
        .env_remove("OXI_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until a run of `task` is live (its process group recorded); returns the run id.
fn wait_for_live_run(s: &Sandbox, task: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no run of {task} went live");
        if let Ok(l) = Ledger::open_existing(&s.file(".oxi/ledger.db"))
            && let Some(run) = l
                .read()
                .running_runs()
                .unwrap()
                .into_iter()
                .find(|r| r.pgid.is_some() && r.task_id.as_deref() == Some(task))
        {
            return run.id;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn still_running(s: &Sandbox, run_id: &str) -> bool {
    ledger(s)
        .read()
        .running_runs()
        .unwrap()
        .iter()
        .any(|r| r.id == run_id)
}

fn finish(child: Child) -> (i32, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn event_count(s: &Sandbox, kind: &str) -> i64 {
    ledger(s)
        .raw_connection()
        .query_row("SELECT COUNT(*) FROM events WHERE kind = ?1", [kind], |r| {
            r.get(0)
        })
        .unwrap()
}

fn meta(report: &Value) -> Value {
    let dir = std::path::Path::new(report["jobs"][0]["run_dir"].as_str().unwrap());
    serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap()
}

/// True when this machine confines workers with Landlock (what `oxi doctor` reports).
fn landlock_here() -> bool {
    oxi::confine::Protection::available().is_landlock()
}

#[test]
fn an_operator_commit_on_the_base_branch_during_a_run_does_not_fail_it() {
    let s = repo(FAKE, "slow-edit:4000", "");
    let tick = spawn_oxi(&s, &["tick", "--format", "json"]);
    let run = wait_for_live_run(&s, "T0-1");
    // The operator goes on working: a commit on main and an uncommitted edit beside it.
    s.write("README.md", "# sample\n\nEdited by the operator.\n");
    git(s.path(), &["commit", "-q", "-am", "operator: README"]);
    let operator_commit = git(s.path(), &["rev-parse", "main"]);
    s.write("notes.txt", "operator scratch\n");
    assert!(
        still_running(&s, &run),
        "precondition: the edits land while the run is in flight"
    );
    let (code, stdout, stderr) = finish(tick);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let job = &report["jobs"][0];
    assert_eq!(job["state"], "delivered", "{report:#}");
    assert_eq!(event_count(&s, "governance_memo"), 0, "{report:#}");
    // Nothing undid the operator's work.
    assert_eq!(git(s.path(), &["rev-parse", "main"]), operator_commit);
    assert_eq!(s.read("notes.txt"), "operator scratch\n");
}

#[test]
fn editing_the_roadmap_and_oxi_toml_under_saturate_fails_no_run() {
    let s = repo(FAKE, "slow-edit:3000", "");
    let sat = spawn_oxi(&s, &["saturate", "--until-empty", "--concurrency", "1"]);
    let run = wait_for_live_run(&s, "T0-1");
    // A new task in the roadmap (re-ingested by saturate) and a changed oxi.toml (SIGHUP).
    s.write(
        "roadmap.md",
        format!("{ROADMAP}\n**T0-2 · Greet again**\nCreate `hello.txt` saying hi.\n"),
    );
    let toml = s.read("oxi.toml");
    s.write("oxi.toml", format!("# tuned by the operator\n{toml}"));
    kill(Pid::from_raw(sat.id() as i32), Signal::SIGHUP).unwrap();
    assert!(
        still_running(&s, &run),
        "precondition: the edits land while the run is in flight"
    );
    let (code, stdout, stderr) = finish(sat);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let l = ledger(&s);
    for id in ["T0-1", "T0-2"] {
        assert_eq!(
            l.read().task(id).unwrap().unwrap().state,
            TaskState::Delivered,
            "{id}\n{stdout}\n{stderr}"
        );
    }
    assert_eq!(event_count(&s, "governance_memo"), 0, "{stderr}");
}

/// A worker command that is a script: it writes into the main checkout (three levels up from
/// its worktree, `.oxi/worktrees/<id>`) and into /tmp, says how that went on stderr, then
/// execs the real (fake) worker.
fn escaping_script(s: &Sandbox) -> String {
    let script = s.file("bin/escape.sh");
    s.write(
        "bin/escape.sh",
        format!(
            "#!/bin/sh\n\
             if echo escaped > ../../../escaped.txt; then echo 'wrote the main checkout' >&2; else echo 'main checkout write refused' >&2; fi\n\
             echo ok > \"${{TMPDIR:-/tmp}}/oxi-scratch.txt\" || echo 'temp write refused' >&2\n\
             echo quiet > /dev/null || echo 'dev null refused' >&2\n\
             exec {FAKE} \"$@\"\n"
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script.display().to_string()
}

#[test]
fn a_worker_script_writing_into_the_main_checkout_is_refused_by_landlock() {
    if !landlock_here() {
        eprintln!("skipped: this kernel has no Landlock (the post-run check is tested below)");
        return;
    }
    let s = Sandbox::empty();
    let script = escaping_script(&s);
    let s2 = repo(&script, "edit", "");
    let report = s2.oxi(&["tick", "--format", "json"]).json();
    let job = &report["jobs"][0];
    assert!(
        !s2.file("escaped.txt").exists(),
        "the worker wrote into the main checkout"
    );
    // The refusal is in the run's record, the rest of the run went on as usual.
    let stderr_log = std::fs::read_to_string(
        std::path::Path::new(job["run_dir"].as_str().unwrap()).join("stderr.log"),
    )
    .unwrap();
    assert!(
        stderr_log.contains("main checkout write refused"),
        "{stderr_log}"
    );
    assert!(
        !stderr_log.contains("temp write refused") && !stderr_log.contains("dev null refused"),
        "{stderr_log}"
    );
    assert_eq!(job["state"], "delivered", "{report:#}");
    let protection = &meta(&report)["protection"];
    assert_eq!(protection["kind"], "landlock", "{protection:#}");
    assert!(protection["abi"].as_u64().unwrap() >= 1, "{protection:#}");
}

#[test]
fn without_landlock_a_worker_writing_the_main_checkout_or_moving_main_is_caught_and_named() {
    // `confine = "off"`: only the post-run check guards. What the worker's recorded file
    // events name, and a ref moved to the worker's own commit, are attributed to it.
    for (act, expected) in [("escape", "escaped.txt"), ("move-main", "refs/heads/main")] {
        let s = repo(
            FAKE,
            &format!("vandal:{act}"),
            "\n[governance]\nconfine = \"off\"\n",
        );
        let main_before = git(s.path(), &["rev-parse", "main"]);
        let report = s.oxi(&["tick", "--format", "json"]).json();
        let job = &report["jobs"][0];
        assert_eq!(job["state"], "framework_fix_needed", "{act}: {report:#}");
        let detail = job["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(expected), "{act}: {detail}");
        assert!(detail.contains("by the worker"), "{act}: {detail}");
        if act == "move-main" {
            // The way back names the worker's move, never an operator's commit.
            let now = git(s.path(), &["rev-parse", "main"]);
            assert!(
                detail.contains(&format!(
                    "git update-ref refs/heads/main {main_before} {now}"
                )),
                "{detail}"
            );
        }
        assert_eq!(meta(&report)["protection"]["kind"], "post_run_check");
    }
}

#[test]
fn without_landlock_an_operator_commit_during_a_run_is_still_not_blamed_on_the_worker() {
    let s = repo(
        FAKE,
        "slow-edit:4000",
        "\n[governance]\nconfine = \"off\"\n",
    );
    let tick = spawn_oxi(&s, &["tick", "--format", "json"]);
    let run = wait_for_live_run(&s, "T0-1");
    s.write("README.md", "# sample\n\nEdited by the operator.\n");
    git(s.path(), &["commit", "-q", "-am", "operator: README"]);
    assert!(still_running(&s, &run), "precondition");
    let (code, stdout, stderr) = finish(tick);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["jobs"][0]["state"], "delivered", "{report:#}");
}

#[test]
fn with_landlock_vandals_cannot_write_the_main_checkout_or_move_its_refs() {
    if !landlock_here() {
        eprintln!("skipped: this kernel has no Landlock");
        return;
    }
    for act in ["escape", "move-main"] {
        let s = repo(FAKE, &format!("vandal:{act}"), "");
        let main_before = git(s.path(), &["rev-parse", "main"]);
        let report = s.oxi(&["tick", "--format", "json"]).json();
        let job = &report["jobs"][0];
        assert!(!s.file("escaped.txt").exists(), "{act}");
        assert_eq!(git(s.path(), &["rev-parse", "main"]), main_before, "{act}");
        // The worker's own change is still delivered; what it tried is in its transcript.
        assert_eq!(job["state"], "delivered", "{act}: {report:#}");
        let transcript = std::fs::read_to_string(
            std::path::Path::new(job["run_dir"].as_str().unwrap()).join("transcript.md"),
        )
        .unwrap();
        let refused = match act {
            "escape" => "Permission denied",
            _ => "cannot lock ref",
        };
        assert!(transcript.contains(refused), "{act}: {transcript}");
    }
}
