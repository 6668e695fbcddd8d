//! A small seeded random number generator (SplitMix64 stream, Box-Muller
//! normals), so that probes, initialisations and data orders are
//! reproducible from one seed on every platform, with no dependency. The
//! bit stream is `optimist_core`'s [`SplitMix64`]; this type adds the seed
//! scrambling, stream derivation, paired normals and checkpoint JSON of the
//! adapter.

use optimist_core::rng::SplitMix64;

/// SplitMix64: a 64-bit generator with a full-period state walk.
#[derive(Debug, Clone, PartialEq)]
pub struct Rng {
    bits: SplitMix64,
    spare: Option<f64>,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng {
            bits: SplitMix64::new(seed ^ 0x5851_F42D_4C95_7F2D),
            spare: None,
        }
    }

    /// An independent generator derived from this seed and a stream label.
    pub fn derive(seed: u64, stream: &str) -> Self {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in stream.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x1000_0000_01b3);
        }
        Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ h)
    }

    /// The generator's whole state as JSON (the counter, and the pending
    /// Box-Muller normal as its bit pattern so it survives exactly), for
    /// checkpoints.
    pub fn state(&self) -> serde_json::Value {
        serde_json::json!({
            "state": self.bits.state(),
            "spare_bits": self.spare.map(f64::to_bits),
        })
    }

    /// A generator from [`Rng::state`]'s output.
    pub fn from_state(v: &serde_json::Value) -> Result<Self, String> {
        let state = v
            .get("state")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| format!("random generator state: no unsigned 'state' in {v}"))?;
        let spare = match v.get("spare_bits") {
            None | Some(serde_json::Value::Null) => None,
            Some(b) => Some(f64::from_bits(b.as_u64().ok_or_else(|| {
                format!("random generator state: 'spare_bits' is not an unsigned integer: {b}")
            })?)),
        };
        Ok(Rng {
            bits: SplitMix64::new(state),
            spare,
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.bits.next_u64()
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        self.bits.uniform()
    }

    /// Uniform integer in [0, n) (n > 0), without modulo bias.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }

    /// Standard normal (Box-Muller, both values used).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = loop {
            let u = self.uniform();
            if u > 0.0 {
                break u;
            }
        };
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare = Some(r * s);
        r * c
    }

    /// ±1 with equal probability.
    pub fn rademacher(&mut self) -> f64 {
        if self.next_u64() >> 63 == 0 {
            -1.0
        } else {
            1.0
        }
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_and_state_are_pinned() {
        // The adapter's stream for seed 42 (SplitMix64 from 42 ^
        // 0x5851_F42D_4C95_7F2D) and for a derived stream: checkpoints and
        // seeded runs depend on these exact values.
        let mut r = Rng::new(42);
        assert_eq!(r.next_u64(), 0xDB26_F2B8_006B_E934);
        assert_eq!(r.next_u64(), 0x1A5D_397A_7335_284A);
        let saved = r.state();
        assert_eq!(saved["state"], 0x94C0_E7A0_4B2A_7731u64);
        assert_eq!(
            r.uniform(),
            (0x67B3_F7CB_97D0_1B12u64 >> 11) as f64 / 2f64.powi(53)
        );
        let mut back = Rng::from_state(&saved).unwrap();
        assert_eq!(back.next_u64(), 0x67B3_F7CB_97D0_1B12);
        assert_eq!(Rng::derive(7, "probe").next_u64(), 0x8D26_314C_397E_A3FF);
        // A pending Box-Muller normal survives a round trip bit for bit.
        let mut n = Rng::new(3);
        n.normal();
        let mut m = Rng::from_state(&n.state()).unwrap();
        assert_eq!(n.normal().to_bits(), m.normal().to_bits());
        assert_eq!(n, m);
    }
}
