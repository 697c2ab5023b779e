//! From the ranked candidates to the staged proposals. Each candidate, best first, passes the
//! dedup layers, then the fabrication filter, then (with `improve.judge`) the judge; every
//! decision is an `improve_decisions` row (and an event for a skip, a fabrication, a judge
//! failure and the cap). Without a judge the first `improve.top` survivors are staged; with
//! one, at most `improve.judge_top` survivors are judged and those it accepts staged.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::dedup::{Dedup, Layer};
use super::judge::{Judge, JudgeError, Verdict};
use super::names::RepoNames;
use super::rank::Scored;
use super::{ScanContext, proposal_body, to_i64};
use crate::ledger::events::{
    ImproveCandidateSkipped, ImproveFabricated, ImproveJudgeCapped, ImproveJudgeFailed,
};
use crate::ledger::{CandidateRow, Event, Ledger, LedgerError, NewDecision, NewEvent, NewProposal};

/// What a scan decided about a candidate (the `improve_decisions.outcome` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Staged,
    Skipped(Layer),
    Fabricated,
    Declined,
    JudgeFailed,
    BudgetHeld,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Staged => "staged",
            Outcome::Skipped(_) => "skipped",
            Outcome::Fabricated => "fabricated",
            Outcome::Declined => "declined",
            Outcome::JudgeFailed => "judge_failed",
            Outcome::BudgetHeld => "budget_held",
        }
    }
}

/// How many candidates each decision took.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Decisions {
    pub staged: u64,
    pub skipped_identifier: u64,
    pub skipped_semantic: u64,
    pub skipped_temporal: u64,
    pub fabricated: u64,
    pub declined: u64,
    pub judge_failed: u64,
    pub budget_held: u64,
}

impl Decisions {
    fn count(&mut self, outcome: Outcome) {
        let slot = match outcome {
            Outcome::Staged => &mut self.staged,
            Outcome::Skipped(Layer::Identifier) => &mut self.skipped_identifier,
            Outcome::Skipped(Layer::Semantic) => &mut self.skipped_semantic,
            Outcome::Skipped(Layer::Temporal) => &mut self.skipped_temporal,
            Outcome::Fabricated => &mut self.fabricated,
            Outcome::Declined => &mut self.declined,
            Outcome::JudgeFailed => &mut self.judge_failed,
            Outcome::BudgetHeld => &mut self.budget_held,
        };
        *slot += 1;
    }
}

/// What selection did.
#[derive(Debug, Default)]
pub(super) struct Selection {
    pub(super) decisions: Decisions,
    /// The judge's cap refusal, when judging stopped for the day.
    pub(super) capped: Option<String>,
}

/// What selection reads besides the candidates.
pub(super) struct Inputs<'j> {
    pub(super) dedup: Dedup,
    pub(super) names: RepoNames,
    pub(super) judge: Option<Judge<'j>>,
    pub(super) vectors: HashMap<usize, Vec<f32>>,
}

/// One candidate's decision, to record.
struct Decided<'a> {
    candidate: &'a CandidateRow,
    outcome: Outcome,
    detail: String,
    verdict: Option<&'a Verdict>,
    call_id: Option<i64>,
    event: Option<Event>,
}

