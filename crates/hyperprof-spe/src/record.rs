//! Records: the packets of one sampled operation, from its first packet to the
//! END or TIMESTAMP packet that closes it.

use crate::encode::{encode, EncodeError};
use crate::packet::{address, address_index, counter_index, decode, OpClass, Packet, PacketError};

/// A code address from a PC or branch-target packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct CodeAddress {
    /// Address bits [55:0], as recorded (not sign extended).
    pub addr: u64,
    /// Exception level the address was executing at.
    pub el: u8,
    /// Non-secure state.
    pub ns: bool,
}

impl CodeAddress {
    fn from_payload(p: u64) -> CodeAddress {
        CodeAddress {
            addr: address::addr(p),
            el: address::el(p),
            ns: address::ns(p),
        }
    }
    fn payload(&self) -> u64 {
        address::pc_payload(self.addr, self.el, self.ns)
    }
    /// The address sign-extended from bit 55, as a profile shows it.
    pub fn virtual_address(&self) -> u64 {
        address::sign_extend(self.addr)
    }
}

/// A data physical address from a PA packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct PhysAddr {
    /// Address bits [55:0].
    pub addr: u64,
    /// Non-secure.
    pub ns: bool,
    /// Checked access (MTE tag checked).
    pub ch: bool,
    /// Physical address tag.
    pub pat: u8,
}

impl PhysAddr {
    fn from_payload(p: u64) -> PhysAddr {
        PhysAddr {
            addr: address::addr(p),
            ns: address::ns(p),
            ch: address::ch(p),
            pat: address::pat(p),
        }
    }
    fn payload(&self) -> u64 {
        address::pa_payload(self.addr, self.ns, self.ch, self.pat)
    }
}

/// The operation type of a record.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct OpType {
    /// Class from the packet header.
    pub class: OpClass,
    /// Subclass payload.
    pub payload: u8,
}

impl OpType {
    /// A store (load/store class, payload bit 0).
    pub fn is_store(&self) -> bool {
        self.class == OpClass::LoadStore && self.payload & 1 != 0
    }
    /// A conditional branch (branch class, payload bit 0).
    pub fn is_conditional(&self) -> bool {
        self.class == OpClass::Branch && self.payload & 1 != 0
    }
}

/// One SPE record: everything its packets said about one sampled operation.
///
/// Address and counter packets with indices this crate does not know, and
/// padding, are not part of the record (the packet stream keeps them).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Record {
    /// Program counter.
    pub pc: Option<CodeAddress>,
    /// Branch target.
    pub branch_target: Option<CodeAddress>,
    /// Previous branch target (FEAT_SPE_PBT).
    pub prev_branch_target: Option<CodeAddress>,
    /// Data virtual address (the whole 64-bit payload, tag byte included).
    pub data_va: Option<u64>,
    /// Data physical address.
    pub data_pa: Option<PhysAddr>,
    /// Operation type.
    pub op: Option<OpType>,
    /// Events bit field (see [`crate::packet::event`]).
    pub events: Option<u64>,
    /// Total latency in cycles.
    pub total_latency: Option<u16>,
    /// Issue latency in cycles.
    pub issue_latency: Option<u16>,
    /// Translation latency in cycles.
    pub translation_latency: Option<u16>,
    /// CONTEXTIDR_EL1 value.
    pub context_el1: Option<u32>,
    /// CONTEXTIDR_EL2 value.
    pub context_el2: Option<u32>,
    /// Data source.
    pub data_source: Option<u64>,
    /// Timestamp; `None` when the record ended with END.
    pub timestamp: Option<u64>,
}

/// Longest record [`Record::encode`] can produce, in bytes.
pub const MAX_RECORD_LEN: usize = 9 + 5 + 5 + 2 + 9 + 3 + 3 + 9 + 9 + 9 + 3 + 9 + 9 + 9;

fn sized(v: u64) -> u8 {
    if v >> 16 == 0 {
        2
    } else if v >> 32 == 0 {
        4
    } else {
        8
    }
}

impl Record {
    /// Folds one packet into the record. Returns true when the packet ends it.
    #[inline(always)]
    pub fn apply(&mut self, p: &Packet) -> bool {
        match *p {
            Packet::End => return true,
            Packet::Timestamp(t) => {
                self.timestamp = Some(t);
                return true;
            }
            Packet::Address { index, payload, .. } => match index {
                address_index::PC => self.pc = Some(CodeAddress::from_payload(payload)),
                address_index::BRANCH_TARGET => {
                    self.branch_target = Some(CodeAddress::from_payload(payload))
                }
                address_index::PREV_BRANCH_TARGET => {
                    self.prev_branch_target = Some(CodeAddress::from_payload(payload))
                }
                address_index::DATA_VIRTUAL => self.data_va = Some(payload),
                address_index::DATA_PHYSICAL => {
                    self.data_pa = Some(PhysAddr::from_payload(payload))
                }
                _ => {}
            },
            Packet::Counter { index, value, .. } => match index {
                counter_index::TOTAL => self.total_latency = Some(value),
                counter_index::ISSUE => self.issue_latency = Some(value),
                counter_index::TRANSLATION => self.translation_latency = Some(value),
                _ => {}
            },
            Packet::Events { bits, .. } => self.events = Some(bits),
            Packet::OpType { class, payload } => self.op = Some(OpType { class, payload }),
            Packet::Context { index: 0, id } => self.context_el1 = Some(id),
            Packet::Context { index: 1, id } => self.context_el2 = Some(id),
            Packet::DataSource { value, .. } => self.data_source = Some(value),
            Packet::Context { .. } | Packet::Pad | Packet::Alignment { .. } => {}
        }
        false
    }

