//! Times forward + backward of the `fashion-cnn` convolutions (batch 128)
//! with candle's `conv2d` and with the im2col + GEMM convolution.
//!
//! `cargo run --release -p optimist-workloads --example conv_speed`

use std::time::Instant;

use candle_core::{Device, Module, Tensor, Var};
use optimist_workloads::conv::Conv2d;

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    let reps = 20;
    for (c, o, hw) in [(1usize, 8usize, 28usize), (8, 16, 14)] {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (128, c, hw, hw), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.2, (o, c, 5, 5), &dev)?)?;
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.2, o, &dev)?)?;
        let ours = Conv2d::new(w.as_tensor().clone(), Some(b.as_tensor().clone()), 2)?;
        let theirs = candle_nn::Conv2d::new(
            w.as_tensor().clone(),
            Some(b.as_tensor().clone()),
            candle_nn::Conv2dConfig {
                padding: 2,
                ..Default::default()
            },
        );
        for (name, m) in [
            ("candle conv2d", &theirs as &dyn Module),
            ("im2col+gemm", &ours),
        ] {
            let (mut fwd, mut bwd) = (0.0, 0.0);
            for _ in 0..reps {
                let t = Instant::now();
                let y = m.forward(x.as_tensor())?;
                let loss = y.sqr()?.sum_all()?;
                let t1 = Instant::now();
                let g = loss.backward()?;
                std::hint::black_box(g.get(&w));
                fwd += (t1 - t).as_secs_f64();
                bwd += t1.elapsed().as_secs_f64();
            }
            println!(
                "{c}->{o} on {hw}x{hw}, {name:14}: forward {:7.2} ms, backward {:7.2} ms",
                fwd * 1e3 / reps as f64,
                bwd * 1e3 / reps as f64
            );
        }
    }
    Ok(())
}
