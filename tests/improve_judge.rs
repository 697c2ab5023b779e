//! Auto-improve's judge, fabrication filter and dedup layers through the binary: verdicts from
//! the mock model server through the gateway (role `improve`), each bad answer (prose, a
//! number out of range, HTTP 500, a hang) a recorded failure that never loses the scan, the
//! hard filter rejecting names the repository lacks whatever the judge says, the judge's cap
//! stopping judging for the day with the rest held, and each dedup skip recorded with its
//! layer. The day's digest lists every section (snapshots).

use std::path::Path;

use oxi::ledger::Ledger;
use oxi_testkit::mock_model::{ChatCost, MockModelServer, Script, Step};
use serde_json::Value;

use crate::support::{OxiToml, Run, Sandbox, git};

const KEY_VAR: &str = "OXI_IMPROVE_JUDGE_KEY";
const KEY: &str = "sk-test-gateway-key-judge";
const JUDGE: &str = "lite:claude-haiku-4-5";

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · supervisor budget caps for coding agents**\n\nKeep every coding agent run under the ledger's budget caps; the supervisor stops a run at its cap.\n\n**T0-2 · gateway prompt caching per role**\n\nThe gateway counts tokens per role and caches prompts.\n";

/// A verdict as the judge would write it.
fn verdict(relevance: u8, concreteness: u8, tier: u8, rationale: &str) -> String {
    format!(
        "{{\"relevance\": {relevance}, \"concreteness\": {concreteness}, \"tier\": {tier}, \
         \"duplicate\": false, \"fabricated_module\": false, \"rationale\": \"{rationale}\"}}"
    )
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).unwrap();
}

