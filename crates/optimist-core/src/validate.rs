//! Checks shared by every optimizer's configuration validation.
//!
//! Each check returns an [`Error::InvalidHparam`] naming the optimizer, the
//! field and the bad value. NaN fails every check. A configuration's
//! `validate` lists its fields once with [`checks!`](crate::checks).

use std::fmt::Display;

use crate::error::{Error, Result};

/// `Ok` when `ok`, else the error naming `opt`, `field`, `value` and why.
fn require(ok: bool, opt: &str, field: &str, value: impl Display, reason: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::hparam(opt, field, value, reason))
    }
}

/// `value >= 0` and finite.
pub fn non_negative(opt: &str, field: &str, value: f64) -> Result<()> {
    let ok = value.is_finite() && value >= 0.0;
    require(ok, opt, field, value, "must be a finite number >= 0")
}

/// `value > 0` and finite.
pub fn positive(opt: &str, field: &str, value: f64) -> Result<()> {
    let ok = value.is_finite() && value > 0.0;
    require(ok, opt, field, value, "must be a finite number > 0")
}

/// `0 <= value < 1`.
pub fn unit_interval_open(opt: &str, field: &str, value: f64) -> Result<()> {
    let ok = (0.0..1.0).contains(&value);
    require(ok, opt, field, value, "must be in [0, 1)")
}

/// `0 <= value <= 1`.
pub fn unit_interval(opt: &str, field: &str, value: f64) -> Result<()> {
    let ok = (0.0..=1.0).contains(&value);
    require(ok, opt, field, value, "must be in [0, 1]")
}

/// Both entries of a pair of decay rates `field` in `[0, 1)`, named
/// `field[0]` and `field[1]`.
pub fn betas(opt: &str, field: &str, betas: [f64; 2]) -> Result<()> {
    unit_interval_open(opt, &format!("{field}[0]"), betas[0])?;
    unit_interval_open(opt, &format!("{field}[1]"), betas[1])
}

/// Any finite number.
pub fn finite(opt: &str, field: &str, value: f64) -> Result<()> {
    require(
        value.is_finite(),
        opt,
        field,
        value,
        "must be a finite number",
    )
}

/// A count `>= min`.
pub fn at_least(opt: &str, field: &str, value: u64, min: u64) -> Result<()> {
    if value >= min {
        return Ok(());
    }
    Err(Error::hparam(
        opt,
        field,
        value,
        &format!("must be >= {min}"),
    ))
}

/// A count `<= max`.
pub fn at_most(opt: &str, field: &str, value: u64, max: u64) -> Result<()> {
    if value <= max {
        return Ok(());
    }
    Err(Error::hparam(
        opt,
        field,
        value,
        &format!("must be <= {max}"),
    ))
}

/// `value <= 0` and finite.
pub fn non_positive(opt: &str, field: &str, value: f64) -> Result<()> {
    let ok = value.is_finite() && value <= 0.0;
    require(ok, opt, field, value, "must be a finite number <= 0")
}

/// `value >= min` and finite.
pub fn not_below(opt: &str, field: &str, value: f64, min: f64) -> Result<()> {
    if value.is_finite() && value >= min {
        return Ok(());
    }
    let reason = format!("must be a finite number >= {min}");
    Err(Error::hparam(opt, field, value, &reason))
}

/// Checks fields of a configuration, in the order written, with the checks
/// of [`crate::validate`], each naming `Self::NAME` and the field, and
/// evaluates to the first error or `Ok(())`. Each group is a check, the
/// fields it applies to and, after `;`, the check's further arguments:
///
/// ```ignore
/// fn validate(&self) -> Result<()> {
///     crate::checks!(self, non_negative(lr, eps), betas(betas), at_least(update_period; 1))
/// }
/// ```
/// is `v::non_negative(Self::NAME, "lr", self.lr)?`, then `eps`, then
/// `v::betas(Self::NAME, "betas", self.betas)?`, then
/// `v::at_least(Self::NAME, "update_period", self.update_period, 1)`.
#[macro_export]
macro_rules! checks {
    ($cfg:ident, $($check:ident($($field:ident),+ $(; $($arg:expr),+)?)),+ $(,)?) => {{
        $($crate::checks!(@group $cfg, $check, [$($($arg),+)?], $($field),+);)+
        $crate::error::Result::Ok(())
    }};
    (@group $cfg:ident, $check:ident, $args:tt, $($field:ident),+) => {
        $($crate::checks!(@one $cfg, $check, $field, $args);)+
    };
    (@one $cfg:ident, $check:ident, $field:ident, [$($arg:expr),*]) => {
        $crate::validate::$check(Self::NAME, stringify!($field), $cfg.$field $(, $arg)*)?
    };
}
