//! The inference gateway's own overhead (`cargo bench --bench gateway`): per call, the
//! gateway client (request body, send with its timeout and retry loop, answer parsing, cost
//! fields) against a plain reqwest POST of the same body to the same local mock server, as a
//! ratio (goal <= 1.1x); and the whole `Gateway::complete` (reservation and settlement in the
//! ledger, on disk in a temporary directory) against the same plain POST.
//! `OXI_BENCH_CALLS` sets the calls per round (default 2000).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use oxi::gateway::{CallRequest, Gateway, GatewayRole, Message};
use oxi::ledger::Ledger;
use oxi_testkit::mock_model::{ChatCost, MockModelServer, Script, Step};

fn calls() -> usize {
    std::env::var("OXI_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench());
}

async fn bench() {
    let server = MockModelServer::start(
        Script::new()
            .fallback(Step::text("ok"))
            .chat_cost(ChatCost::LitellmHeader("0.000001".into())),
    )
    .await
    .unwrap();
    let toml = format!(
        "[caps]\njob_usd = 1.0\ndaily_usd = 10000.0\nmonthly_usd = 100000.0\n\
         [gateway.caps]\ncall_reserve_usd = 0.0001\ntest_daily_usd = 10000.0\n\
         [gateway.providers.mock]\nkind = \"litellm\"\nbase_url = \"{}\"\nkey_env = \"BENCH_KEY\"\n",
        server.base_url()
    );
    let config = oxi::config::parse(&toml, "bench.toml").unwrap();
    let env = vec![("BENCH_KEY".to_owned(), "sk-bench".to_owned())];
    let gateway = Gateway::new(&config, &env, "bench").unwrap();
    let client = gateway.provider("mock", GatewayRole::Test).unwrap();
    let messages = [Message::user("Reply with the single word: ok")];
    let plain = reqwest::Client::new();
    let url = client.chat_url();
    let body = serde_json::to_vec(&serde_json::json!({
        "model": "m", "messages": messages, "stream": false, "max_tokens": 64,
    }))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::open(&dir.path().join("ledger.db")).unwrap();
    let request = CallRequest {
        role: GatewayRole::Test,
        provider: "mock",
        model: "m",
        messages: &messages,
        max_tokens: Some(64),
        task_id: None,
    };
    let n = calls();
    let (mut best_plain, mut best_client, mut best_full) =
        (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let start = Instant::now();
        for _ in 0..n {
            let response = plain
                .post(&url)
                .bearer_auth("sk-bench")
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let bytes = response.bytes().await.unwrap();
            std::hint::black_box(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap());
        }
        best_plain = best_plain.min(start.elapsed());
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(client.chat("m", &messages, Some(64)).await.unwrap());
        }
        best_client = best_client.min(start.elapsed());
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(gateway.complete(&mut ledger, &request).await.unwrap());
        }
        best_full = best_full.min(start.elapsed());
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    println!("\n## gateway overhead per call ({n} calls, best of 3 rounds, loopback mock server)");
    println!(
        "plain reqwest POST + JSON parse:   {:8.1} us/call",
        per(best_plain)
    );
    println!(
        "gateway client (ProviderClient):  {:8.1} us/call  ratio {:.3}x (goal <= 1.1x)",
        per(best_client),
        best_client.as_secs_f64() / best_plain.as_secs_f64()
    );
    println!(
        "Gateway::complete (with ledger):  {:8.1} us/call  ratio {:.3}x",
        per(best_full),
        best_full.as_secs_f64() / best_plain.as_secs_f64()
    );
    server.shutdown().await.unwrap();
}
