//! `oxi::roadmap::parse` on arbitrary bytes (a roadmap.md is written by people, pasted from
//! web pages and edited by agents). Errors are fine; panics are not.
//! Invariants on success: at least one item; ids non-empty and unique; item lines strictly
//! increasing and inside the file; no item depends on itself or names a dependency twice;
//! file hints are relative, stay in the repository and are unique. Errors must format.
#![no_main]

use std::collections::HashSet;
use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;

/// `[roadmap] default_priority_tier`'s default in src/config/mod.rs.
const DEFAULT_TIER: u8 = 1;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("roadmap.md");
    let roadmap = match oxi::roadmap::parse(data, path, DEFAULT_TIER) {
        Ok(roadmap) => roadmap,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert!(!roadmap.items.is_empty(), "Ok with no items");
    let line_count = data.split(|b| *b == b'\n').count();
    let mut ids = HashSet::new();
    let mut last_line = 0;
    for item in &roadmap.items {
        assert!(!item.id.is_empty(), "empty id at line {}", item.line);
        assert!(ids.insert(item.id.as_str()), "duplicate id {}", item.id);
        assert!(
            item.line > last_line && item.line <= line_count,
            "item {} at line {} (previous {last_line}, {line_count} lines)",
            item.id,
            item.line
        );
        last_line = item.line;
        let mut deps = HashSet::new();
        for dep in &item.depends_on {
            assert!(dep != &item.id, "{} depends on itself", item.id);
            assert!(deps.insert(dep.as_str()), "{} lists {dep} twice", item.id);
        }
        let mut hints = HashSet::new();
        for hint in &item.file_hints {
            // Fails today on `./` (trimmed to ""): see regressions/roadmap_parse/.
            assert!(!hint.is_empty(), "{}: empty file hint", item.id);
            let p = Path::new(hint);
            assert!(
                !p.is_absolute() && !p.components().any(|c| matches!(c, Component::ParentDir)),
                "{}: file hint {hint:?} escapes the repository",
                item.id
            );
            assert!(
                hints.insert(hint.as_str()),
                "{} hints {hint} twice",
                item.id
            );
        }
    }
    for warning in &roadmap.warnings {
        assert!(warning.line >= 1 && warning.line <= line_count);
    }
});
