//! `oxi report` on a seeded ledger: every format snapshotted, the HTML page rendered in
//! headless Chromium and checked to draw.

use oxi::ledger::{
    Event, EventKind, Ledger, NewEvent, NewRun, RunEnd, TaskSpec, TaskState, VerifyRecord,
};
use oxi::report;

use crate::support::Sandbox;

const DAY: i64 = 86_400_000;
/// 2026-11-20T00:00:00Z.
const T0: i64 = 1_795_132_800_000;

fn spec(id: &str, order: u32) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        priority_tier: 0,
        title: format!("task {id}"),
        subtitle: None,
        body: String::new(),
        section: None,
        milestone: None,
        format: "oxi".into(),
        depends_on: Vec::new(),
        file_hints: Vec::new(),
        source_line: order,
        roadmap_order: order,
        content_hash: id.into(),
        roadmap_done: false,
    }
}

fn run(ledger: &mut Ledger, id: &str, task: &str, role: &str, at: i64, class: &str, cost: i64) {
    let day = oxi::clock::day_of(at);
    let month = oxi::clock::month_of(at);
    ledger
        .write(|q| {
            q.begin_run(&NewRun {
                id,
                task_id: Some(task),
                attempt: 1,
                role,
                worker: "claude",
                worker_kind: "claude",
                model: Some("claude-sonnet-4-5"),
                run_dir: "/runs",
                worktree: None,
                branch: None,
                started_at_ms: at,
                reserve_microusd: 500_000,
                day: &day,
                month: &month,
                actor: "oxi",
                supervisor_pid: 1,
            })?;
            q.finish_run(
                id,
                &RunEnd {
                    ended_at_ms: at + 600_000,
                    classification: class,
                    cost_microusd: cost,
                    input_tokens: 1000,
                    output_tokens: 100,
                    parse_failures: u64::from(class == "parse_failure"),
                    summary: Default::default(),
                    ..RunEnd::default()
                },
            )?;
            Ok(())
        })
        .unwrap();
}

fn event(ledger: &mut Ledger, at: i64, kind: EventKind, task: &str, data: serde_json::Value) {
    ledger
        .write(|q| {
            q.append_event(&NewEvent {
                at_ms: at,
                task_id: Some(task),
                run_id: None,
                actor: "oxi",
                event: Event::parse(kind.as_str(), &data).expect("data fits its kind"),
            })
            .map(|_| ())
        })
        .unwrap();
}

