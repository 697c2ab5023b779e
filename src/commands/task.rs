//! `oxi approve`, `oxi retry`, `oxi cancel`, `oxi done`: an operator acting on one task. Each
//! leaves an `operator_action` event naming who did what (the human-intervention KPI). Task ids
//! are matched ignoring case.

use anyhow::{Result, bail};

use super::Context;
use crate::cli::{ApproveArgs, DoneArgs, TaskActionArgs};
use crate::clock::now_ms;
use crate::ledger::events::OperatorAction;
use crate::ledger::{
    ApprovalKind, Event, HoldKind, Ledger, NewEvent, TaskRow, TaskState, Transition,
    TransitionFields,
};
use crate::output::{Format, json_string, write_stdout};

fn load(ctx: &Context, id: &str) -> Result<(crate::config::LoadedConfig, Ledger, TaskRow)> {
    let config = ctx.config()?;
    let ledger = ctx.ledger(&config)?;
    let task = ledger
        .read()
        .find_task(id)?
        .ok_or_else(|| crate::ledger::LedgerError::NoSuchTask(id.to_owned()))?;
    Ok((config, ledger, task))
}

/// One operator action on one task: who moves it from where to where, and why.
struct OperatorMove<'a> {
    id: &'a str,
    actor: &'a str,
    action: &'a str,
    from: TaskState,
    to: TaskState,
    note: Option<&'a str>,
}

