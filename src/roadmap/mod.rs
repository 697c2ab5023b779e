//! Roadmap parsing: the shapes users' `roadmap.md` files come in, turned into items.
//!
//! Accepted, in any mix:
//! 1. oxi's format: `**T0-104 · title**` (or without the bold, followed by a description
//!    paragraph), an optional italic subtitle on the next line, optional `## Tier N` headings.
//! 2. Milestone lists: `- **T-022 Title**` items under milestone headings.
//! 3. Checklists: `- [ ] item` / `[ ] item`; `[x]` items are recorded as done.
//!
//! An item's body is the text up to the next item or heading; it becomes the worker's brief.
//! Parsing is a pure function of the bytes; `ingest` applies the result to the ledger.

pub mod github_issues;
pub mod ingest;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// Largest roadmap accepted. Real ones are kilobytes; this bounds memory on a wrong path.
pub const MAX_ROADMAP_BYTES: usize = 64 * 1024 * 1024;
/// Longer lines are skipped with a warning (a pasted log or a minified blob, not a task).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// A `T2-31..T2-37` range in a dependency list expands to at most this many ids.
const MAX_RANGE_EXPANSION: u32 = 1000;

/// Errors that stop an ingest. None is retryable without editing the roadmap.
#[derive(Debug, thiserror::Error)]
pub enum RoadmapError {
    #[error("cannot read roadmap {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: roadmap is {bytes} bytes, over the {limit}-byte limit; is this the right file?"
    )]
    TooLarge {
        path: PathBuf,
        bytes: usize,
        limit: usize,
    },
    #[error("{path}:{line}:{column}: invalid UTF-8 (byte 0x{byte:02x}); save the roadmap as UTF-8")]
    InvalidUtf8 {
        path: PathBuf,
        line: usize,
        column: usize,
        byte: u8,
    },
    #[error("{path}:{line}: NUL byte in the roadmap; is this a binary file?")]
    NulByte { path: PathBuf, line: usize },
    #[error(
        "{path}:{second_line}: duplicate id {id}, already used at line {first_line}{hint}; every item needs its own id"
    )]
    DuplicateId {
        path: PathBuf,
        id: String,
        first_line: usize,
        second_line: usize,
        hint: &'static str,
    },
    #[error("{}", no_items_message(.path, .near_miss.as_ref()))]
    NoItems {
        path: PathBuf,
        near_miss: Option<NearMiss>,
    },
}

/// A line that looked like an item but did not parse, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NearMiss {
    pub line: usize,
    pub text: String,
    pub hint: String,
}

/// The formats oxi accepts, for the zero-items error.
const ACCEPTED_FORMATS: &str = "\
  1. oxi items:       **T0-104 · file-overlap dispatch gate**   (bold optional; `·`, `:` or `-` after the id)
  2. milestone items: - **T-022 Mission Inbox**                  (under `## Milestone ...` headings)
  3. checklists:      - [ ] write the release notes              (`[x]` marks an item done)";

fn no_items_message(path: &Path, near_miss: Option<&NearMiss>) -> String {
    let mut message = format!(
        "{}: no roadmap items found. Accepted formats:\n{ACCEPTED_FORMATS}",
        path.display()
    );
    match near_miss {
        Some(miss) => message.push_str(&format!(
            "\nNearest line that almost matched, {}:{}:\n    {}\n  {}",
            path.display(),
            miss.line,
            miss.text,
            miss.hint
        )),
        None => message.push_str("\nNo line looked like an item."),
    }
    message
}

/// Which of the accepted shapes an item was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemFormat {
    Oxi,
    Milestone,
    Checklist,
}

impl ItemFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemFormat::Oxi => "oxi",
            ItemFormat::Milestone => "milestone",
            ItemFormat::Checklist => "checklist",
        }
    }
}

