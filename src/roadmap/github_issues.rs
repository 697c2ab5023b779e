//! GitHub issues as a task source, beside the roadmap file (`[sources.github_issues]`).
//!
//! - An open issue of `github.repo` that carries every configured label (and is in the
//!   milestone / assigned to the login, when those filters are set) is the task `GH-<number>`:
//!   its title, its body as the brief (cut at `max_body` with a note), its priority tier from a
//!   `tier-N` label, file hints from backticked paths, dependencies from "depends on #N" (→
//!   `GH-N`) and from roadmap ids ("depends on T0-3").
//! - The sync is idempotent like roadmap ingest: a new issue is a `queued` task, a changed one
//!   is rewritten unless it is in flight (the running attempt keeps its brief; an event records
//!   the change), an unchanged one is left alone.
//! - An issue that leaves the view waits while its task is in flight, then: closed (or deleted)
//!   → a waiting task is `cancelled`; label removed or filtered out → a waiting task is
//!   `abandoned`. A delivered task is left to its pull request (which says `Closes #N`).
//!   Reopened or relabelled, the task is queued again.
//! - The brief is outside text: tasks are marked `outside_text` in the ledger, and governance
//!   applies to them as to every task.
//! - The sync only reads. Writing back (the one comment per issue, edited as the task moves)
//!   is [`write_comments`], which needs a `GithubWriter`: release mode only.
//! - GitHub failing (an error status, the network, no token) is recorded with its status and
//!   message and changes nothing; the roadmap has been ingested before and is not affected.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{GithubIssuesConfig, LoadedConfig};
use crate::github::issues::{Issue, IssueFilter};
use crate::github::{GithubClient, GithubError, GithubWriter};
use crate::ledger::events::{
    IssueCommentWritten, IssueSyncCompleted, IssueSyncFailed, IssueWarning, RoadmapLine, TaskAdded,
    TaskRemovedInFlight,
};
use crate::ledger::{
    Event, IssueLink, IssueSeen, Ledger, LedgerError, NewEvent, Queries, TaskRow, TaskSpec,
    TaskState, Transition,
};
use crate::redact::Redactor;

/// `tasks.format` of a task made from an issue: how the roadmap ingest tells it is not its own.
pub const FORMAT: &str = "github_issue";
/// Issue tasks rank after roadmap items of the same tier (their order is this plus the number).
const ORDER_BASE: u32 = 1_000_000;
/// Unknown issues a sync looks up (dependencies, issues that left the view), at most.
const MAX_LOOKUPS: usize = 50;

/// Errors that stop a sync. GitHub's are recorded and reported, never fatal to a tick.
#[derive(Debug, thiserror::Error)]
pub enum IssueSourceError {
    /// GitHub could not be read (status and message); nothing was changed.
    #[error(transparent)]
    Github(#[from] GithubError),
    /// The ledger failed; nothing of this sync was committed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The task id of issue `number`.
pub fn task_id(number: u64) -> String {
    format!("GH-{number}")
}

/// What one sync changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IssueSyncSummary {
    pub repo: String,
    pub issues: usize,
    pub pull_requests_skipped: usize,
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
    pub reopened: Vec<String>,
    pub cancelled: Vec<String>,
    pub abandoned: Vec<String>,
    /// Changed, closed or unlabelled while in flight: left alone until the run ends.
    pub in_flight_untouched: Vec<String>,
    pub warnings: Vec<String>,
}

/// How a sync went, for the tick's report and `oxi ingest`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum IssueSync {
    Synced(IssueSyncSummary),
    /// GitHub could not be read; recorded as `issue_sync_failed`, nothing changed.
    Failed {
        repo: String,
        status: Option<u16>,
        message: String,
    },
}

