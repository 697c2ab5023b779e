//! oxi's GitHub calls checked against GitHub's own published contract: the REST description
//! (OpenAPI, npm `@octokit/openapi`) and the GraphQL schema (npm `@octokit/graphql-schema`),
//! pinned and installed outside the clone by `.ci/install-github-descriptions`.
//!
//! [`OPERATIONS`] is the one list of what oxi asks GitHub: each function of this module's parent
//! that talks to GitHub, the operation it uses, and the type it reads the answer into. The tests
//! below hold that list to the source (a new call without an entry fails) and drive every
//! function, through oxi's real client, against two servers:
//! - *GitHub as described*: it answers each request with the description's example for that
//!   operation, and checks the request (path, query parameters, body) against the operation;
//! - *the fake* (`oxi_testkit::fake_github`) behind a checking proxy: every answer the fake gives
//!   must be a status the operation documents, carrying every field its schema requires.
//!
//! Besides the examples, each answer type must accept instances built from the operation's
//! schema: only the required fields (nullable ones null), and every field.
//!
//! Without the descriptions the tests say how to install them and pass; under `CI=true` they
//! fail instead, so CI never passes without checking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use oxi_testkit::github_contract::{
    Answers, Called, CheckingProxy, Description, Seen, description, descriptions_dir, pinned,
    resolve, rest_operations,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::discover::{Release, SearchPage};
use super::issues::{Issue, IssueComment, IssueFilter};
use super::model::{
    CheckRuns, CombinedStatus, MergeMethod, PullFile, PullRequest, Repository, Review,
};
use super::{GithubClient, GithubError, GithubWriter};

/// What oxi does with an operation's success answer: the type it reads it into.
type Reads = fn(&Value) -> Result<(), String>;

