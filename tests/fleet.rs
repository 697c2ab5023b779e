//! Several hosts on one ledger, as far as one machine can show it: `[host]` name and labels,
//! the heartbeat and `oxi hosts`, the host recorded on each run, routing rules that require
//! host labels (held with the reason when no live host has them, left to the host that has
//! them), `--host` on tasks/status/plan, and doctor's unique-name check. Other hosts are
//! written into the ledger as their heartbeats would be.

use std::collections::BTreeMap;

use oxi::ledger::{HostBeat, Ledger, TaskState};
use serde_json::Value;

use crate::support::{OxiToml, Sandbox, Worker, git};

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · Train the model**\nRuns on a GPU.\n\n**T0-2 · Add a farewell file**\nSay goodbye.\n";

/// A repository whose host is `alpha` with `labels`, and `extra` TOML.
fn repo(labels: &str, extra: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .project()
            .worker(Worker::fake("fake").scenario("edit"))
            .routing(&["fake"], &[])
            .raw("[run]\nmax_parallel_jobs = 2\n")
            .raw(&format!("[host]\nname = \"alpha\"\nlabels = {labels}\n"))
            .raw(extra),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

const GPU_RULE: &str = "[[routing.rules]]\nname = \"gpu-work\"\nrequires = [\"gpu\"]\nexecutor = [\"fake\"]\nwhen = { title = \"(?i)train\" }\n";

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap()
}

/// Writes another host's heartbeat into the ledger, `age_ms` ago.
fn other_host(s: &Sandbox, name: &str, machine: &str, labels: &[&str], age_ms: i64) {
    let labels: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
    let versions = BTreeMap::from([("fake".to_owned(), "9.9.9".to_owned())]);
    let at_ms = oxi::clock::now_ms() - age_ms;
    ledger(s)
        .write(|q| {
            q.host_heartbeat(&HostBeat {
                name,
                machine_id: machine,
                labels: &labels,
                pid: 4242,
                oxi_version: "0.1.0",
                cli_versions: &versions,
                at_ms,
            })
        })
        .unwrap();
}

fn state(s: &Sandbox, id: &str) -> TaskState {
    ledger(s).read().task(id).unwrap().unwrap().state
}

/// `oxi hosts --format json` with what changes between runs (times, pids, machine ids)
/// replaced by placeholders.
fn hosts_json(s: &Sandbox) -> Value {
    let mut hosts = s.oxi(&["hosts", "--format", "json"]).json();
    for host in hosts.as_array_mut().unwrap() {
        for key in ["last_heartbeat", "last_heartbeat_ms", "pid"] {
            host[key] = Value::from(format!("[{key}]"));
        }
        let this = host["this_host"].as_bool().unwrap();
        host["machine_id"] = Value::from(if this { "[this machine]" } else { "[other]" });
    }
    hosts
}

#[test]
fn a_tick_heartbeats_and_records_its_host_on_each_run() {
    let s = repo("[\"linux\", \"GPU\"]", "");
    s.oxi(&["hosts"]).fails_with(4);
    s.oxi(&["tick"]).ok();
    insta::assert_json_snapshot!("hosts_after_tick", hosts_json(&s));
    let table = s.oxi(&["hosts"]).ok().to_owned();
    assert!(table.starts_with("HOST "), "{table}");
    assert!(table.contains("alpha (this host)  yes"), "{table}");
    assert!(table.contains("gpu, linux"), "{table}");
    assert!(table.contains("fake 2.1.328"), "{table}");
    assert!(table.ends_with("1 host(s), 1 live\n"), "{table}");
    // Every run this tick started says where.
    let hosts = ledger(&s).read().task_hosts().unwrap();
    assert_eq!(hosts.get("T0-1").map(String::as_str), Some("alpha"));
    assert_eq!(hosts.get("T0-2").map(String::as_str), Some("alpha"));
}