/// Walks `ranked` (indexes into `pool`) best first and decides each candidate.
pub(super) async fn select(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    scan_id: i64,
    pool: &[CandidateRow],
    ranked: &[Scored],
    mut inputs: Inputs<'_>,
) -> Result<Selection, LedgerError> {
    let improve = ctx.improve;
    let mut selection = Selection::default();
    // Candidates the judge was asked about, or held back from it by the cap.
    let mut put_to_judge = 0usize;
    for scored in ranked {
        if selection.decisions.staged >= improve.top as u64
            || (inputs.judge.is_some() && put_to_judge >= improve.judge_top)
        {
            break;
        }
        let Some(candidate) = pool.get(scored.index) else {
            continue;
        };
        let vector = inputs.vectors.get(&scored.index).map(Vec::as_slice);
        if let Some((layer, detail)) = inputs.dedup.check(candidate, vector) {
            let event = Event::ImproveCandidateSkipped(ImproveCandidateSkipped {
                candidate_id: candidate.id,
                layer: layer.as_str().to_owned(),
                detail: detail.clone(),
            });
            let decided = Decided::new(candidate, Outcome::Skipped(layer), detail).event(event);
            record(ctx, ledger, scan_id, &decided, &mut selection)?;
            continue;
        }
        let unknown = inputs
            .names
            .unknown(&format!("{}\n{}", candidate.title, candidate.summary));
        if !unknown.is_empty() {
            record_fabricated(ctx, ledger, scan_id, candidate, unknown, &mut selection)?;
            continue;
        }
        if inputs.judge.is_none() {
            let id = stage(
                ledger,
                scan_id,
                candidate,
                scored.score,
                None,
                &mut selection,
            )?;
            inputs.dedup.note_staged(id, candidate, vector);
            continue;
        }
        put_to_judge += 1;
        if let Some(cause) = &selection.capped {
            let decided = Decided::new(candidate, Outcome::BudgetHeld, cause.clone());
            record(ctx, ledger, scan_id, &decided, &mut selection)?;
            continue;
        }
        let staged = judge_one(
            ctx,
            ledger,
            scan_id,
            &inputs,
            scored,
            candidate,
            &mut selection,
        )
        .await?;
        if let Some(id) = staged {
            inputs.dedup.note_staged(id, candidate, vector);
        }
    }
    if let (Some(cause), Some(judge)) = (&selection.capped, &inputs.judge) {
        let event = Event::ImproveJudgeCapped(ImproveJudgeCapped {
            model: judge.choice.clone(),
            cause: cause.clone(),
            held: selection.decisions.budget_held,
        });
        append(ctx, ledger, event)?;
    }
    Ok(selection)
}

/// Asks the judge about `candidate` and records what it said; the proposal's id when it was
/// staged.
async fn judge_one(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    scan_id: i64,
    inputs: &Inputs<'_>,
    scored: &Scored,
    candidate: &CandidateRow,
    selection: &mut Selection,
) -> Result<Option<i64>, LedgerError> {
    let improve = ctx.improve;
    let Some(judge) = inputs.judge.as_ref() else {
        return Ok(None);
    };
    match judge.judge(ledger, candidate).await {
        Ok((verdict, call_id)) => {
            let unknown = inputs.names.unknown(&verdict.rationale);
            if !unknown.is_empty() {
                record_fabricated(ctx, ledger, scan_id, candidate, unknown, selection)?;
            } else if verdict.accepts(improve) {
                let id = stage(
                    ledger,
                    scan_id,
                    candidate,
                    scored.score,
                    Some((&verdict, call_id)),
                    selection,
                )?;
                return Ok(Some(id));
            } else {
                let decided = Decided {
                    verdict: Some(&verdict),
                    call_id: Some(call_id),
                    ..Decided::new(candidate, Outcome::Declined, verdict.why_declined(improve))
                };
                record(ctx, ledger, scan_id, &decided, selection)?;
            }
        }
        Err(JudgeError::Ledger(e)) => return Err(e),
        Err(JudgeError::Capped(e)) => {
            let cause = e.to_string();
            selection.capped = Some(cause.clone());
            let decided = Decided::new(candidate, Outcome::BudgetHeld, cause);
            record(ctx, ledger, scan_id, &decided, selection)?;
        }
        Err(e) => {
            let cause = e.to_string();
            let event = Event::ImproveJudgeFailed(ImproveJudgeFailed {
                candidate_id: candidate.id,
                model: judge.choice.clone(),
                cause: cause.clone(),
                call_id: e.call_id(),
            });
            let decided = Decided {
                call_id: e.call_id(),
                ..Decided::new(candidate, Outcome::JudgeFailed, cause).event(event)
            };
            record(ctx, ledger, scan_id, &decided, selection)?;
        }
    }
    Ok(None)
}

