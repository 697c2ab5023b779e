//! `oxi run` driving the real `claude` and `codex` binaries offline against the project's mock
//! model server: oxi's argv (prompt after `--`, permission mode, sandbox), its environment
//! allow-list and its parsing must work with the pinned CLIs, not only with captures.

use std::path::Path;
use std::time::Duration;

use oxi_testkit::mock_model::{MockModelServer, Script, Step};
use serde_json::Value;

use crate::support::OxiToml;
use crate::support::live::{self, Cli, Scratch};

const OXI_RESULT: &str = r#"OXI_RESULT {"status":"done"}"#;

/// oxi.toml for one live worker, written into the scratch repo.
fn write_config(scratch: &Scratch, cli: Cli, bin: &Path, server: &MockModelServer, caps: &str) {
    OxiToml::new()
        .worker(live::worker(cli, "live", bin, server))
        .routing(&["live"], &["live"])
        .raw(&format!("[caps]\n{caps}\n"))
        .write_in(&scratch.repo);
    // The ledger and run directories stay out of the work tree's status.
    std::fs::write(scratch.repo.join(".gitignore"), ".oxi/\noxi.toml\n").unwrap();
    crate::support::git(&scratch.repo, &["add", ".gitignore"]);
    crate::support::git(&scratch.repo, &["commit", "-q", "-m", "ignore oxi"]);
}

struct OxiRun {
    code: Option<i32>,
    report: Value,
    stderr: String,
}

async fn oxi_run(scratch: &Scratch, prompt: &str) -> OxiRun {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_oxi"));
    command
        .args(["run", "--format", "json", "--", prompt])
        .current_dir(&scratch.repo)
        .env_clear()
        .envs(crate::support::kept_env())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &scratch.home)
        .env("LANG", "C.UTF-8")
        .env("NO_COLOR", "1")
        .env("ANTHROPIC_API_KEY", "sk-test-live-key")
        .env("MOCK_API_KEY", "sk-test-live-key")
        .env("CODEX_HOME", &scratch.codex_home)
        .env("GITHUB_TOKEN", "ghp_must_not_reach_the_worker_000000000000")
        .kill_on_drop(true);
    let output = tokio::time::timeout(live::HARD_TIMEOUT, command.output())
        .await
        .expect("oxi run finishes")
        .expect("oxi runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    OxiRun {
        code: output.status.code(),
        report,
        stderr,
    }
}

