//! Applies a parsed roadmap to the ledger, idempotently.
//!
//! - A new id becomes a `queued` task (`done` when checked off or under a "Done" heading).
//! - A known id gets its text, tier and dependencies rewritten unless it is in flight; an
//!   in-flight task keeps the brief it started with and an event records the change.
//! - An id that left the roadmap becomes `abandoned` only if nothing is in flight for it.
//! - Re-running on the same roadmap changes nothing and adds only the `ingest_completed` event.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Roadmap, RoadmapItem, Warning};
use crate::ledger::events::{IngestCompleted, RoadmapLine, TaskAdded, TaskRemovedInFlight};
use crate::ledger::{
    Event, Ledger, LedgerError, NewEvent, Queries, TaskRow, TaskSpec, TaskState, Transition,
};

/// What one ingest changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestSummary {
    pub roadmap: String,
    pub items: usize,
    pub by_format: BTreeMap<String, usize>,
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
    pub marked_done: Vec<String>,
    pub reopened: Vec<String>,
    pub abandoned: Vec<String>,
    /// Changed or removed in the roadmap while in flight: left alone until the run ends.
    pub in_flight_untouched: Vec<String>,
    pub warnings: Vec<Warning>,
}

/// Key under which the last ingested roadmap's hash is kept (saturate re-ingests on change).
pub const ROADMAP_HASH_KEY: &str = "roadmap_sha256";

/// A roadmap file as read: its bytes, the label errors and events name it by (relative to the
/// repository root), and its hash.
pub struct RoadmapFile {
    pub bytes: Vec<u8>,
    pub label: String,
    pub sha256: String,
}

