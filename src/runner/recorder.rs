//! The line sink of a run: every stdout line is kept (masked, capped), normalized into
//! canonical events, accounted, rendered into the transcript, and checked against the per-job
//! cap and the output cap; the lease is renewed while output flows.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::budget::Caps;
use crate::clock::now_ms;
use crate::ledger::Ledger;
use crate::money::MicroUsd;
use crate::process::{Control, LineSink, StopReason, Stream};
use crate::redact::Redactor;
use crate::worker::RateCard;
use crate::worker::{Accumulator, Adapter, Event, Normalized, clip_bytes};

use super::artifacts::CappedFile;
use super::transcript;

/// How many raw lines of each kind of trouble are quoted in meta.json.
const SAMPLES: usize = 5;
/// Lease renewals (and running-cost publication) at most this often.
const RENEW_EVERY: Duration = Duration::from_secs(10);

pub struct Files {
    pub raw: CappedFile,
    pub stderr: CappedFile,
    pub events: CappedFile,
    pub transcript: CappedFile,
}

pub struct Recorder<'a> {
    pub adapter: &'static dyn Adapter,
    pub redactor: &'a Redactor,
    pub ledger: &'a mut Ledger,
    pub run_id: &'a str,
    pub files: Files,
    /// Where the transcript streams while the run goes (stderr for `oxi run`).
    pub live: Option<Box<dyn Write + Send>>,
    pub card: Option<RateCard>,
    /// The per-job cap and the day's and month's caps the run's reservation must stay under.
    pub caps: Caps,
    pub output_cap: u64,
    pub lease: Duration,
    pub acc: Accumulator,
    pub output_seen: u64,
    pub lines_truncated: u64,
    pub stderr_tail: VecDeque<String>,
    pub parse_failure_samples: Vec<String>,
    pub ledger_errors: Vec<String>,
    /// The running cost last published to the ledger.
    pub published_cost: MicroUsd,
    /// The run's reservation as last read or raised (`None`: not read yet, or the run holds
    /// none — then only the job cap applies).
    reserved: Option<MicroUsd>,
    /// Why the run was stopped for money other than the job cap (the day's or month's cap let
    /// it hold less than its cost), for the run's detail.
    pub budget_stop: Option<String>,
    started: Instant,
    last_renew: Instant,
    seq: u64,
}

/// What a recorder is given for one run, besides the ledger it writes to.
pub struct Setup<'a> {
    pub adapter: &'static dyn Adapter,
    pub redactor: &'a Redactor,
    pub run_id: &'a str,
    pub files: Files,
    /// Where the transcript streams while the run goes (stderr for `oxi run`).
    pub live: Option<Box<dyn Write + Send>>,
    pub card: Option<RateCard>,
    pub caps: Caps,
    pub output_cap: u64,
    pub lease: Duration,
}

impl<'a> Recorder<'a> {
    pub fn new(setup: Setup<'a>, ledger: &'a mut Ledger) -> Self {
        let Setup {
            adapter,
            redactor,
            run_id,
            files,
            live,
            card,
            caps,
            output_cap,
            lease,
        } = setup;
        Self {
            adapter,
            redactor,
            ledger,
            run_id,
            files,
            live,
            card,
            caps,
            output_cap,
            lease,
            acc: Accumulator::default(),
            output_seen: 0,
            lines_truncated: 0,
            stderr_tail: VecDeque::new(),
            parse_failure_samples: Vec::new(),
            ledger_errors: Vec::new(),
            published_cost: 0,
            reserved: None,
            budget_stop: None,
            started: Instant::now(),
            last_renew: Instant::now(),
            seq: 0,
        }
    }

    fn lease_until(&self) -> i64 {
        now_ms() + self.lease.as_millis() as i64
    }

    /// The running cost so far (0 when unknown: no CLI figure and no rate card).
    pub fn running_cost(&self) -> MicroUsd {
        self.acc.cost(self.card.as_ref()).unwrap_or(0)
    }

    fn transcript_line(&mut self, text: &str) {
        if self.files.transcript.is_full() && self.live.is_none() {
            return;
        }
        let text = self.redactor.redact(text);
        self.files.transcript.line(text.as_bytes());
        if let Some(live) = &mut self.live {
            // A closed terminal must not stop the run; the file has the transcript.
            if writeln!(live, "{text}").is_err() {
                self.live = None;
            }
        }
    }

