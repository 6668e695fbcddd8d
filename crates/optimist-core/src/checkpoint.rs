//! Checkpoints: an optimizer's whole state (configuration of every group and
//! wrapper, step counts, schedule positions, wrapper state, buffers), and
//! optionally the parameters, in one safetensors file with JSON metadata.
//!
//! ```no_run
//! use optimist_core::checkpoint::{self, Checkpoint, LoadOptions};
//! use optimist_core::{registry, Param};
//! use serde_json::json;
//!
//! let mut opt = registry::build("adamw", &json!({"lr": 1e-3})).unwrap();
//! let mut w = Param::new("w", vec![2, 2], vec![0.5; 4]).unwrap();
//! w.grad = vec![0.1; 4];
//! opt.step(&mut [w.view()]).unwrap();
//! checkpoint::save("run/ckpt.safetensors", opt.as_ref(), &[(&w).into()]).unwrap();
//!
//! // Later, in a new process: same configuration, load, continue bit-exactly.
//! let mut opt = registry::build("adamw", &json!({"lr": 1e-3})).unwrap();
//! let mut w = Param::new("w", vec![2, 2], vec![0.0; 4]).unwrap();
//! checkpoint::load("run/ckpt.safetensors", opt.as_mut(), &mut [w.view()]).unwrap();
//! ```
//!
//! **File format** (version [`FORMAT_VERSION`], described in
//! `docs/checkpoints.md`): a safetensors file whose `__metadata__` holds
//! `"format": "optimist-checkpoint"` and `"optimist"`: a JSON document with
//! the format version, the optimizer name, its full configuration, the
//! parameters (by name: shape, dtype, tensor), the state buffers (by state
//! parameter key, then buffer name: tensor), the scalars (step counts,
//! schedule positions, wrapper counters; non-finite values as the strings
//! `"NaN"`, `"inf"`, `"-inf"`) and free `extra` JSON for the caller (epoch,
//! data-loader position, a random generator's state). Tensors are
//! little-endian F32: `param/<name>` with the parameter's shape,
//! `state/<param key>/<buffer>` flat.
//!
//! **Loading** checks everything before changing anything: the file's
//! structure (every tensor referenced once, F32, shapes as declared), the
//! format version, the optimizer name and configuration
//! ([`ConfigCheck::Strict`] by default: a difference is an error naming the
//! first differing field), the parameters' names and shapes against the
//! caller's, and that every state entry belongs to one of those parameters.
//! The optimizer's own `load_state_dict` validates the state and is
//! all-or-nothing; the parameters are written last, after everything else
//! has succeeded.
//!
//! **Writing** is atomic: the file is written under a temporary name in the
//! same directory, flushed and fsynced, renamed over the destination, and
//! the directory is fsynced, so a crash leaves either the old or the new
//! checkpoint, never a torn one (a stale temporary file may remain).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::optimizer::Optimizer;
use crate::state::{StateDict, StateEntry};
use crate::tensor::{numel, Param, ParamMut};

/// Value of the `format` metadata key.
pub const FORMAT: &str = "optimist-checkpoint";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// A parameter to save: name, shape and values.
#[derive(Debug, Clone, Copy)]
pub struct ParamRef<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub values: &'a [f32],
}

impl<'a> From<&'a Param> for ParamRef<'a> {
    fn from(p: &'a Param) -> Self {
        ParamRef {
            name: &p.name,
            shape: &p.shape,
            values: &p.data,
        }
    }
}

impl<'a> From<&'a ParamMut<'_>> for ParamRef<'a> {
    fn from(p: &'a ParamMut<'_>) -> Self {
        ParamRef {
            name: p.name,
            shape: p.shape,
            values: p.value,
        }
    }
}

/// A saved parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedParam {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// How the optimizer's configuration is checked on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfigCheck {
    /// The optimizer's configuration must equal the checkpoint's (default).
    #[default]
    Strict,
    /// The checkpoint's configuration is validated and set on the optimizer
    /// (same optimizer name required); restored if the load fails later.
    Adopt,
}

/// Options of [`Checkpoint::restore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    pub config: ConfigCheck,
}

