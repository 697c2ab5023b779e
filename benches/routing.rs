//! Routing benchmark (`cargo bench --bench routing`): `[routing]` with 50 rules compiled once,
//! then every task of a 10,000-task plan routed (the work `oxi plan`/`oxi tasks` add for their
//! ROUTE column, and a claim round's per task). Goal: the 10,000 routes under 10 ms.
//!
//! The rules mix every clause: a third have a tier, most a title regex, some a body regex,
//! file globs, labels or a section. Most tasks match no rule, so they are tried against all
//! 50 before the default: the slow path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use oxi::ledger::TaskSpec;
use oxi::routing::Router;

const RULES: usize = 50;
const TASKS: usize = 10_000;
/// Rounds timed (`OXI_BENCH_ROUNDS` overrides: a few suffice under `valgrind`, whose instruction
/// counts do not swing with the machine's load).
const ROUNDS: usize = 30;

const WORDS: &[&str] = &[
    "parser", "ledger", "queue", "retry", "budget", "worker", "report", "config", "login",
    "header", "cache", "index", "schema", "render", "token", "limit", "socket", "stream",
];

fn config() -> oxi::config::Config {
    let mut text =
        String::from("[rates.\"gpt-5.5-mini\"]\ninput_per_mtok = 0.25\noutput_per_mtok = 2.0\n\n");
    for i in 0..RULES {
        let word = WORDS[i % WORDS.len()];
        let mut when = Vec::new();
        if i % 3 == 0 {
            when.push(format!("priority_tier = {}", i % 4));
        }
        match i % 5 {
            0 => when.push(format!("body = \"(?i)\\\\b{word}s? (is|are) flaky\"")),
            1 => when.push(format!("files = [\"src/{word}/**\", \"docs/{word}*.md\"]")),
            2 => when.push(format!("labels = [\"{word}\", \"area-{i}\"]")),
            3 => when.push(format!("section = \"(?i)milestone m{i}\"")),
            _ => {}
        }
        if i % 5 != 1 {
            when.push(format!("title = \"(?i)\\\\b{word}\\\\b.*\\\\bv{i}\\\\b\""));
        }
        text.push_str(&format!(
            "[[routing.rules]]\nname = \"rule {i}\"\nwhen = {{ {} }}\nexecutor = [\"codex:gpt-5.5-mini\", \"claude\"]\n\n",
            when.join(", ")
        ));
    }
    oxi::config::parse(&text, "bench.toml").unwrap()
}

fn tasks() -> Vec<TaskSpec> {
    (0..TASKS)
        .map(|i| {
            let word = WORDS[i % WORDS.len()];
            let other = WORDS[(i / 7) % WORDS.len()];
            // One task in five names a version some rule wants: those match early or late.
            let version = if i % 5 == 0 { i % RULES } else { 1000 + i };
            TaskSpec {
                id: format!("T{}-{i}", i % 4),
                priority_tier: (i % 4) as u8,
                title: format!("Teach the {word} to handle the {other} v{version}"),
                subtitle: None,
                body: format!(
                    "The {word} currently drops the {other} when it restarts. Keep the {other} \
                     across restarts and add a test in `src/{word}/tests.rs`; document it in \
                     `docs/{other}.md`. Labels: {other}, small\n\nSee the {word} module's \
                     comments for the invariants that must keep holding."
                ),
                section: Some(format!("Tier {} › {}", i % 4, other)),
                milestone: (i % 9 == 0).then(|| format!("Milestone M{}", i % 60)),
                format: "oxi".to_owned(),
                depends_on: Vec::new(),
                file_hints: vec![format!("src/{word}/mod.rs"), format!("docs/{other}.md")],
                source_line: i as u32,
                roadmap_order: i as u32,
                content_hash: String::new(),
                roadmap_done: false,
            }
        })
        .collect()
}

fn main() {
    let config = config();
    let tasks = tasks();

    let started = Instant::now();
    let router = Router::new(&config).unwrap();
    let compile = started.elapsed();

    let rounds = std::env::var("OXI_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse::<usize>().ok())
        .filter(|r| *r > 0)
        .unwrap_or(ROUNDS);
    let mut times: Vec<Duration> = Vec::with_capacity(rounds);
    let mut by_default = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        by_default = 0;
        for task in &tasks {
            if std::hint::black_box(router.route(task)).name() == "default" {
                by_default += 1;
            }
        }
        times.push(started.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = times[rounds / 2];
    println!(
        "routing: {RULES} rules compiled in {:.2} ms; {TASKS} tasks routed in {:.2} ms median, {:.2} ms best, {:.2} ms worst of {rounds} rounds ({:.0} ns/task; {by_default} by the default after all {RULES} rules) — goal < 10 ms: {}",
        ms(compile),
        ms(median),
        ms(times[0]),
        ms(times[rounds - 1]),
        median.as_nanos() as f64 / TASKS as f64,
        if median < Duration::from_millis(10) {
            "met"
        } else {
            "MISSED"
        }
    );
}
