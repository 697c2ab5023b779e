//! Claim benchmark (`cargo bench --bench claim`): claim + settle pairs per second and the claim
//! latency (p50, p99) with 1, 4 and 16 claimers spread over 3 processes, on SQLite and on
//! PostgreSQL, on the same machine. Goal at 16 claimers: >= 2,000 pairs/s and p99 <= 20 ms,
//! with the daily cap exact under that load.
//!
//! - A pair is one claim, through the scheduler's own admission (`oxi::scheduler::
//!   claim_for_bench`: the caps, the candidate's lock, the state change, the attempt count and
//!   the run row in one transaction, then the over-estimate mark), and one settle
//!   (`finish_run` with the run's cost, which turns its reservation into spend).
//! - Claimers: 1 in 1 process; 4 as 2 + 1 + 1 and 16 as 6 + 5 + 5 processes. The bench runs
//!   itself again as each child (`OXI_BENCH_CLAIM_CHILD`); each claimer is a thread with its own
//!   `Ledger` (its own connection) inside a tokio runtime, as saturate's claims and a job's
//!   settle are, so PostgreSQL's calls pay for `pg::blocking`'s thread as in oxi. Children
//!   report their figures to the parent as one JSON line each.
//! - Candidates: N queued tasks ingested from a generated roadmap. Each claimer reads them in
//!   the plan's order once and walks them from its own starting point (claimer i of C at
//!   i·N/C), claiming one after the other; a task another claimer holds or took is a lost race,
//!   counted. `-- --head` starts every claimer at the head of the list instead: the worst case,
//!   every claimer racing for the same task. `-- --no-runtime` runs the claimers outside a
//!   tokio runtime, which oxi never does: the difference is what `pg::blocking`'s thread per
//!   statement costs. `-- sqlite` or `-- postgres`: that backend only.
//! - Caps exact: the daily cap fits exactly K of the N tasks (reserve = cost = $0.01). The
//!   claimers run until refused; the bench then requires K admitted (not K+1, not K-1 while
//!   tasks remained queued), K dispatched and N-K queued tasks, and spent + reserved equal to
//!   the cap, on both backends at every claimer count. A broken cap panics: it is a failed
//!   bench, not a figure.
//!
//! PostgreSQL: the test kit's throwaway cluster (`oxi_testkit::pg`, skipped with a hint where
//! PostgreSQL is not installed), which runs with `fsync=off`; `OXI_BENCH_PG_URL` names another
//! server instead (a database there the bench may create databases from, e.g.
//! `postgres://postgres@/postgres?host=/run/postgresql`). The server's `fsync` is printed with
//! the figures.
//!
//! `-- --quick` (or `OXI_BENCH_QUICK=1`): 200 of 240 tasks instead of 2,000 of 2,400. The
//! figures are absolute and printed, never gated (their ratio is not steady enough on a shared
//! machine to guard; docs/postgres.md, "Claim throughput").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use oxi::ledger::{Ledger, LedgerError, RunEnd, TaskRow, TaskState};
use oxi::scheduler::{BenchClaim, SchedulerError};

/// Names the child role: the bench runs itself again as each claimer process.
const CHILD: &str = "OXI_BENCH_CLAIM_CHILD";
/// The reserve and the cost of every run, in microdollars ($0.01).
const AMOUNT: i64 = 10_000;
const WORKER: &str = "bench";

/// Where one configuration's ledger is.
#[derive(Clone)]
enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Backend {
    fn open(&self) -> Ledger {
        match self {
            Backend::Sqlite(path) => Ledger::open(path).unwrap(),
            Backend::Postgres(url) => Ledger::open_postgres(url, None).unwrap(),
        }
    }

    fn location(&self) -> String {
        match self {
            Backend::Sqlite(path) => format!("sqlite:{}", path.display()),
            Backend::Postgres(url) => url.clone(),
        }
    }

    fn from_location(text: &str) -> Self {
        match text.strip_prefix("sqlite:") {
            Some(path) => Backend::Sqlite(PathBuf::from(path)),
            None => Backend::Postgres(text.to_owned()),
        }
    }
}

/// How the claimers work (the command line's flags, passed on to the children).
#[derive(Clone, Copy)]
struct Options {
    /// `--head`: every claimer starts at the head of the plan.
    head: bool,
    /// Inside a tokio runtime, as in oxi (`--no-runtime`: outside one, to price what
    /// `pg::blocking`'s thread per statement costs).
    runtime: bool,
}

