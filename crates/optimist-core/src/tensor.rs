//! Named tensors in host memory: parameters, their gradients and optimizer
//! state buffers.
//!
//! Optimizers never own parameters. A step receives [`ParamMut`] views: the
//! parameter's name, shape, its values and its gradient as mutable slices, so that a framework adapter can hand over its own storage without
//! a copy, and [`Param`] is only a convenience owner for tests, replay and
//! demos.
//!
//! Precision: parameters are f32 slices today. State is held in
//! [`StateTensor`], whose element type is recorded in [`DType`]; update rules
//! are written as kernels over f32 chunks, so a reduced-precision state
//! (bf16, 8-bit blocks) is added by decoding a chunk into f32, running the
//! same kernel and encoding it back, without touching the update rules.

use crate::error::{Error, Result};

/// Element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 single precision.
    F32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
        }
    }
}

/// Number of elements of `shape`, or an error if the product overflows.
pub fn numel(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| Error::Shape(format!("shape {shape:?} has too many elements")))
    })
}

/// An owned named parameter with its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pub grad: Vec<f32>,
}

impl Param {
    /// A parameter with a zero gradient; fails if `data` does not hold `prod(shape)` values.
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let name = name.into();
        let n = numel(&shape)?;
        if n != data.len() {
            return Err(Error::Shape(format!(
                "parameter '{name}': shape {shape:?} needs {n} values, got {}",
                data.len()
            )));
        }
        Ok(Param {
            name,
            shape,
            grad: vec![0.0; n],
            data,
        })
    }

    /// A mutable view for one optimizer step.
    pub fn view(&mut self) -> ParamMut<'_> {
        ParamMut {
            name: &self.name,
            shape: &self.shape,
            value: &mut self.data,
            grad: &mut self.grad,
            hessian: None,
        }
    }
}

/// Views of all parameters of a slice, for one step.
pub fn views(params: &mut [Param]) -> Vec<ParamMut<'_>> {
    params.iter_mut().map(Param::view).collect()
}

/// What an optimizer sees of one parameter during a step.
#[derive(Debug)]
pub struct ParamMut<'a> {
    /// Stable name (used for state lookup, groups and checkpoints).
    pub name: &'a str,
    /// Row-major shape.
    pub shape: &'a [usize],
    /// Parameter values, updated in place.
    pub value: &'a mut [f32],
    /// Gradient, same length as `value`. Gradient stages (clipping and the
    /// like) rewrite it in place, as `clip_grad_norm_` rewrites `.grad`;
    /// update rules only read it.
    pub grad: &'a mut [f32],
    /// Optional curvature estimate (Hessian diagonal) for second-order rules.
    pub hessian: Option<&'a [f32]>,
}

impl ParamMut<'_> {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.value.len()
    }

    /// Checks that the gradient (and Hessian, if any) match the value's length.
    pub fn check(&self) -> Result<()> {
        if self.grad.len() != self.value.len() {
            return Err(Error::Shape(format!(
                "parameter '{}': gradient has {} values, parameter has {}",
                self.name,
                self.grad.len(),
                self.value.len()
            )));
        }
        if let Some(h) = self.hessian {
            if h.len() != self.value.len() {
                return Err(Error::Shape(format!(
                    "parameter '{}': hessian has {} values, parameter has {}",
                    self.name,
                    h.len(),
                    self.value.len()
                )));
            }
        }
        Ok(())
    }

    /// The shape as a matrix (rows, cols): the last dimension is the columns
    /// and all leading dimensions are flattened into rows. `None` for scalars
    /// and vectors.
    pub fn as_matrix(&self) -> Option<(usize, usize)> {
        if self.shape.len() < 2 {
            return None;
        }
        let cols = *self.shape.last()?;
        let rows = self.value.len().checked_div(cols).unwrap_or(0);
        Some((rows, cols))
    }
}

/// One optimizer state buffer (moments, accumulators, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateTensor {
    data: Vec<f32>,
}

impl StateTensor {
    /// A zero-filled buffer of `n` elements.
    pub fn zeros(n: usize) -> Self {
        StateTensor { data: vec![0.0; n] }
    }

    /// A buffer holding a copy of `values`.
    pub fn from_slice(values: &[f32]) -> Self {
        StateTensor {
            data: values.to_vec(),
        }
    }

    /// A buffer filled with `value`.
    pub fn full(n: usize, value: f32) -> Self {
        StateTensor {
            data: vec![value; n],
        }
    }

    /// The values, filled with `init` (`n` of them) on first use. A buffer
    /// that holds another number of values (a checkpoint that does not fit
    /// the parameter) is an error naming the parameter and the buffer.
    pub fn get_or_fill(
        &mut self,
        param: &str,
        buffer: &str,
        n: usize,
        init: f32,
    ) -> Result<&mut [f32]> {
        if self.data.is_empty() {
            self.data = vec![init; n];
        } else if self.data.len() != n {
            return Err(Error::Shape(format!(
                "state of '{param}': buffer '{buffer}' holds {} values, expected {n}",
                self.data.len()
            )));
        }
        Ok(&mut self.data)
    }

    /// Whether the buffer has been allocated (an empty buffer is "not yet created").
    pub fn is_allocated(&self) -> bool {
        !self.data.is_empty()
    }

    /// Element type of the stored values.
    pub fn dtype(&self) -> DType {
        DType::F32
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when no element is stored.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Values as f32.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Values as mutable f32.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        self.data.len() * self.dtype().size()
    }
}
