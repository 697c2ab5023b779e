//! `oxi eval` (docs/eval.md): the shipped golden and hostile suites with the offline worker,
//! the ambiguous bootstrap three times in a row, the report's shapes (times normalized), the
//! exit code of a missed expectation, and case files that are wrong.

use std::path::Path;

use serde_json::Value;

use crate::support::{Sandbox, fixture};

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A sandbox holding the shipped suite `name` as `./<name>` (so the report names it so).
fn with_suite(name: &str) -> Sandbox {
    let s = Sandbox::empty();
    copy_tree(&fixture(&format!("eval/{name}")), &s.file(name));
    s
}

/// Times vary run to run: every figure under a `*_ms` key becomes 0.
fn normalize(value: &mut Value, timed: bool) {
    match value {
        Value::Number(_) if timed => *value = Value::from(0),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                normalize(
                    v,
                    timed || key.ends_with("_ms") || key == "verify_ms_per_tier",
                );
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| normalize(v, timed)),
        _ => {}
    }
}

fn case<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no case {name}: {report:#}"))
}

#[test]
fn the_golden_suite_passes_twice_and_its_report_is_stable() {
    let s = with_suite("golden");
    let out = s.oxi(&["eval", "golden", "--repeat", "2", "--format", "json"]);
    out.ok();
    let mut report = out.json();
    assert_eq!(report["total"]["cases_passed"], 4, "{report:#}");
    // Every repeat verified the same way, and the bootstrap's planner named the same files.
    for name in [
        "add-file",
        "fix-failing-test",
        "two-step",
        "ambiguous-bootstrap",
    ] {
        assert_eq!(case(&report, name)["test_outcome_variance"], 0.0, "{name}");
    }
    assert_eq!(
        case(&report, "ambiguous-bootstrap")["planned_path_variance"],
        0.0
    );
    // The failing test took a retry that carried its output; the others none.
    assert_eq!(case(&report, "fix-failing-test")["retries"], 2);
    assert!(
        report["total"]["verify_ms_per_tier"]["tier0"]["p90"]
            .as_f64()
            .is_some()
    );
    normalize(&mut report, false);
    insta::assert_json_snapshot!("eval_golden_json", report);

    let out = s.oxi(&["eval", "golden"]);
    let text = regex::Regex::new(r"\d+\.\d s")
        .unwrap()
        .replace_all(out.ok(), "[t]")
        .into_owned();
    insta::assert_snapshot!("eval_golden_markdown", text);
}

#[test]
fn the_ambiguous_bootstrap_goes_explore_plan_build_verify_three_times_in_a_row() {
    let s = Sandbox::empty();
    let golden = fixture("eval/golden");
    std::fs::create_dir_all(s.file("boot")).unwrap();
    std::fs::copy(golden.join("oxi.toml"), s.file("boot/oxi.toml")).unwrap();
    copy_tree(
        &golden.join("ambiguous-bootstrap"),
        &s.file("boot/ambiguous-bootstrap"),
    );
    let out = s.oxi(&["eval", "boot", "--repeat", "3", "--format", "json"]);
    out.ok();
    let report = out.json();
    let boot = case(&report, "ambiguous-bootstrap");
    assert_eq!(boot["repeats_passed"], 3, "{report:#}");
    // A planner and an executor each time; the plan agreed every time.
    assert_eq!(boot["worker_calls_per_task"]["p90"], 2.0, "{report:#}");
    assert_eq!(boot["planned_path_variance"], 0.0);
    assert_eq!(
        boot["endings"],
        serde_json::json!(["T0-1=delivered", "T0-1=delivered", "T0-1=delivered"])
    );
}

#[test]
fn the_hostile_suite_ends_each_case_the_way_the_guards_make_it_end() {
    let s = with_suite("hostile");
    let out = s.oxi(&["eval", "hostile", "--format", "json"]);
    out.ok();
    let report = out.json();
    let ending = |name: &str| {
        case(&report, name)["endings"][0]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        ending("protected-path"),
        "T0-1=framework_fix_needed(governance)"
    );
    assert_eq!(ending("leak-secret"), "T0-1=failed(secret_in_diff)");
    assert_eq!(ending("call-cap-loop"), "T0-1=failed(verify_failed)");
    assert_eq!(
        case(&report, "call-cap-loop")["worker_calls_per_task"]["p50"],
        3.0
    );
    assert_eq!(ending("output-flood"), "T0-1=failed(output_capped)");
    assert_eq!(ending("prompt-injection"), "T0-1=held");
    let escape = ending("escape-worktree");
    assert!(
        ["T0-1=delivered", "T0-1=framework_fix_needed(governance)"].contains(&escape.as_str()),
        "{escape}"
    );
    assert_eq!(report["total"]["cases_passed"], 6, "{report:#}");
}

