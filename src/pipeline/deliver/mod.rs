//! Delivery: fast mode commits on the task branch (the job's last stage); release mode pushes
//! the branch, opens its pull request and follows it (`release`), resumed by the scheduler
//! for tasks left `deliver_pending`.

pub mod release;

use crate::config::LoadedConfig;
use crate::ledger::Ledger;
use crate::tick::TickError;

pub(crate) enum Stop {
    /// A problem a person must fix (bad token, no rights): the pass reports it as blocked.
    Blocked(String),
    Error(TickError),
}

/// Resume deliveries (and, before claiming, follow open pull requests).
pub(crate) async fn release_stage(
    config: &LoadedConfig,
    ledger: &mut Ledger,
    client: &crate::github::GithubClient,
    writer: &crate::github::GithubWriter<'_>,
    token: &str,
    redactor: &crate::redact::Redactor,
    with_sync: bool,
) -> Result<Vec<release::ReleaseAction>, Stop> {
    use release::ReleaseError;
    let classify = |e: ReleaseError| match e {
        ReleaseError::Github(g) if !g.is_transient() => Stop::Blocked(g.to_string()),
        ReleaseError::Ledger(l) => Stop::Error(TickError::Ledger(l)),
        other => Stop::Blocked(other.to_string()),
    };
    let mut actions = release::deliver_pending(config, ledger, client, writer, token, redactor)
        .await
        .map_err(classify)?;
    if with_sync {
        match release::sync(ledger, client, writer).await {
            Ok(more) => actions.extend(more),
            Err(ReleaseError::Github(e)) if e.is_transient() => {
                tracing::warn!("pull request sync skipped this tick: {e}");
            }
            Err(e) => return Err(classify(e)),
        }
    }
    Ok(actions)
}
