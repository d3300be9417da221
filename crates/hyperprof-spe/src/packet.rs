//! SPE packets: the unit of the profiling buffer's byte stream.
//!
//! Models the packet formats of the Arm ARM chapter "Statistical Profiling
//! Extension: Profiling Data Packets" (DDI0487, D10), with the header matching
//! rules that Linux perf's SPE decoder uses (see ARM-FACTS §3).

/// Payload size of a packet: `1 << header[5:4]` bytes.
#[inline]
pub const fn payload_len(header: u8) -> usize {
    1 << ((header >> 4) & 0b11)
}

/// Packet header values and masks.
pub mod header {
    /// Padding.
    pub const PAD: u8 = 0x00;
    /// End of record, when the record has no timestamp.
    pub const END: u8 = 0x01;
    /// Timestamp packet; ends the record.
    pub const TIMESTAMP: u8 = 0x71;
    /// Mask selecting the class bits of events and data-source headers.
    pub const MASK_SIZED: u8 = 0xCF;
    /// Events packet, with `header & MASK_SIZED`.
    pub const EVENTS: u8 = 0x42;
    /// Data source packet, with `header & MASK_SIZED`.
    pub const DATA_SOURCE: u8 = 0x43;
    /// Mask selecting the class bits of context, operation type and extended headers.
    pub const MASK_INDEXED2: u8 = 0xFC;
    /// Context packet, with `header & MASK_INDEXED2`.
    pub const CONTEXT: u8 = 0x64;
    /// Operation type packet, with `header & MASK_INDEXED2`.
    pub const OP_TYPE: u8 = 0x48;
    /// Extended (two byte) header, with `header & MASK_INDEXED2`.
    pub const EXTENDED: u8 = 0x20;
    /// Mask selecting the class bits of address and counter headers.
    pub const MASK_INDEXED3: u8 = 0xF8;
    /// Address packet, with `header & MASK_INDEXED3`.
    pub const ADDRESS: u8 = 0xB0;
    /// Counter packet, with `header & MASK_INDEXED3`.
    pub const COUNTER: u8 = 0x98;
    /// Second byte of an extended header that makes it an alignment packet.
    pub const EXT_ALIGNMENT: u8 = 0x00;
}

/// Address packet index (header bits [2:0], extended by two bits in the
/// extended header form).
pub mod address_index {
    /// Program counter of the sampled operation.
    pub const PC: u8 = 0;
    /// Branch target address.
    pub const BRANCH_TARGET: u8 = 1;
    /// Data virtual address.
    pub const DATA_VIRTUAL: u8 = 2;
    /// Data physical address.
    pub const DATA_PHYSICAL: u8 = 3;
    /// Previous branch target (FEAT_SPE_PBT).
    pub const PREV_BRANCH_TARGET: u8 = 4;
}

/// Counter packet index.
pub mod counter_index {
    /// Total latency: cycles from dispatch to completion.
    pub const TOTAL: u8 = 0;
    /// Issue latency: cycles from dispatch to issue.
    pub const ISSUE: u8 = 1;
    /// Translation latency: cycles of the address translation.
    pub const TRANSLATION: u8 = 2;
}

