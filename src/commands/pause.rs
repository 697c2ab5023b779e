//! `oxi pause` / `oxi resume`: the killswitch.

use anyhow::Result;

use super::Context;
use crate::cli::PauseArgs;
use crate::ledger::Killswitch;
use crate::output::{Format, json_string, write_stdout};

pub fn pause(ctx: &Context, args: &PauseArgs) -> Result<()> {
    set(ctx, true, args.reason.clone())
}

pub fn resume(ctx: &Context) -> Result<()> {
    set(ctx, false, None)
}

fn set(ctx: &Context, paused: bool, reason: Option<String>) -> Result<()> {
    let config = ctx.config()?;
    let mut ledger = ctx.ledger(&config)?;
    let before = ledger.read().killswitch()?.is_some_and(|k| k.paused);
    let switch = Killswitch {
        paused,
        by: ctx.operator(),
        reason,
        at_ms: crate::clock::now_ms(),
    };
    if before != paused {
        ledger.write(|q| q.set_killswitch(&switch))?;
    }
    let text = match ctx.global.format {
        Format::Json => json_string(&serde_json::json!({
            "paused": paused,
            "changed": before != paused,
        }))?,
        _ => match (paused, before == paused) {
            (true, false) => "paused: no new tasks will be dispatched; running work finishes. `oxi resume` to continue.\n".to_owned(),
            (true, true) => "already paused\n".to_owned(),
            (false, false) => "resumed: dispatch continues on the next tick\n".to_owned(),
            (false, true) => "not paused\n".to_owned(),
        },
    };
    write_stdout(&text)?;
    Ok(())
}
