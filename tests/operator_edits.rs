//! The operator keeps working while oxi does (issue 13, items 1 and 2): commits on the base
//! branch, edits to roadmap.md and oxi.toml made while runs are in flight never fail a run, and
//! a worker that writes into the main checkout or moves one of its refs is still refused
//! (Landlock) or caught and named (the post-run check).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oxi::ledger::{Ledger, TaskState};
use oxi_testkit::mock_model::{MockModelServer, Script, Step};
use serde_json::Value;

use crate::support::{OxiToml, Sandbox, Worker, git, live};

const FAKE: &str = env!("CARGO_BIN_EXE_oxi-fake-worker");

const ROADMAP: &str = "# Roadmap\n\n**T0-1 · Greet**\nCreate `hello.txt` saying hi.\n";

/// A repository whose worker `fake` runs `command` (the fake worker unless a script is given)
/// with `scenario`; `extra` is appended to oxi.toml.
fn repo(command: &str, scenario: &str, extra: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .worker(Worker::fake("fake").command(command).scenario(scenario))
            .routing(&["fake"], &["fake"])
            .raw("[verify]\ntier0 = [{ name = \"says hi\", argv = [\"grep\", \"-qx\", \"hi\", \"hello.txt\"], timeout = \"30s\" }]\n")
            .raw(&format!("[caps]\nkill_grace = \"1s\"\n{extra}\n")),
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
             echo hi > hello.txt && git add hello.txt && git status --short > /dev/null || echo 'git add refused' >&2\n\
             git -c user.name=w -c user.email=w@w commit -q -m worker > /dev/null 2>&1 && echo 'worker committed' >&2 || echo 'worker commit refused' >&2\n\
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
    // What a worker needs still works: its temp dir, /dev/null, `git add` in its worktree.
    // Moving a branch (even its own, with `git commit`) does not: oxi commits its work.
    for refused in ["temp write refused", "dev null refused", "git add refused"] {
        assert!(!stderr_log.contains(refused), "{refused}: {stderr_log}");
    }
    assert!(stderr_log.contains("worker commit refused"), "{stderr_log}");

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

#[test]
fn doctor_says_which_protection_is_active() {
    let s = repo(FAKE, "edit", "");
    let out = s.oxi(&["doctor", "--format", "json"]);
    let json = out.json();
    let check = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "worker confinement")
        .unwrap_or_else(|| panic!("no confinement check: {json:#}"))
        .clone();
    let detail = check["detail"].as_str().unwrap();
    if landlock_here() {
        assert!(detail.starts_with("Landlock ABI "), "{check:#}");
    } else {
        assert!(detail.starts_with("post-run check only"), "{check:#}");
    }
    let s = repo(FAKE, "edit", "\n[governance]\nconfine = \"off\"\n");
    let json = s.oxi(&["doctor", "--format", "json"]).json();
    let detail = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "worker confinement")
        .map(|c| c["detail"].as_str().unwrap().to_owned())
        .unwrap();
    assert_eq!(detail, "post-run check only (governance.confine = \"off\")");
}

