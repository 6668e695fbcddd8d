//! `optimist demo`: every optimizer on the built-in problems.

use clap::Args;
use optimist_core::problems::{minimize, MatrixLeastSquares, Problem, Quadratic, Rosenbrock};
use optimist_core::registry::{build, registry};
use optimist_core::Result;
use serde_json::{json, Value};

#[derive(Args)]
pub struct DemoArgs {
    /// Steps per run.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// Only these optimizers (comma-separated registry names).
    #[arg(long, value_delimiter = ',')]
    optimizers: Vec<String>,
}

/// A learning rate that suits each family on these small deterministic problems.
fn demo_hparams(name: &str) -> Value {
    match name {
        "sgd" => json!({"lr": 1e-3, "momentum": 0.9}),
        "adam" | "adamw" => json!({"lr": 2e-2}),
        "lion" | "signsgd" => json!({"lr": 1e-3}),
        "adabelief" | "lamb" => json!({"lr": 2e-2}),
        // The default final_lr (0.1, plain SGD at the end) diverges on Rosenbrock.
        "adabound" => json!({"lr": 1e-2, "final_lr": 2e-3}),
        "lookahead" => json!({"inner": {"optimizer": "adam", "hparams": {"lr": 2e-2}}}),
        "cautious" => json!({"inner": {"optimizer": "adamw", "hparams": {"lr": 2e-2}}}),
        "muon" => json!({"lr": 0.05, "weight_decay": 0.0}),
        "adamuon" => json!({"lr": 0.05}),
        "namo" | "namo_d" => json!({"lr": 0.1, "weight_decay": 0.0}),
        "nadam" | "radam" | "adamomentum" => json!({"lr": 1e-2}),
        "adamax" => json!({"lr": 3e-2}),
        "adagrad" => json!({"lr": 0.5}),
        "rmsprop" => json!({"lr": 1e-3}),
        "adafactor" => json!({"lr": 1e-2}),
        "adagc" => json!({"lr": 2e-2, "weight_decay": 0.0}),
        "magma" => json!({"inner": {"optimizer": "adam", "hparams": {"lr": 2e-2}}}),
        "skipupdate" => json!({"inner": {"optimizer": "adam", "hparams": {"lr": 2e-2}}}),
        "adamw_schedulefree" => json!({"lr": 2e-2}),
        "sgd_schedulefree" => json!({"lr": 1e-2}),
        _ => json!({}),
    }
}

pub fn run(args: &DemoArgs) -> Result<()> {
    crate::train::check_steps("--steps", args.steps)?;
    let problems: Vec<Box<dyn Problem>> = vec![
        Box::new(Quadratic::default()),
        Box::new(Rosenbrock),
        Box::new(MatrixLeastSquares::default()),
    ];
    let names: Vec<&str> = if args.optimizers.is_empty() {
        registry().iter().map(|s| s.name).collect()
    } else {
        args.optimizers.iter().map(String::as_str).collect()
    };
    println!(
        "{:<12} {:<12} {:>14} {:>14} {:>14}",
        "optimizer", "problem", "initial loss", "final loss", "hparams"
    );
    for name in names {
        for problem in &problems {
            let hp = demo_hparams(name);
            let mut opt = build(name, &hp)?;
            let losses = match minimize(problem.as_ref(), opt.as_mut(), args.steps) {
                Ok(l) => l,
                // Matrix optimizers on the vector problems.
                Err(optimist_core::Error::Unsupported(_)) => {
                    println!(
                        "{:<12} {:<12} {:>14}",
                        name,
                        problem.name(),
                        "(not a matrix)"
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            println!(
                "{:<12} {:<12} {:>14.6e} {:>14.6e}   {}",
                name,
                problem.name(),
                losses[0],
                losses[losses.len() - 1],
                hp
            );
        }
    }
    Ok(())
}
