//! GitHub issues as a task source, end to end: the fake GitHub on 127.0.0.1 serving issues
//! (paginated, pull requests among them), real `oxi ingest` / `oxi tick` processes, and the
//! fake worker. Release mode's comment on the issue, fast mode's silence, and the bad answers:
//! a 1 MiB body, tier labels out of range, dependencies that are not tasks, labels that change
//! while a run is in flight, and GitHub failing the list call.

use std::time::{Duration, Instant};

use oxi::ledger::{Ledger, TaskState};
use oxi_testkit::fake_github::{FakeGithub, Fault};
use serde_json::Value;

use crate::support::{OxiToml, Sandbox, Worker, git};

const TOKEN: &str = "ghp_faketokenforissues0000000000000000";
const REPO: &str = "acme/widgets";
const ROADMAP: &str = "# Roadmap\n\n## Tier 1\n\n**T1-1 · Write the notes**\nCreate `notes.md`.\n";

struct World {
    s: Sandbox,
    _bare_dir: tempfile::TempDir,
    github: FakeGithub,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

/// A repository with `origin`, the fake GitHub, and `[sources.github_issues] labels = ["oxi"]`
/// (`sources` is appended to that table). `roadmap`: the roadmap file, if any.
async fn world(mode: &str, worker: Worker, roadmap: Option<&str>, sources: &str) -> World {
    let s = Sandbox::git_repo();
    let bare_dir = tempfile::tempdir().unwrap();
    let bare = bare_dir.path().join("origin.git");
    git(
        bare_dir.path(),
        &["init", "-q", "--bare", "-b", "main", "origin.git"],
    );
    if let Some(roadmap) = roadmap {
        s.write("roadmap.md", roadmap);
    }
    s.write(".gitignore", ".oxi/\n");
    let github = FakeGithub::start(REPO, TOKEN, bare.clone()).await.unwrap();
    s.config(
        &OxiToml::new()
            .raw("[project]\nbase_branch = \"main\"\n")
            .raw(&format!("[run]\nmode = \"{mode}\"\n"))
            .worker(worker)
            .routing(&["fake"], &["fake"])
            .raw("[verify]\ntier0 = [{ name = \"says hi\", argv = [\"grep\", \"-qix\", \"hi\", \"hello.txt\"], timeout = \"30s\" }]\n")
            .raw(&format!(
                "[github]\nrepo = \"{REPO}\"\napi_url = \"{}\"\ntoken_env = \"OXI_TEST_GH_TOKEN\"\nmax_rate_limit_wait = \"20s\"\nretry_backoff = \"20ms\"\n",
                github.url()
            ))
            .raw(&format!("[sources.github_issues]\nlabels = [\"oxi\"]\n{sources}\n")),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "oxi setup"]);
    git(
        s.path(),
        &["remote", "add", "origin", bare.to_str().unwrap()],
    );
    git(s.path(), &["push", "-q", "origin", "main"]);
    World {
        s,
        _bare_dir: bare_dir,
        github,
    }
}

impl World {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_oxi"));
        command
            .args(args)
            .current_dir(self.s.path())
            .env("NO_COLOR", "1")
            .env("OXI_TEST_GH_TOKEN", TOKEN)
            .env_remove("GITHUB_TOKEN")
            .env_remove("GH_TOKEN")
            .env_remove("OXI_RUN_MODE")
            .env_remove("OXI_CONFIG");
        command
    }

    async fn oxi(&self, args: &[&str]) -> Out {
        let out = self.command(args).output().await.unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `oxi ingest --format json`, which must succeed.
    async fn ingest(&self) -> Value {
        let out = self.oxi(&["ingest", "--format", "json"]).await;
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        out.json()
    }

    async fn tick(&self) -> Value {
        let out = self.oxi(&["tick", "--format", "json"]).await;
        assert!(
            out.code == 0 || out.code == oxi::exit::TASK_FAILURES,
            "tick exit {}:\n{}\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        out.json()
    }

    fn ledger(&self) -> Ledger {
        Ledger::open_existing(&self.s.file(".oxi/ledger.db")).unwrap()
    }

    fn task(&self, id: &str) -> Option<oxi::ledger::TaskRow> {
        self.ledger().read().task(id).unwrap()
    }

    fn state(&self, id: &str) -> TaskState {
        self.task(id)
            .unwrap_or_else(|| panic!("no task {id}"))
            .state
    }

    fn events(&self, kind: &str) -> Vec<(Option<String>, Value)> {
        let mut ledger = self.ledger();
        let conn = ledger.raw_connection();
        let mut stmt = conn
            .prepare("SELECT task_id, data FROM events WHERE kind = ?1 ORDER BY id")
            .unwrap();
        stmt.query_map([kind], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, String>(1)?))
        })
        .unwrap()
        .map(|row| {
            let (task, data) = row.unwrap();
            (task, serde_json::from_str(&data).unwrap())
        })
        .collect()
    }
}

