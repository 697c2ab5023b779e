//! The fake GitHub's issues: the repository's issue list (filtered by state, labels, milestone
//! and assignee, paginated, with pull requests among the items as GitHub lists them), one issue
//! by number, and issue comments (create, edit). Shapes follow GitHub's REST description of
//! "List repository issues", "Get an issue", "Create an issue comment" and "Update an issue
//! comment".

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::fake_github::{error, json_response, paginate, query_param, user_json};

/// One issue (or a pull request as the issues endpoints list it).
#[derive(Debug, Clone)]
struct FakeIssue {
    number: u64,
    title: String,
    body: Option<String>,
    state: String,
    labels: Vec<String>,
    milestone: Option<u64>,
    assignee: Option<String>,
    pull_request: bool,
    deleted: bool,
}

/// One comment on an issue.
#[derive(Debug, Clone)]
pub struct FakeComment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
    /// How many times it was edited after it was created.
    pub edits: u32,
}

#[derive(Debug, Default)]
struct Book {
    issues: Vec<FakeIssue>,
    comments: Vec<FakeComment>,
    next_comment: u64,
}

/// One request as the fake's router hands it over.
#[derive(Clone, Copy)]
pub(crate) struct IssueRequest<'a> {
    pub(crate) method: &'a str,
    /// The path after `/repos/{owner}/{repo}`, split at `/`.
    pub(crate) parts: &'a [&'a str],
    pub(crate) query: &'a str,
    pub(crate) body: &'a Value,
    pub(crate) repo: &'a str,
    /// `http://host:port`, for `Link` headers.
    pub(crate) base_url: &'a str,
    /// Most items per page.
    pub(crate) cap: usize,
}

/// A handle on the fake's issues (cheap to clone; every clone sees the same issues).
#[derive(Debug, Clone, Default)]
pub struct FakeIssues(Arc<Mutex<Book>>);

