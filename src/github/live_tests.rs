//! Read-only checks against the real api.github.com, opt-in: oxi's models must parse what
//! GitHub answers today, not only what the fake GitHub (crates/oxi-testkit) was taught.
//!
//! They run only when both variables are set, and are skipped (with a line naming them)
//! otherwise, so `cargo test` stays offline:
//!
//! ```sh
//! OXI_LIVE_GITHUB_TOKEN=ghp_… OXI_LIVE_GITHUB_REPO=owner/sandbox \
//!   cargo test --locked --lib github::live_tests -- --nocapture
//! ```
//!
//! Only GET requests are made (the repository, its pull requests, each one's files, reviews
//! and check runs); a read-only token is enough. `OXI_LIVE_GITHUB_API_URL` points them at a
//! GitHub Enterprise server instead.

use super::GithubClient;
use crate::config::GithubConfig;

const TOKEN: &str = "OXI_LIVE_GITHUB_TOKEN";
const REPO: &str = "OXI_LIVE_GITHUB_REPO";
const API_URL: &str = "OXI_LIVE_GITHUB_API_URL";
/// How many pull requests are read in full (files, reviews, check runs): enough to meet
/// open, closed and merged ones, few enough for the rate limit.
const PULLS_READ: usize = 5;

/// What the live checks need, or why they are skipped.
#[derive(Debug, PartialEq)]
enum Live {
    Run {
        token: String,
        repo: String,
        api_url: Option<String>,
    },
    Skip(String),
}

fn settings(var: impl Fn(&str) -> Option<String>) -> Live {
    let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    match (get(TOKEN), get(REPO)) {
        (Some(token), Some(repo)) => Live::Run {
            token,
            repo,
            api_url: get(API_URL),
        },
        (token, repo) => {
            let missing: Vec<&str> = [(TOKEN, token.is_none()), (REPO, repo.is_none())]
                .into_iter()
                .filter_map(|(name, gone)| gone.then_some(name))
                .collect();
            Live::Skip(format!(
                "skipped: live GitHub checks need {TOKEN} (a token that can read the repository) \
                 and {REPO} (owner/name of a sandbox repository); {} not set",
                missing.join(" and ")
            ))
        }
    }
}

fn client(token: &str, repo: &str, api_url: Option<&str>) -> GithubClient {
    let mut table = toml::Table::new();
    table.insert("repo".into(), repo.into());
    if let Some(url) = api_url {
        table.insert("api_url".into(), url.into());
    }
    let config: GithubConfig = table.try_into().unwrap();
    GithubClient::new(&config, token).unwrap()
}

#[tokio::test]
async fn models_parse_what_github_answers_today() {
    let (token, repo, api_url) = match settings(|name| std::env::var(name).ok()) {
        Live::Run {
            token,
            repo,
            api_url,
        } => (token, repo, api_url),
        Live::Skip(why) => {
            println!("{why}");
            return;
        }
    };
    let github = client(&token, &repo, api_url.as_deref());

    let repository = github.repository().await.unwrap();
    assert!(
        repository.full_name.eq_ignore_ascii_case(&repo),
        "asked for {repo}, GitHub answered {}",
        repository.full_name
    );
    assert!(repository.default_branch.is_some(), "{repository:?}");
    // An authenticated request sees the token's permissions; the doctor relies on them.
    assert!(repository.permissions.is_some(), "{repository:?}");

    let pulls = github.pulls("all", None).await.unwrap();
    println!("{repo}: {} pull requests", pulls.len());
    for listed in pulls.iter().take(PULLS_READ) {
        let pull = github.pull(listed.number).await.unwrap();
        assert_eq!(pull.number, listed.number);
        assert!(matches!(pull.state.as_str(), "open" | "closed"), "{pull:?}");
        assert_eq!(pull.head.sha.len(), 40, "{pull:?}");
        assert!(pull.html_url.is_some(), "{pull:?}");
        // The model defaults what is missing, so check that what oxi relies on is there:
        // `node_id` marks a draft ready, `merged` (only in a single pull request's answer, the
        // list leaves it out) agrees with `merged_at`.
        assert!(pull.node_id.is_some(), "{pull:?}");
        assert!(!pull.title.is_empty(), "{pull:?}");
        assert_eq!(pull.merged, Some(pull.merged_at.is_some()), "{pull:?}");
        let files = github.pull_files(pull.number).await.unwrap();
        let reviews = github.reviews(pull.number).await.unwrap();
        // Check runs (every page, the latest per name) and commit statuses, as the CI gate reads
        // them.
        let checks = github.ci(&pull.head.sha).await.unwrap();
        for check in &checks {
            assert!(!check.name.is_empty(), "{check:?}");
            assert!(check.done || !check.failed, "{check:?}");
        }
        println!(
            "#{} {} ({}): {} files, {} reviews, {} check runs",
            pull.number,
            pull.state,
            if pull.is_merged() {
                "merged"
            } else {
                "not merged"
            },
            files.len(),
            reviews.len(),
            checks.len()
        );
    }
}

#[test]
fn without_both_variables_the_live_checks_skip_and_name_them() {
    let none = settings(|_| None);
    let Live::Skip(why) = none else {
        panic!("ran without variables: {none:?}")
    };
    assert!(
        why.contains("OXI_LIVE_GITHUB_TOKEN and OXI_LIVE_GITHUB_REPO not set"),
        "{why}"
    );

    let only_token = settings(|name| (name == TOKEN).then(|| "t".to_string()));
    assert_eq!(
        only_token,
        Live::Skip(
            "skipped: live GitHub checks need OXI_LIVE_GITHUB_TOKEN (a token that can read the \
             repository) and OXI_LIVE_GITHUB_REPO (owner/name of a sandbox repository); \
             OXI_LIVE_GITHUB_REPO not set"
                .into()
        )
    );
    let blank_repo = settings(|name| Some(if name == REPO { " " } else { "t" }.to_string()));
    assert!(matches!(blank_repo, Live::Skip(_)), "{blank_repo:?}");

    let both = settings(|name| (name != API_URL).then(|| format!("{name}-value")));
    assert_eq!(
        both,
        Live::Run {
            token: "OXI_LIVE_GITHUB_TOKEN-value".into(),
            repo: "OXI_LIVE_GITHUB_REPO-value".into(),
            api_url: None,
        }
    );
}
