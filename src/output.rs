//! What oxi prints on stdout: tables, Markdown and JSON. Logs and progress go to stderr through
//! `tracing`; this is the only module that writes to stdout.
#![allow(clippy::print_stdout)]

use std::io::Write;

use clap::ValueEnum;
use comfy_table::{Table, presets};
use serde::Serialize;

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
    Markdown,
    /// A self-contained page with charts (`oxi report`); other commands print a table.
    Html,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorChoice {
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Applies the choice to every anstream writer; `auto` honours `NO_COLOR` and terminals.
    pub fn apply(self) {
        let choice = match self {
            ColorChoice::Auto => anstream::ColorChoice::Auto,
            ColorChoice::Always => anstream::ColorChoice::Always,
            ColorChoice::Never => anstream::ColorChoice::Never,
        };
        choice.write_global();
    }

    /// Whether stderr logs should carry ANSI colour.
    pub fn stderr_has_color(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::IsTerminal::is_terminal(&std::io::stderr())
            }
        }
    }
}

/// Errors writing to stdout (a closed pipe is not an error: `oxi plan | head` is fine).
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encode JSON output: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes `text` to stdout, treating a closed pipe as success.
pub fn write_stdout(text: &str) -> Result<(), OutputError> {
    let mut out = anstream::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Pretty JSON with a trailing newline.
pub fn json_string<T: Serialize + ?Sized>(value: &T) -> Result<String, OutputError> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

/// A rows-and-columns result rendered as a plain table or a Markdown table.
pub struct Grid {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Grid {
    pub fn new<I, S>(header: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, format: Format) -> String {
        let mut table = Table::new();
        match format {
            Format::Markdown => {
                table.load_style(presets::ASCII_MARKDOWN);
            }
            _ => {
                table.load_style(presets::NOTHING);
                table.set_content_arrangement(comfy_table::ContentArrangement::Disabled);
            }
        }
        let escape = |cell: &String| {
            if format == Format::Markdown {
                cell.replace('|', "\\|").replace('\n', " ")
            } else {
                cell.replace('\n', " ")
            }
        };
        table.set_header(self.header.iter().map(escape));
        for row in &self.rows {
            table.add_row(row.iter().map(escape));
        }
        let mut text: String = table
            .to_string()
            .lines()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect();
        if format == Format::Table {
            // Plain tables: no leading pad column.
            text = text
                .lines()
                .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
                .collect();
        }
        text
    }
}