#[test]
fn a_task_whose_rule_requires_labels_no_live_host_has_waits_with_the_reason() {
    let s = repo("[\"linux\"]", GPU_RULE);
    let out = s.oxi(&["tick", "--format", "json"]).json();
    let deferred = out["deferred"].as_array().unwrap();
    assert_eq!(deferred.len(), 1, "{out:#}");
    assert_eq!(deferred[0]["task_id"], "T0-1");
    let reason = deferred[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("no live host has the labels gpu")
            && reason.contains("\"gpu-work\"")
            && reason.contains("[host] labels"),
        "{reason}"
    );
    assert_eq!(state(&s, "T0-1"), TaskState::Queued);
    assert_eq!(state(&s, "T0-2"), TaskState::Delivered);
    // The plan says so too, with which live hosts could take it.
    let plan = s.oxi(&["plan", "--format", "json"]).json();
    assert_eq!(plan[0]["id"], "T0-1");
    assert_eq!(plan[0]["requires"], serde_json::json!(["gpu"]));
    assert_eq!(plan[0]["hosts"], serde_json::json!([]));
    assert!(
        plan[0]["held_reason"]
            .as_str()
            .unwrap()
            .contains("no live host has the labels gpu")
    );
    let table = s.oxi(&["plan"]).ok().to_owned();
    assert!(table.contains("HOSTS"), "{table}");
    assert!(table.contains("none live"), "{table}");

    // A live host with the label: this one leaves the task to it (no deferral recorded),
    // and the plan no longer holds it; seen from alpha, it waits for beta.
    other_host(&s, "beta", "machine-b", &["gpu", "linux"], 0);
    let out = s.oxi(&["tick", "--format", "json"]).json();
    assert_eq!(out["deferred"], serde_json::json!([]), "{out:#}");
    assert_eq!(state(&s, "T0-1"), TaskState::Queued);
    let plan = s.oxi(&["plan", "--format", "json"]).json();
    assert_eq!(plan[0]["held_reason"], Value::Null, "{plan:#}");
    assert_eq!(plan[0]["hosts"], serde_json::json!(["beta"]));
    let seen_from_alpha = s
        .oxi(&["plan", "--host", "alpha", "--format", "json"])
        .json();
    assert!(
        seen_from_alpha[0]["held_reason"]
            .as_str()
            .unwrap()
            .contains("which alpha lacks; beta has them"),
        "{seen_from_alpha:#}"
    );
    let seen_from_beta = s
        .oxi(&["plan", "--host", "beta", "--format", "json"])
        .json();
    assert_eq!(seen_from_beta[0]["held_reason"], Value::Null);

    // A host that stopped heartbeating does not count.
    let s = repo("[\"linux\"]", GPU_RULE);
    s.oxi(&["ingest"]).ok();
    other_host(&s, "gamma", "machine-c", &["gpu"], 3_600_000);
    let out = s.oxi(&["tick", "--format", "json"]).json();
    assert_eq!(out["deferred"][0]["task_id"], "T0-1", "{out:#}");

    // Given the label, this host takes it.
    let text = s
        .read("oxi.toml")
        .replace("labels = [\"linux\"]", "labels = [\"linux\", \"gpu\"]");
    s.write("oxi.toml", text);
    s.oxi(&["tick"]).ok();
    assert_eq!(state(&s, "T0-1"), TaskState::Delivered);
}

