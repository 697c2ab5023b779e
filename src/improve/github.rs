//! GitHub sources through the existing client and `github.api_url`: the latest releases of
//! pinned repositories, and topic searches with two prefilters (stars per day, last push).

use super::{Found, ScanContext, SourceError};
use crate::config::{ImproveSource, ImproveSourceKind};
use crate::github::GithubClient;

/// Releases read per pinned repository.
const RELEASES_PER_REPO: u32 = 5;
/// Repositories read per topic search.
const REPOS_PER_TOPIC: u32 = 30;
const DAY_MS: i64 = 24 * 3600 * 1000;

pub(super) async fn fetch(
    ctx: &ScanContext<'_>,
    source: &ImproveSource,
) -> Result<Vec<Found>, SourceError> {
    let Some(github) = &ctx.config.github else {
        // Config validation refuses a GitHub source without [github]; kept as a failure, not a
        // panic, for a config built in code.
        return Err(SourceError::NoToken("GITHUB_TOKEN".to_owned()));
    };
    let token = crate::github::resolve_token(github, ctx.env)
        .map_err(|_| SourceError::NoToken(github.token_env.clone()))?;
    let client = GithubClient::new(github, &token)?;
    match source.kind {
        ImproveSourceKind::GithubReleases => releases(&client, source).await,
        _ => search(ctx, &client, source).await,
    }
}

async fn releases(
    client: &GithubClient,
    source: &ImproveSource,
) -> Result<Vec<Found>, SourceError> {
    let mut found = Vec::new();
    for repo in &source.repos {
        for release in client.releases_of(repo, RELEASES_PER_REPO).await? {
            if release.draft {
                continue;
            }
            let name = release
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| release.tag_name.clone());
            let title = if name.contains(&release.tag_name) {
                format!("{repo} {name}")
            } else {
                format!("{repo} {} — {name}", release.tag_name)
            };
            found.push(Found {
                url: release.html_url,
                title,
                summary: release.body.unwrap_or_default(),
                target: repo.clone(),
                published_at_ms: release.published_at.as_deref().and_then(parse_ms),
            });
        }
    }
    Ok(found)
}

async fn search(
    ctx: &ScanContext<'_>,
    client: &GithubClient,
    source: &ImproveSource,
) -> Result<Vec<Found>, SourceError> {
    let max_age_ms = i64::try_from(ctx.improve.max_commit_age.0.as_millis()).unwrap_or(i64::MAX);
    let pushed_since = crate::clock::day_of(ctx.now_ms.saturating_sub(max_age_ms));
    let mut found = Vec::new();
    for topic in &source.topics {
        for repo in client
            .search_topic(topic, &pushed_since, REPOS_PER_TOPIC)
            .await?
        {
            let pushed = repo.pushed_at.as_deref().and_then(parse_ms);
            // The search asked for recent pushes; checked again here, since a search index
            // may lag and the prefilter is a promise to the operator.
            if pushed.is_none_or(|at| ctx.now_ms.saturating_sub(at) > max_age_ms) {
                continue;
            }
            let Some(created) = parse_ms(&repo.created_at) else {
                continue;
            };
            let rate = stars_per_day(repo.stargazers_count, created, ctx.now_ms);
            if rate < ctx.improve.min_stars_per_day {
                continue;
            }
            found.push(Found {
                url: repo.html_url,
                title: repo.full_name.clone(),
                summary: repo.description.unwrap_or_default(),
                target: repo.full_name,
                published_at_ms: pushed,
            });
        }
    }
    Ok(found)
}

/// Stars per day of the repository's life (at least one day). GitHub's REST API gives no
/// star history, so for a repository up to 30 days old this is its 30-day rate exactly, and
/// for an older one its lifetime average: an old repository must still be gaining stars at
/// the configured rate on average to pass, which keeps long-settled ones out.
// Star counts and ages in milliseconds stay far below 2^52, where f64 is exact.
#[allow(clippy::cast_precision_loss)]
fn stars_per_day(stars: u64, created_ms: i64, now_ms: i64) -> f64 {
    let age_days = (now_ms.saturating_sub(created_ms) as f64 / DAY_MS as f64).max(1.0);
    stars as f64 / age_days
}

pub(super) fn parse_ms(text: &str) -> Option<i64> {
    text.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(jiff::Timestamp::as_millisecond)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_rate_is_per_day_of_life() {
        let now = 100 * DAY_MS;
        assert!((stars_per_day(30, now - 10 * DAY_MS, now) - 3.0).abs() < 1e-9);
        assert!((stars_per_day(300, 0, now) - 3.0).abs() < 1e-9);
        assert!((stars_per_day(5, now, now) - 5.0).abs() < 1e-9);
    }
}
