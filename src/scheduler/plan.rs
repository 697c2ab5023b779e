//! The dispatch order: which waiting task goes next, and why each held one waits.
//!
//! Order: priority tier, then a priority score, with dependencies first. A task inherits the
//! best tier of the tasks waiting on it, so a tier-0 item's tier-2 dependency is not starved
//! behind tier-1 work. Tasks whose dependencies are not done are listed with that reason.
//!
//! The score (lower goes first) is the roadmap position, moved forward 5 places per attempt
//! already spent (finish started work, whose branch holds the earlier attempts, before
//! starting new work; the attempt caps bound how long that lasts) and one place per day waited
//! (at most 30), so nothing starves behind a long roadmap.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde::Serialize;

use crate::ledger::{TaskRow, TaskState};

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedTask {
    pub id: String,
    pub priority_tier: u8,
    /// The tier it is scheduled at (its own, or a better one inherited from a dependent).
    pub effective_tier: u8,
    pub title: String,
    pub state: TaskState,
    /// Why it cannot be dispatched now; `None` when it is eligible.
    pub held_reason: Option<String>,
    /// `run.stack_on_delivered`: the delivered, unmerged dependency whose branch it starts from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_from: Option<String>,
    /// When its only obstacle is a retry backoff: when that ends (it becomes eligible then by
    /// itself, so `oxi saturate --until-empty` waits for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff_until_ms: Option<i64>,
    pub depends_on: Vec<String>,
    pub attempts: u32,
    pub section: Option<String>,
    pub file_hints: Vec<String>,
}

impl PlannedTask {
    pub fn is_eligible(&self) -> bool {
        self.held_reason.is_none()
    }
}

/// Plans every waiting task (queued, held, retry-wait) in dispatch order; a dependency counts
/// once its work is on the base branch.
#[cfg(test)]
fn plan(tasks: &[TaskRow], now_ms: i64) -> Vec<PlannedTask> {
    plan_with(tasks, now_ms, false)
}

/// `plan`, with `stack` (`run.stack_on_delivered` in fast mode): a delivered dependency without
/// a pull request counts too, and the task starts from its branch (one such dependency at most).
pub fn plan_with(tasks: &[TaskRow], now_ms: i64, stack: bool) -> Vec<PlannedTask> {
    let by_id: HashMap<&str, &TaskRow> = tasks.iter().map(|t| (t.spec.id.as_str(), t)).collect();
    let waiting: Vec<&TaskRow> = tasks.iter().filter(|t| t.state.is_waiting()).collect();
    let index: HashMap<&str, usize> = waiting
        .iter()
        .enumerate()
        .map(|(i, t)| (t.spec.id.as_str(), i))
        .collect();

    // Edges dependency -> dependent, among waiting tasks only.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); waiting.len()];
    let mut indegree = vec![0usize; waiting.len()];
    for (i, task) in waiting.iter().enumerate() {
        for dep in &task.spec.depends_on {
            if let Some(&d) = index.get(dep.as_str()) {
                dependents[d].push(i);
                indegree[i] += 1;
            }
        }
    }

    // Topological order (any), to propagate tiers from dependents to dependencies.
    let mut topo = Vec::with_capacity(waiting.len());
    let mut remaining = indegree.clone();
    let mut ready: Vec<usize> = (0..waiting.len()).filter(|&i| remaining[i] == 0).collect();
    while let Some(i) = ready.pop() {
        topo.push(i);
        for &j in &dependents[i] {
            remaining[j] -= 1;
            if remaining[j] == 0 {
                ready.push(j);
            }
        }
    }
    let mut effective: Vec<u8> = waiting.iter().map(|t| t.spec.priority_tier).collect();
    for &i in topo.iter().rev() {
        for &j in &dependents[i] {
            effective[i] = effective[i].min(effective[j]);
        }
    }

    // Dispatch order: the ready task with the best (effective tier, score) goes first.
    let key = |i: usize| (effective[i], priority_score(waiting[i], now_ms), i);
    let mut order = Vec::with_capacity(waiting.len());
    let mut remaining = indegree;
    let mut heap: BinaryHeap<Reverse<(u8, i64, usize)>> = (0..waiting.len())
        .filter(|&i| remaining[i] == 0)
        .map(|i| Reverse(key(i)))
        .collect();
    while let Some(Reverse((_, _, i))) = heap.pop() {
        order.push(i);
        for &j in &dependents[i] {
            remaining[j] -= 1;
            if remaining[j] == 0 {
                heap.push(Reverse(key(j)));
            }
        }
    }
    let mut in_cycle: Vec<usize> = (0..waiting.len()).filter(|&i| remaining[i] > 0).collect();
    in_cycle.sort_by_key(|&i| key(i));
    let cycle_members: std::collections::HashSet<usize> = in_cycle.iter().copied().collect();
    order.extend(in_cycle);

    order
        .into_iter()
        .map(|i| {
            let task = waiting[i];
            let hold = if cycle_members.contains(&i) {
                Some(Hold::Cycle(cycle_reason(
                    i,
                    &waiting,
                    &index,
                    &cycle_members,
                )))
            } else {
                hold(task, &by_id, now_ms, stack)
            };
            let start_from = match (&hold, stack) {
                (None, true) => stacked_on(task, &by_id).into_iter().next(),
                _ => None,
            };
            let backoff_until_ms = match hold {
                Some(Hold::Backoff(at)) => Some(at),
                _ => None,
            };
            PlannedTask {
                id: task.spec.id.clone(),
                priority_tier: task.spec.priority_tier,
                effective_tier: effective[i],
                title: task.spec.title.clone(),
                state: task.state,
                held_reason: hold.map(|h| h.to_string()),
                backoff_until_ms,
                start_from,
                depends_on: task.spec.depends_on.clone(),
                attempts: task.attempts,
                section: task.spec.section.clone(),
                file_hints: task.spec.file_hints.clone(),
            }
        })
        .collect()
}