fn reads<T: DeserializeOwned>(value: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(value.clone())
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Which of GitHub's APIs an operation belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    /// An `operationId` of the REST description.
    Rest(&'static str),
    /// A root field of a GraphQL mutation or query.
    Graphql(&'static str),
}

impl Api {
    /// Whether the checking proxy saw a request for this operation.
    fn is(self, called: Option<&Called>) -> bool {
        match (self, called) {
            (Api::Rest(id), Some(Called::Rest(seen))) => id == seen,
            (Api::Graphql(field), Some(Called::Graphql(seen))) => field == seen,
            _ => false,
        }
    }
}

/// One GitHub call oxi makes.
struct Operation {
    /// The function making it, `Type::method` as declared in `src/github/`.
    caller: &'static str,
    api: Api,
    reads: Reads,
}

/// Every GitHub call oxi makes. A function in `src/github/` that talks to GitHub and is missing
/// here fails `every_github_function_is_listed`; an entry here without a driver in [`drive`]
/// fails `oxi_requests_match_the_description`.
static OPERATIONS: &[Operation] = &[
    Operation {
        caller: "GithubClient::repository",
        api: Api::Rest("repos/get"),
        reads: reads::<Repository>,
    },
    Operation {
        caller: "GithubClient::pulls",
        api: Api::Rest("pulls/list"),
        reads: reads::<Vec<PullRequest>>,
    },
    Operation {
        caller: "GithubClient::pull",
        api: Api::Rest("pulls/get"),
        reads: reads::<PullRequest>,
    },
    Operation {
        caller: "GithubClient::pull_files",
        api: Api::Rest("pulls/list-files"),
        reads: reads::<Vec<PullFile>>,
    },
    Operation {
        caller: "GithubClient::reviews",
        api: Api::Rest("pulls/list-reviews"),
        reads: reads::<Vec<Review>>,
    },
    Operation {
        caller: "GithubClient::ci",
        api: Api::Rest("checks/list-for-ref"),
        reads: reads::<CheckRuns>,
    },
    Operation {
        caller: "GithubClient::ci",
        api: Api::Rest("repos/get-combined-status-for-ref"),
        reads: reads::<CombinedStatus>,
    },
    Operation {
        caller: "GithubClient::open_issues",
        api: Api::Rest("issues/list-for-repo"),
        reads: reads::<Vec<Issue>>,
    },
    Operation {
        caller: "GithubClient::issue",
        api: Api::Rest("issues/get"),
        reads: reads::<Issue>,
    },
    Operation {
        caller: "GithubClient::releases_of",
        api: Api::Rest("repos/list-releases"),
        reads: reads::<Vec<Release>>,
    },
    Operation {
        caller: "GithubClient::search_topic",
        api: Api::Rest("search/repos"),
        reads: reads::<SearchPage>,
    },
    Operation {
        caller: "GithubWriter::create_issue_comment",
        api: Api::Rest("issues/create-comment"),
        reads: reads::<IssueComment>,
    },
    Operation {
        caller: "GithubWriter::update_issue_comment",
        api: Api::Rest("issues/update-comment"),
        reads: reads::<IssueComment>,
    },
    Operation {
        caller: "GithubWriter::create_pull",
        api: Api::Rest("pulls/create"),
        reads: reads::<PullRequest>,
    },
    Operation {
        caller: "GithubWriter::update_pull",
        api: Api::Rest("pulls/update"),
        reads: reads::<PullRequest>,
    },
    Operation {
        caller: "GithubWriter::add_labels",
        api: Api::Rest("issues/add-labels"),
        reads: reads::<Value>,
    },
    Operation {
        caller: "GithubWriter::merge_pull",
        api: Api::Rest("pulls/merge"),
        reads: reads::<Value>,
    },
    Operation {
        caller: "GithubWriter::mark_ready",
        api: Api::Graphql("markPullRequestReadyForReview"),
        reads: reads::<Value>,
    },
    Operation {
        caller: "GithubWriter::delete_branch",
        api: Api::Rest("git/delete-ref"),
        reads: reads::<Value>,
    },
];

/// Public functions in `src/github/` that never talk to GitHub, with why.
static NOT_GITHUB_CALLS: &[&str] = &[];

const REPO: &str = "octo-org/hello";
const TOKEN: &str = "contract-token";
const BRANCH: &str = "oxi/T-1-add-hello";
/// The issue the issue calls read and comment on.
const ISSUE: u64 = 7;

/// An instance of an OpenAPI schema: with `every_field`, every property (nullable ones set);
/// otherwise only the required ones, nullable ones `null`, arrays as short as allowed.
fn instance(rest: &Value, schema: &Value, every_field: bool, depth: u32) -> Value {
    let schema = resolve(rest, schema);
    let nullable = schema["nullable"] == true;
    // Deep enough: GitHub's schemas are recursive (a repository's template repository …).
    let every_field = every_field && depth < 6;
    if nullable && (!every_field || depth > 12) {
        return Value::Null;
    }
    if let Some(parts) = schema["allOf"].as_array() {
        let mut merged = Map::new();
        for part in parts {
            if let Value::Object(fields) = instance(rest, part, every_field, depth + 1) {
                merged.extend(fields);
            }
        }
        return Value::Object(merged);
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alternatives) = schema[key].as_array() {
            let is_null = |s: &&Value| resolve(rest, s)["type"] == "null";
            if !every_field && alternatives.iter().any(|s| is_null(&s)) {
                return Value::Null;
            }
            if let Some(first) = alternatives.iter().find(|s| !is_null(s)) {
                return instance(rest, first, every_field, depth + 1);
            }
        }
    }
    if let Some(first) = schema["enum"].as_array().and_then(|v| v.first()) {
        return first.clone();
    }
    match schema["type"].as_str() {
        Some("array") => {
            let min = schema["minItems"].as_u64().unwrap_or(0);
            let count = if every_field { min.max(1) } else { min };
            (0..count)
                .map(|_| instance(rest, &schema["items"], every_field, depth + 1))
                .collect()
        }
        Some("string") => match schema["format"].as_str() {
            Some("date-time") => json!("2026-11-21T12:00:00Z"),
            Some("uri") | Some("url") => json!("https://example.com/x"),
            Some("email") => json!("someone@example.com"),
            _ => json!("x"),
        },
        Some("integer") => json!(1),
        Some("number") => json!(1.5),
        Some("boolean") => json!(true),
        Some("null") => Value::Null,
        _ => {
            let required: BTreeSet<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            schema["properties"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(name, _)| every_field || required.contains(name.as_str()))
                .map(|(name, prop)| (name.clone(), instance(rest, prop, every_field, depth + 1)))
                .collect::<Map<_, _>>()
                .into()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Driving oxi's functions.

/// What the calls share: the pull request the first one opens.
struct Ctx {
    number: u64,
    head_sha: String,
    node_id: String,
    /// The issue comment the comment writer created.
    comment_id: u64,
}

/// Calls `caller` as oxi does. Every entry of [`OPERATIONS`] needs an arm here.
async fn drive(
    caller: &str,
    client: &GithubClient,
    writer: &GithubWriter<'_>,
    ctx: &mut Ctx,
) -> Result<(), GithubError> {
    match caller {
        "GithubWriter::create_pull" => {
            let pull = writer
                .create_pull("T-1: add hello", "Adds hello.txt.", BRANCH, "main")
                .await?;
            ctx.number = pull.number;
            ctx.head_sha = pull.head.sha;
            ctx.node_id = pull.node_id.unwrap_or_default();
        }
        "GithubClient::repository" => drop(client.repository().await?),
        "GithubClient::pulls" => {
            client.pulls("open", Some(BRANCH)).await?;
            client.pulls("all", None).await?;
        }
        "GithubClient::pull" => drop(client.pull(ctx.number).await?),
        "GithubClient::pull_files" => drop(client.pull_files(ctx.number).await?),
        "GithubClient::reviews" => drop(client.reviews(ctx.number).await?),
        "GithubClient::ci" => drop(client.ci(&ctx.head_sha).await?),
        "GithubClient::open_issues" => {
            let labels = ["oxi".to_owned(), "good first issue".to_owned()];
            let filter = IssueFilter {
                labels: &labels,
                milestone: Some(1),
                assignee: Some("octocat"),
            };
            drop(client.open_issues(&filter).await?);
            drop(client.open_issues(&IssueFilter::default()).await?);
        }
        "GithubClient::issue" => drop(client.issue(ISSUE).await?),
        "GithubClient::releases_of" => drop(client.releases_of(REPO, 5).await?),
        "GithubClient::search_topic" => {
            drop(client.search_topic("ai-agents", "2026-11-16", 30).await?);
        }
        "GithubWriter::create_issue_comment" => {
            let comment = writer
                .create_issue_comment(ISSUE, "oxi is working on this: #1")
                .await?;
            ctx.comment_id = comment.id;
        }
        "GithubWriter::update_issue_comment" => drop(
            writer
                .update_issue_comment(ctx.comment_id, "oxi opened #1 for this")
                .await?,
        ),
        "GithubWriter::update_pull" => drop(
            writer
                .update_pull(ctx.number, "T-1: add hello", "Adds hello.txt.")
                .await?,
        ),
        "GithubWriter::add_labels" => {
            writer
                .add_labels(ctx.number, &["oxi".to_owned(), "tier-1".to_owned()])
                .await?
        }
        "GithubWriter::mark_ready" => writer.mark_ready(&ctx.node_id).await?,
        "GithubWriter::merge_pull" => {
            writer
                .merge_pull(
                    ctx.number,
                    &ctx.head_sha,
                    "T-1: add hello",
                    MergeMethod::Squash,
                )
                .await?
        }
        "GithubWriter::delete_branch" => writer.delete_branch(BRANCH).await?,
        other => panic!(
            "{other} is in OPERATIONS (src/github/contract.rs) but `drive` does not call it: add an arm"
        ),
    }
    Ok(())
}

/// The callers in an order a stateful GitHub accepts: open, read, change, ready, merge, delete.
fn callers_in_order() -> Vec<&'static str> {
    let mut callers: Vec<&'static str> = Vec::new();
    for op in OPERATIONS {
        if !callers.contains(&op.caller) {
            callers.push(op.caller);
        }
    }
    let rank = |c: &str| match c {
        "GithubWriter::create_pull" => 0,
        "GithubWriter::update_issue_comment" | "GithubWriter::mark_ready" => 2,
        "GithubWriter::merge_pull" => 3,
        "GithubWriter::delete_branch" => 4,
        _ => 1,
    };
    callers.sort_by_key(|c| rank(c));
    callers
}

fn release_mode() -> crate::config::ReleaseMode {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oxi.toml.example");
    crate::config::load(&example, Some("release"))
        .expect("oxi.toml.example loads")
        .release_mode()
        .expect("release mode")
}

fn client_for(base: &str) -> GithubClient {
    let config: crate::config::GithubConfig = toml::from_str(&format!(
        "repo = \"{REPO}\"\napi_url = \"{base}\"\nmax_rate_limit_wait = \"1s\"\nretry_backoff = \"10ms\"\n"
    ))
    .expect("github config");
    GithubClient::new(&config, TOKEN).expect("client")
}

/// Drives every caller against `answers`; what each request met, and each caller's outcome.
async fn run_all(
    description: &'static Description,
    answers: Answers,
) -> (Vec<Seen>, Vec<(&'static str, Result<(), GithubError>)>) {
    let proxy = CheckingProxy::start(description, answers)
        .await
        .expect("the checking proxy starts");
    let client = client_for(&proxy.url());
    let writer = GithubWriter::new(&client, release_mode());
    let mut ctx = Ctx {
        number: 1,
        head_sha: "0".repeat(40),
        node_id: String::new(),
        comment_id: 1,
    };
    let mut outcomes = Vec::new();
    for caller in callers_in_order() {
        proxy.set_caller(caller);
        outcomes.push((caller, drive(caller, &client, &writer, &mut ctx).await));
    }
    (proxy.seen(), outcomes)
}

/// Each request matched an operation listed for its caller, and met no problem.
fn request_problems(seen: &[Seen]) -> Vec<String> {
    let mut problems = Vec::new();
    for s in seen {
        let listed = OPERATIONS
            .iter()
            .any(|op| op.caller == s.caller && op.api.is(s.api.as_ref()));
        if !listed {
            problems.push(format!(
                "{} sent {} {} ({:?}), which OPERATIONS does not list for it",
                s.caller, s.method, s.path, s.api
            ));
        }
        for p in &s.problems {
            problems.push(format!("{} → {} {}: {p}", s.caller, s.method, s.path));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// Every function in `src/github/` that may talk to GitHub (`pub` or `pub(crate)`, `async`),
/// as `Type::name`.
fn github_functions() -> BTreeSet<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/github");
    let impl_line = regex::Regex::new(r"^impl(?:<[^>]*>)?\s+(\w+)").expect("regex");
    let fn_line = regex::Regex::new(r"^\s*pub(?:\([^)]*\))?\s+async\s+fn\s+(\w+)").expect("regex");
    let mut found = BTreeSet::new();
    let mut files: Vec<PathBuf> = walk(&dir);
    files.sort();
    for file in files {
        if file
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("contract"))
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read src/github");
        let mut current: Option<String> = None;
        for line in text.lines() {
            if line.starts_with("mod tests") {
                break;
            }
            if let Some(c) = impl_line.captures(line) {
                current = Some(c[1].to_owned());
            } else if line.starts_with('}') {
                current = None;
            }
            if let Some(c) = fn_line.captures(line) {
                found.insert(match &current {
                    Some(t) => format!("{t}::{}", &c[1]),
                    None => c[1].to_owned(),
                });
            }
        }
    }
    found
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src/github").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

#[test]
fn every_github_function_is_listed() {
    let listed: BTreeSet<String> = OPERATIONS
        .iter()
        .map(|o| o.caller.to_owned())
        .chain(NOT_GITHUB_CALLS.iter().map(|c| (*c).to_owned()))
        .collect();
    let found = github_functions();
    assert!(
        found.len() >= 10,
        "the source scan found too little: {found:?}"
    );
    let missing: Vec<&String> = found.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "these functions in src/github/ talk to GitHub but have no entry in OPERATIONS \
         (src/github/contract.rs): {missing:?}; add each with its operationId (or to \
         NOT_GITHUB_CALLS with why) and a `drive` arm"
    );
    let stale: Vec<&String> = listed.difference(&found).collect();
    assert!(
        stale.is_empty(),
        "OPERATIONS lists functions that no longer exist: {stale:?}"
    );
}

#[test]
fn every_listed_operation_is_described() {
    let Some(description) = description() else {
        return;
    };
    for op in OPERATIONS {
        match op.api {
            Api::Rest(id) => assert!(
                description.operation(id).is_some(),
                "{}: operationId {id} is not in GitHub's REST description {}",
                op.caller,
                pinned("OPENAPI_VERSION")
            ),
            Api::Graphql(field) => assert!(
                description
                    .graphql
                    .get_object("Mutation")
                    .is_some_and(|m| m.fields.contains_key(field))
                    || description
                        .graphql
                        .get_object("Query")
                        .is_some_and(|q| q.fields.contains_key(field)),
                "{}: GraphQL field {field} is in neither Mutation nor Query",
                op.caller
            ),
        }
    }
}

/// `github.api_url` may name a GitHub Enterprise Server: each REST operation oxi uses must be
/// served, with the same method and path, by every GHES release the package describes.
#[test]
fn every_listed_rest_operation_is_on_github_enterprise_server() {
    let Some(description) = description() else {
        return;
    };
    let generated = descriptions_dir().join("node_modules/@octokit/openapi/generated");
    let mut releases: Vec<PathBuf> = std::fs::read_dir(&generated)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with("ghes-") && n.ends_with(".json") && !n.ends_with(".deref.json")
            })
        })
        .collect();
    releases.sort();
    assert!(
        !releases.is_empty(),
        "no ghes-*.json in {}",
        generated.display()
    );
    let mut problems = Vec::new();
    for release in &releases {
        let ghes: Value = serde_json::from_slice(&std::fs::read(release).unwrap()).unwrap();
        let served = rest_operations(&ghes);
        for op in OPERATIONS {
            let Api::Rest(id) = op.api else { continue };
            let cloud = description.operation(id).expect("described");
            if !served
                .iter()
                .any(|o| o.id == id && o.method == cloud.method && o.template == cloud.template)
            {
                problems.push(format!(
                    "{}: {id} ({} {}) is not in {}",
                    op.caller,
                    cloud.method,
                    cloud.template,
                    release.display()
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// (a) and (b), and (d): every call, as oxi builds it, against GitHub as described; each
/// answer is the description's example, which oxi's types must read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oxi_requests_match_the_description() {
    let Some(description) = description() else {
        return;
    };
    let (seen, outcomes) = run_all(description, Answers::Examples).await;
    let mut problems = request_problems(&seen);
    for (caller, outcome) in &outcomes {
        if let Err(e) = outcome {
            problems.push(format!(
                "{caller} failed on the description's example answer: {e}"
            ));
        }
    }
    for op in OPERATIONS {
        if !seen
            .iter()
            .any(|s| s.caller == op.caller && op.api.is(s.api.as_ref()))
        {
            problems.push(format!(
                "{} never used {:?}, which OPERATIONS lists for it",
                op.caller, op.api
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "against GitHub's description:\n{}",
        problems.join("\n")
    );
}

/// (a): each answer type reads every example the description gives for its operation's
/// success status, and instances built from the schema: the required fields only (nullable
/// ones null), and every field.
#[test]
fn oxi_types_read_every_described_answer() {
    let Some(description) = description() else {
        return;
    };
    let mut problems = Vec::new();
    for op in OPERATIONS {
        let Api::Rest(id) = op.api else { continue };
        let rest_op = description.operation(id).expect("described");
        let status = description.success_status(rest_op);
        let Some(schema) = description.response_schema(rest_op, status) else {
            continue;
        };
        let validator = description.validator(schema);
        let mut instances = description.response_examples(rest_op, status);
        for (name, every) in [("required fields only", false), ("every field", true)] {
            instances.push((
                name.to_owned(),
                instance(&description.rest, schema, every, 0),
            ));
        }
        for (name, value) in instances {
            // A built instance must itself be valid, or it proves nothing. GitHub's own examples
            // are not always valid for their schemas (one lacks a required field); oxi must
            // read them all the same, as GitHub answers like them.
            let built = name.contains("field");
            if let Some(e) = validator.iter_errors(&value).next().filter(|_| built) {
                problems.push(format!(
                    "{id} {status} `{name}` is not valid for its own schema at `{}`: {e}",
                    e.instance_path()
                ));
                continue;
            }
            if let Err(e) = (op.reads)(&value) {
                problems.push(format!(
                    "{} cannot read {id} {status} `{name}`: {e}",
                    op.caller
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// (c): the fake answers every call oxi makes with a documented status and every field the
/// description requires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_answers_carry_what_the_description_requires() {
    let Some(description) = description() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bare = bare_repo_with_branch(dir.path());
    let fake = oxi_testkit::fake_github::FakeGithub::start(REPO, TOKEN, bare)
        .await
        .unwrap();
    fake.set_check_run(BRANCH, "ci", "success", "all green");
    fake.add_review(1, "APPROVED", "looks good");
    fake.set_commit_status(BRANCH, "ci/legacy", "success", "the statuses API too");
    let issues = fake.issues();
    issues.add(
        ISSUE,
        "Add hello",
        "Touches `hello.txt`.",
        &["oxi", "good first issue"],
    );
    issues.set_milestone(ISSUE, Some(1));
    issues.set_assignee(ISSUE, Some("octocat"));
    fake.add_release(
        REPO,
        oxi_testkit::fake_github::FakeRelease {
            tag: "v1.2.0".to_owned(),
            name: "v1.2.0".to_owned(),
            body: "Adds streaming.".to_owned(),
            published_at: "2026-11-20T10:00:00Z".to_owned(),
            draft: false,
        },
    );
    fake.add_repository(oxi_testkit::fake_github::FakeRepository {
        full_name: "octo-org/agent-kit".to_owned(),
        description: "Tools for coding agents".to_owned(),
        stars: 420,
        created_at: "2026-10-01T00:00:00Z".to_owned(),
        pushed_at: "2026-11-25T00:00:00Z".to_owned(),
        topics: vec!["ai-agents".to_owned()],
    });
    let (seen, outcomes) = run_all(description, Answers::Forward(fake.url())).await;
    let mut problems = request_problems(&seen);
    for (caller, outcome) in &outcomes {
        if let Err(e) = outcome {
            problems.push(format!("{caller} failed against the fake: {e}"));
        }
    }
    fake.shutdown().await;
    assert!(
        problems.is_empty(),
        "the fake's answers against GitHub's description:\n{}",
        problems.join("\n")
    );
}

/// A bare `origin.git` with `main` and [`BRANCH`] one commit ahead.
fn bare_repo_with_branch(dir: &std::path::Path) -> PathBuf {
    let git = |cwd: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(cwd)
            .env("GIT_AUTHOR_NAME", "oxi")
            .env("GIT_AUTHOR_EMAIL", "oxi@example.com")
            .env("GIT_COMMITTER_NAME", "oxi")
            .env("GIT_COMMITTER_EMAIL", "oxi@example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let bare = dir.join("origin.git");
    let work = dir.join("work");
    git(dir, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
    git(dir, &["init", "-q", "-b", "main", "work"]);
    std::fs::write(work.join("README.md"), "hello\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "start"]);
    git(&work, &["checkout", "-q", "-b", BRANCH]);
    std::fs::write(work.join("hello.txt"), "hi\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "add hello"]);
    git(
        &work,
        &["push", "-q", bare.to_str().unwrap(), "main", BRANCH],
    );
    bare
}
