//! Auto-improve's vector rerank through the binary: embeddings from the mock model server's
//! `/v1/embeddings` through the gateway (role `improve`, ledger rows, rate card), cached in the
//! ledger so a text is embedded once, fused with BM25 by reciprocal rank fusion; and every bad
//! answer (a provider down, a hang, the wrong count, the wrong width) recorded as
//! `improve_embeddings_failed` with the scan going on by BM25 alone, which the digest says.

use std::path::Path;

use oxi::ledger::Ledger;
use oxi_testkit::mock_model::{EmbedStep, MockModelServer, Script, embedding_vector};
use serde_json::Value;

use crate::support::{OxiToml, Run, Sandbox, git};

const KEY_VAR: &str = "OXI_IMPROVE_VECTORS_KEY";
const KEY: &str = "sk-test-gateway-key-0000";

const ROADMAP: &str = "# Roadmap\n\n## Tier 0\n\n**T0-1 · supervisor budget caps for coding agents**\n\nKeep every coding agent run under the ledger's budget caps; the supervisor stops a run at its cap.\n\n**T0-2 · gateway prompt caching per role**\n\nThe gateway counts tokens per role and caches prompts.\n";

/// The X command's posts: `n` of them, all speaking the project's words a little.
fn posts(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{{\"url\":\"https://x.com/someone/status/{i}\",\"text\":\"Post {i}: a supervisor for coding agents{}\"}}",
                if i % 2 == 0 { " under budget caps in the ledger" } else { " and gateway prompt caching" }
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).unwrap();
}

/// A repository whose X source prints what `posts.json` holds, with `improve.embeddings` on
/// the mock server.
fn sandbox(base_url: &str, top: usize, timeout: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write("src/supervisor.rs", "// supervisor\n");
    s.write(".gitignore", ".oxi/\nposts.json\nx-cmd\n");
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "Add the supervisor"]);
    s.write("posts.json", posts(6));
    let command = s.path().join("x-cmd");
    script(
        &command,
        &format!("cat '{}'\n", s.path().join("posts.json").display()),
    );
    s.config(&OxiToml::new().project().raw(&format!(
        "[gateway.providers.lite]\nkind = \"litellm\"\nbase_url = \"{base_url}\"\nkey_env = \"{KEY_VAR}\"\ntimeout = \"{timeout}\"\nretries = 0\n\n[improve]\ntop = {top}\nembeddings = \"lite:text-embedding-3-small\"\n\n[[improve.sources]]\nkind = \"x\"\ncommand = [\"{}\"]\naccounts = [\"someone\"]\n",
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

fn rows(s: &Sandbox, sql: &str) -> Vec<Vec<Value>> {
    let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    let connection = ledger.raw_connection();
    let mut statement = connection.prepare(sql).unwrap();
    let width = statement.column_count();
    statement
        .query_map([], |r| {
            Ok((0..width)
                .map(|i| match r.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => Value::Null,
                    rusqlite::types::ValueRef::Integer(n) => Value::from(n),
                    rusqlite::types::ValueRef::Real(x) => Value::from(x),
                    rusqlite::types::ValueRef::Text(t) => {
                        Value::from(String::from_utf8_lossy(t).into_owned())
                    }
                    rusqlite::types::ValueRef::Blob(b) => Value::from(b.len()),
                })
                .collect())
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn failures(s: &Sandbox) -> Vec<String> {
    rows(
        s,
        "SELECT json_extract(data, '$.cause') FROM events WHERE kind = 'improve_embeddings_failed' ORDER BY id",
    )
    .into_iter()
    .map(|r| r[0].as_str().unwrap_or_default().to_owned())
    .collect()
}

fn digest(_s: &Sandbox, report: &Value) -> String {
    std::fs::read_to_string(report["digest"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_rerank_through_the_gateway_and_each_text_is_embedded_once() {
    let server = MockModelServer::start(Script::new()).await.unwrap();
    let s = sandbox(&server.base_url(), 2, "5s");
    let first = scan(&s);
    assert_eq!(first["ranking"], "bm25+vector", "{first}");
    assert_eq!(first["proposed"], 2);
    assert!(first.get("embeddings_failed").is_none(), "{first}");
    let text = digest(&s, &first);
    assert!(text.contains("reciprocal rank fusion (k = 60)"), "{text}");
    assert!(!text.contains("BM25 stands alone"), "{text}");

    let requests = server.embeddings_requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(r.body["model"], "text-embedding-3-small");
        assert!(
            r.body["input"]
                .as_array()
                .is_some_and(|i| !i.is_empty() && i.len() <= 128)
        );
        assert_eq!(r.header("authorization"), Some("<redacted>"));
    }
    // Every call is a ledger row of the improve role, priced by the built-in card.
    let calls = rows(
        &s,
        "SELECT role, provider, model, outcome, cost_source, tokens_in FROM gateway_calls",
    );
    assert_eq!(calls.len(), requests.len());
    for call in &calls {
        assert_eq!(
            call[..5],
            ["improve", "lite", "text-embedding-3-small", "ok", "card"]
        );
        assert!(call[5].as_i64().unwrap() > 0);
    }
    let cached = rows(&s, "SELECT model, dims FROM improve_embeddings");
    assert!(cached.len() > 6, "{cached:?}");
    assert!(
        cached
            .iter()
            .all(|r| r[0] == "lite:text-embedding-3-small" && r[1] == 64)
    );

    // The next scan ranks the same texts: nothing new is embedded.
    let second = scan(&s);
    assert_eq!(second["ranking"], "bm25+vector");
    assert_eq!(second["proposed"], 2);
    assert_eq!(server.embeddings_requests().len(), requests.len());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_embeddings_answer_is_a_recorded_failure_and_bm25_stands_alone() {
    let server = MockModelServer::start(
        Script::new()
            .then_embed(EmbedStep::MissingOne)
            .then_embed(EmbedStep::Auto)
            .then_embed(EmbedStep::Dimensions(8))
            .then_embed(EmbedStep::Raw("{\"data\": \"nope\"}".into()))
            .then_embed(EmbedStep::Status(503))
            .then_embed(EmbedStep::Hang),
    )
    .await
    .unwrap();
    let s = sandbox(&server.base_url(), 1, "2s");

    // One vector short: recorded, the scan still proposes by BM25, and the digest says why.
    let report = scan(&s);
    assert_eq!(report["ranking"], "bm25", "{report}");
    assert_eq!(report["proposed"], 1);
    let cause = report["embeddings_failed"].as_str().unwrap();
    assert!(
        cause.contains("not the embeddings asked for") && cause.contains("vectors for"),
        "{cause}"
    );
    assert!(
        digest(&s, &report).contains("BM25 stands alone: the embeddings could not be had"),
        "{}",
        digest(&s, &report)
    );

    // A good answer fills the cache (64 wide); a new post then gets 8-wide vectors: refused.
    assert_eq!(scan(&s)["ranking"], "bm25+vector");
    s.write("posts.json", posts(8));
    let report = scan(&s);
    assert_eq!(report["ranking"], "bm25");
    assert!(
        report["embeddings_failed"]
            .as_str()
            .unwrap()
            .contains("8 dimensions where 64 were expected"),
        "{report}"
    );
    // Not the embeddings shape at all.
    let report = scan(&s);
    assert!(
        report["embeddings_failed"]
            .as_str()
            .unwrap()
            .contains("not the embeddings asked for")
    );
    // The provider down: the gateway switches it off, the scan goes on.
    let report = scan(&s);
    assert!(
        report["embeddings_failed"]
            .as_str()
            .unwrap()
            .contains("HTTP 503"),
        "{report}"
    );
    let down = rows(
        &s,
        "SELECT COUNT(*) FROM events WHERE kind = 'gateway_unavailable'",
    );
    assert_eq!(down[0][0], 1);
    // While it is off no request is sent; the reason is still recorded.
    let sent = server.embeddings_requests().len();
    let report = scan(&s);
    assert!(
        report["embeddings_failed"]
            .as_str()
            .unwrap()
            .contains("is off until"),
        "{report}"
    );
    assert_eq!(server.embeddings_requests().len(), sent);
    assert_eq!(failures(&s).len(), 5);
    let errors = rows(
        &s,
        "SELECT COUNT(*) FROM gateway_calls WHERE outcome = 'error'",
    );
    assert_eq!(errors[0][0], 4);

    // A hang is a timeout, once the provider is back on.
    {
        let mut ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
        ledger
            .raw_connection()
            .execute("DELETE FROM kv WHERE key LIKE 'gateway_down:%'", [])
            .unwrap();
    }
    let report = scan(&s);
    assert!(
        report["embeddings_failed"]
            .as_str()
            .unwrap()
            .contains("no answer within 2s"),
        "{report}"
    );
    assert_eq!(report["proposed"], 1);
    server.shutdown().await.unwrap();
}

#[test]
fn without_embeddings_the_digest_says_bm25_stands_alone_and_a_bad_choice_is_a_config_error() {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.config(&OxiToml::new().project().raw("[improve]\n"));
    let report = s.oxi(&["improve", "scan", "--format", "json"]);
    report.ok();
    let report = report.json();
    assert_eq!(report["ranking"], "bm25");
    assert!(digest(&s, &report).contains("BM25 stands alone: no improve.embeddings is set"));

    s.config(
        &OxiToml::new()
            .project()
            .raw("[improve]\nembeddings = \"text-embedding-3-small\"\n"),
    );
    let stderr = s.oxi(&["improve", "status"]).fails_with(3).to_owned();
    assert!(
        stderr.contains("improve.embeddings") && stderr.contains("is not provider:model"),
        "{stderr}"
    );
    s.config(
        &OxiToml::new()
            .project()
            .raw("[improve]\nembeddings = \"nowhere:m\"\n"),
    );
    let stderr = s.oxi(&["improve", "status"]).fails_with(3).to_owned();
    assert!(
        stderr.contains("no gateway provider \"nowhere\"") && stderr.contains("oxi.toml:"),
        "{stderr}"
    );
}

/// The fixed 50-candidate corpus of `improve::ranking_a_fixed_corpus…`, ranked with the mock
/// server's vectors: the same top 15 every time, and the rerank moves something.
#[test]
fn a_fixed_corpus_with_embeddings_gives_the_same_top_fifteen_every_time() {
    let (corpus, context) = crate::improve::fixed_corpus();
    let rank = || {
        let bm25 = oxi::improve::rank::bm25(&context, &corpus).unwrap();
        let vectors: Vec<Vec<f32>> = bm25
            .iter()
            .map(|s| {
                let c = &corpus[s.index];
                embedding_vector(&format!("{}\n{}", c.title, c.summary), 64)
            })
            .collect();
        let documents: Vec<Vec<f32>> = context.iter().map(|d| embedding_vector(d, 64)).collect();
        let project = oxi::improve::rank::centroid(&documents).unwrap();
        let fused = oxi::improve::rank::fuse(&bm25, &vectors, &project);
        (
            bm25.iter().take(15).map(|s| s.index).collect::<Vec<_>>(),
            fused.iter().take(15).map(|s| s.index).collect::<Vec<_>>(),
        )
    };
    let (bm25_top, top) = rank();
    assert_eq!(top.len(), 15);
    for _ in 0..5 {
        assert_eq!(rank().1, top);
    }
    assert_ne!(
        top, bm25_top,
        "the rerank changed nothing: the test could not fail"
    );
    assert!(top.iter().all(|i| i % 3 != 0), "{top:?}");
    insta::assert_json_snapshot!("improve_rank_top15_with_embeddings", top);
}
