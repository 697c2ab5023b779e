//! `oxi man [--dir DIR]`: the manual. clap_mangen renders each page's name, synopsis,
//! description, options and subcommands from the CLI definition; the sections a manual needs
//! beyond that (EXIT STATUS, ENVIRONMENT, FILES, SEE ALSO) are added here. With `--dir` every
//! page is written (`oxi.1` and `oxi-<command>.1` for each command, nested ones included), so
//! every page a page names exists.

use std::path::Path;

use anyhow::{Context as _, Result};
use clap::CommandFactory as _;

use super::Context;
use crate::cli::{Cli, ManArgs};
use crate::output::write_stdout;

/// The exit codes, as docs/cli.md lists them (the constants are in `crate::exit`).
const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
success
.TP
\fB1\fR
a failure not listed below (\fBoxi run\fR: the run did not succeed; \fBoxi doctor\fR, \fBoxi workers\fR: a check failed)
.TP
\fB2\fR
bad command line (\fBoxi run\fR: an unknown \fB\-\-worker\fR or a missing \fB\-\-cwd\fR)
.TP
\fB3\fR
\fIoxi.toml\fR missing or invalid, or a bad \fBOXI_RUN_MODE\fR
.TP
\fB4\fR
the ledger cannot be opened, is locked, or was written by a newer oxi
.TP
\fB5\fR
the roadmap cannot be read or parsed
.TP
\fB6\fR
a spend cap refused the work; nothing was started
.TP
\fB7\fR
\fBoxi tick\fR: a task ended in a terminal failure this pass
.TP
\fB8\fR
\fBoxi tick\fR: dispatch is blocked by a doctor\-level problem (the message says which)
.TP
\fB130\fR
\fBoxi run\fR was stopped by SIGINT or SIGTERM; its run was ended and recorded as killed
"#;

const ENVIRONMENT: &str = r#".SH ENVIRONMENT
.TP
\fBOXI_CONFIG\fR
the \fIoxi.toml\fR to use, as \fB\-\-config\fR
.TP
\fBOXI_RUN_MODE\fR
\fBfast\fR or \fBrelease\fR: overrides \fBrun.mode\fR for one invocation
.TP
\fBOXI_LOG\fR
a tracing filter for the log on stderr, such as \fBoxi=debug\fR
.TP
\fBNO_COLOR\fR
when set and not empty, no colour (\fB\-\-color auto\fR)
.TP
\fBUSER\fR, \fBLOGNAME\fR
who is named in recorded operator actions (pause, approve, retry, cancel)
.TP
\fBPATH\fR, \fBHOME\fR, \fBLANG\fR, \fBLC_*\fR, \fBTMPDIR\fR, \fBTERM\fR
passed to workers, whose environment is otherwise cleared
.TP
the variables a worker's \fBenv\fR lists
for example \fBANTHROPIC_API_KEY\fR, \fBOPENAI_API_KEY\fR, \fBCODEX_HOME\fR: passed to that worker only, and masked wherever oxi writes
.TP
\fBGITHUB_TOKEN\fR (\fBgithub.token_env\fR)
release mode's GitHub token; never passed to a worker
"#;

const FILES: &str = r#".SH FILES
.TP
\fIoxi.toml\fR
the configuration, found in the current directory or a parent; commit it with the repository
.TP
\fIroadmap.md\fR
the roadmap the tasks come from (\fBproject.roadmap\fR)
.TP
\fI.oxi/ledger.db\fR
the SQLite ledger: tasks, runs, events, spend
.TP
\fI.oxi/runs/RUN/\fR
one run's artifacts: prompt.md, raw.jsonl, stderr.log, events.jsonl, transcript.md, meta.json
.TP
\fI.oxi/worktrees/\fR
the git worktrees workers run in
.TP
\fI.oxi/tick.lock\fR
held by the running \fBoxi tick\fR or \fBoxi saturate\fR; names its pid, host, start and command
.TP
\fI.oxi/saturate.pid\fR
the pid of the running \fBoxi saturate\fR
"#;

/// Every page to write: the root and each (non-hidden) command below it, depth first.
fn pages(command: &clap::Command, out: &mut Vec<clap::Command>) {
    out.push(command.clone());
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, out);
    }
}

fn page_name(command: &clap::Command) -> String {
    command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_owned()
}

/// The roff escape for a name in running text (`-` is a hyphen, `\-` a minus sign).
fn roff_name(name: &str) -> String {
    name.replace('-', "\\-")
}

/// One page: clap_mangen's sections, then ours.
fn render(command: &clap::Command, root: bool, all: &[String]) -> Result<String> {
    let mut buffer = Vec::new();
    // Every page's footer names oxi and its version (a command alone has neither).
    clap_mangen::Man::new(command.clone())
        .source(format!("oxi {}", env!("CARGO_PKG_VERSION")))
        .render(&mut buffer)?;
    let mut page = String::from_utf8_lossy(&buffer).into_owned();
    page.push_str(EXIT_STATUS);
    if root {
        page.push_str(ENVIRONMENT);
        page.push_str(FILES);
    }
    // `.nh`: no hyphenation inside a page name.
    page.push_str(".SH \"SEE ALSO\"\n.nh\n");
    let own = page_name(command);
    let related: Vec<String> = if root {
        all.iter().filter(|n| **n != own).cloned().collect()
    } else {
        // The root and, for a nested command, its parent.
        let parent = own.rsplit_once('-').map(|(p, _)| p.to_owned());
        let mut related = vec!["oxi".to_owned()];
        related.extend(parent.filter(|p| p != "oxi" && all.contains(p)));
        related
    };
    let names: Vec<String> = related
        .iter()
        .map(|n| format!("\\fB{}\\fR(1)", roff_name(n)))
        .collect();
    page.push_str(&names.join(", "));
    page.push_str("\n.hy\n");
    if root {
        page.push_str(".PP\n\\fBoxi man \\-\\-dir\\fR \\fIDIR\\fR writes these pages.\n");
    }
    Ok(page)
}

fn write_pages(dir: &Path, pages: &[(String, String)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in pages {
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub fn run(_ctx: &Context, args: &ManArgs) -> Result<()> {
    // No `help` command in the manual: its page would be a copy of this one.
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let mut commands = Vec::new();
    pages(&root, &mut commands);
    let names: Vec<String> = commands.iter().map(page_name).collect();
    let mut rendered = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        rendered.push((page_name(command), render(command, i == 0, &names)?));
    }
    match &args.dir {
        None => {
            let page = rendered
                .first()
                .map(|(_, text)| text.as_str())
                .unwrap_or("");
            write_stdout(page)?;
        }
        Some(dir) => {
            write_pages(dir, &rendered)?;
            let mut list = String::new();
            for (name, _) in &rendered {
                list.push_str(&format!("{}\n", dir.join(format!("{name}.1")).display()));
            }
            write_stdout(&list)?;
        }
    }
    Ok(())
}
