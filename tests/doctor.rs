//! `oxi doctor` on healthy and broken setups: each check's verdict and the fix it prints.

use oxi_testkit::fake_github::FakeGithub;

use crate::support::{FAKE, OxiToml, Sandbox, Worker, git};

fn setup(workers: &[Worker], extra: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", "- [ ] something\n");
    s.write(".gitignore", ".oxi/\n");
    let toml = workers
        .iter()
        .fold(OxiToml::new(), |toml, w| toml.worker(w.clone()));
    s.config(
        &toml
            .routing(&["fake"], &["fake"])
            .raw(&format!("{extra}\n")),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "setup"]);
    // A broken config cannot ingest; doctor must still report on it.
    let _ = s.oxi(&["ingest"]);
    s
}

fn fake_worker(version: &str) -> Worker {
    Worker::fake("fake").version(version)
}

/// (check, status, fix) with the sandbox's paths replaced, for snapshots.
fn verdicts(s: &Sandbox, json: &serde_json::Value) -> Vec<(String, String, String)> {
    let root = s.path().display().to_string();
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] != "space for worktrees")
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
                c["fix"]
                    .as_str()
                    .unwrap_or("")
                    .replace(&root, "<repo>")
                    .replace(FAKE, "<fake>"),
            )
        })
        .collect()
}

#[test]
fn a_healthy_setup_passes() {
    let s = setup(
        &[fake_worker("2.1.328 (Claude Code)")],
        "[verify]\ntier0 = [{ name = \"unit\", argv = [\"true\"] }]",
    );
    let out = s.oxi(&["doctor", "--format", "json"]);
    out.ok();
    let json = out.json();
    assert_eq!(json["failed"], 0, "{json:#}");
    // Two checks judge the host, not the setup: free disk and whether the kernel offers
    // Landlock. A CI machine may warn on either; every other check must be clean.
    let host_checks = ["space for worktrees", "worker confinement"];
    let warned: Vec<&str> = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(|c| c["name"].as_str().unwrap())
        .filter(|name| !host_checks.contains(name))
        .collect();
    assert!(warned.is_empty(), "warned: {warned:?}\n{json:#}");
    for name in host_checks {
        assert!(
            json["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == name),
            "no {name:?} check: {json:#}"
        );
    }
}

#[test]
fn broken_setups_fail_with_the_fix() {
    let workers = [
        fake_worker("2.0.1 (Claude Code)"),
        Worker::codex("gone", "/nonexistent/codex")
            .model("gpt-5.5")
            .env("OXI_DOCTOR_MISSING_KEY"),
    ];
    let s = setup(
        &workers,
        "[verify]\ntier0 = [{ name = \"unit\", argv = [\"no-such-test-runner\"] }]",
    );
    s.write("stray.txt", "uncommitted");
    let out = s.oxi(&["doctor", "--format", "json"]);
    assert_eq!(out.code, 1);
    insta::assert_json_snapshot!("doctor_broken", verdicts(&s, &out.json()));
    let table = s.oxi(&["doctor"]);
    assert!(
        table.stdout.contains("FAIL") && table.stdout.contains("fix verify.tier0 unit"),
        "{}",
        table.stdout
    );

    // Contradicting caps: the config check itself fails, naming file, line and key.
    let s = setup(
        &[fake_worker("2.1.328")],
        "[caps]\njob_usd = 50.0\ndaily_usd = 20.0\n",
    );
    let out = s.oxi(&["doctor", "--format", "json"]);
    assert_eq!(out.code, 1);
    let detail = out.json()["checks"][0]["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        detail.contains("oxi.toml:") && detail.contains("caps.job_usd"),
        "{detail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_github_token_fails_in_release_mode() {
    let bare = tempfile::tempdir().unwrap();
    git(
        bare.path(),
        &["init", "-q", "--bare", "-b", "main", "origin.git"],
    );
    let github = FakeGithub::start(
        "acme/widgets",
        "ghp_goodtoken000000000000000000000000000",
        bare.path().join("origin.git"),
    )
    .await
    .unwrap();
    let s = setup(
        &[fake_worker("2.1.328")],
        &format!(
            "[run]\nmode = \"release\"\n\n[github]\nrepo = \"acme/widgets\"\napi_url = \"{}\"\ntoken_env = \"OXI_DOCTOR_GH\"\nretry_backoff = \"10ms\"\n",
            github.url()
        ),
    );
    git(
        s.path(),
        &[
            "remote",
            "add",
            "origin",
            bare.path().join("origin.git").to_str().unwrap(),
        ],
    );
    let path = s.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_oxi"))
            .args(["doctor", "--format", "json"])
            .current_dir(path)
            .env("OXI_DOCTOR_GH", "ghp_badtoken0000000000000000000000000000")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "github token")
        .unwrap()
        .clone();
    assert_eq!(token["status"], "fail");
    assert!(token["detail"].as_str().unwrap().contains("401"), "{token}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ghp_badtoken"));
    github.shutdown().await;
}