/// An optimizer's state and, optionally, parameters, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Optimizer name ([`Optimizer::name`]).
    pub optimizer: String,
    /// Full configuration ([`Optimizer::config`]).
    pub config: Value,
    /// The state ([`Optimizer::state_dict`]).
    pub state: StateDict,
    /// Saved parameters, sorted by name.
    pub params: Vec<SavedParam>,
    /// Free JSON for the caller (default `{}`).
    pub extra: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaParam {
    shape: Vec<usize>,
    dtype: String,
    tensor: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format_version: u64,
    optimizer: String,
    config: Value,
    params: BTreeMap<String, MetaParam>,
    state: BTreeMap<String, BTreeMap<String, String>>,
    scalars: BTreeMap<String, Value>,
    #[serde(default)]
    extra: Value,
}

/// A tensor of the file: name, shape, values.
type Tensor<'a> = (String, Vec<usize>, &'a [f32]);

fn bad(msg: impl std::fmt::Display) -> Error {
    Error::Input(format!("checkpoint: {msg}"))
}

fn scalar_to_json(v: f64) -> Value {
    match serde_json::Number::from_f64(v) {
        Some(n) => Value::Number(n),
        None if v.is_nan() => Value::String("NaN".into()),
        None if v > 0.0 => Value::String("inf".into()),
        None => Value::String("-inf".into()),
    }
}

fn scalar_from_json(key: &str, v: &Value) -> Result<f64> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| bad(format!("scalar '{key}': {n}"))),
        Value::String(s) if s == "NaN" => Ok(f64::NAN),
        Value::String(s) if s == "inf" => Ok(f64::INFINITY),
        Value::String(s) if s == "-inf" => Ok(f64::NEG_INFINITY),
        other => Err(bad(format!("scalar '{key}' is not a number: {other}"))),
    }
}

impl Checkpoint {
    /// The optimizer's state and configuration, and the given parameters.
    pub fn capture(opt: &dyn Optimizer, params: &[ParamRef<'_>]) -> Result<Self> {
        let mut saved: Vec<SavedParam> = Vec::with_capacity(params.len());
        let mut names = BTreeSet::new();
        for p in params {
            let n = numel(p.shape)?;
            if n != p.values.len() {
                return Err(Error::Shape(format!(
                    "parameter '{}': shape {:?} needs {n} values, got {}",
                    p.name,
                    p.shape,
                    p.values.len()
                )));
            }
            if !names.insert(p.name) {
                return Err(Error::Input(format!(
                    "parameter '{}' given twice to the checkpoint",
                    p.name
                )));
            }
            saved.push(SavedParam {
                name: p.name.to_string(),
                shape: p.shape.to_vec(),
                values: p.values.to_vec(),
            });
        }
        saved.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Checkpoint {
            optimizer: opt.name().to_string(),
            config: opt.config(),
            state: opt.state_dict(),
            params: saved,
            extra: Value::Object(Default::default()),
        })
    }

    /// Sets the caller's free JSON (builder style).
    pub fn with_extra(mut self, extra: Value) -> Self {
        self.extra = extra;
        self
    }

