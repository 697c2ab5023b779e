//! The inference gateway through the binary (`oxi gateway test`, `oxi gateway calls`,
//! `oxi doctor`, `oxi tick`) against the mock model server: each cost path, `"stream": false`
//! on every request the server saw, retries on 429 and 5xx, a hang ending in a timeout, the
//! caps (and releasing a failed call's reservation), a provider that is down, bad config.

use oxi::ledger::Ledger;
use oxi_testkit::mock_model::{ChatCost, MockModelServer, Script, Step};
use serde_json::Value;

use crate::support::{OxiToml, Run, Sandbox, Worker, git};

const KEY_VAR: &str = "OXI_TEST_GATEWAY_KEY";
const KEY: &str = "sk-test-gateway-key-0000";

/// `[gateway.providers.NAME]` of `kind` at `base_url`, plus `extra` TOML lines.
fn provider(name: &str, kind: &str, base_url: &str, extra: &str) -> String {
    format!(
        "[gateway.providers.{name}]\nkind = \"{kind}\"\nbase_url = \"{base_url}\"\nkey_env = \"{KEY_VAR}\"\ntimeout = \"5s\"\n{extra}\n"
    )
}

fn sandbox(config: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", "- [ ] something\n");
    s.config(&OxiToml::new().project().raw(config));
    s
}

/// Runs oxi on this (multi-threaded) runtime's blocking side, so the mock keeps serving.
fn oxi(s: &Sandbox, args: &[&str]) -> Run {
    tokio::task::block_in_place(|| s.oxi_env(args, &[(KEY_VAR, KEY)]))
}

fn test_call(s: &Sandbox, extra: &[&str]) -> Run {
    let mut args = vec!["gateway", "test", "--format", "json"];
    args.extend_from_slice(extra);
    oxi(s, &args)
}

/// The invariant the gateway is built on: no request body ever asks to stream.
fn assert_never_streamed(server: &MockModelServer) {
    let requests = server.model_requests();
    assert!(!requests.is_empty(), "the server saw no chat request");
    for request in requests {
        assert_eq!(
            request.body["stream"],
            Value::Bool(false),
            "{} {}: {}",
            request.method,
            request.path,
            request.body
        );
    }
}

fn ledger(s: &Sandbox) -> Ledger {
    Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap()
}

fn calls(s: &Sandbox) -> Vec<Value> {
    let run = oxi(s, &["gateway", "calls", "--format", "json"]);
    run.ok();
    run.json().as_array().unwrap().clone()
}

