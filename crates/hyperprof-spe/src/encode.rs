//! Packet encoder: the inverse of [`crate::packet::decode`].

use crate::packet::{header, OpClass, Packet};

/// Why a packet cannot be encoded.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferTooSmall {
        /// Bytes the packet needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// A payload size other than 1, 2, 4 or 8 bytes.
    BadPayloadSize(u8),
    /// A value does not fit its payload size.
    ValueTooWide,
    /// An address or counter index above 31, or above 7 without the extended header.
    BadIndex(u8),
    /// A context index above 3.
    BadContextIndex(u8),
    /// An operation type of the reserved class cannot be produced by a
    /// profiling unit (decoding accepts it).
    ReservedOpClass,
    /// An alignment packet header outside 0x20..=0x2f.
    BadAlignmentHeader(u8),
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            EncodeError::BufferTooSmall { needed, available } => {
                write!(
                    f,
                    "buffer too small: packet needs {needed} bytes, {available} available"
                )
            }
            EncodeError::BadPayloadSize(s) => write!(f, "payload size {s} is not 1, 2, 4 or 8"),
            EncodeError::ValueTooWide => write!(f, "value does not fit its payload size"),
            EncodeError::BadIndex(i) => write!(f, "packet index {i} out of range"),
            EncodeError::BadContextIndex(i) => write!(f, "context index {i} out of range"),
            EncodeError::ReservedOpClass => write!(f, "reserved operation class"),
            EncodeError::BadAlignmentHeader(h) => write!(f, "bad alignment header 0x{h:02x}"),
        }
    }
}

fn size_code(size: u8) -> Result<u8, EncodeError> {
    match size {
        1 => Ok(0),
        2 => Ok(1),
        4 => Ok(2),
        8 => Ok(3),
        s => Err(EncodeError::BadPayloadSize(s)),
    }
}

fn fits(value: u64, size: u8) -> bool {
    size >= 8 || value >> (size as u32 * 8) == 0
}

fn indexed_header(class: u8, index: u8, extended: bool) -> Result<([u8; 2], usize), EncodeError> {
    if index > 31 || (!extended && index > 7) {
        return Err(EncodeError::BadIndex(index));
    }
    if extended {
        Ok(([header::EXTENDED | (index >> 3), class | (index & 7)], 2))
    } else {
        Ok(([class | index, 0], 1))
    }
}

/// Encodes `packet` at the start of `out`, returning the bytes written.
///
/// An alignment packet writes its two header bytes only; the decoder skips
/// whatever follows up to the boundary.
pub fn encode(packet: &Packet, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut tmp = [0u8; 10];
    let (hdr, hdr_len, payload, payload_len): ([u8; 2], usize, u64, usize) = match *packet {
        Packet::Pad => ([header::PAD, 0], 1, 0, 0),
        Packet::End => ([header::END, 0], 1, 0, 0),
        Packet::Timestamp(t) => ([header::TIMESTAMP, 0], 1, t, 8),
        Packet::Events { size, bits } | Packet::DataSource { size, value: bits } => {
            let code = size_code(size)?;
            if !fits(bits, size) {
                return Err(EncodeError::ValueTooWide);
            }
            let class = if matches!(packet, Packet::Events { .. }) {
                header::EVENTS
            } else {
                header::DATA_SOURCE
            };
            ([class | (code << 4), 0], 1, bits, size as usize)
        }
        Packet::Context { index, id } => {
            if index > 3 {
                return Err(EncodeError::BadContextIndex(index));
            }
            ([header::CONTEXT | index, 0], 1, id as u64, 4)
        }
        Packet::OpType { class, payload } => {
            if class == OpClass::Reserved {
                return Err(EncodeError::ReservedOpClass);
            }
            ([header::OP_TYPE | class as u8, 0], 1, payload as u64, 1)
        }
        Packet::Address {
            index,
            payload,
            extended,
        } => {
            let (h, n) = indexed_header(header::ADDRESS, index, extended)?;
            (h, n, payload, 8)
        }
        Packet::Counter {
            index,
            value,
            extended,
        } => {
            let (h, n) = indexed_header(header::COUNTER, index, extended)?;
            (h, n, value as u64, 2)
        }
        Packet::Alignment { header: h } => {
            if h & 0xF0 != 0x20 {
                return Err(EncodeError::BadAlignmentHeader(h));
            }
            ([h, header::EXT_ALIGNMENT], 2, 0, 0)
        }
    };
    let total = hdr_len + payload_len;
    tmp[..hdr_len].copy_from_slice(&hdr[..hdr_len]);
    tmp[hdr_len..total].copy_from_slice(&payload.to_le_bytes()[..payload_len]);
    let available = out.len();
    let dst = out.get_mut(..total).ok_or(EncodeError::BufferTooSmall {
        needed: total,
        available,
    })?;
    dst.copy_from_slice(&tmp[..total]);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::decode;

    #[test]
    fn encodes_golden_pc() {
        let mut b = [0u8; 16];
        let n = encode(
            &Packet::Address {
                index: 0,
                payload: 0xa0ff_8000_1029_d3f4,
                extended: false,
            },
            &mut b,
        )
        .unwrap();
        assert_eq!(
            &b[..n],
            &[0xb0, 0xf4, 0xd3, 0x29, 0x10, 0x00, 0x80, 0xff, 0xa0]
        );
    }

    #[test]
    fn rejects_bad_fields() {
        let mut b = [0u8; 16];
        assert_eq!(
            encode(&Packet::Events { size: 3, bits: 0 }, &mut b),
            Err(EncodeError::BadPayloadSize(3))
        );
        assert_eq!(
            encode(
                &Packet::Events {
                    size: 1,
                    bits: 0x100
                },
                &mut b
            ),
            Err(EncodeError::ValueTooWide)
        );
        assert_eq!(
            encode(
                &Packet::Counter {
                    index: 8,
                    value: 0,
                    extended: false
                },
                &mut b
            ),
            Err(EncodeError::BadIndex(8))
        );
        assert_eq!(
            encode(&Packet::Timestamp(1), &mut b[..4]),
            Err(EncodeError::BufferTooSmall {
                needed: 9,
                available: 4
            })
        );
        assert_eq!(
            encode(&Packet::Alignment { header: 0x40 }, &mut b),
            Err(EncodeError::BadAlignmentHeader(0x40))
        );
    }

    #[test]
    fn extended_counter_round_trips() {
        let p = Packet::Counter {
            index: 25,
            value: 0x1234,
            extended: true,
        };
        let mut b = [0u8; 16];
        let n = encode(&p, &mut b).unwrap();
        assert_eq!(&b[..n], &[0x23, 0x99, 0x34, 0x12]);
        assert_eq!(decode(&b[..n], 0), Ok((p, n)));
    }
}
