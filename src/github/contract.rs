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
use std::sync::{Arc, Mutex, OnceLock};

use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use http::Method;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::model::{CheckRuns, PullFile, PullRequest, Repository, Review};
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
        caller: "GithubClient::check_runs",
        api: Api::Rest("checks/list-for-ref"),
        reads: reads::<CheckRuns>,
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

// ---------------------------------------------------------------------------------------------
// The descriptions: where they are, which versions.

const INSTALL_SCRIPT: &str = include_str!("../../.ci/install-github-descriptions");
const INSTALL_COMMAND: &str = "bash .ci/install-github-descriptions";

/// The version pinned in the install script for `variable` (`OPENAPI_VERSION=…`).
fn pinned(variable: &str) -> &'static str {
    INSTALL_SCRIPT
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{variable}=")))
        .map(str::trim)
        .expect("the install script pins the version")
}

fn descriptions_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("OXI_GITHUB_DESCRIPTIONS_DIR") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        });
    cache.join("oxi").join("github-descriptions")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// GitHub's published descriptions, parsed once per test binary.
struct Description {
    /// The REST description (`api.github.com.json`).
    rest: Value,
    /// Every REST operation: method, path template and its matcher, the operation.
    operations: Vec<RestOperation>,
    graphql: Valid<Schema>,
}

struct RestOperation {
    id: String,
    method: Method,
    template: String,
    matcher: regex::Regex,
    /// Literal characters in the template: the most specific match wins.
    literal_len: usize,
    pointer: String,
}

/// The descriptions, or `None` after saying how to install them. Panics under `CI=true`.
fn description() -> Option<&'static Description> {
    static LOADED: OnceLock<Result<Description, String>> = OnceLock::new();
    match LOADED.get_or_init(load) {
        Ok(d) => Some(d),
        Err(problem) if in_ci() => panic!(
            "CI=true but GitHub's API descriptions are unusable: {problem}\n\
             run `{INSTALL_COMMAND}` (or set OXI_GITHUB_DESCRIPTIONS_DIR) before the tests"
        ),
        Err(problem) => {
            // Straight to the stderr descriptor: libtest captures `eprint!` of a passing test,
            // and a skip nobody sees is a silent pass.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED the GitHub contract tests (src/github/contract.rs): {problem}\n  \
                     to run them: {INSTALL_COMMAND} (installs the pinned descriptions; \
                     OXI_GITHUB_DESCRIPTIONS_DIR overrides where)"
                );
            });
            None
        }
    }
}

fn load() -> Result<Description, String> {
    let modules = descriptions_dir().join("node_modules").join("@octokit");
    for (package, variable) in [
        ("openapi", "OPENAPI_VERSION"),
        ("graphql-schema", "GRAPHQL_SCHEMA_VERSION"),
    ] {
        let manifest = modules.join(package).join("package.json");
        let text = std::fs::read_to_string(&manifest)
            .map_err(|e| format!("{} cannot be read: {e}", manifest.display()))?;
        let found: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not JSON: {e}", manifest.display()))?;
        let want = pinned(variable);
        if found["version"].as_str() != Some(want) {
            return Err(format!(
                "{} is version {}, the pin is {want}",
                manifest.display(),
                found["version"]
            ));
        }
    }
    let rest_path = modules.join("openapi/generated/api.github.com.json");
    let rest: Value = serde_json::from_slice(
        &std::fs::read(&rest_path).map_err(|e| format!("{}: {e}", rest_path.display()))?,
    )
    .map_err(|e| format!("{} is not JSON: {e}", rest_path.display()))?;
    let operations = rest_operations(&rest);
    let sdl_path = modules.join("graphql-schema/schema.graphql");
    let sdl =
        std::fs::read_to_string(&sdl_path).map_err(|e| format!("{}: {e}", sdl_path.display()))?;
    let graphql = graphql_schema(sdl).map_err(|e| format!("{}: {e}", sdl_path.display()))?;
    Ok(Description {
        rest,
        operations,
        graphql,
    })
}

/// GitHub's schema, validated. The published schema defines some fields twice (the
/// `EnterpriseOwnerInfo` deploy-key settings, identically); apollo-compiler keeps the first
/// definition and reports the second, which is tolerated. Any other error is not.
fn graphql_schema(sdl: String) -> Result<Valid<Schema>, String> {
    match Schema::parse_and_validate(sdl, "schema.graphql") {
        Ok(schema) => Ok(schema),
        Err(with_errors) => {
            let other: Vec<String> = with_errors
                .errors
                .iter()
                .map(|d| d.error.to_string())
                .filter(|e| !e.starts_with("duplicate definitions for the"))
                .collect();
            if other.is_empty() {
                Ok(Valid::assume_valid(with_errors.partial))
            } else {
                Err(format!(
                    "the GraphQL schema does not validate: {}",
                    other.join("; ")
                ))
            }
        }
    }
}

