//! The live probe through the binary: `oxi workers --probe` runs each configured CLI against
//! oxi's own model server; a CLI that prints a drifted format is quarantined (routing falls
//! to the next worker of the chain, `worker_quarantined` is recorded, doctor fails with the
//! npm pin); with the live CLIs, both pass, and a newer version that passes is not a warning.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use oxi::ledger::Ledger;
use serde_json::Value;

use crate::support::live::{self, Cli};
use crate::support::{OxiToml, Sandbox, Worker, git};

const ROADMAP: &str =
    "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n";

/// A codex that claims `version` and prints events of a shape no codex printed: renamed
/// types, so nothing normalizes into a session, an edit or a result.
fn drifted_codex(dir: &Path, version: &str) -> std::path::PathBuf {
    let path = dir.join("drifted-codex");
    let script = format!(
        r#"#!/bin/sh
if [ "$1" = "--version" ]; then echo "codex-cli {version}"; exit 0; fi
echo '{{"type":"thread.begun","thread":{{"id":"t-1"}}}}'
echo '{{"type":"step.finished","tokens":{{"in":10,"out":2}}}}'
exit 0
"#
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A codex that claims `version` and otherwise is the real one at `real`.
fn renamed_codex(dir: &Path, real: &Path, version: &str) -> std::path::PathBuf {
    let path = dir.join("renamed-codex");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = \"--version\" ]; then echo \"codex-cli {version}\"; exit 0; fi\nexec '{}' \"$@\"\n",
        real.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn check<'a>(doctor: &'a Value, name: &str) -> Option<&'a Value> {
    doctor["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
}

fn events(s: &Sandbox, kind: &str) -> Vec<Value> {
    let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let conn = ledger.raw_connection();
    let mut statement = conn
        .prepare("SELECT data FROM events WHERE kind = ?1 ORDER BY id")
        .unwrap();
    statement
        .query_map([kind], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
        .collect()
}

#[test]
fn a_drifted_cli_is_quarantined_routing_falls_to_the_next_and_doctor_names_the_pin() {
    let s = Sandbox::git_repo();
    let tools = Sandbox::empty();
    let drifted = drifted_codex(tools.path(), "0.170.0");
    s.write("roadmap.md", ROADMAP);
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .project()
            .worker(Worker::codex("drifty", &drifted).model("gpt-5.5"))
            .worker(Worker::fake("fake").env("ANTHROPIC_API_KEY"))
            .worker(Worker::fake("rev").scenario("review-strict"))
            .routing(&["drifty", "fake"], &["rev"])
            .raw("[verify]\ntier0 = [{ name = \"says hi\", argv = [\"grep\", \"-qx\", \"hi\", \"hello.txt\"], timeout = \"30s\" }]\n"),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s.oxi(&["init"]);

    // The probe fails on the first expectation the drifted output misses, and says so.
    let probe = s.oxi(&["workers", "--probe", "--format", "json"]);
    probe.fails_with(1);
    let lines = probe.json();
    let drifty = lines
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["worker"] == "drifty")
        .unwrap();
    assert_eq!(drifty["probe"]["verdict"], "fail", "{drifty:#}");
    assert_eq!(drifty["probe"]["version"], "0.170.0");
    let mismatch = drifty["probe"]["first_mismatch"].as_str().unwrap();
    assert!(mismatch.starts_with("session_started: "), "{mismatch}");
    assert_eq!(
        drifty["probe"]["unknown_types"],
        serde_json::json!(["step.finished", "thread.begun"])
    );
    assert!(
        drifty["fix"]
            .as_str()
            .unwrap()
            .contains("`npm install -g @openai/codex@0.169.0`"),
        "{drifty:#}"
    );
    // The fake workers are not agent CLIs that talk to a model: they fail the probe too, and
    // are quarantined the same way; the executor chain's second entry is cleared again below.
    let quarantined = events(&s, "worker_quarantined");
    let drifty_event = quarantined
        .iter()
        .find(|e| e["worker"] == "drifty")
        .unwrap();
    assert_eq!(drifty_event["version"], "0.170.0");
    assert!(
        drifty_event["mismatch"]
            .as_str()
            .unwrap()
            .starts_with("session_started")
    );
    clear_probes(&s, &["fake", "rev"]);

    // Routing skips the quarantined worker: the task goes to the next in the chain.
    let tick = s.oxi_env(
        &["tick", "--format", "json"],
        &[("ANTHROPIC_API_KEY", "sk-ant-probe-test-key-000")],
    );
    let report = tick.json();
    assert_eq!(report["jobs"][0]["worker"], "fake", "{report:#}");

    // Doctor fails the quarantined worker with the exact pin (no version passed here yet, so
    // the tested one), and does not probe the same version again.
    let doctor = s.oxi(&["doctor", "--format", "json"]).json();
    let standing = check(&doctor, "worker drifty probe").unwrap();
    assert_eq!(standing["status"], "fail", "{standing:#}");
    assert!(
        standing["detail"]
            .as_str()
            .unwrap()
            .starts_with("quarantined: codex 0.170.0 failed the live probe at "),
        "{standing:#}"
    );
    assert!(
        standing["fix"]
            .as_str()
            .unwrap()
            .starts_with("pin the last good version: `npm install -g @openai/codex@0.169.0`"),
        "{standing:#}"
    );
    assert_eq!(events(&s, "worker_quarantined").len(), quarantined.len());
}

/// Drops the probe rows of workers that are not agent CLIs (the fake worker), so they route.
fn clear_probes(s: &Sandbox, workers: &[&str]) {
    let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    for worker in workers {
        ledger
            .raw_connection()
            .execute("DELETE FROM worker_probes WHERE worker = ?1", [worker])
            .unwrap();
    }
}

#[test]
fn doctor_probes_a_changed_version_by_itself() {
    let s = Sandbox::git_repo();
    let tools = Sandbox::empty();
    let drifted = drifted_codex(tools.path(), "0.171.0");
    s.write("roadmap.md", ROADMAP);
    s.config(
        &OxiToml::new()
            .project()
            .worker(Worker::codex("drifty", &drifted).model("gpt-5.5"))
            .routing(&["drifty"], &["drifty"]),
    );
    s.oxi(&["init"]);
    let doctor = s.oxi(&["doctor", "--format", "json"]);
    doctor.fails_with(1);
    let standing = check(&doctor.json(), "worker drifty probe")
        .unwrap()
        .clone();
    assert_eq!(standing["status"], "fail", "{standing:#}");
    let recorded = events(&s, "worker_quarantined");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["version"], "0.171.0");
}

#[test]
fn a_tested_version_never_probed_adds_no_check() {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.config(
        &OxiToml::new()
            .project()
            .worker(Worker::fake("fake"))
            .routing(&["fake"], &["fake"]),
    );
    s.oxi(&["init"]);
    let doctor = s.oxi(&["doctor", "--format", "json"]).json();
    assert!(check(&doctor, "worker fake probe").is_none(), "{doctor:#}");
}

#[test]
fn both_live_clis_pass_and_a_newer_version_that_passes_is_not_a_warning() {
    let (Some(claude), Some(codex)) = (live::require(Cli::Claude), live::require(Cli::Codex))
    else {
        return;
    };
    let s = Sandbox::git_repo();
    let tools = Sandbox::empty();
    s.write("roadmap.md", ROADMAP);
    let toml = |codex: &Path| {
        OxiToml::new()
            .project()
            .worker(Worker::claude("claude", &claude).model("claude-sonnet-4-5"))
            .worker(Worker::codex("codex", codex).model("gpt-5.5"))
            .routing(&["codex", "claude"], &["claude"])
    };
    s.config(&toml(&codex));
    s.oxi(&["init"]);

    let probe = s.oxi(&["workers", "--probe", "--format", "json"]);
    let lines = probe.json();
    assert_eq!(probe.code, 0, "{lines:#}\n{}", probe.stderr);
    for line in lines.as_array().unwrap() {
        assert_eq!(line["probe"]["verdict"], "pass", "{line:#}");
        assert!(line["probe"]["checks"].as_array().unwrap().len() >= 7);
        assert_eq!(line["probe"]["model_requests"], 3, "{line:#}");
    }

    // A version oxi was not tested with, that passes: probed by doctor, then no warning.
    let newer = renamed_codex(tools.path(), &codex, "0.170.0");
    s.config(&toml(&newer));
    let doctor = s.oxi(&["doctor", "--format", "json"]).json();
    let standing = check(&doctor, "worker codex probe").unwrap();
    assert_eq!(standing["status"], "ok", "{standing:#}");
    assert!(
        standing["detail"]
            .as_str()
            .unwrap()
            .starts_with("0.170.0 passed the live probe at ")
    );
    let contract = check(&doctor, "worker codex").unwrap();
    assert_eq!(contract["status"], "ok", "{contract:#}");

    // The next version drifts: doctor probes it, quarantines it, and pins the one that passed.
    let drifted = drifted_codex(tools.path(), "0.171.0");
    s.config(&toml(&drifted));
    let doctor = s.oxi(&["doctor", "--format", "json"]).json();
    let standing = check(&doctor, "worker codex probe").unwrap();
    assert_eq!(standing["status"], "fail", "{standing:#}");
    assert!(
        standing["fix"]
            .as_str()
            .unwrap()
            .contains("`npm install -g @openai/codex@0.170.0`"),
        "{standing:#}"
    );
}
