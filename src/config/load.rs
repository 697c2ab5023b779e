//! Finding, reading and parsing `oxi.toml`, and pointing every error at `file:line:col`.

use std::path::{Path, PathBuf};

use super::validate::validate;
use super::{CONFIG_FILE_NAME, Config, ConfigError, RunMode, STATE_DIR_NAME};

/// A parsed, validated configuration and where it lives.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// The `oxi.toml` that was read.
    pub path: PathBuf,
    /// The repository root (`project.root` resolved against the config's directory).
    pub repo_root: PathBuf,
    /// `.oxi/` beside `oxi.toml`.
    pub state_dir: PathBuf,
    /// Where the effective run mode came from (`oxi.toml` or `OXI_RUN_MODE`).
    pub mode_source: ModeSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeSource {
    File,
    Env,
}

/// Proof that the effective run mode is `release`. Only [`LoadedConfig::release_mode`] makes
/// one, and the GitHub writer cannot be built without it: fast mode never holds a writer.
#[derive(Debug)]
pub struct ReleaseMode {
    _private: (),
}

impl LoadedConfig {
    /// `Some` only in release mode.
    pub fn release_mode(&self) -> Option<ReleaseMode> {
        (self.config.run.mode == RunMode::Release).then_some(ReleaseMode { _private: () })
    }

    /// `run.stack_on_delivered`, which applies in fast mode only (release mode has pull
    /// requests to review one at a time).
    pub fn stacks_on_delivered(&self) -> bool {
        self.config.run.stack_on_delivered && self.config.run.mode == RunMode::Fast
    }

    pub fn roadmap_path(&self) -> PathBuf {
        self.repo_root.join(&self.config.project.roadmap)
    }

    pub fn ledger_path(&self) -> PathBuf {
        self.state_dir.join("ledger.db")
    }

    /// Where the ledger is: `[ledger] url`, else `ledger_path`.
    #[must_use]
    pub fn ledger_at(&self) -> crate::ledger::LedgerAt {
        match &self.config.ledger.url {
            Some(url) => crate::ledger::LedgerAt::Postgres {
                url: url.clone(),
                password_env: self.config.ledger.password_env.clone(),
            },
            None => crate::ledger::LedgerAt::File(self.ledger_path()),
        }
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.state_dir.join("runs")
    }

    /// The config path as the user should see it in messages.
    pub fn display_path(&self) -> String {
        display_path(&self.path)
    }
}

fn display_path(path: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir()
        && let Ok(rel) = path.strip_prefix(&cwd)
    {
        return rel.display().to_string();
    }
    path.display().to_string()
}

/// Walks up from `start` to the nearest `oxi.toml`.
pub fn discover(start: &Path) -> Result<PathBuf, ConfigError> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        let candidate = d.join(CONFIG_FILE_NAME);
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(ConfigError::NotFound {
        start: start.to_path_buf(),
    })
}

/// Reads, parses and validates the config at `path`, applying `OXI_RUN_MODE` from `env_mode`.
pub fn load(path: &Path, env_mode: Option<&str>) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut config = parse(&text, &display_path(&path))?;
    let mut mode_source = ModeSource::File;
    if let Some(value) = env_mode.map(str::trim).filter(|v| !v.is_empty()) {
        config.run.mode = match value {
            "fast" => RunMode::Fast,
            "release" => RunMode::Release,
            _ => {
                return Err(ConfigError::BadRunModeEnv {
                    value: value.to_owned(),
                });
            }
        };
        mode_source = ModeSource::Env;
    }
    let config_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let repo_root = normalize(&config_dir.join(&config.project.root));
    Ok(LoadedConfig {
        config,
        state_dir: config_dir.join(STATE_DIR_NAME),
        path,
        repo_root,
        mode_source,
    })
}

/// Lexically removes `.` and resolves `..` so messages show clean paths.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Parses and validates config text; `file` names the file in error messages.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let config: Config = toml::from_str(text).map_err(|e| {
        let (line, col) = e
            .span()
            .map(|span| line_col(text, span.start))
            .unwrap_or((1, 1));
        ConfigError::Invalid {
            location: format!("{file}:{line}:{col}"),
            message: describe_toml_error(text, &e),
        }
    })?;
    let problems = validate(&config);
    if let Some(problem) = problems.into_iter().next() {
        let (line, col) = locate(text, &problem.key).unwrap_or((1, 1));
        return Err(ConfigError::Invalid {
            location: format!("{file}:{line}:{col}"),
            message: format!("{}: {}", problem.key.join("."), problem.message),
        });
    }
    Ok(config)
}

/// toml's message, with the key path prefixed when the error sits on a key we can name.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().to_owned();
    let Some(span) = error.span() else {
        return message;
    };
    match key_path_at(text, span.start) {
        Some(path) if !path.is_empty() && !message.contains(&path) => format!("{path}: {message}"),
        _ => message,
    }
}