    /// Writes one canonical record (`{"seq", "ms", ...}`) to events.jsonl.
    fn record(&mut self, mut value: serde_json::Value) {
        self.seq += 1;
        if self.files.events.is_full() {
            return;
        }
        if let Some(map) = value.as_object_mut() {
            map.insert("seq".into(), self.seq.into());
            map.insert(
                "ms".into(),
                (self.started.elapsed().as_millis() as u64).into(),
            );
        }
        self.redactor.redact_json(&mut value);
        let line = value.to_string();
        self.files.events.line(line.as_bytes());
    }

    fn event(&mut self, event: Event) {
        // Past the caps of both files (a flood), only the accounting is left to do.
        if (!self.files.transcript.is_full() || self.live.is_some())
            && let Some(text) = transcript::render(&event)
        {
            self.transcript_line(&text);
        }
        if self.files.events.is_full() {
            self.seq += 1;
        } else {
            match serde_json::to_value(&event) {
                Ok(value) => self.record(value),
                Err(e) => self
                    .ledger_errors
                    .push(format!("event not serializable: {e}")),
            }
        }
        self.acc.observe(&event);
    }

    fn parse_failure(&mut self, line: &[u8], reason: &str) {
        self.acc.parse_failures += 1;
        let raw = self.redactor.redact_bytes(line);
        let quoted = clip_bytes(&raw, 2048);
        if self.parse_failure_samples.len() < SAMPLES {
            self.parse_failure_samples.push(quoted.clone());
        }
        self.record(serde_json::json!({
            "kind": "parse_failure",
            "reason": reason,
            "raw": quoted,
        }));
    }

