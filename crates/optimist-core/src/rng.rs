//! A small seeded random number generator for the parts of the library that
//! draw random numbers (Hutchinson probes, update masks), so that runs are
//! reproducible from a seed on every platform and the generator's state can
//! be checkpointed.
//!
//! The generator is SplitMix64 (Steele, Lea & Flood, "Fast splittable
//! pseudorandom number generators", OOPSLA 2014): a 64-bit counter advanced
//! by a fixed odd constant and passed through a bijective mixing function.
//! Its whole state is one `u64`, which [`SplitMix64::state`] exposes for
//! state dicts.

/// SplitMix64 generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

/// The constant SplitMix64 adds to its state per output.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Outputs of [`SplitMix64::next_u64`] that one [`SplitMix64::normal`]
/// takes.
pub const DRAWS_PER_NORMAL: u64 = 2;

/// Normals [`normals_f32`] draws per task on a thread pool.
const NORMALS_PER_TASK: usize = 1 << 14;

/// `out[i]` = the `i`-th [`SplitMix64::normal`] of the stream started from
/// `seed`, rounded to f32: the values of
/// `(0..n).map(|_| rng.normal() as f32)`. Called on a rayon thread pool
/// (inside a step), pieces of [`NORMALS_PER_TASK`] values are drawn in
/// parallel, each from the stream skipped to its first value
/// ([`SplitMix64::skip`]), so the values do not depend on the thread count.
pub fn normals_f32(seed: u64, out: &mut [f32]) {
    let piece = |(k, part): (usize, &mut [f32])| {
        let mut rng = SplitMix64::new(seed);
        rng.skip((k as u64 * NORMALS_PER_TASK as u64).wrapping_mul(DRAWS_PER_NORMAL));
        for x in part {
            *x = rng.normal() as f32;
        }
    };
    if out.len() > NORMALS_PER_TASK && rayon::current_thread_index().is_some() {
        use rayon::prelude::*;
        out.par_chunks_mut(NORMALS_PER_TASK)
            .enumerate()
            .for_each(piece);
    } else {
        out.chunks_mut(NORMALS_PER_TASK).enumerate().for_each(piece);
    }
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The internal state (to save in a checkpoint).
    pub fn state(&self) -> u64 {
        self.state
    }

    /// Restores a state returned by [`SplitMix64::state`].
    pub fn set_state(&mut self, state: u64) {
        self.state = state;
    }

    /// Advances the stream by `n` outputs of [`SplitMix64::next_u64`] at
    /// once (the state is a counter: `n` steps add `n` times the constant).
    pub fn skip(&mut self, n: u64) {
        self.state = self.state.wrapping_add(n.wrapping_mul(GAMMA));
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `true` with probability `p` (`p <= 0` never, `p >= 1` always).
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }

    /// `+1` or `-1` with probability 1/2 each.
    pub fn rademacher(&mut self) -> f32 {
        if self.next_u64() >> 63 == 0 {
            1.0
        } else {
            -1.0
        }
    }

    /// A standard normal number (Box-Muller; one of the pair is used).
    pub fn normal(&mut self) -> f64 {
        // 1 - uniform is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_first_outputs() {
        // Reference outputs of SplitMix64 seeded with 0 (from the published
        // algorithm).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn skip_equals_drawing() {
        for n in [0u64, 1, 2, 7, 1000] {
            let mut a = SplitMix64::new(42);
            for _ in 0..n {
                a.next_u64();
            }
            let mut b = SplitMix64::new(42);
            b.skip(n);
            assert_eq!(a, b, "n = {n}");
        }
        // Wrapping: the counter runs over u64's end.
        let mut a = SplitMix64::new(u64::MAX - 3);
        a.next_u64();
        a.next_u64();
        let mut b = SplitMix64::new(u64::MAX - 3);
        b.skip(2);
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn normals_in_pieces_equal_one_stream_at_any_thread_count() {
        let n_max = 3 * NORMALS_PER_TASK + 5;
        let mut rng = SplitMix64::new(9);
        let plain: Vec<f32> = (0..n_max).map(|_| rng.normal() as f32).collect();
        let sizes = [
            0,
            1,
            NORMALS_PER_TASK - 1,
            NORMALS_PER_TASK,
            NORMALS_PER_TASK + 1,
            2 * NORMALS_PER_TASK,
            n_max,
        ];
        for threads in [1, 2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for &n in &sizes {
                let mut out = vec![f32::NAN; n];
                pool.install(|| normals_f32(9, &mut out));
                let same = out
                    .iter()
                    .zip(&plain)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "n = {n}, {threads} threads");
            }
        }
        let mut alone = vec![0.0f32; n_max];
        normals_f32(9, &mut alone);
        assert!(alone
            .iter()
            .zip(&plain)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn moments() {
        let mut r = SplitMix64::new(7);
        let n = 200_000;
        let (mut s, mut s2, mut ones) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            let x = r.normal();
            s += x;
            s2 += x * x;
            ones += r.rademacher() as f64;
        }
        let n = n as f64;
        assert!((s / n).abs() < 0.01);
        assert!((s2 / n - 1.0).abs() < 0.02);
        assert!((ones / n).abs() < 0.01);
        let mut hits = 0;
        for _ in 0..100_000 {
            hits += r.bernoulli(0.3) as u32;
        }
        assert!((hits as f64 / 1e5 - 0.3).abs() < 0.01);
        assert!(!SplitMix64::new(1).bernoulli(0.0));
        assert!(SplitMix64::new(1).bernoulli(1.0));
    }
}
