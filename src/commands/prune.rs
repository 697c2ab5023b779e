//! `oxi roadmap prune`: removes done items from the roadmap (so it stays short to read and to
//! ingest), as a diff the user sees first; `--write` applies it.

use std::collections::HashSet;

use anyhow::{Context as _, Result};

use super::Context;
use crate::cli::PruneArgs;
use crate::ledger::TaskState;
use crate::output::{Format, json_string, write_stdout};
use crate::roadmap::{self, ingest::RoadmapFile};

pub fn run(ctx: &Context, args: &PruneArgs) -> Result<()> {
    let config = ctx.config()?;
    let path = config.roadmap_path();
    let file = RoadmapFile::read(&path, &config.repo_root)?;
    let parsed = file.parse(config.config.project.default_priority_tier)?;
    let ledger = crate::ledger::Ledger::open_existing_at(&config.ledger_at())?;
    let done: HashSet<String> = ledger
        .read()
        .tasks()?
        .into_iter()
        .filter(|t| matches!(t.state, TaskState::Done | TaskState::Merged))
        .map(|t| t.spec.id)
        .filter(|id| parsed.items.iter().any(|i| &i.id == id))
        .collect();
    let text = String::from_utf8_lossy(&file.bytes).into_owned();
    let pruned = roadmap::prune(&text, &parsed.items, &done);
    let diff = similar::TextDiff::from_lines(&text, &pruned)
        .unified_diff()
        .context_radius(2)
        .header(&format!("a/{}", file.label), &format!("b/{}", file.label))
        .to_string();
    let mut removed: Vec<&String> = done.iter().collect();
    removed.sort();
    if args.write && !removed.is_empty() {
        // Atomically, keeping the file's permissions.
        let tmp = path.with_extension("md.oxi-tmp");
        std::fs::write(&tmp, pruned.as_bytes())
            .and_then(|()| std::fs::metadata(&path))
            .and_then(|meta| std::fs::set_permissions(&tmp, meta.permissions()))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let out = match ctx.global.format {
        Format::Json => json_string(&serde_json::json!({
            "roadmap": file.label,
            "removed": removed,
            "written": args.write && !removed.is_empty(),
            "diff": diff,
        }))?,
        _ if removed.is_empty() => "nothing to prune: no roadmap item's task is done\n".to_owned(),
        _ => format!(
            "{diff}{} item(s) {}: {}\n",
            removed.len(),
            if args.write {
                "removed"
            } else {
                "would be removed (--write applies)"
            },
            removed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    write_stdout(&out)?;
    Ok(())
}