impl<'a> Decided<'a> {
    fn new(candidate: &'a CandidateRow, outcome: Outcome, detail: String) -> Self {
        Self {
            candidate,
            outcome,
            detail,
            verdict: None,
            call_id: None,
            event: None,
        }
    }

    fn event(mut self, event: Event) -> Self {
        self.event = Some(event);
        self
    }
}

fn record_fabricated(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    scan_id: i64,
    candidate: &CandidateRow,
    names: Vec<String>,
    selection: &mut Selection,
) -> Result<(), LedgerError> {
    let detail = format!("names what the repository lacks: {}", names.join(", "));
    let event = Event::ImproveFabricated(ImproveFabricated {
        candidate_id: candidate.id,
        names,
    });
    let decided = Decided::new(candidate, Outcome::Fabricated, detail).event(event);
    record(ctx, ledger, scan_id, &decided, selection)
}

/// Writes a decision (and its event) in one transaction.
fn record(
    ctx: &ScanContext<'_>,
    ledger: &mut Ledger,
    scan_id: i64,
    decided: &Decided<'_>,
    selection: &mut Selection,
) -> Result<(), LedgerError> {
    let at_ms = crate::clock::now_ms();
    let verdict = decided.verdict.and_then(|v| serde_json::to_string(v).ok());
    let layer = match decided.outcome {
        Outcome::Skipped(layer) => Some(layer.as_str()),
        _ => None,
    };
    ledger.write(|q| {
        q.insert_improve_decision(&NewDecision {
            scan_id,
            candidate_id: decided.candidate.id,
            outcome: decided.outcome.as_str(),
            layer,
            detail: &decided.detail,
            verdict: verdict.as_deref(),
            call_id: decided.call_id,
            at_ms,
        })?;
        if let Some(event) = &decided.event {
            q.append_event(&NewEvent {
                at_ms,
                task_id: None,
                run_id: None,
                actor: ctx.actor,
                event: event.clone(),
            })?;
        }
        Ok(())
    })?;
    selection.decisions.count(decided.outcome);
    Ok(())
}

fn append(ctx: &ScanContext<'_>, ledger: &mut Ledger, event: Event) -> Result<(), LedgerError> {
    let at_ms = crate::clock::now_ms();
    ledger.write(|q| {
        q.append_event(&NewEvent {
            at_ms,
            task_id: None,
            run_id: None,
            actor: ctx.actor,
            event,
        })?;
        Ok(())
    })
}

/// Stages `candidate` as the scan's next proposal (tier from the verdict, else 2); returns
/// the proposal's id.
fn stage(
    ledger: &mut Ledger,
    scan_id: i64,
    candidate: &CandidateRow,
    score: f64,
    judged: Option<(&Verdict, i64)>,
    selection: &mut Selection,
) -> Result<i64, LedgerError> {
    let mut body = proposal_body(candidate);
    if let Some((v, _)) = judged {
        let _ = write!(
            body,
            "\n\nJudge: relevance {}/5, concreteness {}/5. {}",
            v.relevance, v.concreteness, v.rationale
        );
    }
    let at_ms = crate::clock::now_ms();
    let verdict = judged.and_then(|(v, _)| serde_json::to_string(v).ok());
    let rank = to_i64(selection.decisions.staged + 1);
    let id = ledger.write(|q| {
        let id = q.insert_improve_proposal(&NewProposal {
            scan_id,
            candidate_id: candidate.id,
            rank,
            score,
            tier: judged.map_or(2, |(v, _)| v.tier),
            title: &candidate.title,
            body: &body,
            at_ms,
        })?;
        q.insert_improve_decision(&NewDecision {
            scan_id,
            candidate_id: candidate.id,
            outcome: Outcome::Staged.as_str(),
            layer: None,
            detail: "",
            verdict: verdict.as_deref(),
            call_id: judged.map(|(_, id)| id),
            at_ms,
        })?;
        Ok(id)
    })?;
    selection.decisions.count(Outcome::Staged);
    Ok(id)
}
