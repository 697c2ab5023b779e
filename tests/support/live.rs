//! The real agent CLIs (`claude`, `codex`) for live tests: where `.ci/install-agent-clis` put
//! them, how to run them offline against `oxi_testkit::mock_model`, and a child runner with a hard
//! timeout that kills the whole process group (both CLIs start helper processes).
//!
//! A missing or wrong-version binary skips the test, saying so in the output of a plain
//! `cargo test` (see [`super::skip`]), except under `CI=true`, where it fails: CI must never
//! silently stop testing against the real CLIs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use oxi_testkit::mock_model::MockModelServer;

use super::Worker;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The versions the tests and `fixtures/captures` were recorded with; keep in step with
/// `.ci/install-agent-clis`.
pub const CLAUDE_VERSION: &str = "2.1.328";
pub const CODEX_VERSION: &str = "0.169.0";

/// No single CLI run in the tests needs more than a few seconds; this only stops a broken
/// one from hanging the suite.
pub const HARD_TIMEOUT: Duration = Duration::from_secs(40);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cli {
    Claude,
    Codex,
}

impl Cli {
    fn name(self) -> &'static str {
        match self {
            Cli::Claude => "claude",
            Cli::Codex => "codex",
        }
    }

    fn version(self) -> &'static str {
        match self {
            Cli::Claude => CLAUDE_VERSION,
            Cli::Codex => CODEX_VERSION,
        }
    }
}

/// A `[workers.<name>]` entry running the real `cli` at `bin` offline against `server`: claude
/// through `ANTHROPIC_BASE_URL` with its background traffic off and one retry; codex through a
/// `mock` model provider with retries, plugins and analytics off.
pub fn worker(cli: Cli, name: &str, bin: &Path, server: &MockModelServer) -> Worker {
    match cli {
        Cli::Claude => Worker::claude(name, bin)
            .model("claude-sonnet-4-5")
            .env("ANTHROPIC_API_KEY")
            .set_env("ANTHROPIC_BASE_URL", &server.base_url())
            .set_env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .set_env("DISABLE_TELEMETRY", "1")
            .set_env("DISABLE_AUTOUPDATER", "1")
            .set_env("DISABLE_ERROR_REPORTING", "1")
            .set_env("CLAUDE_CODE_MAX_RETRIES", "1"),
        Cli::Codex => Worker::codex(name, bin)
            .model("gpt-5.5")
            .env("CODEX_HOME")
            .env("MOCK_API_KEY")
            .args_toml(&format!(
                r#"["-c", "model_provider=mock", "-c", 'model_providers.mock={{name="mock", base_url="{}", wire_api="responses", env_key="MOCK_API_KEY", request_max_retries=0, stream_max_retries=0}}', "--disable", "plugins", "-c", "analytics.enabled=false"]"#,
                server.openai_base_url()
            )),
    }
}

/// `$OXI_AGENT_CLI_DIR`, else `${XDG_CACHE_HOME:-$HOME/.cache}/oxi/agent-clis`, as in
/// `.ci/install-agent-clis`.
pub fn agent_cli_dir() -> PathBuf {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("OXI_AGENT_CLI_DIR") {
        return PathBuf::from(dir);
    }
    let cache = non_empty("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(non_empty("HOME").unwrap_or_else(|| "/".into())).join(".cache")
        });
    cache.join("oxi").join("agent-clis")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The CLI's binary, or `None` after printing how to enable the test. Panics under
