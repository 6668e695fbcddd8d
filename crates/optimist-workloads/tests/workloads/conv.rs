//! The im2col + GEMM convolution against candle's `conv2d`: forward values
//! and the gradients of input, weight and bias, on small random tensors.
//!
//! The reference is candle's `conv2d` evaluated in f64 on the same values;
//! ours runs in f32. Tolerance: |ours - ref| <= 1e-4 (1 + |ref|) for every
//! element (sums of at most 75 products of O(1) values; f32 rounding gives
//! errors around 1e-6 here).

use candle_core::{DType, Device, Module, Tensor, Var};
use optimist_workloads::conv::Conv2d;

fn close(what: &str, ours: &Tensor, reference: &Tensor) {
    assert_eq!(ours.dims(), reference.dims(), "{what}: shape");
    let a = ours
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let mut worst = 0.0f64;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let err = (x - y).abs() / (1.0 + y.abs());
        assert!(err <= 1e-4, "{what}[{i}]: ours {x}, candle {y}");
        worst = worst.max(err);
    }
    assert!(
        b.iter().any(|v| v.abs() > 1e-3),
        "{what}: reference is all zero"
    );
    eprintln!("{what}: worst scaled error {worst:.2e}");
}

fn check([b, c, h, w]: [usize; 4], o: usize, k: usize, pad: usize, seed: u64) {
    let dev = Device::Cpu;
    let mut rng = optimist_workloads::Rng::new(seed);
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal() as f32).collect() };
    let x = draw(b * c * h * w);
    let wt = draw(o * c * k * k);
    let bias = draw(o);
    let ho = h + 2 * pad - k + 1;
    let wo = w + 2 * pad - k + 1;
    let r = draw(b * o * ho * wo);

    // Ours, f32.
    let xv = Var::from_vec(x.clone(), (b, c, h, w), &dev).unwrap();
    let wv = Var::from_vec(wt.clone(), (o, c, k, k), &dev).unwrap();
    let bv = Var::from_vec(bias.clone(), o, &dev).unwrap();
    let rt = Tensor::from_vec(r.clone(), (b, o, ho, wo), &dev).unwrap();
    let conv = Conv2d::new(wv.as_tensor().clone(), Some(bv.as_tensor().clone()), pad).unwrap();
    let y = conv.forward(xv.as_tensor()).unwrap();
    let grads = (&y * &rt).unwrap().sum_all().unwrap().backward().unwrap();

    // candle's conv2d, f64.
    let f64v = |v: &[f32], s: &[usize]| {
        Var::from_tensor(
            &Tensor::from_slice(v, s, &dev)
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap(),
        )
        .unwrap()
    };
    let x2 = f64v(&x, &[b, c, h, w]);
    let w2 = f64v(&wt, &[o, c, k, k]);
    let b2 = f64v(&bias, &[o]);
    let r2 = rt.to_dtype(DType::F64).unwrap();
    let reference = candle_nn::Conv2d::new(
        w2.as_tensor().clone(),
        Some(b2.as_tensor().clone()),
        candle_nn::Conv2dConfig {
            padding: pad,
            ..Default::default()
        },
    );
    let y2 = reference.forward(x2.as_tensor()).unwrap();
    let grads2 = (&y2 * &r2).unwrap().sum_all().unwrap().backward().unwrap();

    let tag = format!("b{b} c{c} {h}x{w} o{o} k{k} pad{pad}");
    close(&format!("{tag} forward"), &y, &y2);
    close(
        &format!("{tag} d input"),
        grads.get(&xv).unwrap(),
        grads2.get(&x2).unwrap(),
    );
    close(
        &format!("{tag} d weight"),
        grads.get(&wv).unwrap(),
        grads2.get(&w2).unwrap(),
    );
    close(
        &format!("{tag} d bias"),
        grads.get(&bv).unwrap(),
        grads2.get(&b2).unwrap(),
    );
}

#[test]
fn conv_matches_candle_conv2d() {
    // Non-square inputs, several paddings and kernel sizes, batch > 1.
    check([3, 2, 7, 9], 4, 3, 1, 1);
    check([2, 3, 6, 5], 5, 3, 0, 2);
    check([2, 1, 8, 8], 3, 5, 2, 3);
    check([1, 4, 5, 7], 2, 5, 2, 4);
    check([2, 2, 4, 4], 3, 1, 0, 5);
    // Padding wider than the kernel: whole output rows and columns read only zeros.
    check([1, 2, 3, 4], 2, 3, 3, 6);
}

#[test]
fn conv_input_gradient_only_when_tracked() {
    // A plain (untracked) input: weight and bias get gradients, and the
    // forward agrees with the tracked case.
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (2, 1, 6, 6), &dev).unwrap();
    let wv = Var::randn(0f32, 1.0, (3, 1, 3, 3), &dev).unwrap();
    let conv = Conv2d::new(wv.as_tensor().clone(), None, 1).unwrap();
    let g = conv
        .forward(&x)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(g.get(&x).is_none());
    assert_eq!(g.get(&wv).unwrap().dims(), &[3, 1, 3, 3]);
}

#[test]
fn conv_rejects_bad_shapes() {
    let dev = Device::Cpu;
    let w = Tensor::zeros((3, 2, 3, 3), DType::F32, &dev).unwrap();
    let conv = Conv2d::new(w, None, 0).unwrap();
    let x = Tensor::zeros((1, 1, 5, 5), DType::F32, &dev).unwrap();
    assert!(conv
        .forward(&x)
        .unwrap_err()
        .to_string()
        .contains("channels"));
    let x = Tensor::zeros((1, 2, 2, 2), DType::F32, &dev).unwrap();
    assert!(conv.forward(&x).unwrap_err().to_string().contains("larger"));
    let w = Tensor::zeros((3, 2, 3, 2), DType::F32, &dev).unwrap();
    assert!(Conv2d::new(w, None, 0).is_err());
}
