//! The contract check `oxi doctor` and `oxi workers` run: is the configured CLI there, is its
//! version one the adapter was tested with, and does a recorded transcript of that version still
//! parse the way it did? A new CLI version that changes its output is reported as drift with
//! the version seen, before it silently breaks a night of runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Serialize;

use crate::config::{WorkerConfig, WorkerKind};
use crate::worker::{self, Accumulator, Classification, Ending, Normalized};

/// `<cli> --version` must answer within this.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

/// What the check found for one worker.
#[derive(Debug, Clone, Serialize)]
pub struct ContractReport {
    pub worker: String,
    pub kind: WorkerKind,
    pub binary: Option<PathBuf>,
    pub version: Option<String>,
    pub tested_versions: Vec<&'static str>,
    pub contract_version: &'static str,
    pub fixture: FixtureReplay,
    pub verdict: Verdict,
    /// Each problem with its fix.
    pub problems: Vec<String>,
}

/// The recorded transcript replayed through the adapter.
#[derive(Debug, Clone, Serialize)]
pub struct FixtureReplay {
    pub lines: usize,
    pub parse_failures: u64,
    pub unknown_types: Vec<String>,
    pub classification: Classification,
    pub ok: bool,
}

/// Replays the embedded capture for `kind` through its normalizer and classifier.
pub fn replay_fixture(kind: WorkerKind) -> FixtureReplay {
    let adapter = kind.adapter();
    let text = adapter.fixture();
    let mut acc = Accumulator::default();
    let mut lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        lines += 1;
        match adapter.normalize(line.as_bytes()) {
            Normalized::Events(events) => events.iter().for_each(|e| acc.observe(e)),
            Normalized::ParseFailure { .. } => acc.parse_failures += 1,
        }
    }
    let classification = worker::classify(
        &acc,
        &Ending {
            exit_code: Some(0),
            signal: None,
            stop: None,
        },
    );
    let ok = acc.parse_failures == 0
        && acc.unknown_types.is_empty()
        && classification == Classification::Success
        && !acc.files_changed.is_empty()
        && !acc.tokens.is_zero();
    FixtureReplay {
        lines,
        parse_failures: acc.parse_failures,
        unknown_types: acc.unknown_types.keys().cloned().collect(),
        classification,
        ok,
    }
}

/// Finds `program` the way the spawn will: a path as is, a bare name on the worker's PATH.
pub fn resolve_binary(program: &str, path_var: Option<&str>, cwd: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        let path = cwd.join(program);
        return path.is_file().then_some(path);
    }
    which::which_in(program, path_var, cwd).ok()
}

/// Runs `<command> --version` argv-form with the worker's environment.
pub async fn probe_version(
    command: &[String],
    env: &[(String, String)],
    cwd: &Path,
    confine: Option<&std::sync::Arc<crate::confine::Confinement>>,
) -> Result<String, String> {
    let (program, prefix) = command.split_first().ok_or("empty command")?;
    let mut probe = tokio::process::Command::new(program);
    // After a confined run, its command is probed under the same confinement.
    if let Some(confinement) = confine {
        confinement.apply(probe.as_std_mut());
    }
    let child = probe
        .args(prefix)
        .arg("--version")
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(VERSION_TIMEOUT, child)
        .await
        .map_err(|_| {
            format!(
                "`{program} --version` did not answer within {}s",
                VERSION_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("cannot run `{program} --version`: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "`{program} --version` exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(text.trim().to_owned())
}

/// The full check for one configured worker.
pub async fn check(
    name: &str,
    config: &WorkerConfig,
    env: &[(String, String)],
    cwd: &Path,
) -> ContractReport {
    let adapter = worker::adapter(config.kind);
    let mut problems = Vec::new();
    let mut verdict = Verdict::Ok;
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let program = config.command.first().map(String::as_str).unwrap_or("");
    let binary = resolve_binary(program, path_var, cwd);
    let mut version = None;
    if binary.is_none() {
        verdict = Verdict::Fail;
        problems.push(format!(
            "`{program}` (workers.{name}.command) is not found{}; install it ({}) or set workers.{name}.command to its path",
            if program.contains('/') { "" } else { " on PATH" },
            adapter.install_hint()
        ));
    } else {
        match probe_version(&config.command, env, cwd, None).await {
            Ok(output) => {
                version = adapter.parse_version(&output);
                match &version {
                    Some(v) if adapter.tested_versions().contains(&v.as_str()) => {}
                    Some(v) => {
                        verdict = Verdict::Warn;
                        problems.push(format!(
                            "{program} {v} is not a version oxi was tested with ({}); its output may have drifted. Pin the tested version, or run `oxi run --worker {name}` once and check the transcript before trusting it to cron",
                            adapter.tested_versions().join(", ")
                        ));
                    }
                    None => {
                        verdict = Verdict::Warn;
                        problems.push(format!(
                            "`{program} --version` printed {output:?}, which names no version"
                        ));
                    }
                }
            }
            Err(problem) => {
                verdict = Verdict::Fail;
                problems.push(problem);
            }
        }
    }
    let fixture = replay_fixture(config.kind);
    if !fixture.ok {
        verdict = Verdict::Fail;
        problems.push(format!(
            "the recorded {} transcript no longer parses as it did ({} parse failures, unknown types {:?}, classified {}): the adapter contract {} is broken; this is an oxi bug, report it",
            config.kind,
            fixture.parse_failures,
            fixture.unknown_types,
            fixture.classification.as_str(),
            adapter.contract_version()
        ));
    }
    ContractReport {
        worker: name.to_owned(),
        kind: config.kind,
        binary,
        version,
        tested_versions: adapter.tested_versions().to_vec(),
        contract_version: adapter.contract_version(),
        fixture,
        verdict,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_fixtures_replay_cleanly() {
        for &kind in WorkerKind::ALL {
            let replay = replay_fixture(kind);
            assert!(replay.ok, "{kind}: {replay:?}");
            assert!(replay.lines > 3);
        }
    }
}
