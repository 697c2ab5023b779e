//! Each worker kind is one adapter: its argv, its read-only flags, its `[workers.NAME]` keys
//! and its embedded fixture are asked of the adapter, and the rest of oxi asks nothing else.

use oxi::config::{WorkerConfig, WorkerKind};
use oxi::runner::contract;
use oxi::worker::WorkerRole;

fn worker(kind: WorkerKind) -> WorkerConfig {
    WorkerConfig {
        kind,
        command: vec!["/opt/cli".to_owned(), "--fixed".to_owned()],
        model: Some("m-1".to_owned()),
        args: vec!["--extra".to_owned()],
        env: Vec::new(),
        set_env: Default::default(),
        permission_mode: None,
        max_turns: None,
        sandbox: None,
    }
}

#[test]
fn every_kind_builds_its_argv_with_the_prompt_last_after_a_double_dash() {
    for &kind in WorkerKind::ALL {
        let adapter = kind.adapter();
        assert_eq!(adapter.kind(), kind);
        let argv = adapter.argv(&worker(kind), "-rm everything");
        assert_eq!(
            &argv[..2],
            ["/opt/cli", "--fixed"],
            "{kind}: the command first"
        );
        assert_eq!(&argv[argv.len() - 2..], ["--", "-rm everything"], "{kind}");
        let extra = argv.iter().position(|a| a == "--extra").unwrap();
        assert_eq!(
            extra,
            argv.len() - 3,
            "{kind}: args right before the prompt"
        );
        assert!(argv.windows(2).any(|w| w == ["--model", "m-1"]), "{kind}");
        assert!(!adapter.install_hint().is_empty());
        assert!(adapter.fixture().lines().count() > 3);
    }
}

#[test]
fn the_argv_is_what_docs_workers_md_says() {
    let claude = WorkerKind::Claude
        .adapter()
        .argv(&worker(WorkerKind::Claude), "p");
    assert_eq!(
        claude.join(" "),
        "/opt/cli --fixed -p --output-format stream-json --verbose --permission-mode acceptEdits --model m-1 --extra -- p"
    );
    let codex = WorkerKind::Codex
        .adapter()
        .argv(&worker(WorkerKind::Codex), "p");
    assert_eq!(
        codex.join(" "),
        "/opt/cli --fixed exec --json --skip-git-repo-check --disable unbounded_connection_retries --sandbox workspace-write --model m-1 --extra -- p"
    );
}

#[test]
fn a_reviewer_is_made_read_only_by_its_adapter() {
    assert!(WorkerRole::Reviewer.is_read_only());
    assert!(!WorkerRole::Executor.is_read_only());
    let mut codex = worker(WorkerKind::Codex);
    WorkerKind::Codex.adapter().make_read_only(&mut codex);
    let argv = WorkerKind::Codex.adapter().argv(&codex, "p");
    assert!(argv.windows(2).any(|w| w == ["--sandbox", "read-only"]));
    // Claude's plan mode reads and plans but runs no edit tool (the planner's too).
    assert!(WorkerRole::Planner.is_read_only());
    let mut claude = worker(WorkerKind::Claude);
    WorkerKind::Claude.adapter().make_read_only(&mut claude);
    let argv = WorkerKind::Claude.adapter().argv(&claude, "p");
    assert!(
        argv.windows(2).any(|w| w == ["--permission-mode", "plan"]),
        "{argv:?}"
    );
}

#[test]
fn a_kinds_own_keys_belong_to_exactly_one_kind() {
    for key in ["permission_mode", "max_turns", "sandbox"] {
        let owners: Vec<WorkerKind> = WorkerKind::ALL
            .iter()
            .copied()
            .filter(|k| k.adapter().own_keys().contains(&key))
            .collect();
        assert_eq!(owners.len(), 1, "{key}: {owners:?}");
    }
    let err = oxi::config::parse(
        "[workers.codex]\nkind = \"codex\"\ncommand = [\"codex\"]\nmodel = \"gpt-5.5\"\nmax_turns = 3\n[routing]\nexecutor = [\"codex\"]\nreviewer = [\"codex\"]\n",
        "oxi.toml",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "oxi.toml:5:1: workers.codex.max_turns: `max_turns` applies only to claude workers; this worker's kind is codex"
    );
    let err = oxi::config::parse(
        "[workers.codex]\nkind = \"codex\"\ncommand = [\"codex\"]\nmodel = \"gpt-5.5\"\nsandbox = \"wide-open\"\n[routing]\nexecutor = [\"codex\"]\nreviewer = [\"codex\"]\n",
        "oxi.toml",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "oxi.toml:5:1: workers.codex.sandbox: unknown sandbox \"wide-open\"; use one of read-only, workspace-write, danger-full-access, bypass"
    );
}

#[test]
fn every_kinds_embedded_fixture_replays_cleanly() {
    for &kind in WorkerKind::ALL {
        let replay = contract::replay_fixture(kind);
        assert!(replay.ok, "{kind}: {replay:?}");
    }
}

#[test]
fn kinds_and_roles_keep_their_stored_text() {
    let kinds: Vec<&str> = WorkerKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(kinds, ["codex", "claude"]);
    for &kind in WorkerKind::ALL {
        assert_eq!(WorkerKind::from_stored(kind.as_str()), Some(kind));
    }
    let roles: Vec<&str> = [
        WorkerRole::Planner,
        WorkerRole::Executor,
        WorkerRole::Reviewer,
        WorkerRole::Adhoc,
    ]
    .iter()
    .map(|r| r.as_str())
    .collect();
    assert_eq!(roles, ["planner", "executor", "reviewer", "adhoc"]);
}
