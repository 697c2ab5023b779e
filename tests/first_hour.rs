//! A person's first hour with oxi (issue 13, items 14 and 15): `oxi demo --keep` leaves a
//! repository to explore, skipped live-CLI tests say so without `--nocapture`, `oxi logs
//! --follow` shows a quiet live run, `oxi man` is a complete manual, `oxi saturate` says when
//! it is paused and who holds the lock, and the HTML report's charts can be read.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oxi::ledger::Ledger;

use crate::support::{OxiToml, Sandbox, Worker, git};

const OXI: &str = env!("CARGO_BIN_EXE_oxi");

/// Only stops a broken binary from hanging the suite; nothing here is a timing assertion.
const GUARD: Duration = Duration::from_secs(60);

const ROADMAP: &str =
    "# Roadmap\n\n**T0-1 · First**\nSay hello.\n\n**T0-2 · Second**\nSay hello again.\n";

/// A committed repository whose worker is `oxi-fake-worker` playing `scenario`.
fn repo(scenario: &str) -> Sandbox {
    let s = Sandbox::git_repo();
    s.write("roadmap.md", ROADMAP);
    s.write(".gitignore", ".oxi/\n");
    s.config(
        &OxiToml::new()
            .raw("[run]\nmax_parallel_jobs = 1\n")
            .worker(Worker::fake("fake").scenario(scenario))
            .routing(&["fake"], &["fake"])
            .raw("[verify]\ntier0 = [{ name = \"hello\", argv = [\"test\", \"-f\", \"hello.txt\"] }]\n")
            .raw("[caps]\nkill_grace = \"1s\"\nstall_timeout = \"30m\"\n"),
    );
    git(s.path(), &["add", "-A"]);
    git(s.path(), &["commit", "-q", "-m", "setup"]);
    s
}

/// A child `oxi` that is stopped (SIGTERM, then SIGKILL) if the test ends without waiting
/// for it, so a failing test leaves no supervisor behind.
struct Bg(Option<Child>);

impl Bg {
    fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    fn term(&self) {
        kill(Pid::from_raw(self.id() as i32), Signal::SIGTERM).unwrap();
    }

    fn finish(mut self) -> (i32, String, String) {
        finish(self.0.take().unwrap())
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn oxi_child(dir: &Path, args: &[&str]) -> Bg {
    Bg(Some(
        Command::new(OXI)
            .args(args)
            .current_dir(dir)
            .env_remove("OXI_CONFIG")
            .env_remove("OXI_RUN_MODE")
            .env("NO_COLOR", "1")
            .env("USER", "tester")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ))
}

/// Lines of a child's pipe as they come, read on a thread.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects lines until one satisfies `wanted`; panics with what came when the guard passes
/// or the pipe closes first.
fn wait_for_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, wanted: &str) {
    let deadline = Instant::now() + GUARD;
    loop {
        if seen.iter().any(|l| l.contains(wanted)) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("no line with {wanted:?} ({e:?}); got:\n{}", seen.join("\n")),
        }
    }
}

