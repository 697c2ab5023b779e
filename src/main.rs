use clap::Parser;

fn main() {
    // `oxi __guard …`: this process is a run's guard (an internal entry point, not a command).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == oxi::process::guard::ENTRY) {
        oxi::process::guard::main(&args[2..]);
    }
    // Runs started by this process are started under a guard.
    oxi::process::guard::enable();
    let cli = oxi::cli::Cli::parse();
    let code = match oxi::run(cli) {
        Ok(()) => oxi::exit::OK,
        Err(error) if error.downcast_ref::<oxi::ExitWith>().is_some() => oxi::exit_code(&error),
        Err(error) => {
            let code = oxi::exit_code(&error);
            let mut stderr = anstream::stderr();
            let style = anstyle::Style::new()
                .bold()
                .fg_color(Some(anstyle::AnsiColor::Red.into()));
            let _ = std::io::Write::write_fmt(
                &mut stderr,
                format_args!("{style}error:{style:#} {}\n", oxi::error_line(&error)),
            );
            code
        }
    };
    std::process::exit(code);
}
