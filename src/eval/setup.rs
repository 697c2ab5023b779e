//! One case's throwaway world: a fresh repository (template, roadmap, `oxi.toml`), a local bare
//! `origin`, and the suite's config with the case's changes merged in.

use std::path::{Path, PathBuf};

use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, Value};

use super::EvalError;
use super::case::Case;

/// The offline worker's name; a worker whose command starts with it runs the one installed
/// beside this oxi, and takes the case's `[fake]` scenario for its role.
pub(crate) const FAKE_WORKER: &str = "oxi-fake-worker";

/// What every case of a run shares: the suite config's text and the worker chosen by `--worker`.
pub(crate) struct Base<'a> {
    pub(crate) config_path: &'a Path,
    pub(crate) config_text: &'a str,
    pub(crate) worker: Option<&'a str>,
}

fn git(dir: &Path, args: &[&str]) -> Result<(), EvalError> {
    let mut full = vec![
        "-c",
        "user.name=oxi eval",
        "-c",
        "user.email=eval@oxi.invalid",
    ];
    full.extend_from_slice(args);
    crate::git::run(dir, &full)
        .map_err(|e| EvalError::Setup(format!("git {}: {e}", args.join(" "))))?;
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Write {
        path: path.to_path_buf(),
        source,
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), EvalError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(io(from))?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(io(&target))?;
        }
    }
    Ok(())
}

/// Builds the case's repository in `root` (which must not exist) with its bare origin beside
/// it, committed on `main` and pushed.
pub(crate) fn make_repo(
    case: &Case,
    base: &Base<'_>,
    root: &Path,
    fake: &Path,
) -> Result<(), EvalError> {
    match &case.template {
        Some(template) => copy_tree(template, root)?,
        None => std::fs::create_dir_all(root).map_err(io(root))?,
    }
    let write = |name: &str, text: &str| {
        let path = root.join(name);
        std::fs::write(&path, text).map_err(io(&path))
    };
    write("roadmap.md", &format!("# Roadmap\n\n{}", case.roadmap))?;
    let ignore = std::fs::read_to_string(root.join(".gitignore")).unwrap_or_default();
    write(".gitignore", &format!("{ignore}.oxi/\n"))?;
    write("oxi.toml", &render_config(case, base, fake)?)?;
    git(root, &["init", "-q", "-b", "main"])?;
    git(root, &["add", "-A"])?;
    git(root, &["commit", "-q", "-m", "eval case"])?;
    let origin = origin_of(root);
    let origin_text = origin.display().to_string();
    git(root, &["init", "-q", "--bare", &origin_text])?;
    git(root, &["remote", "add", "origin", &origin_text])?;
    git(root, &["push", "-q", "origin", "main"])?;
    Ok(())
}

pub(crate) fn origin_of(root: &Path) -> PathBuf {
    root.with_file_name("origin.git")
}

fn bad_config(base: &Base<'_>, message: String) -> EvalError {
    EvalError::SuiteConfig {
        path: base.config_path.to_path_buf(),
        message,
    }
}

