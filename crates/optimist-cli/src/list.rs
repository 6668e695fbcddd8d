//! `optimist list`.

use optimist_core::registry::registry;
use serde_json::{json, Value};

fn show(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        other => other.to_string(),
    }
}

pub fn run(as_json: bool) {
    if as_json {
        let all: Vec<Value> = registry()
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "summary": s.summary,
                    "reference": s.reference,
                    "paper": s.paper,
                    "hparams": (s.defaults)(),
                })
            })
            .collect();
        println!("{}", Value::Array(all));
        return;
    }
    for s in registry() {
        println!("{}  ({})", s.name, s.summary);
        println!("  reference: {}", s.reference);
        println!("  paper:     {}", s.paper);
        if let Value::Object(map) = (s.defaults)() {
            let hp: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}={}", show(v)))
                .collect();
            println!("  hparams:   {}", hp.join(", "));
        }
        println!();
    }
}
