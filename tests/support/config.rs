//! A test repository's `oxi.toml`, built from typed parts: [`Worker`] entries (the fake worker
//! with its knobs, a bare claude/codex command, or a live CLI against the mock model server,
//! see [`super::live::worker`]), the routing, and raw TOML for everything a test tunes by
//! hand. The text comes out in the layout the tests used to spell by hand, so a test that
//! edits the written file (`read("oxi.toml").replace(…)`) finds what it looks for.

use std::path::Path;

/// The stand-in agent CLI built with oxi.
pub const FAKE: &str = env!("CARGO_BIN_EXE_oxi-fake-worker");

/// One `[workers.<name>]` table.
#[derive(Debug, Clone)]
pub struct Worker {
    name: String,
    kind: &'static str,
    command: String,
    model: Option<String>,
    sandbox: Option<String>,
    env: Vec<String>,
    args: Option<String>,
    set_env: Vec<(String, String)>,
}

impl Worker {
    /// A claude-flavoured `oxi-fake-worker` on `claude-sonnet-4-5`.
    pub fn fake(name: &str) -> Self {
        Self::claude(name, FAKE).model("claude-sonnet-4-5")
    }

    /// A codex-flavoured `oxi-fake-worker` on `gpt-5.5`.
    pub fn fake_codex(name: &str) -> Self {
        Self::codex(name, FAKE).model("gpt-5.5")
    }

    /// `kind = "claude"` running `command`, no model.
    pub fn claude(name: &str, command: impl AsRef<Path>) -> Self {
        Self::of_kind(name, "claude", command.as_ref())
    }

    /// `kind = "codex"` running `command`, no model.
    pub fn codex(name: &str, command: impl AsRef<Path>) -> Self {
        Self::of_kind(name, "codex", command.as_ref())
    }

    fn of_kind(name: &str, kind: &'static str, command: &Path) -> Self {
        Self {
            name: name.to_owned(),
            kind,
            command: command.display().to_string(),
            model: None,
            sandbox: None,
            env: Vec::new(),
            args: None,
            set_env: Vec::new(),
        }
    }

    pub fn command(mut self, command: impl AsRef<Path>) -> Self {
        self.command = command.as_ref().display().to_string();
        self
    }

    pub fn model(mut self, model: &str) -> Self {
        self.model = Some(model.to_owned());
        self
    }

    /// codex's `sandbox`.
    pub fn sandbox(mut self, sandbox: &str) -> Self {
        self.sandbox = Some(sandbox.to_owned());
        self
    }

    /// One more name in `env` (variables passed through from oxi's environment).
    pub fn env(mut self, name: &str) -> Self {
        self.env.push(name.to_owned());
        self
    }

    /// `args`, as the TOML array text (inline tables and quoting vary too much to type).
    pub fn args_toml(mut self, args: &str) -> Self {
        self.args = Some(args.to_owned());
        self
    }

    /// One more `set_env` entry; entries keep their order.
    pub fn set_env(mut self, key: &str, value: &str) -> Self {
        self.set_env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The fake worker's `OXI_FAKE_SCENARIO`.
    pub fn scenario(self, scenario: &str) -> Self {
        self.set_env("OXI_FAKE_SCENARIO", scenario)
    }

    /// The fake worker's `OXI_FAKE_SLEEP_MS`.
    pub fn sleep_ms(self, ms: u64) -> Self {
        self.set_env("OXI_FAKE_SLEEP_MS", &ms.to_string())
    }

    /// The fake worker's `OXI_FAKE_COST_USD`.
    pub fn cost_usd(self, usd: &str) -> Self {
        self.set_env("OXI_FAKE_COST_USD", usd)
    }

    /// What the fake worker answers to `--version` (`OXI_FAKE_VERSION`).
    pub fn version(self, version: &str) -> Self {
        self.set_env("OXI_FAKE_VERSION", version)
    }

    /// The table as TOML text, ending in a newline.
    pub fn to_toml(&self) -> String {
        let mut text = format!(
            "[workers.{}]\nkind = \"{}\"\ncommand = [\"{}\"]\n",
            self.name, self.kind, self.command
        );
        if let Some(model) = &self.model {
            text.push_str(&format!("model = \"{model}\"\n"));
        }
        if let Some(sandbox) = &self.sandbox {
            text.push_str(&format!("sandbox = \"{sandbox}\"\n"));
        }
        if !self.env.is_empty() {
            let names: Vec<String> = self.env.iter().map(|n| format!("\"{n}\"")).collect();
            text.push_str(&format!("env = [{}]\n", names.join(", ")));
        }
        if let Some(args) = &self.args {
            text.push_str(&format!("args = {args}\n"));
        }
        if !self.set_env.is_empty() {
            let pairs: Vec<String> = self
                .set_env
                .iter()
                .map(|(k, v)| format!("{k} = \"{v}\""))
                .collect();
            text.push_str(&format!("set_env = {{ {} }}\n", pairs.join(", ")));
        }
        text
    }
}

/// A whole `oxi.toml`: its parts in the order given, a blank line between them.
#[derive(Debug, Clone, Default)]
pub struct OxiToml {
    parts: Vec<String>,
}

impl OxiToml {
    pub fn new() -> Self {
        Self::default()
    }

    /// `[project]` with `roadmap.md` on `main`.
    pub fn project(self) -> Self {
        self.raw("[project]\nroadmap = \"roadmap.md\"\nbase_branch = \"main\"\n")
    }

    pub fn worker(mut self, worker: Worker) -> Self {
        self.parts.push(worker.to_toml());
        self
    }

    /// `[routing]` with the executor and reviewer chains.
    pub fn routing(self, executor: &[&str], reviewer: &[&str]) -> Self {
        let chain = |names: &[&str]| {
            let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
            quoted.join(", ")
        };
        let text = format!(
            "[routing]\nexecutor = [{}]\nreviewer = [{}]\n",
            chain(executor),
            chain(reviewer)
        );
        self.raw(&text)
    }

    /// Any other TOML, as written.
    pub fn raw(mut self, text: &str) -> Self {
        self.parts.push(text.to_owned());
        self
    }

    pub fn text(&self) -> String {
        self.parts.join("\n")
    }

    /// Writes the file as `dir/oxi.toml`.
    pub fn write_in(&self, dir: &Path) {
        std::fs::write(dir.join("oxi.toml"), self.text()).unwrap();
    }
}
