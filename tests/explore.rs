//! The explore phase (docs/explore.md): a read-only `planner` run before the executor, its
//! `OXI_PLAN` answer validated and stored, and used — the executor's prompt trimmed to the
//! plan, the critic calling the reviewer when the diff strays from it.
//!
//! Everything runs the real `oxi` and `oxi-fake-worker` binaries in a real git repository; the
//! planner is a fake worker with a planner scenario.

use oxi::ledger::{FailureClass, Ledger, TaskState};
use serde_json::Value;

use crate::support::{OxiToml, Sandbox, Worker, git};

/// A task that names no file (explored by default), and one that does (not explored).
const VAGUE: &str = "**T0-1 · Greet new contributors**\nMake the project friendlier to people who arrive for the first time. Say hello somewhere sensible; nobody decided where yet, and the tone should match the rest of the documentation, which is plain and short. Newcomers have asked in the issue tracker where to start, what the project expects of a first pull request, and whom to ask when they are stuck; the answer should cover those three questions without repeating what the README already says about building and testing.\n";
const NAMED: &str = "**T0-2 · Write the greeting note**\nCreate `notes/greeting.md` that welcomes new contributors.\n";

/// A fast-mode repository: executor `exec` (`executor` scenario), planner `planner`
/// (`planner` scenario, expecting `plan_files`), reviewer `reviewer` (approves); `extra` is
/// more TOML (rules, `[explore]`).
fn repo(
    roadmap_tasks: &str,
    executor: &str,
    planner: &str,
    plan_files: &str,
    extra: &str,
) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write(
        "roadmap.md",
        format!("# Roadmap\n\n## Tier 0\n\n{roadmap_tasks}"),
    );
    s.write("notes/README.md", "# Notes\n");
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .raw("[run]\nmode = \"fast\"\nmax_parallel_jobs = 1\n")
            .worker(Worker::fake("exec").scenario(executor))
            .worker(
                Worker::fake("planner")
                    .scenario(planner)
                    .set_env("OXI_FAKE_PLAN_FILES", plan_files),
            )
            .worker(Worker::fake("reviewer").scenario("review:approve"))
            .raw("[routing]\nexecutor = [\"exec\"]\nreviewer = [\"reviewer\"]\nplanner = [\"planner\"]\n")
            .raw("[verify]\ntier0 = [{ name = \"green\", argv = [\"true\"], timeout = \"30s\" }]\n")
            .raw(extra),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap()
}

