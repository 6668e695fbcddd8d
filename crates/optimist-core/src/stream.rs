//! STREAM-style memory bandwidth with an optimizer's access pattern, run
//! with the same chunking and thread pool as the optimizer steps
//! ([`crate::exec`]), so that an optimizer's speed can be stated as a
//! fraction of what this machine moves in the same process.
//!
//! Pattern `(reads, writes)`: every element of `reads` f32 arrays is read and
//! the first `writes` of them are written back in place (`writes <= reads`),
//! as an optimizer reads parameter, gradient and state and writes parameter
//! and state: AdamW is `(4, 3)`, 28 bytes per element. The kernel is
//! `a_j[i] = (a_0[i] + ... + a_{r-1}[i]) / r` for `j < writes`, with every
//! array holding 1.0, so values stay 1.0 (no denormals, no overflow).

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::exec::{run_on, CHUNK};

/// Largest number of arrays in a pattern.
pub const MAX_STREAMS: usize = 8;

/// Arrays for a bandwidth measurement.
#[derive(Debug)]
pub struct Stream {
    reads: usize,
    writes: usize,
    arrays: Vec<Vec<f32>>,
}

impl Stream {
    /// Allocates `reads` arrays of `n` ones (touched once, so that pages are
    /// mapped before timing).
    pub fn new(n: usize, reads: usize, writes: usize) -> Result<Self> {
        if reads == 0 || reads > MAX_STREAMS || writes > reads {
            return Err(Error::Input(format!(
                "pattern {reads},{writes}: need 1 <= reads <= {MAX_STREAMS} and writes <= reads"
            )));
        }
        if n == 0 {
            return Err(Error::Input("params: must be at least 1".into()));
        }
        Ok(Stream {
            reads,
            writes,
            arrays: (0..reads).map(|_| vec![1.0f32; n]).collect(),
        })
    }

    /// Bytes moved by one sweep.
    pub fn bytes(&self) -> usize {
        self.arrays[0].len() * 4 * (self.reads + self.writes)
    }

    /// One sweep over all arrays on `threads` threads.
    pub fn sweep(&mut self, threads: usize) -> Result<()> {
        let (r, w) = (self.reads, self.writes);
        let n = self.arrays[0].len();
        // Tasks of CHUNK elements: slices of every array over the same range.
        let mut tasks: Vec<[&mut [f32]; MAX_STREAMS]> = Vec::with_capacity(n / CHUNK + 1);
        let mut iters: Vec<_> = self
            .arrays
            .iter_mut()
            .map(|a| a.chunks_mut(CHUNK))
            .collect();
        'outer: loop {
            let mut t: [&mut [f32]; MAX_STREAMS] = Default::default();
            for (slot, it) in t.iter_mut().zip(iters.iter_mut()) {
                match it.next() {
                    Some(c) => *slot = c,
                    None => break 'outer,
                }
            }
            tasks.push(t);
        }
        let work = move |t: [&mut [f32]; MAX_STREAMS]| dispatch(r, w, t);
        run_on(threads, move || {
            if threads <= 1 {
                tasks.into_iter().for_each(work);
            } else {
                tasks.into_par_iter().with_max_len(1).for_each(work);
            }
        })
    }
}

fn dispatch(r: usize, w: usize, t: [&mut [f32]; MAX_STREAMS]) {
    #[cfg(target_arch = "x86_64")]
    {
        if crate::cpu::has_avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
            unsafe { kernel_avx2(r, w, t) };
            return;
        }
    }
    kernel(r, w, t)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(r: usize, w: usize, t: [&mut [f32]; MAX_STREAMS]) {
    kernel(r, w, t)
}

#[inline(always)]
fn kernel(r: usize, w: usize, t: [&mut [f32]; MAX_STREAMS]) {
    macro_rules! dispatch {
        ($(($R:literal, $W:literal)),*) => {
            match (r, w) {
                $(($R, $W) => fixed::<$R, $W>(t),)*
                _ => {}
            }
        };
    }
    dispatch!(
        (1, 0),
        (1, 1),
        (2, 0),
        (2, 1),
        (2, 2),
        (3, 0),
        (3, 1),
        (3, 2),
        (3, 3),
        (4, 0),
        (4, 1),
        (4, 2),
        (4, 3),
        (4, 4),
        (5, 0),
        (5, 1),
        (5, 2),
        (5, 3),
        (5, 4),
        (5, 5),
        (6, 0),
        (6, 1),
        (6, 2),
        (6, 3),
        (6, 4),
        (6, 5),
        (6, 6),
        (7, 0),
        (7, 1),
        (7, 2),
        (7, 3),
        (7, 4),
        (7, 5),
        (7, 6),
        (7, 7),
        (8, 0),
        (8, 1),
        (8, 2),
        (8, 3),
        (8, 4),
        (8, 5),
        (8, 6),
        (8, 7),
        (8, 8)
    );
}

#[inline(always)]
#[allow(clippy::needless_range_loop)]
fn fixed<const R: usize, const W: usize>(t: [&mut [f32]; MAX_STREAMS]) {
    let n = t[0].len();
    if t[..R].iter().any(|s| s.len() < n) || W > R {
        return;
    }
    let mut it = t.into_iter();
    let a: [&mut [f32]; R] = std::array::from_fn(|_| {
        let s = it.next().unwrap_or_default();
        &mut s[..n]
    });
    let inv = 1.0 / R as f32;
    if W == 0 {
        // Read-only: a reduction, kept so that the reads are not optimized away.
        let mut acc = [0f32; 16];
        for i in 0..n {
            let mut s = 0.0;
            for k in 0..R {
                s += a[k][i];
            }
            acc[i % 16] += s;
        }
        std::hint::black_box(acc);
        return;
    }
    for i in 0..n {
        let mut s = 0.0;
        for k in 0..R {
            s += a[k][i];
        }
        let v = s * inv;
        for k in 0..W {
            a[k][i] = v;
        }
    }
}

/// Parses a pattern such as `4,3`.
pub fn parse_pattern(text: &str) -> Result<(usize, usize)> {
    let bad = || {
        Error::Input(format!(
            "pattern '{text}': expected READS,WRITES such as 4,3"
        ))
    };
    let (r, w) = text.split_once(',').ok_or_else(bad)?;
    let r = r.trim().parse().map_err(|_| bad())?;
    let w = w.trim().parse().map_err(|_| bad())?;
    Ok((r, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_keeps_values_and_counts_bytes() {
        let mut s = Stream::new(50_000, 4, 3).unwrap();
        s.sweep(2).unwrap();
        s.sweep(1).unwrap();
        assert!(s.arrays.iter().all(|a| a.iter().all(|&x| x == 1.0)));
        assert_eq!(s.bytes(), 50_000 * 28);
        assert!(Stream::new(10, 2, 3).is_err());
        assert!(Stream::new(10, 9, 1).is_err());
        assert_eq!(parse_pattern("4,3").unwrap(), (4, 3));
        assert!(parse_pattern("4").is_err());
    }
}
