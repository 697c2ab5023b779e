//! `oxi backup` and `oxi restore`: a backup taken while a tick runs, the restore drill of
//! docs/operations.md (back up mid-run, destroy the ledger, restore, the next tick recovers
//! with nothing lost and nothing run twice), and every refusal: a corrupt file, a file that
//! is not a ledger, a newer schema, a tick holding the ledger, a live run, an existing output.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oxi::ledger::{Ledger, TaskState};
use serde_json::Value;

use crate::support::{OxiToml, Sandbox, Worker, git};

const OXI: &str = env!("CARGO_BIN_EXE_oxi");

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nSay hi.\n\n**T0-2 · Add a farewell file**\nSay goodbye.\n";

/// A repository whose executor runs `scenario` (sleeping ones sleep a minute).
fn repo(scenario: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .project()
            .raw("[run]\nmax_parallel_jobs = 2\n")
            .raw("[caps]\nstall_timeout = \"5m\"\nkill_grace = \"500ms\"\n")
            .worker(Worker::fake("fake").scenario(scenario).sleep_ms(60_000))
            .routing(&["fake"], &[]),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

fn spawn(s: &Sandbox, args: &[&str]) -> Child {
    Command::new(OXI)
        .args(args)
        .current_dir(s.path())
        .env_remove("OXI_CONFIG")
        .env_remove("OXI_RUN_MODE")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn kill_9(child: &mut Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
}

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap()
}

/// Waits (up to a minute) until `n` runs are marked running.
fn wait_for_running(s: &Sandbox, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if s.file(".oxi/ledger.db").exists()
            && Ledger::open_existing(&s.file(".oxi/ledger.db"))
                .and_then(|l| l.read().running_runs())
                .is_ok_and(|runs| runs.len() >= n && runs.iter().all(|r| r.pid.is_some()))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{n} run(s) never started");
}

fn destroy_ledger(dir: &Path) {
    for name in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
}

fn event_kinds(s: &Sandbox) -> Vec<String> {
    let mut ledger = ledger(s);
    let conn = ledger.raw_connection();
    let mut stmt = conn.prepare("SELECT kind FROM events ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn restore_drill_back_up_mid_run_destroy_restore_and_the_next_tick_recovers() {
    let s = repo("sleep");
    let mut tick = spawn(&s, &["tick"]);
    wait_for_running(&s, 2);

    // A backup while the tick runs (and its workers write their leases and costs).
    let out = s
        .oxi(&["backup", "--output", "b.db", "--format", "json"])
        .json();
    assert_eq!(out["tasks"], 2, "{out:#}");
    let in_flight: Vec<&str> = out["running_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(in_flight.len(), 2, "{out:#}");
    assert!(in_flight.contains(&"T0-1") && in_flight.contains(&"T0-2"));
    let events_at_backup = out["events"].as_i64().unwrap();

    // While the tick holds the ledger, a restore is refused and changes nothing.
    let err = s.oxi(&["restore", "b.db"]).fails_with(1).to_owned();
    assert!(
        err.contains("refusing to restore") && err.contains("stop it first"),
        "{err}"
    );
    assert!(err.contains("nothing was replaced"), "{err}");

    // The machine dies: the tick and its workers go, then the ledger is lost.
    kill_9(&mut tick);
    destroy_ledger(&s.file(".oxi"));

    let out = s.oxi(&["restore", "b.db"]).ok().to_owned();
    assert!(out.contains("there was no ledger to replace"), "{out}");
    assert!(
        out.contains("after a restore the next tick reaps them"),
        "{out}"
    );
    let restored = ledger(&s);
    assert_eq!(restored.read().running_runs().unwrap().len(), 2);
    assert_eq!(
        restored.read().task("T0-1").unwrap().unwrap().state,
        TaskState::Dispatched
    );
    drop(restored);

    // The next tick reaps the two runs the backup had in flight (their supervisor is gone),
    // requeues their tasks and runs each once more, to the end.
    let text = s.read("oxi.toml").replace(
        "OXI_FAKE_SCENARIO = \"sleep\"",
        "OXI_FAKE_SCENARIO = \"edit\"",
    );
    s.write("oxi.toml", text);
    let report = s.oxi(&["tick", "--format", "json"]).json();
    assert_eq!(report["reaped"].as_array().unwrap().len(), 2, "{report:#}");
    let ledger = ledger(&s);
    for id in ["T0-1", "T0-2"] {
        assert_eq!(
            ledger.read().task(id).unwrap().unwrap().state,
            TaskState::Delivered,
            "{id}"
        );
        let runs = ledger.read().runs_for_task(id).unwrap();
        let executors: Vec<_> = runs.iter().filter(|r| r.role == "executor").collect();
        assert_eq!(
            executors.len(),
            2,
            "{id}: the reaped attempt and one more: {runs:#?}"
        );
        assert!(executors.iter().all(|r| r.status == "finished"), "{id}");
        assert_eq!(
            executors[0].classification.as_deref(),
            Some("reaped"),
            "{id}: {runs:#?}"
        );
    }
    assert!(ledger.read().running_runs().unwrap().is_empty());
    drop(ledger);
    // Nothing the backup held is lost: its events are all still there, then the restore.
    let kinds = event_kinds(&s);
    assert!(kinds.len() as i64 > events_at_backup);
    assert_eq!(
        kinds[events_at_backup as usize], "ledger_restored",
        "the restore is the first event after the backup's"
    );
}

#[test]
fn restore_keeps_the_replaced_ledger_and_refuses_while_a_run_is_live() {
    let s = repo("edit");
    s.oxi(&["tick"]).ok();
    s.oxi(&["backup", "-o", "before.db"]).ok();
    // An existing output is never overwritten.
    let err = s
        .oxi(&["backup", "-o", "before.db"])
        .fails_with(1)
        .to_owned();
    assert!(err.contains("before.db exists"), "{err}");
    // The default output is under .oxi/backups.
    let out = s.oxi(&["backup"]).ok().to_owned();
    assert!(out.contains(".oxi/backups/ledger-"), "{out}");

    s.oxi(&["cancel", "T0-1"]).ok();
    let out = s.oxi(&["restore", "before.db", "--format", "json"]).json();
    let aside = out["kept_aside"].as_str().unwrap().to_owned();
    assert!(aside.contains("ledger.db.replaced-"), "{out:#}");
    assert_eq!(
        ledger(&s).read().task("T0-1").unwrap().unwrap().state,
        TaskState::Delivered
    );
    let kept = Ledger::open_existing(Path::new(&aside)).unwrap();
    assert_eq!(
        kept.read().task("T0-1").unwrap().unwrap().state,
        TaskState::Cancelled
    );
    drop(kept);

    // A run outside the queue (`oxi run`, no tick lock) that is alive blocks a restore, by name.
    let text = s.read("oxi.toml").replace(
        "OXI_FAKE_SCENARIO = \"edit\"",
        "OXI_FAKE_SCENARIO = \"sleep\"",
    );
    s.write("oxi.toml", text);
    let mut run = spawn(&s, &["run", "-w", "fake", "wait a minute"]);
    wait_for_running(&s, 1);
    let live = ledger(&s).read().running_runs().unwrap()[0].id.clone();
    let err = s.oxi(&["restore", "before.db"]).fails_with(1).to_owned();
    assert!(
        err.contains("refusing to restore while runs are live"),
        "{err}"
    );
    assert!(err.contains(&live), "{err}");
    kill_9(&mut run);
}

#[test]
fn restore_checks_the_file_before_replacing_anything() {
    let s = repo("edit");
    s.oxi(&["tick"]).ok();
    let before = std::fs::read(s.file(".oxi/ledger.db")).unwrap();
    let unchanged = |s: &Sandbox| {
        assert_eq!(std::fs::read(s.file(".oxi/ledger.db")).unwrap(), before);
        assert!(
            std::fs::read_dir(s.file(".oxi"))
                .unwrap()
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().contains("replaced")),
            "nothing kept aside: nothing was replaced"
        );
    };

    s.write(
        "garbage.db",
        "this is not a database at all, just text that is long enough",
    );
    let err = s.oxi(&["restore", "garbage.db"]).fails_with(1).to_owned();
    assert!(
        err.contains("garbage.db is not a readable SQLite database"),
        "{err}"
    );
    unchanged(&s);

    let other = s.file("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE notes (x TEXT);")
        .unwrap();
    let err = s.oxi(&["restore", "other.db"]).fails_with(1).to_owned();
    assert!(err.contains("is not an oxi ledger"), "{err}");
    unchanged(&s);

    s.oxi(&["backup", "-o", "newer.db"]).ok();
    rusqlite::Connection::open(s.file("newer.db"))
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    let err = s.oxi(&["restore", "newer.db"]).fails_with(1).to_owned();
    let latest = oxi::ledger::MIGRATIONS.last().unwrap().version;
    assert!(
        err.contains(&format!(
            "has ledger schema version 999, but this oxi knows versions up to {latest}"
        )),
        "{err}"
    );
    unchanged(&s);

    // A page of the backup overwritten: integrity_check finds it.
    s.oxi(&["backup", "-o", "torn.db"]).ok();
    let mut bytes = std::fs::read(s.file("torn.db")).unwrap();
    let page = 4096;
    assert!(bytes.len() > 3 * page);
    for b in &mut bytes[2 * page + 100..3 * page] {
        *b = 0x5a;
    }
    std::fs::write(s.file("torn.db"), bytes).unwrap();
    let err = s.oxi(&["restore", "torn.db"]).fails_with(1).to_owned();
    assert!(
        err.contains("fails PRAGMA integrity_check") || err.contains("not a readable SQLite"),
        "{err}"
    );
    unchanged(&s);

    let err = s.oxi(&["restore", "missing.db"]).fails_with(1).to_owned();
    assert!(
        err.contains("missing.db") && err.contains("no such backup file"),
        "{err}"
    );
    unchanged(&s);
    let _: Value = s.oxi(&["status", "--format", "json"]).json();
}
