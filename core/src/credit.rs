//! Credit-based backpressure (Flink-style, FLINK-7282), rules C1–C4.
//!
//! The receiver is a consumer's bounded buffer; each assigned partition is a *channel* whose sender
//! is the fetcher. A channel may only deliver as many records as it holds credits (C1: one record,
//! one credit); control events pass without credit (C2). Credits exist only for real buffer space
//! (C3: in-flight ≤ granted ≤ capacity). Each channel owns `exclusive_per_channel` credits; a shared
//! floating pool is lent to channels that announce a backlog. A channel at zero credit stalls only
//! itself (C4).
//!
//! STUB: signatures fixed; implementation and property tests pending.

use crate::types::Tp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreditConfig {
    /// Credits every channel owns while it exists.
    pub exclusive_per_channel: u32,
    /// Credits in the shared floating pool.
    pub floating_max: u32,
    /// Buffer capacity in records; exclusive × channels + floating must never exceed it (C3).
    pub buffer_records_max: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreditError {
    /// A send without a credit (C1).
    NoCredit { tp: Tp, requested: u32, available: u32 },
    /// Adding the channel would grant credits beyond the buffer (C3).
    OverCapacity,
    UnknownChannel(Tp),
}

/// A grant the receiver announces to one channel's sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    pub tp: Tp,
    pub n: u32,
    /// How many of `n` came from the floating pool.
    pub floating: u32,
}

pub struct Credits {
    _cfg: CreditConfig,
}

impl Credits {
    pub fn new(cfg: CreditConfig) -> Self {
        Credits { _cfg: cfg }
    }
    /// Opens a channel and grants its exclusive credits.
    pub fn add_channel(&mut self, _tp: Tp) -> Result<Grant, CreditError> {
        todo!()
    }
    /// Closes a channel; returns the credits it held (unused) so the caller can record them. Records
    /// of this channel still in the buffer are released with `release` as usual or dropped with
    /// `discard`.
    pub fn remove_channel(&mut self, _tp: Tp) -> u32 {
        todo!()
    }
    /// The sender's backlog for a channel (records waiting at the broker).
    pub fn announce_backlog(&mut self, _tp: Tp, _backlog_records: u64) {
        todo!()
    }
    /// Lends floating credits to channels with a backlog; returns the grants made.
    pub fn grant_floating(&mut self, _out: &mut Vec<Grant>) {
        todo!()
    }
    /// Credits the sender of `tp` may use now.
    pub fn available(&self, _tp: Tp) -> u32 {
        todo!()
    }
    /// The sender delivered `n` records into the buffer: consumes `n` credits (C1).
    pub fn consume(&mut self, _tp: Tp, _n: u32) -> Result<(), CreditError> {
        todo!()
    }
    /// `n` records of `tp` left the buffer (processed or dead-lettered): their space is free again;
    /// exclusive credits go back to the channel, floating ones to the pool. Returns grants made.
    pub fn release(&mut self, _tp: Tp, _n: u32, _out: &mut Vec<Grant>) {
        todo!()
    }
    /// Records currently in the buffer (delivered, not released).
    pub fn in_flight(&self) -> u64 {
        todo!()
    }
    /// Credits granted and not yet used, all channels.
    pub fn outstanding(&self) -> u64 {
        todo!()
    }
}