/// Lower goes first: roadmap position, -5 per attempt spent, -1 per day waited (at most 30).
pub fn priority_score(task: &TaskRow, now_ms: i64) -> i64 {
    let days_waiting = ((now_ms - task.created_at_ms).max(0) / 86_400_000).min(30);
    i64::from(task.spec.roadmap_order) - 5 * i64::from(task.attempts) - days_waiting
}

/// Why a waiting task cannot be dispatched now.
enum Hold {
    /// Held for a human, with the reason recorded on the task.
    Human(String),
    /// Dependencies whose work is not on the base branch yet, each with its state.
    Dependencies(Vec<String>),
    /// Stacking: more than one delivered, unmerged dependency (a task starts from one branch).
    Stacks(Vec<String>),
    /// A retry backoff, until this time.
    Backoff(i64),
    /// A dependency cycle, as `A -> B -> A`.
    Cycle(String),
}

impl std::fmt::Display for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hold::Human(reason) => f.write_str(reason),
            Hold::Dependencies(blockers) => write!(f, "depends on {}", blockers.join(", ")),
            Hold::Stacks(ids) => write!(
                f,
                "depends on {}, delivered on separate branches; run.stack_on_delivered starts a task from one branch: merge all but one",
                ids.join(", ")
            ),
            Hold::Backoff(at) => write!(f, "retry backoff until {}", crate::clock::rfc3339(*at)),
            Hold::Cycle(path) => write!(f, "dependency cycle: {path}"),
        }
    }
}

/// Delivered dependencies without a pull request, whose work is on their branch only.
fn stacked_on(task: &TaskRow, by_id: &HashMap<&str, &TaskRow>) -> Vec<String> {
    task.spec
        .depends_on
        .iter()
        .filter(|dep| {
            by_id
                .get(dep.as_str())
                .is_some_and(|d| d.state == TaskState::Delivered && d.pr_number.is_none())
        })
        .cloned()
        .collect()
}