    /// The tensors in file order: (name, shape, values).
    fn tensors(&self) -> Result<Vec<Tensor<'_>>> {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for p in &self.params {
            let key = format!("param/{}", p.name);
            seen.insert(key.clone());
            out.push((key, p.shape.clone(), p.values.as_slice()));
        }
        for e in &self.state.tensors {
            let key = format!("state/{}/{}", e.param, e.name);
            if !seen.insert(key.clone()) {
                return Err(Error::Input(format!(
                    "checkpoint: two state entries would be stored as tensor '{key}'"
                )));
            }
            out.push((key, vec![e.values.len()], e.values.as_slice()));
        }
        Ok(out)
    }

    fn meta(&self, tensors: &[Tensor<'_>]) -> Meta {
        let params = self
            .params
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    MetaParam {
                        shape: p.shape.clone(),
                        dtype: "F32".into(),
                        tensor: format!("param/{}", p.name),
                    },
                )
            })
            .collect();
        let mut state: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (e, (key, _, _)) in self.state.tensors.iter().zip(&tensors[self.params.len()..]) {
            state
                .entry(e.param.clone())
                .or_default()
                .insert(e.name.clone(), key.clone());
        }
        Meta {
            format_version: FORMAT_VERSION,
            optimizer: self.optimizer.clone(),
            config: self.config.clone(),
            params,
            state,
            scalars: self
                .state
                .scalars
                .iter()
                .map(|(k, &v)| (k.clone(), scalar_to_json(v)))
                .collect(),
            extra: self.extra.clone(),
        }
    }

    /// Writes the safetensors bytes to `w`, streaming the tensors.
    pub fn write_to(&self, w: &mut impl Write) -> Result<()> {
        let io = |e: std::io::Error| Error::Io {
            path: "<checkpoint>".into(),
            message: e.to_string(),
        };
        let tensors = self.tensors()?;
        let meta = serde_json::to_string(&self.meta(&tensors))
            .map_err(|e| bad(format!("cannot encode metadata: {e}")))?;
        let mut infos = Vec::with_capacity(tensors.len());
        let mut offset = 0usize;
        for (name, shape, values) in &tensors {
            let n = values.len() * 4;
            infos.push((
                name.clone(),
                TensorInfo {
                    dtype: Dtype::F32,
                    shape: shape.clone(),
                    data_offsets: (offset, offset + n),
                },
            ));
            offset += n;
        }
        let mut info_map = std::collections::HashMap::new();
        info_map.insert("format".to_string(), FORMAT.to_string());
        info_map.insert("optimist".to_string(), meta);
        let metadata = Metadata::new(Some(info_map.into_iter().collect()), infos)
            .map_err(|e| bad(format!("invalid tensor layout: {e:?}")))?;
        let mut header =
            serde_json::to_vec(&metadata).map_err(|e| bad(format!("cannot encode header: {e}")))?;
        header.resize(header.len().div_ceil(8) * 8, b' ');
        w.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(&header).map_err(io)?;
        let mut buf = Vec::with_capacity(1 << 16);
        for (_, _, values) in &tensors {
            for chunk in values.chunks(1 << 14) {
                buf.clear();
                for x in chunk {
                    buf.extend_from_slice(&x.to_le_bytes());
                }
                w.write_all(&buf).map_err(io)?;
            }
        }
        Ok(())
    }

    /// The checkpoint as safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.write_to(&mut v)?;
        Ok(v)
    }

    /// Writes the checkpoint to `path` atomically (temporary file in the
    /// same directory, fsync, rename, fsync of the directory).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let Some(file_name) = path.file_name() else {
            return Err(Error::io(path, "not a file path"));
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = format!(
            ".{}.tmp-{}-{}",
            file_name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let tmp = dir.join(unique);
        let result = (|| -> Result<()> {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| Error::io(&tmp, e))?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            self.write_to(&mut w).map_err(|e| match e {
                Error::Io { message, .. } => Error::io(&tmp, message),
                other => other,
            })?;
            let file = w.into_inner().map_err(|e| Error::io(&tmp, e.error()))?;
            file.sync_all().map_err(|e| Error::io(&tmp, e))?;
            drop(file);
            std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return result;
        }
        sync_dir(&dir)
    }

    /// Reads and checks a checkpoint file (see [`Checkpoint::from_bytes`]).
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| match e {
            Error::Input(m) => Error::Input(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Parses safetensors bytes and checks the structure: format and
    /// version, every tensor F32 with the declared shape and referenced
    /// exactly once, every scalar a number.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e:?}")))?;
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a valid safetensors file: {e:?}")))?;
        let Some(info) = header.metadata() else {
            return Err(bad("no __metadata__ (not an optimist checkpoint)"));
        };
        match info.get("format") {
            Some(f) if f == FORMAT => {}
            Some(f) => return Err(bad(format!("format is '{f}', expected '{FORMAT}'"))),
            None => {
                return Err(bad(
                    "no 'format' in __metadata__ (not an optimist checkpoint)",
                ))
            }
        }
        let raw = info
            .get("optimist")
            .ok_or_else(|| bad("no 'optimist' entry in __metadata__"))?;
        let probe: Value =
            serde_json::from_str(raw).map_err(|e| bad(format!("metadata is not JSON: {e}")))?;
        match probe.get("format_version").and_then(Value::as_u64) {
            Some(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(bad(format!(
                    "format version {v}, this build reads version {FORMAT_VERSION}"
                )))
            }
            None => return Err(bad("metadata has no integer 'format_version'")),
        }
        let meta: Meta =
            serde_json::from_value(probe).map_err(|e| bad(format!("invalid metadata: {e}")))?;

        let mut used = BTreeSet::new();
        let mut take = |tensor: &str, what: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            if !used.insert(tensor.to_string()) {
                return Err(bad(format!("tensor '{tensor}' referenced twice")));
            }
            let view = st
                .tensor(tensor)
                .map_err(|_| bad(format!("{what}: tensor '{tensor}' is missing")))?;
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!(
                    "{what}: tensor '{tensor}' has dtype {:?}, expected F32",
                    view.dtype()
                )));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Ok((view.shape().to_vec(), values))
        };
        let mut params = Vec::with_capacity(meta.params.len());
        for (name, mp) in &meta.params {
            let what = format!("parameter '{name}'");
            if mp.dtype != "F32" {
                return Err(bad(format!(
                    "{what}: dtype {}, this build holds F32 parameters",
                    mp.dtype
                )));
            }
            numel(&mp.shape).map_err(|e| bad(format!("{what}: {e}")))?;
            let (shape, values) = take(&mp.tensor, &what)?;
            if shape != mp.shape {
                return Err(bad(format!(
                    "{what}: tensor shape {shape:?}, metadata says {:?}",
                    mp.shape
                )));
            }
            params.push(SavedParam {
                name: name.clone(),
                shape,
                values,
            });
        }
        let mut state = StateDict::default();
        for (param, buffers) in &meta.state {
            for (buffer, tensor) in buffers {
                let what = format!("state '{param}/{buffer}'");
                let (shape, values) = take(tensor, &what)?;
                if shape.len() != 1 {
                    return Err(bad(format!(
                        "{what}: shape {shape:?}, expected a flat tensor"
                    )));
                }
                state.tensors.push(StateEntry {
                    param: param.clone(),
                    name: buffer.clone(),
                    values,
                });
            }
        }
        for (k, v) in &meta.scalars {
            state.scalars.insert(k.clone(), scalar_from_json(k, v)?);
        }
        if let Some(extra) = st.names().into_iter().find(|n| !used.contains(*n)) {
            return Err(bad(format!(
                "tensor '{extra}' is not described by the metadata"
            )));
        }
        Ok(Checkpoint {
            optimizer: meta.optimizer,
            config: meta.config,
            state,
            params,
            extra: meta.extra,
        })
    }

    /// Checks the checkpoint against `opt` and `params`, then loads the
    /// state into `opt` and the saved values into `params`. With no
    /// `params`, parameters are neither checked nor restored. On error
    /// nothing is changed.
    pub fn restore(
        &self,
        opt: &mut dyn Optimizer,
        params: &mut [ParamMut<'_>],
        options: &LoadOptions,
    ) -> Result<()> {
        if opt.name() != self.optimizer {
            return Err(bad(format!(
                "saved by optimizer '{}', loading into '{}'",
                self.optimizer,
                opt.name()
            )));
        }
        if options.config == ConfigCheck::Strict {
            if let Some(diff) = first_difference("", &self.config, &opt.config()) {
                return Err(bad(format!("configuration differs: {diff}")));
            }
        }
        let order = self.check_params(params)?;
        let old_config = opt.config();
        if options.config == ConfigCheck::Adopt {
            opt.set_config(self.config.clone())
                .map_err(|e| bad(format!("saved configuration rejected: {e}")))?;
        }
        if let Err(e) = opt.load_state_dict(&self.state) {
            if options.config == ConfigCheck::Adopt {
                let _ = opt.set_config(old_config);
            }
            return Err(e);
        }
        for (p, i) in params.iter_mut().zip(order) {
            p.value.copy_from_slice(&self.params[i].values);
        }
        Ok(())
    }

    /// Matches the caller's parameters with the saved ones (same names,
    /// shapes); checks that every state entry belongs to one of them.
    /// Returns, for each given parameter, the index of its saved copy.
    fn check_params(&self, params: &[ParamMut<'_>]) -> Result<Vec<usize>> {
        if params.is_empty() {
            return Ok(Vec::new());
        }
        if self.params.is_empty() {
            return Err(bad(
                "holds no parameters; pass no parameters to load the optimizer state only",
            ));
        }
        let mut order = Vec::with_capacity(params.len());
        let mut seen = BTreeSet::new();
        for p in params {
            p.check()?;
            if !seen.insert(p.name) {
                return Err(Error::Input(format!("parameter '{}' given twice", p.name)));
            }
            let Ok(i) = self
                .params
                .binary_search_by(|s| s.name.as_str().cmp(p.name))
            else {
                return Err(bad(format!(
                    "has no parameter '{}' (it holds {})",
                    p.name,
                    list(self.params.iter().map(|s| s.name.as_str()))
                )));
            };
            let s = &self.params[i];
            if s.shape != p.shape {
                return Err(bad(format!(
                    "parameter '{}' was saved with shape {:?}, the model has {:?}",
                    p.name, s.shape, p.shape
                )));
            }
            order.push(i);
        }
        if let Some(s) = self.params.iter().find(|s| !seen.contains(s.name.as_str())) {
            return Err(bad(format!(
                "holds parameter '{}', which the model does not have",
                s.name
            )));
        }
        let names: Vec<&str> = params.iter().map(|p| p.name).collect();
        let belongs = |key: &str| {
            names
                .iter()
                .any(|n| key == *n || key.ends_with(&format!("/{n}")))
        };
        for e in &self.state.tensors {
            if !belongs(&e.param) {
                return Err(bad(format!(
                    "holds state '{}' for parameter key '{}', which matches none of the model's parameters",
                    e.name, e.param
                )));
            }
        }
        for k in self.state.scalars.keys() {
            let Some(body) = k.strip_suffix("/step") else {
                continue;
            };
            let per_param = body.starts_with("param/") || body.contains("/param/");
            let known = names
                .iter()
                .any(|n| body == format!("param/{n}") || body.ends_with(&format!("/param/{n}")));
            if per_param && !known {
                return Err(bad(format!(
                    "holds step count '{k}' for a parameter the model does not have"
                )));
            }
        }
        Ok(order)
    }
}

fn list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.take(8).collect();
    format!("{v:?}")
}

