//! Foundation benchmarks (`cargo bench --bench ledger`), reported as ratios:
//!
//! - ingest of a generated 10,000-item roadmap (parse, first ingest, idempotent re-ingest),
//!   against the baseline of splitting the same bytes into lines;
//! - `oxi status` (the library's `status::collect`) on a ledger holding 1,000,000 events,
//!   against the same on an empty ledger: status must not scan the event trail, so the ratio
//!   should stay near 1.
//!
//! `-- --quick` (CI): 2,000 items and 100,000 events, fewer rounds. Both ratios are checked
//! against benches/baseline.json (see benches/support/mod.rs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use oxi::ledger::Ledger;
use oxi::roadmap::{self, ingest};

/// The median of `runs` CPU times (`support::thread_cpu`); in quick mode the fastest (see
/// `support::typical`).
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    support::typical(
        (0..runs)
            .map(|_| {
                let start = support::thread_cpu();
                black_box(f());
                support::thread_cpu() - start
            })
            .collect(),
    )
}

fn generated_roadmap(items: usize) -> String {
    let mut text = String::from("# Generated roadmap\n\n");
    for tier in 0..3 {
        text.push_str(&format!("## Tier {tier}\n\n"));
        for n in 0..items / 3 + usize::from(tier < items % 3) {
            let id = format!("T{tier}-{n}");
            text.push_str(&format!(
                "**{id} · generated item number {n} in tier {tier}**\n"
            ));
            text.push_str("*an italic subtitle*\n\n");
            text.push_str(&format!(
                "Change `src/module_{}.rs` and `docs/page_{n}.md`; keep the tests green.",
                n % 97
            ));
            if n > 0 && n % 10 == 0 {
                text.push_str(&format!(" Depends on T{tier}-{}.", n - 1));
            }
            text.push_str("\n\n");
        }
    }
    text
}

fn main() {
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {machine} cores");

    let mut guard = support::Guard::new("ledger");
    let quick = support::quick();
    let (items, events, rounds) = if quick {
        (2_000, 100_000, 3)
    } else {
        (10_000, 1_000_000, 5)
    };

    // Ingest.
    let text = generated_roadmap(items);
    let bytes = text.as_bytes();
    let path = Path::new("roadmap.md");
    let baseline = time(21, || text.lines().count());
    let parse = time(11, || roadmap::parse(bytes, path, 1).unwrap().items.len());
    let parsed = roadmap::parse(bytes, path, 1).unwrap();
    assert_eq!(parsed.items.len(), items);
    let dir = tempfile::tempdir().unwrap();
    let hash = ingest::roadmap_hash(bytes);
    let mut first = Vec::new();
    let mut again = Vec::new();
    for round in 0..rounds {
        let mut ledger = Ledger::open(&dir.path().join(format!("first-{round}.db"))).unwrap();
        let start = Instant::now();
        ingest::apply(&mut ledger, &parsed, "roadmap.md", &hash, 1).unwrap();
        first.push(start.elapsed());
        let start = Instant::now();
        let summary = ingest::apply(&mut ledger, &parsed, "roadmap.md", &hash, 2).unwrap();
        again.push(start.elapsed());
        assert_eq!(summary.unchanged, items);
    }
    let (first, again) = (support::typical(first), support::typical(again));
    println!(
        "ingest {items} items ({} KiB): parse {:.1} ms CPU ({:.0}x line split), first ingest {:.1} ms, re-ingest {:.1} ms, total first {:.1} ms",
        bytes.len() / 1024,
        parse.as_secs_f64() * 1e3,
        parse.as_secs_f64() / baseline.as_secs_f64(),
        first.as_secs_f64() * 1e3,
        again.as_secs_f64() * 1e3,
        (parse + first).as_secs_f64() * 1e3,
    );
    guard.ratio(
        "parse_vs_line_split",
        parse.as_secs_f64() / baseline.as_secs_f64(),
    );

    // Status on 0 and 1,000,000 (quick: 100,000) events.
    let config_dir = tempfile::tempdir().unwrap();
    std::fs::write(config_dir.path().join("oxi.toml"), "").unwrap();
    let config = oxi::config::load(&config_dir.path().join("oxi.toml"), None).unwrap();
    // Same tasks in both ledgers: the only difference is the event trail.
    let mut empty = Ledger::open(&config_dir.path().join("empty.db")).unwrap();
    ingest::apply(&mut empty, &parsed, "roadmap.md", &hash, 1).unwrap();
    let mut full = Ledger::open(&config_dir.path().join("full.db")).unwrap();
    ingest::apply(&mut full, &parsed, "roadmap.md", &hash, 1).unwrap();
    {
        let conn = full.raw_connection();
        let tx = conn.transaction().unwrap();
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO events (at_ms, kind, task_id, actor, data) VALUES (?1, 'task_state_changed', ?2, 'oxi', '{}')",
                )
                .unwrap();
            let existing: i64 = full_events(&tx);
            for i in existing..events {
                stmt.execute(rusqlite::params![i, format!("T0-{}", i % 3333)])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    assert_eq!(full.read().event_count().unwrap(), events);
    let now = oxi::clock::now_ms();
    let status_empty = time(51, || oxi::commands::status_for_bench(&config, &empty, now));
    let status_full = time(51, || oxi::commands::status_for_bench(&config, &full, now));
    println!(
        "status ({items} tasks, CPU): {} events {:.3} ms, {events} events + {items} tasks {:.3} ms (ratio {:.2})",
        empty.read().event_count().unwrap(),
        status_empty.as_secs_f64() * 1e3,
        status_full.as_secs_f64() * 1e3,
        status_full.as_secs_f64() / status_empty.as_secs_f64(),
    );
    guard.ratio(
        "status_full_vs_empty",
        status_full.as_secs_f64() / status_empty.as_secs_f64(),
    );
    guard.finish();
}

fn full_events(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap()
}
