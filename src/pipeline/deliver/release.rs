//! Release mode: push task branches, open or update draft pull requests, gate claims on files
//! open pull requests touch, follow each pull request (merged, closed, CI, reviews), start
//! follow-ups, and merge only what a human (or, opted in, the critic) approved.
//!
//! Everything here needs a [`GithubWriter`], which only a release-mode tick can build.

use std::collections::BTreeSet;
use std::path::Path;

use base64::Engine;
use serde::Serialize;

use crate::clock::now_ms;
use crate::config::{LoadedConfig, MergePolicy, OverlapScope};
use crate::github::{GithubClient, GithubError, GithubWriter};
use crate::ledger::events::{GithubError as GithubErrorEvent, PrOpened};
use crate::ledger::{
    ApprovalKind, Event, Ledger, LedgerError, NewEvent, TaskRow, TaskState, Transition,
};
use crate::redact::Redactor;
use crate::worker::WorkerRole;

mod summary;

const PR_TEMPLATE: &str = include_str!("../../../templates/pr.md.j2");

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("git push of {branch} to {remote} failed: {message}")]
    Push {
        branch: String,
        remote: String,
        message: String,
    },
    #[error("pull request body template: {0}")]
    Template(String),
}

/// What a release step did, for the tick's report.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseAction {
    pub task_id: String,
    pub action: String,
    pub pr: Option<u64>,
    pub detail: Option<String>,
}

pub(super) fn action(
    task: &str,
    action: &str,
    pr: Option<u64>,
    detail: Option<String>,
) -> ReleaseAction {
    ReleaseAction {
        task_id: task.to_owned(),
        action: action.to_owned(),
        pr,
        detail,
    }
}

pub(super) fn event(ledger: &mut Ledger, task: &str, event: Event) -> Result<(), LedgerError> {
    ledger.record(Some(task), None, event)
}

pub(super) fn transition(
    ledger: &mut Ledger,
    task: &str,
    from: TaskState,
    to: TaskState,
    reason: &str,
) -> Result<(), LedgerError> {
    let now = now_ms();
    ledger.write(|q| q.transition_task(task, &Transition::by_oxi(from, to, reason), now))
}

/// Pushes `branch` to the configured remote. The token travels in git's environment
/// (`GIT_CONFIG_*`), never in argv, so it is not in a process listing or a log.
pub fn push(repo: &Path, remote: &str, branch: &str, token: &str) -> Result<(), ReleaseError> {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let header = format!("AUTHORIZATION: basic {basic}");
    let refspec = format!("refs/heads/{branch}:refs/heads/{branch}");
    crate::git::run_with_env(
        repo,
        &["push", "--quiet", remote, &refspec],
        &[
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "http.extraheader"),
            ("GIT_CONFIG_VALUE_0", &header),
        ],
    )
    .map(|_| ())
    .map_err(|e| ReleaseError::Push {
        branch: branch.to_owned(),
        remote: remote.to_owned(),
        message: Redactor::new([token]).redact(&e.to_string()).into_owned(),
    })
}

/// The last executor run's `state.json` (what the PR body reports).
fn last_state(ledger: &Ledger, task: &str) -> serde_json::Value {
    ledger
        .read()
        .runs_for_task(task)
        .ok()
        .and_then(|runs| {
            runs.into_iter()
                .rev()
                .filter(|r| r.role == WorkerRole::Executor)
                .find_map(|r| {
                    let text =
                        std::fs::read_to_string(Path::new(&r.run_dir?).join("state.json")).ok()?;
                    serde_json::from_str(&text).ok()
                })
        })
        .unwrap_or(serde_json::Value::Null)
}

