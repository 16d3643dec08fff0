//! Seeded random streams and the few samplers the world needs (exponential, gamma, normal,
//! log-normal, Poisson, a cumulative table for discrete choices). Every stream is derived from the
//! run's seed and a fixed stream name, so changing how often one part of the world draws does not
//! perturb the others.

use sluice_core::types::{Rng, SplitMix64};

/// A named random stream of one run.
#[derive(Clone, Debug)]
pub struct Stream(SplitMix64);

impl Stream {
    pub fn new(seed: u64, name: &str) -> Self {
        Stream(SplitMix64(mix(seed ^ fnv(name.as_bytes()))))
    }
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in `[0, 1)`.
    pub fn f64(&mut self) -> f64 {
        self.0.next_f64()
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.u64() as u128 * n as u128) >> 64) as u64
    }
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.f64() < p
    }
    /// Uniform in `[lo, hi)`.
    pub fn range_f64(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }
    pub fn normal(&mut self) -> f64 {
        // Box–Muller; one of the pair is discarded (simplicity over speed).
        let u1 = 1.0 - self.f64();
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
    /// Gamma(shape, scale) by Marsaglia–Tsang (shape < 1 via the boost `U^(1/shape)`).
    pub fn gamma(&mut self, shape: f64, scale: f64) -> f64 {
        if shape <= 0.0 {
            return 0.0;
        }
        if shape < 1.0 {
            let u = 1.0 - self.f64();
            return self.gamma(shape + 1.0, scale) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        // Rejection: accepts with probability > 0.95; bounded for safety.
        for _ in 0..1_000 {
            let x = self.normal();
            let v = 1.0 + c * x;
            if v <= 0.0 {
                continue;
            }
            let v = v * v * v;
            let u = self.f64();
            if u < 1.0 - 0.0331 * x * x * x * x || u.ln() < 0.5 * x * x + d * (1.0 - v + v.ln()) {
                return d * v * scale;
            }
        }
        shape * scale
    }
    /// Poisson(lambda): Knuth's product method for small means, a rounded normal for large ones.
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda.is_nan() || lambda <= 0.0 {
            return 0;
        }
        if lambda < 30.0 {
            let l = (-lambda).exp();
            let mut k = 0u64;
            let mut p = 1.0;
            loop {
                p *= self.f64();
                if p <= l {
                    return k;
                }
                k += 1;
            }
        }
        let x = lambda + lambda.sqrt() * self.normal();
        x.round().max(0.0) as u64
    }
}

/// A cumulative table for drawing an index with given weights.
#[derive(Clone, Debug)]
pub struct Cdf(Vec<f64>);

impl Cdf {
    /// `weights` must be non-empty with a positive sum.
    pub fn new(weights: &[f64]) -> Self {
        let mut acc = 0.0;
        let mut v = Vec::with_capacity(weights.len());
        for w in weights {
            acc += w.max(0.0);
            v.push(acc);
        }
        for x in &mut v {
            *x /= acc;
        }
        Cdf(v)
    }
    pub fn draw(&self, s: &mut Stream) -> usize {
        let u = s.f64();
        self.0.partition_point(|&c| c <= u).min(self.0.len() - 1)
    }
}

/// FNV-1a over bytes (stable across processes; used for stream names and per-record decisions).
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finaliser: a stateless hash of one word.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform draw in `[0, 1)` that depends only on its inputs (per-record decisions such as "is
/// this record poison" must not depend on the order in which records are processed).
pub fn hash_unit(parts: &[u64]) -> f64 {
    let mut h = 0x5157_1CE5_u64;
    for p in parts {
        h = mix(h ^ *p);
    }
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_of(n: usize, mut f: impl FnMut() -> f64) -> f64 {
        (0..n).map(|_| f()).sum::<f64>() / n as f64
    }

    #[test]
    fn samplers_have_the_right_means() {
        let mut s = Stream::new(7, "t");
        type Sampler = Box<dyn FnMut(&mut Stream) -> f64>;
        let cases: Vec<(&str, f64, Sampler)> = vec![
            ("exp", 2.0, Box::new(|s: &mut Stream| s.exp(2.0))),
            (
                "gamma(5,0.5)",
                2.5,
                Box::new(|s: &mut Stream| s.gamma(5.0, 0.5)),
            ),
            (
                "gamma(0.5,2)",
                1.0,
                Box::new(|s: &mut Stream| s.gamma(0.5, 2.0)),
            ),
            (
                "poisson(3)",
                3.0,
                Box::new(|s: &mut Stream| s.poisson(3.0) as f64),
            ),
            (
                "poisson(200)",
                200.0,
                Box::new(|s: &mut Stream| s.poisson(200.0) as f64),
            ),
        ];
        for (name, want, mut f) in cases {
            let got = mean_of(20_000, || f(&mut s));
            assert!(
                (got - want).abs() < want * 0.05,
                "{name}: mean {got}, want {want}"
            );
        }
    }

    #[test]
    fn streams_are_reproducible_and_independent() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut s = Stream::new(1, "a");
                move |_| s.u64()
            })
            .collect();
        let a2: Vec<u64> = (0..4)
            .map({
                let mut s = Stream::new(1, "a");
                move |_| s.u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut s = Stream::new(1, "b");
                move |_| s.u64()
            })
            .collect();
        assert_eq!(a, a2);
        assert_ne!(a, b);
    }

    #[test]
    fn cdf_draws_follow_weights() {
        let cdf = Cdf::new(&[1.0, 0.0, 3.0]);
        let mut s = Stream::new(3, "cdf");
        let mut counts = [0u32; 3];
        for _ in 0..40_000 {
            counts[cdf.draw(&mut s)] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = counts[2] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "share {share}");
    }
}