fn ids(summary: &Value, key: &str) -> Vec<String> {
    summary[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {summary:#}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_issues_become_tasks_beside_the_roadmap_and_a_resync_changes_nothing() {
    let w = world("fast", Worker::fake("fake"), Some(ROADMAP), "").await;
    let issues = w.github.issues();
    issues.add(
        101,
        "Greet the reader",
        "Create `hello.txt` saying hi.\n\nDepends on #102.\n",
        &["oxi", "tier-0"],
    );
    issues.add(102, "Write the farewell", "Add `bye.txt`.", &["oxi"]);
    issues.add(103, "Not for oxi", "no label", &["bug"]);
    issues.add_pull_request_item(104, "A pull request with the label", &["oxi"]);
    // One item per page: the sync must follow every `Link: rel="next"`.
    w.github.set_page_size(1);

    let first = w.ingest().await;
    assert_eq!(
        ids(&first, "added"),
        ["T1-1"],
        "the roadmap is ingested too"
    );
    let synced = &first["issues"];
    assert_eq!(synced["result"], "synced", "{first:#}");
    assert_eq!(synced["issues"], 2);
    assert_eq!(synced["pull_requests_skipped"], 1);
    let mut added = ids(synced, "added");
    added.sort();
    assert_eq!(added, ["GH-101", "GH-102"]);

    let task = w.task("GH-101").unwrap();
    assert_eq!(task.state, TaskState::Queued);
    assert_eq!(task.spec.title, "Greet the reader");
    assert_eq!(task.spec.priority_tier, 0, "from the tier-0 label");
    assert!(task.spec.body.contains("Create `hello.txt` saying hi."));
    assert_eq!(task.spec.depends_on, ["GH-102"]);
    assert_eq!(task.spec.file_hints, ["hello.txt"]);
    assert_eq!(
        w.task("GH-102").unwrap().spec.priority_tier,
        1,
        "the default tier"
    );
    assert!(w.task("GH-103").is_none() && w.task("GH-104").is_none());
    let ledger = w.ledger();
    assert!(ledger.read().is_outside_text("GH-101").unwrap());
    assert!(!ledger.read().is_outside_text("T1-1").unwrap());
    let link = ledger.read().issue_link("GH-101").unwrap().unwrap();
    assert_eq!(link.url, "https://github.com/acme/widgets/issues/101");

    // The same issues again: nothing changes (and the roadmap ingest leaves issue tasks alone).
    let again = w.ingest().await;
    assert!(ids(&again, "abandoned").is_empty(), "{again:#}");
    let synced = &again["issues"];
    for key in ["added", "updated", "reopened", "cancelled", "abandoned"] {
        assert!(ids(synced, key).is_empty(), "{key}: {again:#}");
    }
    assert_eq!(synced["unchanged"], 2);

    // A changed tier label rewrites the waiting task.
    issues.set_labels(102, &["oxi", "tier-2"]);
    let changed = w.ingest().await;
    assert_eq!(ids(&changed["issues"], "updated"), ["GH-102"]);
    assert_eq!(w.task("GH-102").unwrap().spec.priority_tier, 2);

    // `oxi tasks` and `oxi show` name the source.
    let tasks = w.oxi(&["tasks"]).await;
    insta::assert_snapshot!("issue_tasks_table", tasks.stdout);
    assert!(tasks.stdout.contains("SOURCE"), "{}", tasks.stdout);
    assert!(
        tasks
            .stdout
            .contains("https://github.com/acme/widgets/issues/102"),
        "{}",
        tasks.stdout
    );
    let json = w.oxi(&["tasks", "--format", "json"]).await.json();
    let sources: Vec<(&str, &str)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["source"].as_str().unwrap()))
        .collect();
    assert!(sources.contains(&("T1-1", "roadmap")), "{sources:?}");
    assert!(sources.contains(&("GH-101", "github_issue")), "{sources:?}");
    let show = w.oxi(&["show", "GH-101"]).await;
    assert!(
        show.stdout.contains(
            "source: GitHub issue #101 https://github.com/acme/widgets/issues/101 (outside text)"
        ),
        "{}",
        show.stdout
    );

    // Fast mode reads issues but writes nothing back, even after a tick ran a task.
    let tick = w.tick().await;
    assert_eq!(tick["issues"]["result"], "synced", "{tick:#}");
    assert!(w.github.writes().is_empty(), "{:?}", w.github.writes());
    assert!(issues.comments(101).is_empty() && issues.comments(102).is_empty());
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_cancels_unlabelling_abandons_and_both_come_back() {
    let w = world("fast", Worker::fake("fake"), None, "").await;
    let issues = w.github.issues();
    issues.add(201, "First", "Do the first thing.", &["oxi"]);
    issues.add(202, "Second", "Do the second thing.", &["oxi"]);
    let first = w.ingest().await;
    assert!(
        first["roadmap"].as_str().unwrap().contains("(absent)"),
        "issues alone may feed the queue: {first:#}"
    );

    issues.close(201);
    issues.set_labels(202, &["wontfix"]);
    issues.add(203, "Third", "Depends on #999.", &["oxi", "tier-x"]);
    // What a person reads: cancelled, abandoned, added, and the warnings.
    let text = w.oxi(&["ingest"]).await;
    assert_eq!(text.code, 0, "{}", text.stderr);
    insta::assert_snapshot!("issue_ingest_text", text.stdout);
    assert_eq!(w.state("GH-201"), TaskState::Cancelled);
    assert_eq!(w.state("GH-202"), TaskState::Abandoned);
    assert_eq!(w.state("GH-203"), TaskState::Queued);
    // Gone issues are looked up once; afterwards nothing changes and nothing is asked again.
    let lookups = |w: &World| {
        w.github
            .requests()
            .iter()
            .filter(|r| r.path.ends_with("/issues/201") || r.path.ends_with("/issues/202"))
            .count()
    };
    let before = lookups(&w);
    let again = w.ingest().await;
    assert!(ids(&again["issues"], "cancelled").is_empty(), "{again:#}");
    assert_eq!(
        lookups(&w),
        before,
        "a gone issue is not fetched on every sync"
    );

    issues.reopen(201);
    issues.set_labels(202, &["oxi"]);
    let back = w.ingest().await;
    let mut reopened = ids(&back["issues"], "reopened");
    reopened.sort();
    assert_eq!(reopened, ["GH-201", "GH-202"]);
    assert_eq!(w.state("GH-201"), TaskState::Queued);
    assert_eq!(w.state("GH-202"), TaskState::Queued);

    // An operator's cancel of a still-labelled issue's task stands.
    let cancel = w.oxi(&["cancel", "GH-202"]).await;
    assert_eq!(cancel.code, 0, "{}\n{}", cancel.stdout, cancel.stderr);
    w.ingest().await;
    assert_eq!(w.state("GH-202"), TaskState::Cancelled);

    // A deleted issue (410) counts as closed.
    issues.delete(201);
    let deleted = w.ingest().await;
    assert_eq!(
        ids(&deleted["issues"], "cancelled"),
        ["GH-201"],
        "{deleted:#}"
    );

    // A roadmap item that reuses an issue task's id is skipped by the roadmap ingest.
    w.s.write(
        "roadmap.md",
        "# Roadmap\n\n**GH-203 · Not the issue**\nWrite `x.md`.\n\n**T1-1 · Notes**\nWrite `notes.md`.\n",
    );
    let mixed = w.ingest().await;
    assert_eq!(ids(&mixed, "added"), ["T1-1"], "{mixed:#}");
    assert!(
        mixed["warnings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("GH-203 is the id of a task made from a GitHub issue"),
        "{mixed:#}"
    );
    assert_eq!(w.task("GH-203").unwrap().spec.title, "Third");
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_issues_and_github_errors_never_fail_the_sync_or_lose_what_is_recorded() {
    let roadmap = format!(
        "{ROADMAP}\n**GH-7 · A roadmap item named like an issue task**\nWrite `seven.md`.\n"
    );
    let w = world("fast", Worker::fake("fake"), Some(&roadmap), "").await;
    let issues = w.github.issues();
    issues.add(
        7,
        "Issue seven",
        "Its id is taken by the roadmap.",
        &["oxi"],
    );
    let huge = format!("Start `src/big.rs`.\n{}", "x".repeat(1024 * 1024));
    issues.add(301, "Huge body", &huge, &["oxi"]);
    issues.add(
        302,
        "Odd tier",
        "Depends on #303 and #555 and #306.",
        &["oxi", "tier-300"],
    );
    issues.add(303, "Closed dependency", "", &["docs"]);
    issues.close(303);
    issues.add(306, "Open elsewhere", "", &["docs"]);

    let synced = w.ingest().await;
    let summary = &synced["issues"];
    assert_eq!(summary["result"], "synced", "{synced:#}");
    let collision = summary["warnings"].as_array().unwrap();
    assert!(
        collision.iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with("#7: GH-7 is already a roadmap item's id")),
        "{synced:#}"
    );
    let seven = w.task("GH-7").unwrap();
    assert_ne!(
        seven.spec.format, "github_issue",
        "the roadmap's item stays"
    );
    assert_eq!(seven.spec.title, "A roadmap item named like an issue task");
    let big = w.task("GH-301").unwrap();
    assert!(big.spec.body.len() < 70 * 1024, "{}", big.spec.body.len());
    assert!(
        big.spec
            .body
            .contains("[oxi: truncated: the issue body is 1048596 bytes"),
        "{}",
        &big.spec.body[big.spec.body.len() - 200..]
    );
    assert_eq!(big.spec.file_hints, ["src/big.rs"]);
    let odd = w.task("GH-302").unwrap();
    assert_eq!(
        odd.spec.priority_tier, 1,
        "tier-300 is out of range: the default"
    );
    assert_eq!(
        odd.spec.depends_on,
        ["GH-306"],
        "#303 is closed (met), #555 does not exist, #306 is open: waited for"
    );
    let warnings: Vec<String> = w
        .events("issue_warning")
        .iter()
        .map(|(_, d)| format!("#{}: {}", d["number"], d["message"].as_str().unwrap()))
        .collect();
    for needle in [
        "#301: the issue body is 1048596 bytes",
        "#302: label \"tier-300\" names no priority tier",
        "#302: depends on #303, which is closed",
        "#302: depends on #555, which does not exist",
        "#302: depends on #306, which is open but not an oxi task",
    ] {
        assert!(
            warnings.iter().any(|w| w.starts_with(needle)),
            "no warning {needle:?} in {warnings:#?}"
        );
    }
    // `oxi tasks` says why GH-302 waits.
    let tasks = w.oxi(&["tasks", "--format", "json"]).await.json();
    let waiting = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "GH-302")
        .unwrap();
    assert!(
        waiting["reason"].as_str().unwrap_or("").contains("GH-306"),
        "{waiting:#}"
    );

    // GitHub fails the list call: recorded with status and message; the roadmap still syncs;
    // the issue tasks stay as they were.
    w.github.add_fault(Fault {
        method: Some("GET".into()),
        path_contains: "/issues".into(),
        status: 422,
        headers: Vec::new(),
        body: serde_json::json!({ "message": "Validation Failed", "errors": [{ "resource": "Issue", "field": "labels", "code": "invalid" }] }),
        times: 1,
    });
    w.s.write(
        "roadmap.md",
        format!("{roadmap}\n**T1-2 · Write more notes**\nCreate `more.md`.\n"),
    );
    let failed = w.ingest().await;
    assert_eq!(ids(&failed, "added"), ["T1-2"], "{failed:#}");
    assert_eq!(failed["issues"]["result"], "failed");
    assert_eq!(failed["issues"]["status"], 422);
    assert!(
        failed["issues"]["message"]
            .as_str()
            .unwrap()
            .contains("Validation Failed"),
        "{failed:#}"
    );
    let recorded = w.events("issue_sync_failed");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].1["status"], 422);
    assert_eq!(w.state("GH-301"), TaskState::Queued);
    assert_eq!(w.state("GH-302"), TaskState::Queued);

    // A tick goes on when GitHub answers 500 to every try.
    w.github
        .add_fault(Fault::status(Some("GET"), "/issues", 500, 4));
    let tick = w.oxi(&["tick", "--format", "json"]).await;
    let report = tick.json();
    assert_eq!(report["issues"]["result"], "failed", "{report:#}");
    assert_eq!(report["issues"]["status"], 500);
    assert_eq!(
        w.state("GH-301"),
        TaskState::Queued,
        "nothing recorded is lost"
    );
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlabelled_while_in_flight_waits_for_the_run_then_is_abandoned() {
    let w = world("fast", Worker::fake("fake").scenario("hang"), None, "").await;
    w.github
        .issues()
        .add(401, "Hang", "Create `hello.txt`.", &["oxi"]);
    w.ingest().await;
    let mut tick = w.command(&["tick"]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while w.state("GH-401") != TaskState::Dispatched {
        assert!(Instant::now() < deadline, "GH-401 never dispatched");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The tick dies with its run in flight; the task stays dispatched until a tick reaps it.
    tick.kill().await.unwrap();
    w.github.issues().set_labels(401, &[]);
    let synced = w.ingest().await;
    assert_eq!(ids(&synced["issues"], "in_flight_untouched"), ["GH-401"]);
    assert_eq!(w.state("GH-401"), TaskState::Dispatched);
    assert_eq!(w.events("task_removed_in_flight").len(), 1);
    w.ingest().await;
    assert_eq!(
        w.events("task_removed_in_flight").len(),
        1,
        "recorded once, when the issue left"
    );

    // The next tick reaps the run, and its issue sync then abandons the waiting task.
    let report = w.tick().await;
    assert_eq!(report["reaped"][0]["task_id"], "GH-401", "{report:#}");
    assert_eq!(w.state("GH-401"), TaskState::Abandoned, "{report:#}");
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_mode_says_closes_and_keeps_one_comment_that_follows_the_task() {
    let w = world("release", Worker::fake("fake").scenario("edit"), None, "").await;
    let issues = w.github.issues();
    issues.add(
        501,
        "Add a greeting file",
        "Create `hello.txt` saying hi.",
        &["oxi", "tier-0"],
    );
    let report = w.tick().await;
    assert_eq!(w.state("GH-501"), TaskState::Delivered, "{report:#}");
    let pulls = w.github.pulls();
    assert_eq!(pulls.len(), 1);
    let body = pulls[0]["body"].as_str().unwrap();
    assert!(body.contains("Closes #501"), "{body}");
    let number = pulls[0]["number"].as_u64().unwrap();

    let comments = issues.comments(501);
    assert_eq!(comments.len(), 1, "{comments:?}");
    let first = &comments[0];
    assert!(first.body.contains("task `GH-501`"), "{}", first.body);
    assert!(first.body.contains("pull request opened"), "{}", first.body);
    assert!(
        first
            .body
            .contains(&format!("https://github.com/{REPO}/pull/{number}")),
        "{}",
        first.body
    );

    // Nothing moved: the comment is not sent again.
    w.tick().await;
    assert_eq!(issues.comments(501)[0].edits, 0);

    // A maintainer merges: the same comment is edited, no second one.
    w.github.set_pull_state(number, true);
    w.tick().await;
    let comments = issues.comments(501);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert_eq!(comments[0].id, first.id);
    assert!(comments[0].edits >= 1);
    assert!(
        comments[0].body.contains("**Status:** merged"),
        "{}",
        comments[0].body
    );
    let written = w.events("issue_comment_written");
    assert_eq!(written[0].1["created"], true);
    assert!(written[1..].iter().all(|(_, d)| d["created"] == false));
    // The merged pull request closed the issue (`Closes #501`): the done task stays done.
    issues.close(501);
    w.tick().await;
    assert!(w.state("GH-501").satisfies_dependents());
    assert_eq!(issues.comments(501).len(), 1);
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_milestone_and_assignee_filters_narrow_the_issues() {
    let w = world(
        "fast",
        Worker::fake("fake"),
        None,
        "milestone = 3\nassignee = \"octocat\"",
    )
    .await;
    let issues = w.github.issues();
    for n in [601, 602, 603] {
        issues.add(n, "Filtered", "Some work.", &["oxi"]);
    }
    issues.set_milestone(601, Some(3));
    issues.set_assignee(601, Some("octocat"));
    issues.set_milestone(602, Some(3));
    issues.set_assignee(603, Some("octocat"));
    let synced = w.ingest().await;
    assert_eq!(ids(&synced["issues"], "added"), ["GH-601"], "{synced:#}");
    let list = w
        .github
        .requests()
        .into_iter()
        .find(|r| r.path == format!("/repos/{REPO}/issues"))
        .unwrap();
    for param in [
        "state=open",
        "labels=oxi",
        "milestone=3",
        "assignee=octocat",
        "per_page=100",
    ] {
        assert!(list.query.contains(param), "{}", list.query);
    }
    // Moved out of the milestone: the waiting task is abandoned, as for a removed label.
    issues.set_milestone(601, None);
    let synced = w.ingest().await;
    assert_eq!(
        ids(&synced["issues"], "abandoned"),
        ["GH-601"],
        "{synced:#}"
    );
    w.github.shutdown().await;
}

#[test]
fn a_source_without_a_github_table_or_labels_is_a_config_error_naming_the_key() {
    let s = Sandbox::initialised(ROADMAP);
    s.write(
        "oxi.toml",
        format!(
            "{}\n[sources.github_issues]\nlabels = []\n",
            s.read("oxi.toml")
        ),
    );
    let out = s.oxi(&["tasks"]);
    let err = out.fails_with(3);
    assert!(err.contains("sources.github_issues.labels"), "{err}");
    assert!(err.contains("[github]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturate_syncs_the_issues_and_runs_them() {
    let w = world("fast", Worker::fake("fake").scenario("edit"), None, "").await;
    let issues = w.github.issues();
    issues.add(
        801,
        "Add a greeting file",
        "Create `hello.txt` saying hi.",
        &["oxi", "tier-0"],
    );
    issues.add(802, "Not for oxi", "Create `other.txt`.", &["question"]);
    let out = w.oxi(&["saturate", "--until-empty"]).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // The sync ran inside saturate (its first pass), and the issue's task ran to delivery.
    assert!(
        w.github
            .requests()
            .iter()
            .any(|r| r.path == format!("/repos/{REPO}/issues")),
        "saturate never listed the issues: {:?}",
        w.github.requests()
    );
    assert_eq!(w.state("GH-801"), TaskState::Delivered, "{}", out.stderr);
    assert!(w.task("GH-802").is_none(), "an issue without the label");
    let added = w.events("task_added");
    assert!(
        added
            .iter()
            .any(|(task, _)| task.as_deref() == Some("GH-801")),
        "{added:?}"
    );
    // Fast mode reads issues but writes nothing back.
    assert_eq!(w.github.writes(), vec![], "fast mode wrote to GitHub");
    w.github.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_token_can_read_the_issues_and_names_the_permission() {
    let w = world("release", Worker::fake("fake"), None, "").await;
    w.github.issues().add(901, "Something", "Do it.", &["oxi"]);
    let row = |out: &Out| -> Value {
        out.json()["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "github issues")
            .cloned()
            .unwrap_or_else(|| panic!("no `github issues` check:\n{}", out.stdout))
    };
    let out = w.oxi(&["doctor", "--format", "json"]).await;
    let ok = row(&out);
    assert_eq!(ok["status"], "ok", "{ok:#}");
    let detail = ok["detail"].as_str().unwrap();
    assert!(
        detail.contains("1 open issue(s)") && detail.contains("issue write access"),
        "{detail}"
    );
    // A token that can push but lacks the issues permission (GitHub's answer to a fine-grained
    // token without it).
    w.github.add_fault(Fault::refused(
        Some("GET"),
        "/issues",
        403,
        "Resource not accessible by personal access token",
        1,
    ));
    let out = w.oxi(&["doctor", "--format", "json"]).await;
    assert_eq!(out.code, 1, "{}", out.stdout);
    let failed = row(&out);
    assert_eq!(failed["status"], "fail", "{failed:#}");
    assert!(
        failed["detail"]
            .as_str()
            .unwrap()
            .contains("Resource not accessible by personal access token"),
        "{failed:#}"
    );
    let fix = failed["fix"].as_str().unwrap();
    assert!(
        fix.contains("\"Issues: Read and write\"") && fix.contains("`repo` scope"),
        "{fix}"
    );
    w.github.shutdown().await;
}