/// One claimer process's figures (a JSON line on its stdout).
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Report {
    /// From starting to look for a task to its admission (lost races included), per claim.
    claims_us: Vec<u64>,
    /// One settle (`finish_run`) each.
    settles_us: Vec<u64>,
    admitted: u64,
    lost: u64,
    refused: u64,
    /// Claims retried after the ledger said `Busy`.
    busy: u64,
    /// Wall-clock bounds (microseconds since the epoch) of its claimers' work.
    start_us: u64,
    end_us: u64,
}

impl Report {
    fn merge(&mut self, other: Report) {
        self.claims_us.extend(other.claims_us);
        self.settles_us.extend(other.settles_us);
        self.admitted += other.admitted;
        self.lost += other.lost;
        self.refused += other.refused;
        self.busy += other.busy;
        self.start_us = if self.start_us == 0 {
            other.start_us
        } else {
            self.start_us.min(other.start_us)
        };
        self.end_us = self.end_us.max(other.end_us);
    }
}

fn epoch_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

// ---- the claimer process ------------------------------------------------------------------

/// A child: `OXI_BENCH_CLAIM_CLAIMERS` claimer threads, then one JSON line of figures.
fn child() {
    let backend = Backend::from_location(&env("OXI_BENCH_CLAIM_LEDGER"));
    let config =
        Arc::new(oxi::config::load(Path::new(&env("OXI_BENCH_CLAIM_CONFIG")), None).unwrap());
    let claimers: usize = env("OXI_BENCH_CLAIM_CLAIMERS").parse().unwrap();
    let first: usize = env("OXI_BENCH_CLAIM_FIRST").parse().unwrap();
    let total: usize = env("OXI_BENCH_CLAIM_TOTAL").parse().unwrap();
    let options = Options {
        head: env("OXI_BENCH_CLAIM_HEAD") == "1",
        runtime: env("OXI_BENCH_CLAIM_RUNTIME") == "1",
    };
    let ready = Arc::new(Barrier::new(claimers + 1));
    let go = Arc::new(Barrier::new(claimers + 1));
    let threads: Vec<_> = (0..claimers)
        .map(|i| {
            let (backend, config) = (backend.clone(), Arc::clone(&config));
            let (ready, go) = (Arc::clone(&ready), Arc::clone(&go));
            std::thread::spawn(move || {
                claimer(&backend, &config, first + i, total, options, &ready, &go)
            })
        })
        .collect();
    ready.wait();
    let stdout = std::io::stdout();
    writeln!(stdout.lock(), "ready").unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "go", "the parent said {line:?}");
    go.wait();
    let mut report = Report::default();
    for thread in threads {
        report.merge(thread.join().unwrap());
    }
    writeln!(stdout.lock(), "{}", serde_json::to_string(&report).unwrap()).unwrap();
}

/// One claimer: its own ledger and runtime; claims and settles until a cap refuses it or it has
/// tried every candidate.
fn claimer(
    backend: &Backend,
    config: &oxi::config::LoadedConfig,
    index: usize,
    total: usize,
    options: Options,
    ready: &Barrier,
    go: &Barrier,
) -> Report {
    // As saturate's: its claims run inside the runtime's `block_on`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let inside = |f: &mut dyn FnMut()| {
        if options.runtime {
            runtime.block_on(async { f() });
        } else {
            f();
        }
    };
    let mut ledger = None;
    inside(&mut || ledger = Some(backend.open()));
    let mut ledger = ledger.unwrap();
    let mut candidates = Vec::new();
    inside(&mut || {
        candidates = ledger
            .read()
            .tasks()
            .unwrap()
            .into_iter()
            .filter(|t: &TaskRow| t.state == TaskState::Queued)
            .collect();
    });
    let start = if options.head {
        0
    } else {
        index * candidates.len() / total
    };
    ready.wait();
    go.wait();
    let mut report = Report {
        start_us: epoch_us(),
        ..Report::default()
    };
    inside(&mut || {
        let mut looking = Instant::now();
        let mut tried = 0;
        while tried < candidates.len() {
            let task = &candidates[(start + tried) % candidates.len()];
            match oxi::scheduler::claim_for_bench(&mut ledger, config, task, WORKER, AMOUNT) {
                Ok(BenchClaim::Admitted(run_id)) => {
                    report.claims_us.push(looking.elapsed().as_micros() as u64);
                    report.admitted += 1;
                    let settling = Instant::now();
                    settle(&mut ledger, &run_id);
                    report
                        .settles_us
                        .push(settling.elapsed().as_micros() as u64);
                    looking = Instant::now();
                }
                Ok(BenchClaim::Lost) => report.lost += 1,
                Ok(BenchClaim::Refused(_)) => {
                    report.refused += 1;
                    break;
                }
                // Another claimer held the ledger past the busy timeout: try the task again.
                Err(SchedulerError::Ledger(LedgerError::Busy)) => {
                    report.busy += 1;
                    continue;
                }
                Err(e) => panic!("claim of {}: {e}", task.spec.id),
            }
            tried += 1;
        }
    });
    report.end_us = epoch_us();
    report
}

