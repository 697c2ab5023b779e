//! The scheduler's shape: `oxi tick` and `oxi saturate` go through one public surface, doctor
//! checks dispatch through the preflight module (not the tick), and the tick's outcome word and
//! exit status come from one type.

use std::path::Path;

use oxi::scheduler::Outcome;

use crate::support::Sandbox;

fn source(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// saturate reaches the scheduler's steps through `scheduler/mod.rs` only: none of the private
/// submodules that implement them.
#[test]
fn saturate_uses_only_the_scheduler_surface() {
    let text = source("src/scheduler/saturate.rs");
    for private in ["admission", "claim", "landed", "outcome", "pass", "reap"] {
        for path in [
            format!("super::{private}::"),
            format!("scheduler::{private}::"),
        ] {
            assert!(
                !text.contains(&path),
                "saturate.rs reaches into {path} (use the surface in scheduler/mod.rs)"
            );
        }
    }
}

/// doctor's dispatch verdict comes from the preflight module, below the scheduler.
#[test]
fn doctor_does_not_call_into_the_scheduler() {
    let mut files = vec!["src/doctor.rs".to_owned()];
    if let Ok(dir) = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/doctor")) {
        files.extend(
            dir.flatten()
                .map(|e| format!("src/doctor/{}", e.file_name().to_string_lossy())),
        );
    }
    for file in files {
        let text = source(&file);
        for layer in ["crate::scheduler", "crate::tick"] {
            assert!(!text.contains(layer), "{file} calls into {layer}");
        }
    }
    assert!(source("src/doctor.rs").contains("crate::preflight::blocking_problems"));
}

/// The words `oxi tick` prints and stores, and their exit statuses (docs/cli.md).
#[test]
fn each_tick_outcome_has_its_documented_word_and_exit_status() {
    let table = [
        (Outcome::NothingToDo, "nothing_to_do", 0),
        (Outcome::Dispatched, "dispatched", 0),
        (Outcome::Failures, "failures", oxi::exit::TASK_FAILURES),
        (Outcome::Budget, "budget", oxi::exit::BUDGET),
        (
            Outcome::BudgetHeldByRunsInFlight,
            "budget_held_by_runs_in_flight",
            0,
        ),
        (Outcome::Paused, "paused", 0),
        (Outcome::Blocked, "blocked", oxi::exit::BLOCKED),
        (Outcome::AlreadyRunning, "already_running", 0),
    ];
    for (outcome, word, code) in table {
        assert_eq!(outcome.as_str(), word);
        assert_eq!(outcome.to_string(), word);
        assert_eq!(outcome.exit_code(), code, "{word}");
    }
}

/// A tick with nothing to do, and a tick that finds the lock held, print their outcome word.
#[test]
fn the_tick_prints_its_outcome_word() {
    let s = Sandbox::initialised("# Roadmap\n\n- [x] write the release notes\n");
    let report = s.oxi(&["tick", "--format", "json"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    assert_eq!(report.json()["outcome"], "nothing_to_do");

    let state_dir = s.path().join(".oxi");
    std::fs::create_dir_all(&state_dir).unwrap();
    let _held = oxi::scheduler::lock::acquire(&state_dir.join("tick.lock")).unwrap();
    let busy = s.oxi(&["tick", "--format", "json"]);
    assert_eq!(busy.code, 0, "{}", busy.stderr);
    assert_eq!(busy.json()["outcome"], "already_running");
}
