//! Shadow pairs on Postgres: the twins of `ledger/shadow.rs` (a pair's row, what shadow runs
//! spent today, the reads `oxi report` and `oxi show` make).

use super::{Pg, execute, query, query_one};
use crate::ledger::events::ShadowObserved;
use crate::ledger::shadow::{files_json, int, side};
use crate::ledger::{LedgerError, Result, ShadowPairRow};
use crate::money::MicroUsd;

/// Stores the pair's row (its event is the caller's).
pub(in crate::ledger) fn insert_shadow_pair(
    pg: Pg<'_>,
    task_id: &str,
    attempt: u32,
    pair: &ShadowObserved,
    at_ms: i64,
) -> Result<()> {
    let (p, s) = (&pair.primary, &pair.shadow);
    execute(
        pg,
        "INSERT INTO shadow_pairs (task_id, attempt, rule, primary_run_id, shadow_run_id,
             primary_worker, primary_model, shadow_worker, shadow_model, primary_outcome,
             shadow_outcome, primary_green, shadow_green, primary_files, shadow_files,
             overlap_files, primary_lines, shadow_lines, primary_tokens, shadow_tokens,
             primary_cost_microusd, shadow_cost_microusd, primary_ms, shadow_ms,
             shape_match, at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
             $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)",
        &[
            &task_id,
            &i64::from(attempt),
            &pair.rule,
            &p.run_id,
            &s.run_id,
            &p.worker,
            &p.model,
            &s.worker,
            &s.model,
            &p.outcome,
            &s.outcome,
            &p.green,
            &s.green,
            &files_json(&p.files),
            &files_json(&s.files),
            &int(pair.overlap.len() as u64),
            &int(p.lines_changed),
            &int(s.lines_changed),
            &int(p.tokens),
            &int(s.tokens),
            &p.cost_microusd,
            &s.cost_microusd,
            &int(p.duration_ms),
            &int(s.duration_ms),
            &pair.shape_match,
            &at_ms,
        ],
    )?;
    Ok(())
}

/// What runs in `role` spent and hold on `day`.
pub(in crate::ledger) fn role_spend_on(pg: Pg<'_>, day: &str, role: &str) -> Result<MicroUsd> {
    Ok(query_one(
        pg,
        "SELECT COALESCE(SUM(s.actual_microusd + CASE WHEN s.status = 'reserved'
                THEN GREATEST(s.reserved_microusd - s.actual_microusd, 0) ELSE 0 END), 0)::BIGINT
         FROM spend s JOIN runs r ON r.id = s.run_id
         WHERE s.day = $1 AND r.role = $2",
        &[&day, &role],
    )?
    .try_get(0)?)
}

/// The statuses of a run's tier 0 and 1 acceptance commands, in the order they were recorded.
pub(in crate::ledger) fn run_verify_statuses(pg: Pg<'_>, run_id: &str) -> Result<Vec<String>> {
    Ok(query(
        pg,
        "SELECT status FROM verify_results WHERE run_id = $1 AND tier IN ('tier0', 'tier1')
         ORDER BY id",
        &[&run_id],
    )?
    .iter()
    .map(|r| r.try_get(0))
    .collect::<Result<_, _>>()?)
}

