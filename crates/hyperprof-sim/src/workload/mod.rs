//! Workloads: deterministic generators of operation streams with a symbol
//! table, able to skip ahead without producing every operation.
//!
//! The machine's cost grows with samples and events, not operations: between
//! sampling points and counter overflows it asks a workload to [`skip`]
//! ahead, which must cost O(1) or O(log n) in the number skipped, and only
//! materialises the operations that are sampled with [`step`].
//!
//! [`skip`]: Workload::skip
//! [`step`]: Workload::step

use crate::event::{Event, EventCounts};
use crate::op::{Op, Symbol};

/// A deterministic operation stream.
///
/// Laws (tested for every generator): for any `n`, `skip(n)` followed by
/// `step()` gives the same operation as `n + 1` calls of `step()`, and the
/// counts `skip(n)` adds equal the sum of [`Op::add_events`] over those `n`
/// operations. `ops_until` agrees with the same stream.
pub trait Workload {
    /// A short name ("stream-copy", "pointer-chase", ...).
    fn name(&self) -> &str;
    /// The functions whose PC ranges the operations fall in.
    fn symbols(&self) -> &[Symbol];
    /// Advances `n` operations without producing them, adding their events.
    fn skip(&mut self, n: u64, counts: &mut EventCounts);
    /// Produces the next operation (its events are not added anywhere).
    fn step(&mut self) -> Op;
    /// The smallest `m <= limit` such that the next `m` operations count
    /// `event` at least `k` times (`k >= 1`), or `limit` if they do not.
    fn ops_until(&self, event: Event, k: u64, limit: u64) -> u64;
}

mod catalog;
mod engine;
mod templates;

pub use catalog::{
    by_name, ArraySum, Branchy, FalseSharing, Mix, PointerChase, Space, StreamCopy, NAMES,
};
pub use templates::{SOURCE_DRAM, SOURCE_L2, SOURCE_LLC, SOURCE_PEER_CORE};