/// The first place where two configurations differ, as `path: a vs b`.
fn first_difference(path: &str, saved: &Value, current: &Value) -> Option<String> {
    let here = if path.is_empty() { "." } else { path };
    match (saved, current) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(vb) => {
                        if let Some(d) = first_difference(&p, va, vb) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("'{p}' is {va} in the checkpoint, absent now")),
                }
            }
            b.keys()
                .find(|k| !a.contains_key(*k))
                .map(|k| format!("'{path}.{k}' is absent in the checkpoint, {} now", b[k]))
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                return Some(format!(
                    "'{here}' has {} entries in the checkpoint, {} now",
                    a.len(),
                    b.len()
                ));
            }
            a.iter()
                .zip(b)
                .enumerate()
                .find_map(|(i, (x, y))| first_difference(&format!("{path}[{i}]"), x, y))
        }
        (Value::Number(a), Value::Number(b)) if a == b || a.as_f64() == b.as_f64() => None,
        (a, b) if a == b => None,
        (a, b) => Some(format!("'{here}' is {a} in the checkpoint, {b} now")),
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

/// Saves `opt` and `params` to `path` atomically.
pub fn save(path: impl AsRef<Path>, opt: &dyn Optimizer, params: &[ParamRef<'_>]) -> Result<()> {
    Checkpoint::capture(opt, params)?.write(path)
}

/// Loads `path` into `opt` and `params` with [`ConfigCheck::Strict`].
pub fn load(
    path: impl AsRef<Path>,
    opt: &mut dyn Optimizer,
    params: &mut [ParamMut<'_>],
) -> Result<()> {
    Checkpoint::read(path)?.restore(opt, params, &LoadOptions::default())
}