    fn stdout_line(&mut self, line: &[u8], truncated: bool) {
        if truncated {
            let masked = self.redactor.redact_bytes(line);
            // The kept head is not valid JSON; mark it so raw.jsonl stays one record per line.
            let marker = serde_json::json!({
                "type": "oxi.truncated_line",
                "kept_bytes": line.len(),
                "head": clip_bytes(&masked, 1024),
            });
            self.files.raw.line(marker.to_string().as_bytes());
            self.parse_failure(line, "line longer than the per-line cap; truncated");
            return;
        }
        if self.files.raw.is_full() {
            // Counted as cut without masking bytes nobody will read.
            self.files.raw.line(line);
        } else {
            let masked = self.redactor.redact_bytes(line);
            self.files.raw.line(&masked);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match self.adapter.normalize(line) {
            Normalized::Events(events) => {
                for event in events {
                    self.event(event);
                }
            }
            Normalized::ParseFailure { reason } => self.parse_failure(line, &reason),
        }
    }

    fn stderr_line(&mut self, line: &[u8]) {
        let masked = self.redactor.redact_bytes(line);
        self.files.stderr.line(&masked);
        let text = String::from_utf8_lossy(&masked).trim().to_owned();
        if !text.is_empty() {
            if self.stderr_tail.len() == SAMPLES {
                self.stderr_tail.pop_front();
            }
            self.stderr_tail.push_back(clip_bytes(text.as_bytes(), 512));
        }
    }

    /// The run costs more than it holds: the caps left less than the job cap when it started.
    /// It is stopped at once, without asking the ledger again: a write here could wait while
    /// another process holds the ledger, and the worker would go on spending meanwhile.
    fn past_its_reservation(&mut self, cost: MicroUsd, held: MicroUsd) -> Control {
        self.budget_stop = Some(format!(
            "running cost {} passed the {} this run could hold under {} / {} when it started; stopped",
            crate::money::format_usd(cost),
            crate::money::format_usd(held),
            self.caps.daily_limit,
            crate::budget::Limit::MonthlyUsd
        ));
        Control::Stop(StopReason::Budget)
    }

    fn renew(&mut self) {
        let cost = self.running_cost();
        let until = self.lease_until();
        let run_id = self.run_id;
        match self.ledger.write(|q| q.renew_run(run_id, until, cost)) {
            Ok(()) => self.published_cost = cost,
            Err(e) => {
                if self.ledger_errors.len() < SAMPLES {
                    self.ledger_errors.push(format!("lease renewal: {e}"));
                }
            }
        }
        self.last_renew = Instant::now();
    }

    /// Flushes every file (as output arrives, at most every `process::PERSIST_EVERY`, and when
    /// the process has ended).
    pub fn flush(&mut self) {
        self.files.raw.flush();
        self.files.stderr.flush();
        self.files.events.flush();
        self.files.transcript.flush();
        if let Some(live) = &mut self.live {
            let _ = live.flush();
        }
    }

    /// Bytes of output not kept in raw.jsonl / stderr.log.
    pub fn bytes_cut(&self) -> u64 {
        self.files.raw.cut() + self.files.stderr.cut()
    }

    /// Artifact write failures (e.g. a full disk), for meta.json and the run's detail.
    pub fn artifact_errors(&self) -> Vec<String> {
        [
            &self.files.raw,
            &self.files.stderr,
            &self.files.events,
            &self.files.transcript,
        ]
        .iter()
        .filter_map(|f| f.error().map(str::to_owned))
        .collect()
    }
}

/// Raises run `run_id`'s reservation to the job cap, or as far as the day's and month's caps
/// leave room, in the caller's transaction (so the check and the raise are one step, as at
/// admission). Returns what the run holds now; `None` when it holds no reservation (settled,
/// released, or never made).
fn raise_within_caps(
    q: &crate::ledger::Queries<'_>,
    run_id: &str,
    caps: &Caps,
) -> Result<Option<MicroUsd>, crate::ledger::LedgerError> {
    let Some((day, month, reserved, published)) = q.live_reservation(run_id)? else {
        return Ok(None);
    };
    let totals = q.admission_totals(&day, &month)?;
    // What the run holds now counts once: max(reserved, published cost).
    let holds = reserved.max(published);
    // Saturating: a hand-edited ledger must not be able to overflow the arithmetic.
    let room = caps
        .daily
        .saturating_sub(totals.day_spent)
        .saturating_sub(totals.day_reserved)
        .min(
            caps.monthly
                .saturating_sub(totals.month_spent)
                .saturating_sub(totals.month_reserved),
        )
        .max(0);
    let to = holds.saturating_add(room).min(caps.job).max(holds);
    if to > reserved {
        q.raise_reservation(run_id, to)?;
    }
    Ok(Some(to))
}

impl LineSink for Recorder<'_> {
    fn spawned(&mut self, pid: u32) -> Result<(), String> {
        let until = self.lease_until();
        let (run_id, caps) = (self.run_id, self.caps);
        // In the write that records the pid (before the first byte is read): the reservation
        // is raised from the estimate to the job cap, or as far as the caps leave room, so the
        // output path needs no ledger write to keep money inside the caps.
        let held = self
            .ledger
            .write(|q| {
                q.record_run_process(run_id, pid, until)?;
                raise_within_caps(q, run_id, &caps)
            })
            .map_err(|e| e.to_string())?;
        self.reserved = held;
        self.last_renew = Instant::now();
        Ok(())
    }

    fn line(&mut self, stream: Stream, line: &[u8], truncated: bool) -> Control {
        self.output_seen += line.len() as u64 + 1;
        if truncated {
            self.lines_truncated += 1;
        }
        match stream {
            Stream::Stdout => self.stdout_line(line, truncated),
            Stream::Stderr => self.stderr_line(line),
        }
        if self.output_seen > self.output_cap {
            return Control::Stop(StopReason::OutputCapped);
        }
        // Once the CLI has printed its result the run is over; its final figure is recorded,
        // not acted on.
        if self.acc.result.is_none() {
            let cost = self.running_cost();
            if cost > self.caps.job {
                return Control::Stop(StopReason::Budget);
            }
            if let Some(held) = self.reserved.filter(|held| cost > *held) {
                return self.past_its_reservation(cost, held);
            }
        }
        Control::Continue
    }

    fn heartbeat(&mut self) {
        if self.last_renew.elapsed() >= RENEW_EVERY {
            self.renew();
        }
    }

    fn persist(&mut self) {
        // What was read reaches the files (and the terminal) within `PERSIST_EVERY`: a run
        // whose oxi is killed keeps its artifacts, and the reaper can price what it printed.
        Recorder::flush(self);
    }
}
