//! Can each routed worker's CLI authenticate? A run that cannot is `auth_failed` and blocks
//! its worker, so doctor asks before a tick does. How to ask is each CLI's own business: its
//! adapter's [`login`](crate::worker::Adapter::login) (`src/worker/<kind>.rs`).

use super::{Check, Status, check};
use crate::config::LoadedConfig;
use crate::worker::LoginStatus;

/// One `worker NAME login` check per routed worker.
pub(super) async fn checks(
    config: &LoadedConfig,
    parent_env: &[(String, String)],
    out: &mut Vec<Check>,
) {
    let routing = &config.config.routing;
    let token_env = config.config.github.as_ref().map(|g| g.token_env.as_str());
    let mut seen = Vec::new();
    for name in routing.routed_workers() {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let Some(worker) = config.config.workers.get(name) else {
            continue;
        };
        let env =
            crate::runner::env::worker_env(worker, parent_env.iter().cloned(), token_env).vars;
        let label = format!("worker {name} login");
        let login = worker.kind.adapter().login(worker, &env).await;
        let status = match login.status {
            LoginStatus::Ok => Status::Ok,
            LoginStatus::Warn => Status::Warn,
            LoginStatus::Fail => Status::Fail,
        };
        out.push(check(
            &label,
            status,
            login.detail,
            login.fix.map(|f| f.replace("NAME", name)),
        ));
    }
}