    /// Whether an event bit is set.
    pub fn has_event(&self, bit: u32) -> bool {
        self.events.is_some_and(|e| e >> bit & 1 != 0)
    }

    /// Writes the record's packets in the order a profiling unit emits them
    /// (PC, contexts, operation type, events, issue and total latency, branch
    /// targets, data VA, translation latency, data PA, data source) and ends
    /// it with TIMESTAMP, or END when there is no timestamp.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let mut n = 0;
        let mut put = |p: Packet, n: &mut usize| -> Result<(), EncodeError> {
            let rest = out.get_mut(*n..).unwrap_or(&mut []);
            *n += encode(&p, rest)?;
            Ok(())
        };
        let addr = |index, payload| Packet::Address {
            index,
            payload,
            extended: false,
        };
        let lat = |index, value| Packet::Counter {
            index,
            value,
            extended: false,
        };
        if let Some(pc) = self.pc {
            put(addr(address_index::PC, pc.payload()), &mut n)?;
        }
        if let Some(id) = self.context_el1 {
            put(Packet::Context { index: 0, id }, &mut n)?;
        }
        if let Some(id) = self.context_el2 {
            put(Packet::Context { index: 1, id }, &mut n)?;
        }
        if let Some(op) = self.op {
            put(
                Packet::OpType {
                    class: op.class,
                    payload: op.payload,
                },
                &mut n,
            )?;
        }
        if let Some(bits) = self.events {
            put(
                Packet::Events {
                    size: sized(bits),
                    bits,
                },
                &mut n,
            )?;
        }
        if let Some(v) = self.issue_latency {
            put(lat(counter_index::ISSUE, v), &mut n)?;
        }
        if let Some(v) = self.total_latency {
            put(lat(counter_index::TOTAL, v), &mut n)?;
        }
        if let Some(t) = self.branch_target {
            put(addr(address_index::BRANCH_TARGET, t.payload()), &mut n)?;
        }
        if let Some(t) = self.prev_branch_target {
            put(addr(address_index::PREV_BRANCH_TARGET, t.payload()), &mut n)?;
        }
        if let Some(va) = self.data_va {
            put(addr(address_index::DATA_VIRTUAL, va), &mut n)?;
        }
        if let Some(v) = self.translation_latency {
            put(lat(counter_index::TRANSLATION, v), &mut n)?;
        }
        if let Some(pa) = self.data_pa {
            put(addr(address_index::DATA_PHYSICAL, pa.payload()), &mut n)?;
        }
        if let Some(value) = self.data_source {
            put(
                Packet::DataSource {
                    size: sized(value),
                    value,
                },
                &mut n,
            )?;
        }
        match self.timestamp {
            Some(t) => put(Packet::Timestamp(t), &mut n)?,
            None => put(Packet::End, &mut n)?,
        }
        Ok(n)
    }

    /// Like [`Record::encode`], then fills with PAD up to `size` bytes, the way
    /// implementations write fixed-size records.
    pub fn encode_padded(&self, out: &mut [u8], size: usize) -> Result<usize, EncodeError> {
        let n = self.encode(out)?;
        let available = out.len();
        let pad = out
            .get_mut(n..size.max(n))
            .ok_or(EncodeError::BufferTooSmall {
                needed: size,
                available,
            })?;
        pad.fill(0);
        Ok(size.max(n))
    }
}

/// Why a buffer does not decode into records.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecordErrorKind {
    /// A malformed packet.
    Packet(PacketError),
    /// The buffer ends after complete packets but inside a record (no END or
    /// TIMESTAMP); `PMBSR_EL1.DL` buffers end this way.
    Unterminated,
}

/// A decoding error with the byte offset where it happened.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordError {
    /// Offset of the offending packet (or, for an unterminated record, of its first packet).
    pub offset: usize,
    /// What went wrong.
    pub kind: RecordErrorKind,
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.kind {
            RecordErrorKind::Packet(e) => write!(f, "byte offset {:#x}: {e}", self.offset),
            RecordErrorKind::Unterminated => write!(
                f,
                "byte offset {:#x}: record not terminated by END or TIMESTAMP before the end of the buffer",
                self.offset
            ),
        }
    }
}

/// Iterates over the records of a buffer, yielding each with the offset of its
/// first packet. Stops after the first error.
#[derive(Clone, Debug)]
pub struct RecordDecoder<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    failed: bool,
}