fn finish(child: Child) -> (i32, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The id of the first run that is live with a recorded process group.
fn wait_for_live_run(s: &Sandbox) -> String {
    let deadline = Instant::now() + GUARD;
    loop {
        assert!(Instant::now() < deadline, "no run went live");
        if let Ok(l) = Ledger::open_existing(&s.file(".oxi/ledger.db"))
            && let Some(run) = l
                .read()
                .running_runs()
                .unwrap()
                .into_iter()
                .find(|r| r.pgid.is_some())
        {
            return run.id;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_status(s: &Sandbox, run_id: &str) -> String {
    Ledger::open_existing(&s.file(".oxi/ledger.db"))
        .unwrap()
        .read()
        .run(run_id)
        .unwrap()
        .unwrap()
        .status
}

// ---- item 14: the first hour ----

#[test]
fn demo_keep_leaves_a_repository_to_explore_and_says_what_to_try() {
    let s = Sandbox::empty();
    // The kept directory is made under TMPDIR: here, inside the sandbox, so it is cleaned up.
    let run = s.oxi_env(
        &["demo", "--keep"],
        &[("TMPDIR", &s.path().display().to_string())],
    );
    let stdout = run.ok();
    let kept = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("kept the sample repository in "))
        .unwrap_or_else(|| panic!("no kept directory named:\n{stdout}"));
    let kept = PathBuf::from(kept.trim_end_matches(':'));
    assert!(
        kept.starts_with(s.path().canonicalize().unwrap()),
        "{stdout}"
    );
    for file in ["oxi.toml", "roadmap.md", ".git", ".oxi/ledger.db"] {
        assert!(
            kept.join(file).exists(),
            "{file} missing in {}",
            kept.display()
        );
    }
    assert!(
        stdout.contains(&format!("cd {}", kept.display())),
        "{stdout}"
    );
    for hint in [
        "status",
        "show T1-1",
        "logs T1-1",
        "git log --all --oneline",
    ] {
        assert!(stdout.contains(hint), "no hint {hint:?}:\n{stdout}");
    }
    // What it says to try works there.
    let status = Command::new(OXI)
        .args(["status", "--format", "json"])
        .current_dir(&kept)
        .env_remove("OXI_CONFIG")
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["tasks"]["delivered"], 3, "{json}");
}

#[test]
fn demo_without_keep_says_how_to_keep_it() {
    let s = Sandbox::empty();
    let run = s.oxi_env(&["demo"], &[("TMPDIR", &s.path().display().to_string())]);
    let stdout = run.ok();
    assert!(stdout.contains("oxi demo --keep"), "{stdout}");
    // Nothing is left behind in TMPDIR.
    let left: Vec<_> = std::fs::read_dir(s.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The live tests skip when the pinned CLIs are missing; that must show in a plain
/// `cargo test` (libtest captures what a passing test prints), and at the end, after the
/// summary line, how many were skipped.
#[test]
fn skipped_live_tests_say_so_without_nocapture() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "mock_model::claude_final_text_carries_oxi_result",
            "--exact",
            "--test-threads=1",
        ])
        .env("OXI_AGENT_CLI_DIR", "/nonexistent/oxi-agent-clis")
        .env_remove("CI")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    let summary = text
        .find("test result:")
        .unwrap_or_else(|| panic!("no summary:\n{text}"));
    let after = &text[summary..];
    for needle in [
        "1 live CLI test(s) skipped",
        "/nonexistent/oxi-agent-clis/node_modules/.bin/claude does not exist",
        ".ci/install-agent-clis",
        "SKIPPED live claude test mock_model::claude_final_text_carries_oxi_result",
    ] {
        assert!(
            after.contains(needle),
            "no {needle:?} after the summary:\n{text}"
        );
    }
}

// ---- item 15: logs --follow ----

/// A quiet live run (`hang`: one line, then silence): `oxi logs RUN --follow` shows the
/// transcript's header while the run is still going, and ends by itself when the run ends.
#[test]
fn logs_follow_shows_a_quiet_live_runs_header_and_ends_with_the_run() {
    let s = repo("hang");
    let tick = oxi_child(s.path(), &["tick"]);
    let run_id = wait_for_live_run(&s);
    let mut follow = oxi_child(s.path(), &["logs", &run_id, "--follow"]);
    let rx = lines_of(follow.child().stdout.take().unwrap());
    let mut seen = Vec::new();
    wait_for_line(&rx, &mut seen, &format!("# oxi run {run_id}"));
    assert_eq!(run_status(&s, &run_id), "running", "{seen:?}");

    tick.term();
    let _ = tick.finish();
    // The follower notices the end and prints the run's closing line.
    wait_for_line(&rx, &mut seen, "■ killed");
    let (code, _, stderr) = follow.finish();
    assert_eq!(code, 0, "{stderr}\n{}", seen.join("\n"));
}

/// `oxi logs TASK --follow` started before the tick claims the task waits for its first run,
/// then follows it.
#[test]
fn logs_follow_of_a_task_without_a_run_yet_waits_for_its_first_run() {
    let s = repo("hang");
    s.oxi(&["ingest"]).ok();
    let mut follow = oxi_child(s.path(), &["logs", "T0-1", "--follow"]);
    let rx = lines_of(follow.child().stdout.take().unwrap());
    let err = lines_of(follow.child().stderr.take().unwrap());
    let mut said = Vec::new();
    wait_for_line(&err, &mut said, "waiting for its first one");
    let tick = oxi_child(s.path(), &["tick"]);
    let run_id = wait_for_live_run(&s);
    let mut seen = Vec::new();
    wait_for_line(&rx, &mut seen, &format!("# oxi run {run_id}"));
    tick.term();
    let _ = tick.finish();
    wait_for_line(&rx, &mut seen, "■ killed");
    let (code, _, _) = follow.finish();
    assert_eq!(code, 0, "{}\n{}", said.join("\n"), seen.join("\n"));
}

/// The same run's first transcript line (`── session …`) while it is still going. This needs
/// the artifact writer to flush as output arrives (issue 13, item 4): the reader cannot show
/// bytes still in the writer's buffer.
#[test]
fn logs_follow_shows_a_quiet_live_runs_lines_as_they_come() {
    let s = repo("hang");
    let tick = oxi_child(s.path(), &["tick"]);
    let run_id = wait_for_live_run(&s);
    let mut follow = oxi_child(s.path(), &["logs", &run_id, "--follow"]);
    let rx = lines_of(follow.child().stdout.take().unwrap());
    let mut seen = Vec::new();
    wait_for_line(&rx, &mut seen, "── session");
    assert_eq!(run_status(&s, &run_id), "running", "{seen:?}");
    tick.term();
    let _ = tick.finish();
    drop(follow);
}

// ---- item 15: the manual ----

/// Every `name(1)` a page refers to.
fn references(page: &str) -> Vec<String> {
    let re = regex::Regex::new(r"(oxi(?:\\-[a-z]+)*)(?:\\fR)?\(1\)").unwrap();
    re.captures_iter(page)
        .map(|c| c[1].replace("\\-", "-"))
        .collect()
}

#[test]
fn man_has_exit_status_files_and_environment_and_every_page_it_names_exists() {
    let s = Sandbox::empty();
    let page = s.oxi(&["man"]).ok().to_owned();
    for section in [
        ".SH \"EXIT STATUS\"",
        ".SH FILES",
        ".SH ENVIRONMENT",
        ".SH \"SEE ALSO\"",
    ] {
        assert!(page.contains(section), "no {section}:\n{page}");
    }
    for needle in [
        "OXI_CONFIG",
        "OXI_RUN_MODE",
        "NO_COLOR",
        ".oxi/ledger.db",
        "130",
    ] {
        assert!(page.contains(needle), "no {needle}");
    }
    assert!(
        !page.contains("oxi\\-help"),
        "names a help page that is never written"
    );

    let dir = s.file("man1");
    let stdout = s
        .oxi(&["man", "--dir", &dir.display().to_string()])
        .ok()
        .to_owned();
    assert!(dir.join("oxi.1").is_file(), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(dir.join("oxi.1")).unwrap(),
        page,
        "oxi.1 is the page `oxi man` prints"
    );
    let mut named = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for name in references(&text) {
            named += 1;
            assert!(
                dir.join(format!("{name}.1")).is_file(),
                "{} names {name}(1), which was not written",
                entry.file_name().to_string_lossy()
            );
        }
    }
    assert!(named > 20, "the pages name each other ({named} references)");
    for sub in [
        "oxi-tick.1",
        "oxi-saturate.1",
        "oxi-logs.1",
        "oxi-roadmap-prune.1",
    ] {
        assert!(dir.join(sub).is_file(), "{sub} missing");
    }
    let tick = std::fs::read_to_string(dir.join("oxi-tick.1")).unwrap();
    assert!(tick.contains(".SH \"EXIT STATUS\""), "{tick}");
}