/// Four tasks over two days: merged, closed, a retry, a governance stop; CI, reviews, an
/// operator action and a budget breach.
fn seeded() -> (Sandbox, oxi::config::LoadedConfig) {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", "- [ ] x\n");
    s.write(
        "oxi.toml",
        "[caps]\ndaily_usd = 5.0\ndaily_soft_warn_usd = 2.0\n",
    );
    let config = oxi::config::load(&s.file("oxi.toml"), None).unwrap();
    let mut ledger = Ledger::open(&config.ledger_path()).unwrap();
    for (i, id) in ["T0-1", "T0-2", "T0-3", "T0-4"].iter().enumerate() {
        ledger
            .write(|q| q.insert_task(&spec(id, i as u32), TaskState::Queued, T0 - 2 * 3_600_000))
            .unwrap();
    }
    run(
        &mut ledger,
        "r1",
        "T0-1",
        "executor",
        T0,
        "success",
        1_200_000,
    );
    run(
        &mut ledger,
        "r2",
        "T0-2",
        "executor",
        T0 + 3_600_000,
        "success",
        800_000,
    );
    run(
        &mut ledger,
        "r3",
        "T0-3",
        "executor",
        T0 + DAY,
        "verify_failed_run",
        400_000,
    );
    run(
        &mut ledger,
        "r4",
        "T0-3",
        "executor",
        T0 + DAY + 3_600_000,
        "success",
        600_000,
    );
    run(
        &mut ledger,
        "r5",
        "T0-3",
        "reviewer",
        T0 + DAY + 7_200_000,
        "success",
        100_000,
    );
    run(
        &mut ledger,
        "r6",
        "T0-4",
        "executor",
        T0 + DAY,
        "parse_failure",
        300_000,
    );
    ledger
        .write(|q| {
            for (run_id, tier, ms, status) in [
                ("r1", "tier0", 4_000, "passed"),
                ("r2", "tier0", 6_000, "passed"),
                ("r3", "tier0", 5_000, "failed"),
                ("r4", "tier0", 5_500, "passed"),
                ("r4", "tier1", 60_000, "passed"),
            ] {
                q.insert_verify_result(&VerifyRecord {
                    run_id,
                    task_id: None,
                    tier,
                    name: "unit",
                    status,
                    exit_code: Some(i32::from(status != "passed")),
                    duration_ms: ms,
                    log_path: None,
                    at_ms: T0 + DAY,
                })?;
            }
            Ok(())
        })
        .unwrap();
    event(
        &mut ledger,
        T0 + 1_800_000,
        EventKind::PrOpened,
        "T0-1",
        serde_json::json!({ "number": 1 }),
    );
    event(
        &mut ledger,
        T0 + 5_400_000,
        EventKind::PrOpened,
        "T0-2",
        serde_json::json!({ "number": 2 }),
    );
    event(
        &mut ledger,
        T0 + DAY + 9_000_000,
        EventKind::PrOpened,
        "T0-3",
        serde_json::json!({ "number": 3 }),
    );
    event(
        &mut ledger,
        T0 + 2_000_000,
        EventKind::ReviewDecided,
        "T0-1",
        serde_json::json!({ "decision": "auto_approve", "review_skipped_reason": "auto-approved: verification green, 1 file(s)" }),
    );
    event(
        &mut ledger,
        T0 + 2_100_000,
        EventKind::CiResult,
        "T0-1",
        serde_json::json!({ "first_pass": true, "green": true }),
    );
    event(
        &mut ledger,
        T0 + 5_500_000,
        EventKind::CiResult,
        "T0-2",
        serde_json::json!({ "first_pass": true, "green": false }),
    );
    event(
        &mut ledger,
        T0 + DAY / 2,
        EventKind::PrMerged,
        "T0-1",
        serde_json::json!({ "number": 1, "by": "maintainer" }),
    );
    event(
        &mut ledger,
        T0 + DAY / 2,
        EventKind::PrClosed,
        "T0-2",
        serde_json::json!({ "number": 2 }),
    );
    event(
        &mut ledger,
        T0 + DAY,
        EventKind::OperatorAction,
        "T0-4",
        serde_json::json!({ "action": "retry" }),
    );
    event(
        &mut ledger,
        T0 + DAY,
        EventKind::GovernanceMemo,
        "T0-4",
        serde_json::json!({ "trigger": "governance", "memo": "protected: .github/workflows/ci.yml" }),
    );
    event(
        &mut ledger,
        T0 + DAY,
        EventKind::BudgetBreach,
        "T0-3",
        serde_json::json!({ "scope": "job" }),
    );
    (s, config)
}

const NOW: i64 = T0 + 2 * DAY;

#[test]
fn report_in_every_format_on_a_seeded_ledger() {
    let (_s, config) = seeded();
    let ledger = Ledger::open_existing(&config.ledger_path()).unwrap();
    let r = report::build(&config, &ledger, "all", NOW).unwrap();
    assert_eq!((r.merged, r.rejected), (1, 1));
    assert_eq!(r.maintainer_acceptance_rate, Some(0.5));
    assert_eq!(r.first_pass_ci_green_rate, Some(0.5));
    assert_eq!(r.executor_runs, 5);
    assert_eq!(r.failure_taxonomy.get("parse_failure"), Some(&1));
    let failed: Vec<&str> = r
        .gates
        .iter()
        .filter(|g| g.verdict == "fail")
        .map(|g| g.kpi)
        .collect();
    assert!(
        failed.contains(&"budget_breaches") && failed.contains(&"governance_violations"),
        "{failed:?}"
    );
    insta::assert_json_snapshot!("report_json", r);
    let mut table = oxi::output::Grid::new(["", "kpi", "value"]);
    for (a, b, c) in report::rows(&r) {
        table.row([a, b, c]);
    }
    insta::assert_snapshot!("report_table", table.render(oxi::output::Format::Table));
    insta::assert_snapshot!(
        "report_markdown",
        table.render(oxi::output::Format::Markdown)
    );
    insta::assert_snapshot!("report_html", report::html(&r));
    // The window: one day back sees only the second day's runs.
    let recent = report::build(&config, &ledger, "24h", NOW).unwrap();
    assert_eq!(recent.executor_runs, 3);
}

#[test]
fn the_cli_writes_each_format_and_refuses_a_bad_window() {
    let (s, _config) = seeded();
    for format in ["table", "markdown", "json", "html"] {
        let out = s.oxi(&["report", "--since", "all", "--format", format]);
        assert!(!out.ok().is_empty(), "{format}");
    }
    let file = s.file("report.html");
    s.oxi(&[
        "report",
        "--since",
        "all",
        "--format",
        "html",
        "--output",
        file.to_str().unwrap(),
    ])
    .ok();
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .starts_with("<!doctype html>")
    );
    let err = s
        .oxi(&["report", "--since", "last tuesday"])
        .fails_with(2)
        .to_owned();
    assert!(
        err.contains("--since") && err.contains("24h, 7d, 30d or all"),
        "{err}"
    );
}

