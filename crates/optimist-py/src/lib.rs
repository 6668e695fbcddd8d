//! Python extension module `optimist._optimist`: the registry and one
//! `Stepper` per `optimist.torch` optimizer, which steps torch CPU tensors
//! in place.
//!
//! Tensors cross as Python objects; everything about them is read and
//! checked here (device, layout, dtype, contiguity, alignment, element
//! count, overlap with every other tensor of the call) before any pointer is
//! turned into a slice. Nothing is compiled against torch: only the
//! attributes `is_cpu`, `layout`, `dtype`, `is_contiguous()`, `stride()`,
//! `data_ptr()`, `numel()` and `shape` are used.

use optimist_core::{registry, DType, Error, ExecOptions, Mode, Optimizer, ParamMut, StateTensor};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use serde_json::{json, Value};

/// A core error as a Python exception: `ValueError` for bad input
/// (hyperparameters, tensors, state), `RuntimeError` for the rest.
fn py_err(e: Error) -> PyErr {
    match e {
        Error::NonFinite(_) | Error::Io { .. } => PyRuntimeError::new_err(e.to_string()),
        _ => PyValueError::new_err(e.to_string()),
    }
}

fn value_error(msg: String) -> PyErr {
    PyValueError::new_err(msg)
}

/// The registry as JSON: name, reference, paper, summary, defaults, state
/// buffer names and optimizer-wide state names of every optimizer (what
/// `optimist list` prints).
#[pyfunction]
fn registry_json() -> String {
    let list: Vec<Value> = registry::registry()
        .iter()
        .map(|s| {
            let defaults = (s.defaults)();
            let built = (s.build)(&Value::Null).ok();
            let buffers = built
                .as_ref()
                .and_then(|o| o.state_buffer_names())
                .map(|b| b.to_vec());
            let globals = built.as_ref().map(|o| o.global_state_names().to_vec());
            json!({
                "name": s.name,
                "reference": s.reference,
                "paper": s.paper,
                "summary": s.summary,
                "defaults": defaults,
                "state_buffers": buffers,
                "global_state": globals.unwrap_or_default(),
            })
        })
        .collect();
    Value::Array(list).to_string()
}

/// Checks that optimizer `name` can keep its state as `state_dtype` (`f32`,
/// `bf16` or `q8`): raises `ValueError` otherwise (compressed state needs an
/// elementwise rule).
#[pyfunction]
fn check_state_dtype(name: &str, state_dtype: &str) -> PyResult<()> {
    let state_dtype = DType::parse(state_dtype).map_err(py_err)?;
    let mut opt = registry::build(name, &Value::Null).map_err(py_err)?;
    let exec = ExecOptions {
        state_dtype,
        ..ExecOptions::default()
    };
    opt.set_exec_options(exec).map_err(py_err)
}

