//! `optimist demo`: every optimizer on the built-in problems.

use clap::Args;
use optimist_core::problems::{minimize, MatrixLeastSquares, Problem, Quadratic, Rosenbrock};
use optimist_core::registry::{build, find, registry};
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

/// The hyperparameters of a run: the rule's suggestion for small networks
/// (from the registry); a wrapper that needs an inner optimizer gets AdamW
/// with AdamW's suggestion.
fn demo_hparams(name: &str) -> Value {
    let Some(spec) = find(name) else {
        return json!({});
    };
    let mut hp = (spec.facts.suggested)();
    if (spec.defaults)().get("inner").is_some_and(Value::is_null) && hp.get("inner").is_none() {
        let inner = find("adamw").map_or_else(|| json!({}), |s| (s.facts.suggested)());
        hp["inner"] = json!({"optimizer": "adamw", "hparams": inner});
    }
    hp
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
                // Matrix-only rules on the vector problems.
                Err(optimist_core::Error::Unsupported(_))
                    if find(name).is_some_and(|s| s.facts.matrices_only) =>
                {
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