impl RoadmapFile {
    pub fn read(
        path: &std::path::Path,
        root: &std::path::Path,
    ) -> Result<Self, super::RoadmapError> {
        let bytes = std::fs::read(path).map_err(|source| super::RoadmapError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let label = path
            .strip_prefix(root)
            .unwrap_or(path)
            .display()
            .to_string();
        let sha256 = roadmap_hash(&bytes);
        Ok(Self {
            bytes,
            label,
            sha256,
        })
    }

    /// Parses it, logging each warning with its line.
    pub fn parse(&self, default_tier: u8) -> Result<Roadmap, super::RoadmapError> {
        let parsed = super::parse(&self.bytes, std::path::Path::new(&self.label), default_tier)?;
        for warning in &parsed.warnings {
            tracing::warn!("{}:{}: {}", self.label, warning.line, warning.message);
        }
        Ok(parsed)
    }
}

/// Hash of the roadmap bytes, hex.
pub fn roadmap_hash(bytes: &[u8]) -> String {
    crate::digest::sha256_hex(bytes, 32)
}

fn spec_of(item: &RoadmapItem, order: usize) -> TaskSpec {
    let mut hasher = Sha256::new();
    for part in [
        item.priority_tier.to_string().as_str(),
        &item.title,
        item.subtitle.as_deref().unwrap_or(""),
        &item.body,
        item.section.as_deref().unwrap_or(""),
        item.milestone.as_deref().unwrap_or(""),
        &item.depends_on.join(","),
        &item.file_hints.join(","),
        item.format.as_str(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let content_hash = crate::digest::hex(&hasher.finalize()[..16]);
    TaskSpec {
        id: item.id.clone(),
        priority_tier: item.priority_tier,
        title: item.title.clone(),
        subtitle: item.subtitle.clone(),
        body: item.body.clone(),
        section: item.section.clone(),
        milestone: item.milestone.clone(),
        format: item.format.as_str().to_owned(),
        depends_on: item.depends_on.clone(),
        file_hints: item.file_hints.clone(),
        source_line: u32::try_from(item.line).unwrap_or(u32::MAX),
        roadmap_order: u32::try_from(order).unwrap_or(u32::MAX),
        content_hash,
        roadmap_done: item.done,
    }
}

/// Applies `roadmap` to the ledger in one transaction and returns what changed.
pub fn apply(
    ledger: &mut Ledger,
    roadmap: &Roadmap,
    roadmap_label: &str,
    roadmap_sha256: &str,
    now_ms: i64,
) -> Result<IngestSummary, LedgerError> {
    let mut summary = IngestSummary::of(roadmap, roadmap_label);
    ledger.write(|q| {
        // Another host may be ingesting the same roadmap: one at a time, each reading what
        // the one before it wrote.
        q.lock_for_ingest()?;
        let existing: HashMap<String, TaskRow> = q
            .tasks()?
            .into_iter()
            .map(|t| (t.spec.id.clone(), t))
            .collect();
        let mut ingest = Ingest {
            q,
            now_ms,
            summary: &mut summary,
        };
        let mut present: HashSet<&str> = HashSet::with_capacity(roadmap.items.len());
        for (order, item) in roadmap.items.iter().enumerate() {
            present.insert(&item.id);
            let spec = spec_of(item, order);
            match existing.get(&item.id) {
                None => ingest.add(item, &spec)?,
                // The id belongs to a task of another source (an issue's `GH-<n>`).
                Some(task) if task.spec.format == super::github_issues::FORMAT => {
                    ingest.foreign(item, task)
                }
                Some(task) if task.state.is_in_flight() => ingest.keep_in_flight(task, &spec)?,
                Some(task) => ingest.refresh(item, task, &spec)?,
            }
        }
        for (id, task) in &existing {
            if present.contains(id.as_str())
                || !task.in_roadmap
                || task.spec.format == super::github_issues::FORMAT
            {
                continue;
            }
            ingest.remove(id, task)?;
        }
        ingest.complete(roadmap_label, roadmap_sha256)
    })?;
    Ok(summary)
}

impl IngestSummary {
    /// The summary before anything is applied: the roadmap's items counted by format.
    fn of(roadmap: &Roadmap, roadmap_label: &str) -> Self {
        let mut summary = IngestSummary {
            roadmap: roadmap_label.to_owned(),
            items: roadmap.items.len(),
            warnings: roadmap.warnings.clone(),
            ..IngestSummary::default()
        };
        for item in &roadmap.items {
            *summary
                .by_format
                .entry(item.format.as_str().to_owned())
                .or_default() += 1;
        }
        summary
    }
}

/// One ingest's transaction: each step writes to the ledger and notes what it changed.
struct Ingest<'a, 'c> {
    q: &'a Queries<'c>,
    now_ms: i64,
    summary: &'a mut IngestSummary,
}

impl Ingest<'_, '_> {
    /// Appends an event by oxi, now.
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

    /// A new id: a `queued` task, or `done` when the roadmap has it checked off.
    fn add(&mut self, item: &RoadmapItem, spec: &TaskSpec) -> Result<(), LedgerError> {
        let state = if item.done {
            TaskState::Done
        } else {
            TaskState::Queued
        };
        self.q.insert_task(spec, state, self.now_ms)?;
        self.event(
            Some(&spec.id),
            Event::TaskAdded(TaskAdded {
                state,
                line: spec.source_line,
                priority_tier: spec.priority_tier,
                format: spec.format.clone(),
            }),
        )?;
        self.summary.added.push(spec.id.clone());
        if item.done {
            self.summary.marked_done.push(spec.id.clone());
        }
        Ok(())
    }

    /// A roadmap item whose id another source's task holds: skipped with a warning.
    fn foreign(&mut self, item: &RoadmapItem, task: &TaskRow) {
        self.summary.warnings.push(Warning {
            line: item.line,
            message: format!(
                "{} is the id of a task made from a GitHub issue ({}); this item is skipped, give it another id",
                item.id, task.spec.title
            ),
        });
    }

    /// An in-flight task keeps the brief it started with; only its position moves, and a
    /// changed text is recorded.
    fn keep_in_flight(&mut self, task: &TaskRow, spec: &TaskSpec) -> Result<(), LedgerError> {
        if task.spec.content_hash != spec.content_hash {
            self.event(
                Some(&spec.id),
                Event::TaskChangedInFlight(RoadmapLine {
                    line: spec.source_line,
                }),
            )?;
            self.summary.in_flight_untouched.push(spec.id.clone());
        }
        self.q.update_task_position(
            &spec.id,
            spec.source_line,
            spec.roadmap_order,
            true,
            task.spec.roadmap_done,
        )
    }

    /// A known task at rest: its text rewritten, then its state following the roadmap's mark.
    fn refresh(
        &mut self,
        item: &RoadmapItem,
        task: &TaskRow,
        spec: &TaskSpec,
    ) -> Result<(), LedgerError> {
        let rewritten = self.rewrite(task, spec)?;
        let moved = self.follow_mark(item, task, spec)?;
        if !rewritten && !moved {
            self.summary.unchanged += 1;
        }
        Ok(())
    }

    /// Rewrites the task's text when it changed (true), else only its position (false).
    fn rewrite(&mut self, task: &TaskRow, spec: &TaskSpec) -> Result<bool, LedgerError> {
        if task.spec.content_hash == spec.content_hash {
            self.q.update_task_position(
                &spec.id,
                spec.source_line,
                spec.roadmap_order,
                true,
                spec.roadmap_done,
            )?;
            return Ok(false);
        }
        self.q.update_task_spec(spec, self.now_ms)?;
        self.event(
            Some(&spec.id),
            Event::TaskUpdated(RoadmapLine {
                line: spec.source_line,
            }),
        )?;
        self.summary.updated.push(spec.id.clone());
        Ok(true)
    }

    /// Moves the task to `done` or back to `queued` as the roadmap's check mark (or its
    /// return to the roadmap) says; true when it moved.
    fn follow_mark(
        &mut self,
        item: &RoadmapItem,
        task: &TaskRow,
        spec: &TaskSpec,
    ) -> Result<bool, LedgerError> {
        let target = if item.done && task.state != TaskState::Done {
            Some((TaskState::Done, "checked off in the roadmap"))
        } else if !item.done && task.state == TaskState::Done && task.spec.roadmap_done {
            Some((TaskState::Queued, "unchecked in the roadmap"))
        } else if task.state == TaskState::Abandoned && !item.done {
            Some((TaskState::Queued, "back in the roadmap"))
        } else {
            None
        };
        let Some((to, reason)) = target.filter(|(to, _)| task.state.can_transition_to(*to)) else {
            return Ok(false);
        };
        self.q.transition_task(
            &spec.id,
            &Transition::by_oxi(task.state, to, reason),
            self.now_ms,
        )?;
        match to {
            TaskState::Done => self.summary.marked_done.push(spec.id.clone()),
            _ => self.summary.reopened.push(spec.id.clone()),
        }
        Ok(true)
    }

    /// An id that left the roadmap: marked so, and abandoned unless something is in flight.
    fn remove(&mut self, id: &str, task: &TaskRow) -> Result<(), LedgerError> {
        let spec = &task.spec;
        self.q.update_task_position(
            id,
            spec.source_line,
            spec.roadmap_order,
            false,
            spec.roadmap_done,
        )?;
        if task.state.is_in_flight() {
            self.event(
                Some(id),
                Event::TaskRemovedInFlight(TaskRemovedInFlight { state: task.state }),
            )?;
            self.summary.in_flight_untouched.push(id.to_owned());
        } else if task.state.is_waiting() {
            self.q.transition_task(
                id,
                &Transition::by_oxi(task.state, TaskState::Abandoned, "removed from the roadmap"),
                self.now_ms,
            )?;
            self.summary.abandoned.push(id.to_owned());
        }
        Ok(())
    }

    /// Keeps the roadmap's hash (saturate re-ingests on change) and records the ingest.
    fn complete(self, roadmap_label: &str, roadmap_sha256: &str) -> Result<(), LedgerError> {
        self.summary.abandoned.sort();
        self.summary.in_flight_untouched.sort();
        self.q
            .kv_set(ROADMAP_HASH_KEY, roadmap_sha256, self.now_ms)?;
        let summary = &*self.summary;
        self.event(
            None,
            Event::IngestCompleted(IngestCompleted {
                roadmap: roadmap_label.to_owned(),
                sha256: roadmap_sha256.to_owned(),
                items: summary.items,
                added: summary.added.len(),
                updated: summary.updated.len(),
                abandoned: summary.abandoned.len(),
                marked_done: summary.marked_done.len(),
                reopened: summary.reopened.len(),
                warnings: summary.warnings.len(),
            }),
        )
    }
}
