use clap::Parser;

fn main() {
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