/// `(role, prompt_bytes, run_dir)` of the task's runs, in order.
fn runs(s: &Sandbox, task: &str) -> Vec<(String, Option<i64>, String)> {
    let mut l = ledger(s);
    let conn = l.raw_connection();
    let mut stmt = conn
        .prepare("SELECT role, prompt_bytes, run_dir FROM runs WHERE task_id = ?1 ORDER BY started_at_ms, rowid")
        .unwrap();
    stmt.query_map([task], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The task's events of `kind`, their data.
fn events(s: &Sandbox, task: &str, kind: &str) -> Vec<Value> {
    let mut l = ledger(s);
    let conn = l.raw_connection();
    let mut stmt = conn
        .prepare("SELECT data FROM events WHERE task_id = ?1 AND kind = ?2 ORDER BY id")
        .unwrap();
    stmt.query_map([task, kind], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
        .collect()
}

fn roles(s: &Sandbox, task: &str) -> Vec<String> {
    runs(s, task).into_iter().map(|(role, _, _)| role).collect()
}

fn state(s: &Sandbox, task: &str) -> (TaskState, Option<FailureClass>) {
    let task = ledger(s).read().task(task).unwrap().unwrap();
    (task.state, task.failure_class)
}

fn prompt_of(run_dir: &str) -> String {
    std::fs::read_to_string(format!("{run_dir}/prompt.md")).unwrap()
}

#[test]
fn a_task_without_file_hints_is_planned_read_only_and_its_executor_gets_the_steps() {
    let s = repo(VAGUE, "demo", "plan", "notes/welcome.md", "");
    s.oxi(&["tick"]).ok();
    // The executor's run was admitted by the claim, before the planner ran.
    assert_eq!(roles(&s, "T0-1"), ["executor", "planner"]);
    let all = runs(&s, "T0-1");
    let planner = all.iter().find(|(role, _, _)| role == "planner").unwrap();
    let executor = all.iter().find(|(role, _, _)| role == "executor").unwrap();
    // The planner got the whole brief and was told it may not write.
    let planner_prompt = prompt_of(&planner.2);
    assert!(
        planner_prompt.contains("nobody decided where yet"),
        "{planner_prompt}"
    );
    assert!(planner_prompt.contains("read-only"), "{planner_prompt}");
    // The executor got the goal, the steps and the expected files instead of the brief.
    let executor_prompt = prompt_of(&executor.2);
    assert!(
        executor_prompt.contains("1. Write notes/welcome.md"),
        "{executor_prompt}"
    );
    assert!(
        executor_prompt.contains("Files likely involved: `notes/welcome.md`"),
        "{executor_prompt}"
    );
    assert!(
        !executor_prompt.contains("nobody decided where yet"),
        "{executor_prompt}"
    );
    // Prompt bytes per call are recorded, and the trimmed prompt is the smaller.
    let recorded = events(&s, "T0-1", "plan_recorded");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let (full, trimmed) = (
        recorded[0]["full_prompt_bytes"].as_i64().unwrap(),
        recorded[0]["prompt_bytes"].as_i64().unwrap(),
    );
    assert!(trimmed < full, "{recorded:?}");
    assert_eq!(executor.1, Some(trimmed));
    assert!(planner.1.is_some_and(|b| b > 0));
    // The executor wrote the planned file; the task is delivered.
    assert_eq!(state(&s, "T0-1").0, TaskState::Delivered);
    let show = s.oxi(&["show", "T0-1"]).ok().to_owned();
    assert!(show.contains("plan (run "), "{show}");
    assert!(show.contains("files expected: notes/welcome.md"), "{show}");
    assert!(show.contains("1. Write notes/welcome.md"), "{show}");
    let json = s.oxi(&["show", "T0-1", "--format", "json"]).json();
    assert_eq!(
        json["plan"]["plan"]["files_expected"][0], "notes/welcome.md",
        "{json:#}"
    );
    let report = s.oxi(&["report", "--format", "json"]).json();
    assert_eq!(report["executor_prompt_bytes"]["calls"], 1, "{report:#}");
    assert_eq!(
        report["executor_prompt_bytes"]["median"], trimmed,
        "{report:#}"
    );
}

#[test]
fn an_incremental_task_is_not_planned_and_keeps_its_brief() {
    let s = repo(NAMED, "demo", "plan", "notes/greeting.md", "");
    s.oxi(&["tick"]).ok();
    assert_eq!(roles(&s, "T0-2"), ["executor"]);
    let (_, _, dir) = &runs(&s, "T0-2")[0];
    assert!(prompt_of(dir).contains("that welcomes new contributors"));
    assert!(events(&s, "T0-2", "plan_recorded").is_empty());
    assert_eq!(state(&s, "T0-2").0, TaskState::Delivered);
}

#[test]
fn a_rule_turns_explore_off_or_on_for_the_tasks_it_matches() {
    let rules = "[[routing.rules]]\nname = \"quiet\"\nwhen = { title = \"Greet\" }\nexplore = false\n\n[[routing.rules]]\nname = \"careful\"\nwhen = { title = \"note\" }\nexplore = true\n";
    let s = repo(
        &format!("{VAGUE}\n{NAMED}"),
        "demo",
        "plan",
        "notes/greeting.md",
        rules,
    );
    s.oxi(&["tick"]).ok();
    s.oxi(&["tick"]).ok();
    assert_eq!(roles(&s, "T0-1"), ["executor"]);
    assert_eq!(roles(&s, "T0-2"), ["executor", "planner"]);
}

#[test]
fn explore_mode_never_and_labels_are_honoured() {
    let labelled = "**T0-2 · Write the greeting note**\nCreate `notes/greeting.md` that welcomes new contributors.\nLabels: greenfield\n";
    let s = repo(
        &format!("{VAGUE}\n{labelled}"),
        "demo",
        "plan",
        "notes/greeting.md",
        "[explore]\nmode = \"never\"\n",
    );
    s.oxi(&["tick"]).ok();
    s.oxi(&["tick"]).ok();
    assert_eq!(roles(&s, "T0-1"), ["executor"]);
    assert_eq!(roles(&s, "T0-2"), ["executor"]);

    let s = repo(labelled, "demo", "plan", "notes/greeting.md", "");
    s.oxi(&["tick"]).ok();
    assert_eq!(roles(&s, "T0-2"), ["executor", "planner"]);
}

#[test]
fn a_planner_that_writes_is_a_violation_with_the_path_and_nothing_of_it_survives() {
    let s = repo(VAGUE, "demo", "plan-write", "notes/welcome.md", "");
    s.oxi(&["tick"]).ok();
    let memos = events(&s, "T0-1", "governance_memo");
    assert_eq!(memos.len(), 1, "{memos:?}");
    assert_eq!(memos[0]["trigger"], "read_only_write", "{memos:?}");
    assert_eq!(memos[0]["paths"][0], "planner-was-here.txt", "{memos:?}");
    // Refused by Landlock where the kernel has it, else written and discarded: either way the
    // branch and the worktree hold nothing of it.
    assert_eq!(state(&s, "T0-1").0, TaskState::Delivered);
    let tree = git(
        s.path(),
        &[
            "ls-tree",
            "-r",
            "--name-only",
            "oxi/t0-1-greet-new-contributors",
        ],
    );
    assert!(tree.contains("notes/welcome.md"), "{tree}");
    assert!(!tree.contains("planner-was-here"), "{tree}");
    assert!(!s.file("planner-was-here.txt").exists());
    let report = s.oxi(&["report", "--format", "json"]).json();
    assert_eq!(report["governance_violations"], 1, "{report:#}");
}

#[test]
fn without_confinement_the_planners_write_is_found_in_the_worktree_and_discarded() {
    // As on macOS, or a kernel without Landlock: the write happens; the worktree diff finds it.
    let s = repo(
        VAGUE,
        "demo",
        "plan-write",
        "notes/welcome.md",
        "[governance]\nconfine = \"off\"\n",
    );
    s.oxi(&["tick"]).ok();
    let memos = events(&s, "T0-1", "governance_memo");
    assert_eq!(memos.len(), 1, "{memos:?}");
    assert_eq!(memos[0]["paths"][0], "planner-was-here.txt", "{memos:?}");
    let detectors = memos[0]["detectors"].to_string();
    assert!(detectors.contains("worktree_diff"), "{memos:?}");
    assert_eq!(state(&s, "T0-1").0, TaskState::Delivered);
    let tree = git(
        s.path(),
        &[
            "ls-tree",
            "-r",
            "--name-only",
            "oxi/t0-1-greet-new-contributors",
        ],
    );
    assert!(!tree.contains("planner-was-here"), "{tree}");
}

#[test]
fn a_bad_plan_is_retried_once_then_the_task_fails_as_plan_invalid() {
    let s = repo(VAGUE, "demo", "plan-bad", "notes/welcome.md", "");
    s.oxi(&["tick"]).ok();
    assert_eq!(roles(&s, "T0-1"), ["executor", "planner", "planner"]);
    let invalid = events(&s, "T0-1", "plan_invalid");
    assert_eq!(invalid.len(), 2, "{invalid:?}");
    assert_eq!(invalid[0]["retry"], true);
    assert_eq!(invalid[1]["retry"], false);
    assert!(
        invalid[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("steps: missing"),
        "{invalid:?}"
    );
    // The retry told the planner why.
    let planners: Vec<_> = runs(&s, "T0-1")
        .into_iter()
        .filter(|(role, _, _)| role == "planner")
        .collect();
    assert!(prompt_of(&planners[1].2).contains("steps: missing"));
    let (task_state, class) = state(&s, "T0-1");
    assert_eq!(class, Some(FailureClass::PlanInvalid));
    assert_ne!(task_state, TaskState::Delivered);
}

#[test]
fn a_plan_fixed_on_the_retry_is_used() {
    let s = repo(VAGUE, "demo", "plan-bad-once", "notes/welcome.md", "");
    s.oxi(&["tick"]).ok();
    assert_eq!(events(&s, "T0-1", "plan_invalid").len(), 1);
    assert_eq!(events(&s, "T0-1", "plan_recorded").len(), 1);
    assert_eq!(state(&s, "T0-1").0, TaskState::Delivered);
}

#[test]
fn a_diff_that_strays_from_the_plan_goes_to_the_reviewer_with_the_reason() {
    // The planner expects notes/welcome.md; the executor writes hello.txt.
    let s = repo(VAGUE, "edit", "plan", "notes/welcome.md", "");
    s.oxi(&["tick"]).ok();
    assert!(roles(&s, "T0-1").contains(&"reviewer".to_owned()));
    let decided = events(&s, "T0-1", "review_decided");
    let reasons = decided[0]["reasons_for_review"].to_string();
    assert!(
        reasons.contains("strays outside the plan's files_expected (notes/welcome.md): hello.txt"),
        "{decided:?}"
    );
    // The same change, planned for, is auto-approved.
    let s = repo(VAGUE, "edit", "plan", "hello.txt", "");
    s.oxi(&["tick"]).ok();
    assert!(!roles(&s, "T0-1").contains(&"reviewer".to_owned()));
}

#[test]
fn explore_config_that_cannot_run_is_refused_with_the_key() {
    let s = repo(VAGUE, "demo", "plan", "hello.txt", "");
    let text = s.read("oxi.toml").replace("planner = [\"planner\"]\n", "")
        + "\n[explore]\nmode = \"always\"\n";
    s.write("oxi.toml", &text);
    let err = s.oxi(&["tick"]).fails_with(3).to_owned();
    assert!(err.contains("explore.mode"), "{err}");
    assert!(err.contains("routing.planner is empty"), "{err}");

    let s = repo(VAGUE, "demo", "plan", "hello.txt", "");
    let text = s.read("oxi.toml").replace("planner = [\"planner\"]\n", "")
        + "\n[[routing.rules]]\nname = \"r\"\nexplore = true\n";
    s.write("oxi.toml", &text);
    let err = s.oxi(&["tick"]).fails_with(3).to_owned();
    assert!(err.contains("routing.rules.0.explore"), "{err}");
}

/// The live CLI as the planner against the mock model server: oxi passes its read-only flag
/// (`--permission-mode plan` for claude, `--sandbox read-only` for codex), the model's attempt
/// to write is not carried out, the plan it then gives is stored, and the executor (the same
/// CLI, not read-only) builds from it.
async fn a_live_planner_is_read_only(cli: crate::support::live::Cli) {
    use crate::support::live::{self, Scratch};
    use oxi_testkit::mock_model::{MockModelServer, Script, Step};
    let Some(bin) = live::require(cli) else {
        return;
    };
    let scratch = Scratch::new();
    let plan = r#"OXI_PLAN {"info_needs":[],"assumptions":["Markdown"],"files_expected":["notes/plan.md"],"steps":["Write notes/plan.md"],"risks":[]}"#;
    let server = MockModelServer::start(Script::steps([
        // The planner tries to write, then answers with its plan.
        Step::write_file("planner-was-here.txt", "planned\n"),
        Step::text(format!("Planned.\n{plan}")),
        // The executor.
        Step::write_file("notes/plan.md", "# Plan\nstep one\n"),
        Step::text("Wrote it.\nOXI_RESULT {\"status\":\"done\"}"),
    ]))
    .await
    .unwrap();
    OxiToml::new()
        .worker(live::worker(cli, "live", &bin, &server))
        .raw("[routing]\nexecutor = [\"live\"]\nreviewer = [\"live\"]\nplanner = [\"live\"]\n")
        .raw("[verify]\ntier0 = [{ name = \"plan exists\", argv = [\"test\", \"-s\", \"notes/plan.md\"], timeout = \"30s\" }]\n")
        .write_in(&scratch.repo);
    std::fs::write(scratch.repo.join(".gitignore"), ".oxi/\noxi.toml\n").unwrap();
    std::fs::write(
        scratch.repo.join("roadmap.md"),
        "# Roadmap\n\n**T0-7 · Write the plan**\nWrite down how the project will be planned.\n",
    )
    .unwrap();
    git(&scratch.repo, &["add", "-A"]);
    git(&scratch.repo, &["commit", "-q", "-m", "roadmap"]);
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_oxi"));
    command
        .args(["tick", "--format", "json"])
        .current_dir(&scratch.repo)
        .env_clear()
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
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let l = Ledger::open_existing(&scratch.repo.join(".oxi/ledger.db")).unwrap();
    let runs = l.read().runs_for_task("T0-7").unwrap();
    let planner = runs
        .iter()
        .find(|r| r.role == "planner")
        .expect("a planner run");
    // The read-only flag was passed.
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/meta.json", planner.run_dir.as_deref().unwrap()))
            .unwrap(),
    )
    .unwrap();
    let argv = meta["argv"].to_string();
    let flag = match cli {
        live::Cli::Claude => r#""--permission-mode","plan""#,
        live::Cli::Codex => r#""--sandbox","read-only""#,
    };
    assert!(argv.contains(flag), "{argv}");
    // And honoured: nothing of the write is anywhere; the plan was stored and used.
    let task = l.read().task("T0-7").unwrap().unwrap();
    assert_eq!(task.state, TaskState::Delivered, "{stdout}\n{stderr}");
    let branch = task.branch.unwrap();
    let tree = git(&scratch.repo, &["ls-tree", "-r", "--name-only", &branch]);
    assert!(tree.contains("notes/plan.md"), "{tree}");
    assert!(!tree.contains("planner-was-here"), "{tree}");
    assert!(!scratch.repo.join("planner-was-here.txt").exists());
    // Claude's refused attempt is a violation with its path (the Write tool call). Codex's
    // sandbox refuses the patch without an event oxi reads as a write (docs/explore.md).
    let history = l.read().task_history("T0-7").unwrap();
    let memo = history
        .iter()
        .find(|(_, kind, _, _)| kind == "governance_memo")
        .map(|(_, _, _, data)| data.to_string())
        .unwrap_or_default();
    let recorded = memo.contains("read_only_write") && memo.contains("planner-was-here.txt");
    assert_eq!(recorded, cli == live::Cli::Claude, "{history:?}");
    let stored = l
        .read()
        .latest_plan("T0-7")
        .unwrap()
        .expect("a stored plan");
    assert_eq!(stored.plan["files_expected"][0], "notes/plan.md");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_claude_planner_gets_plan_mode_and_cannot_write() {
    a_live_planner_is_read_only(crate::support::live::Cli::Claude).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_codex_planner_gets_the_read_only_sandbox_and_cannot_write() {
    a_live_planner_is_read_only(crate::support::live::Cli::Codex).await;
}
