//! `oxi approve`, `oxi retry`, `oxi cancel`: an operator acting on one task. Each leaves an
//! `operator_action` event naming who did what (the human-intervention KPI).

use anyhow::{Result, bail};

use super::Context;
use crate::cli::TaskActionArgs;
use crate::clock::now_ms;
use crate::ledger::{
    EventKind, Ledger, NewEvent, TaskRow, TaskState, Transition, TransitionFields,
};
use crate::output::{Format, json_string, write_stdout};

fn load(ctx: &Context, id: &str) -> Result<(crate::config::LoadedConfig, Ledger, TaskRow)> {
    let config = ctx.config()?;
    let ledger = ctx.ledger(&config)?;
    let task = ledger
        .read()
        .task(id)?
        .ok_or_else(|| crate::ledger::LedgerError::NoSuchTask(id.to_owned()))?;
    Ok((config, ledger, task))
}

fn action_event<'a>(
    task: &'a str,
    actor: &'a str,
    action: &str,
    from: TaskState,
    to: TaskState,
    note: Option<&str>,
) -> NewEvent<'a> {
    NewEvent {
        at_ms: now_ms(),
        kind: EventKind::OperatorAction,
        task_id: Some(task),
        run_id: None,
        actor,
        data: serde_json::json!({
            "action": action,
            "from": from.as_str(),
            "to": to.as_str(),
            "note": note,
        }),
    }
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

pub fn approve(ctx: &Context, args: &TaskActionArgs) -> Result<()> {
    let (_config, mut ledger, task) = load(ctx, &args.task)?;
    if task.state != TaskState::Held {
        bail!(
            "{} is {}, not held; only a held task can be approved (`oxi plan --dry-run` shows why tasks wait)",
            task.spec.id,
            task.state
        );
    }
    let reason = task.held_reason.clone().unwrap_or_default();
    let (kind, to, next) = if reason.contains("oxi approve") && reason.contains("committed on") {
        (
            "needs_approval",
            TaskState::DeliverPending,
            "the next tick delivers it",
        )
    } else if reason.starts_with("estimated cost") {
        (
            "over_estimate",
            TaskState::Queued,
            "the next tick runs it despite the estimate",
        )
    } else if reason.contains("review") && task.branch.is_some() {
        (
            "review",
            TaskState::DeliverPending,
            "the next tick delivers it without the reviewer",
        )
    } else {
        ("held", TaskState::Queued, "the next tick may claim it")
    };
    let actor = ctx.operator();
    let now = now_ms();
    let id = task.spec.id.clone();
    ledger.write(|q| {
        q.insert_approval(&id, kind, &actor, args.note.as_deref(), now)?;
        q.transition_task(
            &id,
            &Transition {
                from: TaskState::Held,
                to,
                fields: TransitionFields::default(),
                actor: &actor,
                reason: &format!("approved ({kind})"),
            },
            now,
        )?;
        q.append_event(&action_event(
            &id,
            &actor,
            "approve",
            TaskState::Held,
            to,
            args.note.as_deref(),
        ))?;
        Ok(())
    })?;
    print(ctx, &id, "approve", TaskState::Held, to, next)
}

pub fn retry(ctx: &Context, args: &TaskActionArgs) -> Result<()> {
    let (_config, mut ledger, task) = load(ctx, &args.task)?;
    let from = task.state;
    if !from.can_transition_to(TaskState::Queued) || from.is_in_flight() {
        bail!(
            "{} is {}; retry applies to failed, held, waiting, cancelled or rejected tasks",
            task.spec.id,
            from
        );
    }
    let actor = ctx.operator();
    let now = now_ms();
    let id = task.spec.id.clone();
    ledger.write(|q| {
        q.transition_task(
            &id,
            &Transition {
                from,
                to: TaskState::Queued,
                fields: TransitionFields::default(),
                actor: &actor,
                reason: "operator retry",
            },
            now,
        )?;
        q.reset_task_counters(&id, now)?;
        q.append_event(&action_event(
            &id,
            &actor,
            "retry",
            from,
            TaskState::Queued,
            args.note.as_deref(),
        ))?;
        Ok(())
    })?;
    print(
        ctx,
        &id,
        "retry",
        from,
        TaskState::Queued,
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
    let now = now_ms();
    let id = task.spec.id.clone();
    ledger.write(|q| {
        q.transition_task(
            &id,
            &Transition {
                from,
                to: TaskState::Cancelled,
                fields: TransitionFields::default(),
                actor: &actor,
                reason: "operator cancel",
            },
            now,
        )?;
        q.append_event(&action_event(
            &id,
            &actor,
            "cancel",
            from,
            TaskState::Cancelled,
            args.note.as_deref(),
        ))?;
        Ok(())
    })?;
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
    print(
        ctx,
        &id,
        "cancel",
        from,
        TaskState::Cancelled,
        if live.is_empty() {
            "done"
        } else {
            "its running worker was stopped"
        },
    )
}