/// The dotted key whose key or value covers byte `offset`, found by walking toml_edit's spans.
fn key_path_at(text: &str, offset: usize) -> Option<String> {
    let doc = toml_edit::Document::parse(text.to_owned()).ok()?;
    let mut path = Vec::new();
    walk_for_offset(doc.as_table(), offset, &mut path).then(|| path.join("."))
}

fn walk_for_offset(table: &toml_edit::Table, offset: usize, path: &mut Vec<String>) -> bool {
    for (key, item) in table.iter() {
        let key_span = table.key(key).and_then(toml_edit::Key::span);
        let covers =
            |span: Option<std::ops::Range<usize>>| span.is_some_and(|s| s.contains(&offset));
        path.push(key.to_owned());
        if let Some(sub) = item.as_table() {
            if walk_for_offset(sub, offset, path) {
                return true;
            }
            if covers(sub.span()) {
                return true;
            }
        } else if let Some(inline) = item.as_inline_table() {
            if covers(key_span.clone()) || covers(inline.span()) {
                return true;
            }
        } else if covers(key_span) || covers(item.span()) {
            return true;
        }
        path.pop();
    }
    false
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Finds the line of a dotted key path (array indices as numbers) in the source; falls back to
/// the nearest ancestor that exists, so an error always points somewhere useful.
fn locate(text: &str, key: &[String]) -> Option<(usize, usize)> {
    enum Cursor<'a> {
        Table(&'a dyn toml_edit::TableLike),
        Array(&'a toml_edit::Array),
        Tables(&'a toml_edit::ArrayOfTables),
        Leaf,
    }
    fn cursor_of_item(item: &toml_edit::Item) -> Cursor<'_> {
        if let Some(t) = item.as_array_of_tables() {
            Cursor::Tables(t)
        } else if let Some(a) = item.as_array() {
            Cursor::Array(a)
        } else if let Some(t) = item.as_table_like() {
            Cursor::Table(t)
        } else {
            Cursor::Leaf
        }
    }
    fn cursor_of_value(value: &toml_edit::Value) -> Cursor<'_> {
        match value {
            toml_edit::Value::Array(a) => Cursor::Array(a),
            toml_edit::Value::InlineTable(t) => Cursor::Table(t),
            _ => Cursor::Leaf,
        }
    }

    let doc = toml_edit::Document::parse(text.to_owned()).ok()?;
    let mut cursor = Cursor::Table(doc.as_table());
    let mut best = None;
    for part in key {
        let (span, next) = match (cursor, part.parse::<usize>()) {
            (Cursor::Table(table), _) => match table.get_key_value(part) {
                Some((k, v)) => (k.span().or_else(|| v.span()), cursor_of_item(v)),
                None => break,
            },
            (Cursor::Array(array), Ok(index)) => match array.get(index) {
                Some(v) => (v.span(), cursor_of_value(v)),
                None => break,
            },
            (Cursor::Tables(tables), Ok(index)) => match tables.get(index) {
                Some(t) => (t.span(), Cursor::Table(t)),
                None => break,
            },
            _ => break,
        };
        if let Some(span) = span {
            best = Some(span.start);
        }
        cursor = next;
    }
    best.map(|offset| line_col(text, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_a_valid_config() {
        let config = parse("", "oxi.toml").unwrap();
        assert_eq!(config.run.mode, RunMode::Fast);
        assert_eq!(config.run.max_parallel_jobs, 1);
        assert_eq!(config.workers.len(), 2);
    }

    #[test]
    fn a_rates_table_is_merged_over_the_built_in_cards() {
        let config = parse(
            "[rates.\"gpt-5.5\"]\ninput_per_mtok = 2.0\noutput_per_mtok = 20.0\n\n[rates.\"other\"]\ninput_per_mtok = 1.0\noutput_per_mtok = 2.0\n",
            "oxi.toml",
        )
        .unwrap();
        assert_eq!(config.rates["gpt-5.5"].input_per_mtok, 2.0, "the user wins");
        assert_eq!(config.rates["other"].output_per_mtok, 2.0);
        assert_eq!(
            config.rates.get("claude-sonnet-4-5"),
            super::super::schema::default_rates().get("claude-sonnet-4-5"),
            "a built-in card no table overrides stays"
        );
    }

    #[test]
    fn a_bare_string_is_a_one_worker_chain() {
        let config = parse("[routing]\nexecutor = \"claude\"\n", "oxi.toml").unwrap();
        assert_eq!(config.routing.executor.0, vec!["claude".to_owned()]);
    }

    #[test]
    fn locates_nested_keys() {
        let text =
            "[caps]\njob_usd = 1.0\n\n[verify]\ntier0 = [\n  { name = \"a\", argv = [] },\n]\n";
        assert_eq!(
            locate(text, &["caps".into(), "job_usd".into()]),
            Some((2, 1))
        );
        assert_eq!(
            locate(
                text,
                &["verify".into(), "tier0".into(), "0".into(), "argv".into()]
            ),
            Some((6, 17))
        );
    }
}
