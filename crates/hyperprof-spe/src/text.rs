//! Text in Linux perf's form: packet descriptions and the packet lines of
//! `perf report -D`, byte for byte as Debian's linux-perf 6.1 prints them.
//!
//! perf's dump walks a buffer packet by packet; it prints a byte it cannot
//! decode as `Bad packet!` and moves on by one byte, and it shows a PAD
//! together with up to 15 zero bytes after it on one line. [`DumpWalker`]
//! reproduces that walk; [`write_desc`] and [`write_dump_line`] the text.

use crate::packet::{address, decode, OpClass, Packet, PacketError};

/// A byte sink the formatter writes to (no allocation needed).
pub trait Sink {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
}

impl<S: Sink + ?Sized> Sink for &mut S {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        (**self).put(bytes)
    }
}

/// A fixed-capacity sink; bytes past the capacity are dropped and counted.
#[derive(Clone, Debug)]
pub struct FixedBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
    dropped: usize,
}

impl<const N: usize> Default for FixedBuf<N> {
    fn default() -> Self {
        FixedBuf {
            buf: [0; N],
            len: 0,
            dropped: 0,
        }
    }
}

impl<const N: usize> FixedBuf<N> {
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    /// The bytes as text (the formatter writes ASCII only).
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
    /// Bytes that did not fit.
    pub fn dropped(&self) -> usize {
        self.dropped
    }
    /// Empties the buffer.
    pub fn clear(&mut self) {
        self.len = 0;
        self.dropped = 0;
    }
}

