//! The live probe (`oxi workers --probe`, and `oxi doctor` when a CLI's version changed): runs
//! a configured CLI for real, in a throwaway repository, against oxi's own loopback model
//! server (`server.rs` here) playing one fixed session (write a file, run a shell command, finish,
//! with usage on every answer), and checks that what the CLI printed normalizes into the
//! canonical events the runner relies on, that the edit happened, and that tokens (and cost,
//! for a CLI that reports it) are read. A recorded capture (the contract check) catches a
//! broken adapter; this catches a CLI whose new version prints something else.
//!
//! The probe runs the worker as configured (command, model, arguments, environment) with
//! what the session needs on top: the model endpoint pointed at the probe server, a dummy
//! key, a throwaway home, and the CLI's own approvals bypassed (the scripted command runs in
//! the throwaway repository only).

mod server;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::{Accumulator, Classification, Ending, Event, Normalized, WorkerConfig, WorkerKind};
use crate::process::{self, Control, Limits, LineSink, Spawn, Stream};
use server::{PROBE_CONTENT, PROBE_FILE, ProbeServer, SHELL_MARKER, USAGE};

/// A probe that has not finished by then failed (both CLIs take seconds against the server).
const WALL: Duration = Duration::from_secs(180);
const STALL: Duration = Duration::from_secs(120);
/// The key the probe's Codex provider reads (any value: the server does not check it).
const PROBE_KEY_ENV: &str = "OXI_PROBE_KEY";

/// Errors that keep a probe from running at all (a run that goes wrong is a failed verdict).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot prepare the probe's throwaway repository in {dir}: {source}")]
    Scratch {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the probe's model server on 127.0.0.1: {0}")]
    Server(#[source] std::io::Error),
}

/// Pass or fail, as the ledger stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeVerdict {
    Pass,
    Fail,
}

impl ProbeVerdict {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeVerdict::Pass => "pass",
            ProbeVerdict::Fail => "fail",
        }
    }
}

/// One expectation of the session and whether the run met it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeCheck {
    pub name: &'static str,
    pub ok: bool,
    /// What was seen instead, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What one probe of one worker found.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub worker: String,
    pub kind: WorkerKind,
    /// `None` when `--version` named none (the probe still runs).
    pub version: Option<String>,
    pub verdict: ProbeVerdict,
    pub checks: Vec<ProbeCheck>,
    /// The first check that failed, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_mismatch: Option<String>,
    pub exit_code: Option<i32>,
    pub stdout_lines: usize,
    pub model_requests: u64,
    /// Event types the adapter did not know (kept, not a failure by themselves).
    pub unknown_types: Vec<String>,
    pub duration_ms: u64,
}

/// Collects the run's stdout lines and the tail of its stderr.
#[derive(Default)]
struct Collect {
    stdout: Vec<Vec<u8>>,
    stderr: Vec<u8>,
}

impl LineSink for Collect {
    fn spawned(&mut self, _pid: u32) -> Result<(), String> {
        Ok(())
    }
    fn line(&mut self, stream: Stream, line: &[u8], _truncated: bool) -> Control {
        match stream {
            Stream::Stdout => self.stdout.push(line.to_vec()),
            Stream::Stderr if self.stderr.len() < 16 * 1024 => {
                self.stderr.extend_from_slice(line);
                self.stderr.push(b'\n');
            }
            Stream::Stderr => {}
        }
        Control::Continue
    }
}

/// The throwaway world of one probe: a git repository, a home, a `CODEX_HOME`. It lives in
/// the state directory, not `/tmp` (Codex warns about a `CODEX_HOME` under `/tmp`).
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(state_dir: &Path) -> Result<Self, ProbeError> {
        let scratch_error = |source| ProbeError::Scratch {
            dir: state_dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(scratch_error)?;
        let dir = tempfile::Builder::new()
            .prefix("probe-")
            .tempdir_in(state_dir)
            .map_err(scratch_error)?;
        let scratch = Self { dir };
        for sub in [scratch.repo(), scratch.home(), scratch.codex_home()] {
            std::fs::create_dir_all(&sub).map_err(scratch_error)?;
        }
        std::fs::write(scratch.repo().join("README.md"), "# oxi probe\n").map_err(scratch_error)?;
        // A repository, as a worker always gets one; a failed init only loses that.
        let _ = std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(scratch.repo())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        Ok(scratch)
    }

    fn repo(&self) -> std::path::PathBuf {
        self.dir.path().join("repo")
    }
    fn home(&self) -> std::path::PathBuf {
        self.dir.path().join("home")
    }
    fn codex_home(&self) -> std::path::PathBuf {
        self.dir.path().join("codex-home")
    }
}