/// Bit numbers of the events packet payload.
pub mod event {
    /// Generated an exception.
    pub const EXCEPTION_GEN: u32 = 0;
    /// Architecturally retired.
    pub const RETIRED: u32 = 1;
    /// Level 1 data cache access.
    pub const L1D_ACCESS: u32 = 2;
    /// Level 1 data cache refill.
    pub const L1D_REFILL: u32 = 3;
    /// TLB access.
    pub const TLB_ACCESS: u32 = 4;
    /// TLB walk (perf names it TLB-REFILL).
    pub const TLB_WALK: u32 = 5;
    /// Conditional instruction failed its condition code check.
    pub const NOT_TAKEN: u32 = 6;
    /// Branch mispredicted.
    pub const MISPREDICTED: u32 = 7;
    /// Last level cache access.
    pub const LLC_ACCESS: u32 = 8;
    /// Last level cache miss (perf names it LLC-REFILL).
    pub const LLC_MISS: u32 = 9;
    /// Access to another socket.
    pub const REMOTE_ACCESS: u32 = 10;
    /// Misaligned access.
    pub const ALIGNMENT: u32 = 11;
    /// SVE operation with a partial predicate.
    pub const SVE_PARTIAL_PRED: u32 = 17;
    /// SVE operation with an empty predicate.
    pub const SVE_EMPTY_PRED: u32 = 18;
    /// First IMPLEMENTATION DEFINED event bit (12..=15; on Neoverse N1
    /// bit 12 is a late prefetch).
    pub const IMPDEF_FIRST: u32 = 12;
    /// Last IMPLEMENTATION DEFINED event bit.
    pub const IMPDEF_LAST: u32 = 15;
    /// In a transaction (FEAT_TME). perf 6.1 prints none of the events
    /// from here on; newer perf does.
    pub const TRANSACTIONAL: u32 = 16;
    /// Level 2 data cache access.
    pub const L2D_ACCESS: u32 = 19;
    /// Level 2 data cache miss.
    pub const L2D_MISS: u32 = 20;
    /// The data came from a cache holding it modified (a HITM).
    pub const CACHE_DATA_MODIFIED: u32 = 21;
    /// The data had recently been fetched (a line-fill-buffer hit).
    pub const RECENTLY_FETCHED: u32 = 22;
    /// The access snooped another cache.
    pub const DATA_SNOOPED: u32 = 23;
    /// Executed in Streaming SVE mode.
    pub const STREAMING_SVE_MODE: u32 = 24;
    /// Executed by an SME compute unit.
    pub const SMCU: u32 = 25;
}

/// Operation type class (header bits [1:0] of the operation type packet).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// Other operation (not load/store, not branch).
    Other = 0,
    /// Load, store or atomic.
    LoadStore = 1,
    /// Branch or exception return.
    Branch = 2,
    /// Reserved encoding.
    Reserved = 3,
}

impl OpClass {
    /// The class for header bits [1:0].
    #[inline]
    pub const fn from_bits(bits: u8) -> OpClass {
        match bits & 3 {
            0 => OpClass::Other,
            1 => OpClass::LoadStore,
            2 => OpClass::Branch,
            _ => OpClass::Reserved,
        }
    }
}

/// One decoded SPE packet.
///
/// Fields hold the raw payload; helpers on each kind interpret it. A packet
/// re-encodes to exactly the bytes it was decoded from.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Packet {
    /// One padding byte.
    Pad,
    /// End of a record without timestamp.
    End,
    /// Timestamp (ends a record).
    Timestamp(u64),
    /// Events bit field; `size` is the payload size in bytes (1, 2, 4 or 8).
    Events {
        /// Payload size in bytes.
        size: u8,
        /// Event bits.
        bits: u64,
    },
    /// Data source (implementation defined); `size` as for events.
    DataSource {
        /// Payload size in bytes.
        size: u8,
        /// Source value.
        value: u64,
    },
    /// Context: `index` 0 is CONTEXTIDR_EL1, 1 is CONTEXTIDR_EL2.
    Context {
        /// Header bits [1:0].
        index: u8,
        /// The context identifier.
        id: u32,
    },
    /// Operation type: class from the header, subclass from the payload.
    OpType {
        /// Class.
        class: OpClass,
        /// Subclass payload byte.
        payload: u8,
    },
    /// Address packet.
    Address {
        /// Index (0..=31; values above 7 need the extended header).
        index: u8,
        /// Raw 64-bit payload (address bits and, for PC/target, EL and NS).
        payload: u64,
        /// Whether the packet uses the two-byte extended header.
        extended: bool,
    },
    /// Counter (latency) packet.
    Counter {
        /// Index (0..=31; values above 7 need the extended header).
        index: u8,
        /// Counter value.
        value: u16,
        /// Whether the packet uses the two-byte extended header.
        extended: bool,
    },
    /// Alignment packet (extended header with second byte 0): padding up to
    /// a `2 << (header[3:0])` byte boundary of the buffer address.
    Alignment {
        /// First header byte.
        header: u8,
    },
}

