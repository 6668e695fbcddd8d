//! A 2-D convolution as im2col + GEMM, forward and backward, as one candle
//! custom op.
//!
//! candle 0.11's CPU `conv2d` computes its backward pass with
//! `conv_transpose2d` for the input gradient and a convolution with a
//! large kernel for the weight gradient; on the `fashion-cnn` net those
//! dominate a training step. Here, per example `b` of the batch,
//!
//! ```text
//! cols_b = im2col(x_b)                        [C k k, Ho Wo]
//! y_b    = W · cols_b + bias                  [O, Ho Wo]      (forward)
//! dW    += dy_b · cols_b^T                    [O, C k k]
//! dbias += row sums of dy_b                   [O]
//! dx_b   = col2im(W^T · dy_b)                 [C, H, W]       (backward)
//! ```
//!
//! with `W` the weight `[O, C, k, k]` seen as `[O, C k k]` and `col2im` the
//! adjoint of `im2col` (each column entry added back to the input pixel it
//! was read from). Products are `optimist_core::gemm` (AVX-512 kernels or `matrixmultiply`); the column buffer
//! holds one example at a time and the result is written in NCHW order, so
//! no batch-sized intermediate tensor is built. The input gradient is
//! computed only when the input is part of the graph (not for the images
//! themselves). Stride 1, square kernels, zero padding, f32 on the CPU.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Module, Shape, Tensor};
use optimist_core::gemm::View;

/// Shapes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    fn new(
        x: (usize, usize, usize, usize),
        weight: (usize, usize, usize, usize),
        pad: usize,
    ) -> candle_core::Result<Self> {
        let (b, c, h, w) = x;
        let (o, cw, kh, kw) = weight;
        if cw != c {
            candle_core::bail!("conv: input has {c} channels, the weight expects {cw}");
        }
        if kh != kw || kh == 0 {
            candle_core::bail!("conv: only square non-empty kernels are supported, got {kh}x{kw}");
        }
        let (hp, wp) = (h + 2 * pad, w + 2 * pad);
        if hp < kh || wp < kh {
            candle_core::bail!("conv: kernel {kh}x{kh} larger than the padded input {hp}x{wp}");
        }
        Ok(Geometry {
            b,
            c,
            h,
            w,
            o,
            k: kh,
            pad,
            ho: hp - kh + 1,
            wo: wp - kh + 1,
        })
    }

    /// Rows of the column matrix, `C k k`.
    fn ckk(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Columns of the column matrix, `Ho Wo`.
    fn l(&self) -> usize {
        self.ho * self.wo
    }

    /// Calls `f(col_start, input_start, len)` for every run of entries of
    /// one example's `[C k k, Ho Wo]` column matrix that read `len`
    /// consecutive pixels of one input row, in the order of the entries
    /// (entries in the zero padding are skipped).
    #[inline]
    fn walk(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (k, l) = (self.k, self.l());
        for ci in 0..self.c {
            for ki in 0..k {
                for kj in 0..k {
                    let row = ((ci * k + ki) * k + kj) * l;
                    // Output columns ow whose input column ow + kj - pad is
                    // inside the row: lo <= ow < hi.
                    let lo = self.pad.saturating_sub(kj).min(self.wo);
                    let hi = (self.w + self.pad).saturating_sub(kj).min(self.wo);
                    if lo >= hi {
                        continue;
                    }
                    for oh in 0..self.ho {
                        let ih = oh + ki;
                        if ih < self.pad || ih - self.pad >= self.h {
                            continue;
                        }
                        let in0 = (ci * self.h + ih - self.pad) * self.w;
                        // lo + kj >= pad by the choice of lo.
                        f(row + oh * self.wo + lo, in0 + lo + kj - self.pad, hi - lo);
                    }
                }
            }
        }
    }

    /// One example `[C, H, W]` into its column matrix `[C k k, Ho Wo]`.
    /// Writes the entries that read a pixel only: those in the zero
    /// padding must be zero in `cols` already (a zeroed buffer that only
    /// this function writes, with this geometry).
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        self.walk(|c, i, n| cols[c..c + n].copy_from_slice(&x[i..i + n]));
    }

    /// The adjoint of [`Self::im2col`]: adds the column matrix into `dx`
    /// (each pixel's additions in the order of the column entries).
    fn col2im(&self, cols: &[f32], dx: &mut [f32]) {
        self.walk(|c, i, n| {
            for (d, s) in dx[i..i + n].iter_mut().zip(&cols[c..c + n]) {
                *d += *s;
            }
        });
    }
}

/// `C <- A B + beta C` for a row-major `C` of `a.rows x b.cols`
/// ([`optimist_core::gemm::gemm`]: shapes and extents checked).
fn gemm(a: View<'_>, b: View<'_>, beta: f32, c: &mut [f32]) -> candle_core::Result<()> {
    optimist_core::gemm::gemm(1.0, a, b, beta, c, false)
        .map_err(|e| candle_core::Error::msg(format!("conv: {e}")))
}

/// The custom op: `(x, weight, bias) -> y`.
struct ConvOp {
    pad: usize,
}

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(d) = s else {
        candle_core::bail!("conv: {what} must be f32");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&d[a..b]),
        None => candle_core::bail!("conv: {what} must be contiguous"),
    }
}

fn dims4(l: &Layout) -> candle_core::Result<(usize, usize, usize, usize)> {
    l.shape().dims4()
}

