//! docs/cli.md keeps up with the command line: every command clap knows (walking the tree from
//! `oxi::cli::Cli`) is named there, and every flag of a command appears on a line that names
//! that command; the global flags appear in the synopsis.

use clap::CommandFactory;

fn cli_md() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/cli.md")).unwrap()
}

/// Lines naming `oxi <path>` as a whole word sequence (`oxi run` is not `oxi runs`).
fn lines_naming<'a>(doc: &'a str, path: &str) -> Vec<&'a str> {
    let needle = format!("oxi {path}");
    doc.lines()
        .filter(|line| {
            line.match_indices(&needle).any(|(at, _)| {
                let next = line[at + needle.len()..].chars().next();
                next.is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_'))
            })
        })
        .collect()
}

/// How a flag is written: `--name`, and `-x` for a short one.
fn spellings(arg: &clap::Arg) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(long) = arg.get_long() {
        out.push(format!("--{long}"));
    }
    if let Some(short) = arg.get_short() {
        out.push(format!("-{short}"));
    }
    out
}

/// Whether `flag` appears in `line` as itself (`--note` is not `--notes`, `-v` not `-vv`'s
/// prefix only).
fn mentions(line: &str, flag: &str) -> bool {
    line.match_indices(flag).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + flag.len()..].chars().next();
        before.is_none_or(|c| c != '-' && !c.is_alphanumeric())
            && after.is_none_or(|c| !(c.is_alphanumeric() || c == '-' || c == '_'))
    })
}

/// What docs/cli.md lacks, walking every command below `command` (named `path`).
fn missing(doc: &str, command: &clap::Command, path: &str, out: &mut Vec<String>) {
    let lines = lines_naming(doc, path);
    if lines.is_empty() {
        out.push(format!("command `oxi {path}` is not named"));
    }
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.is_global_set() || id == "help" || id == "version" {
            continue;
        }
        for flag in spellings(arg) {
            if !lines.iter().any(|line| mentions(line, &flag)) {
                out.push(format!(
                    "`oxi {path}` flag `{flag}` is on no line naming the command"
                ));
            }
        }
    }
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        let path = format!("{path} {}", sub.get_name());
        missing(doc, sub, &path, out);
    }
}

#[test]
fn every_command_and_flag_appears_in_cli_md() {
    let doc = cli_md();
    let cli = oxi::cli::Cli::command();
    let mut out = Vec::new();
    // The global flags: in the synopsis, the first `oxi [` line.
    let synopsis = doc
        .lines()
        .find(|line| line.starts_with("oxi ["))
        .expect("docs/cli.md has a synopsis line `oxi [--config …] … COMMAND`");
    for arg in cli.get_arguments().filter(|a| a.is_global_set()) {
        for flag in spellings(arg) {
            if !mentions(synopsis, &flag) {
                out.push(format!("global flag `{flag}` is not in the synopsis"));
            }
        }
    }
    let subcommands: Vec<&clap::Command> = cli.get_subcommands().collect();
    assert!(subcommands.len() > 10, "clap's tree was not walked");
    for sub in subcommands {
        if sub.get_name() != "help" {
            missing(&doc, sub, sub.get_name(), &mut out);
        }
    }
    assert!(out.is_empty(), "docs/cli.md lacks:\n{}", out.join("\n"));
}

#[test]
fn the_walk_notices_a_missing_command_and_flag() {
    let command = clap::Command::new("oxi").subcommand(
        clap::Command::new("tick").arg(
            clap::Arg::new("dry")
                .long("dry")
                .action(clap::ArgAction::SetTrue),
        ),
    );
    let tick = command.find_subcommand("tick").unwrap();
    let mut out = Vec::new();
    missing("`oxi tick` runs once", tick, "tick", &mut out);
    assert_eq!(
        out,
        ["`oxi tick` flag `--dry` is on no line naming the command"]
    );
    out.clear();
    missing("`oxi ticks --dry`", tick, "tick", &mut out);
    assert_eq!(
        out,
        [
            "command `oxi tick` is not named",
            "`oxi tick` flag `--dry` is on no line naming the command"
        ]
    );
    out.clear();
    missing("`oxi tick [--dry]`", tick, "tick", &mut out);
    assert!(out.is_empty());
}
