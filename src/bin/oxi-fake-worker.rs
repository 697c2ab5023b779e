//! A stand-in for `claude` / `codex` that prints their real wire formats (shapes taken from
//! fixtures/captures) and misbehaves on request, for the faults a live CLI cannot be made to
//! produce on cue: floods, garbage, an 8 MiB line, a grandchild holding the pipes, a process
//! that ignores SIGTERM, exit 130, a runaway spender, a worker that echoes secrets.
//!
//! Used by oxi's tests, benchmarks and chaos harness; also handy to try an `oxi.toml` without
//! spending anything (`command = ["oxi-fake-worker"]`). It accepts and ignores oxi's argv
//! except to learn its flavour (`exec` in argv means codex) and the prompt (the last argument).
//!
//! Environment:
//! - `OXI_FAKE_SCENARIO`: `edit` (default), `flood:<bytes>`, `garbage`, `long-line:<bytes>`,
//!   `hang`, `silent-then-hang`, `ignore-term`, `grandchild`, `grandchild-escape`, `exit130`,
//!   `spend`, `spend-then-sleep:<input tokens>` (one message carrying that usage, then
//!   sleeps: a run in flight that has spent part of its reservation), `rate-limited`,
//!   `echo-env:<NAME>` (and `echo-env-edit:<NAME>`, which writes hello.txt instead of the
//!   value), `env-names`, `no-result`, `fail`,
//!   `edit-fix` (writes "bye", or "hi" once the prompt says a previous attempt failed),
//!   `edit-transient` (writes the file, then ends with an API 500 — a retryable `transient`
//!   failure that leaves its edit behind; once the prompt says a previous attempt failed it
//!   changes nothing and says the work is already there),
//!   `hang-family` (a sleeping grandchild in its group, then hangs), `hang-escape` (two
//!   sleeping grandchildren, one in its group and one that left it with `setsid`, then says
//!   "family started" and hangs), `review-strict` (requests
//!   changes on attempt 1, approves later), `review:<verdict>`, `slow-edit:<ms>`, `demo`,
//!   `chaos` (the chaos harness's everyday mix, picked at random per run: a slow edit, a
//!   failure, a runaway spender, a hang with a sleeping grandchild, a hang that ignores SIGTERM,
//!   or a success that leaves a grandchild behind), `vandal:<act>` (does its edit, then
//!   `push`: `git push --force` to the base branch and a new branch; `escape`: writes into the
//!   main checkout through `../` (announced as the CLIs' write tool does, with the error in its
//!   message when the write is refused); `symlink`: adds a link to /etc/passwd; `workflow`: edits
//!   `.github/workflows/ci.yml`; `delete`: deletes every file of the worktree; `move-main`:
//!   commits and points `main` at it with `git update-ref`).
//! - Planner scenarios (a `planner`-role worker; docs/explore.md): `plan` (reads, then ends with
//!   a valid `OXI_PLAN` line whose `files_expected` is `OXI_FAKE_PLAN_FILES`, comma-separated,
//!   default `hello.txt`), `plan-bad` (a block without `steps`, every time), `plan-bad-once` (that
//!   block, then a valid plan once the prompt says the previous answer was not accepted),
//!   `plan-write` (writes `planner-was-here.txt` in the cwd as the CLIs' write tool does, with
//!   the error in its message when the write is refused, then a valid plan).
//! - `gullible`: a worker a prompt injection fools: it writes `obeyed` into every backquoted
//!   path on a prompt line that says "write" (any case), wherever the brief says so, then ends
//!   as if done (the eval suite's hostile case; oxi's guards must stop what it wrote).
//! - `OXI_FAKE_IGNORE_TERM`: when set, the worker ignores SIGTERM (and so does everything it
//!   starts: the disposition is inherited).
//! - `OXI_FAKE_CHAOS_ROLL`: fixes `chaos`'s pick (its value modulo 10 chooses the behaviour).
//! - `OXI_FAKE_FILE`: the file `edit` writes (default `hello.txt`, relative to the cwd).
//! - `OXI_FAKE_SLEEP_MS`: how long sleeping scenarios sleep (default 600000).
//! - `OXI_FAKE_VERSION`: what `--version` prints (default `2.1.328 (Claude Code)`).
//! - `OXI_FAKE_COST_USD`: the `total_cost_usd` Claude's result reports (default 0.01268).
//! - `OXI_FAKE_AUTH_STATUS`: how `auth status --json` answers: `logged-in` (default),
//!   `logged-out`, `none` (no such subcommand).