impl IssueSync {
    /// One line for a person when something changed or failed; `None` when nothing did.
    pub fn change_line(&self) -> Option<String> {
        match self {
            IssueSync::Failed {
                repo,
                status,
                message,
            } => Some(match status {
                Some(status) => format!("GitHub issues of {repo} not read ({status}): {message}"),
                None => format!("GitHub issues of {repo} not read: {message}"),
            }),
            IssueSync::Synced(s) => {
                let parts: Vec<String> = [
                    ("added", &s.added),
                    ("updated", &s.updated),
                    ("reopened", &s.reopened),
                    ("cancelled", &s.cancelled),
                    ("abandoned", &s.abandoned),
                ]
                .iter()
                .filter(|(_, ids)| !ids.is_empty())
                .map(|(word, ids)| format!("{word} {}", ids.join(", ")))
                .collect();
                (!parts.is_empty())
                    .then(|| format!("GitHub issues of {}: {}", s.repo, parts.join("; ")))
            }
        }
    }
}

/// One issue as a task.
#[derive(Debug, Clone)]
struct IssueTask {
    spec: TaskSpec,
    number: u64,
    url: String,
    body_bytes: u64,
    warnings: Vec<String>,
}

static DEPENDS: LazyLock<Regex> = LazyLock::new(|| {
    super::regex(&format!(
        r"(?i:depends\s+on|blocked\s+by):?\s*((?:(?:#\d+|{id})(?:\s*(?:,|(?i:and)|&)\s*|\s+)?)+)",
        id = super::ID
    ))
});
static DEP_ISSUE: LazyLock<Regex> = LazyLock::new(|| super::regex(r"#(\d+)"));
static DEP_ID: LazyLock<Regex> =
    LazyLock::new(|| super::regex(&format!(r"(?:^|[^#\w])({})", super::ID)));
static TIER_LABEL: LazyLock<Regex> = LazyLock::new(|| super::regex(r"(?i)^tier-(.*)$"));

