//! `optimist`: replay reference cases, list the optimizers, run the demo.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
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

fn main() -> ExitCode {
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