/// Fields of an address packet payload.
pub mod address {
    /// Address bits [55:0].
    pub const ADDR_MASK: u64 = (1 << 56) - 1;

    /// Address bits [55:0] of a payload.
    #[inline]
    pub const fn addr(payload: u64) -> u64 {
        payload & ADDR_MASK
    }
    /// Non-secure bit (63) of a PC, target or PA payload.
    #[inline]
    pub const fn ns(payload: u64) -> bool {
        payload >> 63 != 0
    }
    /// Exception level bits [62:61] of a PC or branch target payload.
    #[inline]
    pub const fn el(payload: u64) -> u8 {
        ((payload >> 61) & 3) as u8
    }
    /// Checked access tag bit (62) of a physical address payload.
    #[inline]
    pub const fn ch(payload: u64) -> bool {
        (payload >> 62) & 1 != 0
    }
    /// Physical address tag bits [59:56] of a physical address payload.
    #[inline]
    pub const fn pat(payload: u64) -> u8 {
        ((payload >> 56) & 0xF) as u8
    }
    /// Builds a PC or branch target payload.
    #[inline]
    pub const fn pc_payload(addr: u64, el: u8, ns: bool) -> u64 {
        (addr & ADDR_MASK) | (((el & 3) as u64) << 61) | ((ns as u64) << 63)
    }
    /// Builds a physical address payload.
    #[inline]
    pub const fn pa_payload(addr: u64, ns: bool, ch: bool, pat: u8) -> u64 {
        (addr & ADDR_MASK)
            | (((pat & 0xF) as u64) << 56)
            | ((ch as u64) << 62)
            | ((ns as u64) << 63)
    }
    /// Sign-extends a 56-bit address from bit 55, as perf does for kernel PCs.
    #[inline]
    pub const fn sign_extend(addr: u64) -> u64 {
        (((addr << 8) as i64) >> 8) as u64
    }
}

impl Packet {
    /// Number of bytes the packet occupies in the buffer.
    ///
    /// For [`Packet::Alignment`] this is only the header (its extent depends on
    /// the buffer address, see [`alignment_len`]).
    pub const fn encoded_len(&self) -> usize {
        match *self {
            Packet::Pad | Packet::End => 1,
            Packet::Timestamp(_) => 9,
            Packet::Events { size, .. } | Packet::DataSource { size, .. } => 1 + size as usize,
            Packet::Context { .. } => 5,
            Packet::OpType { .. } => 2,
            Packet::Address { extended, .. } => 9 + extended as usize,
            Packet::Counter { extended, .. } => 3 + extended as usize,
            Packet::Alignment { .. } => 2,
        }
    }
}

/// The alignment boundary, in bytes, of an alignment packet with first header byte `header`.
#[inline]
pub const fn alignment_boundary(header: u8) -> usize {
    2 << (header & 0xF)
}

/// Extent in bytes of an alignment packet at buffer address `addr`: up to the
/// next boundary (a whole boundary if already aligned).
#[inline]
pub const fn alignment_len(header: u8, addr: usize) -> usize {
    let b = alignment_boundary(header);
    b - (addr & (b - 1))
}

/// Why bytes do not form a packet.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PacketError {
    /// The header byte matches no packet format.
    UnknownHeader {
        /// The header byte (the second byte for an extended header).
        header: u8,
    },
    /// The buffer ends inside the packet.
    Truncated {
        /// First header byte.
        header: u8,
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes that remain.
        available: usize,
    },
}

impl core::fmt::Display for PacketError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            PacketError::UnknownHeader { header } => {
                write!(f, "unknown SPE packet header 0x{header:02x}")
            }
            PacketError::Truncated {
                header,
                needed,
                available,
            } => write!(
                f,
                "truncated SPE packet (header 0x{header:02x}): needs {needed} bytes, {available} remain"
            ),
        }
    }
}

#[inline(always)]
fn read_le(buf: &[u8], at: usize, len: usize) -> u64 {
    match len {
        1 => buf[at] as u64,
        2 => u16::from_le_bytes([buf[at], buf[at + 1]]) as u64,
        4 => u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as u64,
        _ => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[at..at + 8]);
            u64::from_le_bytes(b)
        }
    }
}