/// The priority tier from `tier-N` labels (the most urgent when several), with a warning for a
/// label that names no tier in 0-255.
fn tier_of(issue: &Issue, default_tier: u8, warnings: &mut Vec<String>) -> u8 {
    let mut tiers = Vec::new();
    for name in issue.label_names() {
        let Some(c) = TIER_LABEL.captures(name) else {
            continue;
        };
        match c[1].parse::<u8>() {
            Ok(tier) => tiers.push(tier),
            Err(_) => warnings.push(format!(
                "label {name:?} names no priority tier (tier-0 to tier-255); it is ignored"
            )),
        }
    }
    if tiers.len() > 1 {
        warnings.push(format!(
            "several tier labels ({}); the most urgent is used",
            tiers
                .iter()
                .map(|t| format!("tier-{t}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    tiers.into_iter().min().unwrap_or(default_tier)
}

/// Issue numbers and roadmap ids named after "depends on" / "blocked by".
fn dependencies(body: &str) -> (Vec<u64>, Vec<String>) {
    let mut issues = Vec::new();
    let mut ids = Vec::new();
    for c in DEPENDS.captures_iter(body) {
        let list = &c[1];
        for n in DEP_ISSUE.captures_iter(list) {
            if let Ok(n) = n[1].parse::<u64>()
                && !issues.contains(&n)
            {
                issues.push(n);
            }
        }
        for id in DEP_ID.captures_iter(list) {
            let id = id[1].to_owned();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    (issues, ids)
}

/// The brief: the body up to `limit` bytes (at a character boundary), with a note when cut.
fn brief(body: &str, limit: usize, warnings: &mut Vec<String>) -> String {
    if body.len() <= limit {
        return body.to_owned();
    }
    let mut end = limit;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let note = format!(
        "the issue body is {} bytes; the brief keeps its first {end} (sources.github_issues.max_body)",
        body.len()
    );
    warnings.push(note.clone());
    format!("{}\n\n[oxi: truncated: {note}]", &body[..end])
}

fn content_hash(spec: &TaskSpec) -> String {
    let mut hasher = Sha256::new();
    for part in [
        spec.priority_tier.to_string().as_str(),
        &spec.title,
        &spec.body,
        &spec.depends_on.join(","),
        &spec.file_hints.join(","),
        FORMAT,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    crate::digest::hex(&hasher.finalize()[..16])
}

/// One issue as a task (pure, but for `resolve_dependency`'s answers in `deps`).
fn task_of(
    issue: &Issue,
    settings: &GithubIssuesConfig,
    default_tier: u8,
    redactor: &Redactor,
    deps: &HashMap<u64, Dependency>,
) -> IssueTask {
    let mut warnings = Vec::new();
    let priority_tier = tier_of(issue, default_tier, &mut warnings);
    let raw_body = issue.body.as_deref().unwrap_or("");
    let limit = usize::try_from(settings.max_body.bytes()).unwrap_or(usize::MAX);
    let body = redactor
        .redact(&brief(raw_body, limit, &mut warnings))
        .into_owned();
    let title = redactor.redact(issue.title.trim()).into_owned();
    let (issue_deps, mut depends_on) = dependencies(raw_body);
    for n in issue_deps {
        match deps.get(&n) {
            Some(Dependency::Task) => depends_on.push(task_id(n)),
            Some(Dependency::Closed) => warnings.push(format!(
                "depends on #{n}, which is closed and not an oxi task: taken as met"
            )),
            Some(Dependency::Missing) => warnings.push(format!(
                "depends on #{n}, which does not exist (or this token cannot see it): ignored"
            )),
            Some(Dependency::OpenElsewhere) | None => {
                warnings.push(format!(
                    "depends on #{n}, which is open but not an oxi task: {} waits until #{n} is closed or labelled",
                    task_id(issue.number)
                ));
                depends_on.push(task_id(n));
            }
        }
    }
    depends_on.retain(|d| *d != task_id(issue.number));
    let (file_hints, _) = super::file_hints(raw_body);
    let mut spec = TaskSpec {
        id: task_id(issue.number),
        priority_tier,
        title,
        subtitle: None,
        body,
        section: None,
        milestone: None,
        format: FORMAT.to_owned(),
        depends_on,
        file_hints,
        source_line: 0,
        roadmap_order: ORDER_BASE.saturating_add(u32::try_from(issue.number).unwrap_or(u32::MAX)),
        content_hash: String::new(),
        roadmap_done: false,
    };
    spec.content_hash = content_hash(&spec);
    IssueTask {
        spec,
        number: issue.number,
        url: issue.html_url.clone().unwrap_or_default(),
        body_bytes: raw_body.len() as u64,
        warnings,
    }
}

/// What "depends on #N" points at, when #N is not in the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dependency {
    /// A task of this source (listed now, or known to the ledger).
    Task,
    /// Closed and not a task: met.
    Closed,
    /// Open but without the labels: the dependent waits.
    OpenElsewhere,
    /// GitHub has no such issue (404/410).
    Missing,
}

/// Why a known issue is no longer in the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    /// Closed, deleted or transferred away: its task is cancelled.
    Closed,
    /// Open, but without the labels or outside the filters: its task is abandoned.
    Unlisted,
}

impl Gone {
    fn issue_state(self) -> &'static str {
        match self {
            Gone::Closed => "closed",
            Gone::Unlisted => "open",
        }
    }
}

/// Everything a sync read from GitHub, before it touches the ledger.
struct Snapshot {
    repo: String,
    tasks: Vec<IssueTask>,
    pull_requests_skipped: usize,
    gone: HashMap<String, Gone>,
}

/// Reads the issues and whatever they point at that is not listed.
async fn read(
    client: &GithubClient,
    settings: &GithubIssuesConfig,
    default_tier: u8,
    redactor: &Redactor,
    links: &HashMap<String, IssueLink>,
) -> Result<Snapshot, GithubError> {
    let list = client
        .open_issues(&IssueFilter {
            labels: &settings.labels,
            milestone: settings.milestone,
            assignee: settings.assignee.as_deref(),
        })
        .await?;
    let listed: HashSet<u64> = list.issues.iter().map(|i| i.number).collect();
    let mut lookups = 0;
    let mut deps: HashMap<u64, Dependency> = HashMap::new();
    for issue in &list.issues {
        for n in dependencies(issue.body.as_deref().unwrap_or("")).0 {
            if deps.contains_key(&n) {
                continue;
            }
            let known = listed.contains(&n) || links.contains_key(&task_id(n));
            if known {
                deps.insert(n, Dependency::Task);
            } else if lookups < MAX_LOOKUPS {
                lookups += 1;
                let dependency = match client.issue(n).await? {
                    None => Dependency::Missing,
                    Some(other) if other.state == "closed" => Dependency::Closed,
                    Some(_) => Dependency::OpenElsewhere,
                };
                deps.insert(n, dependency);
            }
        }
    }
    let mut gone = HashMap::new();
    for link in links.values() {
        if listed.contains(&link.number) {
            continue;
        }
        // Seen gone before: what that sync learnt still holds (back in view, it is listed).
        let why = if !link.matches {
            if link.issue_state == "closed" {
                Gone::Closed
            } else {
                Gone::Unlisted
            }
        } else {
            match client.issue(link.number).await? {
                None => Gone::Closed,
                Some(issue) if issue.state == "closed" => Gone::Closed,
                Some(_) => Gone::Unlisted,
            }
        };
        gone.insert(link.task_id.clone(), why);
    }
    let tasks = list
        .issues
        .iter()
        .map(|issue| task_of(issue, settings, default_tier, redactor, &deps))
        .collect();
    Ok(Snapshot {
        repo: client.repo.clone(),
        tasks,
        pull_requests_skipped: list.pull_requests_skipped,
        gone,
    })
}

/// Reads the configured issues and applies them to the ledger. `Ok(None)` when the source is
/// not configured. A GitHub failure is recorded (`issue_sync_failed`) and returned as
/// [`IssueSync::Failed`]; only a ledger failure is an error.
pub async fn sync(
    ledger: &mut Ledger,
    config: &LoadedConfig,
    parent_env: &[(String, String)],
) -> Result<Option<IssueSync>, LedgerError> {
    let (Some(settings), Some(github)) =
        (&config.config.sources.github_issues, &config.config.github)
    else {
        return Ok(None);
    };
    let redactor = crate::runner::env::redactor_for(config, parent_env);
    let links = ledger.read().issue_links()?;
    let reading = async {
        let token = crate::github::resolve_token(github, parent_env)?;
        let client = GithubClient::new(github, &token)?;
        read(
            &client,
            settings,
            config.config.project.default_priority_tier,
            &redactor,
            &links,
        )
        .await
    };
    match reading.await {
        Ok(snapshot) => Ok(Some(IssueSync::Synced(apply(
            ledger,
            &snapshot,
            crate::clock::now_ms(),
        )?))),
        Err(e) => {
            let status = match &e {
                GithubError::Rejected { status, .. } | GithubError::Server { status, .. } => {
                    Some(*status)
                }
                GithubError::Unauthorized { .. } => Some(401),
                GithubError::Forbidden { .. } => Some(403),
                _ => None,
            };
            let message = redactor.redact(&e.to_string()).into_owned();
            tracing::warn!("GitHub issues not synced this time: {message}");
            ledger.record(
                None,
                None,
                Event::IssueSyncFailed(IssueSyncFailed {
                    repo: github.repo.clone(),
                    status,
                    message: message.clone(),
                }),
            )?;
            Ok(Some(IssueSync::Failed {
                repo: github.repo.clone(),
                status,
                message,
            }))
        }
    }
}

/// Applies a snapshot in one transaction.
fn apply(
    ledger: &mut Ledger,
    snapshot: &Snapshot,
    now_ms: i64,
) -> Result<IssueSyncSummary, LedgerError> {
    let mut summary = IssueSyncSummary {
        repo: snapshot.repo.clone(),
        issues: snapshot.tasks.len(),
        pull_requests_skipped: snapshot.pull_requests_skipped,
        ..IssueSyncSummary::default()
    };
    ledger.write(|q| {
        let existing: HashMap<String, TaskRow> = q
            .tasks()?
            .into_iter()
            .map(|t| (t.spec.id.clone(), t))
            .collect();
        let links = q.issue_links()?;
        let mut sync = Sync {
            q,
            now_ms,
            repo: &snapshot.repo,
            summary: &mut summary,
        };
        for task in &snapshot.tasks {
            match existing.get(&task.spec.id) {
                None => sync.add(task)?,
                Some(row) if row.spec.format != FORMAT => sync.collision(task)?,
                Some(row) => sync.refresh(task, row, links.get(&task.spec.id))?,
            }
        }
        for (id, why) in &snapshot.gone {
            if let Some(row) = existing.get(id) {
                let was_listed = links.get(id).is_some_and(|l| l.matches);
                sync.leave(row, *why, was_listed)?;
            }
        }
        sync.complete()
    })?;
    Ok(summary)
}

/// One sync's transaction: each step writes to the ledger and notes what it changed.
struct Sync<'a, 'c> {
    q: &'a Queries<'c>,
    now_ms: i64,
    repo: &'a str,
    summary: &'a mut IssueSyncSummary,
}

impl Sync<'_, '_> {
    fn event(&self, task_id: Option<&str>, event: Event) -> Result<(), LedgerError> {
        self.q.append_event(&NewEvent {
            at_ms: self.now_ms,
            task_id,
            run_id: None,
            actor: "oxi",
            event,
        })?;
        Ok(())
    }

    fn seen(&self, task: &IssueTask) -> Result<(), LedgerError> {
        self.q.upsert_issue_link(
            &IssueSeen {
                task_id: &task.spec.id,
                repo: self.repo,
                number: task.number,
                url: &task.url,
                issue_state: "open",
                matches: true,
                body_bytes: task.body_bytes,
            },
            self.now_ms,
        )
    }

    /// Records the issue's warnings (only when its task is written, so a sync that changes
    /// nothing records nothing but its completion).
    fn warn(&mut self, task: &IssueTask) -> Result<(), LedgerError> {
        for message in &task.warnings {
            self.event(
                Some(&task.spec.id),
                Event::IssueWarning(IssueWarning {
                    number: task.number,
                    message: message.clone(),
                }),
            )?;
            self.summary
                .warnings
                .push(format!("#{}: {message}", task.number));
        }
        Ok(())
    }

    /// A new issue: a `queued` task, marked outside text.
    fn add(&mut self, task: &IssueTask) -> Result<(), LedgerError> {
        let spec = &task.spec;
        self.q.insert_task(spec, TaskState::Queued, self.now_ms)?;
        self.q.set_outside_text(&spec.id, true)?;
        self.seen(task)?;
        self.event(
            Some(&spec.id),
            Event::TaskAdded(TaskAdded {
                state: TaskState::Queued,
                line: 0,
                priority_tier: spec.priority_tier,
                format: FORMAT.to_owned(),
            }),
        )?;
        self.warn(task)?;
        self.summary.added.push(spec.id.clone());
        Ok(())
    }

    /// A roadmap item already uses the id `GH-<n>`: the issue is not taken.
    fn collision(&mut self, task: &IssueTask) -> Result<(), LedgerError> {
        let message = format!(
            "{} is already a roadmap item's id; the issue is not taken as a task (rename the roadmap item)",
            task.spec.id
        );
        self.summary
            .warnings
            .push(format!("#{}: {message}", task.number));
        Ok(())
    }

    /// A known issue, still listed: rewritten unless in flight, and back in the queue when a
    /// sync had cancelled or abandoned it.
    fn refresh(
        &mut self,
        task: &IssueTask,
        row: &TaskRow,
        link: Option<&IssueLink>,
    ) -> Result<(), LedgerError> {
        let spec = &task.spec;
        let was_gone = link.is_none_or(|l| !l.matches);
        self.seen(task)?;
        self.q.set_outside_text(&spec.id, true)?;
        if row.spec.content_hash != spec.content_hash {
            if row.state.is_in_flight() {
                self.event(
                    Some(&spec.id),
                    Event::TaskChangedInFlight(RoadmapLine { line: 0 }),
                )?;
                self.summary.in_flight_untouched.push(spec.id.clone());
            } else {
                self.q.update_task_spec(spec, self.now_ms)?;
                self.event(Some(&spec.id), Event::TaskUpdated(RoadmapLine { line: 0 }))?;
                self.warn(task)?;
                self.summary.updated.push(spec.id.clone());
            }
        } else if !was_gone {
            self.summary.unchanged += 1;
        }
        self.q
            .update_task_position(&spec.id, 0, spec.roadmap_order, true, false)?;
        // Back in view after a sync cancelled or abandoned it: queued again. (A task an
        // operator cancelled while its issue stayed labelled is not `was_gone`: it stays.)
        if was_gone && matches!(row.state, TaskState::Abandoned | TaskState::Cancelled) {
            self.q.transition_task(
                &spec.id,
                &Transition::by_oxi(
                    row.state,
                    TaskState::Queued,
                    "issue open and labelled again",
                ),
                self.now_ms,
            )?;
            self.summary.reopened.push(spec.id.clone());
        }
        Ok(())
    }

    /// A known issue no longer listed: noted; its task cancelled (closed) or abandoned
    /// (unlabelled) when it waits, left alone while in flight.
    fn leave(&mut self, row: &TaskRow, why: Gone, was_listed: bool) -> Result<(), LedgerError> {
        let id = &row.spec.id;
        self.q.set_issue_presence(id, why.issue_state(), false)?;
        self.q
            .update_task_position(id, 0, row.spec.roadmap_order, false, false)?;
        if row.state.is_in_flight() {
            // Recorded once, when the issue leaves; later syncs only wait for the run to end.
            if was_listed {
                self.event(
                    Some(id),
                    Event::TaskRemovedInFlight(TaskRemovedInFlight { state: row.state }),
                )?;
            }
            self.summary.in_flight_untouched.push(id.clone());
            return Ok(());
        }
        let (to, reason) = match why {
            Gone::Closed => (TaskState::Cancelled, "its issue was closed"),
            Gone::Unlisted => (
                TaskState::Abandoned,
                "its issue lost the label (or left the milestone/assignee filter)",
            ),
        };
        let waits = row.state.is_waiting() || row.state == TaskState::FrameworkFixNeeded;
        if !waits || !row.state.can_transition_to(to) {
            return Ok(());
        }
        self.q
            .transition_task(id, &Transition::by_oxi(row.state, to, reason), self.now_ms)?;
        match to {
            TaskState::Cancelled => self.summary.cancelled.push(id.clone()),
            _ => self.summary.abandoned.push(id.clone()),
        }
        Ok(())
    }

    fn complete(self) -> Result<(), LedgerError> {
        for list in [
            &mut self.summary.cancelled,
            &mut self.summary.abandoned,
            &mut self.summary.in_flight_untouched,
        ] {
            list.sort();
        }
        let s = &*self.summary;
        self.event(
            None,
            Event::IssueSyncCompleted(IssueSyncCompleted {
                repo: s.repo.clone(),
                issues: s.issues,
                pull_requests_skipped: s.pull_requests_skipped,
                added: s.added.len(),
                updated: s.updated.len(),
                reopened: s.reopened.len(),
                cancelled: s.cancelled.len(),
                abandoned: s.abandoned.len(),
                warnings: s.warnings.len(),
            }),
        )
    }
}

/// What the comment on an issue reports: where the task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    InProgress,
    Retrying,
    PullRequestOpened,
    Merged,
    Held,
    Failed,
    Rejected,
    Stopped,
}

impl Stage {
    /// The stage of a task; `None` before its first claim (no comment yet).
    fn of(task: &TaskRow) -> Option<Stage> {
        Some(match task.state {
            TaskState::Queued if task.attempts == 0 => return None,
            TaskState::Queued | TaskState::RetryWait => Stage::Retrying,
            TaskState::Dispatched
            | TaskState::Verifying
            | TaskState::Reviewing
            | TaskState::DeliverPending => Stage::InProgress,
            TaskState::Delivered => Stage::PullRequestOpened,
            TaskState::Merged | TaskState::Done => Stage::Merged,
            TaskState::Held => Stage::Held,
            TaskState::Failed | TaskState::FrameworkFixNeeded => Stage::Failed,
            TaskState::Rejected => Stage::Rejected,
            TaskState::Cancelled | TaskState::Abandoned => Stage::Stopped,
        })
    }

    /// The word stored in the ledger and shown in the comment.
    fn as_str(self) -> &'static str {
        match self {
            Stage::InProgress => "in_progress",
            Stage::Retrying => "retrying",
            Stage::PullRequestOpened => "pr_opened",
            Stage::Merged => "merged",
            Stage::Held => "held",
            Stage::Failed => "failed",
            Stage::Rejected => "rejected",
            Stage::Stopped => "stopped",
        }
    }

    fn sentence(self) -> &'static str {
        match self {
            Stage::InProgress => "a worker is on it",
            Stage::Retrying => "waiting to try again",
            Stage::PullRequestOpened => "pull request opened, waiting for review",
            Stage::Merged => "merged",
            Stage::Held => "held for a person (see `oxi show` on the oxi host)",
            Stage::Failed => "failed; a person decides what happens next",
            Stage::Rejected => "its pull request was closed without merging",
            Stage::Stopped => "stopped (the issue was closed or lost its label)",
        }
    }
}

/// The comment's text. Only what oxi itself knows (state, pull request): no task text, so
/// nothing a worker or an issue wrote is echoed back.
fn comment_text(task: &TaskRow, stage: Stage) -> String {
    let mut text = format!(
        "<!-- oxi:{} -->\n**oxi** works on this issue as task `{}`.\n\n**Status:** {}",
        task.spec.id,
        task.spec.id,
        stage.sentence()
    );
    if let Some(url) = &task.pr_url {
        text.push_str(&format!("\n\n**Pull request:** {url}"));
    } else if let Some(number) = task.pr_number {
        text.push_str(&format!("\n\n**Pull request:** #{number}"));
    }
    text.push_str("\n\n_This comment is edited as the task moves._\n");
    text
}

/// Release mode: for each task made from an issue that has been claimed, writes the one
/// comment on its issue (created once, then edited when the stage or the pull request changes).
/// A GitHub failure is recorded and retried at the next call; only the ledger's is an error.
pub async fn write_comments(
    ledger: &mut Ledger,
    writer: &GithubWriter<'_>,
) -> Result<Vec<String>, LedgerError> {
    let links = ledger.read().issue_links()?;
    if links.is_empty() {
        return Ok(Vec::new());
    }
    let mut written = Vec::new();
    let mut links: Vec<IssueLink> = links.into_values().collect();
    links.sort_by_key(|l| l.number);
    for link in links {
        let Some(task) = ledger.read().task(&link.task_id)? else {
            continue;
        };
        let Some(stage) = Stage::of(&task) else {
            continue;
        };
        let text = comment_text(&task, stage);
        let sha = crate::digest::sha256_hex(text.as_bytes(), 16);
        if link.comment_sha.as_deref() == Some(sha.as_str()) {
            continue;
        }
        match write_one(writer, &link, &text).await {
            Ok((comment_id, created)) => {
                let now = crate::clock::now_ms();
                ledger.write(|q| {
                    q.set_issue_comment(&link.task_id, comment_id, stage.as_str(), &sha)?;
                    q.append_event(&NewEvent {
                        at_ms: now,
                        task_id: Some(&link.task_id),
                        run_id: None,
                        actor: "oxi",
                        event: Event::IssueCommentWritten(IssueCommentWritten {
                            number: link.number,
                            comment_id,
                            stage: stage.as_str().to_owned(),
                            created,
                        }),
                    })?;
                    Ok(())
                })?;
                written.push(link.task_id.clone());
            }
            Err(e) => {
                tracing::warn!("issue #{}: comment not written: {e}", link.number);
                ledger.record(
                    Some(&link.task_id),
                    None,
                    Event::GithubError(crate::ledger::events::GithubError {
                        step: "issue_comment".to_owned(),
                        error: e.to_string(),
                    }),
                )?;
            }
        }
    }
    Ok(written)
}

/// Edits the stored comment, or creates it (the first time, or when someone deleted it).
async fn write_one(
    writer: &GithubWriter<'_>,
    link: &IssueLink,
    text: &str,
) -> Result<(u64, bool), GithubError> {
    if let Some(id) = link.comment_id
        && let Some(comment) = writer.update_issue_comment(id, text).await?
    {
        return Ok((comment.id, false));
    }
    let comment = writer.create_issue_comment(link.number, text).await?;
    Ok((comment.id, true))
}

/// The line a pull request body carries so that merging it closes the issue.
pub fn closes_line(ledger: &Ledger, task_id: &str) -> Result<Option<String>, LedgerError> {
    Ok(ledger
        .read()
        .issue_link(task_id)?
        .map(|link| format!("Closes #{}", link.number)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(number: u64, labels: &[&str], body: &str) -> Issue {
        serde_json::from_value(serde_json::json!({
            "number": number, "state": "open", "title": "t", "body": body,
            "labels": labels.iter().map(|l| serde_json::json!({"name": l})).collect::<Vec<_>>(),
            "html_url": format!("https://github.com/acme/widgets/issues/{number}"),
        }))
        .unwrap()
    }

    #[test]
    fn dependencies_read_issue_numbers_and_roadmap_ids() {
        let (issues, ids) =
            dependencies("Fix it.\n\nDepends on #12, #7 and T0-3.\nBlocked by: #12 & GH-4\n");
        assert_eq!(issues, vec![12, 7]);
        assert_eq!(ids, vec!["T0-3", "GH-4"]);
        assert_eq!(
            dependencies("see #3, it depends on nothing"),
            (vec![], vec![])
        );
    }

    #[test]
    fn tier_labels_in_and_out_of_range() {
        let mut warnings = Vec::new();
        assert_eq!(
            tier_of(&issue(1, &["oxi", "tier-0"], ""), 1, &mut warnings),
            0
        );
        assert!(warnings.is_empty());
        assert_eq!(tier_of(&issue(1, &["tier-300"], ""), 1, &mut warnings), 1);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(
            tier_of(&issue(1, &["tier-2", "TIER-1"], ""), 3, &mut warnings),
            1
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn a_long_body_is_cut_at_a_character_boundary_with_a_note() {
        let mut warnings = Vec::new();
        let body = "é".repeat(100);
        let cut = brief(&body, 11, &mut warnings);
        assert!(cut.starts_with(&"é".repeat(5)));
        assert!(cut.contains("[oxi: truncated: the issue body is 200 bytes"));
        assert_eq!(warnings.len(), 1);
        assert_eq!(brief("short", 11, &mut warnings), "short");
    }
}
