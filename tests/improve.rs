//! Auto-improve through the binary (`oxi improve …`): every source against a local server
//! (the fake GitHub's releases and search, recorded newsletter pages, a script standing in for
//! the X command), each failure recorded alone (a changed layout, bad JSON, an oversized page,
//! a hang, a 404, a missing repository), ranking that proposes what the project speaks of,
//! accepting into the roadmap that `oxi ingest` reads back, rejecting, the daily idempotence,
//! and `[improve]` absent or wrong.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxi::ledger::{CandidateRow, Ledger};
use oxi_testkit::fake_github::{FakeGithub, FakeRelease, FakeRepository};
use serde_json::Value;

use crate::support::{OxiToml, Run, Sandbox, git};

const TOKEN: &str = "ghp_improvetoken0000000000000000000000000";
const TOKEN_VAR: &str = "OXI_IMPROVE_GH";

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · supervisor budget caps for coding agents**\n\nKeep every coding agent run under the ledger's budget caps; the supervisor stops a run at its cap.\n\n**T0-2 · gateway prompt caching per role**\n\nThe gateway counts tokens per role and caches prompts.\n";

/// A page server on loopback for the newsletter sources: fixtures by path, plus an oversized
/// page, one that never answers and a 404. Records each path asked for.
struct Pages {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/improve")
            .join(name),
    )
    .unwrap()
}

fn serve_pages() -> Pages {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                log.lock().unwrap().push(path.clone());
                let (status, body) = match path.as_str() {
                    "/substack/archive" => ("200 OK", fixture("substack-archive.html")),
                    "/links" => ("200 OK", fixture("links-page.html")),
                    "/changed/archive" => ("200 OK", fixture("changed-layout.html")),
                    "/huge" => ("200 OK", b"<p>spam</p>".repeat(20_000)),
                    "/hang" => {
                        std::thread::sleep(Duration::from_secs(30));
                        return;
                    }
                    _ => ("404 Not Found", b"not here".to_vec()),
                };
                // The oversized page names no length: the limit must hold while reading.
                let head = if path == "/huge" {
                    format!(
                        "HTTP/1.1 {status}\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n"
                    )
                } else {
                    format!(
                        "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    )
                };
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            });
        }
    });
    Pages { addr, seen }
}

fn day(offset_days: i64) -> String {
    let now = jiff::Timestamp::now();
    let at = now
        .checked_add(jiff::SignedDuration::from_hours(24 * offset_days))
        .unwrap();
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn github() -> (FakeGithub, tempfile::TempDir) {
    let bare = tempfile::tempdir().unwrap();
    let github = FakeGithub::start("acme/widgets", TOKEN, bare.path().join("none.git"))
        .await
        .unwrap();
    github.add_release(
        "openai/codex",
        FakeRelease {
            tag: "rust-v0.99.0".into(),
            name: "0.99.0".into(),
            body: "Agents now stop at a budget cap; the supervisor records each run.".into(),
            published_at: day(-1),
            draft: false,
        },
    );
    github.add_release(
        "openai/codex",
        FakeRelease {
            tag: "rust-v1.0.0".into(),
            name: "1.0.0 draft".into(),
            body: "Not published yet.".into(),
            published_at: day(0),
            draft: true,
        },
    );
    for (name, stars, created, pushed) in [
        ("fast/agent-ledger", 300, -10, -1),
        ("slow/settled-agent", 100, -400, -2),
        ("stale/agent-runner", 1000, -20, -20),
    ] {
        github.add_repository(FakeRepository {
            full_name: name.into(),
            description: format!("{name}: a ledger and budget caps for coding agents"),
            stars,
            created_at: day(created),
            pushed_at: day(pushed),
            topics: vec!["coding-agents".into()],
        });
    }
    (github, bare)
}

/// An executable script at `path`.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).unwrap();
}

fn sandbox(config: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write("src/gateway/client.rs", "// client\n");
    s.write("src/supervisor.rs", "// supervisor\n");
    git(s.path(), &["add", "-A"]);
    git(
        s.path(),
        &[
            "commit",
            "-q",
            "-m",
            "Add the supervisor and the gateway client",
        ],
    );
    s.config(&OxiToml::new().project().raw(config));
    s
}

fn oxi(s: &Sandbox, args: &[&str]) -> Run {
    tokio::task::block_in_place(|| s.oxi_env(args, &[(TOKEN_VAR, TOKEN)]))
}

