//! The `tachi-gate` binary: parse the command line, load the configuration, run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pingora::server::RunArgs;
use tachi_gate::config::{Config, Overrides};
use tachi_gate::server::Gate;

/// An auth gateway for Tachi servers.
#[derive(Debug, Parser)]
#[command(name = "tachi-gate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (default: conf/tachi-gate.toml if present, else built-in defaults).
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on this address instead of the configured ones.
    #[arg(long, global = true, value_name = "ADDR")]
    listen: Option<String>,
    /// Forward to this upstream instead of the configured ones.
    #[arg(long, global = true, value_name = "ADDR")]
    upstream: Option<String>,
    /// Keep the store in this directory.
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gate (the default).
    Serve,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,pingora_core=warn,pingora_proxy=warn"),
    )
    .init();
    let cli = Cli::parse();
    // `serve` is the only command, and the default.
    let (Some(Command::Serve) | None) = cli.command;
    let overrides = Overrides {
        listen: cli.listen,
        upstream: cli.upstream,
        data: cli.data,
    };
    let config = match Config::load(cli.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tachi-gate: {e}");
            return ExitCode::from(2);
        }
    };
    let listen: Vec<String> = config.listen.iter().map(|a| a.to_string()).collect();
    let gate = match Gate::build(config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("tachi-gate: {e}");
            return ExitCode::FAILURE;
        }
    };
    log::info!("tachi-gate listening on {}", listen.join(", "));
    match gate.run(RunArgs::default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tachi-gate: {e}");
            ExitCode::FAILURE
        }
    }
}