impl<const N: usize> Sink for FixedBuf<N> {
    fn put(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        self.dropped += bytes.len() - n;
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `%llx`: lower-case hex without leading zeros.
#[inline]
fn put_hex(out: &mut impl Sink, v: u64) {
    let mut b = [0u8; 16];
    let digits = (64 - (v | 1).leading_zeros()).div_ceil(4) as usize;
    for (i, slot) in b[..digits].iter_mut().enumerate() {
        *slot = HEX[((v >> ((digits - 1 - i) * 4)) & 0xF) as usize];
    }
    out.put(&b[..digits]);
}

/// `%llu`.
#[inline]
fn put_dec(out: &mut impl Sink, mut v: u64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.put(&b[i..]);
}

/// `%lld`.
#[inline]
fn put_signed(out: &mut impl Sink, v: u64) {
    let s = v as i64;
    if s < 0 {
        out.put(b"-");
        put_dec(out, s.unsigned_abs());
    } else {
        put_dec(out, v);
    }
}

/// Event names in bit order, as perf spells them.
const EVENT_NAMES: [(u32, &[u8]); 14] = [
    (0, b" EXCEPTION-GEN"),
    (1, b" RETIRED"),
    (2, b" L1D-ACCESS"),
    (3, b" L1D-REFILL"),
    (4, b" TLB-ACCESS"),
    (5, b" TLB-REFILL"),
    (6, b" NOT-TAKEN"),
    (7, b" MISPRED"),
    (8, b" LLC-ACCESS"),
    (9, b" LLC-REFILL"),
    (10, b" REMOTE-ACCESS"),
    (11, b" ALIGNMENT"),
    (17, b" SVE-PARTIAL-PRED"),
    (18, b" SVE-EMPTY-PRED"),
];

/// `EVLEN n`: the SVE effective vector length, 32 << payload[6:4] bits.
fn put_sve(out: &mut impl Sink, p: u8, prefix: &[u8]) {
    out.put(prefix);
    put_dec(out, 32u64 << ((p >> 4) & 7));
}

fn put_op_type(out: &mut impl Sink, class: OpClass, p: u8) {
    match class {
        OpClass::Other => {
            // SVE operation: bits 7, 3 and 0 are 0b0, 0b1 and 0b0.
            if p & 0x89 == 0x08 {
                put_sve(out, p, b"SVE-OTHER EVLEN ");
                if p & 0x02 != 0 {
                    out.put(b" FP");
                }
                if p & 0x04 != 0 {
                    out.put(b" PRED");
                }
            } else if p & 1 != 0 {
                out.put(b"OTHER COND-SELECT");
            } else {
                out.put(b"OTHER INSN-OTHER");
            }
        }
        OpClass::LoadStore => {
            out.put(if p & 1 != 0 { b"ST" } else { b"LD" });
            // Atomic or exclusive: payload bits 7:5 and 1 are 0b000 and 1.
            if p & 0xE2 == 0x02 {
                if p & 0x04 != 0 {
                    out.put(b" AT");
                }
                if p & 0x08 != 0 {
                    out.put(b" EXCL");
                }
                if p & 0x10 != 0 {
                    out.put(b" AR");
                }
            }
            match p & 0xFE {
                0x00 => out.put(b" GP-REG"),
                0x04 => out.put(b" SIMD-FP"),
                0x10 => out.put(b" UNSPEC-REG"),
                0x30 => out.put(b" NV-SYSREG"),
                _ => {}
            }
            // SVE load/store: bit 3 set, bit 1 clear.
            if p & 0x0A == 0x08 {
                put_sve(out, p, b" EVLEN ");
                if p & 0x04 != 0 {
                    out.put(b" PRED");
                }
                if p & 0x80 != 0 {
                    out.put(b" SG");
                }
            }
        }
        OpClass::Branch => {
            out.put(b"B");
            if p & 1 != 0 {
                out.put(b" COND");
            }
            if p & 0xFE == 0x02 {
                out.put(b" IND");
            }
        }
        OpClass::Reserved => {
            // perf's fallback for a packet it cannot describe.
            out.put(b"OP-TYPE 0x");
            put_hex(out, p as u64);
            out.put(b" (3)");
        }
    }
}

/// Writes perf's one-line description of a packet (`PC 0x... el1 ns=1`).
pub fn write_desc(out: &mut impl Sink, packet: &Packet) {
    match *packet {
        Packet::Pad | Packet::Alignment { .. } => out.put(b"PAD"),
        Packet::End => out.put(b"END"),
        Packet::Timestamp(t) => {
            out.put(b"TS ");
            put_signed(out, t);
        }
        Packet::Events { bits, .. } => {
            out.put(b"EV");
            for (bit, name) in EVENT_NAMES {
                if bits >> bit & 1 != 0 {
                    out.put(name);
                }
            }
        }
        Packet::DataSource { value, .. } => {
            out.put(b"DATA-SOURCE ");
            put_signed(out, value);
        }
        Packet::Context { index, id } => {
            out.put(b"CONTEXT 0x");
            put_hex(out, id as u64);
            out.put(b" el");
            put_dec(out, index as u64 + 1);
        }
        Packet::OpType { class, payload } => put_op_type(out, class, payload),
        Packet::Address { index, payload, .. } => match index {
            0 | 1 => {
                out.put(if index == 0 { b"PC 0x" } else { b"TGT 0x" });
                put_hex(out, address::addr(payload));
                out.put(b" el");
                put_dec(out, address::el(payload) as u64);
                out.put(if address::ns(payload) {
                    b" ns=1"
                } else {
                    b" ns=0"
                });
            }
            2 => {
                out.put(b"VA 0x");
                put_hex(out, payload);
            }
            3 => {
                out.put(b"PA 0x");
                put_hex(out, address::addr(payload));
                out.put(if address::ns(payload) {
                    b" ns=1"
                } else {
                    b" ns=0"
                });
                out.put(if address::ch(payload) {
                    b" ch=1"
                } else {
                    b" ch=0"
                });
                out.put(b" pat=");
                put_hex(out, address::pat(payload) as u64);
            }
            _ => {
                out.put(b"ADDR 0x");
                put_hex(out, payload);
                out.put(b" (");
                put_dec(out, index as u64);
                out.put(b")");
            }
        },
        Packet::Counter { index, value, .. } => {
            out.put(b"LAT ");
            put_dec(out, value as u64);
            out.put(match index {
                0 => b" TOT",
                1 => b" ISSUE",
                2 => b" XLAT",
                _ => b" ",
            });
        }
    }
}

/// One step of perf's dump walk.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DumpItem {
    /// Offset of the first byte in the buffer.
    pub offset: usize,
    /// Bytes the line covers.
    pub len: usize,
    /// The packet, or the reason the byte at `offset` is not one.
    pub packet: Result<Packet, PacketError>,
}

/// Walks a buffer the way `perf report -D` does.
#[derive(Clone, Debug)]
pub struct DumpWalker<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> DumpWalker<'a> {
    /// Walks `buf`, whose first byte lies at address `base` (only alignment
    /// packets depend on it: perf uses the buffer's address in its mapping of
    /// the file, which is congruent to the file offset modulo the page size).
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Self::at(buf, base, 0)
    }

    /// Walks `buf` from offset `pos`, which must be where an earlier walk of
    /// the same buffer put a line boundary; offsets stay relative to `buf`,
    /// and packets may look past any later boundary, as in a whole walk.
    pub fn at(buf: &'a [u8], base: usize, pos: usize) -> Self {
        DumpWalker { buf, pos, base }
    }
}

impl Iterator for DumpWalker<'_> {
    type Item = DumpItem;

    #[inline]
    fn next(&mut self) -> Option<DumpItem> {
        let rest = self.buf.get(self.pos..).filter(|r| !r.is_empty())?;
        let offset = self.pos;
        let item = match decode(rest, self.base.wrapping_add(offset)) {
            Ok((p, mut n)) => {
                if matches!(p, Packet::Pad | Packet::Alignment { .. }) {
                    while n < 16 && n < rest.len() && rest[n] == 0 {
                        n += 1;
                    }
                }
                let n = n.min(rest.len());
                DumpItem {
                    offset,
                    len: n,
                    packet: Ok(p),
                }
            }
            Err(e) => DumpItem {
                offset,
                len: 1,
                packet: Err(e),
            },
        };
        self.pos += item.len;
        Some(item)
    }
}

