//! `optimist`: replay reference cases, list the optimizers, run the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod bench_adapter;
mod bench_gemm;
mod bench_step;
mod data;
mod demo;
mod list;
mod svg;
mod train;
mod tune;

/// optimist: deep-learning optimizers, exact to their references.
#[derive(Parser)]
#[command(name = "optimist", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one replay case (contract v1) and print the parameters after every step as JSON.
    Replay {
        /// The case file (JSON).
        case: PathBuf,
    },
    /// List every registered optimizer with its hyperparameters, defaults, reference and paper.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Minimize the built-in problems with every optimizer and print the losses.
    Demo(demo::DemoArgs),
    /// Train a workload with an optimizer: progress, JSONL metrics, summary.
    Train(train::TrainArgs),
    /// Run optimizers x workloads x seeds (report.md, report.json, SVG plots); or `bench step` / `bench bandwidth` micro-benchmarks.
    Bench(bench::BenchArgs),
    /// Fetch or check the datasets of the real-data workloads.
    Data(data::DataArgs),
    /// Tune hyperparameters per workload and optimizer (AlgoPerf external tuning); writes a file for `bench --tuned`.
    Tune(tune::TuneArgs),
}

/// Restores the default action of SIGPIPE (Rust ignores it, so a write to a
/// closed pipe would be an error and `println!` would panic on it): like
/// other Unix tools, `optimist list | head -1` then ends quietly when `head`
/// has read enough.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at the start of main, before any other thread
    // exists; SIG_DFL is a valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay { case } => {
            optimist_core::replay::replay_file(&case).map(|json| println!("{json}"))
        }
        Command::List { json } => {
            list::run(json);
            Ok(())
        }
        Command::Demo(args) => demo::run(&args),
        Command::Train(args) => train::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Data(args) => data::run(&args),
        Command::Tune(args) => tune::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = e.to_string().replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::from(1)
        }
    }
}