#[inline(always)]
fn need(buf: &[u8], needed: usize) -> Result<(), PacketError> {
    if buf.len() < needed {
        Err(PacketError::Truncated {
            header: buf[0],
            needed,
            available: buf.len(),
        })
    } else {
        Ok(())
    }
}

/// Packet kinds by first header byte, for a one-step dispatch.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Kind {
    Pad,
    End,
    Timestamp,
    Events,
    DataSource,
    Context,
    OpType,
    Extended,
    Address,
    Counter,
    Unknown,
}

/// The kind of a first header byte, by the matching rules of ARM-FACTS §3
/// in perf's order.
const fn kind_of(h: u8) -> Kind {
    if h == header::PAD {
        Kind::Pad
    } else if h == header::END {
        Kind::End
    } else if h == header::TIMESTAMP {
        Kind::Timestamp
    } else if h & header::MASK_SIZED == header::EVENTS {
        Kind::Events
    } else if h & header::MASK_SIZED == header::DATA_SOURCE {
        Kind::DataSource
    } else if h & header::MASK_INDEXED2 == header::CONTEXT {
        Kind::Context
    } else if h & header::MASK_INDEXED2 == header::OP_TYPE {
        Kind::OpType
    } else if h & header::MASK_INDEXED2 == header::EXTENDED {
        Kind::Extended
    } else if h & header::MASK_INDEXED3 == header::ADDRESS {
        Kind::Address
    } else if h & header::MASK_INDEXED3 == header::COUNTER {
        Kind::Counter
    } else {
        Kind::Unknown
    }
}

const KINDS: [Kind; 256] = {
    let mut t = [Kind::Unknown; 256];
    let mut h = 0;
    while h < 256 {
        t[h] = kind_of(h as u8);
        h += 1;
    }
    t
};

/// Decodes the packet at the start of `buf`, which lies at buffer address
/// `addr` (only alignment packets depend on it).
///
/// Returns the packet and the number of bytes it occupies. An empty `buf` is
/// reported as truncated with header 0.
#[inline(always)]
pub fn decode(buf: &[u8], addr: usize) -> Result<(Packet, usize), PacketError> {
    let Some(&h) = buf.first() else {
        return Err(PacketError::Truncated {
            header: 0,
            needed: 1,
            available: 0,
        });
    };
    match KINDS[h as usize] {
        Kind::Pad => Ok((Packet::Pad, 1)),
        Kind::End => Ok((Packet::End, 1)),
        Kind::Timestamp => {
            need(buf, 9)?;
            Ok((Packet::Timestamp(read_le(buf, 1, 8)), 9))
        }
        Kind::Events => {
            let n = payload_len(h);
            need(buf, 1 + n)?;
            let bits = read_le(buf, 1, n);
            Ok((
                Packet::Events {
                    size: n as u8,
                    bits,
                },
                1 + n,
            ))
        }
        Kind::DataSource => {
            let n = payload_len(h);
            need(buf, 1 + n)?;
            let value = read_le(buf, 1, n);
            Ok((
                Packet::DataSource {
                    size: n as u8,
                    value,
                },
                1 + n,
            ))
        }
        Kind::Context => {
            need(buf, 5)?;
            let id = read_le(buf, 1, 4) as u32;
            Ok((Packet::Context { index: h & 3, id }, 5))
        }
        Kind::OpType => {
            need(buf, 2)?;
            let class = OpClass::from_bits(h);
            Ok((
                Packet::OpType {
                    class,
                    payload: buf[1],
                },
                2,
            ))
        }
        Kind::Address => {
            need(buf, 9)?;
            let payload = read_le(buf, 1, 8);
            Ok((
                Packet::Address {
                    index: h & 7,
                    payload,
                    extended: false,
                },
                9,
            ))
        }
        Kind::Counter => {
            need(buf, 3)?;
            let value = read_le(buf, 1, 2) as u16;
            Ok((
                Packet::Counter {
                    index: h & 7,
                    value,
                    extended: false,
                },
                3,
            ))
        }
        Kind::Extended => decode_extended(buf, h, addr),
        Kind::Unknown => Err(PacketError::UnknownHeader { header: h }),
    }
}