/// The suite config with the case merged in: `[config]` over it, `--worker` as the executor,
/// the acceptance commands as `[verify] tier0`, the case's variables passed through to every
/// worker, and each offline worker's scenario for its role.
pub(crate) fn render_config(
    case: &Case,
    base: &Base<'_>,
    fake: &Path,
) -> Result<String, EvalError> {
    let mut doc: DocumentMut = base
        .config_text
        .parse()
        .map_err(|e: toml_edit::TomlError| bad_config(base, e.to_string()))?;
    if let Some(extra) = &case.config {
        let text = toml::to_string(extra).map_err(|e| EvalError::Setup(e.to_string()))?;
        let extra: DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| EvalError::Setup(e.to_string()))?;
        merge(doc.as_table_mut(), extra.as_table());
    }
    if let Some(worker) = base.worker {
        let known = doc
            .get("workers")
            .and_then(Item::as_table_like)
            .is_some_and(|t| t.contains_key(worker));
        if !known {
            return Err(bad_config(
                base,
                format!("--worker {worker}: the config has no [workers.{worker}]"),
            ));
        }
        let mut chain = Array::new();
        chain.push(worker);
        doc["routing"]["executor"] = toml_edit::value(chain);
    }
    if !case.acceptance.is_empty() {
        let mut tier0 = Array::new();
        for (name, argv, timeout) in &case.acceptance {
            let mut command = InlineTable::new();
            command.insert("name", Value::from(name.as_str()));
            command.insert(
                "argv",
                Value::Array(argv.iter().map(String::as_str).collect()),
            );
            command.insert("timeout", Value::from(timeout.as_deref().unwrap_or("60s")));
            tier0.push(Value::InlineTable(command));
        }
        doc["verify"]["tier0"] = toml_edit::value(tier0);
    }
    let roles = role_chains(&doc);
    let Some(workers) = doc.get_mut("workers").and_then(Item::as_table_like_mut) else {
        return Err(bad_config(base, "has no [workers.*] table".to_owned()));
    };
    for (name, worker) in workers.iter_mut() {
        let Some(worker) = worker.as_table_like_mut() else {
            continue;
        };
        pass_through(worker, case);
        if !is_fake(worker) {
            continue;
        }
        let mut command = worker
            .get("command")
            .and_then(Item::as_array)
            .cloned()
            .unwrap_or_default();
        command.replace(0, fake.display().to_string());
        worker.insert("command", toml_edit::value(command));
        let scenario = roles
            .iter()
            .find(|(_, chain)| chain.iter().any(|w| w == name.get()))
            .and_then(|(role, _)| case.fake_scenarios.get(role.as_str()));
        let mut set_env: Vec<(String, String)> = case
            .fake_env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(s) = scenario {
            set_env.push(("OXI_FAKE_SCENARIO".to_owned(), s.clone()));
        }
        let table = worker
            .entry("set_env")
            .or_insert(toml_edit::value(InlineTable::new()));
        if let Some(table) = table.as_table_like_mut() {
            for (k, v) in set_env {
                table.insert(&k, toml_edit::value(v));
            }
        }
    }
    Ok(doc.to_string())
}

/// Adds the case's variables to the worker's pass-through list (`env`).
fn pass_through(worker: &mut dyn toml_edit::TableLike, case: &Case) {
    if case.env.is_empty() {
        return;
    }
    let mut names = worker
        .get("env")
        .and_then(Item::as_array)
        .cloned()
        .unwrap_or_default();
    for name in case.env.keys() {
        if !names.iter().any(|v| v.as_str() == Some(name)) {
            names.push(name.as_str());
        }
    }
    worker.insert("env", toml_edit::value(names));
}

fn is_fake(worker: &dyn toml_edit::TableLike) -> bool {
    worker
        .get("command")
        .and_then(Item::as_array)
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .is_some_and(|c| Path::new(c).file_name().is_some_and(|n| n == FAKE_WORKER))
}

/// `(role, chain)` of the agent roles, the chain's entries without a `:model` suffix.
fn role_chains(doc: &DocumentMut) -> Vec<(String, Vec<String>)> {
    ["executor", "planner", "reviewer"]
        .iter()
        .map(|role| {
            let chain = match doc.get("routing").and_then(|r| r.get(role)) {
                Some(Item::Value(Value::Array(a))) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|w| w.split(':').next().unwrap_or(w).to_owned())
                    .collect(),
                Some(Item::Value(Value::String(s))) => vec![s.value().clone()],
                _ => Vec::new(),
            };
            ((*role).to_owned(), chain)
        })
        .collect()
}

/// `extra` over `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut Table, extra: &Table) {
    for (key, item) in extra {
        match (base.get_mut(key), item) {
            (Some(Item::Table(into)), Item::Table(from)) => merge(into, from),
            _ => {
                base.insert(key, item.clone());
            }
        }
    }
}
