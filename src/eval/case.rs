//! An eval case file (`case.toml`, docs/eval.md): the roadmap, the repository template, the
//! acceptance commands, what the offline worker does, and the expected ending. Every error
//! names the case file, the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::EvalError;

/// How a case's tasks may end. One place maps each to the ledger's state text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Delivered,
    FrameworkFixNeeded,
    Held,
    Failed,
}

impl Ending {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ending::Delivered => "delivered",
            Ending::FrameworkFixNeeded => "framework_fix_needed",
            Ending::Held => "held",
            Ending::Failed => "failed",
        }
    }

    const ALL: [Ending; 4] = [
        Ending::Delivered,
        Ending::FrameworkFixNeeded,
        Ending::Held,
        Ending::Failed,
    ];

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Acceptance {
    name: String,
    argv: Vec<String>,
    #[serde(default)]
    timeout: Option<String>,
}

/// What the offline worker (`oxi-fake-worker`) does in this case, per role; live CLIs ignore it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fake {
    #[serde(default)]
    executor: Option<String>,
    #[serde(default)]
    planner: Option<String>,
    #[serde(default)]
    reviewer: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// One ending or a list of acceptable ones (a guard that refuses a write outright under
    /// Landlock lets the task deliver; without Landlock the post-run check stops it).
    ending: Spanned<toml::Value>,
    #[serde(default)]
    failure_class: Option<String>,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    absent: Vec<String>,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    never_contains: Vec<Spanned<String>>,
    #[serde(default)]
    planned: bool,
    #[serde(default)]
    worker_calls: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    #[serde(default)]
    description: String,
    roadmap: Spanned<String>,
    #[serde(default)]
    template: Option<Spanned<String>>,
    #[serde(default)]
    acceptance: Vec<Acceptance>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    fake: Fake,
    #[serde(default)]
    config: Option<toml::Table>,
    expect: Expect,
}

/// A validated case.
#[derive(Debug)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) file: PathBuf,
    pub(crate) description: String,
    pub(crate) roadmap: String,
    /// Files copied into the repository before its first commit.
    pub(crate) template: Option<PathBuf>,
    /// `[verify] tier0` as TOML (empty: the suite config's own).
    pub(crate) acceptance: Vec<(String, Vec<String>, Option<String>)>,
    /// Set in oxi's environment for the case and passed through to every worker (masked as
    /// secrets, as `[workers.*] env` values are).
    pub(crate) env: BTreeMap<String, String>,
    /// `OXI_FAKE_SCENARIO` per role for offline workers.
    pub(crate) fake_scenarios: BTreeMap<&'static str, String>,
    pub(crate) fake_env: BTreeMap<String, String>,
    /// Merged over the suite config (`[config.caps] max_worker_calls = 3`).
    pub(crate) config: Option<toml::Table>,
    pub(crate) expect: Expectation,
}

#[derive(Debug)]
pub(crate) struct Expectation {
    pub(crate) endings: Vec<Ending>,
    pub(crate) failure_class: Option<String>,
    pub(crate) files: Vec<String>,
    pub(crate) absent: Vec<String>,
    pub(crate) events: Vec<String>,
    pub(crate) never_contains: Vec<String>,
    pub(crate) planned: bool,
    /// Each task made exactly this many worker calls (all roles).
    pub(crate) worker_calls: Option<u32>,
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |head| head.bytes().filter(|b| *b == b'\n').count() + 1)
}

fn invalid(file: &Path, text: &str, offset: usize, key: &str, message: String) -> EvalError {
    EvalError::Case {
        file: file.to_path_buf(),
        line: line_of(text, offset),
        key: key.to_owned(),
        message,
    }
}

