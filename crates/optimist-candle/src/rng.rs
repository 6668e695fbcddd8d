//! A small seeded random number generator (SplitMix64 stream, Box-Muller
//! normals), so that probes, initialisations and data orders are
//! reproducible from one seed on every platform, with no dependency.

/// SplitMix64: a 64-bit generator with a full-period state walk.
#[derive(Debug, Clone, PartialEq)]
pub struct Rng {
    state: u64,
    spare: Option<f64>,
}

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Rng {
            state: seed ^ 0x5851_F42D_4C95_7F2D,
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
            "state": self.state,
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
        Ok(Rng { state, spare })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
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