/// The two-byte header forms: alignment, and address or counter packets with
/// a five-bit index.
#[cold]
fn decode_extended(buf: &[u8], h: u8, addr: usize) -> Result<(Packet, usize), PacketError> {
    need(buf, 2)?;
    let h1 = buf[1];
    if h1 == header::EXT_ALIGNMENT {
        let len = alignment_len(h, addr);
        // perf asks for a whole boundary's worth of bytes to remain, not
        // only the extent; follow it so both decoders agree.
        need(buf, alignment_boundary(h))?;
        return Ok((Packet::Alignment { header: h }, len));
    }
    let index = (h & 3) << 3 | (h1 & 7);
    match h1 & header::MASK_INDEXED3 {
        header::ADDRESS => {
            need(buf, 10)?;
            let payload = read_le(buf, 2, 8);
            Ok((
                Packet::Address {
                    index,
                    payload,
                    extended: true,
                },
                10,
            ))
        }
        header::COUNTER => {
            need(buf, 4)?;
            let value = read_le(buf, 2, 2) as u16;
            Ok((
                Packet::Counter {
                    index,
                    value,
                    extended: true,
                },
                4,
            ))
        }
        _ => Err(PacketError::UnknownHeader { header: h1 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_sizes_follow_header_bits_5_4() {
        assert_eq!(payload_len(0x42), 1);
        assert_eq!(payload_len(0x52), 2);
        assert_eq!(payload_len(0x62), 4);
        assert_eq!(payload_len(0x72), 8);
    }

    #[test]
    fn extended_address_index_uses_both_header_bytes() {
        let b = [0x21, 0xb3, 1, 2, 3, 4, 5, 6, 7, 8];
        let (p, n) = decode(&b, 0).unwrap();
        assert_eq!(n, 10);
        assert_eq!(
            p,
            Packet::Address {
                index: 11,
                payload: 0x0807060504030201,
                extended: true
            }
        );
    }

    #[test]
    fn truncated_and_unknown_are_errors() {
        assert_eq!(
            decode(&[0xb0, 1, 2], 0),
            Err(PacketError::Truncated {
                header: 0xb0,
                needed: 9,
                available: 3
            })
        );
        assert_eq!(
            decode(&[0xff], 0),
            Err(PacketError::UnknownHeader { header: 0xff })
        );
        assert_eq!(
            decode(&[0x20], 0),
            Err(PacketError::Truncated {
                header: 0x20,
                needed: 2,
                available: 1
            })
        );
        assert!(decode(&[], 0).is_err());
        // An extended header whose second byte is neither address, counter nor alignment.
        assert_eq!(
            decode(&[0x20, 0x42, 0, 0], 0),
            Err(PacketError::UnknownHeader { header: 0x42 })
        );
    }

    #[test]
    fn alignment_extends_to_the_next_boundary() {
        // 0x21: boundary 4 bytes.
        let b = [0x21, 0x00, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(&b, 0).unwrap().1, 4);
        assert_eq!(decode(&b, 1).unwrap().1, 3);
        assert_eq!(decode(&b, 3).unwrap().1, 1);
        assert_eq!(alignment_boundary(0x2f), 65536);
    }

    #[test]
    fn address_fields() {
        let p = 0xa0ff_8000_1029_d3f4u64;
        assert_eq!(address::addr(p), 0xff_8000_1029_d3f4);
        assert_eq!(address::el(p), 1);
        assert!(address::ns(p));
        assert_eq!(address::pc_payload(address::addr(p), 1, true), p);
        assert_eq!(
            address::sign_extend(0xff_8000_1029_d3f4),
            0xffff_8000_1029_d3f4
        );
        assert_eq!(
            address::sign_extend(0x7f_0000_0000_0000),
            0x7f_0000_0000_0000
        );
        let pa = address::pa_payload(0xfb24ebc0, true, true, 0xa);
        assert_eq!(address::pat(pa), 0xa);
        assert!(address::ch(pa));
        assert!(address::ns(pa));
    }
}