fn rest_operations(rest: &Value) -> Vec<RestOperation> {
    let mut out = Vec::new();
    let Some(paths) = rest["paths"].as_object() else {
        return out;
    };
    for (template, item) in paths {
        let Some(methods) = item.as_object() else {
            continue;
        };
        for (method, operation) in methods {
            let (Ok(parsed), Some(id)) = (
                method.to_uppercase().parse::<Method>(),
                operation["operationId"].as_str(),
            ) else {
                continue;
            };
            let multi = |name: &str| {
                operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| resolve(rest, p))
                    .any(|p| p["name"] == name && p["x-multi-segment"] == true)
            };
            let mut pattern = String::from("^");
            let mut literal_len = 0;
            for piece in template.split_inclusive(['{', '}']) {
                if let Some(name) = piece.strip_suffix('}') {
                    pattern.push_str(if multi(name) { "(.+)" } else { "([^/]+)" });
                } else {
                    let text = piece.trim_end_matches('{');
                    literal_len += text.len();
                    pattern.push_str(&regex::escape(text));
                }
            }
            pattern.push('$');
            out.push(RestOperation {
                id: id.to_owned(),
                method: parsed,
                template: template.clone(),
                matcher: regex::Regex::new(&pattern).expect("template regex"),
                literal_len,
                pointer: format!(
                    "/paths/{}/{method}",
                    template.replace('~', "~0").replace('/', "~1")
                ),
            });
        }
    }
    out
}

/// `value` with `$ref`s followed (within the REST description).
fn resolve<'a>(rest: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match value.get("$ref").and_then(Value::as_str) {
            Some(pointer) => match rest.pointer(pointer.trim_start_matches('#')) {
                Some(target) => value = target,
                None => return value,
            },
            None => return value,
        }
    }
    value
}

impl Description {
    fn operation(&self, id: &str) -> Option<&RestOperation> {
        self.operations.iter().find(|o| o.id == id)
    }

    fn body_of(&self, op: &RestOperation) -> &Value {
        self.rest
            .pointer(&op.pointer)
            .expect("operation pointer resolves")
    }

    /// The described operation for a request: the most specific path template that matches.
    fn match_request(&self, method: &Method, path: &str) -> Option<(&RestOperation, Vec<String>)> {
        self.operations
            .iter()
            .filter(|o| o.method == *method)
            .filter_map(|o| {
                let captures = o.matcher.captures(path)?;
                let values = captures
                    .iter()
                    .skip(1)
                    .flatten()
                    .map(|m| m.as_str().to_owned())
                    .collect();
                Some((o, values))
            })
            .max_by_key(|(o, _)| o.literal_len)
    }

    /// The operation's parameters (path and query), `$ref`s followed.
    fn parameters<'a>(&'a self, op: &'a RestOperation) -> Vec<&'a Value> {
        self.body_of(op)["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| resolve(&self.rest, p))
            .collect()
    }

    /// The documented answer `status` of `op`, `$ref`s followed.
    fn response(&self, op: &RestOperation, status: u16) -> Option<&Value> {
        self.body_of(op)["responses"]
            .get(status.to_string())
            .map(|r| resolve(&self.rest, r))
    }

    /// The lowest documented 2xx status of `op`.
    fn success_status(&self, op: &RestOperation) -> u16 {
        self.body_of(op)["responses"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(code, _)| code.parse::<u16>().ok())
            .filter(|code| (200..300).contains(code))
            .min()
            .unwrap_or(200)
    }

    /// The JSON schema of `op`'s answer `status`, if it has a JSON body.
    fn response_schema(&self, op: &RestOperation, status: u16) -> Option<&Value> {
        self.response(op, status)?
            .pointer("/content/application~1json/schema")
    }

    /// Every example answer of `op` for `status`, by name.
    fn response_examples(&self, op: &RestOperation, status: u16) -> Vec<(String, Value)> {
        let Some(content) = self
            .response(op, status)
            .and_then(|r| r.pointer("/content/application~1json"))
        else {
            return Vec::new();
        };
        let mut out: Vec<(String, Value)> = content["examples"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(name, example)| {
                Some((
                    name.clone(),
                    resolve(&self.rest, example).get("value")?.clone(),
                ))
            })
            .collect();
        if let Some(example) = content.get("example") {
            out.push(("example".to_owned(), example.clone()));
        }
        out
    }

    /// A validator for an OpenAPI schema (draft 4 after `nullable` is rewritten), carrying
    /// the components it refers to.
    fn validator(&self, schema: &Value) -> jsonschema::Validator {
        let mut pointers = BTreeSet::new();
        collect_refs(&self.rest, schema, &mut pointers);
        let mut root = json!({ "allOf": [to_json_schema(schema)] });
        for pointer in pointers {
            let target = self.rest.pointer(&pointer).expect("collected refs resolve");
            let mut slot = &mut root;
            for key in pointer.trim_start_matches('/').split('/') {
                let key = key.replace("~1", "/").replace("~0", "~");
                slot = slot
                    .as_object_mut()
                    .expect("components are objects")
                    .entry(key)
                    .or_insert_with(|| json!({}));
            }
            *slot = to_json_schema(target);
        }
        jsonschema::draft4::options()
            .should_validate_formats(false)
            .build(&root)
            .expect("GitHub's schemas compile")
    }
}

/// Every `#/…` pointer `value` refers to, transitively.
fn collect_refs(rest: &Value, value: &Value, seen: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(pointer) = map.get("$ref").and_then(Value::as_str) {
                let pointer = pointer.trim_start_matches('#').to_owned();
                if seen.insert(pointer.clone())
                    && let Some(target) = rest.pointer(&pointer)
                {
                    collect_refs(rest, target, seen);
                }
            }
            for v in map.values() {
                collect_refs(rest, v, seen);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(rest, v, seen)),
        _ => {}
    }
}

