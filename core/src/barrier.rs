//! Aligned barrier checkpoints across pipeline stages (rule K3, Flink aligned checkpoints).
//!
//! A stage with several input channels, on receiving checkpoint `id`'s barrier on one channel, blocks
//! that channel until the barrier has arrived on every channel, then forwards the barrier downstream:
//! a barrier never overtakes records. A checkpoint is complete only when every stage acknowledged it.
//!
//! STUB: signatures fixed; implementation and property tests pending.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignError {
    /// A barrier for an older or unknown checkpoint.
    Stale { id: u64 },
    /// Data on a channel that is blocked (would overtake the barrier).
    Blocked { channel: usize },
}

/// Alignment at one stage with `channels` inputs.
pub struct Aligner {
    _channels: usize,
}

impl Aligner {
    pub fn new(_channels: usize) -> Self {
        todo!()
    }
    /// Whether data from `channel` may be processed now (false while it waits for alignment).
    pub fn accepts(&self, _channel: usize) -> bool {
        todo!()
    }
    /// A barrier `id` arrived on `channel`; returns `Some(id)` when aligned on all channels (forward
    /// it downstream and unblock every channel).
    pub fn on_barrier(&mut self, _channel: usize, _id: u64) -> Result<Option<u64>, AlignError> {
        todo!()
    }
}

/// Tracks acknowledgements of checkpoints from `stages` stages.
pub struct Coordinator {
    _stages: usize,
}

impl Coordinator {
    pub fn new(_stages: usize) -> Self {
        todo!()
    }
    /// Starts checkpoint and returns its id (increasing).
    pub fn trigger(&mut self) -> u64 {
        todo!()
    }
    /// Stage `stage` acknowledged `id`; returns true when `id` just became complete.
    pub fn ack(&mut self, _stage: usize, _id: u64) -> bool {
        todo!()
    }
    pub fn last_complete(&self) -> Option<u64> {
        todo!()
    }
}