/// The worker as configured, plus what the scripted session needs: Codex gets a model
/// provider at the probe server (after the worker's own arguments, so it wins) and no
/// sandbox; Claude runs commands without asking. Both CLIs' own settings, so this is the one
/// place the probe matches on the kind.
fn probe_worker(worker: &WorkerConfig, server: &ProbeServer) -> WorkerConfig {
    let mut worker = worker.clone();
    match worker.kind {
        WorkerKind::Codex => {
            worker.sandbox = Some("bypass".to_owned());
            worker.args.extend([
                "-c".to_owned(),
                "model_provider=oxi_probe".to_owned(),
                "-c".to_owned(),
                format!(
                    r#"model_providers.oxi_probe={{name="oxi probe", base_url="{}", wire_api="responses", env_key="{PROBE_KEY_ENV}", request_max_retries=0, stream_max_retries=0}}"#,
                    server.openai_base_url()
                ),
                "-c".to_owned(),
                "analytics.enabled=false".to_owned(),
            ]);
        }
        WorkerKind::Claude => {
            worker.permission_mode = Some("bypassPermissions".to_owned());
        }
    }
    worker
}

/// The worker's environment with the probe's on top: a throwaway home, the probe server as
/// the model endpoint, dummy keys, and the CLIs' background traffic off.
fn probe_env(
    env: &[(String, String)],
    scratch: &Scratch,
    server: &ProbeServer,
) -> Vec<(String, String)> {
    let overrides = [
        ("HOME", scratch.home().display().to_string()),
        ("CODEX_HOME", scratch.codex_home().display().to_string()),
        ("ANTHROPIC_BASE_URL", server.base_url()),
        ("ANTHROPIC_API_KEY", "oxi-probe".to_owned()),
        (PROBE_KEY_ENV, "oxi-probe".to_owned()),
        ("IS_SANDBOX", "1".to_owned()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
        ("DISABLE_TELEMETRY", "1".to_owned()),
        ("DISABLE_AUTOUPDATER", "1".to_owned()),
        ("DISABLE_ERROR_REPORTING", "1".to_owned()),
        ("CLAUDE_CODE_MAX_RETRIES", "1".to_owned()),
    ];
    let mut out: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k) && k != "ANTHROPIC_AUTH_TOKEN")
        .cloned()
        .collect();
    out.extend(overrides.into_iter().map(|(k, v)| (k.to_owned(), v)));
    out
}

/// Probes one worker: `env` is its environment as a run gets it, `version` what its
/// `--version` named, `state_dir` where the throwaway repository goes.
///
/// # Errors
/// When the throwaway repository or the loopback server cannot be set up; anything that goes
/// wrong with the CLI itself is a failed verdict instead.
pub async fn probe(
    name: &str,
    worker: &WorkerConfig,
    env: &[(String, String)],
    version: Option<String>,
    state_dir: &Path,
) -> Result<ProbeReport, ProbeError> {
    let scratch = Scratch::new(state_dir)?;
    let server = ProbeServer::start().await.map_err(ProbeError::Server)?;
    let adapter = worker.kind.adapter();
    let argv = adapter.argv(
        &probe_worker(worker, &server),
        "oxi probe: follow the scripted session",
    );
    let spawn = Spawn {
        argv,
        cwd: scratch.repo(),
        env: probe_env(env, &scratch, &server),
        guard: process::guard::program(),
        confine: None,
    };
    let limits = Limits {
        wall: WALL,
        stall: STALL,
        ..Limits::default()
    };
    let (_stop, stopped) = tokio::sync::watch::channel(false);
    let mut sink = Collect::default();
    let started = std::time::Instant::now();
    let finished = process::supervise(&spawn, &limits, &mut sink, stopped).await;
    let written = std::fs::read_to_string(scratch.repo().join(PROBE_FILE)).ok();
    let (ending, spawn_problem) = match &finished {
        Ok(f) => (
            Ending {
                exit_code: f.exit_code,
                signal: f.signal,
                stop: f.stop,
            },
            None,
        ),
        Err(e) => (
            Ending {
                exit_code: None,
                signal: None,
                stop: None,
            },
            Some(e.to_string()),
        ),
    };
    let mut report = evaluate(
        worker.kind,
        &sink.stdout,
        &ending,
        written.as_deref(),
        spawn_problem,
    );
    report.worker = name.to_owned();
    report.version = version;
    report.model_requests = server.model_requests();
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if report.verdict == ProbeVerdict::Fail && !sink.stderr.is_empty() {
        let tail = super::clip_bytes(&sink.stderr, 600);
        if let Some(first) = &mut report.first_mismatch {
            let _ = write!(first, " (stderr: {})", tail.trim());
        }
    }
    Ok(report)
}

