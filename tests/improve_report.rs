//! Auto-improve around its scans, through the binary: `oxi report`'s improve section in every
//! format, the staleness warning in `oxi doctor` and `oxi report` when no scan finished within
//! `improve.stale_after`, and `oxi init --schedule improve`, whose crontab line runs a scan as
//! printed in cron's empty environment.

use std::path::Path;
use std::process::Command;

use oxi::ledger::Ledger;
use serde_json::Value;

use crate::support::{OxiToml, Sandbox, git};

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · supervisor budget caps for coding agents**\n\nKeep every coding agent run under the ledger's budget caps.\n";

/// A repository with `[improve]` and an X source printing three posts.
fn sandbox() -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write("src/supervisor.rs", "// supervisor\n");
    s.write(".gitignore", ".oxi/\nx-cmd\nhome/\n");
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "Add the supervisor"]);
    let command = s.path().join("x-cmd");
    std::fs::write(
        &command,
        "#!/bin/sh\ncat <<'JSON'\n[{\"url\":\"https://x.com/p/status/1\",\"text\":\"A supervisor for coding agents under budget caps\"},\n {\"url\":\"https://x.com/p/status/2\",\"text\":\"Budget caps in the ledger for each coding agent\"},\n {\"url\":\"https://x.com/p/status/3\",\"text\":\"Coding agents and their supervisor ledger\"}]\nJSON\n",
    )
    .unwrap();
    let mut perms = std::fs::metadata(&command).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&command, perms).unwrap();
    s.config(&OxiToml::new().project().raw(&format!(
        "[improve]\nstale_after = \"36h\"\n\n[[improve.sources]]\nkind = \"x\"\ncommand = [\"{}\"]\naccounts = [\"someone\"]\n",
        command.display()
    )));
    s
}

fn improve_check(s: &Sandbox) -> Value {
    let run = s.oxi(&["doctor", "--format", "json"]);
    let json = run.json();
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "auto-improve")
        .cloned()
        .unwrap_or_else(|| panic!("no auto-improve check: {json:#}"))
}

#[test]
fn the_report_has_an_improve_section_in_every_format() {
    let s = sandbox();
    // Without [improve] there is no section at all.
    let plain = Sandbox::git_repo();
    plain.write("roadmap.md", ROADMAP);
    plain.config(&OxiToml::new().project());
    plain.oxi(&["init"]).ok();
    let json = plain.oxi(&["report", "--format", "json"]).json();
    assert!(json.get("improve").is_none(), "{json:#}");

    s.oxi(&["init"]).ok();
    let scan = s.oxi(&["improve", "scan", "--format", "json"]).json();
    assert_eq!(scan["proposed"], 3, "{scan:#}");
    s.oxi(&["improve", "accept", "1"]).ok();
    s.oxi(&["improve", "reject", "2", "--why", "not now"]).ok();

    let json = s
        .oxi(&["report", "--since", "7d", "--format", "json"])
        .json();
    let section = &json["improve"];
    assert_eq!(section["scans"], 1, "{json:#}");
    assert_eq!(section["emitted"], 3);
    assert_eq!(section["accepted"], 1);
    assert_eq!(section["rejected"], 1);
    let ratio = section["acceptance_ratio"].as_f64().unwrap();
    assert!((ratio - 1.0 / 3.0).abs() < 1e-9, "{ratio}");
    assert_eq!(section["spend_usd"], 0.0);
    assert!(section["last_scan_at"].as_str().is_some());
    assert!(section["stale"].is_null(), "{section}");

    let text = s.oxi(&["report", "--since", "7d"]);
    let text = text.ok();
    for needle in ["improve", "proposals emitted", "acceptance ratio", "33%"] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let markdown = s.oxi(&["report", "--since", "7d", "--format", "markdown"]);
    let line = markdown
        .ok()
        .lines()
        .find(|l| l.starts_with("| improve | acceptance ratio "))
        .unwrap_or_else(|| panic!("{}", markdown.stdout));
    assert!(line.contains("| 33% "), "{line}");
    let html = s.oxi(&["report", "--since", "7d", "--format", "html"]);
    assert!(
        html.ok()
            .contains("<td>improve</td><td>acceptance ratio</td><td>33%</td>"),
        "{}",
        html.stdout
    );
}