/// The run's end as the runner records it (`Ledger::finish_run`, a transaction of its own): its
/// cost settled, the reservation with it.
fn settle(ledger: &mut Ledger, run_id: &str) {
    let finished = ledger
        .finish_run(
            run_id,
            &RunEnd {
                ended_at_ms: oxi::clock::now_ms(),
                classification: "success",
                exit_code: Some(0),
                cost_microusd: AMOUNT,
                input_tokens: 1_000,
                output_tokens: 100,
                summary: oxi::ledger::events::RunSummary::Ran {
                    files_changed: vec!["src/m0.rs".to_owned()],
                    elapsed_ms: 1,
                    cost_source: "reported".to_owned(),
                    ledger_errors: Vec::new(),
                    protection: serde_json::Value::Null,
                },
                ..RunEnd::default()
            },
        )
        .unwrap();
    assert!(finished, "run {run_id} was not running at its settle");
}

// ---- the parent ---------------------------------------------------------------------------

/// How `claimers` are spread over processes: alone, or over 3 as evenly as they go.
fn spread(claimers: usize) -> Vec<usize> {
    if claimers == 1 {
        return vec![1];
    }
    (0..3)
        .map(|p| claimers / 3 + usize::from(p < claimers % 3))
        .collect()
}

fn roadmap(items: usize) -> String {
    let mut text = String::from("# Claim bench\n\n");
    for n in 0..items {
        text.push_str(&format!(
            "**T0-{n} · generated task {n}**\nChange `src/m{}.rs`.\n\n",
            n % 97
        ));
    }
    text
}

/// A repository directory with an `oxi.toml` whose daily cap fits exactly `fit` runs.
fn config_dir(fit: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let usd = |micro: i64| micro as f64 / 1_000_000.0;
    let daily = usd(AMOUNT * fit as i64);
    let job = usd(AMOUNT);
    std::fs::write(
        dir.path().join("oxi.toml"),
        format!(
            "[workers.{WORKER}]\nkind = \"claude\"\ncommand = [\"/bin/true\"]\nmodel = \"claude-sonnet-4-5\"\n\n\
             [routing]\nexecutor = [\"{WORKER}\"]\nreviewer = [\"{WORKER}\"]\n\n\
             [caps]\njob_usd = {job}\nestimate_floor_usd = {job}\ndaily_usd = {daily}\ndaily_soft_warn_usd = {daily}\nmonthly_usd = {}\n",
            usd(AMOUNT * fit as i64 * 10),
        ),
    )
    .unwrap();
    dir
}

/// Starts a claimer process and waits for its "ready".
fn spawn_child(
    backend: &Backend,
    config: &Path,
    claimers: usize,
    first: usize,
    total: usize,
    options: Options,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .env("OXI_BENCH_CLAIM_LEDGER", backend.location())
        .env("OXI_BENCH_CLAIM_CONFIG", config)
        .env("OXI_BENCH_CLAIM_CLAIMERS", claimers.to_string())
        .env("OXI_BENCH_CLAIM_FIRST", first.to_string())
        .env("OXI_BENCH_CLAIM_TOTAL", total.to_string())
        .env("OXI_BENCH_CLAIM_HEAD", if options.head { "1" } else { "0" })
        .env(
            "OXI_BENCH_CLAIM_RUNTIME",
            if options.runtime { "1" } else { "0" },
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "a claimer process said {line:?}");
    (child, out)
}

/// The figures of one (backend, claimers) configuration.
struct Figures {
    pairs_per_s: f64,
    claim_p50_ms: f64,
    claim_p99_ms: f64,
    settle_p50_ms: f64,
    settle_p99_ms: f64,
    lost: u64,
    busy: u64,
}

fn percentile_ms(samples: &mut [u64], p: f64) -> f64 {
    samples.sort_unstable();
    let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1] as f64 / 1000.0
}