/// Judges a probe run from what the CLI printed, how it ended and what the probe file holds.
// One linear list of checks in the order a reader meets them; splitting it would scatter the
// order that decides which mismatch is reported first.
#[allow(clippy::too_many_lines)]
fn evaluate(
    kind: WorkerKind,
    stdout: &[Vec<u8>],
    ending: &Ending,
    written: Option<&str>,
    spawn_problem: Option<String>,
) -> ProbeReport {
    let adapter = kind.adapter();
    let mut acc = Accumulator::default();
    let mut first_parse_failure = None;
    let mut shell_seen = false;
    let mut edit_event = false;
    for (n, line) in stdout.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match adapter.normalize(line) {
            Normalized::Events(events) => {
                for event in &events {
                    shell_seen |= match event {
                        Event::Command { output, .. } => output.contains(SHELL_MARKER),
                        Event::ToolResult { content, .. } => content.contains(SHELL_MARKER),
                        _ => false,
                    };
                    edit_event |= matches!(event, Event::FileChange { path, .. } if path.ends_with(PROBE_FILE));
                    acc.observe(event);
                }
            }
            Normalized::ParseFailure { reason } => {
                acc.parse_failures += 1;
                first_parse_failure.get_or_insert(format!(
                    "stdout line {} does not parse: {reason}: {}",
                    n + 1,
                    super::clip_bytes(line, 200)
                ));
            }
        }
    }
    let classification = super::classify(&acc, ending);
    let check = |name, ok: bool, detail: String| ProbeCheck {
        name,
        ok,
        detail: (!ok).then_some(detail),
    };
    let mut checks = Vec::new();
    if let Some(problem) = spawn_problem {
        checks.push(check("starts", false, problem));
    }
    checks.extend([
        check(
            "every line parses",
            acc.parse_failures == 0,
            first_parse_failure.unwrap_or_default(),
        ),
        check(
            "session_started",
            acc.event_counts.contains_key("session_started"),
            format!("no session_started event among {}", counts(&acc)),
        ),
        check(
            "file_change",
            edit_event,
            format!(
                "no file_change event for {PROBE_FILE} (files changed: {:?})",
                acc.files_changed
            ),
        ),
        check(
            "edit made",
            written.is_some_and(|w| w.trim_end() == PROBE_CONTENT.trim_end()),
            format!("{PROBE_FILE} holds {written:?}, expected {PROBE_CONTENT:?}"),
        ),
        check(
            "command output",
            shell_seen,
            format!("no command or tool result printed {SHELL_MARKER:?}"),
        ),
        check(
            "tokens read",
            acc.tokens.input > 0 && acc.tokens.output > 0,
            format!(
                "tokens read as {:?}; the server reported {} input and {} output per answer",
                acc.tokens, USAGE.input, USAGE.output
            ),
        ),
    ]);
    if adapter.reports_cost() {
        checks.push(check(
            "cost read",
            acc.reported_cost_usd.is_some_and(|c| c > 0.0),
            format!("the CLI's cost read as {:?}", acc.reported_cost_usd),
        ));
    }
    checks.push(check(
        "result: success",
        classification == Classification::Success,
        format!(
            "classified {} (exit {:?}, signal {:?}, stop {:?})",
            classification.as_str(),
            ending.exit_code,
            ending.signal,
            ending.stop
        ),
    ));
    let first_mismatch = checks
        .iter()
        .find(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail.clone().unwrap_or_default()));
    ProbeReport {
        worker: String::new(),
        kind,
        version: None,
        verdict: if first_mismatch.is_none() {
            ProbeVerdict::Pass
        } else {
            ProbeVerdict::Fail
        },
        checks,
        first_mismatch,
        exit_code: ending.exit_code,
        stdout_lines: stdout.len(),
        model_requests: 0,
        unknown_types: acc.unknown_types.keys().cloned().collect(),
        duration_ms: 0,
    }
}

fn counts(acc: &Accumulator) -> String {
    let kinds: Vec<String> = acc
        .event_counts
        .iter()
        .map(|(k, n)| format!("{k}×{n}"))
        .collect();
    if kinds.is_empty() {
        "no events".to_owned()
    } else {
        kinds.join(", ")
    }
}

/// What `oxi doctor` says about one worker's probes.
#[derive(Debug, Clone)]
pub enum Standing {
    /// The installed version passed a probe (at that time).
    ProbedGood { version: String, at_ms: i64 },
    /// The latest probe failed: the worker is quarantined.
    Quarantined { detail: String, fix: String },
}

