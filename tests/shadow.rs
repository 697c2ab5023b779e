//! Shadow runs end to end through the binary with the fake worker: a sampled executor run is
//! also run on the `[shadow]` choice in a sibling worktree from the same commit, verified
//! there, paired and recorded (`shadow_pairs`, `shadow_observed`), its worktree removed, and
//! nothing of it delivered or pushed; an unsampled or opted-out run has no shadow; a shadow
//! that fails or finds its cap spent changes nothing about the primary; `oxi report` shows the
//! pairs and counts gateway spend; bad `[shadow]` keys are named by file, line and key.

use std::path::Path;

use oxi::ledger::{Ledger, TaskState};
use serde_json::Value;

use crate::support::{OxiToml, Sandbox, Worker, git};

const ROADMAP: &str =
    "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n";

/// `main` (Claude-flavoured) executes and reviews; `cheap` (codex-flavoured, priced gpt-5.5)
/// is the shadow; tier 0 checks hello.txt says hi.
fn toml(cheap: Worker, shadow: &str) -> OxiToml {
    OxiToml::new()
        .project()
        .raw("[run]\nmode = \"fast\"\nmax_parallel_jobs = 1\n")
        .worker(Worker::fake("main").scenario("edit"))
        .worker(cheap)
        .routing(&["main"], &["main"])
        .raw("[verify]\ntier0 = [{ name = \"says hi\", argv = [\"grep\", \"-qx\", \"hi\", \"hello.txt\"], timeout = \"30s\" }]\n")
        .raw(shadow)
}

fn repo(toml: &OxiToml) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write(".gitignore", ".oxi/\n");
    s.config(toml);
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    s
}

const ALWAYS: &str = "[shadow]\nworker = \"cheap\"\nsample = 1.0\ndaily_usd = 5.0\n";

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap()
}

fn tick(s: &Sandbox) -> Value {
    let out = s.oxi(&["tick", "--format", "json"]);
    out.ok();
    out.json()
}