/// Moves the task as the operator, runs `extra` and records the `operator_action` event, in one
/// transaction.
fn act(
    ledger: &mut Ledger,
    operator_move: OperatorMove<'_>,
    extra: impl FnOnce(&crate::ledger::Queries<'_>, i64) -> Result<(), crate::ledger::LedgerError>,
) -> Result<(), crate::ledger::LedgerError> {
    let OperatorMove {
        id,
        actor,
        action,
        from,
        to,
        note,
    } = operator_move;
    let now = now_ms();
    ledger.write(|q| {
        extra(q, now)?;
        q.transition_task(
            id,
            &Transition {
                from,
                to,
                fields: TransitionFields::default(),
                actor,
                reason: &format!("operator {action}"),
            },
            now,
        )?;
        q.append_event(&NewEvent {
            at_ms: now,
            task_id: Some(id),
            run_id: None,
            actor,
            event: Event::OperatorAction(OperatorAction::Transition {
                action: action.to_owned(),
                from,
                to,
                note: note.map(str::to_owned),
            }),
        })?;
        Ok(())
    })
}

fn print(
    ctx: &Context,
    task: &str,
    action: &str,
    from: TaskState,
    to: TaskState,
    next: &str,
) -> Result<()> {
    let text = match ctx.global.format {
        Format::Json => json_string(&serde_json::json!({
            "task": task,
            "action": action,
            "from": from,
            "to": to,
        }))?,
        _ => format!("{task}: {from} -> {to}; {next}\n"),
    };
    write_stdout(&text)?;
    Ok(())
}

pub fn approve(ctx: &Context, approve: &ApproveArgs) -> Result<()> {
    let args = &approve.task;
    let (_config, mut ledger, task) = load(ctx, &args.task)?;
    if approve.merge {
        if task.state != TaskState::Delivered || task.pr_number.is_none() {
            bail!(
                "{} is {}{}; --merge approves a delivered task's pull request",
                task.spec.id,
                task.state,
                if task.pr_number.is_none() {
                    " with no pull request"
                } else {
                    ""
                }
            );
        }
        let actor = ctx.operator();
        let now = now_ms();
        let id = task.spec.id.clone();
        ledger.write(|q| {
            q.insert_approval(&id, ApprovalKind::Merge, &actor, args.note.as_deref(), now)?;
            q.append_event(&NewEvent {
                at_ms: now,
                task_id: Some(&id),
                run_id: None,
                actor: &actor,
                event: Event::OperatorAction(OperatorAction::Merge {
                    action: "approve_merge".to_owned(),
                    pr: task.pr_number,
                    note: args.note.clone(),
                }),
            })
            .map(|_| ())
        })?;
        let text = match ctx.global.format {
            Format::Json => json_string(&serde_json::json!({
                "task": id, "action": "approve_merge", "pr": task.pr_number,
            }))?,
            _ => format!(
                "{id}: merge of pull request #{} approved; the next release tick merges it once its checks pass\n",
                task.pr_number.unwrap_or(0)
            ),
        };
        write_stdout(&text)?;
        return Ok(());
    }
    if task.state != TaskState::Held {
        bail!(
            "{} is {}, not held; only a held task can be approved (`oxi tasks` shows why each task waits)",
            task.spec.id,
            task.state
        );
    }
    // The approval's kind (stored in `approvals.kind`), where the task goes and what happens.
    let (kind, to, next) = match task.hold_kind.unwrap_or(HoldKind::Operator) {
        HoldKind::NeedsApproval | HoldKind::ReviewOverBudget => (
            ApprovalKind::NeedsApproval,
            TaskState::DeliverPending,
            "the next tick delivers it",
        ),
        HoldKind::OverEstimate => (
            ApprovalKind::OverEstimate,
            TaskState::Queued,
            "the next tick runs it despite the estimate",
        ),
        HoldKind::ReviewUnavailable if task.branch.is_some() => (
            ApprovalKind::Review,
            TaskState::DeliverPending,
            "the next tick delivers it without the reviewer",
        ),
        HoldKind::Screened => (
            ApprovalKind::Held,
            TaskState::Queued,
            "the next tick may claim it; its brief is not screened again",
        ),
        HoldKind::ReviewUnavailable | HoldKind::Operator => (
            ApprovalKind::Held,
            TaskState::Queued,
            "the next tick may claim it",
        ),
    };
    let actor = ctx.operator();
    let id = task.spec.id.clone();
    let note = args.note.as_deref();
    act(
        &mut ledger,
        OperatorMove {
            id: &id,
            actor: &actor,
            action: "approve",
            from: TaskState::Held,
            to,
            note,
        },
        |q, now| q.insert_approval(&id, kind, &actor, note, now),
    )?;
    print(ctx, &id, "approve", TaskState::Held, to, next)
}

/// The states `oxi retry` moves back to `queued`. Not `delivered`, `merged` or `done`: their
/// work exists, and running it again would pay for it twice.
const RETRYABLE: [TaskState; 7] = [
    TaskState::Failed,
    TaskState::FrameworkFixNeeded,
    TaskState::Held,
    TaskState::RetryWait,
    TaskState::Rejected,
    TaskState::Cancelled,
    TaskState::Abandoned,
];

/// Why `oxi retry` refuses a task in `state`, naming what it accepts and what to do instead.
fn retry_refusal(config: &crate::config::LoadedConfig, task: &TaskRow) -> String {
    let id = &task.spec.id;
    let accepted: Vec<&str> = RETRYABLE.iter().map(|s| s.as_str()).collect();
    let instead = match task.state {
        TaskState::Delivered => format!(
            "; its work is on {}: merge it into {} (the next tick sees it), or `oxi done {id}` if it landed another way",
            task.branch.as_deref().unwrap_or("its branch"),
            config.config.project.base_branch
        ),
        TaskState::Merged | TaskState::Done => "; its work has landed".to_owned(),
        TaskState::Queued => "; it is already waiting for a slot".to_owned(),
        _ => "; it is in flight (`oxi cancel` stops it)".to_owned(),
    };
    format!(
        "{id} is {}; retry accepts {} tasks{instead}",
        task.state,
        accepted.join(", ")
    )
}

pub fn retry(ctx: &Context, args: &TaskActionArgs) -> Result<()> {
    let (config, mut ledger, task) = load(ctx, &args.task)?;
    let from = task.state;
    if !RETRYABLE.contains(&from) {
        bail!("{}", retry_refusal(&config, &task));
    }
    let actor = ctx.operator();
    let id = task.spec.id.clone();
    let to = TaskState::Queued;
    act(
        &mut ledger,
        OperatorMove {
            id: &id,
            actor: &actor,
            action: "retry",
            from,
            to,
            note: args.note.as_deref(),
        },
        |q, now| q.reset_task_counters(&id, now),
    )?;
    print(
        ctx,
        &id,
        "retry",
        from,
        to,
        "attempts reset; the next tick may claim it",
    )
}

pub fn cancel(ctx: &Context, args: &TaskActionArgs) -> Result<()> {
    let (config, mut ledger, task) = load(ctx, &args.task)?;
    let from = task.state;
    if !from.can_transition_to(TaskState::Cancelled) {
        bail!("{} is {}, which cannot be cancelled", task.spec.id, from);
    }
    let actor = ctx.operator();
    let id = task.spec.id.clone();
    let to = TaskState::Cancelled;
    act(
        &mut ledger,
        OperatorMove {
            id: &id,
            actor: &actor,
            action: "cancel",
            from,
            to,
            note: args.note.as_deref(),
        },
        |_, _| Ok(()),
    )?;
    // A run still going for it is stopped; its supervisor records the ending.
    let grace = config.config.caps.kill_grace.as_duration();
    let live: Vec<u32> = ledger
        .read()
        .running_runs()?
        .into_iter()
        .filter(|r| r.task_id.as_deref() == Some(id.as_str()))
        .filter_map(|r| r.pgid)
        .collect();
    if !live.is_empty() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        for pgid in &live {
            runtime.block_on(crate::process::terminate_group(*pgid, grace));
        }
    }
    let next = if live.is_empty() {
        "done"
    } else {
        "its running worker was stopped"
    };
    print(ctx, &id, "cancel", from, to, next)
}

/// `oxi done TASK`: the operator says the task's work has landed (a squash or rebase merge oxi
/// cannot see, or work done by hand), so its dependents may start.
pub fn done(ctx: &Context, args: &DoneArgs) -> Result<()> {
    let (_config, mut ledger, task) = load(ctx, &args.task)?;
    let from = task.state;
    let id = task.spec.id.clone();
    if from == TaskState::Done {
        bail!("{id} is already done");
    }
    if from.is_in_flight() || !from.can_transition_to(TaskState::Done) {
        bail!(
            "{id} is {from}: work on it is in flight; wait for it to end, or `oxi cancel {id}` first"
        );
    }
    let actor = ctx.operator();
    let to = TaskState::Done;
    act(
        &mut ledger,
        OperatorMove {
            id: &id,
            actor: &actor,
            action: "done",
            from,
            to,
            note: args.why.as_deref(),
        },
        |_, _| Ok(()),
    )?;
    print(
        ctx,
        &id,
        "done",
        from,
        to,
        "tasks that depend on it may start",
    )
}