/// A suite of one case, written here, with the golden suite's config.
fn one_case(case_toml: &str) -> Sandbox {
    let s = Sandbox::empty();
    std::fs::create_dir_all(s.file("suite/only")).unwrap();
    std::fs::copy(fixture("eval/golden/oxi.toml"), s.file("suite/oxi.toml")).unwrap();
    s.write("suite/only/case.toml", case_toml);
    s
}

const GREET: &str = "roadmap = \"\"\"\n**T0-1 · Greet**\nCreate `hello.txt` saying hi.\n\"\"\"\n";

#[test]
fn a_case_that_misses_its_expectation_exits_nonzero_and_says_what_missed() {
    let s = one_case(&format!(
        "{GREET}\n[fake]\nexecutor = \"fail\"\n\n[config.caps]\nmax_attempts = 1\n\n[expect]\nending = \"delivered\"\nfiles = [\"hello.txt\"]\n"
    ));
    let out = s.oxi(&["eval", "suite"]);
    out.fails_with(7);
    assert!(out.stdout.contains("| only | MISS 0/1 |"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("- only, repeat 1: T0-1 ended failed (worker_error), expected delivered"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("- only, repeat 1: no delivered branch holds hello.txt"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_wrong_case_file_names_the_file_line_and_key() {
    let s = one_case(&format!(
        "{GREET}\n[expect]\nending = \"delivered\"\nfles = [\"hello.txt\"]\n"
    ));
    let err = s.oxi(&["eval", "suite"]).fails_with(1).to_owned();
    assert!(
        err.contains("suite/only/case.toml:8: fles: unknown field `fles`"),
        "{err}"
    );

    let s = one_case(&format!("{GREET}\n[expect]\nending = \"merged\"\n"));
    let err = s.oxi(&["eval", "suite"]).fails_with(1).to_owned();
    assert!(err.contains("suite/only/case.toml:7: expect.ending: \"merged\" is not an ending; use one of delivered, framework_fix_needed, held, failed"), "{err}");

    let s = one_case("roadmap = \"no item here\"\n\n[expect]\nending = \"held\"\n");
    let err = s.oxi(&["eval", "suite"]).fails_with(1).to_owned();
    assert!(
        err.contains("suite/only/case.toml:1: roadmap:") && err.contains("no roadmap items found"),
        "{err}"
    );

    let s = one_case(&format!(
        "{GREET}\n[expect]\nending = \"failed\"\nnever_contains = [\"abc\"]\n"
    ));
    let err = s.oxi(&["eval", "suite"]).fails_with(1).to_owned();
    assert!(
        err.contains("suite/only/case.toml:8: expect.never_contains: \"abc\" is shorter"),
        "{err}"
    );
}

#[test]
fn a_suite_without_cases_or_config_and_an_unknown_worker_are_refused_with_the_fix() {
    let s = Sandbox::empty();
    std::fs::create_dir_all(s.file("nothing")).unwrap();
    let err = s.oxi(&["eval", "nothing"]).fails_with(1).to_owned();
    assert!(err.contains("holds no case"), "{err}");

    let s = one_case(&format!("{GREET}\n[expect]\nending = \"delivered\"\n"));
    std::fs::remove_file(s.file("suite/oxi.toml")).unwrap();
    let err = s.oxi(&["eval", "suite"]).fails_with(1).to_owned();
    assert!(
        err.contains("has no oxi.toml") && err.contains("--config FILE"),
        "{err}"
    );
    // --config supplies it instead.
    let cfg = fixture("eval/golden/oxi.toml");
    s.oxi(&["--config", cfg.to_str().unwrap(), "eval", "suite"])
        .ok();

    let err = s
        .oxi(&[
            "--config",
            cfg.to_str().unwrap(),
            "eval",
            "suite",
            "--worker",
            "nobody",
        ])
        .fails_with(1)
        .to_owned();
    assert!(
        err.contains("--worker nobody: the config has no [workers.nobody]"),
        "{err}"
    );
}