/// An OpenAPI 3.0 schema object as JSON Schema: `nullable: true` becomes a `null` alternative.
/// Only schema positions are rewritten, so a property that happens to be called `nullable` or
/// an `enum`'s values are left alone.
fn to_json_schema(schema: &Value) -> Value {
    let Some(map) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let converted = match key.as_str() {
            "properties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), to_json_schema(v)))
                    .collect(),
            ),
            "items" | "additionalProperties" | "not" => to_json_schema(value),
            "allOf" | "anyOf" | "oneOf" => Value::Array(
                value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(to_json_schema)
                    .collect(),
            ),
            "nullable" | "example" | "discriminator" | "readOnly" | "writeOnly" | "xml" => {
                continue;
            }
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if map.get("nullable") != Some(&Value::Bool(true)) {
        return Value::Object(out);
    }
    match out.get("type").cloned() {
        Some(Value::String(t)) => {
            out.insert("type".into(), json!([t, "null"]));
            if let Some(Value::Array(values)) = out.get_mut("enum") {
                values.push(Value::Null);
            }
            Value::Object(out)
        }
        _ => json!({ "anyOf": [Value::Object(out), { "type": "null" }] }),
    }
}

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
// The servers oxi's client talks to in these tests.

/// One request oxi sent, and what the contract says about it.
#[derive(Debug, Clone)]
struct Seen {
    caller: String,
    method: String,
    path: String,
    /// The operation it matched: a REST `operationId` or a GraphQL root field.
    api: Option<Api>,
    problems: Vec<String>,
}

/// Where answers come from.
enum Answers {
    /// The description's example for the operation.
    Examples,
    /// The fake, at this base URL; its answers are checked against the description.
    Fake(String),
}

struct Server {
    description: &'static Description,
    answers: Answers,
    caller: Mutex<String>,
    seen: Mutex<Vec<Seen>>,
}

type Shared = Arc<Server>;

