//! Datasets compiled into the crate, so that the default bench suite needs
//! no download: the UCI 8x8 handwritten digits (training and test parts),
//! the UCI breast cancer table and the first 240 KB of Tiny Shakespeare.
//! Their origins, licences and checksums are in `data/README.md` of this
//! crate. Every file is checked against its SHA-256 before it is parsed.

use crate::data::{gunzip, parse_csv, sha256_hex};
use crate::{Error, Result};

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Embedded {
    /// File name under the crate's `data/` folder.
    pub name: &'static str,
    /// SHA-256 of the bytes (lower-case hex).
    pub sha256: &'static str,
    /// The bytes.
    pub bytes: &'static [u8],
}

/// The [`Embedded`] file `data/<name>` of this crate with its SHA-256.
macro_rules! embedded {
    ($name:literal, $sha256:literal) => {
        Embedded {
            name: $name,
            sha256: $sha256,
            bytes: include_bytes!(concat!("../data/", $name)),
        }
    };
}

/// UCI optdigits, training part (3,823 rows), gzipped CSV.
pub const DIGITS_TRAIN: Embedded = embedded!(
    "optdigits.tra.gz",
    "8a8d95daa5a2d60207e90b3c72f6ca8c5c3b9b350c059f5bdaeb63b01e3f1ed1"
);

/// UCI optdigits, test part (1,797 rows), gzipped CSV.
pub const DIGITS_TEST: Embedded = embedded!(
    "optdigits.tes.gz",
    "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
);

/// UCI breast cancer (569 rows of 30 features and a label), CSV.
pub const BREAST_CANCER: Embedded = embedded!(
    "breast_cancer.csv",
    "fed3eb72d0575ef6192293f5093c6e801b1476b577d0386bf4455504522172ed"
);

/// The first 239,976 bytes of Tiny Shakespeare.
pub const SHAKESPEARE_240K: Embedded = embedded!(
    "tinyshakespeare-240k.txt",
    "2404c36aa9d58494028e8a534911eed76544e084f791d6037fe3b36f8faebc41"
);

/// Every embedded file.
pub const ALL: &[Embedded] = &[DIGITS_TRAIN, DIGITS_TEST, BREAST_CANCER, SHAKESPEARE_240K];

/// Checks `bytes` against `sha256`, naming `name` on a mismatch.
pub fn check(name: &str, bytes: &[u8], sha256: &str) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual == sha256 {
        Ok(())
    } else {
        Err(Error::Checksum {
            path: format!("embedded {name}"),
            expected: sha256.to_string(),
            actual,
        })
    }
}

impl Embedded {
    /// The bytes after their checksum is verified.
    pub fn verified(&self) -> Result<&'static [u8]> {
        check(self.name, self.bytes, self.sha256)?;
        Ok(self.bytes)
    }
}

/// Rows of 64 pixel counts (0..=16) and a class (0..=9) from a gzipped
/// optdigits CSV; every value is checked.
pub fn parse_digits(gz: &[u8], what: &str) -> Result<(Vec<[u8; 64]>, Vec<u8>)> {
    let text = String::from_utf8(gunzip(gz, what)?)
        .map_err(|_| Error::Data(format!("{what}: not UTF-8")))?;
    let rows = parse_csv(&text, 0, what)?;
    let mut images = Vec::with_capacity(rows.len());
    let mut labels = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        if r.len() != 65 {
            return Err(Error::Data(format!(
                "{what} row {}: {} fields, expected 64 pixels and a label",
                i + 1,
                r.len()
            )));
        }
        let mut img = [0u8; 64];
        for (j, &v) in r[..64].iter().enumerate() {
            if v.fract() != 0.0 || !(0.0..=16.0).contains(&v) {
                return Err(Error::Data(format!(
                    "{what} row {} pixel {j}: {v} is not an integer in 0..=16",
                    i + 1
                )));
            }
            img[j] = v as u8;
        }
        let l = r[64];
        if l.fract() != 0.0 || !(0.0..=9.0).contains(&l) {
            return Err(Error::Data(format!(
                "{what} row {}: label {l} is not a class 0..=9",
                i + 1
            )));
        }
        images.push(img);
        labels.push(l as u8);
    }
    Ok((images, labels))
}