/// A line under construction: a fixed stack buffer with a cursor, so that a
/// line costs one write to the caller's sink.
struct Line {
    buf: [u8; 320],
    len: usize,
}

impl Sink for Line {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        // Descriptions are at most ~200 bytes and the hex part 61, so the
        // buffer cannot overflow; `get_mut` keeps that a checked fact.
        if let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
        }
    }
}

/// Writes one packet line of `perf report -D` for `item` of `buf`, newline
/// included: `.  OFFSET:  BYTES...   DESCRIPTION`.
pub fn write_dump_line(out: &mut impl Sink, buf: &[u8], item: &DumpItem) {
    write_dump_line_at(out, buf, item, item.offset);
}

/// [`write_dump_line`] for a walk of part of a buffer: `buf` is that part,
/// `item` is relative to it, and `offset` is the item's offset in the whole
/// buffer, which the line shows.
pub fn write_dump_line_at(out: &mut impl Sink, buf: &[u8], item: &DumpItem, offset: usize) {
    let bytes = &buf[item.offset..item.offset + item.len];
    let mut line = Line {
        buf: [b' '; 320],
        len: 0,
    };
    let head = &mut line.buf[..13];
    head[..3].copy_from_slice(b".  ");
    // perf prints the offset with %08x of a 32-bit value.
    let off = offset as u32;
    for i in 0..8 {
        head[3 + i] = HEX[((off >> ((7 - i) * 4)) & 0xF) as usize];
    }
    head[11] = b':';
    line.len = 13;
    if bytes.len() <= 16 {
        // The buffer starts as spaces: hex digits go in place and short
        // packets keep the spaces perf pads with.
        for (i, &b) in bytes.iter().enumerate() {
            line.buf[13 + i * 3 + 1] = HEX[(b >> 4) as usize];
            line.buf[13 + i * 3 + 2] = HEX[(b & 0xF) as usize];
        }
        line.len = 13 + 48;
    } else {
        // An alignment packet longer than a line: perf prints every byte.
        out.put(&line.buf[..13]);
        line.len = 0;
        let mut hex = [0u8; 48];
        for chunk in bytes.chunks(16) {
            for (i, &b) in chunk.iter().enumerate() {
                hex[i * 3] = b' ';
                hex[i * 3 + 1] = HEX[(b >> 4) as usize];
                hex[i * 3 + 2] = HEX[(b & 0xF) as usize];
            }
            out.put(&hex[..chunk.len() * 3]);
        }
    }
    match item.packet {
        Ok(ref p) => {
            line.put(b" ");
            write_desc(&mut line, p);
            line.put(b"\n");
        }
        Err(_) => line.put(b" Bad packet!\n"),
    }
    out.put(&line.buf[..line.len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(bytes: &[u8]) -> FixedBuf<4096> {
        let mut out = FixedBuf::<4096>::default();
        for item in DumpWalker::new(bytes, 0) {
            write_dump_line(&mut out, bytes, &item);
        }
        out
    }

    #[test]
    fn numbers_print_like_printf() {
        let mut b = FixedBuf::<64>::default();
        put_hex(&mut b, 0);
        b.put(b",");
        put_hex(&mut b, 0xfb24ebc0);
        b.put(b",");
        put_signed(&mut b, 0x8000_0000_0000_0001);
        b.put(b",");
        put_dec(&mut b, u64::MAX);
        assert_eq!(
            b.as_str(),
            "0,fb24ebc0,-9223372036854775807,18446744073709551615"
        );
    }

    #[test]
    fn pad_runs_group_up_to_sixteen_bytes() {
        let mut bytes = [0u8; 20];
        bytes[19] = 0x01;
        let out = dump(&bytes);
        assert_eq!(
            out.as_str(),
            ".  00000000:  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 PAD\n\
             .  00000010:  00 00 00                                        PAD\n\
             .  00000013:  01                                              END\n"
        );
    }

    #[test]
    fn bad_bytes_advance_one_at_a_time() {
        let out = dump(&[0xff, 0xb0, 0x01]);
        assert_eq!(
            out.as_str(),
            ".  00000000:  ff                                              Bad packet!\n\
             .  00000001:  b0                                              Bad packet!\n\
             .  00000002:  01                                              END\n"
        );
    }

    #[test]
    fn fixed_buf_counts_what_does_not_fit() {
        let mut b = FixedBuf::<4>::default();
        b.put(b"abcdef");
        assert_eq!(b.as_str(), "abcd");
        assert_eq!(b.dropped(), 2);
        b.clear();
        assert_eq!(b.as_bytes(), b"");
    }
}