impl FakeIssues {
    fn with<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        let mut book = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut book)
    }

    fn edit(&self, number: u64, f: impl FnOnce(&mut FakeIssue)) {
        self.with(|b| {
            if let Some(issue) = b.issues.iter_mut().find(|i| i.number == number) {
                f(issue);
            }
        });
    }

    /// Opens issue `number` with these labels.
    pub fn add(&self, number: u64, title: &str, body: &str, labels: &[&str]) {
        self.with(|b| {
            b.issues.push(FakeIssue {
                number,
                title: title.to_owned(),
                body: Some(body.to_owned()),
                state: "open".to_owned(),
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                milestone: None,
                assignee: None,
                pull_request: false,
                deleted: false,
            })
        });
    }

    /// A pull request as the issues list returns it (a `pull_request` key), with these labels.
    pub fn add_pull_request_item(&self, number: u64, title: &str, labels: &[&str]) {
        self.add(number, title, "a pull request's description", labels);
        self.edit(number, |i| i.pull_request = true);
    }

    pub fn set_labels(&self, number: u64, labels: &[&str]) {
        self.edit(number, |i| {
            i.labels = labels.iter().map(|l| (*l).to_owned()).collect()
        });
    }

    pub fn set_body(&self, number: u64, body: Option<&str>) {
        self.edit(number, |i| i.body = body.map(str::to_owned));
    }

    pub fn set_milestone(&self, number: u64, milestone: Option<u64>) {
        self.edit(number, |i| i.milestone = milestone);
    }

    pub fn set_assignee(&self, number: u64, login: Option<&str>) {
        self.edit(number, |i| i.assignee = login.map(str::to_owned));
    }

    pub fn close(&self, number: u64) {
        self.edit(number, |i| i.state = "closed".to_owned());
    }

    pub fn reopen(&self, number: u64) {
        self.edit(number, |i| i.state = "open".to_owned());
    }

    /// The issue is deleted (GitHub then answers 410 for it).
    pub fn delete(&self, number: u64) {
        self.edit(number, |i| i.deleted = true);
    }

    /// Every comment on issue `number`, oldest first.
    pub fn comments(&self, number: u64) -> Vec<FakeComment> {
        self.with(|b| {
            b.comments
                .iter()
                .filter(|c| c.issue == number)
                .cloned()
                .collect()
        })
    }

    /// Someone deletes a comment.
    pub fn delete_comment(&self, id: u64) {
        self.with(|b| b.comments.retain(|c| c.id != id));
    }

    /// Answers the issue endpoints; `None` for any other path (the fake's router goes on).
    pub(crate) fn route(&self, request: &IssueRequest<'_>) -> Option<Response> {
        let IssueRequest {
            method,
            parts,
            query,
            body,
            repo,
            base_url,
            cap,
        } = *request;
        let path = format!("/repos/{repo}/{}", parts.join("/"));
        match (method, parts) {
            ("GET", ["issues"]) => Some(self.list(repo, base_url, &path, query, cap)),
            ("GET", ["issues", number]) => {
                let number = number.parse::<u64>().ok()?;
                let issue = self.with(|b| b.issues.iter().find(|i| i.number == number).cloned())?;
                Some(if issue.deleted {
                    error(StatusCode::GONE, "This issue was deleted")
                } else {
                    json_response(StatusCode::OK, issue_json(repo, &issue))
                })
            }
            ("POST", ["issues", number, "comments"]) => {
                let number = number.parse::<u64>().ok()?;
                Some(self.create_comment(repo, number, body))
            }
            ("PATCH", ["issues", "comments", id]) => {
                let id = id.parse::<u64>().ok()?;
                Some(self.update_comment(repo, id, body))
            }
            _ => None,
        }
    }

    fn list(&self, repo: &str, base_url: &str, path: &str, query: &str, cap: usize) -> Response {
        let state = query_param(query, "state").unwrap_or("open").to_owned();
        let labels: Vec<String> = query_param(query, "labels")
            .map(|l| {
                decode(l)
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        let milestone = query_param(query, "milestone").map(decode);
        let assignee = query_param(query, "assignee").map(decode);
        let mut items: Vec<FakeIssue> = self.with(|b| {
            b.issues
                .iter()
                .filter(|i| !i.deleted && (state == "all" || i.state == state))
                .filter(|i| {
                    labels
                        .iter()
                        .all(|l| i.labels.iter().any(|have| have.to_lowercase() == *l))
                })
                .filter(|i| match milestone.as_deref() {
                    None => true,
                    Some("*") => i.milestone.is_some(),
                    Some("none") => i.milestone.is_none(),
                    Some(n) => i.milestone.map(|m| m.to_string()).as_deref() == Some(n),
                })
                .filter(|i| match assignee.as_deref() {
                    None => true,
                    Some("*") => i.assignee.is_some(),
                    Some("none") => i.assignee.is_none(),
                    Some(login) => i.assignee.as_deref() == Some(login),
                })
                .cloned()
                .collect()
        });
        // GitHub's default order: newest first.
        items.sort_by_key(|i| std::cmp::Reverse(i.number));
        let items = items.iter().map(|i| issue_json(repo, i)).collect();
        paginate(base_url, path, query, items, cap)
    }

    fn create_comment(&self, repo: &str, number: u64, body: &Value) -> Response {
        let Some(text) = body["body"].as_str() else {
            return unprocessable("body");
        };
        let exists = self.with(|b| b.issues.iter().any(|i| i.number == number && !i.deleted));
        if !exists {
            return error(StatusCode::NOT_FOUND, "Not Found");
        }
        let comment = self.with(|b| {
            b.next_comment += 1;
            let comment = FakeComment {
                id: 9_000_000 + b.next_comment,
                issue: number,
                body: text.to_owned(),
                edits: 0,
            };
            b.comments.push(comment.clone());
            comment
        });
        json_response(StatusCode::CREATED, comment_json(repo, &comment))
    }

    fn update_comment(&self, repo: &str, id: u64, body: &Value) -> Response {
        let Some(text) = body["body"].as_str() else {
            return unprocessable("body");
        };
        let comment = self.with(|b| {
            let comment = b.comments.iter_mut().find(|c| c.id == id)?;
            comment.body = text.to_owned();
            comment.edits += 1;
            Some(comment.clone())
        });
        match comment {
            Some(comment) => json_response(StatusCode::OK, comment_json(repo, &comment)),
            None => error(StatusCode::NOT_FOUND, "Not Found"),
        }
    }
}

fn unprocessable(field: &str) -> Response {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "message": "Validation Failed", "errors": [{ "resource": "IssueComment", "field": field, "code": "missing_field" }], "documentation_url": "https://docs.github.com/rest/issues/comments" }),
    )
}

