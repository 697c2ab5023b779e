//! The literal strings every match of a regex must contain: routing searches a task's text
//! for all rules' literals at once (one Aho–Corasick pass) and runs a rule's regex only when
//! every literal it needs is there. Most rules need a word most tasks lack, so most regexes
//! never run.
//!
//! The extraction is conservative: a literal is kept only when no match can lack it, so
//! skipping a regex whose literals are missing never changes an answer. A literal may have a
//! few spellings (`(?i)k` also matches the Kelvin sign, so `(?i)kit` is `kit` or `\u{212A}it`);
//! ASCII letters are lower-cased, and the search ignores ASCII case.

use regex_syntax::hir::{Class, Hir, HirKind};

/// One literal: any of its spellings (ASCII letters lower-cased) is a hit.
pub(super) type Spellings = Vec<Vec<u8>>;

/// The most spellings one literal may have before it is cut in two.
const MAX_SPELLINGS: usize = 16;
/// The most chars a class may have to count as a few spellings (`[Kk\u{212A}]`, `[0-3]`).
const MAX_CLASS: usize = 4;
/// Shorter literals are dropped: they are in most texts (a space, `er`), so they would rule
/// out little and report a hit at every other byte.
const MIN_LEN: usize = 3;

/// The literal that best tells which texts `pattern` cannot match: of those every match
/// contains, the one least likely in ordinary text. `None` when none can be told: the pattern
/// is then always tried.
pub(super) fn best(pattern: &str) -> Option<Spellings> {
    required(pattern).into_iter().max_by_key(|l| {
        // A literal is as rare as its commonest spelling.
        l.iter()
            .map(|s| s.iter().map(|b| rarity(*b)).sum::<u32>())
            .min()
            .unwrap_or(0)
    })
}

/// How unlikely a byte is in English prose and paths (ASCII letters already lower-cased).
fn rarity(byte: u8) -> u32 {
    match byte {
        b' ' => 0,
        b'e' | b't' | b'a' | b'o' | b'i' | b'n' | b's' | b'h' | b'r' | b'd' | b'l' | b'u' => 1,
        b'a'..=b'z' | b'/' | b'.' => 2,
        _ => 3,
    }
}

/// The literals every match of `pattern` contains. Empty when none can be told. Patterns
/// that may match bytes that are not UTF-8 (a glob's regex is `(?-u)`) are read too.
pub(super) fn required(pattern: &str) -> Vec<Spellings> {
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    collect(&hir, &mut out);
    out.retain(|l| !l.is_empty() && l.iter().all(|s| s.len() >= MIN_LEN));
    for l in &mut out {
        l.sort();
        l.dedup();
    }
    out.sort();
    out.dedup();
    out
}

/// Adds the literals every match of `hir` contains.
fn collect(hir: &Hir, out: &mut Vec<Spellings>) {
    match hir.kind() {
        HirKind::Capture(capture) => collect(&capture.sub, out),
        HirKind::Repetition(rep) if rep.min >= 1 => collect(&rep.sub, out),
        HirKind::Concat(items) => {
            // Adjacent strings join into one literal; anything else (a look-around, a
            // repetition, an alternation) ends it, and what it needs on its own is added.
            let mut run: Option<Spellings> = None;
            for item in items {
                let Some(next) = single(item) else {
                    out.extend(run.take());
                    collect(item, out);
                    continue;
                };
                run = Some(match run.take() {
                    None => next,
                    Some(prefix) if prefix.len() * next.len() > MAX_SPELLINGS => {
                        out.push(prefix);
                        next
                    }
                    Some(prefix) => prefix
                        .iter()
                        .flat_map(|p| next.iter().map(move |n| [p.as_slice(), n].concat()))
                        .collect(),
                });
            }
            out.extend(run);
        }
        _ => out.extend(single(hir)),
    }
}

/// The few strings `hir` matches, ASCII letters lower-cased; `None` when it can match more.
fn single(hir: &Hir) -> Option<Spellings> {
    let mut spellings: Spellings = match hir.kind() {
        HirKind::Literal(literal) => vec![literal.0.to_vec()],
        HirKind::Class(Class::Unicode(class)) => {
            let size: u32 = class
                .ranges()
                .iter()
                .map(|r| u32::from(r.end()) - u32::from(r.start()) + 1)
                .sum();
            if size as usize > MAX_CLASS {
                return None;
            }
            class
                .ranges()
                .iter()
                .flat_map(|r| r.start()..=r.end())
                .map(|c| c.to_string().into_bytes())
                .collect()
        }
        HirKind::Class(Class::Bytes(class)) => {
            let size: usize = class
                .ranges()
                .iter()
                .map(|r| usize::from(r.end() - r.start()) + 1)
                .sum();
            if size > MAX_CLASS {
                return None;
            }
            class
                .ranges()
                .iter()
                .flat_map(|r| r.start()..=r.end())
                .map(|b| vec![b])
                .collect()
        }
        _ => return None,
    };
    for s in &mut spellings {
        s.make_ascii_lowercase();
    }
    spellings.sort();
    spellings.dedup();
    Some(spellings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(pattern: &str) -> Vec<Vec<String>> {
        required(pattern)
            .into_iter()
            .map(|l| {
                l.into_iter()
                    .map(|s| String::from_utf8(s).unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_needed_literal_is_found_and_nothing_optional() {
        assert_eq!(
            text(r"(?i)\bparser\b.*\bv18\b"),
            [vec!["parser", "par\u{17f}er"], vec!["v18"]]
        );
        assert_eq!(
            text(r"(?i)\bdocs? (is|are) flaky"),
            [vec![" flaky", " fla\u{212a}y"], vec!["doc"]]
        );
        assert_eq!(text("Docs|Guide"), Vec::<Vec<String>>::new());
        assert_eq!(text("(Fix)+ it"), [vec![" it"], vec!["fix"]]);
        assert_eq!(text("x?y*"), Vec::<Vec<String>>::new());
        assert_eq!(text("(?-u:(?i)abc)"), [vec!["abc"]]);
        assert_eq!(text("v1[23]"), [vec!["v12", "v13"]]);
        assert_eq!(text("[a-z]xyz"), [vec!["xyz"]]);
        // Too short to rule anything out.
        assert_eq!(text("v[12]"), Vec::<Vec<String>>::new());
        assert_eq!(text("éa"), [vec!["éa"]]);
        assert_eq!(text("(?i)éa"), [vec!["Éa", "éa"]]);
        assert_eq!(text("("), Vec::<Vec<String>>::new());
    }

    #[test]
    fn the_rarest_literal_is_the_one_searched() {
        let best = |p: &str| best(p).map(|l| String::from_utf8(l[0].clone()).unwrap());
        assert_eq!(best(r"(?i)\bqueue\b.*\bv18\b").as_deref(), Some("v18"));
        assert_eq!(
            best(r"(?i)\bparsers? (is|are) flaky").as_deref(),
            Some(" flaky")
        );
        assert_eq!(
            best("(?-u)^src/parser(?:/?|/.*)$").as_deref(),
            Some("src/parser")
        );
        assert_eq!(best("(?-u)^.*\\.txt$").as_deref(), Some(".txt"));
        assert_eq!(best("x?"), None);
    }

    #[test]
    fn a_literal_with_too_many_spellings_is_cut() {
        // Each `s` is two spellings (`ſ` folds to it): four of them make 16, so a fifth starts
        // another literal, too short to keep.
        let found = text("(?i)sssss");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].len(), MAX_SPELLINGS);
        assert_eq!(text("(?i)ssssstop").len(), 2);
    }
}