/// Builds optimizer `name` from JSON hyperparameters and drops it: raises
/// `ValueError` naming the field and value of the first invalid one.
/// With `cautious`, also checks that the rule supports cautious masking.
#[pyfunction]
#[pyo3(signature = (name, hparams, cautious = false))]
fn validate(name: &str, hparams: &str, cautious: bool) -> PyResult<()> {
    let v: Value = serde_json::from_str(hparams)
        .map_err(|e| value_error(format!("{name}: hyperparameters are not valid JSON: {e}")))?;
    let mut opt = registry::build(name, &v).map_err(py_err)?;
    if cautious {
        opt.set_cautious(true).map_err(py_err)?;
    }
    Ok(())
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` one
/// character), as parameter groups select parameters.
#[pyfunction]
fn glob_match(pattern: &str, name: &str) -> bool {
    optimist_core::groups::glob_match(pattern, name)
}

/// Name patterns of matrices that are not hidden layers (embeddings, heads),
/// which the Muon + AdamW preset gives to AdamW.
#[pyfunction]
fn embeddings_and_heads() -> Vec<&'static str> {
    optimist_core::presets::EMBEDDINGS_AND_HEADS.to_vec()
}

/// Element type of a tensor handed over.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dt {
    F32,
    Bf16,
    F16,
    /// 8-bit state codes only.
    U8,
}

impl Dt {
    fn size(self) -> usize {
        match self {
            Dt::F32 => 4,
            Dt::Bf16 | Dt::F16 => 2,
            Dt::U8 => 1,
        }
    }
}

/// Which tensor of a step a [`TensorRef`] is, for error messages (formatted
/// only when one is raised: a step hands over thousands of tensors).
#[derive(Clone, Copy, Debug)]
enum Role {
    Param,
    Grad,
    State(&'static str),
    Scales(&'static str),
    Step,
    Hessian,
}

/// A tensor's role, parameter index and group.
#[derive(Clone, Copy, Debug)]
struct What {
    role: Role,
    index: usize,
    group: usize,
}

impl What {
    fn with(self, role: Role) -> What {
        What { role, ..self }
    }
}

impl std::fmt::Display for What {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = format_args!("param {} of group {}", self.index, self.group);
        match self.role {
            Role::Param => write!(f, "{p}"),
            Role::Grad => write!(f, "gradient of {p}"),
            Role::State(b) => write!(f, "state '{b}' of {p}"),
            Role::Scales(b) => write!(f, "state '{b}' of {p} (scales)"),
            Role::Step => write!(f, "state 'step' of {p}"),
            Role::Hessian => write!(f, "hessian of {p}"),
        }
    }
}

/// A checked, dense CPU tensor: address, element count, type, and (for
/// parameters, whose shape the engine sees) shape.
struct TensorRef {
    addr: usize,
    numel: usize,
    dt: Dt,
    shape: Vec<usize>,
    what: What,
}

impl TensorRef {
    fn bytes(&self) -> usize {
        self.numel * self.dt.size()
    }
}

/// The torch objects compared against (passed in once by the package).
struct TorchTypes {
    f32: PyObject,
    bf16: PyObject,
    f16: PyObject,
    strided: PyObject,
    u8: PyObject,
}

/// The torch objects as the package passes them: (torch.float32,
/// torch.bfloat16, torch.float16, torch.strided, torch.uint8).
type TypesArg = (PyObject, PyObject, PyObject, PyObject, PyObject);

impl TorchTypes {
    fn new(types: TypesArg) -> Self {
        TorchTypes {
            f32: types.0,
            bf16: types.1,
            f16: types.2,
            strided: types.3,
            u8: types.4,
        }
    }
}

fn tensor_ref(t: &Bound<'_, PyAny>, what: What, types: &TorchTypes) -> PyResult<TensorRef> {
    let py = t.py();
    let layout = t
        .getattr(intern!(py, "layout"))
        .map_err(|_| value_error(format!("{what}: not a torch tensor")))?;
    if !layout.is(types.strided.bind(py)) {
        return Err(value_error(format!(
            "{what}: layout {layout} is not supported (sparse tensors cannot be stepped in place; only dense strided tensors)"
        )));
    }
    if !t.getattr(intern!(py, "is_cpu"))?.extract::<bool>()? {
        let device = t.getattr(intern!(py, "device"))?;
        return Err(value_error(format!(
            "{what}: tensor is on device '{device}'; optimist.torch steps CPU tensors only (no copy is made, as an update to a copy would be lost)"
        )));
    }
    let dtype = t.getattr(intern!(py, "dtype"))?;
    let dt = if dtype.is(types.f32.bind(py)) {
        Dt::F32
    } else if dtype.is(types.bf16.bind(py)) {
        Dt::Bf16
    } else if dtype.is(types.f16.bind(py)) {
        Dt::F16
    } else if dtype.is(types.u8.bind(py)) {
        Dt::U8
    } else {
        return Err(value_error(format!(
            "{what}: dtype {dtype} is not supported (float32, bfloat16 or float16; uint8 for 8-bit state)"
        )));
    };
    if !t.call_method0(intern!(py, "is_contiguous"))?.extract::<bool>()? {
        let shape = t.getattr(intern!(py, "shape"))?;
        let stride = t.call_method0(intern!(py, "stride"))?;
        return Err(value_error(format!(
            "{what}: tensor of shape {shape} with strides {stride} is not contiguous; optimist.torch writes in place and never steps a copy"
        )));
    }
    // Only a parameter's shape reaches the engine; the other tensors are
    // checked by element count.
    let shape: Vec<usize> = if matches!(what.role, Role::Param) {
        t.getattr(intern!(py, "shape"))?.extract()?
    } else {
        Vec::new()
    };
    let numel: usize = t.call_method0(intern!(py, "numel"))?.extract()?;
    let addr: usize = t.call_method0(intern!(py, "data_ptr"))?.extract()?;
    if numel > 0 && (addr == 0 || !addr.is_multiple_of(dt.size())) {
        return Err(value_error(format!(
            "{what}: data pointer {addr:#x} is null or not aligned for its dtype"
        )));
    }
    let fits = match numel.checked_mul(dt.size()) {
        Some(bytes) => bytes <= isize::MAX as usize && addr.checked_add(bytes).is_some(),
        None => false,
    };
    if !fits {
        return Err(value_error(format!(
            "{what}: {numel} elements do not fit in memory"
        )));
    }
    Ok(TensorRef {
        addr,
        numel,
        dt,
        shape,
        what,
    })
}

/// A state entry: a float32 or bfloat16 tensor, or a tuple (uint8 codes,
/// float32 block scales) of 8-bit state.
fn state_ref(o: &Bound<'_, PyAny>, what: What, types: &TorchTypes) -> PyResult<StateRef> {
    if let Ok(t) = o.downcast::<PyTuple>() {
        if t.len() != 2 {
            return Err(value_error(format!(
                "{what}: 8-bit state is a tuple (codes, scales), got {} entries",
                t.len()
            )));
        }
        let codes = tensor_ref(&t.get_item(0)?, what, types)?;
        let buffer = match what.role {
            Role::State(b) => b,
            _ => "?",
        };
        let scales = tensor_ref(&t.get_item(1)?, what.with(Role::Scales(buffer)), types)?;
        if codes.dt != Dt::U8 || scales.dt != Dt::F32 {
            return Err(value_error(format!(
                "{what}: 8-bit state needs uint8 codes and float32 scales, got {:?} and {:?}",
                codes.dt, scales.dt
            )));
        }
        return Ok(StateRef::Q8(codes, scales));
    }
    let r = tensor_ref(o, what, types)?;
    if let (Dt::U8, Role::State(b)) = (r.dt, what.role) {
        return Err(value_error(format!(
            "{what}: 8-bit codes without '{b}_scales' (8-bit state is uint8 codes with their float32 block scales)"
        )));
    }
    match r.dt {
        Dt::F32 => Ok(StateRef::F32(r)),
        Dt::Bf16 => Ok(StateRef::Bf16(r)),
        dt => Err(value_error(format!(
            "{}: dtype {dt:?} (optimizer state is float32, bfloat16, or uint8 codes with float32 scales)",
            r.what
        ))),
    }
}

/// Fails if any two of `refs` share a byte (a parameter given twice, a
/// gradient or state buffer that aliases another tensor).
fn check_disjoint(refs: &[&TensorRef]) -> PyResult<()> {
    let mut spans: Vec<(usize, usize, usize)> = refs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.numel > 0)
        .map(|(i, r)| (r.addr, r.addr + r.bytes(), i))
        .collect();
    spans.sort_unstable();
    for w in spans.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(value_error(format!(
                "{} and {} share memory; every parameter, gradient and state buffer stepped must be a distinct tensor",
                refs[w[0].2].what, refs[w[1].2].what
            )));
        }
    }
    Ok(())
}

/// # Safety
/// `r` was checked by [`tensor_ref`] as a dense f32 tensor whose Python
/// object stays alive, and no other slice of this call overlaps it.
unsafe fn f32_slice<'a>(r: &TensorRef) -> &'a mut [f32] {
    if r.numel == 0 {
        return &mut [];
    }
    // SAFETY: per the function's contract.
    unsafe { std::slice::from_raw_parts_mut(r.addr as *mut f32, r.numel) }
}

/// # Safety
/// As [`f32_slice`], for a 16-bit tensor.
unsafe fn u16_slice<'a>(r: &TensorRef) -> &'a mut [u16] {
    if r.numel == 0 {
        return &mut [];
    }
    // SAFETY: per the function's contract.
    unsafe { std::slice::from_raw_parts_mut(r.addr as *mut u16, r.numel) }
}

fn half_to_f32(dt: Dt, h: u16) -> f32 {
    match dt {
        Dt::Bf16 => f32::from_bits((h as u32) << 16),
        _ => f16_to_f32(h),
    }
}

fn f32_to_half(dt: Dt, x: f32) -> u16 {
    match dt {
        Dt::Bf16 => {
            // Round to nearest even, as torch's `.to(torch.bfloat16)`; NaN stays NaN.
            let b = x.to_bits();
            if x.is_nan() {
                ((b >> 16) | 0x40) as u16
            } else {
                let round = 0x7fff + ((b >> 16) & 1);
                (b.wrapping_add(round) >> 16) as u16
            }
        }
        _ => f32_to_f16(x),
    }
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalize.
            let mut e = 127 - 15 + 1;
            let mut m = m;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((m & 0x3ff) << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn f32_to_f16(x: f32) -> u16 {
    // Round to nearest even, as torch's `.to(torch.float16)`.
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32;
    let man = b & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if man != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = 1u32 << (shift - 1);
        let rest = m & ((1u32 << shift) - 1);
        let mut r = m >> shift;
        if rest > half || (rest == half && (r & 1) == 1) {
            r += 1;
        }
        return sign | r as u16;
    }
    let mut r = ((e as u32) << 10) | (man >> 13);
    let rest = man & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && (r & 1) == 1) {
        r += 1;
    }
    sign | r as u16
}

/// One parameter of one step, checked.
struct Item {
    group: usize,
    index: usize,
    name: String,
    param: TensorRef,
    /// None only when switching modes (the gradient is not read).
    grad: Option<TensorRef>,
    states: Vec<Option<StateRef>>,
    step: TensorRef,
    steps: u64,
    hessian: Option<TensorRef>,
}

/// A state buffer handed over: f32 or bf16 values, or 8-bit codes with
/// their block scales.
enum StateRef {
    F32(TensorRef),
    Bf16(TensorRef),
    Q8(TensorRef, TensorRef),
}

impl StateRef {
    fn refs(&self) -> Vec<&TensorRef> {
        match self {
            StateRef::F32(r) | StateRef::Bf16(r) => vec![r],
            StateRef::Q8(c, s) => vec![c, s],
        }
    }
}

/// A state buffer the engine created or re-encoded in a step, handed back:
/// `(kind, values as native-endian bytes, 8-bit block scales or empty)`,
/// kind `f32`, `bf16` or `q8`.
fn export_state(t: &StateTensor) -> (&'static str, Vec<u8>, Vec<u8>) {
    if let Some((codes, scales, _)) = t.q8_parts() {
        let sc = scales.iter().flat_map(|x| x.to_ne_bytes()).collect();
        return ("q8", codes.to_vec(), sc);
    }
    if let Some(bits) = t.bf16_bits() {
        return ("bf16", bits.iter().flat_map(|x| x.to_ne_bytes()).collect(), Vec::new());
    }
    let v = t.to_vec();
    ("f32", v.iter().flat_map(|x| x.to_ne_bytes()).collect(), Vec::new())
}

/// A state buffer handed back: `(group, index, buffer name, kind, values, scales)`.
type Created = (usize, usize, String, &'static str, Py<PyBytes>, Py<PyBytes>);

/// One engine per parameter group, with the registry name it was built for.
type Engines = Vec<Option<(String, Box<dyn Optimizer>)>>;

/// The engines of one `optimist.torch` optimizer, one per parameter group.
#[pyclass(module = "optimist._optimist")]
struct Stepper {
    /// In a mutex only to make the class `Sync`; `&mut self` methods use `get_mut`.
    engines: std::sync::Mutex<Engines>,
    /// The execution options the engines were last given.
    exec: Option<ExecOptions>,
    /// State storage of every engine.
    state_dtype: DType,
    types: TorchTypes,
}

fn seq<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if let Ok(l) = obj.downcast::<PyList>() {
        return Ok(l.iter().collect());
    }
    if let Ok(t) = obj.downcast::<PyTuple>() {
        return Ok(t.iter().collect());
    }
    Err(value_error(format!("{what}: expected a list or tuple")))
}

#[pymethods]
impl Stepper {
    /// `types` = (torch.float32, torch.bfloat16, torch.float16,
    /// torch.strided, torch.uint8); `state_dtype` = `f32`, `bf16` or `q8`
    /// (the core's state storage, for every group).
    #[new]
    #[pyo3(signature = (types, state_dtype = "f32"))]
    fn new(types: TypesArg, state_dtype: &str) -> PyResult<Self> {
        let state_dtype = DType::parse(state_dtype).map_err(py_err)?;
        Ok(Stepper {
            engines: std::sync::Mutex::new(Vec::new()),
            exec: None,
            state_dtype,
            types: TorchTypes::new(types),
        })
    }

    /// One step over all groups. `groups` is a list of
    /// `(optimizer name, hyperparameters as JSON, steps taken by the group,
    /// cautious masking on, optimizer-wide state values or None (a new
    /// group: initial values), [(index, param, grad, [state tensor or None
    /// per buffer], step tensor, hessian or None[, name or None])])`; the
    /// name, where given, is what name-aware rules (AdamMini) read, else the
    /// parameter is named by its index. Names are unique within a group.
    /// A state entry is None (not yet created), a float32 or bfloat16
    /// tensor, or a tuple (uint8 codes, float32 block scales) of 8-bit state.
    /// Returns `(created, globals)`: the state buffers the engine created or
    /// re-encoded in this step as `(group, index, buffer name, kind, values,
    /// scales)` (see [`export_state`]), which the caller turns into tensors
    /// that later steps update in place; and each group's optimizer-wide
    /// state values after the step.
    #[allow(clippy::type_complexity)]
    fn step(
        &mut self,
        py: Python<'_>,
        groups: &Bound<'_, PyAny>,
        threads: usize,
    ) -> PyResult<(Vec<Created>, Vec<Vec<f64>>)> {
        self.run(py, groups, threads, None)
    }

    /// Puts the parameters of `groups` (as for [`Stepper::step`]) at the
    /// training point (`train` true) or the evaluation point (schedule-free
    /// rules; a no-op for the others). Returns as [`Stepper::step`].
    #[allow(clippy::type_complexity)]
    fn set_mode(
        &mut self,
        py: Python<'_>,
        groups: &Bound<'_, PyAny>,
        threads: usize,
        train: bool,
    ) -> PyResult<(Vec<Created>, Vec<Vec<f64>>)> {
        let mode = if train { Mode::Train } else { Mode::Eval };
        self.run(py, groups, threads, Some(mode))
    }
}

impl Stepper {
    /// [`Stepper::step`] (`mode` None) or [`Stepper::set_mode`].
    #[allow(clippy::type_complexity)]
    fn run(
        &mut self,
        py: Python<'_>,
        groups: &Bound<'_, PyAny>,
        threads: usize,
        mode: Option<Mode>,
    ) -> PyResult<(Vec<Created>, Vec<Vec<f64>>)> {
        if threads == 0 || threads > 4096 {
            return Err(value_error(format!(
                "threads: {threads} must be from 1 to 4096"
            )));
        }
        let groups = seq(groups, "groups")?;
        let engines = match self.engines.get_mut() {
            Ok(e) => e,
            Err(poisoned) => poisoned.into_inner(),
        };
        if engines.len() < groups.len() {
            engines.resize_with(groups.len(), || None);
        }
        let exec = ExecOptions {
            threads,
            state_dtype: self.state_dtype,
            ..ExecOptions::default()
        };
        let mut items: Vec<Item> = Vec::new();
        let mut group_steps = Vec::with_capacity(groups.len());
        for (gi, g) in groups.iter().enumerate() {
            let (name, hparams, steps, cautious, globals, params): (
                String,
                String,
                u64,
                bool,
                Option<Vec<f64>>,
                Bound<'_, PyAny>,
            ) = g.extract()?;
            let cfg: Value = serde_json::from_str(&hparams).map_err(|e| {
                value_error(format!("{name}: hyperparameters are not valid JSON: {e}"))
            })?;
            let slot = &mut engines[gi];
            match slot {
                // A group without optimizer-wide state yet starts from a new engine's.
                Some((n, opt)) if *n == name && (globals.is_some() || opt.global_state().is_empty()) => {
                    opt.set_config(cfg).map_err(py_err)?
                }
                _ => {
                    let mut opt = registry::build(&name, &cfg).map_err(py_err)?;
                    opt.set_exec_options(exec).map_err(py_err)?;
                    *slot = Some((name.clone(), opt));
                }
            }
            let Some((_, opt)) = slot.as_mut() else {
                unreachable!("slot filled above")
            };
            if self.exec != Some(exec) {
                opt.set_exec_options(exec).map_err(py_err)?;
            }
            opt.set_cautious(cautious).map_err(py_err)?;
            if let Some(values) = &globals {
                opt.set_global_state(values).map_err(py_err)?;
            }
            let Some(names) = opt.state_buffer_names() else {
                return Err(value_error(format!(
                    "{name}: this optimizer keeps its state internally and cannot step torch tensors in place"
                )));
            };
            group_steps.push(steps);
            let mut names_seen = std::collections::HashSet::new();
            for (k, it) in seq(&params, "params")?.into_iter().enumerate() {
                let t = it
                    .downcast::<PyTuple>()
                    .map_err(|_| value_error(format!("group {gi}, item {k}: expected a tuple")))?;
                if t.len() != 6 && t.len() != 7 {
                    return Err(value_error(format!(
                        "group {gi}, item {k}: expected 6 or 7 entries, got {}",
                        t.len()
                    )));
                }
                let index: usize = t.get_item(0)?.extract()?;
                let pname = What { role: Role::Param, index, group: gi };
                let param = tensor_ref(&t.get_item(1)?, pname, &self.types)?;
                if param.dt == Dt::U8 {
                    return Err(value_error(format!(
                        "{pname}: dtype uint8 is not supported (float32, bfloat16 or float16)"
                    )));
                }
                let g = t.get_item(2)?;
                let grad = if g.is_none() && mode.is_some() {
                    None
                } else {
                    let grad = tensor_ref(&g, pname.with(Role::Grad), &self.types)?;
                    if grad.numel != param.numel || grad.dt != param.dt {
                        let gshape = g.getattr(intern!(py, "shape"))?;
                        return Err(value_error(format!(
                            "gradient of {pname}: {:?} {gshape} does not match the parameter's {:?} {:?}",
                            grad.dt, param.dt, param.shape
                        )));
                    }
                    Some(grad)
                };
                let st_objs = seq(&t.get_item(3)?, "state")?;
                if st_objs.len() != names.len() {
                    return Err(value_error(format!(
                        "state of {pname}: {} buffers given, expected {}",
                        st_objs.len(),
                        names.len()
                    )));
                }
                let mut states = Vec::with_capacity(names.len());
                for (o, b) in st_objs.iter().zip(names.iter()) {
                    if o.is_none() {
                        states.push(None);
                        continue;
                    }
                    states.push(Some(state_ref(o, pname.with(Role::State(b)), &self.types)?));
                }
                let step = tensor_ref(&t.get_item(4)?, pname.with(Role::Step), &self.types)?;
                if step.dt != Dt::F32 || step.numel != 1 {
                    return Err(value_error(format!(
                        "{}: expected a float32 tensor with one value",
                        step.what
                    )));
                }
                // SAFETY: checked above; read only.
                let sv = unsafe { f32_slice(&step) }[0];
                if !(sv.is_finite() && sv >= 0.0 && sv.fract() == 0.0 && sv < 16_777_216.0) {
                    return Err(value_error(format!(
                        "{}: invalid step count {sv}",
                        step.what
                    )));
                }
                let h = t.get_item(5)?;
                let hessian = if h.is_none() {
                    None
                } else {
                    let r = tensor_ref(&h, pname.with(Role::Hessian), &self.types)?;
                    if r.dt != Dt::F32 || r.numel != param.numel {
                        return Err(value_error(format!(
                            "{}: expected float32 with {} values",
                            r.what, param.numel
                        )));
                    }
                    Some(r)
                };
                let given = if t.len() == 7 { t.get_item(6)? } else { py.None().into_bound(py) };
                let name = if given.is_none() {
                    format!("{index}")
                } else {
                    let n: String = given.extract().map_err(|_| {
                        value_error(format!("{pname}: the parameter's name must be a str"))
                    })?;
                    if !names_seen.insert(n.clone()) {
                        return Err(value_error(format!(
                            "{pname}: parameter name '{n}' appears twice in its group"
                        )));
                    }
                    n
                };
                items.push(Item {
                    group: gi,
                    index,
                    name,
                    param,
                    grad,
                    states,
                    step,
                    steps: sv as u64,
                    hessian,
                });
            }
        }
        self.exec = Some(exec);
        {
            let mut refs: Vec<&TensorRef> = Vec::new();
            for it in &items {
                refs.push(&it.param);
                refs.extend(it.grad.iter());
                refs.push(&it.step);
                refs.extend(it.states.iter().flatten().flat_map(|s| s.refs()));
                refs.extend(it.hessian.iter());
            }
            check_disjoint(&refs)?;
        }

        // Half-precision parameters step on f32 copies (their state is f32);
        // a missing gradient (mode switch) is zeros.
        let mut copies: Vec<(Option<Vec<f32>>, Option<Vec<f32>>)> = items
            .iter()
            .map(|it| {
                let half = it.param.dt != Dt::F32;
                // SAFETY: checked dense 16-bit tensors, alive, disjoint.
                let value = half.then(|| {
                    let p = unsafe { u16_slice(&it.param) };
                    p.iter().map(|&h| half_to_f32(it.param.dt, h)).collect()
                });
                let grad = match &it.grad {
                    None => Some(vec![0.0; it.param.numel]),
                    Some(g) if half => {
                        // SAFETY: as above.
                        let g16 = unsafe { u16_slice(g) };
                        Some(g16.iter().map(|&h| half_to_f32(it.param.dt, h)).collect())
                    }
                    Some(_) => None,
                };
                (value, grad)
            })
            .collect();

        #[allow(clippy::type_complexity)]
        let result: Result<Vec<(usize, usize, String, (&'static str, Vec<u8>, Vec<u8>))>, Error> =
            py.allow_threads(|| {
            // Swap the torch state tensors in.
            let mut swapped = 0;
            let mut res: Result<(), Error> = Ok(());
            for it in &items {
                let Some((_, opt)) = engines[it.group].as_mut() else {
                    unreachable!("engine built above")
                };
                let mut bufs: Vec<StateTensor> = Vec::with_capacity(it.states.len());
                for st in &it.states {
                    // SAFETY (all three): checked dense CPU tensors of the
                    // right dtype, kept alive by the caller's objects for
                    // this call, disjoint from every other tensor of the
                    // call; swapped out again below.
                    let t = match st {
                        None => Ok(StateTensor::default()),
                        Some(StateRef::F32(r)) => Ok(unsafe { StateTensor::borrowed(r.addr as *mut f32, r.numel) }),
                        Some(StateRef::Bf16(r)) => {
                            Ok(unsafe { StateTensor::borrowed_bf16(r.addr as *mut u16, r.numel) })
                        }
                        Some(StateRef::Q8(c, sc)) => unsafe {
                            StateTensor::borrowed_q8(
                                c.addr as *mut u8,
                                c.numel,
                                sc.addr as *mut f32,
                                sc.numel,
                                exec.q8_block,
                            )
                        }
                        .map_err(|e| Error::Input(format!("state of {}: {e}", c.what))),
                    };
                    match t {
                        Ok(t) => bufs.push(t),
                        Err(e) => {
                            res = Err(e);
                            break;
                        }
                    }
                }
                if res.is_err() {
                    break;
                }
                res = opt.swap_state(&it.name, it.param.numel, it.steps, &mut bufs);
                if res.is_err() {
                    break;
                }
                swapped += 1;
            }
            if res.is_ok() {
                for (gi, eng) in engines.iter_mut().enumerate() {
                    let Some((_, opt)) = eng.as_mut() else {
                        continue;
                    };
                    if gi >= group_steps.len() {
                        break;
                    }
                    let mut views: Vec<ParamMut<'_>> = Vec::new();
                    for (it, (vcopy, gcopy)) in items.iter().zip(copies.iter_mut()) {
                        if it.group != gi {
                            continue;
                        }
                        // SAFETY: checked, alive and disjoint (see above).
                        let value = match vcopy {
                            Some(v) => v.as_mut_slice(),
                            None => unsafe { f32_slice(&it.param) },
                        };
                        let grad = match (gcopy, &it.grad) {
                            (Some(g), _) => g.as_mut_slice(),
                            // SAFETY: as above.
                            (None, Some(g)) => unsafe { f32_slice(g) },
                            (None, None) => unreachable!("a missing gradient has a copy"),
                        };
                        views.push(ParamMut {
                            name: &it.name,
                            shape: &it.param.shape,
                            value,
                            grad,
                            // SAFETY: as above (read only).
                            hessian: it.hessian.as_ref().map(|h| &*unsafe { f32_slice(h) }),
                        });
                    }
                    if views.is_empty() {
                        continue;
                    }
                    res = match mode {
                        None => opt
                            .set_step_count(group_steps[gi])
                            .and_then(|_| opt.step(&mut views)),
                        Some(m) => opt.set_mode(m, &mut views),
                    };
                    if res.is_err() {
                        break;
                    }
                }
            }
            // Always swap every borrowed buffer out again; keep what the engine created.
            let mut created = Vec::new();
            for it in items.iter().take(swapped) {
                let Some((_, opt)) = engines[it.group].as_mut() else {
                    continue;
                };
                let Some(names) = opt.state_buffer_names() else {
                    continue;
                };
                let mut bufs: Vec<StateTensor> = vec![StateTensor::default(); names.len()];
                let out = opt.swap_state(&it.name, it.param.numel, 0, &mut bufs);
                if out.is_ok() {
                    for (t, b) in bufs.into_iter().zip(names.iter()) {
                        if t.is_allocated() && !t.is_borrowed() {
                            created.push((it.group, it.index, b.to_string(), export_state(&t)));
                        }
                    }
                } else if res.is_ok() {
                    res = out.map(|_| ());
                }
            }
            res.map(|_| created)
        });
        let created = result.map_err(py_err)?;
        for (it, (vcopy, _)) in items.iter().zip(copies.iter()) {
            if let Some(p) = vcopy {
                // SAFETY: checked dense 16-bit tensor, alive, disjoint.
                let dst = unsafe { u16_slice(&it.param) };
                for (d, &x) in dst.iter_mut().zip(p.iter()) {
                    *d = f32_to_half(it.param.dt, x);
                }
            }
            if mode.is_none() {
                // SAFETY: checked f32 scalar, alive, disjoint.
                let step = unsafe { f32_slice(&it.step) };
                step[0] = (it.steps + 1) as f32;
            }
        }
        let globals = engines
            .iter()
            .take(group_steps.len())
            .map(|e| e.as_ref().map(|(_, o)| o.global_state()).unwrap_or_default())
            .collect();
        let created = created
            .into_iter()
            .map(|(g, i, b, (kind, values, scales))| {
                let values = PyBytes::new(py, &values).unbind();
                let scales = PyBytes::new(py, &scales).unbind();
                (g, i, b, kind, values, scales)
            })
            .collect();
        Ok((created, globals))
    }
}

/// An optimizer whose step re-evaluates the loss through a Python closure
/// (L-BFGS), for all parameters of its one group. Its state stays in the
/// engine; the package converts it to and from torch's layout.
///
/// The engine steps on copies of the parameter values: before every
/// evaluation the values are written into the parameters (checked afresh,
/// as the closure may have replaced a tensor's storage) and afterwards the
/// gradients are copied back, so no pointer into a torch tensor is held
/// while Python code runs.
#[pyclass(module = "optimist._optimist")]
struct ClosureStepper {
    /// In a mutex only to make the class `Sync`; `&mut self` methods use `get_mut`.
    opt: std::sync::Mutex<Box<dyn Optimizer>>,
    types: TorchTypes,
}

/// Checks `params` (float32, dense, CPU, disjoint) afresh.
fn closure_params(params: &[Bound<'_, PyAny>], types: &TorchTypes) -> PyResult<Vec<TensorRef>> {
    let mut refs = Vec::with_capacity(params.len());
    for (index, p) in params.iter().enumerate() {
        let r = tensor_ref(p, What { role: Role::Param, index, group: 0 }, types)?;
        if r.dt != Dt::F32 {
            return Err(value_error(format!(
                "{}: dtype {:?}: this optimizer steps float32 parameters only",
                r.what, r.dt
            )));
        }
        refs.push(r);
    }
    check_disjoint(&refs.iter().collect::<Vec<_>>())?;
    Ok(refs)
}

/// Sets `opt`'s hyperparameters from JSON, checked; unchanged on error.
fn set_hparams(opt: &mut dyn Optimizer, hparams: &str) -> PyResult<()> {
    let cfg: Value = serde_json::from_str(hparams)
        .map_err(|e| value_error(format!("{}: hyperparameters are not valid JSON: {e}", opt.name())))?;
    opt.set_config(cfg).map_err(py_err)
}

/// Writes `values` into `params`, checked afresh (the closure may have
/// replaced a tensor's storage since the step began).
fn write_values<'a>(
    params: &[Bound<'_, PyAny>],
    values: impl Iterator<Item = &'a [f32]>,
    types: &TorchTypes,
) -> PyResult<()> {
    let refs = closure_params(params, types)?;
    for (r, v) in refs.iter().zip(values) {
        if r.numel != v.len() {
            return Err(value_error(format!(
                "{}: holds {} values, {} when the step began",
                r.what,
                r.numel,
                v.len()
            )));
        }
        // SAFETY: checked just above; no Python code runs between the
        // check and the copy.
        unsafe { f32_slice(r) }.copy_from_slice(v);
    }
    Ok(())
}

#[pymethods]
impl ClosureStepper {
    /// `types` as for `Stepper`; `name` a registry optimizer.
    #[new]
    fn new(types: TypesArg, name: &str) -> PyResult<Self> {
        let opt = registry::build(name, &Value::Null).map_err(py_err)?;
        Ok(ClosureStepper {
            opt: std::sync::Mutex::new(opt),
            types: TorchTypes::new(types),
        })
    }

    /// One step with hyperparameters `hparams` (JSON) over `params`;
    /// `closure()` evaluates the loss and fills the parameters' `.grad`
    /// (None counts as zeros). Returns the loss of the first evaluation.
    fn step(
        &mut self,
        py: Python<'_>,
        hparams: &str,
        params: Vec<Bound<'_, PyAny>>,
        closure: Bound<'_, PyAny>,
    ) -> PyResult<f64> {
        let opt = self.opt.get_mut().map_err(|_| PyRuntimeError::new_err("optimizer lock poisoned"))?;
        set_hparams(opt.as_mut(), hparams)?;
        let types = &self.types;
        let refs = closure_params(&params, types)?;
        let shapes: Vec<Vec<usize>> = refs.iter().map(|r| r.shape.clone()).collect();
        let names: Vec<String> = (0..params.len()).map(|i| i.to_string()).collect();
        // SAFETY: checked dense f32 CPU tensors, alive (held by `params`),
        // disjoint; read here, before any Python code runs.
        let mut values: Vec<Vec<f32>> = refs.iter().map(|r| unsafe { f32_slice(r) }.to_vec()).collect();
        let mut grads: Vec<Vec<f32>> = refs.iter().map(|r| vec![0.0; r.numel]).collect();
        drop(refs);
        let float = py.import("builtins")?.getattr("float")?;
        let mut raised: Option<PyErr> = None;
        let result = {
            let mut views: Vec<ParamMut<'_>> = names
                .iter()
                .zip(&shapes)
                .zip(values.iter_mut().zip(grads.iter_mut()))
                .map(|((name, shape), (value, grad))| ParamMut {
                    name,
                    shape,
                    value,
                    grad,
                    hessian: None,
                })
                .collect();
            let mut eval = |views: &mut [ParamMut<'_>]| -> optimist_core::Result<f64> {
                let out = (|| -> PyResult<f64> {
                    write_values(&params, views.iter().map(|v| &*v.value), types)?;
                    let loss: f64 = float.call1((closure.call0()?,))?.extract()?;
                    for (index, (p, v)) in params.iter().zip(views.iter_mut()).enumerate() {
                        let g = p.getattr(intern!(py, "grad"))?;
                        if g.is_none() {
                            v.grad.fill(0.0);
                            continue;
                        }
                        let r = tensor_ref(&g, What { role: Role::Grad, index, group: 0 }, types)?;
                        if r.dt != Dt::F32 || r.numel != v.grad.len() {
                            return Err(value_error(format!(
                                "{}: expected float32 with {} values",
                                r.what,
                                v.grad.len()
                            )));
                        }
                        // SAFETY: checked just above; read only.
                        v.grad.copy_from_slice(unsafe { f32_slice(&r) });
                    }
                    Ok(loss)
                })();
                out.map_err(|e| {
                    let msg = e.to_string();
                    raised = Some(e);
                    optimist_core::Error::Input(format!("closure: {msg}"))
                })
            };
            opt.step_with_closure(&mut views, &mut eval)
        };
        if let Some(e) = raised {
            return Err(e);
        }
        let loss = result.map_err(py_err)?;
        // The last values back into the parameters.
        write_values(&params, values.iter().map(Vec::as_slice), types)?;
        Ok(loss)
    }

    /// Sets the hyperparameters (JSON), checked; unchanged on error.
    fn configure(&mut self, hparams: &str) -> PyResult<()> {
        let opt = self.opt.get_mut().map_err(|_| PyRuntimeError::new_err("optimizer lock poisoned"))?;
        set_hparams(opt.as_mut(), hparams)
    }

    /// The state: (buffers as (parameter, name, float32 bytes), scalars).
    #[allow(clippy::type_complexity)]
    fn state_dict(&self, py: Python<'_>) -> PyResult<(Vec<(String, String, Py<PyBytes>)>, Vec<(String, f64)>)> {
        let opt = self.opt.lock().map_err(|_| PyRuntimeError::new_err("optimizer lock poisoned"))?;
        let sd = opt.state_dict();
        let tensors = sd
            .tensors
            .iter()
            .map(|e| {
                let bytes: Vec<u8> = e.values.iter().flat_map(|x| x.to_ne_bytes()).collect();
                (e.param.clone(), e.name.clone(), PyBytes::new(py, &bytes).unbind())
            })
            .collect();
        Ok((tensors, sd.scalars.into_iter().collect()))
    }

    /// Replaces the state (as [`ClosureStepper::state_dict`] gives it);
    /// unchanged on error.
    fn load_state_dict(&mut self, tensors: Vec<(String, String, Vec<u8>)>, scalars: Vec<(String, f64)>) -> PyResult<()> {
        let opt = self.opt.get_mut().map_err(|_| PyRuntimeError::new_err("optimizer lock poisoned"))?;
        let mut sd = optimist_core::state::StateDict::default();
        for (param, name, bytes) in tensors {
            if bytes.len() % 4 != 0 {
                return Err(value_error(format!("state '{name}': {} bytes is not a float32 buffer", bytes.len())));
            }
            let values = bytes.chunks_exact(4).map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect();
            sd.tensors.push(optimist_core::state::StateEntry { param, name, values });
        }
        sd.scalars = scalars.into_iter().collect();
        opt.load_state_dict(&sd).map_err(py_err)
    }
}

/// The compiled core of the `optimist` package.
#[pymodule]
fn _optimist(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(registry_json, m)?)?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    m.add_function(wrap_pyfunction!(check_state_dtype, m)?)?;
    m.add_function(wrap_pyfunction!(glob_match, m)?)?;
    m.add_function(wrap_pyfunction!(embeddings_and_heads, m)?)?;
    m.add_class::<Stepper>()?;
    m.add_class::<ClosureStepper>()?;
    Ok(())
}
