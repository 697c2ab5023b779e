//! Routing rules end to end through the binary: each `when` clause, first match wins, the
//! default chain, `oxi route`'s explanation, the model override reaching the worker's argv,
//! the route recorded on the run, in state.json and by `oxi show`/`oxi tasks`/`oxi plan`, and
//! every bad `[routing]` named by file, line and key.

use oxi::ledger::Ledger;
use serde_json::Value;

use crate::support::release_world::{Setup, World};
use crate::support::{OxiToml, Sandbox, Worker, git};

/// One task per clause, plus one that matches two rules and one that matches none.
const ROADMAP: &str = "# Roadmap

## Tier 0

**T0-1 · Hotfix the login page**
Labels: urgent, web
Fix `web/login.html`.

**T0-2 · Stabilise the suite**
Some flaky test in the runner fails one time in ten.

## Tier 1

**T1-1 · Restyle the header**
Touch `web/header.css`.

**T1-2 · Count the queue**
Add a counter to `src/queue.rs`.

## Tier 2

**T2-1 · Update the Docs index**
Write `notes/docs.md` listing the docs.

## Milestone M1 — \"Launch\"

- **LCH-1 Launch checklist** (everything before launch)
";

/// The rules, in order. `urgent web` comes before `web files`, so T0-1 (which both match)
/// shows first match wins.
const RULES: &str = r#"[[routing.rules]]
name = "urgent web"
when = { priority_tier = [0, 1], labels = ["Urgent"] }
executor = ["offline"]
reviewer = ["offline:claude-haiku-4-5"]

[[routing.rules]]
name = "web files"
when = { files = ["web/**"] }
executor = ["cheap"]

[[routing.rules]]
name = "flaky"
when = { body = "(?i)flaky test" }
executor = ["cheap:gpt-5.5-mini"]

[[routing.rules]]
name = "docs go to codex"
when = { priority_tier = 2, title = "(?i)\\bdoc" }
executor = ["cheap:gpt-5.5-mini", "offline:claude-haiku-4-5"]

[[routing.rules]]
name = "launch"
when = { section = "Launch" }
executor = ["offline:claude-haiku-4-5"]

[rates."gpt-5.5-mini"]
input_per_mtok = 0.25
output_per_mtok = 2.0

[rates."claude-haiku-4-5"]
input_per_mtok = 1.0
output_per_mtok = 5.0
"#;

fn toml(rules: &str) -> OxiToml {
    OxiToml::new()
        .raw("[run]\nmode = \"fast\"\nmax_parallel_jobs = 1\n")
        .worker(Worker::fake("offline").scenario("demo"))
        .worker(Worker::fake_codex("cheap").scenario("demo"))
        .routing(&["offline"], &["offline"])
        .raw("[verify]\ntier0 = [{ name = \"notes exist\", argv = [\"test\", \"-d\", \"notes\"], timeout = \"30s\" }]\n")
        .raw(rules)
}

fn repo(rules: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write("notes/README.md", "# Notes\n");
    s.write(".gitignore", ".oxi/\n");
    s.config(&toml(rules));
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s.oxi(&["ingest"]).ok();
    s
}

fn route(s: &Sandbox, task: &str) -> Value {
    let out = s.oxi(&["route", task, "--format", "json"]);
    out.ok();
    out.json()
}

/// The chain (as written) one role routes to, and the route it comes from.
fn chain(report: &Value, role: &str) -> (String, Vec<String>) {
    let entry = report["chains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"] == role)
        .unwrap();
    (
        entry["route"].as_str().unwrap().to_owned(),
        entry["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect(),
    )
}