fn rows(s: &Sandbox, sql: &str) -> Vec<Value> {
    let mut l = ledger(s);
    let conn = l.raw_connection();
    let mut stmt = conn.prepare(sql).unwrap();
    let names: Vec<String> = stmt.column_names().map(str::to_owned).collect();
    stmt.query_map([], |r| {
        let mut row = serde_json::Map::new();
        for (i, name) in names.iter().enumerate() {
            let value = match r.get_ref(i)? {
                rusqlite::types::ValueRef::Null => Value::Null,
                rusqlite::types::ValueRef::Integer(n) => Value::from(n),
                rusqlite::types::ValueRef::Real(f) => Value::from(f),
                rusqlite::types::ValueRef::Text(t) => {
                    Value::from(String::from_utf8_lossy(t).into_owned())
                }
                rusqlite::types::ValueRef::Blob(_) => Value::Null,
            };
            row.insert(name.clone(), value);
        }
        Ok(Value::Object(row))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn pairs(s: &Sandbox) -> Vec<Value> {
    rows(s, "SELECT * FROM shadow_pairs ORDER BY id")
}

fn shadow_runs(s: &Sandbox) -> Vec<Value> {
    rows(
        s,
        "SELECT * FROM runs WHERE role = 'shadow' ORDER BY started_at_ms",
    )
}

fn task_state(s: &Sandbox) -> TaskState {
    ledger(s).read().task("T0-1").unwrap().unwrap().state
}

fn files(pair: &Value, column: &str) -> Vec<String> {
    serde_json::from_str(pair[column].as_str().unwrap()).unwrap()
}

/// Every worktree git knows of, and every branch.
fn worktrees_and_branches(s: &Sandbox) -> (String, String) {
    (
        git(s.path(), &["worktree", "list", "--porcelain"]),
        git(s.path(), &["branch", "--list", "--format=%(refname)"]),
    )
}

#[test]
fn a_sampled_run_is_shadowed_in_a_sibling_worktree_and_the_pair_is_recorded() {
    let s = repo(&toml(Worker::fake_codex("cheap").scenario("edit"), ALWAYS));
    let report = tick(&s);
    assert_eq!(report["jobs"][0]["state"], "delivered", "{report:#}");
    assert_eq!(task_state(&s), TaskState::Delivered);

    let shadows = shadow_runs(&s);
    assert_eq!(shadows.len(), 1, "{shadows:#?}");
    let run = &shadows[0];
    assert_eq!(run["worker"], "cheap");
    assert_eq!(run["model"], "gpt-5.5");
    assert_eq!(run["status"], "finished");
    assert_eq!(run["classification"], "success");
    assert_eq!(run["task_id"], "T0-1");
    assert_eq!(run["branch"], Value::Null, "a shadow has no branch");
    let tree = run["worktree"].as_str().unwrap();
    assert!(tree.ends_with("t0-1-a1-shadow"), "{tree}");
    assert!(
        !Path::new(tree).exists(),
        "the shadow's worktree is removed"
    );
    // Its reservation settled like a run's.
    let spend = rows(
        &s,
        &format!(
            "SELECT status FROM spend WHERE run_id = '{}'",
            run["id"].as_str().unwrap()
        ),
    );
    assert_eq!(spend[0]["status"], "settled");

    let pairs = pairs(&s);
    assert_eq!(pairs.len(), 1, "{pairs:#?}");
    let pair = &pairs[0];
    assert_eq!(pair["rule"], "default");
    assert_eq!(pair["primary_run_id"], report["jobs"][0]["run_id"]);
    assert_eq!(pair["shadow_run_id"], run["id"]);
    assert_eq!(
        (&pair["primary_worker"], &pair["shadow_worker"]),
        (&Value::from("main"), &Value::from("cheap"))
    );
    assert_eq!(pair["primary_outcome"], "success");
    assert_eq!(pair["shadow_outcome"], "success");
    assert_eq!(
        (
            pair["primary_green"].as_i64(),
            pair["shadow_green"].as_i64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(files(pair, "primary_files"), ["hello.txt"]);
    assert_eq!(files(pair, "shadow_files"), ["hello.txt"]);
    assert_eq!(pair["overlap_files"], 1);
    assert_eq!(pair["shape_match"], 1);
    assert!(pair["shadow_tokens"].as_i64().unwrap() > 0, "{pair}");
    assert_eq!(pair["shadow_cost_microusd"], run["cost_microusd"]);

    // The event carries the same comparison.
    let events = rows(&s, "SELECT data FROM events WHERE kind = 'shadow_observed'");
    assert_eq!(events.len(), 1);
    let event: Value = serde_json::from_str(events[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(event["shape_match"], true);
    assert_eq!(event["overlap"], serde_json::json!(["hello.txt"]));
    assert_eq!(event["shadow"]["worker"], "cheap");
    assert_eq!(
        event["cost_delta_microusd"].as_i64().unwrap(),
        pair["shadow_cost_microusd"].as_i64().unwrap()
            - pair["primary_cost_microusd"].as_i64().unwrap()
    );

    // No worktree or branch of the shadow is left; the only branch oxi made is the task's.
    let (trees, branches) = worktrees_and_branches(&s);
    assert!(!trees.contains("-shadow"), "{trees}");
    assert_eq!(
        branches
            .lines()
            .filter(|b| b.starts_with("refs/heads/oxi/"))
            .count(),
        1,
        "{branches}"
    );

    // The report shows the pair in every format.
    let json = s.oxi(&["report", "--format", "json"]).json();
    let section = &json["shadow"];
    assert_eq!(section["pairs"], 1, "{section:#}");
    assert_eq!(section["compared"], 1);
    assert_eq!(section["agreement_rate"], 1.0);
    assert_eq!(section["by_route"][0]["rule"], "default");
    assert_eq!(section["by_route"][0]["shadow"], "cheap:gpt-5.5");
    assert_eq!(section["last"][0]["task_id"], "T0-1");
    assert!(
        json["spend_by_role_usd"]["shadow"].as_f64().unwrap() > 0.0,
        "{json:#}"
    );
    let table = s.oxi(&["report"]);
    let table = table.ok();
    assert!(table.contains("agreement (shape match)"), "{table}");
    assert!(table.contains("T0-1 a1 (default)"), "{table}");
    let markdown = s.oxi(&["report", "--format", "markdown"]);
    assert!(
        markdown.ok().contains("| shadow by rule |"),
        "{}",
        markdown.ok()
    );
    let html = s.oxi(&["report", "--format", "html"]);
    assert!(
        html.ok().contains("Shadow agreement (shape match)"),
        "{}",
        html.ok()
    );

    // `oxi show` has the pair in the task's history: both outcomes, shape_match, cost delta.
    let shown = s.oxi(&["show", "T0-1"]);
    let text = shown.ok();
    let line = text
        .lines()
        .find(|l| l.contains("shadow_observed"))
        .unwrap_or_else(|| panic!("no shadow pair in the history:\n{text}"));
    assert!(
        line.contains("shadow pair (default): shape_match true; primary main")
            && line.contains(" success green, 1 file(s), $")
            && line.contains("; shadow cheap:gpt-5.5 success green, 1 file(s), $")
            && line.contains("; cost delta "),
        "{line}"
    );
    let shown = s.oxi(&["show", "T0-1", "--format", "json"]).json();
    let observed: Vec<&Value> = shown["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "shadow_observed")
        .collect();
    assert_eq!(observed.len(), 1, "{shown:#}");
    assert_eq!(observed[0]["data"]["shape_match"], true);
}

#[test]
fn an_unsampled_or_opted_out_run_has_no_shadow() {
    // A share this small samples no attempt of this task (the sampler is a hash of task id
    // and attempt, so the outcome is fixed).
    let rare = "[shadow]\nworker = \"cheap\"\nsample = 0.000001\n";
    let s = repo(&toml(Worker::fake_codex("cheap").scenario("edit"), rare));
    assert_eq!(tick(&s)["jobs"][0]["state"], "delivered");
    assert!(shadow_runs(&s).is_empty());
    assert!(pairs(&s).is_empty());

    let skipped = "[shadow]\nworker = \"cheap\"\nsample = 1.0\nskip_rules = [\"default\"]\n";
    let s = repo(&toml(Worker::fake_codex("cheap").scenario("edit"), skipped));
    assert_eq!(tick(&s)["jobs"][0]["state"], "delivered");
    assert!(shadow_runs(&s).is_empty());

    // Off by default: no [shadow] table, no shadow.
    let s = repo(&toml(Worker::fake_codex("cheap").scenario("edit"), ""));
    assert_eq!(tick(&s)["jobs"][0]["state"], "delivered");
    assert!(shadow_runs(&s).is_empty());
    let json = s.oxi(&["report", "--format", "json"]).json();
    assert_eq!(json["shadow"]["pairs"], 0);
}

#[test]
fn a_shadow_that_fails_or_writes_elsewhere_changes_nothing_about_the_primary() {
    let s = repo(&toml(Worker::fake_codex("cheap").scenario("fail"), ALWAYS));
    let report = tick(&s);
    assert_eq!(report["jobs"][0]["state"], "delivered", "{report:#}");
    let pair = &pairs(&s)[0];
    assert_ne!(pair["shadow_outcome"], "success", "{pair}");
    assert_eq!(pair["shadow_green"], 0);
    assert_eq!(pair["primary_green"], 1);
    assert_eq!(pair["shape_match"], 0);

    // A shadow that succeeds on other files: verified (not green: hello.txt is not there),
    // never delivered.
    let elsewhere = Worker::fake_codex("cheap")
        .scenario("edit")
        .set_env("OXI_FAKE_FILE", "shadow.txt");
    let s = repo(&toml(elsewhere, ALWAYS));
    let report = tick(&s);
    assert_eq!(report["jobs"][0]["state"], "delivered", "{report:#}");
    let pair = &pairs(&s)[0];
    assert_eq!(pair["shadow_outcome"], "success");
    assert_eq!(files(pair, "shadow_files"), ["shadow.txt"]);
    assert_eq!(
        pair["shadow_green"], 0,
        "tier 0 ran in the shadow's worktree"
    );
    assert_eq!(pair["overlap_files"], 0);
    assert_eq!(pair["shape_match"], 0);
    let branch = report["jobs"][0]["branch"].as_str().unwrap();
    let tree = git(s.path(), &["ls-tree", "-r", "--name-only", branch]);
    assert!(!tree.contains("shadow.txt"), "{tree}");
}

#[test]
fn a_shadow_over_its_daily_cap_never_starts_and_is_recorded_so() {
    let capped = "[shadow]\nworker = \"cheap\"\nsample = 1.0\ndaily_usd = 0.0\n";
    let s = repo(&toml(Worker::fake_codex("cheap").scenario("edit"), capped));
    assert_eq!(tick(&s)["jobs"][0]["state"], "delivered");
    assert!(shadow_runs(&s).is_empty(), "no shadow run was admitted");
    let pair = &pairs(&s)[0];
    assert_eq!(pair["shadow_outcome"], "shadow_cap");
    assert_eq!(pair["shadow_run_id"], Value::Null);
    assert_eq!(pair["shape_match"], 0);
    let json = s.oxi(&["report", "--format", "json"]).json();
    assert_eq!(json["shadow"]["pairs"], 1);
    assert_eq!(json["shadow"]["compared"], 0);
    assert_eq!(json["shadow"]["agreement_rate"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_release_mode_the_shadow_is_never_pushed_nor_in_the_pull_request() {
    use oxi_testkit::fake_github::FakeGithub;
    const TOKEN: &str = "ghp_faketokenfortests000000000000000000";
    const REPO: &str = "acme/widgets";
    let s = Sandbox::git_repo();
    let bare_dir = tempfile::tempdir().unwrap();
    let bare = bare_dir.path().join("origin.git");
    git(
        bare_dir.path(),
        &["init", "-q", "--bare", "-b", "main", "origin.git"],
    );
    s.write("roadmap.md", ROADMAP);
    s.write(".gitignore", ".oxi/\n");
    let github = FakeGithub::start(REPO, TOKEN, bare.clone()).await.unwrap();
    let shadow = Worker::fake_codex("cheap")
        .scenario("edit")
        .set_env("OXI_FAKE_FILE", "shadow.txt");
    s.config(
        &toml(shadow, ALWAYS).raw(&format!(
                "[github]\nrepo = \"{REPO}\"\napi_url = \"{}\"\ntoken_env = \"OXI_TEST_GH_TOKEN\"\nretry_backoff = \"50ms\"\n",
                github.url()
            )),
    );
    // Release mode: the [run] table above says fast; replace it.
    let text = std::fs::read_to_string(s.file("oxi.toml"))
        .unwrap()
        .replace("mode = \"fast\"", "mode = \"release\"");
    s.write("oxi.toml", text);
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    git(
        s.path(),
        &["remote", "add", "origin", bare.to_str().unwrap()],
    );
    git(s.path(), &["push", "-q", "origin", "main"]);

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_oxi"))
        .args(["tick", "--format", "json"])
        .current_dir(s.path())
        .env("NO_COLOR", "1")
        .env("OXI_TEST_GH_TOKEN", TOKEN)
        .env_remove("GITHUB_TOKEN")
        .env_remove("GH_TOKEN")
        .output()
        .await
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["jobs"][0]["state"], "delivered", "{report:#}");
    assert_eq!(pairs(&s).len(), 1, "the shadow ran");

    // origin holds main and the task's branch, and no commit of either has the shadow's file.
    let refs = git(&bare, &["for-each-ref", "--format=%(refname)"]);
    assert_eq!(refs.lines().count(), 2, "{refs}");
    for r in refs.lines() {
        let tree = git(&bare, &["ls-tree", "-r", "--name-only", r]);
        assert!(!tree.contains("shadow.txt"), "{r}: {tree}");
    }
    let pulls = github.pulls();
    assert_eq!(pulls.len(), 1);
    let body = pulls[0]["body"].as_str().unwrap();
    assert!(!body.contains("shadow.txt"), "{body}");
    github.shutdown().await;
}

#[test]
fn bad_shadow_keys_are_named_by_file_line_and_key() {
    let cases = [
        (
            "[shadow]\nworker = \"gemini\"\nsample = 0.2\n",
            "shadow.worker",
            "gemini",
        ),
        (
            "[shadow]\nworker = \"claude\"\nsample = 1.5\n",
            "shadow.sample",
            "between 0 and 1",
        ),
        (
            "[shadow]\nsample = 0.5\n",
            "shadow.sample",
            "shadow.worker is not",
        ),
        (
            "[shadow]\nworker = \"claude\"\nmodel = \"o9\"\nsample = 0.2\n",
            "shadow.model",
            "no rate card",
        ),
        (
            "[shadow]\nworker = \"claude\"\nsample = 0.2\nrules = [\"nope\"]\n",
            "shadow.rules",
            "nope",
        ),
        (
            "[shadow]\nworker = \"claude\"\nsample = 0.2\ndaily_usd = 9999.0\n",
            "shadow.daily_usd",
            "caps.daily_usd",
        ),
        ("[shadow]\nworkr = \"claude\"\n", "workr", "unknown"),
    ];
    for (toml, key, says) in cases {
        let s = Sandbox::git_repo();
        s.write("oxi.toml", toml);
        s.write("roadmap.md", "- [ ] something\n");
        let out = s.oxi(&["status"]);
        let err = out.fails_with(3);
        assert!(err.contains("oxi.toml:"), "{toml}: {err}");
        assert!(err.contains(key), "{toml}: {err}");
        assert!(err.contains(says), "{toml}: {err}");
    }
}

#[test]
fn the_report_counts_gateway_spend_in_its_totals_and_per_role() {
    let s = repo(&toml(Worker::fake_codex("cheap").scenario("edit"), ""));
    assert_eq!(tick(&s)["jobs"][0]["state"], "delivered");
    let before = s.oxi(&["report", "--format", "json"]).json();
    let now = oxi::clock::now_ms();
    let (day, month) = (oxi::clock::day_of(now), oxi::clock::month_of(now));
    let mut l = ledger(&s);
    l.write(|q| {
        let id = q.begin_gateway_call(&oxi::ledger::NewGatewayCall {
            role: "triage",
            provider: "litellm",
            model: "claude-haiku-4-5",
            task_id: Some("T0-1"),
            day: &day,
            month: &month,
            reserve_microusd: 50_000,
            at_ms: now,
        })?;
        q.end_gateway_call(
            id,
            &oxi::ledger::GatewayCallEnd {
                outcome: "ok",
                cost_microusd: 25_000,
                cost_source: "header",
                tokens_in: 10,
                tokens_out: 5,
                attempts: 1,
                latency_ms: Some(3),
                error: None,
                at_ms: now,
            },
        )?;
        // One still in flight: held, not spent.
        q.begin_gateway_call(&oxi::ledger::NewGatewayCall {
            role: "screen",
            provider: "litellm",
            model: "claude-haiku-4-5",
            task_id: None,
            day: &day,
            month: &month,
            reserve_microusd: 7_000,
            at_ms: now,
        })?;
        Ok(())
    })
    .unwrap();
    // The scan (the property test's definition of spend) and the rollup agree, gateway and all.
    let q = l.read();
    let (rollup, scan) = (
        q.spend_totals(&day, &month).unwrap(),
        q.spend_totals_by_scan(&day, &month).unwrap(),
    );
    assert_eq!(rollup, scan);
    assert!(scan.day_reserved >= 7_000, "{scan:?}");
    drop(l);

    let after = s.oxi(&["report", "--format", "json"]).json();
    let delta = after["spend_usd"].as_f64().unwrap() - before["spend_usd"].as_f64().unwrap();
    assert!((delta - 0.025).abs() < 1e-9, "{delta}");
    assert_eq!(after["gateway_spend_usd"], 0.025);
    assert_eq!(after["spend_by_role_usd"]["triage"], 0.025);
    assert!(after["spend_by_role_usd"]["executor"].as_f64().unwrap() > 0.0);
    let table = s.oxi(&["report"]);
    assert!(table.ok().contains("triage $0.03"), "{}", table.ok());
}

/// The live CLIs against the mock model server: claude is the primary, codex the shadow, each
/// with its own scripted server (they run at once, so one script could not say who gets which
/// step). Each writes hello.txt; the requests show each CLI worked in its own worktree (the
/// shadow in the `-shadow` sibling), and the pair records both real runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_clis_run_the_shadow_in_a_sibling_worktree_and_are_paired() {
    use crate::support::live::{self, Cli, Scratch};
    use oxi_testkit::mock_model::{MockModelServer, Script, Step};
    let (Some(claude), Some(codex)) = (live::require(Cli::Claude), live::require(Cli::Codex))
    else {
        return;
    };
    let script = || {
        Script::steps([
            Step::write_file("hello.txt", "hi\n"),
            Step::text("Wrote hello.txt.\nOXI_RESULT {\"status\":\"done\"}"),
        ])
    };
    let primary_server = MockModelServer::start(script()).await.unwrap();
    let shadow_server = MockModelServer::start(script()).await.unwrap();
    let scratch = Scratch::new();
    std::fs::write(scratch.repo.join("roadmap.md"), ROADMAP).unwrap();
    std::fs::write(scratch.repo.join(".gitignore"), ".oxi/\n").unwrap();
    OxiToml::new()
        .project()
        .raw("[run]\nmode = \"fast\"\n")
        .worker(live::worker(Cli::Claude, "live", &claude, &primary_server))
        .worker(live::worker(Cli::Codex, "shadowcli", &codex, &shadow_server))
        .worker(Worker::fake("judge").scenario("review:approve"))
        .routing(&["live"], &["judge"])
        .raw("[verify]\ntier0 = [{ name = \"says hi\", argv = [\"grep\", \"-qx\", \"hi\", \"hello.txt\"], timeout = \"30s\" }]\n")
        .raw("[shadow]\nworker = \"shadowcli\"\nsample = 1.0\ndaily_usd = 5.0\n")
        .write_in(&scratch.repo);
    git(&scratch.repo, &["add", "-A"]);
    git(&scratch.repo, &["commit", "-q", "-m", "oxi setup"]);

    let output = tokio::time::timeout(
        live::HARD_TIMEOUT * 2,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_oxi"))
            .args(["tick", "--format", "json"])
            .current_dir(&scratch.repo)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &scratch.home)
            .env("LANG", "C.UTF-8")
            .env("NO_COLOR", "1")
            .env("ANTHROPIC_API_KEY", "sk-test-live-key")
            .env("MOCK_API_KEY", "sk-test-live-key")
            .env("CODEX_HOME", &scratch.codex_home)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("oxi tick finishes")
    .expect("oxi runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(
        report["jobs"][0]["state"], "delivered",
        "{report:#}\n{stderr}"
    );

    let mut ledger = Ledger::open_existing(&scratch.repo.join(".oxi/ledger.db")).unwrap();
    let conn = ledger.raw_connection();
    let (shadow_tree, shadow_class, shadow_kind): (String, String, String) = conn
        .query_row(
            "SELECT worktree, classification, worker_kind FROM runs WHERE role = 'shadow'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (shadow_class.as_str(), shadow_kind.as_str()),
        ("success", "codex")
    );
    assert!(shadow_tree.ends_with("-shadow"), "{shadow_tree}");
    assert!(!Path::new(&shadow_tree).exists(), "removed after");
    let (primary_green, shadow_green, shape, shadow_tokens): (i64, i64, i64, i64) = conn
        .query_row(
            "SELECT primary_green, shadow_green, shape_match, shadow_tokens FROM shadow_pairs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((primary_green, shadow_green, shape), (1, 1, 1));
    assert!(shadow_tokens > 0);

    // Each CLI told its model where it worked: the shadow its sibling, the primary its own.
    let cwd_of = |server: &MockModelServer| {
        serde_json::to_string(&server.model_requests()[0].body).unwrap_or_default()
    };
    let (primary_seen, shadow_seen) = (cwd_of(&primary_server), cwd_of(&shadow_server));
    assert!(shadow_seen.contains("t0-1-a1-shadow"), "{shadow_seen}");
    assert!(primary_seen.contains("t0-1-a1"), "{primary_seen}");
    assert!(!primary_seen.contains("t0-1-a1-shadow"), "{primary_seen}");
    primary_server.shutdown().await.unwrap();
    shadow_server.shutdown().await.unwrap();
}