async fn edits_a_file(cli: Cli) {
    let Some(bin) = live::require(cli) else {
        return;
    };
    let scratch = Scratch::new();
    let server = MockModelServer::start(Script::steps([
        Step::write_file("notes/plan.md", "# Plan\nstep one\n"),
        Step::text(format!("Created the plan.\n{OXI_RESULT}")),
    ]))
    .await
    .unwrap();
    write_config(&scratch, cli, &bin, &server, "");
    let run = oxi_run(
        &scratch,
        "-- write the plan (a prompt that starts with dashes)",
    )
    .await;
    let report = &run.report;

    assert_eq!(run.code, Some(0), "{report:#}\n{}", run.stderr);
    assert_eq!(report["classification"], "success");
    assert_eq!(
        scratch.read("notes/plan.md").as_deref(),
        Some("# Plan\nstep one\n")
    );
    assert_eq!(
        report["files_changed"],
        serde_json::json!(["notes/plan.md"])
    );
    assert_eq!(report["result"], serde_json::json!({"status": "done"}));
    // Two model calls of the mock's 1200 input (200 cached) each.
    assert_eq!(
        report["tokens"]["input"],
        2400 + if cli == Cli::Claude { 400 + 200 } else { 0 }
    );
    assert!(report["cost_usd"].as_f64().unwrap() > 0.0);
    let expected_source = if cli == Cli::Claude {
        "cli"
    } else {
        "rate_card"
    };
    assert_eq!(report["cost_source"], expected_source);
    let expected_version = if cli == Cli::Claude {
        live::CLAUDE_VERSION
    } else {
        live::CODEX_VERSION
    };
    assert_eq!(report["cli_version"], expected_version);
    assert_eq!(report["parse_failures"], 0);

    // The prompt reached the model intact, dashes and all, as the user's message.
    let requests = server.model_requests();
    assert_eq!(requests.len(), 2);
    let first = serde_json::to_string(&requests[0].body).unwrap();
    assert!(first.contains("-- write the plan"), "{first}");
    // The worker never saw the GitHub token.
    for request in server.requests() {
        let body = serde_json::to_string(&request.body).unwrap_or_default();
        assert!(
            !body.contains("ghp_must_not_reach"),
            "GitHub token in a model request"
        );
    }
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(report["run_dir"].as_str().unwrap()).join("meta.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(meta["version_tested"], true);
    assert!(
        meta["unknown_types"].as_object().unwrap().is_empty(),
        "{meta:#}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_run_edits_and_is_accounted_from_its_own_cost() {
    edits_a_file(Cli::Claude).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_run_edits_in_its_sandbox_and_is_priced_from_the_rate_card() {
    edits_a_file(Cli::Codex).await;
}

async fn classifies_api_failure(cli: Cli, code: u16, expected: &str) {
    let Some(bin) = live::require(cli) else {
        return;
    };
    let scratch = Scratch::new();
    let server = MockModelServer::start(Script::new().fallback(Step::status(code, None)))
        .await
        .unwrap();
    write_config(&scratch, cli, &bin, &server, "");
    let run = oxi_run(&scratch, "create hello.txt").await;
    assert_eq!(run.code, Some(1), "{:#}\n{}", run.report, run.stderr);
    assert_eq!(run.report["classification"], expected, "{:#}", run.report);
    assert_eq!(run.report["retryable"], true);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_429_is_rate_limited() {
    classifies_api_failure(Cli::Claude, 429, "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_500_is_transient() {
    classifies_api_failure(Cli::Codex, 500, "transient").await;
}

async fn a_hung_model_is_stalled_and_the_cli_group_ends(cli: Cli) {
    let Some(bin) = live::require(cli) else {
        return;
    };
    let scratch = Scratch::new();
    let server = MockModelServer::start(Script::new().fallback(Step::Hang))
        .await
        .unwrap();
    write_config(
        &scratch,
        cli,
        &bin,
        &server,
        "stall_timeout = \"3s\"\nkill_grace = \"2s\"",
    );
    let started = std::time::Instant::now();
    let run = oxi_run(&scratch, "create hello.txt").await;
    assert_eq!(run.report["classification"], "stalled", "{:#}", run.report);
    assert!(started.elapsed() < Duration::from_secs(20));
    let ledger = oxi::ledger::Ledger::open_existing(&scratch.repo.join(".oxi/ledger.db")).unwrap();
    let row = ledger
        .read()
        .run(run.report["run_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert!(
        !oxi::process::group_alive(row.pgid.unwrap()),
        "CLI processes left behind"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_hung_model_is_stalled() {
    a_hung_model_is_stalled_and_the_cli_group_ends(Cli::Claude).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_hung_model_is_stalled() {
    a_hung_model_is_stalled_and_the_cli_group_ends(Cli::Codex).await;
}

/// One full `oxi tick` with the live CLI as the executor: claim, worktree, run, verify with a
/// real acceptance command, auto-approve, commit on the task branch.
async fn a_full_tick_delivers(cli: Cli) {
    let Some(bin) = live::require(cli) else {
        return;
    };
    let scratch = Scratch::new();
    let server = MockModelServer::start(Script::steps([
        Step::write_file("notes/plan.md", "# Plan\nstep one\n"),
        Step::text(format!("Wrote the plan.\n{OXI_RESULT}")),
    ]))
    .await
    .unwrap();
    write_config(&scratch, cli, &bin, &server, "");
    let mut toml = std::fs::read_to_string(scratch.repo.join("oxi.toml")).unwrap();
    toml.push_str(
        "\n[verify]\ntier0 = [{ name = \"plan exists\", argv = [\"test\", \"-s\", \"notes/plan.md\"], timeout = \"30s\" }]\n",
    );
    std::fs::write(scratch.repo.join("oxi.toml"), toml).unwrap();
    std::fs::write(
        scratch.repo.join("roadmap.md"),
        "# Roadmap\n\n**T0-7 · Write the plan**\nPut the plan in `notes/plan.md`.\n",
    )
    .unwrap();
    crate::support::git(&scratch.repo, &["add", "roadmap.md"]);
    crate::support::git(&scratch.repo, &["commit", "-q", "-m", "roadmap"]);

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_oxi"));
    command
        .args(["tick", "--format", "json"])
        .current_dir(&scratch.repo)
        .env_clear()
        .envs(crate::support::kept_env())
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &scratch.home)
        .env("LANG", "C.UTF-8")
        .env("ANTHROPIC_API_KEY", "sk-test-live-key")
        .env("MOCK_API_KEY", "sk-test-live-key")
        .env("CODEX_HOME", &scratch.codex_home)
        .kill_on_drop(true);
    let output = tokio::time::timeout(live::HARD_TIMEOUT, command.output())
        .await
        .expect("tick finishes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert_eq!(output.status.code(), Some(0), "{report:#}");
    let job = &report["jobs"][0];
    assert_eq!(job["state"], "delivered", "{report:#}");
    let branch = job["branch"].as_str().unwrap();
    assert_eq!(branch, "oxi/t0-7-write-the-plan");
    assert_eq!(
        crate::support::git(&scratch.repo, &["show", &format!("{branch}:notes/plan.md")]),
        "# Plan\nstep one"
    );
    assert!(
        !scratch.repo.join("notes/plan.md").exists(),
        "the main checkout is untouched"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_full_tick_delivers_a_branch() {
    a_full_tick_delivers(Cli::Claude).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_full_tick_delivers_a_branch() {
    a_full_tick_delivers(Cli::Codex).await;
}