fn events(s: &Sandbox, kind: &str) -> Vec<Value> {
    let mut ledger = ledger(s);
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

/// Today's held (reserved, unsettled) money across runs and gateway calls.
fn held_today(s: &Sandbox) -> i64 {
    let now = oxi::clock::now_ms();
    let totals = ledger(s)
        .read()
        .spend_totals(&oxi::clock::day_of(now), &oxi::clock::month_of(now))
        .unwrap();
    totals.day_reserved
}

fn spent_today(s: &Sandbox) -> i64 {
    let now = oxi::clock::now_ms();
    ledger(s)
        .read()
        .spend_totals(&oxi::clock::day_of(now), &oxi::clock::month_of(now))
        .unwrap()
        .day_spent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn litellm_cost_comes_from_its_header() {
    let server = MockModelServer::start(
        Script::steps([Step::text("hello from the proxy")])
            .chat_cost(ChatCost::LitellmHeader("0.000321".into())),
    )
    .await
    .unwrap();
    let s = sandbox(&provider("lite", "litellm", &server.base_url(), ""));
    let run = test_call(&s, &["--model", "claude-haiku-4-5", "--prompt", "say hi"]);
    run.ok();
    let out = run.json();
    assert_eq!(out["answer"], "hello from the proxy");
    assert_eq!(out["cost_source"], "header");
    assert_eq!(out["cost_microusd"], 321);
    assert_eq!(
        (out["tokens_in"].clone(), out["tokens_out"].clone()),
        (1400.into(), 50.into())
    );
    assert_eq!(out["attempts"], 1);
    let request = &server.model_requests()[0];
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.header("authorization"), Some("<redacted>"));
    assert_eq!(request.body["model"], "claude-haiku-4-5");
    assert_eq!(request.body["messages"][0]["content"], "say hi");
    assert_never_streamed(&server);
    let rows = calls(&s);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (
            row["role"].as_str(),
            row["provider"].as_str(),
            row["status"].as_str(),
            row["outcome"].as_str()
        ),
        (Some("test"), Some("lite"), Some("settled"), Some("ok"))
    );
    assert_eq!(row["cost_microusd"], 321);
    assert_eq!(row["tokens_in"], 1400);
    assert!(row["latency_ms"].as_i64().is_some());
    // The call's cost is the day's spend; nothing stays held.
    assert_eq!((spent_today(&s), held_today(&s)), (321, 0));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openrouter_cost_comes_from_usage_cost_and_xai_from_the_rate_card() {
    let server = MockModelServer::start(Script::new().chat_cost(ChatCost::OpenRouterBody(0.0042)))
        .await
        .unwrap();
    let base = format!("{}/api/v1", server.base_url());
    let s = sandbox(&provider("or", "openrouter", &base, ""));
    let run = test_call(&s, &["--model", "meta-llama/llama-3.3-70b-instruct"]);
    run.ok();
    let out = run.json();
    assert_eq!(
        (out["cost_source"].as_str(), out["cost_microusd"].as_i64()),
        (Some("body"), Some(4200))
    );
    assert_eq!(server.model_requests()[0].path, "/api/v1/chat/completions");
    assert_never_streamed(&server);
    server.shutdown().await.unwrap();

    let server = MockModelServer::start(Script::new()).await.unwrap();
    let s = sandbox(&provider("grok", "xai", &server.openai_base_url(), ""));
    let out = test_call(&s, &["--model", "grok-4-fast"]);
    out.ok();
    // grok-4-fast at $0.20 / $0.05 cached / $0.50 per Mtok: 1,200 plain and 200 cached in,
    // 30 out and 20 reasoning: 240 + 10 + 15 + 10 micro-dollars.
    let out = out.json();
    assert_eq!(
        (out["cost_source"].as_str(), out["cost_microusd"].as_i64()),
        (Some("card"), Some(275))
    );
    // A model with no card and no reported cost is charged what the call held.
    let out = test_call(&s, &["--model", "grok-9-unpriced"]);
    out.ok();
    let out = out.json();
    assert_eq!(
        (out["cost_source"].as_str(), out["cost_microusd"].as_i64()),
        (Some("reserve"), Some(50_000))
    );
    let text = oxi(&s, &["gateway", "test", "--model", "grok-4-fast"]);
    let text = text.ok();
    assert!(
        text.contains("card: priced with the model's rate card"),
        "{text}"
    );
    assert_never_streamed(&server);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after_and_a_500_a_bounded_number_of_times() {
    let server = MockModelServer::start(
        Script::steps([Step::status(429, Some(1)), Step::text("after the wait")])
            .fallback(Step::status(500, None)),
    )
    .await
    .unwrap();
    let s = sandbox(&provider(
        "lite",
        "litellm",
        &server.base_url(),
        "retries = 2\n",
    ));
    let out = test_call(&s, &["--model", "m"]);
    out.ok();
    assert_eq!(out.json()["answer"], "after the wait");
    assert_eq!(out.json()["attempts"], 2);
    assert_eq!(server.model_requests().len(), 2);

    // Every answer is now a 500: one try and two retries, then the call fails and holds
    // nothing.
    let err = test_call(&s, &["--model", "m"]);
    let stderr = err.fails_with(1);
    assert!(stderr.contains("answered HTTP 500"), "{stderr}");
    assert_eq!(server.model_requests().len(), 2 + 3);
    let row = &calls(&s)[0];
    assert_eq!(
        (
            row["outcome"].as_str(),
            row["status"].as_str(),
            row["attempts"].as_i64(),
            row["cost_microusd"].as_i64()
        ),
        (Some("error"), Some("released"), Some(3), Some(0))
    );
    assert_eq!(held_today(&s), 0, "a failed call's reservation is released");
    assert_never_streamed(&server);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_allowed_fails_at_once() {
    let server = MockModelServer::start(Script::steps([Step::status(429, Some(3600))]))
        .await
        .unwrap();
    let s = sandbox(&provider(
        "lite",
        "litellm",
        &server.base_url(),
        "max_retry_wait = \"30s\"\n",
    ));
    let stderr = test_call(&s, &["--model", "m"]).fails_with(1).to_owned();
    assert!(stderr.contains("asked to retry after 3600s"), "{stderr}");
    assert_eq!(server.model_requests().len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_ends_in_a_timeout() {
    let server = MockModelServer::start(Script::new().fallback(Step::Hang))
        .await
        .unwrap();
    let s = sandbox(
        &provider(
            "lite",
            "litellm",
            &server.base_url(),
            "retries = 1\ntimeout = \"1s\"\n",
        )
        .replace("timeout = \"5s\"\n", ""),
    );
    let stderr = test_call(&s, &["--model", "m"]).fails_with(1).to_owned();
    assert!(stderr.contains("no answer within 1s"), "{stderr}");
    // The one retry a timeout earns, and no more.
    assert_eq!(server.model_requests().len(), 2);
    let row = &calls(&s)[0];
    assert_eq!(
        (row["outcome"].as_str(), row["attempts"].as_i64()),
        (Some("error"), Some(2))
    );
    assert_eq!(held_today(&s), 0);
    assert_never_streamed(&server);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_count_against_the_day_and_each_roles_cap() {
    let server =
        MockModelServer::start(Script::new().chat_cost(ChatCost::LitellmHeader("0.02".into())))
            .await
            .unwrap();
    let config = format!(
        "{}[caps]\njob_usd = 0.05\ndaily_usd = 0.06\ndaily_soft_warn_usd = 0.01\nestimate_floor_usd = 0.01\n\n[gateway.caps]\ncall_reserve_usd = 0.05\ntriage_daily_usd = 0.01\n",
        provider("lite", "litellm", &server.base_url(), "")
    );
    let s = sandbox(&config);
    // The triage role's own cap is below one call's reservation: refused, nothing sent.
    let stderr = test_call(&s, &["--model", "m", "--role", "triage"])
        .fails_with(6)
        .to_owned();
    assert!(stderr.contains("gateway.caps.triage_daily_usd"), "{stderr}");
    assert!(server.model_requests().is_empty());
    test_call(&s, &["--model", "m"]).ok();
    assert_eq!(spent_today(&s), 20_000);
    // $0.02 spent + $0.05 held would cross the $0.06 day: refused before anything is sent.
    let stderr = test_call(&s, &["--model", "m"]).fails_with(6).to_owned();
    assert!(stderr.contains("daily spend cap $0.06"), "{stderr}");
    assert_eq!(server.model_requests().len(), 1);
    let rows = calls(&s);
    let outcomes: Vec<_> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["refused", "ok", "refused"]);
    assert_eq!(events(&s, "budget_refused")[0]["worker"], "gateway:lite");
    assert_eq!(held_today(&s), 0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_each_provider_unless_offline() {
    let server = MockModelServer::start(Script::new()).await.unwrap();
    let config = format!(
        "{}{}",
        provider("lite", "litellm", &server.base_url(), ""),
        provider("grok", "xai", &server.openai_base_url(), "")
    );
    let s = sandbox(&config);
    let run = oxi(&s, &["doctor", "--format", "json"]);
    let checks = run.json()["checks"].as_array().unwrap().clone();
    let check = |name: &str| checks.iter().find(|c| c["name"] == name).cloned().unwrap();
    let lite = check("gateway lite");
    assert_eq!(lite["status"], "ok", "{lite}");
    assert!(
        lite["detail"]
            .as_str()
            .unwrap()
            .contains("proxy healthy, 2 models listed"),
        "{lite}"
    );
    assert_eq!(check("gateway grok")["status"], "ok");
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.contains(&"/health/readiness".to_owned()), "{paths:?}");
    assert_eq!(
        paths.iter().filter(|p| p.as_str() == "/v1/models").count(),
        2,
        "{paths:?}"
    );
    // No model was asked anything: a doctor run costs nothing.
    assert!(server.model_requests().is_empty());

    let before = server.requests().len();
    let run = tokio::task::block_in_place(|| {
        s.oxi_env(
            &["doctor", "--format", "json"],
            &[("OXI_INFERENCE_OFFLINE", "1")],
        )
    });
    let checks = run.json()["checks"].as_array().unwrap().clone();
    let lite = checks.iter().find(|c| c["name"] == "gateway lite").unwrap();
    assert_eq!(lite["status"], "warn");
    assert!(
        lite["detail"]
            .as_str()
            .unwrap()
            .contains("OXI_INFERENCE_OFFLINE=1")
    );
    assert_eq!(server.requests().len(), before, "offline: no request");

    // Without its key, the provider fails with the variable to export.
    let run = tokio::task::block_in_place(|| s.oxi(&["doctor", "--format", "json"]));
    let checks = run.json()["checks"].as_array().unwrap().clone();
    let lite = checks.iter().find(|c| c["name"] == "gateway lite").unwrap();
    assert_eq!(lite["status"], "fail");
    assert!(
        lite["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("export {KEY_VAR}")),
        "{lite}"
    );
    server.shutdown().await.unwrap();
}

/// A port nothing listens on.
fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_is_down_turns_its_features_off_and_the_tick_goes_on() {
    let s = Sandbox::git_repo();
    s.write(
        "roadmap.md",
        "# Roadmap\n\n## Tier 0\n\n**T0-1 · Add a greeting file**\nCreate `hello.txt` saying hi.\n",
    );
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .project()
            .worker(Worker::fake("fake").env("ANTHROPIC_API_KEY").scenario("edit"))
            .worker(Worker::fake("rev").scenario("review-strict"))
            .routing(&["fake"], &["rev"])
            .raw("[verify]\ntier0 = [{ name = \"says hi\", argv = [\"grep\", \"-qx\", \"hi\", \"hello.txt\"], timeout = \"30s\" }]\n")
            .raw(&provider(
                "lite",
                "litellm",
                &dead_url(),
                "retries = 0\nrole_key_env = { triage = \"OXI_TEST_GATEWAY_KEY\" }\n",
            )),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);

    let stderr = test_call(&s, &["--model", "m", "--role", "triage"])
        .fails_with(1)
        .to_owned();
    assert!(stderr.contains("cannot be reached"), "{stderr}");
    let down = events(&s, "gateway_unavailable");
    assert_eq!(down.len(), 1);
    assert_eq!(down[0]["provider"], "lite");
    assert_eq!(down[0]["disabled"], serde_json::json!(["triage"]));
    // While it is off, the feature's calls fail at once, recorded, without a request.
    let stderr = test_call(&s, &["--model", "m", "--role", "triage"])
        .fails_with(1)
        .to_owned();
    assert!(stderr.contains("is off until"), "{stderr}");
    assert_eq!(calls(&s)[0]["outcome"], "unavailable");

    // The tick does its work as before.
    let tick = tokio::task::block_in_place(|| {
        s.oxi_env(
            &["tick", "--format", "json"],
            &[
                ("ANTHROPIC_API_KEY", "sk-ant-tick-test-key-0000"),
                (KEY_VAR, KEY),
            ],
        )
    });
    tick.ok();
    let report = tick.json();
    let job = report["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["task_id"] == "T0-1")
        .unwrap();
    assert_eq!(job["state"], "delivered", "{report:#}");
    // doctor names the provider, and dispatch stays open.
    let run = oxi(&s, &["doctor", "--format", "json"]);
    let checks = run.json()["checks"].as_array().unwrap().clone();
    let find = |name: &str| checks.iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!(find("gateway lite")["status"], "fail");
    assert_eq!(find("dispatch")["status"], "ok");
    assert_eq!(held_today(&s), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_answers_again_is_restored() {
    let url = dead_url();
    let s = sandbox(&provider("lite", "litellm", &url, "retries = 0\n"));
    test_call(&s, &["--model", "m", "--role", "summary"]).fails_with(1);
    assert_eq!(events(&s, "gateway_unavailable").len(), 1);
    let server = MockModelServer::start(Script::new()).await.unwrap();
    s.write(
        "oxi.toml",
        s.read("oxi.toml").replace(&url, &server.base_url()),
    );
    // `oxi gateway test` tries a provider that is off; its answer turns it back on.
    test_call(&s, &["--model", "m"]).ok();
    assert_eq!(events(&s, "gateway_restored")[0]["provider"], "lite");
    test_call(&s, &["--model", "m", "--role", "summary"]).ok();
    assert_never_streamed(&server);
    server.shutdown().await.unwrap();
}

#[test]
fn bad_gateway_config_names_file_line_and_key() {
    let cases = [
        (
            "key_pasted",
            "[gateway.providers.or]\nkind = \"openrouter\"\nkey_env = \"sk-or-v1-0123456789abcdef0123\"\n",
        ),
        (
            "litellm_without_base_url",
            "[gateway.providers.lite]\nkind = \"litellm\"\n",
        ),
        (
            "unknown_role_key",
            "[gateway.providers.lite]\nkind = \"litellm\"\nbase_url = \"http://127.0.0.1:4000\"\nrole_key_env = { triage = \"K1\", planner = \"K2\" }\n",
        ),
        (
            "unknown_kind",
            "[gateway.providers.x]\nkind = \"anthropic\"\n",
        ),
        (
            "xai_without_key",
            "[gateway.providers.grok]\nkind = \"xai\"\n",
        ),
        (
            "negative_role_cap",
            "[gateway.caps]\ntriage_daily_usd = -1.0\n",
        ),
    ];
    let mut all = String::new();
    for (name, toml) in cases {
        let s = Sandbox::git_repo();
        s.write("oxi.toml", toml);
        s.write("roadmap.md", "- [ ] something\n");
        let out = s.oxi(&["status"]);
        all.push_str(&format!("--- {name}\n{}\n", out.fails_with(3).trim_end()));
    }
    assert!(
        !all.contains("0123456789abcdef"),
        "a pasted key is never echoed:\n{all}"
    );
    insta::assert_snapshot!("gateway_config_errors", all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_is_not_retried_and_never_echoed() {
    let body = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {KEY}","type":"invalid_request_error"}}}}"#
    );
    let server = MockModelServer::start(Script::steps([Step::Status {
        code: 401,
        retry_after_secs: None,
        body: Some(body),
    }]))
    .await
    .unwrap();
    let s = sandbox(&provider("grok", "xai", &server.openai_base_url(), ""));
    let stderr = test_call(&s, &["--model", "grok-4-fast"])
        .fails_with(1)
        .to_owned();
    assert!(stderr.contains("answered HTTP 401"), "{stderr}");
    assert!(!stderr.contains(KEY), "{stderr}");
    assert_eq!(server.model_requests().len(), 1, "a 401 is not retried");
    let row = &calls(&s)[0];
    assert!(!row["error"].as_str().unwrap().contains(KEY), "{row}");
    // A client error is not an outage: nothing is switched off.
    assert!(events(&s, "gateway_unavailable").is_empty());
    server.shutdown().await.unwrap();
}

#[test]
fn with_nothing_recorded_calls_and_notify_status_say_so_instead_of_an_empty_table() {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", "- [ ] something\n");
    s.config(&OxiToml::new().project());
    s.oxi(&["ingest"]).ok();
    let run = s.oxi(&["gateway", "calls"]);
    run.ok();
    assert_eq!(
        run.stdout,
        "no gateway calls: no [gateway.providers.*] in oxi.toml; docs/gateway.md shows how to add one\n"
    );
    let run = s.oxi(&["notify", "status"]);
    run.ok();
    assert_eq!(
        run.stdout,
        "no [[notify.sinks]] in oxi.toml; docs/notifications.md shows how to add one\n"
    );
    // JSON readers still get the (empty) document, not prose.
    let run = s.oxi(&["gateway", "calls", "--format", "json"]);
    run.ok();
    assert_eq!(run.json(), serde_json::json!([]));

    let with_provider = provider("lite", "litellm", "http://127.0.0.1:9", "");
    s.config(&OxiToml::new().project().raw(&with_provider));
    let run = s.oxi(&["gateway", "calls"]);
    run.ok();
    assert_eq!(
        run.stdout,
        "no gateway calls recorded yet (`oxi gateway test` makes one per provider)\n"
    );
}