/// One roadmap item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoadmapItem {
    pub id: String,
    /// True when the id was derived from the text (checklist items without an id).
    pub derived_id: bool,
    pub priority_tier: u8,
    pub title: String,
    pub subtitle: Option<String>,
    /// The text until the next item or heading: the worker's brief.
    pub body: String,
    /// The headings above the item, outermost first, joined with ` › `.
    pub section: Option<String>,
    /// The milestone heading the item sits under, if any.
    pub milestone: Option<String>,
    pub format: ItemFormat,
    /// Task ids named after "Depends on" / "Blocked by".
    pub depends_on: Vec<String>,
    /// Repository paths named in backticks: a hint for overlap gating.
    pub file_hints: Vec<String>,
    /// 1-based line of the item in the roadmap.
    pub line: usize,
    /// Checked off (`[x]`) or listed under a "Done" heading.
    pub done: bool,
}

/// Something skipped or dropped, with the line it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub line: usize,
    pub message: String,
}

/// A parsed roadmap.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Roadmap {
    pub items: Vec<RoadmapItem>,
    pub warnings: Vec<Warning>,
}

impl Roadmap {
    /// Masks secrets in every item's text before it is stored: a roadmap that quotes a key
    /// oxi holds must not put it in the ledger (and from there in prompts and PR bodies).
    pub fn mask(&mut self, redactor: &crate::redact::Redactor) {
        let mask = |text: &mut String| {
            if let std::borrow::Cow::Owned(masked) = redactor.redact(text) {
                *text = masked;
            }
        };
        for item in &mut self.items {
            mask(&mut item.title);
            mask(&mut item.body);
            for text in [&mut item.subtitle, &mut item.section, &mut item.milestone]
                .into_iter()
                .flatten()
            {
                mask(text);
            }
        }
    }
}

/// Reads and parses the roadmap at `path`.
pub fn load(path: &Path, default_tier: u8) -> Result<Roadmap, RoadmapError> {
    let bytes = std::fs::read(path).map_err(|source| RoadmapError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes, path, default_tier)
}

#[allow(clippy::expect_used)] // Constant patterns; `patterns_compile` tests every one.
fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("constant regex")
}

/// `T0-104`, `T1-B7`, `T-022`, `PROJ-12`.
const ID: &str = r"[A-Z][A-Z0-9]{0,9}-[A-Z]{0,3}\d+[A-Z0-9]*";

static HEADING: LazyLock<Regex> = LazyLock::new(|| regex(r"^(#{1,6})\s+(.*?)\s*#*\s*$"));
static CHECKLIST: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^(\s*)(?:[-*+]\s+)?\[([ xX])\]\s+(.+?)\s*$"));
static BOLD_ITEM: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r"^(\s*)(?:[-*+]\s+)?\*\*({ID})(?:\s*[·•:—–-]\s*|\s+)([^*]+?)\s*\*\*\s*(.*?)\s*$"
    ))
});
static PLAIN_ITEM: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r"^(\s*)(?:[-*+]\s+)?({ID})\s*[·•:—–]\s*(.+?)\s*$|^(\s*)(?:[-*+]\s+)?({ID})\s+-\s+(.+?)\s*$"
    ))
});
static LEADING_ID: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r"^(?:\*\*)?({ID})(?:\s*[·•:—–-]\s*|\s+)(.+?)(?:\*\*)?$"
    ))
});
static ITALIC_LINE: LazyLock<Regex> =
    LazyLock::new(|| regex(r"^\s*(?:\*([^*].*?[^*]|[^*])\*|_([^_].*?[^_]|[^_])_)\s*$"));
static TIER_ID: LazyLock<Regex> = LazyLock::new(|| regex(r"^T(\d+)-"));
static TIER_HEADING: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)^(?:tier\s*(\d+)|p(\d))\b"));
static MILESTONE_HEADING: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)\bmilestone\b|^M\d+\b"));
static DONE_HEADING: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)^(?:done|completed|shipped|archived?)\b"));
static THEMATIC_BREAK: LazyLock<Regex> = LazyLock::new(|| regex(r"^\s*(?:-{3,}|\*{3,}|_{3,})\s*$"));
static DEPENDS: LazyLock<Regex> =
    LazyLock::new(|| regex(r"(?i)\b(?:depends\s+on|blocked\s+by)\b:?"));