/// `%XX` sequences decoded (labels and logins travel percent-encoded in the query).
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = value.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn user() -> Value {
    user_json("octocat", 1)
}

/// A `milestone` as GitHub's REST description has it (every required field).
fn milestone_json(repo: &str, number: u64) -> Value {
    let api = format!("https://api.github.com/repos/{repo}/milestones/{number}");
    json!({
        "url": api, "html_url": format!("https://github.com/{repo}/milestone/{number}"),
        "labels_url": format!("{api}/labels"), "id": number, "node_id": format!("MI_fake{number}"),
        "number": number, "state": "open", "title": format!("M{number}"), "description": null,
        "creator": user(), "open_issues": 1, "closed_issues": 0,
        "created_at": "2026-11-20T12:00:00Z", "updated_at": "2026-11-21T12:00:00Z",
        "closed_at": null, "due_on": null,
    })
}

fn issue_json(repo: &str, i: &FakeIssue) -> Value {
    let api = format!("https://api.github.com/repos/{repo}/issues/{}", i.number);
    let mut issue = json!({
        "id": 1_000_000 + i.number,
        "node_id": format!("I_fake{}", i.number),
        "url": api,
        "repository_url": format!("https://api.github.com/repos/{repo}"),
        "labels_url": format!("{api}/labels{{/name}}"),
        "comments_url": format!("{api}/comments"),
        "events_url": format!("{api}/events"),
        "html_url": format!("https://github.com/{repo}/{}/{}", if i.pull_request { "pull" } else { "issues" }, i.number),
        "number": i.number,
        "state": i.state,
        "state_reason": if i.state == "closed" { Value::from("completed") } else { Value::Null },
        "title": i.title,
        "body": i.body,
        "user": user(),
        "labels": i.labels.iter().enumerate().map(|(n, l)| json!({
            "id": n + 1, "node_id": format!("LA_{n}"), "url": format!("https://api.github.com/repos/{repo}/labels/{l}"),
            "name": l, "description": null, "color": "ededed", "default": false,
        })).collect::<Vec<_>>(),
        "assignee": i.assignee.as_ref().map(|login| user_json(login, 2)),
        "assignees": i.assignee.iter().map(|login| user_json(login, 2)).collect::<Vec<_>>(),
        "milestone": i.milestone.map(|n| milestone_json(repo, n)),
        "locked": false,
        "active_lock_reason": null,
        "comments": 0,
        "closed_at": if i.state == "closed" { Value::from("2026-11-21T12:00:00Z") } else { Value::Null },
        "created_at": "2026-11-20T12:00:00Z",
        "updated_at": "2026-11-21T12:00:00Z",
        "author_association": "MEMBER",
    });
    if i.pull_request {
        issue["pull_request"] = json!({
            "url": format!("https://api.github.com/repos/{repo}/pulls/{}", i.number),
            "html_url": format!("https://github.com/{repo}/pull/{}", i.number),
            "diff_url": format!("https://github.com/{repo}/pull/{}.diff", i.number),
            "patch_url": format!("https://github.com/{repo}/pull/{}.patch", i.number),
            "merged_at": null,
        });
    }
    issue
}

fn comment_json(repo: &str, c: &FakeComment) -> Value {
    json!({
        "id": c.id,
        "node_id": format!("IC_fake{}", c.id),
        "url": format!("https://api.github.com/repos/{repo}/issues/comments/{}", c.id),
        "html_url": format!("https://github.com/{repo}/issues/{}#issuecomment-{}", c.issue, c.id),
        "body": c.body,
        "user": user(),
        "created_at": "2026-11-21T12:00:00Z",
        "updated_at": "2026-11-21T12:00:00Z",
        "issue_url": format!("https://api.github.com/repos/{repo}/issues/{}", c.issue),
        "author_association": "MEMBER",
    })
}