/// The pull request's title and body for a task; `summary` is what `[routing] summary`
/// wrote, if anything.
pub fn render_pr(
    config: &LoadedConfig,
    task: &TaskRow,
    state: &serde_json::Value,
    summary: Option<&str>,
    redactor: &Redactor,
) -> Result<(String, String), ReleaseError> {
    let title = format!("{}: {}", task.spec.id, task.spec.title);
    let ms = state["phases_ms"].as_object().map_or(0, |p| {
        p.values()
            .filter_map(serde_json::Value::as_u64)
            .sum::<u64>()
    });
    // The pull request carries the branch's whole change (`delivery`); the run's own change
    // (the flat fields) is all there is in a state.json written before that was recorded.
    let delivery = match &state["delivery"] {
        serde_json::Value::Null => serde_json::json!({
            "files": state["files_changed"],
            "lines_added": state["lines_added"],
            "lines_removed": state["lines_removed"],
            "paths": state["paths"],
        }),
        delivery => delivery.clone(),
    };
    let ctx = serde_json::json!({
        "id": task.spec.id,
        "brief": task.spec.body,
        "summary": summary,
        "files": delivery["files"].as_u64().unwrap_or(0),
        "lines_added": delivery["lines_added"].as_u64().unwrap_or(0),
        "lines_removed": delivery["lines_removed"].as_u64().unwrap_or(0),
        "paths": delivery["paths"],
        "verification": state["verification"],
        "review": state["review"].as_str().unwrap_or("(no review recorded)"),
        "cost": format!("${:.2}", state["cost_usd"].as_f64().unwrap_or(0.0)),
        "tokens": format!(
            "{} input / {} output tokens",
            state["tokens"]["input"].as_u64().unwrap_or(0),
            state["tokens"]["output"].as_u64().unwrap_or(0)
        ),
        "time": humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string(),
        "attempt": state["attempt"].as_u64().unwrap_or(u64::from(task.attempts)),
        "run_id": state["run_id"].as_str().unwrap_or("-"),
        "route": crate::routing::describe_assignment(&state["route"]["executor"]),
        "branch": task.branch.as_deref().unwrap_or(""),
        "auto_merge": config.config.github.as_ref().is_some_and(|g| g.merge == MergePolicy::OnCriticApprove),
    });
    let mut env = minijinja::Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| ReleaseError::Template(e.to_string()))?;
    env.set_syntax(syntax);
    env.add_template("pr.md.j2", PR_TEMPLATE)
        .map_err(|e| ReleaseError::Template(e.to_string()))?;
    let body = env
        .get_template("pr.md.j2")
        .and_then(|t| t.render(minijinja::value::Serde(&ctx)))
        .map_err(|e| ReleaseError::Template(e.to_string()))?;
    Ok((
        redactor.redact(&title).into_owned(),
        redactor.redact(&format!("{body}\n")).into_owned(),
    ))
}

/// What a release-mode delivery needs: the configuration, GitHub (to read, and to write), the
/// token `git push` sends, and the redactor for the pull request's text.
pub struct Release<'a> {
    pub config: &'a LoadedConfig,
    pub client: &'a GithubClient,
    pub writer: &'a GithubWriter<'a>,
    pub token: &'a str,
    pub redactor: &'a Redactor,
}

/// Pushes and opens (or updates) the draft pull request of every `deliver_pending` task. A
/// failed step leaves the task where it is; the next tick resumes it. Idempotent: an open
/// pull request for the branch is updated, never duplicated.
pub async fn deliver_pending(
    release: &Release<'_>,
    ledger: &mut Ledger,
) -> Result<Vec<ReleaseAction>, ReleaseError> {
    let config = release.config;
    let Some(github) = &config.config.github else {
        return Ok(Vec::new());
    };
    let mut actions = Vec::new();
    let pending: Vec<TaskRow> = ledger
        .read()
        .tasks()?
        .into_iter()
        .filter(|t| t.state == TaskState::DeliverPending)
        .collect();
    for task in pending {
        let id = task.spec.id.clone();
        let Some(branch) = task.branch.clone() else {
            continue;
        };
        let result = deliver_one(release, ledger, &task, &branch).await;
        match result {
            Ok(number) => {
                if github.merge == MergePolicy::OnCriticApprove
                    && !ledger
                        .read()
                        .approvals_for(&id)?
                        .iter()
                        .any(|a| a.kind == Some(ApprovalKind::NeedsApproval))
                {
                    let now = now_ms();
                    ledger.write(|q| {
                        q.insert_approval(
                            &id,
                            ApprovalKind::Merge,
                            "oxi:critic",
                            Some("github.merge = on_critic_approve"),
                            now,
                        )
                    })?;
                }
                actions.push(action(&id, "pr_opened", Some(number), None));
            }
            Err(
                e @ (ReleaseError::Github(GithubError::Unauthorized { .. })
                | ReleaseError::Github(GithubError::Forbidden { .. })
                | ReleaseError::Github(GithubError::Moved { .. })),
            ) => {
                event(
                    ledger,
                    &id,
                    Event::GithubError(GithubErrorEvent {
                        step: "deliver".to_owned(),
                        error: e.to_string(),
                    }),
                )?;
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(
                    "task {id}: {e}; it stays deliver_pending and the next tick resumes"
                );
                event(
                    ledger,
                    &id,
                    Event::GithubError(GithubErrorEvent {
                        step: "deliver".to_owned(),
                        error: e.to_string(),
                    }),
                )?;
                actions.push(action(&id, "deliver_pending", None, Some(e.to_string())));
            }
        }
    }
    Ok(actions)
}

