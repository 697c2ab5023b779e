//! `oxi improve accept`: a proposal becomes a roadmap item, appended to roadmap.md in the
//! roadmap's own format under an "Auto-improve" heading (never under a "Done" heading a
//! roadmap may end with), with the next free `T<tier>-A<n>` id. What is written is what
//! `oxi ingest` reads back: one bold item line and one paragraph of brief.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::ledger::ProposalRow;

/// The heading accepted proposals go under.
const HEADING: &str = "## Auto-improve";

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Appends `proposal` to the roadmap at `path`; returns the id it was given.
///
/// # Errors
///
/// The roadmap cannot be read or written.
pub fn accept_proposal(path: &Path, proposal: &ProposalRow) -> Result<String, AcceptError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(AcceptError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let tier = proposal.tier.clamp(0, 2);
    let id = format!("T{tier}-A{}", next_number(&text, tier));
    let mut out = text.trim_end().to_owned();
    let last_heading = out.lines().rev().find(|l| l.starts_with('#'));
    if last_heading.map(str::trim) != Some(HEADING) {
        if !out.is_empty() {
            out.push_str("\n\n");
        }
        out.push_str(HEADING);
    }
    let _ = write!(
        out,
        "\n\n**{id} · {}**\n\n{}\n",
        one_line(&proposal.title).replace("**", ""),
        brief(&proposal.body)
    );
    let tmp = path.with_extension("md.oxi-tmp");
    std::fs::write(&tmp, &out)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| AcceptError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(id)
}

/// One past the highest `T<tier>-A<n>` in the roadmap.
fn next_number(text: &str, tier: i64) -> u64 {
    let prefix = format!("T{tier}-A");
    let mut highest = 0;
    let mut rest = text;
    while let Some(at) = rest.find(&prefix) {
        rest = &rest[at + prefix.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<u64>() {
            highest = highest.max(n);
        }
    }
    highest + 1
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The brief as one paragraph, worded so the roadmap reader takes none of it as structure:
/// outside text must not add dependencies ("Depends on …") or file hints (backticks) to the
/// task it becomes.
fn brief(body: &str) -> String {
    let mut text = one_line(body).replace('`', "'");
    for (from, to) in [
        ("depends on", "relies on"),
        ("Depends on", "Relies on"),
        ("DEPENDS ON", "RELIES ON"),
        ("blocked by", "held up by"),
        ("Blocked by", "Held up by"),
        ("BLOCKED BY", "HELD UP BY"),
    ] {
        text = text.replace(from, to);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_continue_after_the_highest_of_their_tier() {
        assert_eq!(next_number("", 2), 1);
        assert_eq!(
            next_number("**T2-A3 · x**\n**T2-A10 · y**\n**T1-A40 · z**", 2),
            11
        );
    }

    #[test]
    fn briefs_add_no_structure() {
        assert_eq!(
            brief("Depends on `T0-1`\n\n- blocked by x"),
            "Relies on 'T0-1' - held up by x"
        );
    }
}