/// Pairs recorded since `since_ms`, newest first.
pub(in crate::ledger) fn shadow_pairs(pg: Pg<'_>, since_ms: i64) -> Result<Vec<ShadowPairRow>> {
    query(
        pg,
        "SELECT task_id, attempt, rule, primary_run_id, shadow_run_id, primary_worker,
                primary_model, shadow_worker, shadow_model, primary_outcome, shadow_outcome,
                primary_green, shadow_green, primary_files, shadow_files, primary_lines,
                shadow_lines, primary_tokens, shadow_tokens, primary_cost_microusd,
                shadow_cost_microusd, primary_ms, shadow_ms, shape_match, at_ms
         FROM shadow_pairs WHERE at_ms >= $1 ORDER BY id DESC",
        &[&since_ms],
    )?
    .iter()
    .map(|r| {
        let primary = side(
            r.try_get(3)?,
            r.try_get(5)?,
            r.try_get(6)?,
            r.try_get(9)?,
            r.try_get(11)?,
            r.try_get(13)?,
            (
                r.try_get(15)?,
                r.try_get(17)?,
                r.try_get(19)?,
                r.try_get(21)?,
            ),
        );
        let shadow = side(
            r.try_get(4)?,
            r.try_get(7)?,
            r.try_get(8)?,
            r.try_get(10)?,
            r.try_get(12)?,
            r.try_get(14)?,
            (
                r.try_get(16)?,
                r.try_get(18)?,
                r.try_get(20)?,
                r.try_get(22)?,
            ),
        );
        let overlap = primary
            .files
            .iter()
            .filter(|f| shadow.files.contains(f))
            .cloned()
            .collect();
        let attempt: i64 = r.try_get(1)?;
        Ok(ShadowPairRow {
            task_id: r.try_get(0)?,
            attempt: u32::try_from(attempt).map_err(|_| {
                LedgerError::Corrupt(format!("shadow_pairs.attempt out of range: {attempt}"))
            })?,
            at_ms: r.try_get(24)?,
            pair: ShadowObserved {
                rule: r.try_get(2)?,
                cost_delta_microusd: shadow.cost_microusd - primary.cost_microusd,
                duration_delta_ms: int(shadow.duration_ms) - int(primary.duration_ms),
                primary,
                shadow,
                overlap,
                shape_match: r.try_get(23)?,
            },
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use crate::ledger::events::{ShadowObserved, ShadowSide};
    use crate::ledger::{NewRun, RunEnd, TaskSpec, TaskState, VerifyRecord};

    fn run<'a>(id: &'a str, role: &'a str) -> NewRun<'a> {
        NewRun {
            id,
            task_id: Some("T1-1"),
            attempt: 1,
            role,
            worker: "codex",
            worker_kind: "codex",
            model: Some("gpt-5"),
            run_dir: "/tmp/runs/r",
            worktree: None,
            branch: None,
            started_at_ms: 1_000,
            reserve_microusd: 1_000,
            day: "2026-11-30",
            month: "2026-11",
            actor: "oxi",
            supervisor_pid: 1,
        }
    }

    fn side(run_id: Option<&str>, files: &[&str], cost: i64, ms: u64) -> ShadowSide {
        ShadowSide {
            run_id: run_id.map(str::to_owned),
            worker: "codex".into(),
            model: None,
            outcome: "success".into(),
            green: run_id.is_some(),
            files: files.iter().map(|f| (*f).to_owned()).collect(),
            lines_changed: 12,
            tokens: 3_400,
            cost_microusd: cost,
            duration_ms: ms,
        }
    }

    #[test]
    fn shadow_pairs_spend_and_verify_statuses_on_both_backends() {
        super::super::on_both_backends("shadow", |ledger| {
            let task = TaskSpec {
                id: "T1-1".into(),
                priority_tier: 1,
                title: "t".into(),
                subtitle: None,
                body: "b".into(),
                section: None,
                milestone: None,
                format: "oxi".into(),
                depends_on: vec![],
                file_hints: vec![],
                source_line: 1,
                roadmap_order: 0,
                content_hash: "h".into(),
                roadmap_done: false,
            };
            ledger
                .write(|q| {
                    q.insert_task(&task, TaskState::Queued, 1)?;
                    for (id, role) in [("p1", "executor"), ("s1", "shadow"), ("p2", "executor")] {
                        q.begin_run(&run(id, role))?;
                    }
                    Ok(())
                })
                .unwrap();
            let q = ledger.read();
            assert_eq!(q.shadow_spend("2026-11-30").unwrap(), 1_000, "held");
            assert_eq!(q.shadow_spend("2026-11-29").unwrap(), 0);
            let end = RunEnd {
                ended_at_ms: 2_000,
                classification: "success",
                cost_microusd: 300,
                ..RunEnd::default()
            };
            ledger.write(|q| q.finish_run("s1", &end)).unwrap();
            assert_eq!(ledger.read().shadow_spend("2026-11-30").unwrap(), 300);

            let record =
                |tier: &'static str, name: &'static str, status: &'static str| VerifyRecord {
                    run_id: "s1",
                    task_id: Some("T1-1"),
                    tier,
                    name,
                    status,
                    exit_code: None,
                    duration_ms: 1,
                    log_path: None,
                    at_ms: 1,
                };
            ledger
                .write(|q| {
                    q.insert_verify_result(&record("tier1", "test", "failed"))?;
                    q.insert_verify_result(&record("tier2", "e2e", "passed"))?;
                    q.insert_verify_result(&record("tier0", "fmt", "passed"))
                })
                .unwrap();
            assert_eq!(
                ledger.read().run_verify_statuses("s1").unwrap(),
                ["failed", "passed"],
                "tiers 0 and 1, as recorded"
            );
            assert!(ledger.read().run_verify_statuses("p1").unwrap().is_empty());

            let pair = |primary: &str, shadow: Option<&str>| {
                let p = side(Some(primary), &["src/a.rs", "src/b.rs"], 500, 9_000);
                let s = side(shadow, &["src/b.rs", "src/c.rs"], 300, 12_000);
                ShadowObserved {
                    rule: "default".into(),
                    overlap: vec!["src/b.rs".into()],
                    shape_match: false,
                    cost_delta_microusd: s.cost_microusd - p.cost_microusd,
                    duration_delta_ms: 3_000,
                    primary: p,
                    shadow: s,
                }
            };
            let events = ledger.read().event_count().unwrap();
            ledger
                .write(|q| {
                    q.record_shadow_pair("T1-1", 1, &pair("p1", Some("s1")), 100)?;
                    q.record_shadow_pair("T1-1", 2, &pair("p2", None), 200)
                })
                .unwrap();
            let q = ledger.read();
            assert_eq!(q.event_count().unwrap(), events + 2);
            let rows = q.shadow_pairs(0).unwrap();
            let seen: Vec<_> = rows.iter().map(|r| (r.attempt, r.at_ms)).collect();
            assert_eq!(seen, [(2, 200), (1, 100)], "newest first");
            assert_eq!(rows[1].pair, pair("p1", Some("s1")));
            assert_eq!(rows[0].pair, pair("p2", None));
            assert_eq!(rows[0].task_id, "T1-1");
            assert_eq!(q.shadow_pairs(150).unwrap().len(), 1);
        });
    }
}
