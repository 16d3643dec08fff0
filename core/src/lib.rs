//! Sluice's flow-control core. Sans-IO: every state machine takes events and `now_us` as arguments
//! and returns decisions; nothing here reads a clock, draws OS randomness, spawns a thread or does IO.
//! The simulator (`sluice-sim`) and real mode (`sluice-real`) drive the same code.
//!
//! - [`credit`]: credit-based backpressure (C1–C4).
//! - [`pause`]: pause/resume backpressure and the "none" strategy.
//! - [`rate`]: token buckets, multi-tier limits, persisted limiter state (R1–R3).
//! - [`assign`]: assignors and eager/cooperative rebalance planning (G1, G3).
//! - [`placement`]: hash vs load-aware placement of hot keys.
//! - [`ledger`]: the offset ledger (K1, K2).
//! - [`barrier`]: aligned barrier checkpoints (K3).
//! - [`retry`]: backoff, retries and the dead-letter decision.
//! - [`pipeline`]: the consumer pipeline composed of all of the above.
//! - [`history`]: the JSON Lines history schema shared by every backend and checker.
//! - [`spec`]: the scenario spec shared by the simulator, real mode and the catalogue.
//! - [`bugs`]: planted bugs that the tests and checkers must catch.

pub mod assign;
pub mod barrier;
pub mod bugs;
pub mod credit;
pub mod history;
pub mod jsonl;
pub mod ledger;
pub mod pause;
pub mod pipeline;
pub mod placement;
pub mod rate;
pub mod retry;
pub mod spec;
pub mod types;

pub use types::{Generation, MemberId, Offset, Rng, SplitMix64, TimeUs, Tp};
