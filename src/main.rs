use pyroscope::cli::{self, Command};
use pyroscope::commands::{self, Outcome};

fn main() {
    let cli = match cli::parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(e) => {
            // --help / --version print and exit 0; a usage error is an error of pyroscope
            // before the program starts, which exits 1 like every other (README).
            if e.use_stderr() {
                let _ = e.print();
                std::process::exit(pyroscope::errors::EXIT_AGENT_ERROR);
            }
            e.exit();
        }
    };
    let result = match cli.command {
        Command::Exec(a) => commands::exec(a),
        Command::Connect(a) => commands::connect(a),
    };
    match result {
        Ok(Outcome::Exit(code)) => std::process::exit(code),
        Ok(Outcome::DieBySignal(sig)) => pyroscope::process::signals::die_by_signal(sig),
        Err(e) => {
            commands::log_fatal(&format!("{e:#}"));
            std::process::exit(pyroscope::errors::EXIT_AGENT_ERROR);
        }
    }
}