#[test]
fn doctor_and_report_warn_when_no_scan_finished_within_stale_after() {
    let s = sandbox();
    s.oxi(&["init"]).ok();
    let never = improve_check(&s);
    assert_eq!(never["status"], "warn", "{never}");
    assert!(
        never["detail"]
            .as_str()
            .unwrap()
            .contains("no auto-improve scan has finished yet"),
        "{never}"
    );
    assert!(
        never["fix"]
            .as_str()
            .unwrap()
            .contains("oxi init --schedule improve"),
        "{never}"
    );

    s.oxi(&["improve", "scan"]).ok();
    assert_eq!(improve_check(&s)["status"], "ok");

    // The scan finished 40 hours ago: past the 36 hours allowed.
    let ago = oxi::clock::now_ms() - 40 * 3_600_000;
    {
        let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
        ledger
            .raw_connection()
            .execute(
                "UPDATE improve_scans SET started_at_ms = ?1, finished_at_ms = ?1",
                [ago],
            )
            .unwrap();
    }
    let stale = improve_check(&s);
    assert_eq!(stale["status"], "warn", "{stale}");
    let detail = stale["detail"].as_str().unwrap();
    assert!(
        detail.contains("no auto-improve scan has finished for 40 h (improve.stale_after 36h)"),
        "{detail}"
    );
    let report = s.oxi(&["report", "--format", "json"]).json();
    assert!(
        report["improve"]["stale"]
            .as_str()
            .is_some_and(|w| w.contains("for 40 h")),
        "{report:#}"
    );
    let text = s.oxi(&["report"]);
    assert!(
        text.ok()
            .contains("no auto-improve scan has finished for 40 h"),
        "{}",
        text.stdout
    );
}

/// The line's command (after the five schedule fields), as cron hands it to sh.
fn cron_command(printed: &str) -> String {
    let line = printed
        .lines()
        .find(|l| l.starts_with("17 6 * * * "))
        .unwrap_or_else(|| panic!("no daily crontab line in:\n{printed}"));
    line.splitn(6, ' ').nth(5).unwrap().replace("\\%", "%")
}

fn as_cron(command: &str, home: &Path) -> std::process::Output {
    Command::new("env")
        .arg("-i")
        .arg(format!("HOME={}", home.display()))
        .arg("PATH=/usr/bin:/bin")
        .args(["sh", "-c", command])
        .output()
        .unwrap()
}

#[test]
fn init_schedule_improve_prints_every_scheduler_and_its_cron_line_scans() {
    let s = sandbox();
    let home = s.file("home");
    std::fs::create_dir_all(&home).unwrap();
    let home_text = home.display().to_string();
    let out = s.oxi_env(&["init", "--schedule", "improve"], &[("HOME", &home_text)]);
    let printed = out.ok().to_owned();
    let root = s.path().canonicalize().unwrap().display().to_string();
    for needle in [
        "# ---- crontab line (auto-improve, daily)",
        " improve scan; } >> .oxi/improve.log 2>&1",
        "# ---- oxi-improve.service",
        "improve scan\n",
        "OnCalendar=*-*-* 06:17:00",
        "Persistent=true",
        "<string>improve</string><string>scan</string>",
        "<key>Hour</key><integer>6</integer>",
        "# ---- .github/workflows/oxi-improve.yml",
        "    - cron: \"17 6 * * *\"",
        "key: oxi-ledger-${{ github.run_id }}",
        "run: oxi improve scan",
    ] {
        assert!(printed.contains(needle), "lacks {needle:?}:\n{printed}");
    }
    assert!(printed.contains(&root), "{printed}");
    assert!(!printed.contains("{%"), "{printed}");
    // The workflow: no template syntax left, two-space indentation throughout, no tabs.
    let workflow = printed
        .split("# ---- .github/workflows/oxi-improve.yml\n")
        .nth(1)
        .unwrap();
    assert!(
        workflow.contains("\njobs:\n  scan:\n    runs-on: ubuntu-latest\n"),
        "{workflow}"
    );
    assert!(
        workflow
            .lines()
            .all(|l| !l.contains('\t') && (l.len() - l.trim_start().len()) % 2 == 0),
        "{workflow}"
    );

    // As cron runs it: an empty environment, the env file the command created.
    assert!(home.join(".config/oxi/env").exists());
    let cron = as_cron(&cron_command(&printed), &home);
    let log = std::fs::read_to_string(s.file(".oxi/improve.log")).unwrap_or_default();
    assert!(cron.status.success(), "{cron:?}\nimprove.log:\n{log}");
    assert!(log.contains("scan #1: 3 candidates"), "{log}");
    let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let finished: i64 = ledger
        .raw_connection()
        .query_row(
            "SELECT COUNT(*) FROM improve_scans WHERE finished_at_ms IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(finished, 1);
}