static DEP_TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    regex(&format!(
        r"^\s*(?:,|and\b|&|\+|/)?\s*(?:\*\*)?({ID})(?:\s*(?:\.\.|…|–|—)\s*({ID}))?(?:\*\*)?"
    ))
});
static BACKTICK: LazyLock<Regex> = LazyLock::new(|| regex(r"`([^`\n]+)`"));
static RANGE_PARTS: LazyLock<Regex> = LazyLock::new(|| regex(r"^(.*?)(\d+)$"));

/// Parses roadmap bytes. `path` is used only in messages.
pub fn parse(bytes: &[u8], path: &Path, default_tier: u8) -> Result<Roadmap, RoadmapError> {
    if bytes.len() > MAX_ROADMAP_BYTES {
        return Err(RoadmapError::TooLarge {
            path: path.to_path_buf(),
            bytes: bytes.len(),
            limit: MAX_ROADMAP_BYTES,
        });
    }
    if let Some(pos) = bytes.iter().position(|b| *b == 0) {
        return Err(RoadmapError::NulByte {
            path: path.to_path_buf(),
            line: line_of(bytes, pos),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let pos = e.valid_up_to();
        let line_start = bytes[..pos]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1);
        let column = String::from_utf8_lossy(&bytes[line_start..pos])
            .chars()
            .count()
            + 1;
        RoadmapError::InvalidUtf8 {
            path: path.to_path_buf(),
            line: line_of(bytes, pos),
            column,
            byte: bytes[pos],
        }
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let roadmap = Parser::new(default_tier).run(text);
    check_duplicates(&roadmap.items, path)?;
    if roadmap.items.is_empty() {
        return Err(RoadmapError::NoItems {
            path: path.to_path_buf(),
            near_miss: near_miss(text),
        });
    }
    Ok(roadmap)
}

fn line_of(bytes: &[u8], pos: usize) -> usize {
    bytes[..pos].iter().filter(|b| **b == b'\n').count() + 1
}

fn check_duplicates(items: &[RoadmapItem], path: &Path) -> Result<(), RoadmapError> {
    let mut seen: HashMap<&str, &RoadmapItem> = HashMap::with_capacity(items.len());
    for item in items {
        if let Some(first) = seen.insert(&item.id, item) {
            return Err(RoadmapError::DuplicateId {
                path: path.to_path_buf(),
                id: item.id.clone(),
                first_line: first.line,
                second_line: item.line,
                hint: if item.derived_id {
                    " (checklist items with the same text get the same id)"
                } else {
                    ""
                },
            });
        }
    }
    Ok(())
}

/// A heading on the stack: its level and text.
struct Heading {
    level: usize,
    text: String,
}

/// An item whose body is still being collected.
struct OpenItem {
    item: RoadmapItem,
    indent: usize,
    body: Vec<String>,
    /// The line right after the item may be an italic subtitle.
    expect_subtitle: bool,
}

/// What an item's own line says, before its headings and body add the rest.
struct ItemHead {
    id: String,
    derived_id: bool,
    title: String,
    subtitle: Option<String>,
    format: ItemFormat,
    line: usize,
    checked: bool,
}

struct Parser {
    default_tier: u8,
    headings: Vec<Heading>,
    open: Option<OpenItem>,
    roadmap: Roadmap,
}

impl Parser {
    fn new(default_tier: u8) -> Self {
        Self {
            default_tier,
            headings: Vec::new(),
            open: None,
            roadmap: Roadmap::default(),
        }
    }

    fn run(mut self, text: &str) -> Roadmap {
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            if raw.len() > MAX_LINE_BYTES {
                self.roadmap.warnings.push(Warning {
                    line: line_no,
                    message: format!(
                        "line is {} bytes, over the {MAX_LINE_BYTES}-byte limit; skipped",
                        raw.len()
                    ),
                });
                continue;
            }
            self.line(raw, line_no);
        }
        self.close_item();
        self.roadmap.warnings.sort_by_key(|w| w.line);
        self.roadmap
    }

    fn line(&mut self, raw: &str, line_no: usize) {
        if let Some((level, text)) = heading(raw) {
            self.close_item();
            self.headings.retain(|h| h.level < level);
            self.headings.push(Heading { level, text });
            return;
        }
        if THEMATIC_BREAK.is_match(raw) {
            self.close_item();
            return;
        }
        if let Some(open) = &mut self.open
            && open.expect_subtitle
        {
            if raw.trim().is_empty() {
                open.body.push(String::new());
                return;
            }
            open.expect_subtitle = false;
            if open.item.subtitle.is_none()
                && let Some(c) = ITALIC_LINE.captures(raw)
            {
                let subtitle = c.get(1).or_else(|| c.get(2)).map_or("", |m| m.as_str());
                open.item.subtitle = Some(subtitle.trim().to_owned());
                return;
            }
        }
        if let Some(item) = self.item_line(raw, line_no) {
            let indent = leading_spaces(raw);
            // An item indented under the open item is part of its brief, not a task of its own.
            if let Some(open) = &mut self.open
                && indent > open.indent
            {
                open.body.push(raw.to_owned());
                return;
            }
            self.close_item();
            let expect_subtitle = item.format == ItemFormat::Oxi;
            self.open = Some(OpenItem {
                item,
                indent,
                body: Vec::new(),
                expect_subtitle,
            });
            return;
        }
        if let Some(open) = &mut self.open {
            open.body.push(raw.to_owned());
        }
    }

    /// Recognises an item line in any accepted format.
    fn item_line(&mut self, raw: &str, line_no: usize) -> Option<RoadmapItem> {
        if let Some(c) = CHECKLIST.captures(raw) {
            let checked = !c[2].trim().is_empty();
            let text = c[3].trim();
            let (id, title, derived) = match LEADING_ID.captures(text) {
                Some(inner) => (inner[1].to_owned(), clean_inline(&inner[2]), false),
                None => (derived_id(text), clean_inline(text), true),
            };
            return Some(self.new_item(ItemHead {
                id,
                derived_id: derived,
                title,
                subtitle: None,
                format: ItemFormat::Checklist,
                line: line_no,
                checked,
            }));
        }
        if let Some(c) = BOLD_ITEM.captures(raw) {
            let id = c[2].to_owned();
            let format = if TIER_ID.is_match(&id) {
                ItemFormat::Oxi
            } else {
                ItemFormat::Milestone
            };
            let rest = c[4].trim();
            let subtitle = (!rest.is_empty()).then(|| clean_subtitle(rest));
            return Some(self.new_item(ItemHead {
                id,
                derived_id: false,
                title: clean_inline(&c[3]),
                subtitle,
                format,
                line: line_no,
                checked: false,
            }));
        }
        if let Some(c) = PLAIN_ITEM.captures(raw) {
            let (id, title) = match (c.get(2), c.get(3)) {
                (Some(id), Some(title)) => (id.as_str(), title.as_str()),
                _ => (c.get(5)?.as_str(), c.get(6)?.as_str()),
            };
            let format = if TIER_ID.is_match(id) {
                ItemFormat::Oxi
            } else {
                ItemFormat::Milestone
            };
            return Some(self.new_item(ItemHead {
                id: id.to_owned(),
                derived_id: false,
                title: clean_inline(title),
                subtitle: None,
                format,
                line: line_no,
                checked: false,
            }));
        }
        None
    }

    fn new_item(&mut self, head: ItemHead) -> RoadmapItem {
        let ItemHead {
            id,
            derived_id,
            title,
            subtitle,
            format,
            line,
            checked,
        } = head;
        let priority_tier = self.tier_for(&id, line);
        let in_done_section = self.headings.iter().any(|h| DONE_HEADING.is_match(&h.text));
        let section = self
            .headings
            .iter()
            .filter(|h| h.level > 1)
            .map(|h| h.text.as_str())
            .collect::<Vec<_>>()
            .join(" › ");
        let milestone = self
            .headings
            .iter()
            .rev()
            .find(|h| MILESTONE_HEADING.is_match(&h.text))
            .map(|h| h.text.clone());
        RoadmapItem {
            id,
            derived_id,
            priority_tier,
            title,
            subtitle,
            body: String::new(),
            section: (!section.is_empty()).then_some(section),
            milestone,
            format,
            depends_on: Vec::new(),
            file_hints: Vec::new(),
            line,
            done: checked || in_done_section,
        }
    }

    /// The tier from the id (`T2-…`), else the nearest `Tier N` / `PN` heading, else the default.
    fn tier_for(&mut self, id: &str, line: usize) -> u8 {
        if let Some(c) = TIER_ID.captures(id) {
            match c[1].parse::<u8>() {
                Ok(tier) => return tier,
                Err(_) => self.roadmap.warnings.push(Warning {
                    line,
                    message: format!(
                        "tier in id {id} is out of range (0-255); using the heading or default tier"
                    ),
                }),
            }
        }
        for heading in self.headings.iter().rev() {
            if let Some(c) = TIER_HEADING.captures(&heading.text)
                && let Some(tier) = c
                    .get(1)
                    .or_else(|| c.get(2))
                    .and_then(|m| m.as_str().parse::<u8>().ok())
            {
                return tier;
            }
        }
        self.default_tier
    }

    fn close_item(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let mut item = open.item;
        let body = open.body.join("\n");
        item.body = body.trim_matches('\n').trim_end().to_owned();
        let text = format!(
            "{}\n{}\n{}",
            item.title,
            item.subtitle.as_deref().unwrap_or(""),
            item.body
        );
        item.depends_on = dependencies(&text, &item.id);
        let (hints, dropped) = file_hints(&text);
        item.file_hints = hints;
        for hint in dropped {
            self.roadmap.warnings.push(Warning {
                line: item.line,
                message: format!(
                    "{}: file hint {hint:?} points outside the repository; ignored",
                    item.id
                ),
            });
        }
        self.roadmap.items.push(item);
    }
}

fn leading_spaces(raw: &str) -> usize {
    raw.chars()
        .take_while(|c| c.is_whitespace())
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum()
}

/// A Markdown heading, or a line ending in `¶` (headings scraped from rendered HTML).
fn heading(raw: &str) -> Option<(usize, String)> {
    if let Some(c) = HEADING.captures(raw) {
        return Some((c[1].len(), clean_inline(&c[2])));
    }
    let trimmed = raw.trim();
    if let Some(text) = trimmed.strip_suffix('¶') {
        let text = text.trim();
        if !text.is_empty() {
            return Some((2, clean_inline(text)));
        }
    }
    None
}

/// Strips emphasis markers around a whole span and collapses spaces.
fn clean_inline(text: &str) -> String {
    let mut t = text.trim();
    loop {
        let before = t;
        for marker in ["**", "__"] {
            if let Some(inner) = t.strip_prefix(marker).and_then(|s| s.strip_suffix(marker)) {
                t = inner.trim();
            }
        }
        if before == t {
            break;
        }
    }
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text after a bold item title: `(approve QC/missions gated by role)` or `— details`.
fn clean_subtitle(rest: &str) -> String {
    let mut t = rest.trim();
    for sep in ["—", "–", "-", ":", "·"] {
        if let Some(s) = t.strip_prefix(sep) {
            t = s.trim();
            break;
        }
    }
    if let Some(inner) = t.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
        t = inner.trim();
    }
    if let Some(c) = ITALIC_LINE.captures(t) {
        return c
            .get(1)
            .or_else(|| c.get(2))
            .map_or(t, |m| m.as_str())
            .trim()
            .to_owned();
    }
    clean_inline(t)
}

/// A stable id for a checklist item without one: `C-` and 10 hex digits of its normalized text.
pub fn derived_id(text: &str) -> String {
    let normalized: String = text
        .chars()
        .filter(|c| !matches!(c, '*' | '_' | '`'))
        .flat_map(char::to_lowercase)
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    format!("C-{}", crate::digest::sha256_hex(normalized.as_bytes(), 5))
}

/// Ids after "Depends on" / "Blocked by", with `A..B` ranges expanded.
fn dependencies(text: &str, own_id: &str) -> Vec<String> {
    let mut deps: Vec<String> = Vec::new();
    for m in DEPENDS.find_iter(text) {
        let mut rest = &text[m.end()..];
        while let Some(c) = DEP_TOKEN.captures(rest) {
            let first = &c[1];
            match c.get(2) {
                Some(last) => deps.extend(expand_range(first, last.as_str())),
                None => deps.push(first.to_owned()),
            }
            rest = &rest[c.get(0).map_or(0, |m| m.end())..];
        }
    }
    let mut seen = std::collections::HashSet::new();
    deps.retain(|d| d != own_id && seen.insert(d.clone()));
    deps
}

fn expand_range(first: &str, last: &str) -> Vec<String> {
    let (Some(a), Some(b)) = (RANGE_PARTS.captures(first), RANGE_PARTS.captures(last)) else {
        return vec![first.to_owned(), last.to_owned()];
    };
    let (Ok(start), Ok(end)) = (a[2].parse::<u32>(), b[2].parse::<u32>()) else {
        return vec![first.to_owned(), last.to_owned()];
    };
    if a[1] != b[1] || end < start || end - start > MAX_RANGE_EXPANSION {
        return vec![first.to_owned(), last.to_owned()];
    }
    (start..=end).map(|n| format!("{}{n}", &a[1])).collect()
}

/// Paths in backticks that stay inside the repository, and the ones dropped for escaping it.
fn file_hints(text: &str) -> (Vec<String>, Vec<String>) {
    let mut hints: Vec<String> = Vec::new();
    let mut dropped = Vec::new();
    for c in BACKTICK.captures_iter(text) {
        let candidate = c[1].trim().trim_end_matches([',', '.', ';', ':']);
        if !looks_like_path(candidate) {
            continue;
        }
        let path = Path::new(candidate);
        if candidate.starts_with('~')
            || path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            dropped.push(candidate.to_owned());
            continue;
        }
        let clean = candidate.trim_start_matches("./").to_owned();
        // `./` alone names the whole repository, not a file (found by fuzzing): as an empty
        // hint it made every two tasks overlap and every changed file "outside the hints".
        if clean.is_empty() {
            continue;
        }
        if !hints.contains(&clean) {
            hints.push(clean);
        }
    }
    (hints, dropped)
}

