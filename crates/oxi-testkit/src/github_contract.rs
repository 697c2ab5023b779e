//! GitHub's published API descriptions, and a proxy that holds traffic to them.
//!
//! The REST description (OpenAPI, npm `@octokit/openapi`) and the GraphQL schema (npm
//! `@octokit/graphql-schema`) are pinned and installed outside the clone by
//! `.ci/install-github-descriptions`. [`description`] loads them once per test binary (or, without
//! them, says how to install them; under `CI=true` it panics instead, so CI never passes without
//! checking).
//!
//! [`CheckingProxy`] sits between a GitHub client (oxi's library or the `oxi` binary) and either
//! GitHub *as described* (each answer is the description's example) or the fake GitHub
//! ([`crate::fake_github`]). It records every request: the operation it matched and every way
//! the request, or the answer it received, breaks the operation's description (an undescribed
//! path or parameter, a body the request schema rejects, an undocumented status, an answer
//! missing a required field, a GraphQL document or variables the schema rejects).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// The descriptions: where they are, which versions.

const INSTALL_SCRIPT: &str = include_str!("../../../.ci/install-github-descriptions");
const INSTALL_COMMAND: &str = "bash .ci/install-github-descriptions";

/// The version pinned in the install script for `variable` (`OPENAPI_VERSION=…`).
pub fn pinned(variable: &str) -> &'static str {
    INSTALL_SCRIPT
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{variable}=")))
        .map(str::trim)
        .expect("the install script pins the version")
}

pub fn descriptions_dir() -> PathBuf {
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
pub struct Description {
    /// The REST description (`api.github.com.json`).
    pub rest: Value,
    /// Every REST operation: method, path template and its matcher, the operation.
    pub operations: Vec<RestOperation>,
    pub graphql: Valid<Schema>,
}

pub struct RestOperation {
    pub id: String,
    pub method: Method,
    pub template: String,
    matcher: regex::Regex,
    /// Literal characters in the template: the most specific match wins.
    literal_len: usize,
    pointer: String,
}

/// The descriptions, or `None` after saying how to install them. Panics under `CI=true`.
pub fn description() -> Option<&'static Description> {
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
                    "SKIPPED a GitHub contract test (src/github/contract.rs, tests/github_contract.rs): {problem}\n  \
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

pub fn rest_operations(rest: &Value) -> Vec<RestOperation> {
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
pub fn resolve<'a>(rest: &'a Value, mut value: &'a Value) -> &'a Value {
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
    pub fn operation(&self, id: &str) -> Option<&RestOperation> {
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
    pub fn success_status(&self, op: &RestOperation) -> u16 {
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
    pub fn response_schema(&self, op: &RestOperation, status: u16) -> Option<&Value> {
        self.response(op, status)?
            .pointer("/content/application~1json/schema")
    }

    /// Every example answer of `op` for `status`, by name.
    pub fn response_examples(&self, op: &RestOperation, status: u16) -> Vec<(String, Value)> {
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
                let mut value = resolve(&self.rest, example).get("value")?;
                // Some examples' value is itself a reference to a named example
                // (`{"value": {"$ref": "#/components/examples/issue"}}`).
                for _ in 0..4 {
                    let Some(pointer) = value.get("$ref").and_then(Value::as_str) else {
                        break;
                    };
                    value = self
                        .rest
                        .pointer(pointer.trim_start_matches('#'))?
                        .get("value")?;
                }
                Some((name.clone(), value.clone()))
            })
            .collect();
        if let Some(example) = content.get("example") {
            out.push(("example".to_owned(), example.clone()));
        }
        out
    }

    /// A validator for an OpenAPI schema (draft 4 after `nullable` is rewritten), carrying
    /// the components it refers to.
    pub fn validator(&self, schema: &Value) -> jsonschema::Validator {
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

// ---------------------------------------------------------------------------------------------
// The checking proxy.

/// The operation a request matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Called {
    /// An `operationId` of the REST description.
    Rest(String),
    /// The root field of a GraphQL query or mutation.
    Graphql(String),
}

/// One request the client sent, and what the description says about it and its answer.
#[derive(Debug, Clone)]
pub struct Seen {
    /// What the test said was calling ([`CheckingProxy::set_caller`]).
    pub caller: String,
    pub method: String,
    pub path: String,
    /// The answer's status.
    pub status: u16,
    /// The operation it matched; `None` when none did (a problem says why).
    pub api: Option<Called>,
    pub problems: Vec<String>,
}

/// Where the proxy's answers come from.
#[derive(Debug, Clone)]
pub enum Answers {
    /// The description's example for the operation (GraphQL: a `data` naming the root field).
    Examples,
    /// A server at this base URL (the fake GitHub); its answers are checked too.
    Forward(String),
}

struct Server {
    description: &'static Description,
    answers: Answers,
    /// This proxy's own base URL, which replaces the forwarded server's in `Link` and
    /// `Location` headers so pages and redirects come back through the proxy.
    url: String,
    caller: Mutex<String>,
    seen: Mutex<Vec<Seen>>,
    http: reqwest::Client,
}

/// A local HTTP server that checks every request against GitHub's description.
pub struct CheckingProxy {
    server: Arc<Server>,
    task: tokio::task::JoinHandle<()>,
}

impl CheckingProxy {
    /// Listens on 127.0.0.1 (a free port).
    pub async fn start(
        description: &'static Description,
        answers: Answers,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = Arc::new(Server {
            description,
            answers,
            url,
            caller: Mutex::new(String::new()),
            seen: Mutex::new(Vec::new()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(std::io::Error::other)?,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&server));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { server, task })
    }

    /// The base URL to give the client as GitHub's.
    pub fn url(&self) -> String {
        self.server.url.clone()
    }

    /// Names what the following requests come from, in [`Seen::caller`].
    pub fn set_caller(&self, caller: &str) {
        caller.clone_into(&mut self.server.caller.lock().unwrap());
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.server.seen.lock().unwrap().clone()
    }
}

impl Drop for CheckingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the forwarded server (or the examples) answered.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Option<Value>,
}

impl Answer {
    fn json(status: u16, body: Option<Value>) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body,
        }
    }
}