fn hold(task: &TaskRow, by_id: &HashMap<&str, &TaskRow>, now_ms: i64, stack: bool) -> Option<Hold> {
    if task.state == TaskState::Held {
        return Some(Hold::Human(task.held_reason.clone().unwrap_or_else(|| {
            "held for a human; `oxi approve` releases it".to_owned()
        })));
    }
    let mut blockers = Vec::new();
    for dep in &task.spec.depends_on {
        match by_id.get(dep.as_str()) {
            None => blockers.push(format!("{dep} (not in the roadmap or ledger)")),
            Some(d) if d.state.satisfies_dependents() => {}
            Some(d) if stack && d.state == TaskState::Delivered && d.pr_number.is_none() => {}
            Some(d) => blockers.push(format!("{dep} ({})", d.state)),
        }
    }
    if !blockers.is_empty() {
        return Some(Hold::Dependencies(blockers));
    }
    if stack {
        let stacked = stacked_on(task, by_id);
        if stacked.len() > 1 {
            return Some(Hold::Stacks(stacked));
        }
    }
    if task.state == TaskState::RetryWait
        && let Some(at) = task.retry_at_ms
        && at > now_ms
    {
        return Some(Hold::Backoff(at));
    }
    None
}

fn cycle_reason(
    start: usize,
    waiting: &[&TaskRow],
    index: &HashMap<&str, usize>,
    members: &std::collections::HashSet<usize>,
) -> String {
    let mut path = vec![start];
    let mut current = start;
    loop {
        let next = waiting[current]
            .spec
            .depends_on
            .iter()
            .filter_map(|d| index.get(d.as_str()).copied())
            .find(|d| members.contains(d));
        let Some(next) = next else { break };
        if let Some(pos) = path.iter().position(|&p| p == next) {
            path.push(next);
            path.drain(..pos);
            break;
        }
        path.push(next);
        current = next;
    }
    let names: Vec<&str> = path.iter().map(|&i| waiting[i].spec.id.as_str()).collect();
    names.join(" -> ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::TaskSpec;

    fn task(id: &str, tier: u8, order: u32, deps: &[&str], state: TaskState) -> TaskRow {
        TaskRow {
            spec: TaskSpec {
                id: id.to_owned(),
                priority_tier: tier,
                title: format!("title {id}"),
                subtitle: None,
                body: String::new(),
                section: None,
                milestone: None,
                format: "oxi".to_owned(),
                depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
                file_hints: Vec::new(),
                source_line: order + 1,
                roadmap_order: order,
                content_hash: String::new(),
                roadmap_done: false,
            },
            in_roadmap: true,
            state,
            held_reason: None,
            hold_kind: None,
            failure_class: None,
            attempts: 0,
            worker_calls: 0,
            retry_at_ms: None,
            last_deferred_at_ms: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            branch: None,
            base_commit: None,
            last_failure: None,
            pr_number: None,
            pr_url: None,
        }
    }

    fn ids(plan: &[PlannedTask]) -> Vec<&str> {
        plan.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn started_work_and_old_work_move_up() {
        let day = 86_400_000;
        let fresh = task("A", 1, 0, &[], TaskState::Queued);
        let mut retried = task("B", 1, 3, &[], TaskState::Queued);
        retried.attempts = 1;
        let p = plan(&[fresh, retried], 0);
        assert_eq!(p[0].id, "B", "one attempt spent moves B forward 5 places");
        let mut old = task("C", 1, 10, &[], TaskState::Queued);
        old.created_at_ms = 0;
        let mut new = task("D", 1, 4, &[], TaskState::Queued);
        new.created_at_ms = 20 * day;
        let p = plan(&[old, new], 20 * day);
        assert_eq!(p[0].id, "C", "20 days of waiting outweigh 6 places");
    }

    #[test]
    fn tier_then_roadmap_order() {
        let tasks = [
            task("T2-1", 2, 0, &[], TaskState::Queued),
            task("T0-1", 0, 1, &[], TaskState::Queued),
            task("T1-1", 1, 2, &[], TaskState::Queued),
            task("T0-2", 0, 3, &[], TaskState::Queued),
        ];
        assert_eq!(ids(&plan(&tasks, 0)), ["T0-1", "T0-2", "T1-1", "T2-1"]);
    }

    #[test]
    fn dependencies_go_first_and_inherit_the_dependents_tier() {
        let tasks = [
            task("T1-1", 1, 0, &[], TaskState::Queued),
            task("T0-1", 0, 1, &["T2-9"], TaskState::Queued),
            task("T2-9", 2, 2, &[], TaskState::Queued),
        ];
        let p = plan(&tasks, 0);
        assert_eq!(ids(&p), ["T2-9", "T0-1", "T1-1"]);
        assert_eq!(p[0].effective_tier, 0);
        assert_eq!(p[0].held_reason, None);
        assert_eq!(
            p[1].held_reason.as_deref(),
            Some("depends on T2-9 (queued)")
        );
    }

    #[test]
    fn satisfied_unknown_and_cyclic_dependencies() {
        let tasks = [
            task("A-1", 1, 0, &["D-1"], TaskState::Queued),
            task("A-2", 1, 1, &["Z-9"], TaskState::Queued),
            task("C-1", 1, 2, &["C-2"], TaskState::Queued),
            task("C-2", 1, 3, &["C-1"], TaskState::Queued),
            task("D-1", 1, 4, &[], TaskState::Merged),
        ];
        let p = plan(&tasks, 0);
        assert_eq!(ids(&p), ["A-1", "A-2", "C-1", "C-2"]);
        assert_eq!(p[0].held_reason, None);
        assert_eq!(
            p[1].held_reason.as_deref(),
            Some("depends on Z-9 (not in the roadmap or ledger)")
        );
        assert_eq!(
            p[2].held_reason.as_deref(),
            Some("dependency cycle: C-1 -> C-2 -> C-1")
        );
    }

    #[test]
    fn stacking_counts_one_delivered_dependency_and_starts_from_it() {
        let mut d1 = task("D-1", 1, 0, &[], TaskState::Delivered);
        d1.branch = Some("oxi/d-1".to_owned());
        let d2 = task("D-2", 1, 1, &[], TaskState::Delivered);
        let mut with_pr = task("D-3", 1, 2, &[], TaskState::Delivered);
        with_pr.pr_number = Some(7);
        let tasks = [
            d1,
            d2,
            with_pr,
            task("A-1", 1, 3, &["D-1"], TaskState::Queued),
            task("A-2", 1, 4, &["D-1", "D-2"], TaskState::Queued),
            task("A-3", 1, 5, &["D-3"], TaskState::Queued),
        ];
        let off = plan(&tasks, 0);
        assert_eq!(
            off[0].held_reason.as_deref(),
            Some("depends on D-1 (delivered)")
        );
        assert_eq!(off[0].start_from, None);
        let on = plan_with(&tasks, 0, true);
        assert_eq!(on[0].held_reason, None);
        assert_eq!(on[0].start_from.as_deref(), Some("D-1"));
        assert!(
            on[1]
                .held_reason
                .as_deref()
                .unwrap()
                .contains("separate branches"),
            "{:?}",
            on[1].held_reason
        );
        assert_eq!(
            on[2].held_reason.as_deref(),
            Some("depends on D-3 (delivered)"),
            "a pull request is reviewed on its own: no stacking on it"
        );
    }

    #[test]
    fn holds_and_backoff() {
        let mut held = task("H-1", 0, 0, &[], TaskState::Held);
        held.held_reason = Some("needs approval: infra/main.tf".to_owned());
        let mut waiting = task("R-1", 0, 1, &[], TaskState::RetryWait);
        waiting.retry_at_ms = Some(2_000);
        let p = plan(&[held, waiting.clone()], 1_000);
        assert_eq!(
            p[0].held_reason.as_deref(),
            Some("needs approval: infra/main.tf")
        );
        assert!(
            p[1].held_reason
                .as_deref()
                .unwrap()
                .starts_with("retry backoff until")
        );
        assert!(plan(&[waiting], 2_000)[0].is_eligible());
    }
}
