//! `oxi route TASK`: which `[[routing.rules]]` rule a task matches and why, and the chain each
//! role routes to.

use anyhow::Result;
use serde::Serialize;

use super::Context;
use crate::cli::RouteArgs;
use crate::ledger::{Ledger, LedgerError};
use crate::output::{Format, Grid, json_string, write_stdout};
use crate::routing::{Clause, Explanation, RouteRole, Router};

/// `oxi route --format json`. Field names are a documented interface.
#[derive(Debug, Serialize)]
struct RouteReport<'a> {
    task: &'a str,
    title: &'a str,
    #[serde(flatten)]
    explanation: Explanation,
    chains: Vec<RoleChain<'a>>,
}

/// One role's chain and the route it comes from.
#[derive(Debug, Serialize)]
struct RoleChain<'a> {
    role: RouteRole,
    /// The rule's name, or `default`.
    route: &'a str,
    /// First choice first, as the config writes them (`worker`, `worker:model`,
    /// `provider:model`).
    chain: Vec<String>,
}

pub fn run(ctx: &Context, args: &RouteArgs) -> Result<()> {
    let config = ctx.config()?;
    let ledger = Ledger::open_existing_at(&config.ledger_at())?;
    super::warn_if_roadmap_changed(&config, &ledger);
    let task = ledger
        .read()
        .find_task(&args.task)?
        .ok_or_else(|| LedgerError::NoSuchTask(args.task.clone()))?;
    let router = Router::new(&config.config)?;
    let (route, explanation) = router.explain(&task.spec);
    let chains = RouteRole::ALL
        .iter()
        .map(|&role| {
            let pick = route.pick(role);
            RoleChain {
                role,
                route: pick.route,
                chain: pick.chain.iter().map(ToString::to_string).collect(),
            }
        })
        .collect();
    let report = RouteReport {
        task: &task.spec.id,
        title: &task.spec.title,
        explanation,
        chains,
    };
    let text = match ctx.global.format {
        Format::Json => json_string(&report)?,
        format => render(&report, format),
    };
    write_stdout(&text)?;
    Ok(())
}

fn clause(c: &Clause) -> String {
    match c.clause {
        "priority_tier" | "labels" | "files" => {
            format!("{} {} (task: {})", c.clause, c.wanted, c.found)
        }
        _ => format!("{} /{}/ (task: {:?})", c.clause, c.wanted, c.found),
    }
}

fn render(report: &RouteReport<'_>, format: Format) -> String {
    let e = &report.explanation;
    let mut out = format!("{}: {}\n", report.task, report.title);
    if e.matched.is_empty() && e.rule == crate::routing::DEFAULT_ROUTE {
        out.push_str("route: default (no rule matched)\n");
    } else {
        out.push_str(&format!("route: rule {:?}\n", e.rule));
        for c in &e.matched {
            out.push_str(&format!("  matched {}\n", clause(c)));
        }
        if e.matched.is_empty() {
            out.push_str("  (its `when` is empty: it matches every task)\n");
        }
    }
    if !e.skipped.is_empty() {
        out.push_str("earlier rules:\n");
        for s in &e.skipped {
            out.push_str(&format!("  {:?}: no {}\n", s.rule, clause(&s.failed)));
        }
    }
    let mut grid = Grid::new(["ROLE", "ROUTE", "CHAIN"]);
    for c in &report.chains {
        grid.row([
            c.role.as_str().to_owned(),
            c.route.to_owned(),
            if c.chain.is_empty() {
                "(none)".to_owned()
            } else {
                c.chain.join(" → ")
            },
        ]);
    }
    out.push('\n');
    out.push_str(grid.render(format).trim_end());
    out.push('\n');
    out
}
