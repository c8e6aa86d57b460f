//! The `dockercri` binary: parse flags and config, set up logging, run the
//! daemon. Exit codes: 0 after a clean shutdown, 1 when it cannot start or
//! serve, 2 for a bad command line or config file.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use dockercri::config::{Config, Flags, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match Config::load(flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("dockercri: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(config.log_level.as_deref(), config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dockercri: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dockercri::daemon::run(config)) {
        Ok(()) => {
            tracing::info!("dockercri stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "dockercri failed");
            eprintln!("dockercri: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--log-level` wins; else `RUST_LOG`; else `info`. Lines go to stderr:
/// coloured text on a terminal only (journald and files get plain text),
/// or JSON lines with `--log-format json`.
fn init_tracing(level: Option<&str>, format: LogFormat) {
    let filter = level
        .and_then(|l| EnvFilter::try_new(l).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colours only on a terminal (and without NO_COLOR): under systemd
        // stderr goes to the journal, which stores escape codes as they are.
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