/// (clause, found) of the matched rule's clauses.
fn matched(report: &Value) -> Vec<(String, String)> {
    report["matched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["clause"].as_str().unwrap().to_owned(),
                c["found"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A task, the rule it routes by, and (clause, found) of each clause that matched.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

#[test]
fn each_clause_matches_and_the_first_matching_rule_wins() {
    let s = repo(RULES);
    let cases: [Case; 5] = [
        // Both `urgent web` and `web files` match; the first wins.
        (
            "T0-1",
            "urgent web",
            &[("priority_tier", "0"), ("labels", "urgent")],
        ),
        ("T1-1", "web files", &[("files", "web/header.css")]),
        ("T0-2", "flaky", &[("body", "flaky test")]),
        (
            "T2-1",
            "docs go to codex",
            &[("priority_tier", "2"), ("title", "Doc")],
        ),
        ("LCH-1", "launch", &[("section", "Launch")]),
    ];
    for (task, rule, clauses) in cases {
        let report = route(&s, task);
        assert_eq!(report["rule"], rule, "{task}: {report:#}");
        let want: Vec<(String, String)> = clauses
            .iter()
            .map(|(c, f)| ((*c).to_owned(), (*f).to_owned()))
            .collect();
        assert_eq!(matched(&report), want, "{task}: {report:#}");
    }
    // The roles a rule leaves out keep the default chain.
    let report = route(&s, "T1-1");
    assert_eq!(
        chain(&report, "executor"),
        ("web files".to_owned(), vec!["cheap".to_owned()])
    );
    assert_eq!(
        chain(&report, "reviewer"),
        ("default".to_owned(), vec!["offline".to_owned()])
    );
    let report = route(&s, "T0-1");
    assert_eq!(
        chain(&report, "reviewer"),
        (
            "urgent web".to_owned(),
            vec!["offline:claude-haiku-4-5".to_owned()]
        )
    );
    // Earlier rules that did not match say which clause failed on what.
    let report = route(&s, "T2-1");
    let skipped: Vec<(&str, &str, &str)> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["rule"].as_str().unwrap(),
                k["failed"]["clause"].as_str().unwrap(),
                k["failed"]["found"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            ("urgent web", "priority_tier", "2"),
            ("web files", "files", "notes/docs.md"),
            ("flaky", "body", "Write `notes/docs.md` listing the docs."),
        ]
    );
}

#[test]
fn a_gateway_choice_routes_to_a_provider_the_gateway_table_names() {
    let s = repo(
        "[gateway.providers.litellm]\nkind = \"litellm\"\nbase_url = \"http://127.0.0.1:9\"\n\n\
         [[routing.rules]]\nname = \"urgent triage\"\nwhen = { priority_tier = 0 }\n\
         triage = [\"litellm:claude-haiku-4-5\"]\n",
    );
    let report = route(&s, "T0-1");
    assert_eq!(report["rule"], "urgent triage");
    assert_eq!(
        chain(&report, "triage"),
        (
            "urgent triage".to_owned(),
            vec!["litellm:claude-haiku-4-5".to_owned()]
        )
    );
}

#[test]
fn a_task_no_rule_matches_takes_the_default_chains() {
    let s = repo(RULES);
    let report = route(&s, "t1-2");
    assert_eq!(report["task"], "T1-2");
    assert_eq!(report["rule"], "default");
    assert_eq!(matched(&report), []);
    assert_eq!(report["skipped"].as_array().unwrap().len(), 5);
    assert_eq!(
        chain(&report, "executor"),
        ("default".to_owned(), vec!["offline".to_owned()])
    );
    assert_eq!(chain(&report, "triage"), ("default".to_owned(), vec![]));
}

#[test]
fn oxi_route_explains_the_match_in_a_table() {
    let s = repo(RULES);
    insta::assert_snapshot!("route_docs_task", s.oxi(&["route", "T2-1"]).ok());
    insta::assert_snapshot!("route_default_task", s.oxi(&["route", "T1-2"]).ok());
    let missing = s.oxi(&["route", "T9-9"]);
    assert!(missing.fails_with(2).contains("T9-9"), "{}", missing.stderr);
}

#[test]
fn plan_and_tasks_show_the_route_when_rules_exist() {
    let s = repo(RULES);
    let plan = s.oxi(&["plan", "--format", "json"]);
    plan.ok();
    let routes: Vec<(String, String)> = plan
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_owned(),
                p["route"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        routes.contains(&("T2-1".to_owned(), "docs go to codex".to_owned())),
        "{routes:?}"
    );
    assert!(
        routes.contains(&("T1-2".to_owned(), "default".to_owned())),
        "{routes:?}"
    );
    let table = s.oxi(&["plan"]);
    assert!(table.ok().contains("ROUTE"), "{}", table.stdout);
    assert!(
        table.stdout.contains("docs go to codex"),
        "{}",
        table.stdout
    );

    let tasks = s.oxi(&["tasks", "--format", "json"]);
    tasks.ok();
    let t01 = tasks
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "T0-1")
        .cloned()
        .unwrap();
    assert_eq!(t01["route"], "urgent web");
    assert!(s.oxi(&["tasks"]).ok().contains("urgent web"));

    // Without rules every task routes by the default: no column.
    let plain = repo("");
    assert!(!plain.oxi(&["plan"]).ok().contains("ROUTE"));
    assert!(!plain.oxi(&["tasks"]).ok().contains("ROUTE"));
}

/// The docs rule's executor is `cheap:gpt-5.5-mini`; only T2-1 is left eligible by cancelling
/// the others, so one tick runs it.
fn run_docs_task(rules: &str) -> (Sandbox, Value) {
    let s = repo(rules);
    for id in ["T0-1", "T0-2", "T1-1", "T1-2", "LCH-1"] {
        s.oxi(&["cancel", id]).ok();
    }
    let out = s.oxi(&["tick", "--format", "json"]);
    out.ok();
    let report = out.json();
    (s, report)
}

#[test]
fn the_model_override_reaches_the_workers_argv_and_the_choice_is_recorded() {
    let (s, report) = run_docs_task(RULES);
    let job = &report["jobs"][0];
    assert_eq!(job["task_id"], "T2-1", "{report:#}");
    assert_eq!(job["worker"], "cheap", "{report:#}");
    let run_id = job["run_id"].as_str().unwrap();

    // The argv the worker got names the rule's model, not the worker's own.
    let meta: Value =
        serde_json::from_str(&s.read(&format!(".oxi/runs/{run_id}/meta.json"))).unwrap();
    let argv: Vec<&str> = meta["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = argv.iter().position(|a| *a == "--model").unwrap();
    assert_eq!(argv[at + 1], "gpt-5.5-mini", "{argv:?}");
    assert!(!argv.contains(&"gpt-5.5"), "{argv:?}");

    // The run row: its route and model.
    let ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let run = ledger.read().run(run_id).unwrap().unwrap();
    assert_eq!(run.route.as_deref(), Some("docs go to codex"));
    assert_eq!(run.model.as_deref(), Some("gpt-5.5-mini"));

    // state.json (what the pull request body reads).
    let state: Value =
        serde_json::from_str(&s.read(&format!(".oxi/runs/{run_id}/state.json"))).unwrap();
    assert_eq!(
        state["route"]["executor"],
        serde_json::json!({ "route": "docs go to codex", "worker": "cheap", "model": "gpt-5.5-mini" })
    );
    assert_eq!(state["route"]["reviewer"]["route"], "default");

    // oxi show: a route column, and the run's JSON.
    let show = s.oxi(&["show", "T2-1"]);
    assert!(
        show.ok().contains("docs go to codex (gpt-5.5-mini)"),
        "{}",
        show.stdout
    );
    let shown = s.oxi(&["show", "T2-1", "--format", "json"]);
    shown.ok();
    assert_eq!(shown.json()["runs"][0]["run"]["route"], "docs go to codex");
}

#[test]
fn a_rate_limited_choice_falls_back_to_the_next_in_the_rules_chain() {
    let limited = Worker::fake("limited").scenario("rate-limited").to_toml();
    let rules = RULES
        .replace(
            "[[routing.rules]]\nname = \"docs go to codex\"",
            &format!("{limited}\n[[routing.rules]]\nname = \"docs go to codex\""),
        )
        .replace(
            "executor = [\"cheap:gpt-5.5-mini\", \"offline:claude-haiku-4-5\"]",
            "executor = [\"limited:claude-haiku-4-5\", \"offline:claude-haiku-4-5\"]",
        );
    let (s, first) = run_docs_task(&rules);
    assert_eq!(first["jobs"][0]["worker"], "limited", "{first:#}");
    // The retry waits out its backoff; the operator sends it now.
    s.oxi(&["retry", "T2-1"]).ok();
    let out = s.oxi(&["tick", "--format", "json"]);
    out.ok();
    let second = out.json();
    assert_eq!(second["jobs"][0]["worker"], "offline", "{second:#}");
    let ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let runs = ledger.read().runs_for_task("T2-1").unwrap();
    let chosen: Vec<(&str, Option<&str>, Option<&str>)> = runs
        .iter()
        .map(|r| (r.worker.as_str(), r.model.as_deref(), r.route.as_deref()))
        .collect();
    assert_eq!(
        chosen,
        [
            (
                "limited",
                Some("claude-haiku-4-5"),
                Some("docs go to codex")
            ),
            (
                "offline",
                Some("claude-haiku-4-5"),
                Some("docs go to codex")
            ),
        ]
    );
}

fn config_error(extra: &str) -> String {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.config(&toml(extra));
    s.oxi(&["status"]).fails_with(3).trim_end().to_owned()
}

#[test]
fn a_bad_routing_table_names_file_line_and_key() {
    let rule = |body: &str| format!("[[routing.rules]]\nname = \"r\"\n{body}\n");
    let cases = [
        ("unknown_worker", rule("executor = [\"gemini\"]")),
        ("unknown_model", rule("executor = [\"cheap:gpt-9\"]")),
        (
            "unknown_provider",
            rule("triage = [\"litellm:claude-haiku-4-5\"]"),
        ),
        (
            "gateway_role_needs_provider_and_model",
            rule("screen = [\"offline\"]"),
        ),
        ("unknown_role", rule("critic = [\"offline\"]")),
        (
            "bad_regex",
            rule("when = { title = \"(unclosed\" }\nexecutor = [\"offline\"]"),
        ),
        (
            "bad_glob",
            rule("when = { files = [\"src/*.rs\", \"web/[\"] }\nexecutor = [\"offline\"]"),
        ),
        ("empty_chain", rule("executor = []")),
        ("no_chain", rule("when = { priority_tier = 1 }")),
        (
            "unknown_clause",
            rule("when = { milestone = \"M1\" }\nexecutor = [\"offline\"]"),
        ),
        (
            "duplicate_name",
            format!(
                "{}\n{}",
                rule("executor = [\"offline\"]"),
                rule("executor = [\"cheap\"]")
            ),
        ),
    ];
    let mut out = String::new();
    for (name, extra) in &cases {
        out.push_str(&format!("== {name}\n{}\n", config_error(extra)));
    }
    // A gateway role at the top of [routing] is checked like a rule's.
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.config(
        &OxiToml::new()
            .worker(Worker::fake("offline"))
            .raw("[routing]\nexecutor = [\"offline\"]\nreviewer = [\"offline\"]\nsummary = [\"openrouter:qwen/qwen3:free\"]\n"),
    );
    out.push_str(&format!(
        "== default_gateway_role\n{}\n",
        s.oxi(&["status"]).fails_with(3).trim_end()
    ));
    insta::assert_snapshot!("routing_config_errors", out);
}

#[test]
fn the_examples_promotion_recipe_parses_once_uncommented() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("oxi.toml.example");
    let example = std::fs::read_to_string(path).unwrap();
    // As its comment says: delete `rules = []`, uncomment the rule and the two cards.
    let mut text = String::new();
    let mut in_recipe = false;
    for line in example.lines() {
        if line == "rules = []" {
            continue;
        }
        let uncommented = line.strip_prefix("# ");
        if matches!(uncommented, Some(l) if l == "[[routing.rules]]" || l.starts_with("[rates.\"gpt-5.5-mini\"]"))
        {
            in_recipe = true;
        }
        match uncommented {
            Some(l) if in_recipe && !l.is_empty() && !l.starts_with(char::is_uppercase) => {
                text.push_str(l);
            }
            _ => {
                in_recipe = false;
                text.push_str(line);
            }
        }
        text.push('\n');
    }
    let config = oxi::config::parse(&text, "oxi.toml.example").unwrap();
    let rule = &config.routing.rules[0];
    assert_eq!(rule.name, "docs go to codex");
    assert_eq!(
        rule.executor.as_ref().unwrap().0,
        ["codex:gpt-5.5-mini", "claude:claude-haiku-4-5"]
    );
    assert!(config.rates.contains_key("claude-haiku-4-5"));
}

/// Release mode: the pull request body names the route, the worker and the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_request_body_names_the_route() {
    let w = World::start(Setup {
        roadmap: Some(
            "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n",
        ),
        reviewer: "fake",
        tables: "[[routing.rules]]\nname = \"greetings\"\nwhen = { files = [\"*.txt\"] }\nexecutor = [\"fake:claude-haiku-4-5\"]\n\n[rates.\"claude-haiku-4-5\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 5.0\n",
        ..Setup::default()
    })
    .await;
    let out = w.oxi(&["tick", "--format", "json"]).await;
    assert!(out.code == 0, "{}\n{}", out.stdout, out.stderr);
    let pulls = w.github.pulls();
    assert_eq!(pulls.len(), 1, "{}", out.stdout);
    let body = pulls[0]["body"].as_str().unwrap();
    assert!(
        body.contains("Route: `greetings` → fake (claude-haiku-4-5)"),
        "{body}"
    );
}
