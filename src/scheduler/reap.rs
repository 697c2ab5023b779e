//! The reaper, at the head of every tick: runs whose supervisor is gone or whose lease expired
//! are ended (their whole process group, if any of it lives), recorded as `reaped` and charged
//! no less than they may have spent (see `reaped_charge`), their reservation released, and
//! their task requeued or failed. A run whose supervisor lives and
//! whose lease is current is never touched. Tasks left in flight with no run (their tick died
//! between runs) are recovered the same way.
//!
//! On a ledger shared by several hosts, a host reaps only its own runs and tasks by their
//! processes: another host's pids mean nothing here, and its task between runs (verifying,
//! say) is that host's business. Another host's runs and tasks are taken back only once that
//! host is no longer live (no heartbeat within the live window and no lease running), and
//! then without touching any process: they ran on another machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::clock::now_ms;
use crate::config::{LoadedConfig, WorkerKind};
use crate::ledger::events::{RunReaped, RunSummary};
use crate::ledger::{
    Event, FailureClass, Ledger, LedgerError, NewEvent, RunEnd, RunRow, TaskState, Transition,
    TransitionFields,
};
use crate::money::MicroUsd;
use crate::pipeline::worktree;
use crate::process;
use crate::worker::{self, Accumulator, Normalized, Tokens};

/// One reaped run or recovered task.
#[derive(Debug, Clone, Serialize)]
pub struct Reaped {
    pub run_id: Option<String>,
    pub task_id: Option<String>,
    pub reason: String,
    /// The recorded process group was alive and was ended.
    pub group_ended: bool,
    /// What the task became.
    pub task_state: Option<TaskState>,
}

/// True when a process with this pid exists (EPERM means it exists but is not ours).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}

/// The hosts of a shared ledger, as the reaper sees them: this one and those alive now.
struct Fleet {
    me: String,
    live: std::collections::HashSet<String>,
}

impl Fleet {
    fn read(ledger: &Ledger, config: &LoadedConfig) -> Result<Self, LedgerError> {
        Ok(Self {
            me: config.config.host.resolved_name(),
            live: crate::host::live_hosts(ledger)?
                .into_iter()
                .map(|h| h.name)
                .collect(),
        })
    }

    /// The other host `host` names, if it is one (`None`: runs before hosts were recorded,
    /// which are this host's as they always were).
    fn other<'a>(&self, host: Option<&'a str>) -> Option<&'a str> {
        host.filter(|h| *h != self.me)
    }
}

/// Why another host's run may be taken back: only once its host stopped (no heartbeat within
/// the live window, no lease running) and its own lease expired.
fn other_host_orphan_reason(run: &RunRow, host: &str, now: i64, fleet: &Fleet) -> Option<String> {
    if fleet.live.contains(host) {
        return None;
    }
    match run.lease_expires_at_ms {
        Some(until) if until >= now => None,
        _ => Some(format!(
            "its host {host} stopped heartbeating and its lease expired"
        )),
    }
}

fn orphan_reason(run: &RunRow, now: i64, busy: &[String], fleet: &Fleet) -> Option<String> {
    if let Some(host) = fleet.other(run.host.as_deref()) {
        return other_host_orphan_reason(run, host, now, fleet);
    }
    let me = std::process::id();
    if run.supervisor_pid == Some(me) {
        // Ours: live while a job of ours works on its task. A job that ended without closing
        // its run (the ledger failed under it) left it behind; its worker has already exited.
        return match &run.task_id {
            Some(task) if !busy.contains(task) => {
                Some("the job that ran it ended without recording its end".to_owned())
            }
            _ => None,
        };
    }
    let supervisor_alive = run.supervisor_pid.is_some_and(pid_alive);
    if !supervisor_alive {
        return Some(match run.supervisor_pid {
            Some(pid) => format!("its supervisor (pid {pid}) is gone"),
            None => "it has no recorded supervisor".to_owned(),
        });
    }
    match run.lease_expires_at_ms {
        Some(until) if until < now => Some(format!(
            "its lease expired at {}",
            crate::clock::rfc3339(until)
        )),
        _ => None,
    }
}

/// Where a reaped run's charge came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CostSource {
    /// The running cost last published with the lease.
    Published,
    /// What the run's flushed raw.jsonl adds up to (more than it had published).
    RunArtifacts,
    /// No cost was known: the whole reservation.
    Reservation,
}

impl CostSource {
    /// As recorded in the run's `run_finished` event.
    fn as_str(self) -> &'static str {
        match self {
            CostSource::Published => "published",
            CostSource::RunArtifacts => "run_artifacts",
            CostSource::Reservation => "reservation",
        }
    }
}