fn chromium() -> Option<std::path::PathBuf> {
    let path = std::path::PathBuf::from("/usr/bin/chromium");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("CI=true but /usr/bin/chromium is missing; .ci/run installs the Debian package");
    }
    crate::support::skip(
        "chromium drawing",
        "chromium drawing test",
        "/usr/bin/chromium is missing",
        "apt-get install chromium (Debian's package, as .ci/run does)",
    );
    None
}

#[test]
fn the_html_report_draws_in_headless_chromium() {
    let Some(chromium) = chromium() else { return };
    let (s, config) = seeded();
    let ledger = Ledger::open_existing(&config.ledger_path()).unwrap();
    let page = s.file("report.html");
    std::fs::write(
        &page,
        report::html(&report::build(&config, &ledger, "all", NOW).unwrap()),
    )
    .unwrap();
    let shot = s.file("shot.png");
    let profile = s.file("chromium-profile");
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=800,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let pixels = &buf[..info.buffer_size()];
    let (mut bar_blue, mut cap_red, mut ink) = (0, 0, 0);
    for px in pixels.chunks(channels) {
        let (r, g, b) = (px[0], px[1], px[2]);
        if (r, g, b) == (0x3b, 0x82, 0xf6) {
            bar_blue += 1;
        }
        if r > 200 && g < 60 && b < 60 {
            cap_red += 1;
        }
        if r < 100 && g < 100 && b < 100 {
            ink += 1;
        }
    }
    assert!(
        bar_blue > 500,
        "the bars were not drawn ({bar_blue} blue pixels)"
    );
    assert!(
        cap_red > 20,
        "the daily cap line was not drawn ({cap_red} red pixels)"
    );
    assert!(ink > 2_000, "no text was drawn ({ink} dark pixels)");
}

/// Event data the report reads in SQL, hand-edited or odd: read as the typed reader would
/// (not JSON or a missing field is "not the value", a reason that is not text is none).
#[test]
fn odd_event_data_counts_as_it_reads_and_never_fails_the_report() {
    let (_s, config) = seeded();
    let mut ledger = Ledger::open_existing(&config.ledger_path()).unwrap();
    let before = report::build(&config, &ledger, "all", NOW).unwrap();
    assert_eq!(before.governance_violations, 1);
    assert_eq!(before.review_skips.get("auto-approved"), Some(&1));
    ledger
        .raw_connection()
        .execute_batch(&format!(
            "INSERT INTO events (at_ms, kind, task_id, actor, data) VALUES
               ({at}, 'governance_memo', 'T0-4', 'oxi', '{{\"trigger\":\"needs_approval\"}}'),
               ({at}, 'governance_memo', 'T0-4', 'oxi', 'not json at all'),
               ({at}, 'governance_memo', 'T0-4', 'oxi', '{{}}'),
               ({at}, 'ci_result', 'T0-3', 'oxi', 'not json'),
               ({at}, 'ci_result', 'T0-3', 'oxi', '{{\"first_pass\":\"true\",\"green\":true}}'),
               ({at}, 'ci_result', 'T0-3', 'oxi', '{{\"first_pass\":true,\"green\":1}}'),
               ({at}, 'review_decided', 'T0-3', 'oxi', '{{\"decision\":\"auto_approve\"}}'),
               ({at}, 'review_decided', 'T0-3', 'oxi', '{{\"decision\":\"auto_approve\",\"review_skipped_reason\":7}}'),
               ({at}, 'review_decided', 'T0-3', 'oxi', '{{\"decision\":\"auto_approve\",\"review_skipped_reason\":\"small diff: 3 lines\"}}'),
               ({at}, 'review_decided', 'T0-3', 'oxi', '{{\"decision\":\"request_changes\",\"review_skipped_reason\":\"x\"}}'),
               ({at}, 'review_decided', 'T0-3', 'oxi', '[1, 2]');",
            at = T0 + DAY
        ))
        .unwrap();
    let after = report::build(&config, &ledger, "all", NOW).unwrap();
    // needs_approval is not a violation; not-JSON and no trigger are.
    assert_eq!(after.governance_violations, 3);
    // Only a JSON `true` first_pass is a first CI result; green must be JSON `true` too
    // (the seeded two were one green of two; the odd rows add one first result, not green).
    assert_eq!(after.first_pass_ci_green_rate, Some(1.0 / 3.0));
    assert_eq!(after.review_skips.get("auto-approved"), Some(&3));
    assert_eq!(after.review_skips.get("small diff"), Some(&1));
    assert_eq!(after.review_skips.values().sum::<usize>(), 4);
}