async fn serve(server: Shared) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    let app = axum::Router::new().fallback(handle).with_state(server);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn handle(
    axum::extract::State(server): axum::extract::State<Shared>,
    method: Method,
    uri: http::Uri,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let body: Option<Value> = (!body.is_empty())
        .then(|| serde_json::from_slice(&body).unwrap_or_else(|_| json!("<not JSON>")));
    let mut seen = Seen {
        caller: server.caller.lock().unwrap().clone(),
        method: method.to_string(),
        path: path.clone(),
        api: None,
        problems: Vec::new(),
    };
    let description = server.description;
    let (status, answer) = if path == "/graphql" {
        let (api, problems) = check_graphql(description, body.as_ref());
        seen.api = api;
        seen.problems = problems;
        let field = match api {
            Some(Api::Graphql(f)) => f,
            _ => "unknown",
        };
        match &server.answers {
            // oxi reads only `errors` from GraphQL answers; the data names the root field.
            Answers::Examples => (
                200,
                Some(json!({ "data": { field: { "clientMutationId": null } } })),
            ),
            Answers::Fake(base) => forward(base, &method, "/graphql", body.as_ref()).await,
        }
    } else {
        match description.match_request(&method, &path) {
            None => {
                seen.problems.push(
                    "no operation in GitHub's REST description has this method and path".into(),
                );
                (404, Some(json!({ "message": "Not Found" })))
            }
            Some((op, path_values)) => {
                seen.api = Some(Api::Rest(leak(&op.id)));
                seen.problems = check_request(description, op, &path_values, &query, body.as_ref());
                match &server.answers {
                    Answers::Examples => {
                        let status = description.success_status(op);
                        let example = description
                            .response_examples(op, status)
                            .into_iter()
                            .next()
                            .map(|(_, v)| v);
                        (status, example)
                    }
                    Answers::Fake(base) => {
                        let (status, answer) = forward(
                            base,
                            &method,
                            uri.path_and_query().map_or(path.as_str(), |pq| pq.as_str()),
                            body.as_ref(),
                        )
                        .await;
                        seen.problems.extend(check_answer(
                            description,
                            op,
                            status,
                            answer.as_ref(),
                        ));
                        (status, answer)
                    }
                }
            }
        }
    };
    server.seen.lock().unwrap().push(seen);
    let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    match answer {
        Some(value) => (status, axum::Json(value)).into_response(),
        None => status.into_response(),
    }
}

fn leak(text: &str) -> &'static str {
    Box::leak(text.to_owned().into_boxed_str())
}

/// Sends the request on to the fake; its status and JSON answer.
async fn forward(
    base: &str,
    method: &Method,
    path_and_query: &str,
    body: Option<&Value>,
) -> (u16, Option<Value>) {
    let octo = octocrab::Octocrab::builder()
        .base_uri(base)
        .expect("fake base URL")
        .personal_token(TOKEN.to_owned())
        .build()
        .expect("octocrab for the fake");
    let response = match *method {
        Method::GET => octo._get(path_and_query).await,
        Method::POST => octo._post(path_and_query, body).await,
        Method::PATCH => octo._patch(path_and_query, body).await,
        Method::PUT => octo._put(path_and_query, body).await,
        Method::DELETE => octo._delete(path_and_query, body).await,
        _ => panic!("no forwarding for {method}"),
    }
    .expect("the fake answers");
    let status = response.status().as_u16();
    let text = octo
        .body_to_string(response)
        .await
        .expect("the fake's body");
    let answer =
        (!text.trim().is_empty()).then(|| serde_json::from_str(&text).unwrap_or(json!(text)));
    (status, answer)
}

/// What is wrong with a request for `op`: path parameters, query parameters, body.
fn check_request(
    description: &Description,
    op: &RestOperation,
    path_values: &[String],
    query: &str,
    body: Option<&Value>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let parameters = description.parameters(op);
    let names: Vec<&str> = op
        .template
        .split('{')
        .skip(1)
        .filter_map(|p| p.split_once('}').map(|(name, _)| name))
        .collect();
    let mut given: Vec<(String, String, &str)> = names
        .iter()
        .zip(path_values)
        .map(|(n, v)| ((*n).to_owned(), v.clone(), "path"))
        .collect();
    given.extend(
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    v.replace("%3A", ":").replace("%2F", "/"),
                    "query",
                )
            }),
    );
    for (name, raw, place) in &given {
        let Some(parameter) = parameters
            .iter()
            .find(|p| p["name"] == name.as_str() && p["in"] == *place)
        else {
            problems.push(format!("{place} parameter `{name}` is not described"));
            continue;
        };
        let schema = resolve(&description.rest, &parameter["schema"]);
        let value = match schema["type"].as_str() {
            Some("integer") => raw.parse::<i64>().map_or_else(|_| json!(raw), |n| json!(n)),
            Some("number") => raw.parse::<f64>().map_or_else(|_| json!(raw), |n| json!(n)),
            Some("boolean") => raw
                .parse::<bool>()
                .map_or_else(|_| json!(raw), |b| json!(b)),
            _ => json!(raw),
        };
        for error in description
            .validator(&parameter["schema"])
            .iter_errors(&value)
        {
            problems.push(format!("{place} parameter `{name}` = {raw:?}: {error}"));
        }
    }
    for parameter in &parameters {
        if parameter["required"] == true
            && !given
                .iter()
                .any(|(n, _, place)| parameter["name"] == n.as_str() && parameter["in"] == *place)
        {
            problems.push(format!(
                "required parameter `{}` is missing",
                parameter["name"]
            ));
        }
    }
    let request_body = description
        .body_of(op)
        .get("requestBody")
        .map(|b| resolve(&description.rest, b));
    match (request_body, body) {
        (None, Some(body)) => {
            problems.push(format!("the operation takes no body, oxi sent {body}"))
        }
        (Some(described), None) if described["required"] == true => {
            problems.push("the operation requires a body; oxi sent none".into());
        }
        (Some(described), Some(body)) => {
            match described.pointer("/content/application~1json/schema") {
                None => problems.push("the operation takes no JSON body".into()),
                Some(schema) => {
                    for error in description.validator(schema).iter_errors(body) {
                        problems.push(format!("body {}: {error}", error.instance_path()));
                    }
                }
            }
        }
        _ => {}
    }
    problems
}

