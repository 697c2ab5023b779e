//! GitHub issues: the list a task source reads, one issue by number, and the one comment oxi
//! keeps on an issue (created once, then edited).
//!
//! Shapes (GitHub REST, "Issues" and "Issue comments"):
//! - `GET /repos/{owner}/{repo}/issues?state=open&labels=a,b&milestone=N&assignee=LOGIN&per_page=100`
//!   lists issues *and pull requests*; a pull request carries a `pull_request` key. Pages follow
//!   `Link: rel="next"`. `labels` items are label objects (`name`) or, in the schema, plain
//!   strings. `body` may be null.
//! - `GET /repos/{owner}/{repo}/issues/{number}`: 404 (never existed, or no access), 410 (deleted).
//! - `POST /repos/{owner}/{repo}/issues/{number}/comments` `{"body"}` → 201 with the comment (`id`).
//! - `PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}` `{"body"}` → 200; 404 when the
//!   comment was deleted.

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{GithubClient, GithubError, GithubWriter, MAX_PAGES, message_of, next_link};

/// A label as the issues endpoints give it: an object with a `name`, or (per the schema) a bare
/// string.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum IssueLabel {
    Name(String),
    Object {
        #[serde(default)]
        name: Option<String>,
    },
}

impl IssueLabel {
    pub fn name(&self) -> &str {
        match self {
            IssueLabel::Name(name) => name,
            IssueLabel::Object { name } => name.as_deref().unwrap_or(""),
        }
    }
}

/// The parts of an issue oxi reads.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Issue {
    pub number: u64,
    /// `open` or `closed`.
    pub state: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub labels: Vec<IssueLabel>,
    #[serde(default)]
    pub html_url: Option<String>,
    /// Present when the item is a pull request (the issues endpoints list those too).
    #[serde(default)]
    pub pull_request: Option<Value>,
}

impl Issue {
    pub fn is_pull_request(&self) -> bool {
        self.pull_request.is_some()
    }

    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.labels.iter().map(IssueLabel::name)
    }
}

/// The parts of an issue comment oxi reads.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct IssueComment {
    pub id: u64,
    #[serde(default)]
    pub html_url: Option<String>,
}

/// Which open issues to list.
#[derive(Debug, Clone, Default)]
pub struct IssueFilter<'a> {
    /// Every one of them (GitHub's `labels` filter is an AND).
    pub labels: &'a [String],
    pub milestone: Option<u64>,
    pub assignee: Option<&'a str>,
}

/// One listing: the issues, and how many pull requests it returned (skipped).
#[derive(Debug, Clone, Default)]
pub struct IssueList {
    pub issues: Vec<Issue>,
    pub pull_requests_skipped: usize,
}

/// Percent-encodes a query value (labels may hold spaces, `:` or non-ASCII).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl GithubClient {
    /// Every open issue matching `filter`, all pages (up to the page cap); pull requests are
    /// counted and left out. A non-2xx answer is an error with GitHub's status and message.
    pub async fn open_issues(&self, filter: &IssueFilter<'_>) -> Result<IssueList, GithubError> {
        let labels: Vec<String> = filter.labels.iter().map(|l| encode(l)).collect();
        let mut query = format!("state=open&labels={}&per_page=100", labels.join(","));
        if let Some(milestone) = filter.milestone {
            query.push_str(&format!("&milestone={milestone}"));
        }
        if let Some(assignee) = filter.assignee {
            query.push_str(&format!("&assignee={}", encode(assignee)));
        }
        let path = self.repo_path(&format!("/issues?{query}"));
        let endpoint = format!("GET {}", self.repo_path("/issues"));
        let mut list = IssueList::default();
        let mut next = Some(path);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            let answer = self.send(Method::GET, &url, None).await?;
            if !answer.status.is_success() {
                return Err(GithubError::Rejected {
                    endpoint,
                    status: answer.status.as_u16(),
                    message: message_of(&answer.body),
                });
            }
            let page: Vec<Issue> = Self::parse(&endpoint, &answer.body)?;
            for item in page {
                if item.is_pull_request() {
                    list.pull_requests_skipped += 1;
                } else {
                    list.issues.push(item);
                }
            }
            if pages < MAX_PAGES {
                next = next_link(&answer.headers);
            }
        }
        Ok(list)
    }

    /// One issue (or pull request) by number; `None` when GitHub has none (404), it was
    /// deleted (410) or transferred elsewhere (301).
    pub async fn issue(&self, number: u64) -> Result<Option<Issue>, GithubError> {
        let path = self.repo_path(&format!("/issues/{number}"));
        let answer = match self.send(Method::GET, &path, None).await {
            Ok(answer) => answer,
            // 410: deleted; 301: transferred to another repository. Gone from this one either way.
            Err(GithubError::Rejected {
                status: 301 | 410, ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        match answer.status.as_u16() {
            404 | 410 => Ok(None),
            _ if answer.status.is_success() => Self::parse(&format!("GET {path}"), &answer.body),
            status => Err(GithubError::Rejected {
                endpoint: format!("GET {path}"),
                status,
                message: message_of(&answer.body),
            }),
        }
    }
}

impl GithubWriter<'_> {
    /// Creates a comment on issue `number`.
    pub async fn create_issue_comment(
        &self,
        number: u64,
        body: &str,
    ) -> Result<IssueComment, GithubError> {
        self.write(
            Method::POST,
            &self.client.repo_path(&format!("/issues/{number}/comments")),
            &serde_json::json!({ "body": body }),
        )
        .await
    }

    /// Replaces the text of comment `id`; `None` when the comment is gone (someone deleted it).
    pub async fn update_issue_comment(
        &self,
        id: u64,
        body: &str,
    ) -> Result<Option<IssueComment>, GithubError> {
        let path = self.client.repo_path(&format!("/issues/comments/{id}"));
        let answer = self
            .client
            .send(
                Method::PATCH,
                &path,
                Some(&serde_json::json!({ "body": body })),
            )
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(GithubError::Rejected {
                endpoint: format!("PATCH {path}"),
                status: answer.status.as_u16(),
                message: message_of(&answer.body),
            });
        }
        GithubClient::parse(&format!("PATCH {path}"), &answer.body).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_objects_or_strings_and_pull_requests_are_told_apart() {
        let items: Vec<Issue> = serde_json::from_str(
            r#"[{"number":1,"state":"open","title":"a","body":null,"labels":[{"id":1,"name":"oxi","color":"f"},"tier-0"]},
                {"number":2,"state":"open","title":"b","labels":[],"pull_request":{"url":"u","merged_at":null}}]"#,
        )
        .unwrap();
        assert_eq!(
            items[0].label_names().collect::<Vec<_>>(),
            ["oxi", "tier-0"]
        );
        assert!(!items[0].is_pull_request());
        assert!(items[1].is_pull_request());
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("good first issue"), "good%20first%20issue");
        assert_eq!(encode("area:ci"), "area%3Aci");
        assert_eq!(encode("oxi"), "oxi");
    }
}