/// Reads and validates `case.toml`.
pub(crate) fn load(file: &Path) -> Result<Case, EvalError> {
    let text = std::fs::read_to_string(file).map_err(|source| EvalError::Read {
        path: file.to_path_buf(),
        source,
    })?;
    let raw: CaseFile = toml::from_str(&text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        invalid(
            file,
            &text,
            offset,
            &key_in(e.message()),
            e.message().to_owned(),
        )
    })?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map_or_else(|| "case".to_owned(), |n| n.to_string_lossy().into_owned());
    let items = crate::roadmap::parse(raw.roadmap.get_ref().as_bytes(), file, 1).map_err(|e| {
        invalid(
            file,
            &text,
            raw.roadmap.span().start,
            "roadmap",
            e.to_string(),
        )
    })?;
    if items.items.is_empty() {
        return Err(invalid(
            file,
            &text,
            raw.roadmap.span().start,
            "roadmap",
            "holds no roadmap item; write one (`**T0-1 · Title**` and a brief)".to_owned(),
        ));
    }
    let template = match &raw.template {
        Some(t) => {
            let path = dir.join(t.get_ref());
            if !path.is_dir() {
                return Err(invalid(
                    file,
                    &text,
                    t.span().start,
                    "template",
                    format!("{} is not a directory", path.display()),
                ));
            }
            Some(path)
        }
        None => Some(dir.join("repo")).filter(|p| p.is_dir()),
    };
    for (i, a) in raw.acceptance.iter().enumerate() {
        if a.argv.is_empty() || a.name.trim().is_empty() {
            return Err(invalid(
                file,
                &text,
                text.find("[[acceptance]]").unwrap_or(0),
                &format!("acceptance[{i}]"),
                "needs a name and a non-empty argv".to_owned(),
            ));
        }
    }
    let expect = expectation(file, &text, raw.expect)?;
    let mut fake_scenarios = BTreeMap::new();
    for (role, scenario) in [
        ("executor", raw.fake.executor),
        ("planner", raw.fake.planner),
        ("reviewer", raw.fake.reviewer),
    ] {
        if let Some(s) = scenario {
            fake_scenarios.insert(role, s);
        }
    }
    Ok(Case {
        name,
        file: file.to_path_buf(),
        description: raw.description,
        roadmap: raw.roadmap.into_inner(),
        template,
        acceptance: raw
            .acceptance
            .into_iter()
            .map(|a| (a.name, a.argv, a.timeout))
            .collect(),
        env: raw.env,
        fake_scenarios,
        fake_env: raw.fake.env,
        config: raw.config,
        expect,
    })
}

fn expectation(file: &Path, text: &str, raw: Expect) -> Result<Expectation, EvalError> {
    let bad = |message: String| {
        invalid(
            file,
            text,
            raw.ending.span().start,
            "expect.ending",
            message,
        )
    };
    let words: Vec<&toml::Value> = match raw.ending.get_ref() {
        toml::Value::Array(list) => list.iter().collect(),
        one => vec![one],
    };
    let mut endings = Vec::new();
    for word in words {
        let ending = word.as_str().and_then(Ending::parse).ok_or_else(|| {
            let names: Vec<&str> = Ending::ALL.iter().map(|e| e.as_str()).collect();
            bad(format!(
                "{word} is not an ending; use one of {}",
                names.join(", ")
            ))
        })?;
        endings.push(ending);
    }
    if endings.is_empty() {
        return Err(invalid(
            file,
            text,
            raw.ending.span().start,
            "expect.ending",
            "is an empty list; name at least one ending".to_owned(),
        ));
    }
    for needle in &raw.never_contains {
        if needle.get_ref().len() < 8 {
            return Err(invalid(
                file,
                text,
                needle.span().start,
                "expect.never_contains",
                format!(
                    "{:?} is shorter than 8 characters; a planted secret must not match by chance",
                    needle.get_ref()
                ),
            ));
        }
    }
    Ok(Expectation {
        endings,
        failure_class: raw.failure_class,
        files: raw.files,
        absent: raw.absent,
        events: raw.events,
        never_contains: raw
            .never_contains
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        planned: raw.planned,
        worker_calls: raw.worker_calls,
    })
}

/// The key a serde message names (``unknown field `x` ``, ``missing field `x` ``), else "".
fn key_in(message: &str) -> String {
    message
        .split('`')
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_default()
}

/// The cases of a suite: every `*/case.toml` under it, by directory name.
pub(crate) fn discover(suite: &Path) -> Result<Vec<PathBuf>, EvalError> {
    let entries = std::fs::read_dir(suite).map_err(|source| EvalError::Read {
        path: suite.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path().join("case.toml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(EvalError::EmptySuite(suite.to_path_buf()));
    }
    Ok(files)
}