/// What is wrong with an answer (the fake's) to `op`: an undocumented status, or a JSON body
/// that does not match the status's schema (a required field missing, a wrong type).
fn check_answer(
    description: &Description,
    op: &RestOperation,
    status: u16,
    answer: Option<&Value>,
) -> Vec<String> {
    let Some(_) = description.response(op, status) else {
        return vec![format!(
            "answer status {status} is not documented for {}",
            op.id
        )];
    };
    match (description.response_schema(op, status), answer) {
        (Some(schema), Some(answer)) => description
            .validator(schema)
            .iter_errors(answer)
            .map(|e| format!("answer {status} at `{}`: {e}", e.instance_path()))
            .collect(),
        (Some(_), None) => vec![format!(
            "answer {status} has no body; the description has one"
        )],
        (None, _) => Vec::new(),
    }
}

/// The GraphQL root field a request asks for, and what is wrong with it: the document must
/// validate against GitHub's schema and the variables must coerce to the declared types.
fn check_graphql(description: &Description, body: Option<&Value>) -> (Option<Api>, Vec<String>) {
    let Some(query) = body.and_then(|b| b["query"].as_str()) else {
        return (None, vec!["a GraphQL request without a `query`".into()]);
    };
    let schema = &description.graphql;
    let document = match ExecutableDocument::parse_and_validate(schema, query, "oxi.graphql") {
        Ok(d) => d,
        Err(e) => {
            return (
                None,
                vec![format!("GraphQL document does not validate: {}", e.errors)],
            );
        }
    };
    let operation = match document.operations.get(None) {
        Ok(o) => o,
        Err(e) => return (None, vec![format!("GraphQL operation: {}", e.message())]),
    };
    let field = operation
        .root_fields(&document)
        .next()
        .map(|f| leak(f.name.as_str()));
    let variables = apollo_compiler::response::JsonValue::from(
        body.and_then(|b| b.get("variables"))
            .cloned()
            .unwrap_or(json!({})),
    );
    let mut problems = Vec::new();
    match variables.as_object() {
        Some(values) => {
            if let Err(e) =
                apollo_compiler::request::coerce_variable_values(schema, operation, values)
            {
                problems.push(format!("GraphQL variables: {}", e.message()));
            }
        }
        None => problems.push("GraphQL `variables` is not an object".into()),
    }
    (field.map(Api::Graphql), problems)
}

// ---------------------------------------------------------------------------------------------
// Driving oxi's functions.

/// What the calls share: the pull request the first one opens.
struct Ctx {
    number: u64,
    head_sha: String,
    node_id: String,
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
        "GithubClient::check_runs" => drop(client.check_runs(&ctx.head_sha).await?),
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
                .merge_pull(ctx.number, &ctx.head_sha, "T-1: add hello")
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
        "GithubWriter::mark_ready" => 2,
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
    let server = Arc::new(Server {
        description,
        answers,
        caller: Mutex::new(String::new()),
        seen: Mutex::new(Vec::new()),
    });
    let base = serve(Arc::clone(&server)).await;
    let client = client_for(&base);
    let writer = GithubWriter::new(&client, release_mode());
    let mut ctx = Ctx {
        number: 1,
        head_sha: "0".repeat(40),
        node_id: String::new(),
    };
    let mut outcomes = Vec::new();
    for caller in callers_in_order() {
        caller.clone_into(&mut server.caller.lock().unwrap());
        outcomes.push((caller, drive(caller, &client, &writer, &mut ctx).await));
    }
    let seen = server.seen.lock().unwrap().clone();
    (seen, outcomes)
}

/// Each request matched an operation listed for its caller, and met no problem.
fn request_problems(seen: &[Seen]) -> Vec<String> {
    let mut problems = Vec::new();
    for s in seen {
        let listed = OPERATIONS
            .iter()
            .any(|op| op.caller == s.caller && Some(op.api) == s.api);
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
            .any(|s| s.caller == op.caller && s.api == Some(op.api))
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
    let (seen, outcomes) = run_all(description, Answers::Fake(fake.url())).await;
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
