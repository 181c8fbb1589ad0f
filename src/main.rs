use clap::Parser;
use pyroscope::cli::{normalize_args, Cli, Command};
use pyroscope::commands::{self, Outcome};

fn main() {
    let cli = match normalize_args(std::env::args_os().collect()).and_then(Cli::try_parse_from) {
        Ok(c) => c,
        Err(e) => {
            // --help / --version exit 0; usage errors exit with clap's code (2).
            e.exit();
        }
    };
    let result = match cli.command {
        Command::Exec(a) => commands::exec(a),
        Command::Connect(a) => commands::connect(a),
    };
    match result {
        Ok(Outcome::Exit(code)) => std::process::exit(code),
        Ok(Outcome::DieBySignal(sig)) => pyroscope::signals::die_by_signal(sig),
        Err(e) => {
            commands::log_fatal(&format!("{e:#}"));
            std::process::exit(pyroscope::errors::EXIT_AGENT_ERROR);
        }
    }
}