/// `CI=true` instead of skipping.
pub fn require(cli: Cli) -> Option<PathBuf> {
    static FOUND: [OnceLock<Result<PathBuf, String>>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = &FOUND[cli as usize];
    match slot.get_or_init(|| locate(cli)) {
        Ok(path) => Some(path.clone()),
        Err(problem) if in_ci() => panic!(
            "CI=true but the live {} CLI is unusable: {problem}\n\
             run .ci/install-agent-clis (or set OXI_AGENT_CLI_DIR) before the tests",
            cli.name()
        ),
        Err(problem) => {
            super::skip(
                "live CLI",
                &format!("live {} test", cli.name()),
                problem,
                ".ci/install-agent-clis (installs the pinned CLIs; OXI_AGENT_CLI_DIR overrides where)",
            );
            None
        }
    }
}

fn locate(cli: Cli) -> Result<PathBuf, String> {
    let path = agent_cli_dir()
        .join("node_modules")
        .join(".bin")
        .join(cli.name());
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    let output = std::process::Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} --version failed to start: {e}", path.display()))?;
    let version = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || !version.contains(cli.version()) {
        return Err(format!(
            "{} --version printed {:?} (exit {:?}); the tests need {}",
            path.display(),
            version.trim(),
            output.status.code(),
            cli.version()
        ));
    }
    Ok(path)
}

/// A scratch world for one CLI run: a git repository to work in, a home directory, and a
/// `CODEX_HOME`. It lives under Cargo's target tmp dir because Codex warns about a
/// `CODEX_HOME` under `/tmp`.
pub struct Scratch {
    _dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub home: PathBuf,
    pub codex_home: PathBuf,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("live-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("scratch dir");
        let root = dir.path().canonicalize().expect("canonical scratch dir");
        let (repo, home, codex_home) = (
            root.join("repo"),
            root.join("home"),
            root.join("codex-home"),
        );
        for dir in [&repo, &home, &codex_home] {
            std::fs::create_dir_all(dir).expect("scratch subdir");
        }
        super::git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("README.md"), "# scratch\n").expect("README");
        super::git(&repo, &["add", "-A"]);
        super::git(&repo, &["commit", "-q", "-m", "initial"]);
        Self {
            _dir: dir,
            repo,
            home,
            codex_home,
        }
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.repo.join(rel)).ok()
    }
}

/// A command with a clean environment: nothing of the developer's (API keys, proxies,
/// config) may leak into a live CLI run.
fn clean_command(bin: &Path, scratch: &Scratch) -> Command {
    let mut command = Command::new(bin);
    command
        .env_clear()
        .envs(super::kept_env())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &scratch.home)
        .env("LANG", "C.UTF-8")
        .current_dir(&scratch.repo);
    command
}

/// `claude -p PROMPT --output-format stream-json --verbose --permission-mode
/// bypassPermissions`, offline against `server`. `IS_SANDBOX=1` is what lets it bypass
/// permissions as root.
pub fn claude(bin: &Path, server: &MockModelServer, scratch: &Scratch, prompt: &str) -> Command {
    let mut command = clean_command(bin, scratch);
    command
        .env("IS_SANDBOX", "1")
        .env("ANTHROPIC_BASE_URL", server.base_url())
        .env("ANTHROPIC_API_KEY", "sk-test")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .args(["-p", prompt])
        .args(["--output-format", "stream-json", "--verbose"])
        .args(["--permission-mode", "bypassPermissions"]);
    command
}

/// `codex exec --json` with a `mock` Responses provider pointing at `server`; `provider_extra`
/// is appended inside the provider table (e.g. `request_max_retries=0`).
pub fn codex(
    bin: &Path,
    server: &MockModelServer,
    scratch: &Scratch,
    prompt: &str,
    provider_extra: &str,
) -> Command {
    let mut command = clean_command(bin, scratch);
    let mut provider = format!(
        r#"model_providers.mock={{name="mock", base_url="{}", wire_api="responses", env_key="MOCK_API_KEY""#,
        server.openai_base_url()
    );
    if !provider_extra.is_empty() {
        provider.push_str(", ");
        provider.push_str(provider_extra);
    }
    provider.push('}');
    command
        .env("CODEX_HOME", &scratch.codex_home)
        .env("MOCK_API_KEY", "sk-test")
        .args(["exec", "--json", "--skip-git-repo-check"])
        .args(["-c", "model_provider=mock", "-c", &provider])
        .args(["-m", "gpt-5.5", "--disable", "plugins"])
        .args(["-c", "analytics.enabled=false"])
        .arg("--dangerously-bypass-approvals-and-sandbox")
        .arg(prompt);
    command
}