fn looks_like_path(s: &str) -> bool {
    static EXTENSION: LazyLock<Regex> = LazyLock::new(|| regex(r"\.[A-Za-z][A-Za-z0-9]{0,7}$"));
    !s.is_empty()
        && !s.contains(char::is_whitespace)
        && !s.starts_with('-')
        && !s.contains("://")
        && !s.contains(['(', ')', '=', '"', '\'', '<', '>', '|', '$'])
        && (s.contains('/') || EXTENSION.is_match(s))
}

/// The line that came closest to being an item, with a hint on how to fix it.
fn near_miss(text: &str) -> Option<NearMiss> {
    static ODD_DASH_ID: LazyLock<Regex> =
        LazyLock::new(|| regex(r"\b[A-Z][A-Z0-9]{0,9}[‐‑‒–—―−][A-Z]{0,3}\d+"));
    static ID_NO_SEPARATOR: LazyLock<Regex> =
        LazyLock::new(|| regex(&format!(r"^\s*(?:[-*+]\s+)?({ID})\s+\w")));
    static LOWERCASE_ID: LazyLock<Regex> = LazyLock::new(|| {
        regex(r"^\s*(?:[-*+]\s+)?(?:\*\*)?([a-z][a-z0-9]{0,9}-[a-z]{0,3}\d+)\s*[·•:—–-]")
    });
    static BROKEN_BOX: LazyLock<Regex> = LazyLock::new(|| {
        regex(r"^\s*(?:[-*+]\s*)?(?:\[\]|\[\s*[xX]?\s+[xX]?\s*\]|\(\s?\))\s*\S|^\s*-\[[ xX]\]")
    });
    static BOLD_NO_ID: LazyLock<Regex> = LazyLock::new(|| regex(r"^\s*[-*+]\s+\*\*[^*]+\*\*"));

    type Check = (&'static LazyLock<Regex>, fn(&str) -> String);
    let checks: [Check; 5] = [
        (&ODD_DASH_ID, |_| {
            "the id uses a typographic dash; write ids with a plain hyphen '-', e.g. T0-104"
                .to_owned()
        }),
        (&ID_NO_SEPARATOR, |_| {
            "an id and its title need a separator: `T0-104 · title`, `T0-104: title`, or bold `**T0-104 title**`".to_owned()
        }),
        (&LOWERCASE_ID, |_| {
            "ids are upper-case, e.g. T0-104".to_owned()
        }),
        (&BROKEN_BOX, |_| {
            "checklist items are written `- [ ] item` (a space inside the box)".to_owned()
        }),
        (&BOLD_NO_ID, |_| {
            "bold items need an id first, e.g. - **T-022 Title**".to_owned()
        }),
    ];
    for (pattern, hint) in checks {
        for (index, line) in text.lines().enumerate() {
            if line.len() > MAX_LINE_BYTES || heading(line).is_some() {
                continue;
            }
            if pattern.is_match(line) {
                return Some(NearMiss {
                    line: index + 1,
                    text: line.trim().chars().take(200).collect(),
                    hint: hint(line),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Roadmap {
        parse(text.as_bytes(), Path::new("roadmap.md"), 1).unwrap()
    }

    #[test]
    fn patterns_compile() {
        for pattern in [
            &HEADING,
            &CHECKLIST,
            &BOLD_ITEM,
            &PLAIN_ITEM,
            &LEADING_ID,
            &ITALIC_LINE,
            &TIER_ID,
            &TIER_HEADING,
            &MILESTONE_HEADING,
            &DONE_HEADING,
            &THEMATIC_BREAK,
            &DEPENDS,
            &DEP_TOKEN,
            &BACKTICK,
            &RANGE_PARTS,
        ] {
            LazyLock::force(pattern);
        }
        assert!(near_miss("nothing here").is_none());
    }

    #[test]
    fn oxi_bold_item_with_subtitle_and_body() {
        let r = parse_str(
            "## Tier 0\n\n**T0-104 · file-overlap dispatch gate**\n*defer overlapping work*\n\nTouch `src/plan.rs` only. Depends on T0-99.\n",
        );
        let item = &r.items[0];
        assert_eq!(item.id, "T0-104");
        assert_eq!(item.priority_tier, 0);
        assert_eq!(item.title, "file-overlap dispatch gate");
        assert_eq!(item.subtitle.as_deref(), Some("defer overlapping work"));
        assert_eq!(item.body, "Touch `src/plan.rs` only. Depends on T0-99.");
        assert_eq!(item.depends_on, vec!["T0-99"]);
        assert_eq!(item.file_hints, vec!["src/plan.rs"]);
        assert_eq!(item.section.as_deref(), Some("Tier 0"));
        assert_eq!(item.format, ItemFormat::Oxi);
    }

    #[test]
    fn plain_separators_are_forgiving_but_lists_of_ids_are_not_items() {
        let r = parse_str("T0-1 - hyphen separated\nT0-2: colon\n- T0-1, T0-2, T0-11\n");
        let ids: Vec<_> = r.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["T0-1", "T0-2"]);
        assert_eq!(r.items[0].body, "");
    }

    #[test]
    fn dependency_lists_and_ranges() {
        assert_eq!(
            dependencies("Depends on T2-37 and T2-38. Later T9-9.", "X-1"),
            vec!["T2-37", "T2-38"]
        );
        assert_eq!(
            dependencies("blocked by: T2-31..T2-33, **T1-B7**", "T2-32"),
            vec!["T2-31", "T2-33", "T1-B7"]
        );
    }

    #[test]
    fn file_hints_keep_paths_and_drop_escapes() {
        let (hints, dropped) = file_hints(
            "`src/a.rs`, `./docs/x.md`, `README.md`, `cargo test`, `RUN_MODE`, `../etc/passwd`, `/abs/x.rs`, `https://x.io/a`",
        );
        assert_eq!(hints, vec!["src/a.rs", "docs/x.md", "README.md"]);
        assert_eq!(dropped, vec!["../etc/passwd", "/abs/x.rs"]);
    }

    #[test]
    fn indented_items_belong_to_the_open_item() {
        let r = parse_str("- [ ] parent\n  - [ ] child step\n- [ ] sibling\n");
        assert_eq!(r.items.len(), 2);
        assert_eq!(r.items[0].body, "  - [ ] child step");
    }

    #[test]
    fn derived_ids_are_stable_under_formatting() {
        assert_eq!(
            derived_id("Write  the *docs*"),
            derived_id("write the docs")
        );
        assert_ne!(derived_id("write the docs"), derived_id("write the tests"));
        assert!(derived_id("x").starts_with("C-"));
    }
}

/// `text` without the items whose id is in `remove`: each from its line until the next item or
/// heading, with the blank lines that followed it (a periodic prune of done items keeps the roadmap short).
/// Everything else is kept byte for byte.
pub fn prune(
    text: &str,
    items: &[RoadmapItem],
    remove: &std::collections::HashSet<String>,
) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut starts: Vec<usize> = items.iter().map(|i| i.line).collect();
    starts.sort_unstable();
    let mut drop = vec![false; lines.len()];
    for item in items.iter().filter(|i| remove.contains(&i.id)) {
        let first = item.line.saturating_sub(1);
        let next_item = starts
            .iter()
            .copied()
            .find(|&l| l > item.line)
            .map_or(lines.len(), |l| l - 1);
        let mut end = first + 1;
        while end < next_item && heading(lines[end]).is_none() {
            end += 1;
        }
        for flag in drop.iter_mut().take(end).skip(first) {
            *flag = true;
        }
    }
    lines
        .iter()
        .zip(&drop)
        .filter(|(_, dropped)| !**dropped)
        .map(|(line, _)| *line)
        .collect()
}

#[cfg(test)]
mod prune_tests {
    use super::*;

    #[test]
    fn prune_removes_whole_items_and_keeps_everything_else() {
        let text = "# Roadmap\n\n## Tier 0\n\n**T0-1 · Done thing**\nIts brief.\n\n**T0-2 · Open thing**\nKeep me.\n\n## Tier 1\n\n- [x] finished chore\n- [ ] open chore\n";
        let roadmap = parse(text.as_bytes(), Path::new("roadmap.md"), 1).unwrap();
        let done: std::collections::HashSet<String> = roadmap
            .items
            .iter()
            .filter(|i| i.id == "T0-1" || i.title == "finished chore")
            .map(|i| i.id.clone())
            .collect();
        assert_eq!(
            prune(text, &roadmap.items, &done),
            "# Roadmap\n\n## Tier 0\n\n**T0-2 · Open thing**\nKeep me.\n\n## Tier 1\n\n- [ ] open chore\n"
        );
    }
}