/// The X command's posts: (id, text, author).
fn posts(items: &[(u32, &str, Option<&str>)]) -> String {
    let items: Vec<String> = items
        .iter()
        .map(|(id, text, author)| {
            let author = author.map_or(String::new(), |a| format!(",\"author\":\"{a}\""));
            format!("{{\"url\":\"https://x.com/p/status/{id}\",\"text\":\"{text}\"{author}}}")
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// A repository whose X source prints `posts`, with `[improve]` set to `improve` (after the
/// source) and a LiteLLM provider on the mock server.
fn sandbox(base_url: &str, posts: &str, improve: &str, extra: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write("src/supervisor.rs", "// supervisor\n");
    s.write("src/gateway/client.rs", "// client\n");
    s.write(".gitignore", ".oxi/\nposts.json\nx-cmd\n");
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "Add the supervisor"]);
    s.write("posts.json", posts);
    let command = s.path().join("x-cmd");
    script(
        &command,
        &format!("cat '{}'\n", s.path().join("posts.json").display()),
    );
    s.config(&OxiToml::new().project().raw(&format!(
        "[gateway.providers.lite]\nkind = \"litellm\"\nbase_url = \"{base_url}\"\nkey_env = \"{KEY_VAR}\"\ntimeout = \"2s\"\nretries = 0\n\n{extra}\n[improve]\n{improve}\n\n[[improve.sources]]\nkind = \"x\"\ncommand = [\"{}\"]\naccounts = [\"someone\"]\n",
        command.display()
    )));
    s
}

fn oxi(s: &Sandbox, args: &[&str]) -> Run {
    tokio::task::block_in_place(|| s.oxi_env(args, &[(KEY_VAR, KEY)]))
}

fn scan(s: &Sandbox) -> Value {
    let out = oxi(s, &["improve", "scan", "--force", "--format", "json"]);
    out.ok();
    out.json()
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

fn column(s: &Sandbox, sql: &str) -> Vec<String> {
    let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let connection = ledger.raw_connection();
    let mut statement = connection.prepare(sql).unwrap();
    statement
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The digest with the day made stable for a snapshot.
fn digest(report: &Value) -> String {
    let text = std::fs::read_to_string(report["digest"].as_str().unwrap()).unwrap();
    text.replace(report["day"].as_str().unwrap(), "YYYY-MM-DD")
}

const SIX_POSTS: &[(u32, &str, Option<&str>)] = &[
    (
        1,
        "A supervisor for coding agents under budget caps in the ledger",
        None,
    ),
    (2, "Gateway prompt caching per role for coding agents", None),
    (
        3,
        "Budget caps for the supervisor ledger of each coding agent",
        None,
    ),
    (
        4,
        "Rewrite src/warp/drive.rs so the supervisor keeps coding agents under budget caps",
        None,
    ),
    (
        5,
        "Coding agents supervisor: a ledger budget and gateway caching",
        None,
    ),
    (
        6,
        "The supervisor ledger for coding agents with gateway caps",
        None,
    ),
    (
        7,
        "A gateway for coding agents that caches prompts under budget caps",
        None,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_stages_what_it_accepts_and_every_bad_verdict_is_a_recorded_failure() {
    let script = Script::new()
        .then(Step::text(verdict(
            4,
            4,
            1,
            "Adds budget caps to the supervisor.",
        )))
        .then(Step::text(verdict(2, 4, 2, "Barely related.")))
        .then(Step::text(format!(
            "Sure! Here it is: {}",
            verdict(5, 5, 0, "x")
        )))
        .then(Step::text(verdict(4, 4, 7, "Tier out of range.")))
        .then(Step::text(verdict(
            5,
            5,
            0,
            "Extend `oxi teleport` for budgets.",
        )))
        .then(Step::status(500, None));
    let server = MockModelServer::start(script).await.unwrap();
    let s = sandbox(
        &server.base_url(),
        &posts(SIX_POSTS),
        &format!("judge = \"{JUDGE}\"\njudge_top = 10"),
        "",
    );
    oxi(&s, &["ingest"]).ok();
    let report = scan(&s);
    let d = &report["decisions"];
    assert_eq!(report["judge"], JUDGE, "{report:#}");
    assert_eq!(
        (
            d["staged"].as_u64(),
            d["declined"].as_u64(),
            d["judge_failed"].as_u64(),
            d["fabricated"].as_u64()
        ),
        (Some(1), Some(1), Some(3), Some(2)),
        "{report:#}"
    );
    assert_eq!(report["proposed"], 1);
    // The post naming a missing file never reached the judge: six calls for seven posts.
    assert_eq!(server.model_requests().len(), 6);
    let calls = column(&s, "SELECT role FROM gateway_calls");
    assert_eq!(calls, vec!["improve"; 6]);
    let request = &server.model_requests()[0];
    let asked = request.body.to_string();
    assert!(
        asked.contains("T0-1: supervisor budget caps for coding agents"),
        "{asked}"
    );
    assert!(asked.contains("fabricated_module"), "{asked}");

    let failed = events(&s, "improve_judge_failed");
    let causes: Vec<&str> = failed
        .iter()
        .map(|e| e["cause"].as_str().unwrap())
        .collect();
    assert_eq!(causes.len(), 3, "{causes:?}");
    assert!(causes[0].contains("is not the verdict"), "{causes:?}");
    assert!(causes[1].contains("tier 7 is outside 0-2"), "{causes:?}");
    assert!(causes[2].contains("HTTP 500"), "{causes:?}");
    assert!(failed[0]["call_id"].as_i64().is_some());
    let fabricated = events(&s, "improve_fabricated");
    let mut names: Vec<String> = fabricated.iter().map(|e| e["names"].to_string()).collect();
    names.sort_unstable();
    assert_eq!(names, ["[\"oxi teleport\"]", "[\"src/warp/drive.rs\"]"]);

    let proposals = oxi(&s, &["improve", "proposals", "--format", "json"]).json();
    assert_eq!(proposals.as_array().unwrap().len(), 1);
    assert_eq!(proposals[0]["tier"], 1);
    let body = proposals[0]["body"].as_str().unwrap();
    assert!(
        body.ends_with(
            "Judge: relevance 4/5, concreteness 4/5. Adds budget caps to the supervisor."
        ),
        "{body}"
    );
    insta::assert_snapshot!("improve_judge_digest", digest(&report));

    // A later scan judges neither the declined nor the fabricated candidates again.
    let again = scan(&s);
    let once = column(
        &s,
        "SELECT candidate_id || ' ' || outcome FROM improve_decisions d WHERE d.scan_id = 2 \
         AND candidate_id IN (SELECT candidate_id FROM improve_decisions \
         WHERE scan_id = 1 AND outcome IN ('declined', 'fabricated'))",
    );
    assert!(once.is_empty(), "{once:?} {again:#}");
    let text = oxi(&s, &["improve", "scan", "--force"]);
    assert!(
        text.ok().contains(&format!("judge: {JUDGE}: 0 staged")),
        "{}",
        text.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judges_cap_stops_judging_for_the_day_and_holds_the_rest() {
    let script = Script::new()
        .fallback(Step::text(verdict(5, 5, 1, "Worth doing.")))
        .chat_cost(ChatCost::LitellmHeader("0.05".to_owned()));
    let server = MockModelServer::start(script).await.unwrap();
    let s = sandbox(
        &server.base_url(),
        &posts(&SIX_POSTS[..3]),
        &format!("judge = \"{JUDGE}\"\ndaily_usd = 0.08"),
        "[gateway.caps]\ncall_reserve_usd = 0.05\n",
    );
    let report = scan(&s);
    let d = &report["decisions"];
    assert_eq!(d["staged"], 1, "{report:#}");
    assert_eq!(d["budget_held"], 2, "{report:#}");
    assert!(
        report["judge_capped"]
            .as_str()
            .is_some_and(|c| c.contains("improve.daily_usd")),
        "{report:#}"
    );
    assert_eq!(server.model_requests().len(), 1);
    let capped = events(&s, "improve_judge_capped");
    assert_eq!(capped.len(), 1);
    assert_eq!(capped[0]["held"], 2);
    assert_eq!(capped[0]["model"], JUDGE);
    let outcomes = column(&s, "SELECT outcome FROM gateway_calls ORDER BY id");
    assert_eq!(outcomes, ["ok", "refused"]);
    let text = digest(&report);
    assert!(text.contains("Judging stopped for the day: "), "{text}");
    let held = text.split("## Budget held\n\n").nth(1).unwrap();
    assert_eq!(
        held.lines().take_while(|l| l.starts_with("- [")).count(),
        2,
        "{text}"
    );
    // The report counts the judge's spend as auto-improve's.
    let report = oxi(&s, &["report", "--format", "json"]).json();
    assert_eq!(report["improve"]["spend_usd"], 0.05, "{report:#}");
    assert_eq!(report["improve"]["emitted"], 1, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_that_hangs_is_a_recorded_failure_and_the_scan_completes() {
    let server = MockModelServer::start(Script::new().then(Step::Hang))
        .await
        .unwrap();
    let s = sandbox(
        &server.base_url(),
        &posts(&SIX_POSTS[..2]),
        &format!("judge = \"{JUDGE}\""),
        "",
    );
    let report = scan(&s);
    assert_eq!(report["decisions"]["judge_failed"], 2, "{report:#}");
    assert_eq!(report["proposed"], 0);
    let failed = events(&s, "improve_judge_failed");
    assert!(
        failed[0]["cause"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{failed:?}"
    );
    // The hang switched the provider off: the second candidate is not sent at all.
    assert!(
        failed[1]["cause"]
            .as_str()
            .unwrap()
            .contains("is off until"),
        "{failed:?}"
    );
    assert_eq!(server.model_requests().len(), 1);
    assert_eq!(events(&s, "improve_scan_completed").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_dedup_skip_is_recorded_with_its_layer() {
    let server = MockModelServer::start(Script::new()).await.unwrap();
    let items: &[(u32, &str, Option<&str>)] = &[
        (11, "Supervisor  Budget caps for coding agents", None),
        (12, "Coding agents: budget caps for the supervisor", None),
        (
            13,
            "A ledger for coding agents with gateway prompt caching per role",
            Some("someone"),
        ),
        (
            14,
            "Ledger exports for coding agents under a supervisor",
            Some("someone"),
        ),
    ];
    let s = sandbox(
        &server.base_url(),
        &posts(items),
        "embeddings = \"lite:text-embedding-3-small\"",
        "",
    );
    oxi(&s, &["ingest"]).ok();
    let report = scan(&s);
    let d = &report["decisions"];
    assert_eq!(
        (
            d["staged"].as_u64(),
            d["skipped_identifier"].as_u64(),
            d["skipped_semantic"].as_u64(),
            d["skipped_temporal"].as_u64()
        ),
        (Some(1), Some(1), Some(1), Some(1)),
        "{report:#}"
    );
    assert!(report.get("semantic_off").is_none(), "{report:#}");
    let skipped = events(&s, "improve_candidate_skipped");
    let mut layers: Vec<&str> = skipped
        .iter()
        .map(|e| e["layer"].as_str().unwrap())
        .collect();
    layers.sort_unstable();
    assert_eq!(layers, ["identifier", "semantic", "temporal"]);
    let semantic = skipped.iter().find(|e| e["layer"] == "semantic").unwrap();
    assert!(
        semantic["detail"]
            .as_str()
            .unwrap()
            .contains("to task T0-1"),
        "{semantic}"
    );
    insta::assert_snapshot!("improve_dedup_digest", digest(&report));

    // The next scan skips the held-back post again against the earlier proposal.
    let again = scan(&s);
    assert_eq!(again["decisions"]["skipped_temporal"], 1, "{again:#}");
    assert_eq!(again["proposed"], 0, "{again:#}");

    // Without embeddings the semantic layer is off, and the digest and JSON say why.
    let plain = sandbox(&server.base_url(), &posts(items), "", "");
    oxi(&plain, &["ingest"]).ok();
    let report = scan(&plain);
    assert_eq!(report["semantic_off"], "no improve.embeddings is set");
    assert_eq!(report["decisions"]["skipped_semantic"], 0);
    assert!(digest(&report).contains("the semantic layer is off (no improve.embeddings is set)"));
    assert!(digest(&report).contains("Judge: none (no improve.judge is set)"));
}

#[test]
fn bad_judge_and_dedup_keys_name_file_line_and_key() {
    for (improve, key, says) in [
        (
            "judge = \"nowhere\"",
            "improve.judge",
            "is not provider:model",
        ),
        (
            "judge = \"other:m\"",
            "improve.judge",
            "no gateway provider \"other\"",
        ),
        (
            "min_relevance = 9",
            "improve.min_relevance",
            "between 1 and 5",
        ),
        (
            "min_concreteness = 0",
            "improve.min_concreteness",
            "between 1 and 5",
        ),
        (
            "similarity_threshold = 1.5",
            "improve.similarity_threshold",
            "at most 1",
        ),
        ("judge_top = 0", "improve.judge_top", "between 1 and 200"),
        (
            "temporal_window = \"0s\"",
            "improve.temporal_window",
            "more than zero",
        ),
    ] {
        let s = sandbox("http://127.0.0.1:9", "[]", improve, "");
        let run = s.oxi(&["improve", "scan"]);
        let err = run.fails_with(3).to_owned();
        assert!(
            err.contains("oxi.toml:") && err.contains(key) && err.contains(says),
            "{improve}\n{err}"
        );
    }
}