/// The live CLIs under Landlock: a wrapper script writes into the main checkout, then execs
/// the real `claude` (or `codex`, without its own sandbox so that Landlock confines it), which
/// does its task against the mock model server. The write is refused, the task delivered.
/// (The reviewer is the fake: a codex reviewer runs in codex's read-only sandbox, which does
/// not cover a wrapper script around codex; see docs/safety.md.)
async fn a_live_cli_behind_an_escaping_script(cli: live::Cli) {
    let Some(bin) = live::require(cli) else {
        return;
    };
    if !landlock_here() {
        eprintln!("skipped: this kernel has no Landlock");
        return;
    }
    let scratch = live::Scratch::new();
    let server = MockModelServer::start(Script::steps([
        Step::write_file("notes/plan.md", "# Plan\nstep one\n"),
        Step::text("Wrote the plan.\nOXI_RESULT {\"status\":\"done\"}"),
    ]))
    .await
    .unwrap();
    let script = scratch.home.join("escape-then-exec.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if echo escaped > ../../../escaped.txt; then echo 'wrote the main checkout' >&2; else echo 'main checkout write refused' >&2; fi\n\
             exec {} \"$@\"\n",
            bin.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut worker = live::worker(cli, "live", &script, &server);
    if cli == live::Cli::Codex {
        worker = worker.sandbox("danger-full-access");
    }
    OxiToml::new()
        .worker(worker)
        .worker(Worker::fake("rev").scenario("review:approve"))
        .routing(&["live"], &["rev"])
        .raw("[verify]\ntier0 = [{ name = \"plan exists\", argv = [\"test\", \"-s\", \"notes/plan.md\"], timeout = \"30s\" }]\n")
        .write_in(&scratch.repo);
    std::fs::write(scratch.repo.join(".gitignore"), ".oxi/\n").unwrap();
    std::fs::write(
        scratch.repo.join("roadmap.md"),
        "# Roadmap\n\n**T0-7 · Write the plan**\nPut the plan in `notes/plan.md`.\n",
    )
    .unwrap();
    git(&scratch.repo, &["add", "-A"]);
    git(&scratch.repo, &["commit", "-q", "-m", "oxi setup"]);

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
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let job = &report["jobs"][0];
    assert!(
        !scratch.repo.join("escaped.txt").exists(),
        "the script wrote into the main checkout"
    );
    assert_eq!(job["state"], "delivered", "{report:#}");
    let run_dir = std::path::Path::new(job["run_dir"].as_str().unwrap());
    let stderr_log = std::fs::read_to_string(run_dir.join("stderr.log")).unwrap();
    assert!(
        stderr_log.contains("main checkout write refused"),
        "{stderr_log}"
    );
    assert_eq!(meta(&report)["protection"]["kind"], "landlock");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_claude_behind_an_escaping_script_is_confined_and_delivers() {
    a_live_cli_behind_an_escaping_script(live::Cli::Claude).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_codex_without_its_sandbox_is_confined_by_landlock_and_delivers() {
    a_live_cli_behind_an_escaping_script(live::Cli::Codex).await;
}

#[test]
fn a_worker_that_repoints_its_worktree_head_at_main_is_stopped_before_oxi_commits() {
    // Its worktree's admin directory is writable (git needs it); pointing HEAD at main there
    // would have oxi's own commit of the verified work land on main.
    let s = Sandbox::empty();
    let script = s.file("bin/repoint.sh");
    s.write(
        "bin/repoint.sh",
        format!(
            "#!/bin/sh\n\
             echo 'ref: refs/heads/main' > \"$(git rev-parse --absolute-git-dir)/HEAD\"\n\
             exec {FAKE} \"$@\"\n"
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = repo(&script.display().to_string(), "edit", "");
    let main_before = git(r.path(), &["rev-parse", "main"]);
    let report = r.oxi(&["tick", "--format", "json"]).json();
    let job = &report["jobs"][0];
    assert_eq!(job["state"], "framework_fix_needed", "{report:#}");
    let detail = job["detail"].as_str().unwrap();
    assert!(
        detail.contains("changed its worktree's git metadata") && detail.contains("HEAD"),
        "{detail}"
    );
    assert_eq!(git(r.path(), &["rev-parse", "main"]), main_before);
}

#[test]
fn read_commands_say_when_roadmap_md_changed_since_the_last_ingest() {
    let s = repo(FAKE, "succeed", "");
    s.oxi(&["ingest"]).ok();
    const STALE: &str = "roadmap.md changed since the last ingest";
    for args in [&["plan"][..], &["tasks"], &["status"], &["route", "T0-1"]] {
        let run = s.oxi(args);
        run.ok();
        assert!(!run.stderr.contains(STALE), "{args:?}: {}", run.stderr);
    }
    s.write(
        "roadmap.md",
        format!("{ROADMAP}\n**T0-2 · Part**\nCreate `bye.txt`.\n"),
    );
    for args in [&["plan"][..], &["tasks"], &["status"], &["route", "T0-1"]] {
        let run = s.oxi(args);
        run.ok();
        assert!(run.stderr.contains(STALE), "{args:?}: {}", run.stderr);
    }
    s.oxi(&["ingest"]).ok();
    let run = s.oxi(&["plan"]);
    assert!(!run.stderr.contains(STALE), "{}", run.stderr);
    assert!(run.stdout.contains("T0-2"), "{}", run.stdout);
}