impl<'a> RecordDecoder<'a> {
    /// Decodes `buf`, whose first byte lies at buffer address 0.
    pub fn new(buf: &'a [u8]) -> Self {
        Self::with_base(buf, 0)
    }
    /// Decodes `buf`, whose first byte lies at buffer address `base`
    /// (alignment packets pad to boundaries of that address).
    pub fn with_base(buf: &'a [u8], base: usize) -> Self {
        RecordDecoder {
            buf,
            pos: 0,
            base,
            failed: false,
        }
    }
    /// Byte offset of the next packet to decode.
    pub fn offset(&self) -> usize {
        self.pos
    }
}

impl Iterator for RecordDecoder<'_> {
    type Item = Result<(usize, Record), RecordError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let buf = self.buf;
        // Skip padding between records, eight bytes at a time.
        while let Some(chunk) = buf.get(self.pos..self.pos + 8) {
            let word = u64::from_le_bytes([
                chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7],
            ]);
            if word != 0 {
                self.pos += (word.trailing_zeros() / 8) as usize;
                break;
            }
            self.pos += 8;
        }
        while self.pos < buf.len() && buf[self.pos] == 0 {
            self.pos += 1;
        }
        if self.pos >= buf.len() {
            return None;
        }
        let start = self.pos;
        let mut rec = Record::default();
        while self.pos < buf.len() {
            match decode(&buf[self.pos..], self.base.wrapping_add(self.pos)) {
                Ok((p, n)) => {
                    self.pos += n;
                    if rec.apply(&p) {
                        return Some(Ok((start, rec)));
                    }
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(RecordError {
                        offset: self.pos,
                        kind: RecordErrorKind::Packet(e),
                    }));
                }
            }
        }
        self.failed = true;
        Some(Err(RecordError {
            offset: start,
            kind: RecordErrorKind::Unterminated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            pc: Some(CodeAddress {
                addr: 0xff_8000_1029_d3f4,
                el: 1,
                ns: true,
            }),
            op: Some(OpType {
                class: OpClass::LoadStore,
                payload: 0,
            }),
            events: Some(0x16),
            issue_latency: Some(11),
            total_latency: Some(13),
            data_va: Some(0x00ff_0000_70d8_40d0),
            translation_latency: Some(1),
            data_pa: Some(PhysAddr {
                addr: 0xfb24ebc0,
                ns: true,
                ch: false,
                pat: 0,
            }),
            context_el1: Some(0x1234),
            timestamp: Some(86447955877),
            ..Record::default()
        }
    }

    #[test]
    fn record_round_trips_through_bytes() {
        let r = sample();
        let mut b = [0u8; 128];
        let n = r.encode_padded(&mut b, 64).unwrap();
        assert_eq!(n, 64);
        let mut d = RecordDecoder::new(&b[..n]);
        assert_eq!(d.next(), Some(Ok((0, r))));
        assert_eq!(d.next(), None);
    }

    #[test]
    fn end_terminates_a_record_without_timestamp() {
        let r = Record {
            timestamp: None,
            ..sample()
        };
        let mut b = [0u8; 128];
        let n = r.encode(&mut b).unwrap();
        assert_eq!(b[n - 1], 0x01);
        let got: Vec<_> = RecordDecoder::new(&b[..n]).collect();
        assert_eq!(got, vec![Ok((0, r))]);
    }

    #[test]
    fn unterminated_and_malformed_buffers_report_offsets() {
        let mut b = [0u8; 128];
        let n = sample().encode(&mut b).unwrap();
        // Drop the timestamp: the record has no end.
        let got: Vec<_> = RecordDecoder::new(&b[..n - 9]).collect();
        assert_eq!(
            got,
            vec![Err(RecordError {
                offset: 0,
                kind: RecordErrorKind::Unterminated
            })]
        );
        // Cut the timestamp short: a truncated packet at its offset.
        let got: Vec<_> = RecordDecoder::new(&b[..n - 3]).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].unwrap_err().offset, n - 9);
        // An unknown header.
        b[9] = 0xff;
        let got: Vec<_> = RecordDecoder::new(&b[..n]).collect();
        assert_eq!(
            got,
            vec![Err(RecordError {
                offset: 9,
                kind: RecordErrorKind::Packet(PacketError::UnknownHeader { header: 0xff })
            })]
        );
    }

    #[test]
    fn encode_padded_refuses_short_buffers() {
        let mut b = [0u8; 40];
        assert!(sample().encode_padded(&mut b, 64).is_err());
        let mut b = [0u8; 128];
        assert!(sample().encode_padded(&mut b, 200).is_err());
    }

    #[test]
    fn max_record_len_bounds_every_field_present() {
        let r = Record {
            branch_target: Some(CodeAddress {
                addr: 1,
                el: 0,
                ns: true,
            }),
            prev_branch_target: Some(CodeAddress {
                addr: 2,
                el: 0,
                ns: true,
            }),
            context_el2: Some(7),
            events: Some(u64::MAX),
            data_source: Some(u64::MAX),
            ..sample()
        };
        let mut b = [0u8; 256];
        assert_eq!(r.encode(&mut b).unwrap(), MAX_RECORD_LEN);
    }
}