/// Pushes one task's branch, opens or updates its pull request and labels it; the task is
/// then `delivered`. Returns the pull request's number.
async fn deliver_one(
    release: &Release<'_>,
    ledger: &mut Ledger,
    task: &TaskRow,
    branch: &str,
) -> Result<u64, ReleaseError> {
    let Release {
        config,
        client,
        writer,
        token,
        redactor,
    } = *release;
    let github = config
        .config
        .github
        .as_ref()
        .ok_or_else(|| ReleaseError::Template("no [github] table".into()))?;
    push(&config.repo_root, &github.remote, branch, token)?;
    let state = last_state(ledger, &task.spec.id);
    let summary = summary::write(config, ledger, redactor, task, &state).await;
    let (title, mut body) = render_pr(config, task, &state, summary.as_deref(), redactor)?;
    if let Some(closes) = crate::roadmap::github_issues::closes_line(ledger, &task.spec.id)? {
        body.push_str(&format!("\n{closes}\n"));
    }
    let base = &config.config.project.base_branch;
    let existing = client.pulls("open", Some(branch)).await?;
    let pull = match existing.into_iter().find(|p| p.head.name == branch) {
        Some(pull) => writer.update_pull(pull.number, &title, &body).await?,
        None => writer.create_pull(&title, &body, branch, base).await?,
    };
    let mut labels = github.labels.clone();
    labels.push(format!("tier-{}", task.spec.priority_tier));
    writer.add_labels(pull.number, &labels).await?;
    let id = task.spec.id.clone();
    let now = now_ms();
    ledger.write(|q| {
        q.set_task_pr(&id, pull.number, pull.html_url.as_deref())?;
        q.transition_task(
            &id,
            &Transition::by_oxi(
                TaskState::DeliverPending,
                TaskState::Delivered,
                "pull request opened",
            ),
            now,
        )?;
        q.append_event(&NewEvent {
            at_ms: now,
            task_id: Some(&id),
            run_id: None,
            actor: "oxi",
            event: Event::PrOpened(PrOpened {
                number: pull.number,
                url: pull.html_url.clone(),
                branch: branch.to_string(),
                draft: pull.draft,
                labels: labels.clone(),
            }),
        })?;
        Ok(())
    })?;
    Ok(pull.number)
}

/// The files of open pull requests as last read, by number, with the head and base commits
/// they were read at: with every open pull request in scope, reading each one's files on every
/// tick would spend the hourly rate limit on a busy repository, and a pull request's files
/// change only with its head or base.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct PullFilesSeen {
    pulls: std::collections::BTreeMap<u64, SeenFiles>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct SeenFiles {
    head: String,
    base: String,
    files: BTreeSet<String>,
}

impl PullFilesSeen {
    fn path(config: &LoadedConfig) -> std::path::PathBuf {
        config.state_dir.join("pull-files.json")
    }

    /// Nothing when the file is gone or unreadable (every pull request is read again).
    fn load(config: &LoadedConfig) -> Self {
        std::fs::read(Self::path(config))
            .ok()
            .and_then(|text| serde_json::from_slice(&text).ok())
            .unwrap_or_default()
    }

    /// Losing it (a full disk) costs only a re-read.
    fn store(&self, config: &LoadedConfig) {
        let Ok(text) = serde_json::to_vec(self) else {
            return;
        };
        if let Err(e) = crate::runner::artifacts::write_atomic(&Self::path(config), &text) {
            tracing::debug!("cannot keep {}: {e}", Self::path(config).display());
        }
    }
}

/// The open pull requests the overlap gate weighs and the files each touches (a renamed
/// file under both its names): every open pull request (`github.overlap_scope = "all"`, the
/// default: a person's pull request on the same file conflicts just the same), or only those
/// oxi opened (its labels or the `oxi/` branch prefix) with `"oxi"`.
pub async fn open_pull_files(
    config: &LoadedConfig,
    client: &GithubClient,
) -> Result<Vec<(u64, String, BTreeSet<String>)>, GithubError> {
    let (labels, scope) = config
        .config
        .github
        .as_ref()
        .map(|g| (g.labels.clone(), g.overlap_scope))
        .unwrap_or_default();
    let seen = PullFilesSeen::load(config);
    let mut now_seen = PullFilesSeen::default();
    let mut out = Vec::new();
    for pull in client.pulls("open", None).await? {
        let ours = pull.head.name.starts_with("oxi/")
            || pull.labels.iter().any(|l| labels.contains(&l.name));
        if scope == OverlapScope::Oxi && !ours {
            continue;
        }
        let files = match seen.pulls.get(&pull.number) {
            Some(known) if known.head == pull.head.sha && known.base == pull.base.sha => {
                known.files.clone()
            }
            _ => client
                .pull_files(pull.number)
                .await?
                .into_iter()
                .flat_map(|f| std::iter::once(f.filename).chain(f.previous_filename))
                .collect(),
        };
        now_seen.pulls.insert(
            pull.number,
            SeenFiles {
                head: pull.head.sha.clone(),
                base: pull.base.sha.clone(),
                files: files.clone(),
            },
        );
        out.push((pull.number, pull.head.name.clone(), files));
    }
    now_seen.store(config);
    Ok(out)
}
