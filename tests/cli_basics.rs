//! init, status, pause/resume and the global flags, as a user runs them.

use crate::support::Sandbox;

#[test]
fn init_writes_oxi_toml_and_state_dir_and_nothing_else() {
    let s = Sandbox::git_repo();
    let before: Vec<String> = list(s.path());
    insta::assert_snapshot!("init_output", s.oxi(&["init"]).ok());
    let mut after = list(s.path());
    after.retain(|f| !before.contains(f));
    assert_eq!(
        after,
        ["oxi.toml", ".oxi"].map(String::from).to_vec().tap_sort()
    );
    let mut state: Vec<String> = list(&s.file(".oxi"));
    state.retain(|f| !f.starts_with("ledger.db-"));
    assert_eq!(
        state,
        [".gitignore", "ledger.db", "runs"]
            .map(String::from)
            .to_vec()
    );
    assert_eq!(s.read(".oxi/.gitignore"), "*\n");
    // git sees nothing new but oxi.toml.
    let porcelain = crate::support::git(s.path(), &["status", "--porcelain"]);
    assert_eq!(porcelain, "?? oxi.toml");
    // A second init keeps the user's edits.
    s.write("oxi.toml", "[run]\nmax_parallel_jobs = 2\n");
    s.oxi(&["init"]).ok();
    assert_eq!(s.read("oxi.toml"), "[run]\nmax_parallel_jobs = 2\n");
}

trait TapSort {
    fn tap_sort(self) -> Self;
}

impl TapSort for Vec<String> {
    fn tap_sort(mut self) -> Self {
        self.sort();
        self
    }
}

fn list(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".git")
        .collect();
    names.sort();
    names
}

#[test]
fn status_and_killswitch() {
    let s = Sandbox::initialised("- [ ] one\n- [x] two\n- [ ] three\n");
    s.oxi(&["ingest"]).ok();
    let status = s.oxi(&["status", "--format", "json"]).json();
    assert_eq!(status["tasks"]["queued"], 2);
    assert_eq!(status["tasks"]["done"], 1);
    assert_eq!(status["paused"], false);
    assert_eq!(status["spend"]["daily_cap_usd"], 20.0);

    s.oxi(&["pause", "--reason", "deploy freeze"]).ok();
    let status = s.oxi(&["status", "--format", "json"]).json();
    assert_eq!(status["paused"], true);
    assert_eq!(status["killswitch"]["by"], "operator:tester");
    assert_eq!(status["killswitch"]["reason"], "deploy freeze");
    assert!(s.oxi(&["pause"]).ok().contains("already paused"));
    assert!(s.oxi(&["resume"]).ok().contains("resumed"));
    assert_eq!(
        s.oxi(&["status", "--format", "json"]).json()["paused"],
        false
    );

    let table = s.oxi(&["status"]).ok().to_owned();
    assert!(table.contains("queued 2, done 1"), "{table}");
    let markdown = s.oxi(&["status", "--format", "markdown"]).ok().to_owned();
    assert!(markdown.contains("| mode"), "{markdown}");
}

#[test]
fn config_flag_and_discovery_from_a_subdirectory() {
    let s = Sandbox::initialised("- [ ] one\n");
    std::fs::create_dir_all(s.file("deep/er")).unwrap();
    let run = {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_oxi"));
        c.args(["ingest", "--format", "json"])
            .current_dir(s.file("deep/er"))
            .env("NO_COLOR", "1")
            .env_remove("OXI_CONFIG");
        c.output().unwrap()
    };
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let other = Sandbox::empty();
    let cfg = s.file("oxi.toml");
    let status = other.oxi(&[
        "--config",
        cfg.to_str().unwrap(),
        "status",
        "--format",
        "json",
    ]);
    assert_eq!(status.json()["tasks"]["queued"], 1);
}

#[test]
fn status_before_any_ingest_is_friendly() {
    let s = Sandbox::git_repo();
    s.write("oxi.toml", "");
    let stderr = s.oxi(&["status"]).fails_with(4).to_owned();
    assert!(stderr.contains("oxi init"), "{stderr}");
}

/// The README's first command: the whole loop on a sample repository, offline.
#[test]
fn oxi_demo_runs_the_whole_loop_offline() {
    let s = Sandbox::empty();
    let dir = s.path().join("demo");
    let started = std::time::Instant::now();
    let out = s.oxi(&["demo", "--dir", dir.to_str().unwrap()]);
    let text = out.ok().to_owned();
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    for needle in [
        "tick 1: ingest: 3 tasks added",
        "verify_failed -> queued",
        "notes/changelog.md: the first line must be a '# ' title",
        "T1-1 attempt 2",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    let branches = crate::support::git(&dir, &["branch", "--list", "oxi/*"]);
    assert_eq!(branches.lines().count(), 3, "{branches}");
    let note = crate::support::git(
        &dir,
        &["show", "oxi/t1-1-write-the-changelog:notes/changelog.md"],
    );
    assert!(note.starts_with("# Write the changelog"), "{note}");
    // Triage on what the demo left: the task's runs, history and artifacts, and a transcript.
    let oxi_in = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_oxi"))
            .args(args)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let shown = oxi_in(&["show", "T1-1"]);
    for needle in [
        "state delivered",
        "verification red",
        "[verify_failed]",
        "auto-approved",
        "summary.md",
        "verify-tier0-0-notes-have-titles.log",
    ] {
        assert!(
            shown.contains(needle),
            "oxi show lacks {needle:?}:\n{shown}"
        );
    }
    let logs = oxi_in(&["logs", "T1-1"]);
    assert!(
        logs.contains("→ Write") && logs.contains("■ success"),
        "{logs}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&oxi_in(&["show", "T1-1", "--format", "json"])).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 2);
    // A non-empty directory is refused rather than overwritten.
    let again = s.oxi(&["demo", "--dir", dir.to_str().unwrap()]);
    assert!(again.fails_with(1).contains("is not empty"));
}

#[test]
fn completions_man_and_schedule_files_are_generated() {
    let s = Sandbox::git_repo();
    let bash = s.oxi(&["completions", "bash"]);
    assert!(bash.ok().contains("_oxi()") && bash.stdout.contains("tick"));
    let man = s.oxi(&["man"]);
    assert!(man.ok().contains(".TH oxi 1"));
    let root = s.path().canonicalize().unwrap().display().to_string();
    for (kind, needles) in [
        (
            "cron",
            vec!["*/15 * * * *", " tick; } >> .oxi/tick.log 2>&1"],
        ),
        (
            "systemd",
            vec![
                "Type=oneshot",
                "OnUnitInactiveSec=15min",
                "WorkingDirectory=",
            ],
        ),
        (
            "launchd",
            vec![
                "<key>StartInterval</key><integer>900</integer>",
                "<string>tick</string>",
            ],
        ),
    ] {
        // Its own HOME: `--schedule cron|systemd` creates ~/.config/oxi/env when missing.
        let home = s.path().join("home").display().to_string();
        let out = s.oxi_env(&["init", "--schedule", kind], &[("HOME", &home)]);
        let text = out.ok();
        for needle in needles {
            assert!(text.contains(needle), "{kind} lacks {needle:?}:\n{text}");
        }
        assert!(text.contains(&root), "{kind} names the repository:\n{text}");
    }
    assert!(!s.file("oxi.toml").exists(), "--schedule only prints");
}
