//! bf16 and f16 parameters with f32 optimizer state.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::Optimizer;
use optimist_candle::OptimistOptimizer;
use serde_json::json;

use super::values;

fn named(name: &str, v: &Var) -> Vec<(String, Var)> {
    vec![(name.to_string(), v.clone())]
}

/// Least squares on 64 examples with 8 features, parameters in `dtype`:
/// 150 AdamW steps cut the loss below 2% of its start, and the parameter
/// keeps its dtype and storage.
fn trains(dtype: DType) -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let x = Tensor::from_vec(values(64 * 8, 11, 1.0), (64, 8), &dev)?;
    let w_true = Tensor::from_vec(values(8, 12, 1.0), (1, 8), &dev)?;
    let y = x.broadcast_mul(&w_true)?.sum(1)?.to_dtype(dtype)?;
    let x = x.to_dtype(dtype)?;
    let w = Var::from_tensor(&Tensor::zeros((1, 8), dtype, &dev)?)?;
    let opt = optimist_candle::build_optimizer("adamw", &json!({"lr": 0.05})).unwrap();
    let mut opt = OptimistOptimizer::from_named(named("w", &w), opt)?;
    let loss_of = |w: &Var| -> candle_core::Result<f32> {
        let l = (x.broadcast_mul(w.as_tensor())?.sum(1)? - &y)?
            .sqr()?
            .mean_all()?;
        l.to_dtype(DType::F32)?.to_scalar::<f32>()
    };
    let first = loss_of(&w)?;
    let id = optimist_candle::inplace::storage_id(w.as_tensor());
    for _ in 0..150 {
        let l = (x.broadcast_mul(w.as_tensor())?.sum(1)? - &y)?
            .sqr()?
            .mean_all()?;
        opt.backward_step(&l)?;
    }
    let last = loss_of(&w)?;
    assert_eq!(w.dtype(), dtype);
    assert_eq!(optimist_candle::inplace::storage_id(w.as_tensor()), id);
    assert!(
        last < 0.02 * first,
        "{dtype:?}: loss {first} -> {last} after 150 steps"
    );
    // The optimizer state is f32: exp_avg and exp_avg_sq of 8 values.
    assert_eq!(opt.state_bytes(), 2 * 8 * 4);
    Ok(())
}

#[test]
fn bf16_and_f16_parameters_train() -> candle_core::Result<()> {
    trains(DType::BF16)?;
    trains(DType::F16)
}

/// One step at a time from the same representable values and gradients,
/// the half-precision path equals the f32 path's result rounded to the
/// half type (both round to nearest even), for several steps of AdamW
/// with weight decay.
fn matches_rounded_f32(dtype: DType) -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let n = 257;
    let round = |v: Vec<f32>| -> candle_core::Result<Tensor> {
        Tensor::from_vec(v, n, &dev)?.to_dtype(dtype)
    };
    let p_half = Var::from_tensor(&round(values(n, 21, 2.0))?)?;
    let p_f32 = Var::from_tensor(&p_half.to_dtype(DType::F32)?)?;
    let hp = json!({"lr": 1e-2, "weight_decay": 0.1});
    let mk = |v: &Var| {
        let o = optimist_candle::build_optimizer("adamw", &hp).unwrap();
        OptimistOptimizer::from_named(named("p", v), o)
    };
    let (mut opt_half, mut opt_f32) = (mk(&p_half)?, mk(&p_f32)?);
    for step in 0..4u64 {
        let g_half = round(values(n, 30 + step, 1.0))?;
        let g_f32 = g_half.to_dtype(DType::F32)?;
        let mut grads_half = p_half.as_tensor().sum_all()?.backward()?;
        grads_half.insert(p_half.as_tensor(), g_half);
        let mut grads_f32 = p_f32.as_tensor().sum_all()?.backward()?;
        grads_f32.insert(p_f32.as_tensor(), g_f32);
        let before = p_half.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        opt_half.step(&grads_half)?;
        opt_f32.step(&grads_f32)?;
        let got = p_half.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let want = p_f32
            .to_dtype(dtype)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        for i in 0..n {
            assert_eq!(
                got[i].to_bits(),
                want[i].to_bits(),
                "{dtype:?} step {step} [{i}]: {} vs rounded {}",
                got[i],
                want[i]
            );
        }
        let moved = got.iter().zip(&before).filter(|(a, b)| a != b).count();
        assert!(
            moved > n / 2,
            "{dtype:?} step {step}: only {moved} values changed"
        );
        // Continue both from the same (representable) values.
        p_f32.set(&p_half.to_dtype(DType::F32)?)?;
    }
    Ok(())
}

#[test]
fn half_step_equals_rounded_f32_step() -> candle_core::Result<()> {
    matches_rounded_f32(DType::BF16)?;
    matches_rounded_f32(DType::F16)
}

#[test]
fn half_parameters_with_curvature_or_mixed_gradients_are_errors() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let p = Var::from_tensor(&Tensor::zeros(4, DType::BF16, &dev)?)?;
    let o = optimist_candle::build_optimizer("sophiah", &json!({})).unwrap();
    let err = OptimistOptimizer::from_named(named("p", &p), o)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("parameter 'p'") && err.contains("curvature"),
        "{err}"
    );

    let o = optimist_candle::build_optimizer("adamw", &json!({})).unwrap();
    let mut opt = OptimistOptimizer::from_named(named("p", &p), o)?;
    let mut grads = p.as_tensor().sum_all()?.backward()?;
    grads.insert(p.as_tensor(), Tensor::zeros(4, DType::F32, &dev)?);
    let err = opt.step(&grads).unwrap_err().to_string();
    assert!(err.contains("dtype"), "{err}");
    Ok(())
}