/// A reaped run's charge, and the tokens its output reported.
struct Charge {
    /// Its last known running cost (0 when `source` is `Reservation`: then the reservation,
    /// read in the write that releases it, is charged).
    microusd: MicroUsd,
    source: CostSource,
    tokens: Tokens,
}

/// What a reaped run is charged: never less than it may have spent. Its running cost as last
/// published with its lease (every 10 s) or as the output it printed adds up to (its raw.jsonl
/// is flushed as output arrives), whichever is more; when neither knows a cost (nothing
/// reported yet, a codex turn still open, no rate card), its whole reservation, which bounds
/// what it could spend. Read before the ledger write (the file may be large).
fn reaped_charge(run: &RunRow, config: &LoadedConfig) -> Charge {
    let printed = printed_usage(run);
    let card = run.model.as_ref().and_then(|m| config.config.rates.get(m));
    let printed_cost = printed.as_ref().and_then(|acc| acc.cost(card)).unwrap_or(0);
    let tokens = printed.map(|acc| acc.running_tokens()).unwrap_or_default();
    let (microusd, source) = if printed_cost > run.cost_microusd {
        (printed_cost, CostSource::RunArtifacts)
    } else if run.cost_microusd > 0 {
        (run.cost_microusd, CostSource::Published)
    } else {
        (0, CostSource::Reservation)
    };
    Charge {
        microusd,
        source,
        tokens,
    }
}

/// The run's raw.jsonl read back through its worker's adapter, as the runner accounted it.
fn printed_usage(run: &RunRow) -> Option<Accumulator> {
    use std::io::BufRead;
    let kind = WorkerKind::from_stored(&run.worker_kind)?;
    let raw = std::fs::File::open(Path::new(run.run_dir.as_deref()?).join("raw.jsonl")).ok()?;
    let adapter = worker::adapter(kind);
    let mut acc = Accumulator::default();
    for line in std::io::BufReader::new(raw)
        .split(b'\n')
        .map_while(Result::ok)
    {
        if let Normalized::Events(events) = adapter.normalize(&line) {
            for event in &events {
                acc.observe(event);
            }
        }
    }
    Some(acc)
}

/// Ends a reaped run's transcript as the runner ends a finished one, so `oxi logs` and
/// `oxi show` say how it ended. Best effort: the ledger holds the record.
fn close_transcript(run: &RunRow, charged: MicroUsd, detail: &str) {
    use std::io::Write;
    let Some(dir) = run.run_dir.as_deref() else {
        return;
    };
    let path = Path::new(dir).join("transcript.md");
    // Appended only to a transcript the run created, never a new file.
    if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(&path) {
        let _ = writeln!(
            file,
            "■ reaped · {} · exit -\n  {detail}",
            crate::money::format_usd(charged)
        );
    }
}

/// Requeues (attempts left) or fails (attempts exhausted) an interrupted in-flight task.
fn recover_task(
    ledger: &mut Ledger,
    config: &LoadedConfig,
    task_id: &str,
    why: &str,
) -> Result<Option<TaskState>, LedgerError> {
    let Some(task) = ledger.read().task(task_id)? else {
        return Ok(None);
    };
    if !task.state.is_in_flight() || task.state == TaskState::DeliverPending {
        return Ok(None);
    }
    let caps = &config.config.caps;
    let exhausted =
        task.attempts >= caps.max_attempts || task.worker_calls >= caps.max_worker_calls;
    let (to, fields) = if exhausted {
        (
            TaskState::Failed,
            TransitionFields {
                failure_class: Some(FailureClass::AttemptsExhausted),
                ..TransitionFields::default()
            },
        )
    } else {
        (
            TaskState::Queued,
            TransitionFields {
                failure_class: Some(FailureClass::Reaped),
                ..TransitionFields::default()
            },
        )
    };
    let failure = format!(
        "The previous attempt was interrupted ({why}); any work it made is committed on this branch."
    );
    let now = now_ms();
    ledger.write(|q| {
        q.transition_task(
            task_id,
            &Transition {
                from: task.state,
                to,
                fields,
                actor: "oxi",
                reason: why,
            },
            now,
        )?;
        q.set_task_failure(task_id, Some(&failure))
    })?;
    Ok(Some(to))
}

/// Commits whatever an interrupted attempt left in its worktree onto the task branch and
/// removes the worktree.
fn salvage(repo: &Path, worktree: Option<&str>) {
    if let Some(path) = worktree {
        let path = PathBuf::from(path);
        if path.exists()
            && let Err(e) = worktree::retire(repo, &path, "oxi: salvage work of an interrupted run")
        {
            tracing::warn!("could not retire worktree {}: {e}", path.display());
        }
    }
}

