//! Small shared value types. Everything here is `Copy` and cheap: the core's hot paths use these,
//! never strings.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Simulated or real time in microseconds since the start of a run. The core never reads a clock;
/// every state machine takes `now_us` as an argument.
pub type TimeUs = u64;

/// A Kafka offset.
pub type Offset = u64;

/// A consumer-group generation (epoch). Stale generations are fenced.
pub type Generation = u32;

/// A topic-partition. `topic` indexes the run's topic table (the scenario's `topics`, in order);
/// histories write it as `"name/partition"` (Kafka topic names cannot contain `/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Tp {
    pub topic: u16,
    pub partition: u32,
}

impl Tp {
    pub const fn new(topic: u16, partition: u32) -> Self {
        Tp { topic, partition }
    }
}

impl fmt::Display for Tp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}/{}", self.topic, self.partition)
    }
}

/// A group member (consumer) index within a run: `c0`, `c1`, … in histories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberId(pub u32);

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// A deterministic random source injected into the core (retry jitter, load-aware tie breaks).
/// The simulator passes one derived from the seed; real mode passes one seeded from the run id.
pub trait Rng {
    fn next_u64(&mut self) -> u64;

    /// A uniform draw in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// SplitMix64: tiny, fast, good enough for jitter and tie breaks, and trivially reproducible.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl Rng for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
