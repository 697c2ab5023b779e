//! `oxi report`'s value KPIs through the binary: the external-value share (a `labels:` line or
//! a section names one of `[kpi] external_labels`) against its gate, time and worker calls per
//! task at median and p90 against `[kpi]` targets, and bad `[kpi]` values refused with the key.

use serde_json::Value;

use crate::support::{OxiToml, Sandbox, Worker, git};

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · Fix the reported crash**\nA user's crash report.\nlabels: bug, External\n\n**T0-2 · Tidy the notes**\nInternal housekeeping.\n\n## External requests\n\n**T0-3 · Answer the maintainer**\nWhat the maintainer asked for.\n";

fn delivered_three(extra: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .raw("[run]\nmode = \"fast\"\nmax_parallel_jobs = 1\n")
            .worker(Worker::fake("exec").scenario("edit"))
            .worker(Worker::fake("reviewer").scenario("review:approve"))
            .routing(&["exec"], &["reviewer"])
            .raw("[verify]\ntier0 = [{ name = \"green\", argv = [\"true\"], timeout = \"30s\" }]\n")
            .raw(extra),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    for _ in 0..3 {
        s.oxi(&["tick"]);
    }
    s
}

fn gate<'a>(report: &'a Value, kpi: &str) -> &'a Value {
    report["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["kpi"] == kpi)
        .unwrap_or_else(|| panic!("no gate {kpi}: {report:#}"))
}

#[test]
fn the_external_share_counts_labelled_and_sectioned_tasks_against_its_gate() {
    let s = delivered_three("");
    let report = s.oxi(&["report", "--format", "json"]).json();
    let value = &report["value"];
    assert_eq!(value["tasks_worked"], 3, "{report:#}");
    assert_eq!(value["external_tasks"], 2, "{report:#}");
    let share = value["external_value_share"].as_f64().unwrap();
    assert!((share - 2.0 / 3.0).abs() < 1e-9, "{share}");
    // Fast mode merges nothing: no cost per merged pull request.
    assert_eq!(value["merged_pull_requests"], 0);
    assert!(value["cost_per_merged_pr_usd"].is_null());
    let external = gate(&report, "external_value_share");
    assert_eq!(external["target"], ">= 0.8");
    assert_eq!(external["verdict"], "fail");
    // One worker call per task: median and p90 of 1, within the default targets.
    for kpi in ["worker_calls_per_task_median", "worker_calls_per_task_p90"] {
        assert_eq!(gate(&report, kpi)["value"], 1.0, "{kpi}");
        assert_eq!(gate(&report, kpi)["verdict"], "pass", "{kpi}");
    }
    for kpi in ["time_per_task_median_minutes", "time_per_task_p90_minutes"] {
        assert_eq!(gate(&report, kpi)["verdict"], "pass", "{kpi}");
    }
    // The table says it in words.
    let table = s.oxi(&["report"]).ok().to_owned();
    assert!(
        table.contains("external-value share")
            && table.contains("67% (2 of 3 tasks worked; labels external)"),
        "{table}"
    );
    assert!(table.contains("- (0 merged)"), "{table}");
}

#[test]
fn kpi_targets_and_labels_are_read_from_the_config() {
    let s = delivered_three(
        "[kpi]\nmin_external_value_share = 0.6\nexternal_labels = [\"bug\"]\nmax_worker_calls_per_task_p90 = 0.5\n",
    );
    let report = s.oxi(&["report", "--format", "json"]).json();
    // Only the `bug` label counts now: one task of three.
    assert_eq!(report["value"]["external_tasks"], 1, "{report:#}");
    assert_eq!(gate(&report, "external_value_share")["target"], ">= 0.6");
    assert_eq!(gate(&report, "external_value_share")["verdict"], "fail");
    let calls = gate(&report, "worker_calls_per_task_p90");
    assert_eq!(calls["target"], "<= 0.5");
    assert_eq!(calls["verdict"], "fail");
}

#[test]
fn bad_kpi_values_are_refused_with_file_line_and_key() {
    for (toml, key) in [
        (
            "[kpi]\nmin_external_value_share = 80\n",
            "kpi.min_external_value_share",
        ),
        (
            "[kpi]\nmax_worker_calls_per_task_median = -1.0\n",
            "kpi.max_worker_calls_per_task_median",
        ),
        (
            "[kpi]\nexternal_labels = [\"a, b\"]\n",
            "kpi.external_labels",
        ),
        (
            "[kpi]\nmax_time_per_task_p90 = \"soon\"\n",
            "kpi.max_time_per_task_p90",
        ),
    ] {
        let s = Sandbox::git_repo();
        s.write("oxi.toml", toml);
        s.write("roadmap.md", "- [ ] something\n");
        let err = s.oxi(&["status"]).fails_with(3).to_owned();
        assert!(
            err.contains("oxi.toml:") && err.contains(key),
            "{toml}: {err}"
        );
    }
}

/// A job that ends during explore (the planner's answer was invalid twice) withdraws the
/// executor run the claim had admitted: finished `withdrawn`, its reservation released, and
/// left out of the job success rate's denominator and every other run count.
#[test]
fn an_executor_run_withdrawn_during_explore_is_not_a_failed_run() {
    let s = Sandbox::git_repo();
    s.write(
        "roadmap.md",
        "# Roadmap\n\n## Tier 0\n\n**T0-1 · Greet newcomers**\nMake the project friendlier.\n",
    );
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .raw("[run]\nmode = \"fast\"\nmax_parallel_jobs = 1\n")
            .worker(Worker::fake("exec").scenario("edit"))
            .worker(Worker::fake("planner").scenario("plan-bad"))
            .worker(Worker::fake("reviewer").scenario("review:approve"))
            .raw("[routing]\nexecutor = [\"exec\"]\nreviewer = [\"reviewer\"]\nplanner = [\"planner\"]\n"),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s.oxi(&["tick"]).ok();
    let mut ledger = oxi::ledger::Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let (class, spend): (String, String) = ledger
        .raw_connection()
        .query_row(
            "SELECT runs.classification, spend.status FROM runs JOIN spend ON spend.run_id = runs.id
             WHERE runs.task_id = 'T0-1' AND runs.role = 'executor'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((class.as_str(), spend.as_str()), ("withdrawn", "released"));
    let report = s.oxi(&["report", "--format", "json"]).json();
    assert_eq!(report["executor_runs"], 0, "{report:#}");
    assert!(report["job_success_rate"].is_null(), "{report:#}");
    assert!(
        report["failure_taxonomy"].get("worker_error").is_none(),
        "{report:#}"
    );
}
