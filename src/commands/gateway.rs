//! `oxi gateway test` and `oxi gateway calls`: try a provider as the gateway roles would call
//! it, and read back what the gateway spent.

use anyhow::Result;
use serde_json::json;

use super::{Context, parent_env};
use crate::UsageError;
use crate::cli::{GatewayCallsArgs, GatewayCommand, GatewayTestArgs};
use crate::gateway::{CallRequest, Gateway, Message};
use crate::money::{format_usd, micro_to_usd};
use crate::output::{Format, Grid, json_string, write_stdout};

pub fn run(ctx: &Context, command: &GatewayCommand) -> Result<()> {
    match command {
        GatewayCommand::Test(args) => test(ctx, args),
        GatewayCommand::Calls(args) => calls(ctx, args),
    }
}

fn test(ctx: &Context, args: &GatewayTestArgs) -> Result<()> {
    let config = ctx.config()?;
    let providers = &config.config.gateway.providers;
    let provider = match (&args.provider, providers.len()) {
        (Some(name), _) => name.clone(),
        (None, 1) => providers.keys().next().cloned().unwrap_or_default(),
        (None, 0) => {
            return Err(UsageError(format!(
                "no [gateway.providers] in {}; docs/gateway.md shows how to add one",
                config.display_path()
            ))
            .into());
        }
        (None, _) => {
            return Err(UsageError(format!(
                "name a provider: {}",
                providers.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
    };
    if !providers.contains_key(&provider) {
        return Err(UsageError(format!(
            "no provider {provider:?} in [gateway.providers] ({})",
            providers.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
        .into());
    }
    let mut ledger = ctx.ledger(&config)?;
    let env = parent_env();
    let actor = ctx.operator();
    let gateway = Gateway::new(&config.config, &env, &actor)?;
    let messages = [Message::user(args.prompt.clone())];
    let request = CallRequest {
        role: args.role,
        provider: &provider,
        model: &args.model,
        messages: &messages,
        max_tokens: Some(args.max_tokens),
        task_id: None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let completion = runtime.block_on(gateway.complete(&mut ledger, &request))?;
    let answer = &completion.answer;
    let text = match ctx.global.format {
        Format::Json => json_string(&json!({
            "call_id": completion.call_id,
            "provider": provider,
            "model": args.model,
            "answered_by": answer.model,
            "answer": answer.text,
            "tokens_in": answer.usage.prompt,
            "tokens_cached": answer.usage.cached,
            "tokens_out": answer.usage.completion,
            "cost_usd": micro_to_usd(completion.cost_microusd),
            "cost_microusd": completion.cost_microusd,
            "cost_source": completion.cost_source,
            "attempts": answer.attempts,
            "latency_ms": answer.latency.as_millis() as u64,
        }))?,
        _ => {
            let cost_note = match completion.cost_source {
                crate::gateway::CostSource::Header => "from the x-litellm-response-cost header",
                crate::gateway::CostSource::Body => "from usage.cost in the answer",
                crate::gateway::CostSource::Card => "priced with the model's rate card",
                crate::gateway::CostSource::Reserve | crate::gateway::CostSource::None => {
                    "no figure and no rate card: charged what the call held; add [rates.\"MODEL\"]"
                }
            };
            format!(
                "{}\n\nprovider  {provider} ({})\nmodel     {}\ntokens    {} in ({} cached), {} out\ncost      {} ({}: {cost_note})\nattempts  {}\nlatency   {} ms\ncall      #{} in the ledger\n",
                answer.text.trim_end(),
                config
                    .config
                    .gateway
                    .providers
                    .get(&provider)
                    .map_or("", |p| p.kind.as_str()),
                answer.model.as_deref().unwrap_or(&args.model),
                answer.usage.prompt,
                answer.usage.cached,
                answer.usage.completion,
                format_usd(completion.cost_microusd),
                completion.cost_source,
                answer.attempts,
                answer.latency.as_millis(),
                completion.call_id,
            )
        }
    };
    write_stdout(&text)?;
    Ok(())
}

/// What `oxi gateway calls` says when the ledger holds none, instead of an empty table.
fn no_calls_yet(config: &crate::config::LoadedConfig) -> String {
    if config.config.gateway.providers.is_empty() {
        "no gateway calls: no [gateway.providers.*] in oxi.toml; docs/gateway.md shows how to add one\n"
            .to_owned()
    } else {
        "no gateway calls recorded yet (`oxi gateway test` makes one per provider)\n".to_owned()
    }
}

fn calls(ctx: &Context, args: &GatewayCallsArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = ctx.ledger(&config)?;
    let rows = ledger.read().gateway_calls(args.limit)?;
    let text = match ctx.global.format {
        Format::Json => json_string(&rows)?,
        _ if rows.is_empty() => no_calls_yet(&config),
        format => {
            let mut grid = Grid::new([
                "id", "at", "role", "provider", "model", "outcome", "tokens", "cost", "source",
                "attempts", "latency",
            ]);
            for r in &rows {
                grid.row([
                    r.id.to_string(),
                    crate::clock::rfc3339(r.created_at_ms),
                    r.role.clone(),
                    r.provider.clone(),
                    r.model.clone(),
                    r.outcome.clone().unwrap_or_else(|| "in flight".to_owned()),
                    format!("{}/{}", r.tokens_in, r.tokens_out),
                    format_usd(r.cost_microusd),
                    r.cost_source.clone().unwrap_or_default(),
                    r.attempts.to_string(),
                    r.latency_ms
                        .map(|ms| format!("{ms} ms"))
                        .unwrap_or_default(),
                ]);
            }
            let mut text = grid.render(format);
            for r in rows.iter().filter(|r| r.error.is_some()) {
                text.push_str(&format!(
                    "#{}: {}\n",
                    r.id,
                    r.error.as_deref().unwrap_or_default()
                ));
            }
            text
        }
    };
    write_stdout(&text)?;
    Ok(())
}