fn forward(g: Geometry, x: &[f32], w: &[f32], bias: &[f32]) -> candle_core::Result<Vec<f32>> {
    let (ckk, l) = (g.ckk(), g.l());
    let chw = g.c * g.h * g.w;
    if x.len() != g.b * chw || w.len() != g.o * ckk || bias.len() != g.o {
        candle_core::bail!("conv: argument sizes do not match the shapes");
    }
    let mut y = vec![0f32; g.b * g.o * l];
    let mut cols = vec![0f32; ckk * l];
    let wv = View::new(w, g.o, ckk);
    for (xb, yb) in x.chunks_exact(chw).zip(y.chunks_exact_mut(g.o * l)) {
        g.im2col(xb, &mut cols);
        for (row, &bo) in yb.chunks_exact_mut(l).zip(bias) {
            row.fill(bo);
        }
        gemm(wv, View::new(&cols, ckk, l), 1.0, yb)?;
    }
    Ok(y)
}

/// Gradients of x (when asked for), weight and bias.
struct Grads {
    dx: Option<Vec<f32>>,
    dw: Vec<f32>,
    db: Vec<f32>,
}

/// Gradients of x (when `need_dx`), weight and bias.
fn backward(
    g: Geometry,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> candle_core::Result<Grads> {
    let (ckk, l) = (g.ckk(), g.l());
    let chw = g.c * g.h * g.w;
    if x.len() != g.b * chw || w.len() != g.o * ckk || dy.len() != g.b * g.o * l {
        candle_core::bail!("conv: argument sizes do not match the shapes");
    }
    let mut dw = vec![0f32; g.o * ckk];
    let mut db = vec![0f32; g.o];
    let mut dx = need_dx.then(|| vec![0f32; g.b * chw]);
    // `cols` only ever holds im2col's entries (its padding stays zero);
    // `dcols` takes W^T dy.
    let mut cols = vec![0f32; ckk * l];
    let mut dcols = if need_dx { vec![0f32; ckk * l] } else { Vec::new() };
    let wt = View::new(w, g.o, ckk).t();
    for (bi, (xb, dyb)) in x
        .chunks_exact(chw)
        .zip(dy.chunks_exact(g.o * l))
        .enumerate()
    {
        let dyv = View::new(dyb, g.o, l);
        g.im2col(xb, &mut cols);
        gemm(dyv, View::new(&cols, ckk, l).t(), 1.0, &mut dw)?;
        for (d, row) in db.iter_mut().zip(dyb.chunks_exact(l)) {
            *d += row.iter().sum::<f32>();
        }
        if let Some(dx) = dx.as_mut() {
            gemm(wt, dyv, 0.0, &mut dcols)?;
            g.col2im(&dcols, &mut dx[bi * chw..(bi + 1) * chw]);
        }
    }
    Ok(Grads { dx, dw, db })
}

fn host_f32(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl CustomOp3 for ConvOp {
    fn name(&self) -> &'static str {
        "optimist-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geometry::new(dims4(l1)?, dims4(l2)?, self.pad)?;
        let x = f32_slice(s1, l1, "input")?;
        let w = f32_slice(s2, l2, "weight")?;
        let bias = f32_slice(s3, l3, "bias")?;
        let y = forward(g, x, w, bias)?;
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.o, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = Geometry::new(x.dims4()?, w.dims4()?, self.pad)?;
        let need_dx = x.track_op();
        let Grads { dx, dw, db } =
            backward(g, &host_f32(x)?, &host_f32(w)?, &host_f32(grad)?, need_dx)?;
        let dev = x.device();
        let dx = dx
            .map(|d| Tensor::from_vec(d, x.shape(), dev))
            .transpose()?;
        Ok((
            dx,
            Some(Tensor::from_vec(dw, w.shape(), dev)?),
            Some(Tensor::from_vec(db, g.o, dev)?),
        ))
    }
}

/// A 2-D convolution (stride 1, square kernel, zero padding), computed as
/// im2col + GEMM with the backward pass of the module docs. Same parameters
/// and result as `candle_nn::Conv2d` with `stride = 1, dilation = 1,
/// groups = 1`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[O, C, k, k]`.
    pub weight: Tensor,
    /// `[O]`; `None` adds zero.
    pub bias: Option<Tensor>,
    /// Zero padding on each side.
    pub padding: usize,
}

impl Conv2d {
    /// A convolution with the given weight `[O, C, k, k]`, bias `[O]` and
    /// padding.
    pub fn new(weight: Tensor, bias: Option<Tensor>, padding: usize) -> candle_core::Result<Self> {
        let (o, _, kh, kw) = weight.dims4()?;
        if kh != kw {
            candle_core::bail!("conv: only square kernels are supported, got {kh}x{kw}");
        }
        if let Some(b) = &bias {
            if b.dims() != [o] {
                candle_core::bail!("conv: bias of shape {:?} for {o} output channels", b.dims());
            }
        }
        Ok(Conv2d {
            weight,
            bias,
            padding,
        })
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if x.dtype() != DType::F32 || self.weight.dtype() != DType::F32 {
            candle_core::bail!("conv: f32 tensors only, got {:?}", x.dtype());
        }
        let bias = match &self.bias {
            Some(b) => b.clone(),
            None => Tensor::zeros(self.weight.dim(0)?, DType::F32, self.weight.device())?,
        };
        x.contiguous()?.apply_op3(
            &self.weight.contiguous()?,
            &bias.contiguous()?,
            ConvOp { pad: self.padding },
        )
    }
}