// ---- item 15: saturate ----

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn saturate_says_paused_while_the_killswitch_is_on() {
    let s = repo("edit");
    s.oxi(&["pause", "--reason", "lunch"]).ok();
    let mut child = oxi_child(s.path(), &["saturate", "--concurrency", "1"]);
    let rx = lines_of(child.child().stderr.take().unwrap());
    let mut seen = Vec::new();
    wait_for_line(&rx, &mut seen, "PAUSED");
    let line = seen.iter().find(|l| l.contains("PAUSED")).unwrap();
    assert!(
        line.contains("lunch") && line.contains("oxi resume"),
        "{line}"
    );
    child.term();
    let (code, _, _) = child.finish();
    assert_eq!(code, 0, "{}", seen.join("\n"));
    let ledger = Ledger::open_existing(&s.file(".oxi/ledger.db")).unwrap();
    assert!(ledger.read().runs_for_task("T0-1").unwrap().is_empty());
}

#[test]
fn a_second_supervisor_is_told_which_one_holds_the_lock() {
    let s = repo("edit");
    s.oxi(&["pause"]).ok();
    let mut first = oxi_child(s.path(), &["saturate", "--concurrency", "1"]);
    let rx = lines_of(first.child().stderr.take().unwrap());
    let mut seen = Vec::new();
    wait_for_line(&rx, &mut seen, "oxi saturate: 1 slot(s)");
    let pid = first.id().to_string();
    let expect = |who: &str, text: &str| {
        for needle in [
            format!("pid {pid}"),
            hostname(),
            "started".to_owned(),
            "saturate --concurrency 1".to_owned(),
        ] {
            assert!(
                text.contains(&needle),
                "{who} does not say {needle:?}:\n{text}"
            );
        }
    };

    let tick = s.oxi(&["tick"]);
    expect("oxi tick", tick.ok());
    let tick_json = s.oxi(&["tick", "--format", "json"]).json();
    assert_eq!(tick_json["outcome"], "already_running");
    assert_eq!(tick_json["holder"]["pid"], first.id());
    assert_eq!(tick_json["holder"]["host"], hostname());

    let second = s.oxi(&["saturate", "--concurrency", "2"]);
    assert_ne!(second.code, 0);
    expect("a second oxi saturate", &second.stderr);

    first.term();
    let (code, _, _) = first.finish();
    assert_eq!(code, 0, "{}", seen.join("\n"));
}

