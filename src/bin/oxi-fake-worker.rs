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
//!   `spend`, `rate-limited`, `echo-env:<NAME>` (and `echo-env-edit:<NAME>`, which writes
//!   hello.txt instead of the value), `env-names`, `no-result`, `fail`,
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
                "total_cost_usd": reported_cost_usd(), "api_error_status": api_error_status,
                "terminal_reason": if api_error_status.is_some() { Some("api_error") } else { None },
                "usage": {"input_tokens": 2400, "cache_creation_input_tokens": 200,
                          "cache_read_input_tokens": 400, "output_tokens": 100},
            })),
            Flavor::Codex => {
                self.message("item_9", text, 0);
                if is_error {
                    self.line(&json!({"type": "turn.failed", "error": {"message": text}}));
                } else {
                    self.line(&json!({"type": "turn.completed", "usage": {
                        "input_tokens": 2400, "cached_input_tokens": 400,
                        "cache_write_input_tokens": 0, "output_tokens": 100,
                        "reasoning_output_tokens": 40}}));
                }
            }
        }
    }
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
        // As the real CLIs print it; OXI_FAKE_VERSION impersonates another version.
        let version = std::env::var("OXI_FAKE_VERSION")
            .unwrap_or_else(|_| "2.1.328 (Claude Code)".to_owned());
        let _ = writeln!(std::io::stdout(), "{version}");
        return;
    }
    if std::env::var_os("OXI_FAKE_IGNORE_TERM").is_some() {
        #[allow(unsafe_code)]
        // SAFETY: SIG_IGN installs no handler code; no other thread exists yet.
        unsafe {
            let _ = nix::sys::signal::signal(
                nix::sys::signal::Signal::SIGTERM,
                nix::sys::signal::SigHandler::SigIgn,
            );
        }
    }
    if args.get(1).is_some_and(|a| a == "auth") {
        auth_status();
    }
    let flavor = if args.iter().any(|a| a == "exec") {
        Flavor::Codex
    } else {
        Flavor::Claude
    };
    let prompt = args.last().cloned().unwrap_or_default();
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let scenario = std::env::var("OXI_FAKE_SCENARIO").unwrap_or_else(|_| "edit".to_owned());
    let (name, arg) = match scenario.split_once(':') {
        Some((name, arg)) => (name.to_owned(), Some(arg.to_owned())),
        None => (scenario.clone(), None),
    };
    let mut out = Out {
        flavor,
        out: BufWriter::with_capacity(256 * 1024, std::io::stdout()),
        session: format!("fake-{}", std::process::id()),
    };
    let done = "Done.\nOXI_RESULT {\"status\":\"done\"}";
    match name.as_str() {
        "sleep" => std::thread::sleep(Duration::from_millis(sleep_ms())),
        "edit-fix" => {
            out.init(&cwd);
            let fixed = prompt.contains("the previous attempt failed");
            let file = std::env::var("OXI_FAKE_FILE").unwrap_or_else(|_| "hello.txt".to_owned());
            let path = std::path::Path::new(&cwd).join(file);
            out.write_file(
                &path.display().to_string(),
                if fixed { "hi\n" } else { "bye\n" },
            );
            out.result(done, false, None);
        }
        "edit-transient" => {
            out.init(&cwd);
            if prompt.contains("the previous attempt failed") {
                let text = format!("hello.txt already says hi; nothing to change.\n{done}");
                out.message("msg_nothing", &text, 10);
                out.result(&text, false, None);
            } else {
                let file =
                    std::env::var("OXI_FAKE_FILE").unwrap_or_else(|_| "hello.txt".to_owned());
                let path = std::path::Path::new(&cwd).join(file);
                out.write_file(&path.display().to_string(), "hi\n");
                out.result("API Error: 500 Internal server error", true, Some(500));
                std::process::exit(1);
            }
        }
        "hang-family" => {
            out.init(&cwd);
            spawn_grandchild(false);
            std::thread::sleep(Duration::from_millis(sleep_ms()));
        }
        "hang-escape" => {
            out.init(&cwd);
            spawn_grandchild(false);
            spawn_detached_grandchild();
            out.message("msg_family", "family started", 10);
            std::thread::sleep(Duration::from_millis(sleep_ms()));
        }
        "review-strict" | "review" => {
            out.init(&cwd);
            let verdict = match (name.as_str(), arg.as_deref()) {
                ("review", Some(v)) => v.to_owned(),
                _ if prompt.contains("(attempt 1 of") => "request_changes".to_owned(),
                _ => "approve".to_owned(),
            };
            let block =
                json!({"verdict": verdict, "comments": ["say hi in capitals"], "confidence": 0.9});
            let text = format!("Reviewed.\nOXI_REVIEW {block}");
            out.message("msg_review", &text, 10);
            out.result(&text, false, None);
        }
        "demo" => {
            // Writes the first file the prompt's hints name, as a small Markdown note; a task
            // about a changelog forgets the title on its first attempt (so the demo shows a
            // retry with the failure in the next prompt).
            out.init(&cwd);
            let title = prompt
                .lines()
                .find_map(|l| l.strip_prefix("# "))
                .and_then(|l| l.split_once(": "))
                .map_or("Note", |(_, t)| t)
                .to_owned();
            let file = hinted_file(&prompt).unwrap_or("notes/note.md").to_owned();
            out.message("msg_demo_1", &format!("I'll write {file}."), 1500);
            let forget = title.to_lowercase().contains("changelog")
                && !prompt.contains("the previous attempt failed");
            let text = if forget {
                "Nothing much changed.\n".to_owned()
            } else {
                format!("# {title}\n\nWritten by oxi-fake-worker for the oxi demo.\n")
            };
            let path = std::path::Path::new(&cwd).join(&file);
            out.write_file(&path.display().to_string(), &text);
            out.result(done, false, None);
        }
        "slow-edit" => {
            // Like `edit` after `arg` milliseconds of (printed) thought: a run that is in flight
            // for a while but finishes by itself.
            out.init(&cwd);
            let total = amount(arg.as_deref(), 1500);
            let mut waited = 0;
            while waited < total {
                out.message(&format!("msg_think_{waited}"), "thinking", 10);
                std::thread::sleep(Duration::from_millis(250));
                waited += 250;
            }
            let file = std::env::var("OXI_FAKE_FILE").unwrap_or_else(|_| "hello.txt".to_owned());
            let path = std::path::Path::new(&cwd).join(file);
            out.write_file(&path.display().to_string(), "hi\n");
            out.result(done, false, None);
        }
        "chaos" => {
            out.init(&cwd);
            let roll = std::env::var("OXI_FAKE_CHAOS_ROLL")
                .ok()
                .and_then(|r| r.parse().ok())
                .unwrap_or_else(random_u64);
            // The task's first file hint, so concurrent tasks do not overlap.
            let file = hinted_file(&prompt).map_or_else(
                || std::env::var("OXI_FAKE_FILE").unwrap_or_else(|_| "hello.txt".to_owned()),
                str::to_owned,
            );
            let path = std::path::Path::new(&cwd).join(file);
            match roll % 10 {
                0..=4 => {
                    // A few hundred milliseconds of thought, then a change that differs from
                    // any earlier attempt's (so a retry on the same branch still has a diff).
                    let think = 50 + (roll >> 8) % 700;
                    let mut waited = 0;
                    while waited < think {
                        out.message(&format!("msg_think_{waited}"), "thinking", 10);
                        std::thread::sleep(Duration::from_millis(50));
                        waited += 50;
                    }
                    out.write_file(&path.display().to_string(), &format!("hi {roll:x}\n"));
                    out.result(done, false, None);
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
                        out.message(&format!("msg_spend_{i}"), "thinking about it", 10_000);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                7 => {
                    spawn_grandchild(false);
                    std::thread::sleep(Duration::from_millis(sleep_ms()));
                }
                8 => {
                    #[allow(unsafe_code)]
                    // SAFETY: SIG_IGN installs no handler code; no other thread exists yet.
                    unsafe {
                        let _ = nix::sys::signal::signal(
                            nix::sys::signal::Signal::SIGTERM,
                            nix::sys::signal::SigHandler::SigIgn,
                        );
                    }
                    std::thread::sleep(Duration::from_millis(sleep_ms()));
                }
                _ => {
                    spawn_grandchild(false);
                    out.write_file(&path.display().to_string(), &format!("hi {roll:x}\n"));
                    out.result(done, false, None);
                }
            }
        }
        "vandal" => {
            out.init(&cwd);
            let here = std::path::Path::new(&cwd);
            out.write_file(&here.join("hello.txt").display().to_string(), "hi\n");
            let git = |args: &[&str]| {
                std::process::Command::new("git")
                    .args(args)
                    .current_dir(here)
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
            match arg.as_deref().unwrap_or("") {
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
                    out.announce_write(&path, "escaped\n");
                }
                "symlink" => {
                    let _ = std::os::unix::fs::symlink("/etc/passwd", here.join("passwd-link"));
                }
                "workflow" => {
                    out.write_file(
                        &here.join(".github/workflows/ci.yml").display().to_string(),
                        "on: push\njobs: {}\n",
                    );
                }
                "delete" => {
                    if let Ok(entries) = std::fs::read_dir(here) {
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
                }
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
            let text = format!("{}\n{done}", notes.join("\n"));
            out.message("msg_vandal", &text, 10);
            out.result(&text, false, None);
        }
        "edit" => {
            out.init(&cwd);
            out.message("msg_fake_1", &format!("Working on: {prompt}"), 1200);
            let file = std::env::var("OXI_FAKE_FILE").unwrap_or_else(|_| "hello.txt".to_owned());
            let path = std::path::Path::new(&cwd).join(file);
            out.write_file(&path.display().to_string(), "hi\n");
            out.result(done, false, None);
        }
        "flood" => {
            out.init(&cwd);
            let total = amount(arg.as_deref(), 1 << 30);
            let text = "x".repeat(4000);
            let line = match flavor {
                Flavor::Claude => json!({"type": "assistant", "message": {"id": "msg_flood",
                    "type": "message", "role": "assistant", "content": [{"type": "text", "text": text}]},
                    "session_id": out.session}),
                Flavor::Codex => json!({"type": "item.completed",
                    "item": {"id": "item_flood", "type": "agent_message", "text": text}}),
            };
            let mut bytes = line.to_string().into_bytes();
            bytes.push(b'\n');
            let mut written = 0u64;
            while written < total {
                if out.out.write_all(&bytes).is_err() {
                    return;
                }
                written += bytes.len() as u64;
            }
            out.result(done, false, None);
        }
        "garbage" => {
            out.init(&cwd);
            out.raw(b"this is not json\n");
            out.raw(b"{\"type\": \"assistant\", \"message\": 42}\n");
            out.raw(b"[1, 2, 3]\n");
            out.raw(b"{\"type\": \"brand_new_event\", \"x\": 1}\n");
            out.raw(&[0xff, 0xfe, b'\n']);
            out.result(done, false, None);
        }
        "long-line" => {
            out.init(&cwd);
            let size = amount(arg.as_deref(), 8 << 20) as usize;
            out.raw(&vec![b'a'; size]);
        }
        "hang" => {
            out.init(&cwd);
            std::thread::sleep(Duration::from_millis(sleep_ms()));
        }
        "silent-then-hang" => std::thread::sleep(Duration::from_millis(sleep_ms())),
        "ignore-term" => {
            #[allow(unsafe_code)]
            // SAFETY: SIG_IGN installs no handler code; nothing else runs concurrently yet.
            unsafe {
                let _ = nix::sys::signal::signal(
                    nix::sys::signal::Signal::SIGTERM,
                    nix::sys::signal::SigHandler::SigIgn,
                );
            }
            out.init(&cwd);
            loop {
                std::thread::sleep(Duration::from_millis(sleep_ms()));
            }
        }
        "grandchild" | "grandchild-escape" => {
            out.init(&cwd);
            spawn_grandchild(name == "grandchild-escape");
            out.result(done, false, None);
        }
        "exit130" => {
            out.init(&cwd);
            std::process::exit(130);
        }
        "spend" => {
            // A runaway: every message adds 100k input tokens ($0.30 at Sonnet prices).
            out.init(&cwd);
            for i in 0u64.. {
                match flavor {
                    Flavor::Claude => {
                        out.message(&format!("msg_spend_{i}"), "thinking about it", 100_000)
                    }
                    Flavor::Codex => out.line(&json!({"type": "turn.completed", "usage": {
                        "input_tokens": 100_000, "cached_input_tokens": 0,
                        "output_tokens": 1000, "reasoning_output_tokens": 0}})),
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        "rate-limited" => {
            out.init(&cwd);
            out.result("API Error: 429 rate limited", true, Some(429));
            std::process::exit(1);
        }
        "echo-env" | "echo-env-edit" => {
            let var = arg.unwrap_or_default();
            let value = std::env::var(&var).unwrap_or_default();
            out.init(&cwd);
            out.message("msg_echo", &format!("the value of {var} is {value}"), 10);
            if name == "echo-env" {
                let _ = std::fs::write(std::path::Path::new(&cwd).join("leak.txt"), &value);
            } else {
                // Talks about the secret but writes only the task's file, so the work is
                // delivered and its pull request written.
                let path = std::path::Path::new(&cwd).join("hello.txt");
                out.write_file(&path.display().to_string(), "hi\n");
            }
            let _ = writeln!(std::io::stderr(), "debug: {var}={value}");
            out.result(&format!("leaked {value}\n{done}"), false, None);
        }
        "env-names" => {
            let mut names: Vec<String> = std::env::vars_os()
                .filter_map(|(k, _)| k.into_string().ok())
                .collect();
            names.sort();
            out.init(&cwd);
            out.message("msg_env", &format!("ENV {}", names.join(",")), 10);
            out.result(done, false, None);
        }
        "no-result" => {
            out.init(&cwd);
            out.message("msg_1", "I stopped early.", 10);
        }
        "fail" => {
            out.init(&cwd);
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
