//! `optimist data`: fetch the datasets from their public sources, or check
//! the files in the data directory against their SHA-256.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use optimist_workloads::data::{resolve_data_dir, FILES};
use optimist_workloads::fetch;

#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download missing or damaged files and verify their SHA-256.
    Fetch {
        /// Only these datasets (mnist, fashion-mnist, tinyshakespeare, tabular).
        datasets: Vec<String>,
        /// Data directory (default: $OPTIMIST_DATA_DIR, else ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check every known file in the data directory.
    Check {
        /// Data directory (default: $OPTIMIST_DATA_DIR, else ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn err(e: impl std::fmt::Display) -> optimist_core::Error {
    optimist_core::Error::Input(e.to_string())
}

pub fn run(args: &DataArgs) -> optimist_core::Result<()> {
    match &args.command {
        DataCommand::Fetch { datasets, data_dir } => {
            let dir = resolve_data_dir(data_dir.as_deref());
            let files = fetch::select(datasets).map_err(err)?;
            fetch::fetch(&dir, &files, &mut |m| eprintln!("{m}")).map_err(err)?;
            println!("{}: {} files verified", dir.display(), files.len());
            Ok(())
        }
        DataCommand::Check { data_dir } => {
            let dir = resolve_data_dir(data_dir.as_deref());
            let mut bad = 0;
            for f in FILES {
                let path = dir.join(f.path);
                let status = match std::fs::read(&path) {
                    Err(_) => {
                        bad += 1;
                        "missing".to_string()
                    }
                    Ok(b) => match optimist_workloads::data::verify(&path, &b, f.sha256) {
                        Ok(()) => "ok".to_string(),
                        Err(e) => {
                            // The tests' slices load, but are not the datasets.
                            let digest = optimist_workloads::data::sha256_hex(&b);
                            let slice = optimist_workloads::data::SLICES
                                .iter()
                                .any(|s| s.path == f.path && s.sha256 == digest);
                            bad += 1;
                            if slice {
                                "a test slice, not the full file".to_string()
                            } else {
                                e.to_string()
                            }
                        }
                    },
                };
                println!("{:<45} {status}", f.path);
            }
            if bad == 0 {
                Ok(())
            } else {
                Err(err(format!(
                    "{bad} of {} files missing or damaged in {}",
                    FILES.len(),
                    dir.display()
                )))
            }
        }
    }
}