// ---- item 15: the HTML report ----

fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/chromium");
    if path.exists() {
        return Some(path);
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
        "CI=true but /usr/bin/chromium is missing; .ci/run installs the Debian package"
    );
    crate::support::skip(
        "chromium drawing",
        "chromium drawing test",
        "/usr/bin/chromium is missing",
        "apt-get install chromium (Debian's package, as .ci/run does)",
    );
    None
}

/// The demo spends a few cents against a $20 daily cap: the spend chart has values on its
/// axis and each bar, and the cap line is drawn solid enough to see.
#[test]
fn html_report_charts_carry_axis_values_and_a_visible_cap_line_at_small_spends() {
    let s = Sandbox::empty();
    let repo = s.file("demo");
    s.oxi(&["demo", "--dir", &repo.display().to_string()]).ok();
    let page = repo.join("report.html");
    let run = Command::new(OXI)
        .args(["report", "--since", "all", "--format", "html", "--output"])
        .arg(&page)
        .current_dir(&repo)
        .env_remove("OXI_CONFIG")
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let html = std::fs::read_to_string(&page).unwrap();
    let spend = html
        .split("<figure>")
        .find(|f| f.contains("Spend per day"))
        .unwrap();
    // Axis values: zero, the cap's scale, in dollars; and each bar's own value.
    for needle in [
        "class=\"axis\"",
        ">$0<",
        ">$20<",
        "class=\"value\"",
        ">$0.05<",
    ] {
        assert!(
            spend.contains(needle),
            "no {needle:?} in the spend chart:\n{spend}"
        );
    }
    assert!(
        html.contains(">100%<"),
        "the success chart has no axis values"
    );

    let Some(chromium) = chromium() else { return };
    let shot = s.file("shot.png");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=800,500",
        ])
        .arg(format!("--user-data-dir={}", s.file("profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(
        shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let decoder = png::Decoder::new(BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let width = info.width as usize;
    let pixels = &buf[..info.buffer_size()];
    // The cap line: the longest run of the cap's own red (#dc2626) on one pixel row. An
    // anti-aliased hairline is pink, not this red, and a label is a few pixels wide.
    let mut longest_row = 0;
    for row in pixels.chunks(width * channels) {
        let red = row
            .chunks(channels)
            .filter(|px| {
                px[0].abs_diff(0xdc) < 12 && px[1].abs_diff(0x26) < 12 && px[2].abs_diff(0x26) < 12
            })
            .count();
        longest_row = longest_row.max(red);
    }
    assert!(
        longest_row > 250,
        "the cap line is not drawn in its colour ({longest_row} red pixels on its best row)"
    );
}