fn events(s: &Sandbox, kind: &str) -> Vec<Value> {
    let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let connection = ledger.raw_connection();
    let mut statement = connection
        .prepare("SELECT data FROM events WHERE kind = ?1 ORDER BY id")
        .unwrap();
    statement
        .query_map([kind], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|d| serde_json::from_str(&d.unwrap()).unwrap())
        .collect()
}

fn full_config(github: &FakeGithub, pages: &Pages, dir: &Path) -> String {
    let x_ok = dir.join("x-ok");
    script(
        &x_ok,
        &format!(
            "echo \"$@\" > '{}'\ncat <<'JSON'\n[{{\"url\":\"https://x.com/someone/status/1\",\"text\":\"A supervisor that keeps coding agents under budget caps\",\"author\":\"someone\",\"created_at\":\"2026-11-29T08:00:00Z\"}},\n {{\"url\":\"https://x.com/someone/status/2\",\"text\":\"Lunch was good\",\"author\":\"someone\"}}]\nJSON\n",
            dir.join("x-args").display()
        ),
    );
    let x_bad = dir.join("x-bad");
    script(&x_bad, "echo '{not json'\n");
    let page = |path: &str| format!("http://{}{path}", pages.addr);
    format!(
        r#"[github]
repo = "acme/widgets"
api_url = "{api}"
token_env = "{TOKEN_VAR}"
retry_backoff = "10ms"

[improve]
source_timeout = "3s"
max_page_size = "64KiB"
min_stars_per_day = 1.0
top = 10

[[improve.sources]]
kind = "github_releases"
repos = ["openai/codex"]

[[improve.sources]]
kind = "github_releases"
name = "gone"
repos = ["ghost/gone"]

[[improve.sources]]
kind = "github_search"
topics = ["coding-agents"]

[[improve.sources]]
kind = "newsletter"
name = "agent-weekly"
url = "{substack}"
parser = "substack"

[[improve.sources]]
kind = "newsletter"
name = "inference-notes"
url = "{links}"

[[improve.sources]]
kind = "newsletter"
name = "redesigned"
url = "{changed}"
parser = "substack"

[[improve.sources]]
kind = "newsletter"
name = "oversized"
url = "{huge}"

[[improve.sources]]
kind = "newsletter"
name = "hanging"
url = "{hang}"

[[improve.sources]]
kind = "newsletter"
name = "moved"
url = "{missing}"

[[improve.sources]]
kind = "x"
name = "x-ok"
command = ["{x_ok}"]
accounts = ["someone"]

[[improve.sources]]
kind = "x"
name = "x-bad"
command = ["{x_bad}"]
accounts = ["someone"]
"#,
        api = github.url(),
        substack = page("/substack/archive"),
        links = page("/links"),
        changed = page("/changed/archive"),
        huge = page("/huge"),
        hang = page("/hang"),
        missing = page("/missing"),
        x_ok = x_ok.display(),
        x_bad = x_bad.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_reads_every_source_and_each_failure_stays_alone() {
    let (github, _bare) = github().await;
    let pages = serve_pages();
    let scripts = tempfile::tempdir().unwrap();
    let s = sandbox(&full_config(&github, &pages, scripts.path()));

    let report = oxi(&s, &["improve", "scan", "--format", "json"]);
    report.ok();
    let report = report.json();
    assert_eq!(report["already_ran"], false);
    assert_eq!(report["ranking"], "bm25");
    let mut failed: Vec<(String, String)> = report["failed_sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["source"].as_str().unwrap().to_owned(),
                f["cause"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    failed.sort();
    let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "gone",
            "hanging",
            "moved",
            "oversized",
            "redesigned",
            "x-bad"
        ],
        "{failed:#?}"
    );
    let cause = |name: &str| failed.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert!(cause("gone").contains("404"), "{}", cause("gone"));
    assert!(
        cause("hanging").contains("source_timeout"),
        "{}",
        cause("hanging")
    );
    assert!(cause("moved").contains("HTTP 404"), "{}", cause("moved"));
    assert!(
        cause("oversized").contains("max_page_size"),
        "{}",
        cause("oversized")
    );
    assert!(
        cause("redesigned").contains("layout may have changed"),
        "{}",
        cause("redesigned")
    );
    assert!(
        cause("x-bad").contains("not the JSON array"),
        "{}",
        cause("x-bad")
    );
    assert_eq!(events(&s, "improve_source_failed").len(), 6);

    // Found: one published release (not the draft), one search result (the settled and the
    // stale repositories are prefiltered), two Substack posts, two titled links, two posts.
    assert_eq!(report["candidates"], 8, "{report:#}");
    let args = std::fs::read_to_string(scripts.path().join("x-args")).unwrap();
    assert!(
        args.starts_with("--since 20") && args.trim_end().ends_with(" someone"),
        "{args}"
    );
    let search = github
        .requests()
        .into_iter()
        .find(|r| r.path == "/search/repositories")
        .unwrap();
    assert!(
        search.query.contains("topic:coding-agents"),
        "{}",
        search.query
    );

    // Ranked against the roadmap, the commits and the module names: what speaks of
    // supervisors, budgets, caps, ledgers and gateways is proposed; gardening and lunch are not.
    let proposals = oxi(&s, &["improve", "proposals", "--format", "json"]).json();
    let titles: Vec<&str> = proposals
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert!(
        titles.contains(&"Supervisors for coding agents: budgets, caps and a ledger"),
        "{titles:?}"
    );
    assert!(titles.contains(&"fast/agent-ledger"), "{titles:?}");
    assert!(!titles.contains(&"Gardening in winter"), "{titles:?}");
    assert!(!titles.contains(&"Lunch was good"), "{titles:?}");
    assert_eq!(proposals[0]["rank"], 1);
    let digest = std::fs::read_to_string(report["digest"].as_str().unwrap()).unwrap();
    assert!(digest.contains("## Top proposals\n\n1. ["), "{digest}");
    assert!(digest.contains("- redesigned (newsletter): "), "{digest}");
    assert!(digest.contains("Ranking: BM25"), "{digest}");

    let status = oxi(&s, &["improve", "status", "--format", "json"]).json();
    assert_eq!(status["paused"], false);
    assert_eq!(status["last_scan"]["failed_sources"], 6);
    assert_eq!(status["last_scan_failures"].as_array().unwrap().len(), 6);

    // A second scan the same day fetches nothing.
    let before = github.requests().len();
    let pages_before = pages.seen.lock().unwrap().len();
    let again = oxi(&s, &["improve", "scan", "--format", "json"]).json();
    assert_eq!(again["already_ran"], true);
    assert_eq!(github.requests().len(), before);
    assert_eq!(pages.seen.lock().unwrap().len(), pages_before);
    github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_proposals_become_roadmap_items_that_ingest_reads_back() {
    let pages = serve_pages();
    let s = sandbox(&format!(
        "[improve]\n\n[[improve.sources]]\nkind = \"newsletter\"\nname = \"agent-weekly\"\nurl = \"http://{}/substack/archive\"\nparser = \"substack\"\n\n[[improve.sources]]\nkind = \"newsletter\"\nname = \"notes\"\nurl = \"http://{}/links\"\n",
        pages.addr, pages.addr
    ));
    oxi(&s, &["improve", "scan"]).ok();
    let proposals = oxi(&s, &["improve", "proposals", "--format", "json"]).json();
    let proposals = proposals.as_array().unwrap();
    assert!(proposals.len() >= 2, "{proposals:#?}");
    let first = proposals[0]["id"].as_i64().unwrap().to_string();
    let second = proposals[1]["id"].as_i64().unwrap().to_string();

    let accepted = oxi(&s, &["improve", "accept", &first, "--format", "json"]).json();
    assert_eq!(accepted[0]["task_id"], "T2-A1");
    let rejected = oxi(&s, &["improve", "reject", &second, "--why", "not for us"]);
    assert!(rejected.ok().contains("rejected"), "{}", rejected.stdout);
    // Decided proposals cannot be decided again, and an unknown id changes nothing.
    let twice = oxi(&s, &["improve", "accept", &first]);
    assert!(
        twice.fails_with(2).contains("already accepted"),
        "{}",
        twice.stderr
    );
    let unknown = oxi(&s, &["improve", "reject", "9999"]);
    assert!(
        unknown.fails_with(2).contains("no proposal #9999"),
        "{}",
        unknown.stderr
    );

    let roadmap = s.read("roadmap.md");
    assert!(roadmap.starts_with(ROADMAP.trim_end()), "{roadmap}");
    assert!(
        roadmap.contains("\n## Auto-improve\n\n**T2-A1 · "),
        "{roadmap}"
    );
    oxi(&s, &["ingest"]).ok();
    let tasks = oxi(&s, &["tasks", "--format", "json"]).json();
    let task = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "T2-A1")
        .unwrap_or_else(|| panic!("T2-A1 not ingested: {tasks:#}"));
    assert_eq!(task["title"], proposals[0]["title"]);
    assert_eq!(task["state"], "queued");

    let all = oxi(&s, &["improve", "proposals", "--all", "--format", "json"]).json();
    let statuses: Vec<(&str, Option<&str>)> = all
        .as_array()
        .unwrap()
        .iter()
        .take(2)
        .map(|p| (p["status"].as_str().unwrap(), p["task_id"].as_str()))
        .collect();
    assert_eq!(statuses, [("accepted", Some("T2-A1")), ("rejected", None)]);
    let decided = events(&s, "improve_proposal_decided");
    assert_eq!(decided.len(), 2);
    assert_eq!(decided[1]["why"], "not for us");
}

#[test]
fn without_improve_nothing_runs_and_no_process_starts() {
    let s = sandbox("");
    for args in [
        ["improve", "scan", "--format", "json"],
        ["improve", "status", "--format", "json"],
    ] {
        let run = s.oxi(&args);
        assert_eq!(run.json()["enabled"], false, "{}", run.stdout);
    }
    assert!(
        s.oxi(&["improve", "scan"])
            .ok()
            .contains("auto-improve is off")
    );

    // [improve] with only a newsletter source: no X command is started.
    let marker = s.file("x-ran");
    let x = s.file("x-cmd");
    script(&x, &format!("touch '{}'\necho '[]'\n", marker.display()));
    let pages = serve_pages();
    s.config(&OxiToml::new().project().raw(&format!(
        "[improve]\n\n[[improve.sources]]\nkind = \"newsletter\"\nurl = \"http://{}/links\"\n",
        pages.addr
    )));
    s.oxi(&["improve", "scan"]).ok();
    assert!(!marker.exists(), "an X command ran without an x source");
    // The same command as an x source does run (so the check above can fail).
    s.config(&OxiToml::new().project().raw(&format!(
        "[improve]\n\n[[improve.sources]]\nkind = \"x\"\ncommand = [\"{}\"]\naccounts = [\"a\"]\n",
        x.display()
    )));
    s.oxi(&["improve", "scan", "--force"]).ok();
    assert!(marker.exists());
}

#[test]
fn bad_improve_config_names_file_line_and_key() {
    for (toml, key, says) in [
        (
            "[improve]\n\n[[improve.sources]]\nkind = \"newsletter\"\n",
            "improve.sources.0.url",
            "needs url",
        ),
        (
            "[improve]\n\n[[improve.sources]]\nkind = \"x\"\naccounts = [\"a\"]\n",
            "improve.sources.0.command",
            "needs command",
        ),
        (
            "[improve]\n\n[[improve.sources]]\nkind = \"github_releases\"\nrepos = [\"a/b\"]\n",
            "improve.sources.0.kind",
            "[github]",
        ),
        (
            "[improve]\n\n[[improve.sources]]\nkind = \"newsletter\"\nurl = \"https://n.example\"\nrepos = [\"a/b\"]\n",
            "improve.sources.0.repos",
            "does not read repos",
        ),
        ("[improve]\ntop = 0\n", "improve.top", "between 1 and 100"),
    ] {
        let s = Sandbox::git_repo();
        s.write("roadmap.md", ROADMAP);
        s.config(&OxiToml::new().project().raw(toml));
        let run = s.oxi(&["improve", "status"]);
        let stderr = run.fails_with(3).to_owned();
        assert!(
            stderr.contains("oxi.toml:") && stderr.contains(key) && stderr.contains(says),
            "{toml}\n{stderr}"
        );
    }
}

fn candidate(id: i64, title: &str, summary: &str) -> CandidateRow {
    CandidateRow {
        id,
        source_kind: "newsletter".into(),
        source_name: "corpus".into(),
        url: format!("https://corpus.example/{id}"),
        title: title.into(),
        summary: summary.into(),
        target: "corpus.example".into(),
        published_at_ms: None,
        first_seen_ms: 0,
        last_seen_ms: 0,
    }
}

/// A fixed corpus of 50 candidates (every third speaks only of the weekend) and a project
/// context of three documents: the ranking tests' input, with and without embeddings.
pub(crate) fn fixed_corpus() -> (Vec<CandidateRow>, Vec<String>) {
    let topics = [
        "supervisor",
        "budget",
        "caps",
        "ledger",
        "gateway",
        "roadmap",
        "agents",
        "review",
        "sqlite",
        "tokens",
    ];
    let noise = ["gardening", "recipes", "football", "travel", "weather"];
    let corpus: Vec<CandidateRow> = (0..50)
        .map(|i| {
            let words: Vec<&str> = if i % 3 == 0 {
                vec![noise[i % 5], noise[(i + 1) % 5], "weekend"]
            } else {
                (0..(1 + i % 4))
                    .map(|k| topics[(i + k * 3) % 10])
                    .chain([noise[i % 5]])
                    .collect()
            };
            candidate(
                i as i64 + 1,
                &format!("Item {i}: {}", words.join(" ")),
                &words.join(" and "),
            )
        })
        .collect();
    let context = vec![
        "supervisor budget caps for coding agents under a ledger".to_owned(),
        "the gateway counts tokens and the roadmap drives review".to_owned(),
        "sqlite ledger supervisor gateway".to_owned(),
    ];
    (corpus, context)
}

#[test]
fn ranking_a_fixed_corpus_gives_the_same_top_fifteen_every_time() {
    let (corpus, context) = fixed_corpus();
    let first = oxi::improve::rank::bm25(&context, &corpus).unwrap();
    assert!(first.len() >= 15, "{}", first.len());
    let top: Vec<usize> = first.iter().take(15).map(|s| s.index).collect();
    for _ in 0..5 {
        let again = oxi::improve::rank::bm25(&context, &corpus).unwrap();
        assert_eq!(
            again.iter().take(15).map(|s| s.index).collect::<Vec<_>>(),
            top
        );
    }
    // Nothing that speaks only of the weekend ranks at all.
    assert!(top.iter().all(|i| i % 3 != 0), "{top:?}");
    insta::assert_json_snapshot!("improve_rank_top15", top);
}

#[test]
fn too_few_accepted_proposals_pause_it_until_unpaused() {
    let pages = serve_pages();
    let s = sandbox(&format!(
        "[improve]\nacceptance_ratio_threshold = 0.5\n\n[[improve.sources]]\nkind = \"newsletter\"\nurl = \"http://{}/links\"\n",
        pages.addr
    ));
    s.oxi(&["improve", "status"]).ok();
    // Ten proposals in each of the last two weeks, one of each ten accepted: 0.1 < 0.5.
    {
        let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
        let c = ledger.raw_connection();
        let now = jiff::Timestamp::now().as_millisecond();
        c.execute("INSERT INTO improve_scans (day, started_at_ms, finished_at_ms) VALUES ('2000-01-01', 0, 0)", [])
            .unwrap();
        for i in 0..20i64 {
            let at = now - if i < 10 { 10 } else { 3 } * 24 * 3600 * 1000;
            c.execute(
                "INSERT INTO improve_candidates (source_kind, source_name, url, title, first_seen_ms, last_seen_ms) VALUES ('x', 'x', ?1, 't', ?2, ?2)",
                rusqlite::params![format!("https://x.example/{i}"), at],
            )
            .unwrap();
            let status = if i % 10 == 0 { "accepted" } else { "rejected" };
            c.execute(
                "INSERT INTO improve_proposals (scan_id, candidate_id, rank, score, title, body, status, created_at_ms) VALUES (1, ?1, 1, 1.0, 't', 'b', ?2, ?3)",
                rusqlite::params![i + 1, status, at],
            )
            .unwrap();
        }
    }
    let refused = s.oxi(&["improve", "scan"]);
    let stderr = refused.fails_with(1);
    assert!(
        stderr.contains("auto-improve is paused") && stderr.contains("1/10 and 1/10"),
        "{stderr}"
    );
    assert!(
        pages.seen.lock().unwrap().is_empty(),
        "a paused scan fetched"
    );
    let paused = events(&s, "improve_paused");
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0]["windows"][0]["emitted"], 10);
    let status = s.oxi(&["improve", "status", "--format", "json"]).json();
    assert_eq!(status["paused"], true);

    let resumed = s.oxi(&["improve", "unpause", "--format", "json"]).json();
    assert_eq!(resumed["was_paused"], true);
    s.oxi(&["improve", "scan"]).ok();
    assert!(!pages.seen.lock().unwrap().is_empty());
    assert_eq!(events(&s, "improve_unpaused").len(), 1);
}