#[test]
fn tasks_and_status_show_hosts_and_filter_by_one() {
    let s = repo("[]", "");
    s.oxi(&["tick"]).ok();
    // One host: no column, no field.
    let tasks = s.oxi(&["tasks"]).ok().to_owned();
    assert!(!tasks.contains("HOST"), "{tasks}");
    assert!(
        s.oxi(&["tasks", "--format", "json"]).json()[0]
            .get("host")
            .is_none()
    );

    other_host(&s, "beta", "machine-b", &[], 0);
    let tasks = s.oxi(&["tasks"]).ok().to_owned();
    assert!(tasks.lines().next().unwrap().contains("HOST"), "{tasks}");
    let json = s.oxi(&["tasks", "--format", "json"]).json();
    assert_eq!(json[0]["host"], "alpha");
    assert_eq!(
        s.oxi(&["tasks", "--host", "alpha", "--format", "json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        s.oxi(&["tasks", "--host", "beta", "--format", "json"])
            .json(),
        serde_json::json!([])
    );

    let status = s.oxi(&["status", "--format", "json"]).json();
    let names: Vec<&str> = status["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "beta"]);
    let beta = s
        .oxi(&["status", "--host", "beta", "--format", "json"])
        .json();
    assert_eq!(beta["host_filter"], "beta");
    assert_eq!(beta["tasks_total"], 0);
    // The report's section by host.
    let report = s.oxi(&["report", "--format", "json"]).json();
    assert_eq!(
        report["hosts"],
        serde_json::json!([{ "host": "alpha", "executor_runs": 2, "succeeded": 2, "cost_microusd": report["hosts"][0]["cost_microusd"] }])
    );
    assert!(report["hosts"][0]["cost_microusd"].as_i64().unwrap() > 0);
    let text = s.oxi(&["report"]).ok().to_owned();
    assert!(text.contains("by host") && text.contains("alpha"), "{text}");
    let text = s.oxi(&["report", "--host", "beta"]).ok().to_owned();
    assert!(
        text.ends_with("no runs by that host in the window\n"),
        "{text}"
    );

    let alpha = s.oxi(&["status", "--host", "alpha"]).ok().to_owned();
    assert!(
        alpha.contains("tasks on alpha ") && alpha.contains("2 total: delivered 2"),
        "{alpha}"
    );
    assert!(alpha.contains("alpha (live, 0 running)"), "{alpha}");
    assert!(!alpha.contains("beta"), "{alpha}");
}

#[test]
fn saturate_heartbeats_too() {
    let s = repo("[\"linux\"]", "");
    s.oxi(&["saturate", "--until-empty", "--concurrency", "2"])
        .ok();
    let hosts = s.oxi(&["hosts", "--format", "json"]).json();
    assert_eq!(hosts[0]["name"], "alpha", "{hosts:#}");
    assert_eq!(hosts[0]["labels"], serde_json::json!(["linux"]));
    assert_eq!(ledger(&s).read().task_hosts().unwrap().len(), 2);
}

#[test]
fn doctor_fails_when_another_live_machine_uses_this_host_name() {
    let s = repo("[]", "");
    s.oxi(&["tick"]).ok();
    // Alone: no host check to make.
    let checks = s.oxi(&["doctor", "--format", "json"]).json();
    assert!(!checks.to_string().contains("\"host\""), "{checks:#}");

    other_host(&s, "beta", "machine-b", &[], 0);
    let out = s.oxi(&["doctor", "--format", "json"]);
    let checks = out.json();
    let host = checks["checks"]
        .as_array()
        .or(checks.as_array())
        .unwrap()
        .iter()
        .find(|c| c["name"] == "host")
        .cloned()
        .unwrap_or_else(|| panic!("no host check: {checks:#}"));
    assert_eq!(host["status"], "ok", "{host:#}");

    // The same name from another machine, alive: two hosts would mix their runs.
    other_host(&s, "alpha", "machine-z", &[], 0);
    let out = s.oxi(&["doctor"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stdout
            .contains("host name \"alpha\" is also used by a live host on another machine"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("set [host] name in"), "{}", out.stdout);
}

#[test]
fn bad_host_names_and_labels_name_the_file_line_and_key() {
    for (toml, key) in [
        ("[host]\nname = \"two words\"\n", "host.name"),
        ("[host]\nlabels = [\"ok\", \"not/ok\"]\n", "host.labels.1"),
        (
            "[[routing.rules]]\nname = \"r\"\nrequires = [\"g p u\"]\nexecutor = [\"claude\"]\n",
            "routing.rules.0.requires.0",
        ),
    ] {
        let s = Sandbox::git_repo();
        s.write("oxi.toml", toml);
        s.write("roadmap.md", "- [ ] something\n");
        let err = s.oxi(&["status"]).fails_with(3).to_owned();
        assert!(err.contains("oxi.toml:"), "{err}");
        assert!(err.contains(key), "{key}: {err}");
    }
}