/// Reaps orphaned runs and recovers stranded tasks. `busy` are tasks this process is working
/// on between runs (a long-lived dispatcher's jobs that are verifying, say): not stranded.
pub async fn reap(
    ledger: &mut Ledger,
    config: &LoadedConfig,
    busy: &[String],
) -> Result<Vec<Reaped>, LedgerError> {
    let grace = config.config.caps.kill_grace.as_duration();
    let mut reaped = Vec::new();
    let now = now_ms();
    let fleet = Fleet::read(ledger, config)?;
    for run in ledger.read().running_runs()? {
        let Some(reason) = orphan_reason(&run, now, busy, &fleet) else {
            continue;
        };
        // Another host's processes, worktree and temporary files are on that host.
        let ours = fleet.other(run.host.as_deref()).is_none();
        let mut group_ended = false;
        if ours
            && let Some(pgid) = run.pgid
            && process::group_alive(pgid)
        {
            process::terminate_group(pgid, grace).await;
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while process::group_alive(pgid) && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            group_ended = true;
        }
        let detail = format!("reaped: {reason}");
        let charge = reaped_charge(&run, config);
        let ended = now_ms();
        let charged = ledger.write(|q| {
            let charged = match charge.source {
                CostSource::Reservation => q
                    .spend_for_run(&run.id)?
                    .filter(|spend| spend.status == "reserved")
                    .map_or(0, |spend| spend.reserved_microusd),
                CostSource::Published | CostSource::RunArtifacts => charge.microusd,
            };
            let finished = q.finish_run(
                &run.id,
                &RunEnd {
                    ended_at_ms: ended,
                    classification: "reaped",
                    cost_microusd: charged,
                    input_tokens: charge.tokens.input,
                    cached_input_tokens: charge.tokens.cached_input,
                    output_tokens: charge.tokens.output,
                    reasoning_tokens: charge.tokens.reasoning,
                    detail: Some(&detail),
                    release: true,
                    summary: RunSummary::Reaped {
                        group_ended,
                        cost_source: charge.source.as_str().to_owned(),
                    },
                    ..RunEnd::default()
                },
            )?;
            if finished {
                q.append_event(&NewEvent {
                    at_ms: ended,
                    task_id: run.task_id.as_deref(),
                    run_id: Some(&run.id),
                    actor: "oxi",
                    event: Event::RunReaped(RunReaped {
                        reason: reason.to_string(),
                        pgid: run.pgid,
                        group_ended,
                    }),
                })?;
            }
            Ok(finished.then_some(charged))
        })?;
        if let Some(charged) = charged {
            close_transcript(&run, charged, &detail);
        }
        if ours {
            salvage(&config.repo_root, run.worktree.as_deref());
            crate::confine::RunTemp::remove_leftovers(&run.id);
        }
        let task_state = match &run.task_id {
            Some(task) => recover_task(ledger, config, task, &detail)?,
            None => None,
        };
        reaped.push(Reaped {
            run_id: Some(run.id.clone()),
            task_id: run.task_id.clone(),
            reason: detail,
            group_ended,
            task_state,
        });
    }

    // Tasks in flight with no live run: their tick died between runs (verifying, say). Read
    // in this order so that a claim another host commits meanwhile (its task's transition and
    // its run are one write) shows its run and its host: the task is never seen in flight
    // without them.
    let tasks = ledger.read().tasks()?;
    let holders = ledger.read().task_hosts()?;
    let live: std::collections::HashSet<String> = ledger
        .read()
        .running_runs()?
        .into_iter()
        .filter_map(|r| r.task_id)
        .collect();
    let stranded: Vec<_> = tasks
        .into_iter()
        .filter(|t| {
            matches!(
                t.state,
                TaskState::Dispatched | TaskState::Verifying | TaskState::Reviewing
            ) && !live.contains(&t.spec.id)
                && !busy.contains(&t.spec.id)
                // Another live host's task between runs is that host's to finish.
                && fleet
                    .other(holders.get(&t.spec.id).map(String::as_str))
                    .is_none_or(|host| !fleet.live.contains(host))
        })
        .collect();
    for task in stranded {
        // Only a worktree of this host's: another's is on that host.
        let last_worktree = ledger
            .read()
            .runs_for_task(&task.spec.id)?
            .into_iter()
            .rev()
            .filter(|r| fleet.other(r.host.as_deref()).is_none())
            .find_map(|r| r.worktree);
        salvage(&config.repo_root, last_worktree.as_deref());
        let why = format!("the tick that was {} it stopped", task.state);
        let task_state = recover_task(ledger, config, &task.spec.id, &why)?;
        reaped.push(Reaped {
            run_id: None,
            task_id: Some(task.spec.id.clone()),
            reason: why,
            group_ended: false,
            task_state,
        });
    }
    Ok(reaped)
}