use std::io::{BufWriter, Write};
use std::time::Duration;

use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Claude,
    Codex,
}

struct Out {
    flavor: Flavor,
    out: BufWriter<std::io::Stdout>,
    session: String,
    /// Runs in this session, this one included: a resumed session's result reports the
    /// session's running totals, as the real CLIs do (claude's cost, codex's tokens).
    session_runs: u32,
}

impl Out {
    fn line(&mut self, value: &Value) {
        let _ = writeln!(self.out, "{value}");
        let _ = self.out.flush();
    }

    fn raw(&mut self, bytes: &[u8]) {
        let _ = self.out.write_all(bytes);
        let _ = self.out.flush();
    }

    fn init(&mut self, cwd: &str) {
        match self.flavor {
            Flavor::Claude => self.line(&json!({
                "type": "system", "subtype": "init", "cwd": cwd, "session_id": self.session,
                "tools": ["Bash", "Edit", "Read", "Write"], "model": "claude-sonnet-4-5",
                "permissionMode": "acceptEdits", "claude_code_version": "2.1.328",
            })),
            Flavor::Codex => {
                self.line(&json!({"type": "thread.started", "thread_id": self.session}));
                self.line(&json!({"type": "turn.started"}));
            }
        }
    }

    fn message(&mut self, id: &str, text: &str, input_tokens: u64) {
        match self.flavor {
            Flavor::Claude => self.line(&json!({
                "type": "assistant",
                "message": {
                    "id": id, "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": 0,
                              "cache_read_input_tokens": 0, "output_tokens": 1},
                },
                "parent_tool_use_id": null, "session_id": self.session,
            })),
            Flavor::Codex => self.line(&json!({
                "type": "item.completed",
                "item": {"id": id, "type": "agent_message", "text": text},
            })),
        }
    }

    fn write_file(&mut self, path: &str, content: &str) {
        if let Some(parent) = std::path::Path::new(path).parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(path, content);
        self.announce_write(path, content);
    }

    /// The events a CLI prints for a write of `content` to `path` (its tool call and result).
    fn announce_write(&mut self, path: &str, content: &str) {
        match self.flavor {
            Flavor::Claude => {
                self.line(&json!({
                    "type": "assistant",
                    "message": {
                        "id": "msg_fake_write", "type": "message", "role": "assistant",
                        "model": "claude-sonnet-4-5",
                        "content": [{"type": "tool_use", "id": "toolu_fake_1", "name": "Write",
                                     "input": {"file_path": path, "content": content}}],
                        "usage": {"input_tokens": 1200, "cache_creation_input_tokens": 100,
                                  "cache_read_input_tokens": 200, "output_tokens": 1},
                    },
                    "session_id": self.session,
                }));
                self.line(&json!({
                    "type": "user",
                    "message": {"role": "user", "content": [{"tool_use_id": "toolu_fake_1",
                        "type": "tool_result", "content": format!("File created successfully at: {path}")}]},
                    "session_id": self.session,
                    "tool_use_result": {"type": "create", "filePath": path, "content": content},
                }));
            }
            Flavor::Codex => {
                let item = json!({"id": "item_1", "type": "file_change",
                    "changes": [{"path": path, "kind": "add"}], "status": "completed"});
                self.line(&json!({"type": "item.completed", "item": item}));
            }
        }
    }

    /// The final line: Claude's `result` with its cost, or Codex's `turn.completed` usage.
    fn result(&mut self, text: &str, is_error: bool, api_error_status: Option<u16>) {
        match self.flavor {
            Flavor::Claude => self.line(&json!({
                "type": "result", "subtype": "success", "is_error": is_error,
                "duration_ms": 1234, "duration_api_ms": 1000, "num_turns": 2,
                "result": text, "stop_reason": "end_turn", "session_id": self.session,
                "total_cost_usd": reported_cost_usd() * f64::from(self.session_runs), "api_error_status": api_error_status,
                "terminal_reason": if api_error_status.is_some() { Some("api_error") } else { None },
                "usage": {"input_tokens": 2400, "cache_creation_input_tokens": 200,
                          "cache_read_input_tokens": 400, "output_tokens": 100},
            })),
            Flavor::Codex => {
                self.message("item_9", text, 0);
                if is_error {
                    self.line(&json!({"type": "turn.failed", "error": {"message": text}}));
                } else {
                    let n = u64::from(self.session_runs);
                    self.line(&json!({"type": "turn.completed", "usage": {
                        "input_tokens": 2400 * n, "cached_input_tokens": 400 * n,
                        "cache_write_input_tokens": 0, "output_tokens": 100 * n,
                        "reasoning_output_tokens": 40 * n}}));
                }
            }
        }
    }
}

