//! oxi.toml: the example documents and parses, and every bad file gets an error naming
//! `file:line` and the key.

use crate::support::Sandbox;

fn config_error(toml: &str) -> String {
    let s = Sandbox::git_repo();
    s.write("oxi.toml", toml);
    s.write("roadmap.md", "- [ ] something\n");
    let run = s.oxi(&["status"]);
    run.fails_with(3).trim_end().to_owned()
}

#[test]
fn unknown_keys_wrong_types_and_contradictions_name_file_line_and_key() {
    let cases = [
        ("unknown_key", "[caps]\ndaily_usd = 5.0\ndayly_usd = 5.0\n"),
        ("unknown_table", "[capz]\ndaily_usd = 5.0\n"),
        ("wrong_type", "[run]\nmax_parallel_jobs = \"two\"\n"),
        ("bad_duration", "[caps]\njob_runtime = \"forty minutes\"\n"),
        (
            "daily_above_monthly",
            "[caps]\njob_usd = 1.0\ndaily_usd = 500.0\nmonthly_usd = 400.0\n",
        ),
        (
            "job_above_daily",
            "[caps]\n\njob_usd = 30.0\ndaily_usd = 20.0\n",
        ),
        (
            "empty_argv",
            "[verify]\ntier0 = [\n  { name = \"unit\", argv = [], timeout = \"5m\" },\n]\n",
        ),
        (
            "unknown_worker",
            "[routing]\nexecutor = [\"claude\", \"gemini\"]\n",
        ),
        (
            "github_token_to_worker",
            "[workers.claude]\nkind = \"claude\"\ncommand = [\"claude\"]\nenv = [\"GITHUB_TOKEN\"]\n[routing]\nexecutor = [\"claude\"]\nreviewer = [\"claude\"]\n",
        ),
        (
            "codex_without_rates",
            "[workers.codex]\nkind = \"codex\"\ncommand = [\"codex\"]\nmodel = \"o9\"\n[routing]\nexecutor = [\"codex\"]\nreviewer = [\"codex\"]\n",
        ),
        ("syntax", "[caps\ndaily_usd = 1\n"),
        ("bad_glob", "[governance]\nprotected = [\"src/[\"]\n"),
        ("bad_size", "[caps]\noutput_per_run = \"lots\"\n"),
        (
            "raw_log_above_output",
            "[caps]\noutput_per_run = \"1 MiB\"\nraw_log_per_run = \"2 MiB\"\n",
        ),
        (
            "prompting_permission_mode",
            "[workers.claude]\nkind = \"claude\"\ncommand = [\"claude\"]\npermission_mode = \"default\"\n[routing]\nexecutor = [\"claude\"]\nreviewer = [\"claude\"]\n",
        ),
        (
            "sandbox_on_claude",
            "[workers.claude]\nkind = \"claude\"\ncommand = [\"claude\"]\nsandbox = \"read-only\"\n[routing]\nexecutor = [\"claude\"]\nreviewer = [\"claude\"]\n",
        ),
        (
            "github_token_in_set_env",
            "[workers.claude]\nkind = \"claude\"\ncommand = [\"claude\"]\nset_env = { GH_TOKEN = \"x\" }\n[routing]\nexecutor = [\"claude\"]\nreviewer = [\"claude\"]\n",
        ),
    ];
    let mut all = String::new();
    for (name, toml) in cases {
        all.push_str(&format!("## {name}\n{}\n\n", config_error(toml)));
    }
    insta::assert_snapshot!("config_errors", all);
}

#[test]
fn run_mode_env_overrides_and_bad_values_are_refused() {
    let s = Sandbox::initialised("- [ ] x\n");
    s.oxi(&["ingest"]).ok();
    let status = s.oxi_env(
        &["status", "--format", "json"],
        &[("OXI_RUN_MODE", "release")],
    );
    assert_eq!(status.json()["mode"], "release");
    let bad = s.oxi_env(&["status"], &[("OXI_RUN_MODE", "yolo")]);
    insta::assert_snapshot!("bad_run_mode_env", bad.fails_with(3).trim_end());
}

#[test]
fn missing_config_says_how_to_fix_it() {
    let s = Sandbox::empty();
    let stderr = s.oxi(&["status"]).fails_with(3).to_owned();
    assert!(stderr.contains("oxi init"), "{stderr}");
}

#[test]
fn example_parses_and_documents_every_key() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("oxi.toml.example");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = oxi::config::parse(&text, "oxi.toml.example").unwrap();
    assert!(
        config.github.is_some(),
        "the example shows the [github] table"
    );

    // Every key the config type knows (with every optional table filled) appears in the example.
    let mut full = config.clone();
    let worker = full.workers.values_mut().next().unwrap();
    worker.set_env.insert("X".into(), "1".into());
    worker.model.get_or_insert_with(|| "m".into());
    for card in full.rates.values_mut() {
        card.cached_input_per_mtok.get_or_insert(1.0);
        card.reasoning_per_mtok.get_or_insert(1.0);
    }
    full.verify.tier1_time_box = Some(oxi::config::HumanDuration::from_secs(60));
    let mut known = Vec::new();
    let value = toml::Value::try_from(&full).unwrap();
    collect_keys(&value, "", &mut known);
    let documented: toml::Value = toml::from_str(&text).unwrap();
    let mut present = Vec::new();
    collect_keys(&documented, "", &mut present);
    let missing: Vec<&String> = known
        .iter()
        .filter(|k| !present.contains(k) && !k.contains(".set_env.X"))
        .collect();
    assert!(missing.is_empty(), "oxi.toml.example lacks {missing:?}");
}

/// Dotted key paths with table names generalised (`workers.*.kind`).
fn collect_keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    const MAPS: &[&str] = &["workers", "rates"];
    if let toml::Value::Table(table) = value {
        for (k, v) in table {
            let key = if MAPS.contains(&prefix) {
                "*"
            } else {
                k.as_str()
            };
            let path = if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            };
            if !out.contains(&path) {
                out.push(path.clone());
            }
            collect_keys(v, &path, out);
        }
    } else if let toml::Value::Array(items) = value {
        for item in items {
            collect_keys(item, &format!("{prefix}[]"), out);
        }
    }
}

#[test]
fn init_template_loads() {
    let text = oxi::commands::render_config_for_tests("roadmap.md", "main", Some("acme/widgets"));
    let config = oxi::config::parse(&text, "oxi.toml").unwrap();
    assert_eq!(config.github.unwrap().repo, "acme/widgets");
    let text = oxi::commands::render_config_for_tests("docs/plan.md", "trunk", None);
    let config = oxi::config::parse(&text, "oxi.toml").unwrap();
    assert_eq!(config.project.base_branch, "trunk");
    assert!(config.github.is_none());
}