/// Fills a fresh ledger with `tasks` queued tasks, runs `claimers` over it until the cap (which
/// fits `fit`) refuses them, checks the cap held exactly, and returns the figures.
fn measure(
    backend: &Backend,
    claimers: usize,
    tasks: usize,
    fit: usize,
    options: Options,
) -> Figures {
    let dir = config_dir(fit);
    let config = dir.path().join("oxi.toml");
    // Here first, so a config the children would refuse fails with its message.
    oxi::config::load(&config, None).unwrap();
    {
        let mut ledger = backend.open();
        let text = roadmap(tasks);
        let parsed = oxi::roadmap::parse(text.as_bytes(), Path::new("roadmap.md"), 1).unwrap();
        let hash = oxi::roadmap::ingest::roadmap_hash(text.as_bytes());
        oxi::roadmap::ingest::apply(&mut ledger, &parsed, "roadmap.md", &hash, 1).unwrap();
    }
    let mut first = 0;
    let mut children = Vec::new();
    for n in spread(claimers) {
        children.push(spawn_child(backend, &config, n, first, claimers, options));
        first += n;
    }
    for (child, _) in &mut children {
        writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    }
    let mut report = Report::default();
    for (mut child, mut out) in children {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "a claimer process failed: {status}{}",
            server_errors()
        );
        report.merge(serde_json::from_str(&line).unwrap());
    }
    check_caps(backend, &report, tasks, fit);
    let seconds = (report.end_us - report.start_us) as f64 / 1e6;
    Figures {
        pairs_per_s: report.admitted as f64 / seconds,
        claim_p50_ms: percentile_ms(&mut report.claims_us, 0.50),
        claim_p99_ms: percentile_ms(&mut report.claims_us, 0.99),
        settle_p50_ms: percentile_ms(&mut report.settles_us, 0.50),
        settle_p99_ms: percentile_ms(&mut report.settles_us, 0.99),
        lost: report.lost,
        busy: report.busy,
    }
}

/// The cap held exactly: `fit` claims admitted and no more, the rest still queued, and
/// spent + reserved at the cap. Panics otherwise: a broken cap is a failed bench.
fn check_caps(backend: &Backend, report: &Report, tasks: usize, fit: usize) {
    let ledger = backend.open();
    let counts = ledger.read().task_counts().unwrap();
    let now = oxi::clock::now_ms();
    let totals = ledger
        .read()
        .spend_totals(&oxi::clock::day_of(now), &oxi::clock::month_of(now))
        .unwrap();
    let cap = AMOUNT * fit as i64;
    let count = |state| counts.get(&state).copied().unwrap_or(0) as usize;
    assert_eq!(
        report.admitted as usize,
        fit,
        "CAP NOT EXACT: {} admitted where the daily cap fits {fit} ({} still queued)",
        report.admitted,
        count(TaskState::Queued)
    );
    assert!(report.refused > 0, "no claimer was refused by the cap");
    assert_eq!(
        count(TaskState::Dispatched),
        fit,
        "dispatched tasks: {counts:?}"
    );
    assert_eq!(
        count(TaskState::Queued),
        tasks - fit,
        "queued tasks: {counts:?}"
    );
    assert!(
        totals.day_spent + totals.day_reserved <= cap,
        "CAP CROSSED: spent {} + reserved {} > cap {cap}",
        totals.day_spent,
        totals.day_reserved
    );
    assert_eq!(
        (totals.day_spent, totals.day_reserved),
        (cap, 0),
        "every admitted run settled at its cost"
    );
}