/// The session id and its number of runs. A fresh run starts `fake-<pid>`; a resumed one
/// (claude `--resume ID`, codex `exec … resume ID`) continues ID. Without keeping state, the
/// stand-in counts the session's runs in its id (`fake-<pid>-<runs>`), so that it can report
/// the session's running totals as the real CLIs do.
fn session(args: &[String]) -> (String, u32) {
    let resumed = args
        .windows(2)
        .find(|w| w[0] == "--resume" || w[0] == "resume")
        .map(|w| w[1].as_str());
    let Some(id) = resumed else {
        return (format!("fake-{}", std::process::id()), 1);
    };
    let (root, runs) = match id.rsplit_once('-') {
        Some((root, n)) if root.starts_with("fake-") => (root, n.parse().unwrap_or(1)),
        _ => (id, 1),
    };
    let runs: u32 = runs;
    (format!("{root}-{}", runs + 1), runs + 1)
}

/// A random number without a dependency: every `RandomState` is seeded afresh by the OS.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

/// The first file hint in oxi's prompt (`Files likely involved: `a`, `b``).
fn hinted_file(prompt: &str) -> Option<&str> {
    prompt
        .lines()
        .find(|l| l.starts_with("Files likely involved:"))
        .and_then(|l| l.split('`').nth(1))
}