/// What a finished (or killed) CLI run produced.
#[derive(Debug)]
pub struct Finished {
    /// `None` when it was killed.
    pub code: Option<i32>,
    pub stdout_lines: Vec<String>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    /// Every stdout line that is JSON (both CLIs print JSONL).
    pub fn events(&self) -> Vec<Value> {
        self.stdout_lines
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Events whose `type` (and, if given, `subtype`) match.
    pub fn events_of(&self, kind: &str, subtype: Option<&str>) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["type"] == kind)
            .filter(|e| subtype.is_none_or(|s| e["subtype"] == s))
            .collect()
    }

    pub fn one_event(&self, kind: &str, subtype: Option<&str>) -> Value {
        let mut found = self.events_of(kind, subtype);
        assert_eq!(
            found.len(),
            1,
            "expected one {kind}/{subtype:?} event\n{self}"
        );
        found.remove(0)
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "exit {:?} after {:?}", self.code, self.elapsed)?;
        writeln!(f, "stdout:")?;
        for line in &self.stdout_lines {
            let cut: String = line.chars().take(600).collect();
            writeln!(f, "  {cut}")?;
        }
        write!(f, "stderr:\n{}", self.stderr)
    }
}

/// A CLI running in its own process group, with stdout read line by line as it comes.
pub struct Running {
    child: Child,
    pid: u32,
    lines: mpsc::UnboundedReceiver<String>,
    stdout_lines: Vec<String>,
    stderr: JoinHandle<String>,
    started: Instant,
}

impl Running {
    pub fn spawn(mut command: Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().expect("live CLI starts");
        let pid = child.id().expect("child pid");
        let stdout = child.stdout.take().expect("stdout pipe");
        let mut stderr_pipe = child.stderr.take().expect("stderr pipe");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text).await;
            text
        });
        Self {
            child,
            pid,
            lines,
            stdout_lines: Vec::new(),
            stderr,
            started: Instant::now(),
        }
    }

    /// The next stdout line within `timeout`; `None` on timeout or end of output.
    pub async fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let line = tokio::time::timeout(timeout, self.lines.recv())
            .await
            .ok()
            .flatten()?;
        self.stdout_lines.push(line.clone());
        Some(line)
    }

    /// Whether the main process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for exit; past [`HARD_TIMEOUT`] the group is killed and the test fails.
    pub async fn wait(mut self) -> Finished {
        let deadline = self.started + HARD_TIMEOUT;
        let exited = tokio::time::timeout_at(deadline.into(), self.child.wait()).await;
        let code = match exited {
            Ok(status) => status.expect("wait for live CLI").code(),
            Err(_) => {
                let finished = self.kill().await;
                panic!("live CLI still running after {HARD_TIMEOUT:?}; killed it\n{finished}");
            }
        };
        let mut finished = self.finish().await;
        finished.code = code;
        finished
    }

    /// Kills the process group and collects what it printed.
    pub async fn kill(mut self) -> Finished {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.finish().await
    }

    /// Kills whatever is left of the group (helpers outliving the CLI would hold the pipes
    /// open) and drains the output.
    async fn finish(mut self) -> Finished {
        kill_group(self.pid);
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(2), self.lines.recv()).await
        {
            self.stdout_lines.push(line);
        }
        let stderr = tokio::time::timeout(Duration::from_secs(2), &mut self.stderr)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        Finished {
            code: None,
            stdout_lines: std::mem::take(&mut self.stdout_lines),
            stderr,
            elapsed: self.started.elapsed(),
        }
    }
}

fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs a CLI to completion under [`HARD_TIMEOUT`].
pub async fn run(command: Command) -> Finished {
    Running::spawn(command).wait().await
}
