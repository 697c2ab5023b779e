//! Auto-improve ranking benchmark (`cargo bench --bench improve`): 10,000 candidates ranked
//! by BM25 (SQLite FTS5, in memory) against a 5,000-document project context — the work one
//! `oxi improve scan` does between fetching and staging. Goal: under 1 s.
//!
//! Candidates and context share a vocabulary of 400 words drawn with a skew (a few words are
//! everywhere, most are rare), as real text has; a third of the candidates speak of nothing
//! the project does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use oxi::ledger::CandidateRow;

const CANDIDATES: usize = 10_000;
const DOCUMENTS: usize = 5_000;
const ROUNDS: usize = 5;

/// A deterministic word stream (xorshift), skewed toward low indexes.
struct Words(u64);

impl Words {
    fn next(&mut self, vocabulary: usize) -> String {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let r = (self.0 % 1_000_000) as f64 / 1_000_000.0;
        let index = ((r * r) * vocabulary as f64) as usize;
        format!("w{index}x")
    }

    fn text(&mut self, words: usize, vocabulary: usize) -> String {
        (0..words)
            .map(|_| self.next(vocabulary))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn main() {
    let mut words = Words(0x9e37_79b9_7f4a_7c15);
    let documents: Vec<String> = (0..DOCUMENTS).map(|_| words.text(40, 400)).collect();
    let candidates: Vec<CandidateRow> = (0..CANDIDATES)
        .map(|i| {
            // A third use words the context never does.
            let (title, summary) = if i % 3 == 0 {
                (format!("offtopic{i} item"), format!("unrelated{i} text"))
            } else {
                (words.text(8, 400), words.text(30, 400))
            };
            CandidateRow {
                id: i as i64 + 1,
                source_kind: "newsletter".into(),
                source_name: "bench".into(),
                url: format!("https://bench.example/{i}"),
                title,
                summary,
                target: "bench.example".into(),
                published_at_ms: None,
                first_seen_ms: 0,
                last_seen_ms: 0,
            }
        })
        .collect();
    let mut times: Vec<Duration> = Vec::with_capacity(ROUNDS);
    let mut ranked = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        ranked = std::hint::black_box(oxi::improve::rank::bm25(&documents, &candidates))
            .unwrap()
            .len();
        times.push(started.elapsed());
    }
    times.sort();
    let median = times[ROUNDS / 2];
    println!(
        "improve ranking: {CANDIDATES} candidates against {DOCUMENTS} context documents in {:.0} ms median, {:.0} ms best of {ROUNDS} ({ranked} ranked) — goal < 1 s: {}",
        median.as_secs_f64() * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        if median < Duration::from_secs(1) {
            "met"
        } else {
            "MISSED"
        }
    );
}
