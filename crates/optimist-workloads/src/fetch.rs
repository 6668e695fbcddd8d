//! `optimist data fetch`: downloads the data files from their public
//! sources into the data directory, verifying each SHA-256 before the file
//! is put in place (a file that does not verify is never written).

use std::path::{Path, PathBuf};

use crate::data::{verify, DataFile, FILES};
use crate::{Error, Result};

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Already present and verified.
    Present,
    /// Downloaded and verified from this URL.
    Downloaded(String),
}

/// The files of the datasets whose directory is one of `sets` (all when
/// `sets` is empty), e.g. `mnist`, `fashion-mnist`.
pub fn select(sets: &[String]) -> Result<Vec<&'static DataFile>> {
    let files: Vec<&DataFile> = FILES
        .iter()
        .filter(|f| sets.is_empty() || sets.iter().any(|s| f.path.starts_with(&format!("{s}/"))))
        .collect();
    for s in sets {
        if !FILES.iter().any(|f| f.path.starts_with(&format!("{s}/"))) {
            let mut known: Vec<&str> = FILES
                .iter()
                .filter_map(|f| f.path.split('/').next())
                .collect();
            known.dedup();
            return Err(Error::Input(format!(
                "unknown dataset '{s}' (known: {})",
                known.join(", ")
            )));
        }
    }
    Ok(files)
}

/// Whether `dir/<file>` exists with the right checksum.
pub fn is_present(dir: &Path, file: &DataFile) -> bool {
    let path = dir.join(file.path);
    std::fs::read(&path).is_ok_and(|b| verify(&path, &b, file.sha256).is_ok())
}

/// Verifies `bytes` as `file` and writes them to `dir/<file>` (through a
/// temporary file, so a partial or wrong file is never left in place).
pub fn store_verified(dir: &Path, file: &DataFile, bytes: &[u8]) -> Result<PathBuf> {
    let path = dir.join(file.path);
    verify(&path, bytes, file.sha256)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}

fn download(url: &str, limit: u64) -> Result<Vec<u8>> {
    let mut resp = ureq::get(url)
        .call()
        .map_err(|e| Error::Fetch(format!("{url}: {e}")))?;
    resp.body_mut()
        .with_config()
        .limit(limit)
        .read_to_vec()
        .map_err(|e| Error::Fetch(format!("{url}: {e}")))
}

/// Fetches every file of `files` that is missing or damaged in `dir`,
/// trying each source in turn; reports progress through `log`.
pub fn fetch(
    dir: &Path,
    files: &[&DataFile],
    log: &mut dyn FnMut(&str),
) -> Result<Vec<(String, Status)>> {
    let mut out = Vec::new();
    for f in files {
        if is_present(dir, f) {
            log(&format!("{}: present, SHA-256 verified", f.path));
            out.push((f.path.to_string(), Status::Present));
            continue;
        }
        let base = f.path.rsplit('/').next().unwrap_or(f.path);
        let mut errors = Vec::new();
        let mut done = None;
        for src in f.sources {
            let url = format!("{src}{base}");
            log(&format!("{}: downloading {url}", f.path));
            match download(&url, f.bytes + 1024).and_then(|b| store_verified(dir, f, &b)) {
                Ok(_) => {
                    done = Some(url);
                    break;
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        match done {
            Some(url) => {
                log(&format!("{}: SHA-256 verified", f.path));
                out.push((f.path.to_string(), Status::Downloaded(url)));
            }
            None => {
                return Err(Error::Fetch(format!(
                    "{}: no source worked: {}",
                    f.path,
                    errors.join("; ")
                )))
            }
        }
    }
    Ok(out)
}