async fn handle(
    axum::extract::State(server): axum::extract::State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or("").to_owned();
    let path_and_query = uri
        .path_and_query()
        .map_or(path.clone(), |pq| pq.as_str().to_owned());
    let body: Option<Value> = (!body.is_empty())
        .then(|| serde_json::from_slice(&body).unwrap_or_else(|_| json!("<not JSON>")));
    let mut seen = Seen {
        caller: server.caller.lock().unwrap().clone(),
        method: method.to_string(),
        path: path.clone(),
        status: 0,
        api: None,
        problems: Vec::new(),
    };
    let description = server.description;
    // GitHub Enterprise Server serves GraphQL at `/api/graphql`, github.com at `/graphql`.
    let answer = if path == "/graphql" || path == "/api/graphql" {
        let (api, problems) = check_graphql(description, body.as_ref());
        seen.problems = problems;
        let field = match &api {
            Some(Called::Graphql(f)) => f.clone(),
            _ => "unknown".to_owned(),
        };
        seen.api = api;
        match &server.answers {
            // oxi reads only `errors` from GraphQL answers; the data names the root field.
            Answers::Examples => Answer::json(
                200,
                Some(json!({ "data": { field: { "clientMutationId": null } } })),
            ),
            Answers::Forward(base) => {
                forward(
                    &server,
                    base,
                    &method,
                    &path_and_query,
                    &headers,
                    body.as_ref(),
                )
                .await
            }
        }
    } else {
        let rest_path = path.strip_prefix("/api/v3").unwrap_or(&path);
        match description.match_request(&method, rest_path) {
            None => {
                seen.problems.push(
                    "no operation in GitHub's REST description has this method and path".into(),
                );
                match &server.answers {
                    Answers::Examples => Answer::json(404, Some(json!({ "message": "Not Found" }))),
                    Answers::Forward(base) => {
                        forward(
                            &server,
                            base,
                            &method,
                            &path_and_query,
                            &headers,
                            body.as_ref(),
                        )
                        .await
                    }
                }
            }
            Some((op, path_values)) => {
                seen.api = Some(Called::Rest(op.id.clone()));
                seen.problems = check_request(description, op, &path_values, &query, body.as_ref());
                match &server.answers {
                    Answers::Examples => {
                        let status = description.success_status(op);
                        let example = description
                            .response_examples(op, status)
                            .into_iter()
                            .next()
                            .map(|(_, v)| v);
                        Answer::json(status, example)
                    }
                    Answers::Forward(base) => {
                        let answer = forward(
                            &server,
                            base,
                            &method,
                            &path_and_query,
                            &headers,
                            body.as_ref(),
                        )
                        .await;
                        seen.problems.extend(check_answer(
                            description,
                            op,
                            answer.status,
                            answer.body.as_ref(),
                        ));
                        answer
                    }
                }
            }
        }
    };
    seen.status = answer.status;
    server.seen.lock().unwrap().push(seen);
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = match answer.body {
        Some(value) => (status, axum::Json(value)).into_response(),
        None => status.into_response(),
    };
    for (name, value) in &answer.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// The answer headers a GitHub client reads, passed back through the proxy.
const PASSED_BACK: [&str; 5] = [
    "link",
    "location",
    "retry-after",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

/// Sends the request on to `base` with the client's credentials; its status, the headers a
/// client reads (URLs pointing back at the proxy) and its JSON answer.
async fn forward(
    server: &Server,
    base: &str,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Answer {
    let mut request = server
        .http
        .request(method.clone(), format!("{base}{path_and_query}"));
    for name in [
        "authorization",
        "accept",
        "user-agent",
        "x-github-api-version",
    ] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value.clone());
        }
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => {
            return Answer::json(502, Some(json!({ "message": format!("proxy: {e}") })));
        }
    };
    let status = response.status().as_u16();
    let mut passed = HeaderMap::new();
    for name in PASSED_BACK {
        if let Some(value) = response.headers().get(name)
            && let Ok(text) = value.to_str()
            && let Ok(value) = HeaderValue::from_str(&text.replace(base, &server.url))
        {
            passed.insert(name, value);
        }
    }
    let text = response.text().await.unwrap_or_default();
    let body =
        (!text.trim().is_empty()).then(|| serde_json::from_str(&text).unwrap_or(json!(text)));
    Answer {
        status,
        headers: passed,
        body,
    }
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
fn check_graphql(description: &Description, body: Option<&Value>) -> (Option<Called>, Vec<String>) {
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
        .map(|f| f.name.to_string());
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
    (field.map(Called::Graphql), problems)
}
