//! Docs that do not rot: every relative link in README.md and docs/*.md names a file that
//! exists, and every `#anchor` names a heading of its target, slugged as GitHub slugs them.
//!
//! Links to the web are not followed (tests stay offline); links to source files are checked
//! to exist, and their anchors only when they point into Markdown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, relative to the repository root, sorted.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| path.strip_prefix(root()).unwrap().to_path_buf())
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// A link as written, with the 1-based line it starts on.
struct Link {
    line: usize,
    target: String,
}

/// What one Markdown file offers and asks: its heading anchors and its links.
struct Page {
    anchors: BTreeSet<String>,
    links: Vec<Link>,
}

fn read_page(text: &str) -> Page {
    let mut anchors = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut links = Vec::new();
    let mut heading: Option<String> = None;
    let options = Options::ENABLE_TABLES | Options::ENABLE_HEADING_ATTRIBUTES;
    for (event, range) in Parser::new_ext(text, options).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { id, .. }) => {
                if let Some(id) = id {
                    anchors.insert(id.to_string());
                }
                heading = Some(String::new());
            }
            Event::End(TagEnd::Heading(_)) => {
                let slug = github_slug(&heading.take().unwrap_or_default());
                // GitHub numbers repeated headings: `a`, `a-1`, `a-2`.
                let count = seen.entry(slug.clone()).or_insert(0);
                let anchor = match *count {
                    0 => slug,
                    n => format!("{slug}-{n}"),
                };
                *count += 1;
                anchors.insert(anchor);
            }
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                let line = text[..range.start].matches('\n').count() + 1;
                links.push(Link {
                    line,
                    target: dest_url.to_string(),
                });
            }
            Event::Html(html) | Event::InlineHtml(html) => {
                for id in html_ids(&html) {
                    anchors.insert(id);
                }
            }
            _ => {}
        }
    }
    Page { anchors, links }
}

/// `id="…"` and `name="…"` in raw HTML, which GitHub keeps as anchors.
fn html_ids(html: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for key in ["id=\"", "name=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(key) {
            rest = &rest[at + key.len()..];
            if let Some(end) = rest.find('"') {
                ids.push(rest[..end].to_string());
                rest = &rest[end..];
            }
        }
    }
    ids
}

/// GitHub's heading anchor: lower case; letters, digits, `-` and `_` kept; each space a `-`;
/// everything else (punctuation, backticks, emoji) dropped.
fn github_slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn is_external(target: &str) -> bool {
    target.contains("://") || target.starts_with("mailto:")
}

/// `a/../b` → `b`, so a link's file can be looked up among the pages read.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Every broken link in `pages`, as `file:line: target: why`.
fn broken_links(pages: &BTreeMap<PathBuf, Page>) -> Vec<String> {
    let mut broken = Vec::new();
    for (file, page) in pages {
        for link in &page.links {
            if is_external(&link.target) {
                continue;
            }
            let (path, anchor) = match link.target.split_once('#') {
                Some((path, anchor)) => (path, Some(anchor)),
                None => (link.target.as_str(), None),
            };
            let target = if path.is_empty() {
                file.clone()
            } else {
                normalize(&file.parent().unwrap_or(Path::new("")).join(path))
            };
            let at = format!("{}:{}: {}", file.display(), link.line, link.target);
            if !root().join(&target).exists() {
                broken.push(format!("{at}: no file {}", target.display()));
                continue;
            }
            let Some(anchor) = anchor else { continue };
            if target.extension().is_none_or(|ext| ext != "md") {
                continue;
            }
            let anchors = match pages.get(&target) {
                Some(page) => page.anchors.clone(),
                None => read_page(&std::fs::read_to_string(root().join(&target)).unwrap()).anchors,
            };
            if !anchors.contains(anchor) {
                broken.push(format!(
                    "{at}: no heading #{anchor} in {}",
                    target.display()
                ));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_and_anchor_in_readme_and_docs_resolves() {
    let pages: BTreeMap<PathBuf, Page> = markdown_files()
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(root().join(&file)).unwrap();
            (file, read_page(&text))
        })
        .collect();
    assert!(pages.len() > 5, "README.md and docs/*.md were not found");
    let links: usize = pages.values().map(|p| p.links.len()).sum();
    assert!(
        links > 20,
        "only {links} links found: is the parser reading the files?"
    );
    let broken = broken_links(&pages);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn github_slugs_follow_githubs_rules() {
    assert_eq!(
        github_slug("Processes and deadlines"),
        "processes-and-deadlines"
    );
    assert_eq!(github_slug("`oxi run`"), "oxi-run");
    assert_eq!(
        github_slug("Worker runtime — `cargo bench --bench worker [-- normalize|deadline|flood]`"),
        "worker-runtime--cargo-bench---bench-worker----normalizedeadlineflood"
    );
    assert_eq!(github_slug("Proof suite (issue 7)"), "proof-suite-issue-7");
    assert_eq!(github_slug("snake_case and 1.5"), "snake_case-and-15");
}

#[test]
fn a_broken_link_and_a_missing_anchor_are_reported() {
    let mut pages = BTreeMap::new();
    pages.insert(
        PathBuf::from("docs/cli.md"),
        read_page(
            "# Top\n\n## Top\n\nsee [a](#top-1), [b](#nowhere), [c](nope.md),\n\
             [d](workers.md#processes-and-deadlines), [e](https://example.com/x#y)\n",
        ),
    );
    let broken = broken_links(&pages);
    assert_eq!(
        broken,
        [
            "docs/cli.md:5: #nowhere: no heading #nowhere in docs/cli.md",
            "docs/cli.md:5: nope.md: no file docs/nope.md",
        ]
    );
}