/// The test kit cluster's log, when the bench uses it.
static SERVER_LOG: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// The errors the test kit cluster logged, to say why a claimer failed.
fn server_errors() -> String {
    let Some(text) = SERVER_LOG
        .get()
        .and_then(|p| std::fs::read_to_string(p).ok())
    else {
        return String::new();
    };
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("DETAIL") || l.contains("CONTEXT"))
        .collect();
    format!(
        "\nthe server's last errors:\n{}",
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

/// A fresh database for each configuration: on `OXI_BENCH_PG_URL`'s server, else on the test
/// kit's cluster; `None` when PostgreSQL is not installed here.
struct PgServer {
    admin: Option<String>,
    made: usize,
}

impl PgServer {
    fn find() -> Option<Self> {
        if let Ok(url) = std::env::var("OXI_BENCH_PG_URL") {
            return Some(PgServer {
                admin: Some(url),
                made: 0,
            });
        }
        oxi_testkit::pg::cluster_or_skip("benches/claim.rs").map(|cluster| {
            SERVER_LOG.get_or_init(|| cluster.socket_dir().join("server.log"));
            PgServer {
                admin: None,
                made: 0,
            }
        })
    }

    fn database(&mut self) -> String {
        self.made += 1;
        let Some(admin) = &self.admin else {
            let cluster = oxi_testkit::pg::cluster_or_skip("benches/claim.rs").unwrap();
            return cluster.database("claim").unwrap();
        };
        let name = format!("oxi_claim_bench_{}_{}", std::process::id(), self.made);
        let mut client = postgres::Client::connect(admin, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        // postgres://user@host/DB?params: the database is the path after the authority.
        let (scheme, rest) = admin.split_once("://").unwrap();
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let params = rest[authority_end..]
            .find('?')
            .map(|i| &rest[authority_end + i..]);
        format!(
            "{scheme}://{}/{name}{}",
            &rest[..authority_end],
            params.unwrap_or("")
        )
    }

    /// A URL to ask the server about itself: the admin database, or a fresh one.
    fn admin_or_probe(&self) -> String {
        match &self.admin {
            Some(url) => url.clone(),
            None => oxi_testkit::pg::cluster_or_skip("benches/claim.rs")
                .unwrap()
                .url("postgres"),
        }
    }

    /// The server's version and whether it syncs its commits to disk, for the figures' label.
    fn describe(url: &str) -> String {
        let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
        let show = |client: &mut postgres::Client, what: &str| -> String {
            client
                .query_one(&format!("SHOW {what}"), &[])
                .unwrap()
                .get(0)
        };
        let version = show(&mut client, "server_version");
        let fsync = show(&mut client, "fsync");
        format!("PostgreSQL {version}, fsync={fsync}")
    }
}

/// Where each configuration's fresh ledger comes from.
enum Fresh {
    /// A file per configuration in this directory.
    Sqlite(PathBuf),
    /// A database per configuration on this server.
    Postgres(PgServer),
}

impl Fresh {
    fn ledger(&mut self, claimers: usize) -> Backend {
        match self {
            Fresh::Sqlite(dir) => Backend::Sqlite(dir.join(format!("ledger-{claimers}.db"))),
            Fresh::Postgres(server) => Backend::Postgres(server.database()),
        }
    }
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let machine = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "machine: {machine} cores, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let options = Options {
        head: std::env::args().any(|a| a == "--head"),
        runtime: !std::env::args().any(|a| a == "--no-runtime"),
    };
    let (tasks, fit) = if support::quick() {
        (240, 200)
    } else {
        (2_400, 2_000)
    };
    println!(
        "{fit} of {tasks} queued tasks fit the daily cap; claimers start {}",
        if options.head {
            "at the head of the plan (--head)"
        } else {
            "at their own offsets in the plan"
        }
    );
    if !options.runtime {
        println!("claimers outside a tokio runtime (--no-runtime): not as oxi runs them");
    }
    let dir = tempfile::tempdir().unwrap();
    // `cargo bench --bench claim -- postgres` (or `sqlite`): that backend only.
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |backend: &str| named.is_empty() || named.iter().any(|a| a == backend);
    // Each backend's label, and where each configuration gets a fresh ledger.
    let mut backends = Vec::new();
    if wanted("sqlite") {
        backends.push((
            "sqlite (WAL, synchronous=FULL)".to_owned(),
            Fresh::Sqlite(dir.path().to_path_buf()),
        ));
    }
    if let Some(server) = wanted("postgres").then(PgServer::find).flatten() {
        let label = PgServer::describe(&server.admin_or_probe());
        backends.push((label, Fresh::Postgres(server)));
    }
    println!(
        "\n{:<40} {:>8} {:>9} {:>10} {:>10} {:>11} {:>11} {:>6} {:>5}",
        "backend",
        "claimers",
        "pairs/s",
        "claim p50",
        "claim p99",
        "settle p50",
        "settle p99",
        "lost",
        "busy"
    );
    let mut goal = Vec::new();
    for (label, fresh) in &mut backends {
        for claimers in [1, 4, 16] {
            let backend = fresh.ledger(claimers);
            let f = measure(&backend, claimers, tasks, fit, options);
            println!(
                "{label:<40} {claimers:>8} {:>9.0} {:>7.2} ms {:>7.2} ms {:>8.2} ms {:>8.2} ms {:>6} {:>5}",
                f.pairs_per_s,
                f.claim_p50_ms,
                f.claim_p99_ms,
                f.settle_p50_ms,
                f.settle_p99_ms,
                f.lost,
                f.busy
            );
            if claimers == 16 {
                let met = f.pairs_per_s >= 2_000.0 && f.claim_p99_ms <= 20.0;
                goal.push(format!(
                    "{label}: {:.0} pairs/s, claim p99 {:.2} ms: {}",
                    f.pairs_per_s,
                    f.claim_p99_ms,
                    if met { "met" } else { "MISSED" }
                ));
            }
        }
    }
    println!("\ncaps exact at every claimer count on every backend ({fit} admitted of {tasks})");
    println!("goal at 16 claimers (>= 2,000 pairs/s, claim p99 <= 20 ms):");
    for line in goal {
        println!("  {line}");
    }
}