/// `oxi doctor`'s part: probes `worker` when its installed `version` is not the last one
/// probed (with no probe yet, when it is not a version oxi was tested with), records the
/// verdict, and says where the worker stands; `None` when it has no probe to speak of (a
/// tested version never probed).
///
/// # Errors
/// When the probe cannot be set up or the ledger cannot be read or written.
pub async fn doctor_standing(
    name: &str,
    worker: &WorkerConfig,
    env: &[(String, String)],
    version: Option<String>,
    state_dir: &Path,
    ledger: &mut crate::ledger::Ledger,
) -> Result<Option<Standing>, StandingError> {
    let last = ledger.read().latest_probe(name)?;
    let tested = version
        .as_deref()
        .is_some_and(|v| worker.kind.adapter().tested_versions().contains(&v));
    let changed = match &last {
        Some(last) => version.is_some() && last.cli_version != version,
        None => version.is_some() && !tested,
    };
    if changed {
        let report = probe(name, worker, env, version.clone(), state_dir).await?;
        ledger.write(|q| q.record_probe(&row(&report, crate::clock::now_ms())))?;
    }
    let Some(latest) = ledger.read().latest_probe(name)? else {
        return Ok(None);
    };
    if latest.passed() {
        return Ok(latest.cli_version.map(|version| Standing::ProbedGood {
            version,
            at_ms: latest.at_ms,
        }));
    }
    let last_good = ledger.read().last_good_probe(name)?;
    Ok(Some(Standing::Quarantined {
        detail: format!(
            "quarantined: {} {} failed the live probe at {}: {}",
            worker.kind,
            latest.cli_version.as_deref().unwrap_or("(version unknown)"),
            crate::clock::rfc3339(latest.at_ms),
            latest.first_mismatch.as_deref().unwrap_or("(no detail)")
        ),
        fix: quarantine_fix(
            worker.kind,
            name,
            last_good.and_then(|g| g.cli_version).as_deref(),
        ),
    }))
}

/// Why `oxi doctor` could not judge a worker's probes.
#[derive(Debug, thiserror::Error)]
pub enum StandingError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// The ledger row for a finished probe.
#[must_use]
pub fn row(report: &ProbeReport, at_ms: i64) -> crate::ledger::ProbeRow {
    crate::ledger::ProbeRow {
        worker: report.worker.clone(),
        kind: report.kind.to_string(),
        cli_version: report.version.clone(),
        verdict: report.verdict.as_str().to_owned(),
        first_mismatch: report.first_mismatch.clone(),
        duration_ms: i64::try_from(report.duration_ms).unwrap_or(i64::MAX),
        at_ms,
    }
}

/// What to do about a quarantined worker: pin the newest version that passed a probe, else
/// the newest version oxi was tested with.
#[must_use]
pub fn quarantine_fix(kind: WorkerKind, worker: &str, last_good: Option<&str>) -> String {
    let tested = kind.adapter().tested_versions().last().copied();
    match last_good.or(tested) {
        Some(version) => format!(
            "pin the last good version: `{}` (or set workers.{worker}.command to that install), then run `oxi doctor` or `oxi workers --probe` again",
            pin_command(kind, version)
        ),
        None => format!(
            "install a version that passes (`oxi workers --probe` checks it): {}",
            kind.adapter().install_hint()
        ),
    }
}

/// The npm package of a kind's CLI, read off its install hint (`npm install -g PACKAGE`).
fn npm_package(kind: WorkerKind) -> Option<&'static str> {
    kind.adapter()
        .install_hint()
        .strip_prefix("npm install -g ")
        .map(str::trim)
}

/// The command that pins `version` of a kind's CLI.
fn pin_command(kind: WorkerKind, version: &str) -> String {
    match npm_package(kind) {
        Some(package) => format!("npm install -g {package}@{version}"),
        None => format!("{} (version {version})", kind.adapter().install_hint()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_ending() -> Ending {
        Ending {
            exit_code: Some(0),
            signal: None,
            stop: None,
        }
    }

    #[test]
    fn nothing_printed_fails_on_the_session_start() {
        let report = evaluate(WorkerKind::Codex, &[], &ok_ending(), None, None);
        assert_eq!(report.verdict, ProbeVerdict::Fail);
        let first = report.first_mismatch.unwrap_or_default();
        assert!(first.starts_with("session_started"), "{first}");
    }

    #[test]
    fn a_line_that_is_not_json_is_the_first_mismatch() {
        let lines = vec![b"not json at all".to_vec()];
        let report = evaluate(WorkerKind::Claude, &lines, &ok_ending(), None, None);
        let first = report.first_mismatch.unwrap_or_default();
        assert!(first.starts_with("every line parses"), "{first}");
    }

    #[test]
    fn pin_commands_name_the_npm_packages() {
        assert_eq!(
            pin_command(WorkerKind::Codex, "0.169.0"),
            "npm install -g @openai/codex@0.169.0"
        );
        assert_eq!(
            pin_command(WorkerKind::Claude, "2.1.328"),
            "npm install -g @anthropic-ai/claude-code@2.1.328"
        );
    }
}
