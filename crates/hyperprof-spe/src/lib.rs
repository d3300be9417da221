//! Arm Statistical Profiling Extension (SPE) trace codec.
//!
//! - [`packet`]: packet formats and the decoder (DDI0487 D10, "Profiling Data
//!   Packets"), no allocation.
//! - [`encode`]: the packet encoder.
//! - [`op`]: operation subclasses (GCS, SME, memcpy/memset, MTE, SVE...).
//! - [`record`]: records (one sampled operation each), their assembler and
//!   encoder.
//! - [`text`]: Linux perf's text for packets and its `perf report -D` lines.
//! - [`perf_data`]: reading SPE buffers out of perf.data files and writing
//!   them into one.
//!
//! The crate is `no_std` and has no dependencies.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod encode;
pub mod op;
pub mod packet;
pub mod perf_data;
pub mod record;
pub mod text;

pub use encode::{encode, EncodeError};
pub use packet::{decode, OpClass, Packet, PacketError};
pub use record::{Record, RecordDecoder, RecordError, RecordErrorKind};