/// What Claude's result says the run cost (`OXI_FAKE_COST_USD`).
fn reported_cost_usd() -> f64 {
    std::env::var("OXI_FAKE_COST_USD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.01268)
}

fn sleep_ms() -> u64 {
    std::env::var("OXI_FAKE_SLEEP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600_000)
}

fn amount(arg: Option<&str>, default: u64) -> u64 {
    arg.and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// A sleeping grandchild in a new session (`setsid`), so neither oxi's group signals nor a
/// parent-death signal of the worker reach it.
fn spawn_detached_grandchild() {
    use std::os::unix::process::CommandExt;
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let mut command = std::process::Command::new(me);
    command
        .env("OXI_FAKE_SCENARIO", "sleep")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    #[allow(unsafe_code)]
    // SAFETY: setsid(2) is async-signal-safe; the closure allocates nothing.
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let _ = command.spawn();
}

fn spawn_grandchild(escape: bool) {
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let mut command = std::process::Command::new(me);
    command
        .env("OXI_FAKE_SCENARIO", "sleep")
        .stdin(std::process::Stdio::null());
    if escape {
        use std::os::unix::process::CommandExt;
        // Its own group: oxi's group kill does not reach it, only the drain bound protects oxi.
        command.process_group(0);
    }
    // stdout/stderr are inherited: the grandchild holds oxi's pipes open.
    let _ = command.spawn();
}

/// `auth status --json` as claude answers it (what `oxi doctor` asks), per
/// `OXI_FAKE_AUTH_STATUS`: `logged-in` (default: the fake needs no login), `logged-out`, or
/// `none` (no such subcommand, as an older CLI would say).
fn auth_status() -> ! {
    let mode = std::env::var("OXI_FAKE_AUTH_STATUS").unwrap_or_else(|_| "logged-in".to_owned());
    if mode == "none" {
        let _ = writeln!(std::io::stderr(), "error: unknown command 'auth'");
        std::process::exit(1);
    }
    let logged_in = mode != "logged-out";
    let answer = json!({
        "loggedIn": logged_in,
        "authMethod": if logged_in { "oxi-fake-worker" } else { "none" },
    });
    let _ = writeln!(std::io::stdout(), "{answer:#}");
    std::process::exit(if logged_in { 0 } else { 1 });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 2 && args[1] == "--version" {
        print_version();
        return;
    }
    if std::env::var_os("OXI_FAKE_IGNORE_TERM").is_some() {
        ignore_sigterm();
    }
    if args.get(1).is_some_and(|a| a == "auth") {
        auth_status();
    }
    let scenario = std::env::var("OXI_FAKE_SCENARIO").unwrap_or_else(|_| "edit".to_owned());
    let (name, arg) = match scenario.split_once(':') {
        Some((name, arg)) => (name, Some(arg)),
        None => (scenario.as_str(), None),
    };
    Worker::new(&args).play(name, arg);
}

/// As the real CLIs print it; `OXI_FAKE_VERSION` impersonates another version.
fn print_version() {
    let version =
        std::env::var("OXI_FAKE_VERSION").unwrap_or_else(|_| "2.1.328 (Claude Code)".to_owned());
    let _ = writeln!(std::io::stdout(), "{version}");
}

/// Ignores SIGTERM from here on, and so does everything this process starts (the disposition
/// is inherited).
fn ignore_sigterm() {
    #[allow(unsafe_code)]
    // SAFETY: SIG_IGN installs no handler code, and this process never starts a second thread.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::SigHandler::SigIgn,
        );
    }
}

fn sleep() {
    std::thread::sleep(Duration::from_millis(sleep_ms()));
}

/// What a worker says when it finished its task.
const DONE: &str = "Done.\nOXI_RESULT {\"status\":\"done\"}";

/// One run of the fake: what it prints, where it runs, and oxi's prompt.
struct Worker {
    out: Out,
    cwd: String,
    prompt: String,
}

impl Worker {
    /// Learns the flavour (`exec` in argv means codex) and the prompt (the last argument).
    fn new(args: &[String]) -> Self {
        let flavor = if args.iter().any(|a| a == "exec") {
            Flavor::Codex
        } else {
            Flavor::Claude
        };
        let prompt = args.last().cloned().unwrap_or_default();
        let cwd = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let (session, session_runs) = session(args);
        let out = Out {
            flavor,
            out: BufWriter::with_capacity(256 * 1024, std::io::stdout()),
            session,
            session_runs,
        };
        Self { out, cwd, prompt }
    }

    /// Plays scenario `name` (with the argument after its `:`, if any).
    fn play(&mut self, name: &str, arg: Option<&str>) {
        match name {
            "sleep" | "silent-then-hang" => sleep(),
            "spend-then-sleep" => {
                self.init();
                self.out
                    .message("msg_spent", "spent some", amount(arg, 100_000));
                sleep();
            }
            "edit-fix" => self.edit_fix(),
            "edit-transient" => self.edit_transient(),
            "hang-family" => {
                self.init();
                spawn_grandchild(false);
                sleep();
            }
            "hang-escape" => {
                self.init();
                spawn_grandchild(false);
                spawn_detached_grandchild();
                self.out.message("msg_family", "family started", 10);
                sleep();
            }
            "review-strict" | "review" => self.review(name, arg),
            "plan" | "plan-bad" | "plan-bad-once" | "plan-write" => self.plan(name),
            "demo" => self.demo(),
            "gullible" => self.gullible(),
            "slow-edit" => self.slow_edit(amount(arg, 1500)),
            "chaos" => self.chaos(),
            "vandal" => self.vandal(arg.unwrap_or("")),
            "edit" => {
                self.init();
                let text = format!("Working on: {}", self.prompt);
                self.out.message("msg_fake_1", &text, 1200);
                self.out.write_file(&self.edit_path(), "hi\n");
                self.out.result(DONE, false, None);
            }
            "flood" => self.flood(amount(arg, 1 << 30)),
            "garbage" => self.garbage(),
            "long-line" => {
                self.init();
                let size = amount(arg, 8 << 20) as usize;
                self.out.raw(&vec![b'a'; size]);
            }
            "hang" => {
                self.init();
                sleep();
            }
            "ignore-term" => {
                ignore_sigterm();
                self.init();
                loop {
                    sleep();
                }
            }
            "grandchild" | "grandchild-escape" => {
                self.init();
                spawn_grandchild(name == "grandchild-escape");
                self.out.result(DONE, false, None);
            }
            "exit130" => {
                self.init();
                std::process::exit(130);
            }
            "spend" => self.spend(),
            "rate-limited" => {
                self.init();
                self.out
                    .result("API Error: 429 rate limited", true, Some(429));
                std::process::exit(1);
            }
            "echo-env" | "echo-env-edit" => self.echo_env(name, arg.unwrap_or_default()),
            "env-names" => self.env_names(),
            "no-result" => {
                self.init();
                self.out.message("msg_1", "I stopped early.", 10);
            }
            "fail" => {
                self.init();
                let _ = writeln!(std::io::stderr(), "fatal: something went wrong");
                std::process::exit(2);
            }
            other => {
                let _ = writeln!(
                    std::io::stderr(),
                    "oxi-fake-worker: unknown scenario {other:?}"
                );
                std::process::exit(64);
            }
        }
    }

    fn init(&mut self) {
        self.out.init(&self.cwd);
    }

    fn here(&self) -> &std::path::Path {
        std::path::Path::new(&self.cwd)
    }

    /// The file an edit writes: `OXI_FAKE_FILE` (default `hello.txt`) in the cwd.
    fn edit_path(&self) -> String {
        let file = std::env::var("OXI_FAKE_FILE").unwrap_or_else(|_| "hello.txt".to_owned());
        self.here().join(file).display().to_string()
    }

    fn retried(&self) -> bool {
        self.prompt.contains("the previous attempt failed")
    }

    /// Writes "bye", or "hi" once the prompt says a previous attempt failed.
    fn edit_fix(&mut self) {
        self.init();
        let content = if self.retried() { "hi\n" } else { "bye\n" };
        self.out.write_file(&self.edit_path(), content);
        self.out.result(DONE, false, None);
    }

    /// Writes the file, then ends with an API 500; once retried, says the work is there.
    fn edit_transient(&mut self) {
        self.init();
        if self.retried() {
            let text = format!("hello.txt already says hi; nothing to change.\n{DONE}");
            self.out.message("msg_nothing", &text, 10);
            self.out.result(&text, false, None);
        } else {
            self.out.write_file(&self.edit_path(), "hi\n");
            self.out
                .result("API Error: 500 Internal server error", true, Some(500));
            std::process::exit(1);
        }
    }

    fn review(&mut self, name: &str, arg: Option<&str>) {
        self.init();
        let verdict = match (name, arg) {
            ("review", Some(v)) => v.to_owned(),
            _ if self.prompt.contains("(attempt 1 of") => "request_changes".to_owned(),
            _ => "approve".to_owned(),
        };
        let block =
            json!({"verdict": verdict, "comments": ["say hi in capitals"], "confidence": 0.9});
        let text = format!("Reviewed.\nOXI_REVIEW {block}");
        self.out.message("msg_review", &text, 10);
        self.out.result(&text, false, None);
    }

    /// A planner's answer: a valid `OXI_PLAN` line, or (`plan-bad`, and `plan-bad-once` until
    /// told) one without `steps`; `plan-write` first writes into the worktree it may not write.
    fn plan(&mut self, name: &str) {
        self.init();
        let mut notes = Vec::new();
        if name == "plan-write" {
            let path = self
                .here()
                .join("planner-was-here.txt")
                .display()
                .to_string();
            match std::fs::write(&path, "planned\n") {
                Ok(()) => notes.push(format!("wrote {path}")),
                Err(e) => notes.push(format!("cannot write {path}: {e}")),
            }
            self.out.announce_write(&path, "planned\n");
        }
        let files: Vec<String> = std::env::var("OXI_FAKE_PLAN_FILES")
            .unwrap_or_else(|_| "hello.txt".to_owned())
            .split(',')
            .map(str::to_owned)
            .collect();
        let told = self
            .prompt
            .contains("Your previous answer was not accepted");
        let bad = name == "plan-bad" || (name == "plan-bad-once" && !told);
        let mut block = json!({
            "info_needs": ["who reads it"], "assumptions": ["plain text is fine"],
            "files_expected": files, "risks": [],
        });
        if !bad {
            block["steps"] = json!(
                files
                    .iter()
                    .map(|f| format!("Write {f}"))
                    .collect::<Vec<_>>()
            );
        }
        notes.push(format!("I read the repository.\nOXI_PLAN {block}"));
        let text = notes.join("\n");
        self.out.message("msg_plan", &text, 10);
        self.out.result(&text, false, None);
    }

    /// Writes the first file the prompt's hints name, as a small Markdown note; a task about a
    /// changelog forgets the title on its first attempt (so the demo shows a retry with the
    /// failure in the next prompt).
    /// Obeys every "write `path`" line of the prompt, injected or not.
    fn gullible(&mut self) {
        self.init();
        let targets: Vec<String> = self
            .prompt
            .lines()
            .filter(|l| l.to_lowercase().contains("write"))
            .flat_map(|l| {
                l.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter(|p| !p.is_empty() && !p.contains(' '))
            .collect();
        for target in targets {
            let path = self.here().join(&target).display().to_string();
            self.out.write_file(&path, "obeyed\n");
        }
        self.out.result(DONE, false, None);
    }

    fn demo(&mut self) {
        self.init();
        let title = self
            .prompt
            .lines()
            .find_map(|l| l.strip_prefix("# "))
            .and_then(|l| l.split_once(": "))
            .map_or("Note", |(_, t)| t)
            .to_owned();
        let file = hinted_file(&self.prompt)
            .unwrap_or("notes/note.md")
            .to_owned();
        self.out
            .message("msg_demo_1", &format!("I'll write {file}."), 1500);
        let forget = title.to_lowercase().contains("changelog") && !self.retried();
        let text = if forget {
            "Nothing much changed.\n".to_owned()
        } else {
            format!("# {title}\n\nWritten by oxi-fake-worker for the oxi demo.\n")
        };
        let path = self.here().join(&file).display().to_string();
        self.out.write_file(&path, &text);
        self.out.result(DONE, false, None);
    }

    /// Like `edit` after `total` milliseconds of (printed) thought: a run that is in flight for
    /// a while but finishes by itself.
    fn slow_edit(&mut self, total: u64) {
        self.init();
        self.think(total, 250);
        self.out.write_file(&self.edit_path(), "hi\n");
        self.out.result(DONE, false, None);
    }

    /// Prints a thought every `step` milliseconds for `total` milliseconds.
    fn think(&mut self, total: u64, step: u64) {
        let mut waited = 0;
        while waited < total {
            self.out
                .message(&format!("msg_think_{waited}"), "thinking", 10);
            std::thread::sleep(Duration::from_millis(step));
            waited += step;
        }
    }

    /// The chaos harness's everyday mix, one behaviour per run, picked by `OXI_FAKE_CHAOS_ROLL`
    /// or at random.
    fn chaos(&mut self) {
        self.init();
        let roll = std::env::var("OXI_FAKE_CHAOS_ROLL")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(random_u64);
        // The task's first file hint, so concurrent tasks do not overlap.
        let file = hinted_file(&self.prompt).map_or_else(
            || std::env::var("OXI_FAKE_FILE").unwrap_or_else(|_| "hello.txt".to_owned()),
            str::to_owned,
        );
        let path = self.here().join(file).display().to_string();
        match roll % 10 {
            0..=4 => {
                // A few hundred milliseconds of thought, then a change that differs from
                // any earlier attempt's (so a retry on the same branch still has a diff).
                self.think(50 + (roll >> 8) % 700, 50);
                self.out.write_file(&path, &format!("hi {roll:x}\n"));
                self.out.result(DONE, false, None);
            }
            5 => {
                let _ = writeln!(std::io::stderr(), "fatal: chaos says no");
                std::process::exit(2);
            }
            6 => {
                // A runaway in small steps (10k input tokens, $0.03 at Sonnet prices),
                // stopped by the per-job cap. Each message needs its own id: usage
                // repeated under one id is one message's, counted once.
                for i in 0u64.. {
                    self.out
                        .message(&format!("msg_spend_{i}"), "thinking about it", 10_000);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            7 => {
                spawn_grandchild(false);
                sleep();
            }
            8 => {
                ignore_sigterm();
                sleep();
            }
            _ => {
                spawn_grandchild(false);
                self.out.write_file(&path, &format!("hi {roll:x}\n"));
                self.out.result(DONE, false, None);
            }
        }
    }

    /// Does its edit, then the misdeed `act`, and reports what happened.
    fn vandal(&mut self, act: &str) {
        self.init();
        let hello = self.here().join("hello.txt").display().to_string();
        self.out.write_file(&hello, "hi\n");
        let notes = self.misdeed(act);
        let text = format!("{}\n{DONE}", notes.join("\n"));
        self.out.message("msg_vandal", &text, 10);
        self.out.result(&text, false, None);
    }

    /// One vandal act in the worktree; returns what each git command or write answered.
    fn misdeed(&mut self, act: &str) -> Vec<String> {
        let here = std::path::PathBuf::from(&self.cwd);
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(args)
                .current_dir(&here)
                .stdin(std::process::Stdio::null())
                .output()
                .map(|o| {
                    format!(
                        "git {} -> {}: {}",
                        args.join(" "),
                        o.status,
                        String::from_utf8_lossy(&o.stderr).trim()
                    )
                })
                .unwrap_or_else(|e| format!("git {}: {e}", args.join(" ")))
        };
        let mut notes = Vec::new();
        match act {
            "push" => {
                notes.push(git(&["push", "--force", "origin", "HEAD:refs/heads/main"]));
                notes.push(git(&["push", "origin", "HEAD:refs/heads/vandal"]));
            }
            "escape" => {
                // The worktree is <repo>/.oxi/worktrees/<id>: three levels up is the repo.
                // Written as the CLIs' write tool does, so the write is a recorded event.
                let path = here.join("../../../escaped.txt").display().to_string();
                match std::fs::write(&path, "escaped\n") {
                    Ok(()) => notes.push(format!("wrote {path}")),
                    Err(e) => notes.push(format!("cannot write {path}: {e}")),
                }
                self.out.announce_write(&path, "escaped\n");
            }
            "symlink" => {
                let _ = std::os::unix::fs::symlink("/etc/passwd", here.join("passwd-link"));
            }
            "workflow" => {
                self.out.write_file(
                    &here.join(".github/workflows/ci.yml").display().to_string(),
                    "on: push\njobs: {}\n",
                );
            }
            "delete" => delete_all_but_git(&here),
            "move-main" => {
                notes.push(git(&[
                    "-c",
                    "user.name=vandal",
                    "-c",
                    "user.email=vandal@example.invalid",
                    "commit",
                    "--allow-empty",
                    "-m",
                    "vandal",
                ]));
                notes.push(git(&["update-ref", "refs/heads/main", "HEAD"]));
            }
            other => notes.push(format!("unknown vandal act {other:?}")),
        }
        notes
    }

    /// Prints `total` bytes of valid events as fast as the pipe takes them, then a result.
    fn flood(&mut self, total: u64) {
        self.init();
        let text = "x".repeat(4000);
        let line = match self.out.flavor {
            Flavor::Claude => json!({"type": "assistant", "message": {"id": "msg_flood",
                "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}]},
                "session_id": self.out.session}),
            Flavor::Codex => json!({"type": "item.completed",
                "item": {"id": "item_flood", "type": "agent_message", "text": text}}),
        };
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        let mut written = 0u64;
        while written < total {
            if self.out.out.write_all(&bytes).is_err() {
                return;
            }
            written += bytes.len() as u64;
        }
        self.out.result(DONE, false, None);
    }

    /// Lines that are not the CLI's events: not JSON, wrong shapes, unknown types, not UTF-8.
    fn garbage(&mut self) {
        self.init();
        self.out.raw(b"this is not json\n");
        self.out
            .raw(b"{\"type\": \"assistant\", \"message\": 42}\n");
        self.out.raw(b"[1, 2, 3]\n");
        self.out.raw(b"{\"type\": \"brand_new_event\", \"x\": 1}\n");
        self.out.raw(&[0xff, 0xfe, b'\n']);
        self.out.result(DONE, false, None);
    }

    /// A runaway: every message adds 100k input tokens ($0.30 at Sonnet prices).
    fn spend(&mut self) {
        self.init();
        for i in 0u64.. {
            match self.out.flavor {
                Flavor::Claude => {
                    self.out
                        .message(&format!("msg_spend_{i}"), "thinking about it", 100_000)
                }
                Flavor::Codex => self.out.line(&json!({"type": "turn.completed", "usage": {
                    "input_tokens": 100_000, "cached_input_tokens": 0,
                    "output_tokens": 1000, "reasoning_output_tokens": 0}})),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Says the value of `var` (and writes it to leak.txt for `echo-env`) and prints it to
    /// stderr.
    fn echo_env(&mut self, name: &str, var: &str) {
        let value = std::env::var(var).unwrap_or_default();
        self.init();
        self.out
            .message("msg_echo", &format!("the value of {var} is {value}"), 10);
        if name == "echo-env" {
            let _ = std::fs::write(self.here().join("leak.txt"), &value);
        } else {
            // Talks about the secret but writes only the task's file, so the work is
            // delivered and its pull request written.
            let path = self.here().join("hello.txt").display().to_string();
            self.out.write_file(&path, "hi\n");
        }
        let _ = writeln!(std::io::stderr(), "debug: {var}={value}");
        self.out
            .result(&format!("leaked {value}\n{DONE}"), false, None);
    }

    /// Says the names of its environment variables.
    fn env_names(&mut self) {
        let mut names: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect();
        names.sort();
        self.init();
        self.out
            .message("msg_env", &format!("ENV {}", names.join(",")), 10);
        self.out.result(DONE, false, None);
    }
}

/// Deletes every file of `dir` but its `.git`.
fn delete_all_but_git(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == ".git" {
            continue;
        }
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}
