//! Data processing (immediate): PC-relative addressing, add/subtract,
//! logical, move wide, bitfield, extract.

use super::{bit, bits, reg, sext};
use crate::insn::{BitfieldOp, Insn, LogicOp, MovOp};

pub(super) fn decode(w: u32) -> Insn {
    let sf = bit(w, 31);
    let rd = reg(w, 0);
    let rn = reg(w, 5);
    match bits(w, 25, 23) {
        0b000 | 0b001 => {
            let immlo = bits(w, 30, 29);
            let immhi = bits(w, 23, 5);
            let imm = sext((immhi << 2) | immlo, 21) as i64;
            if sf {
                Insn::Adr {
                    rd,
                    page: true,
                    imm: imm << 12,
                }
            } else {
                Insn::Adr {
                    rd,
                    page: false,
                    imm,
                }
            }
        }
        0b010 => {
            let imm12 = bits(w, 21, 10);
            let imm = if bit(w, 22) { imm12 << 12 } else { imm12 };
            Insn::AddSubImm {
                sf,
                sub: bit(w, 30),
                setflags: bit(w, 29),
                rd,
                rn,
                imm,
            }
        }
        0b100 => {
            let n = bit(w, 22);
            if !sf && n {
                return Insn::Undefined;
            }
            let Some((imm, _)) = decode_bit_masks(
                n,
                bits(w, 15, 10),
                bits(w, 21, 16),
                true,
                if sf { 64 } else { 32 },
            ) else {
                return Insn::Undefined;
            };
            let op = match bits(w, 30, 29) {
                0 => LogicOp::And,
                1 => LogicOp::Orr,
                2 => LogicOp::Eor,
                _ => LogicOp::Ands,
            };
            Insn::LogicalImm {
                sf,
                op,
                rd,
                rn,
                imm,
            }
        }
        0b101 => {
            let hw = bits(w, 22, 21);
            if !sf && hw >= 2 {
                return Insn::Undefined;
            }
            let op = match bits(w, 30, 29) {
                0 => MovOp::N,
                2 => MovOp::Z,
                3 => MovOp::K,
                _ => return Insn::Undefined,
            };
            Insn::MovWide {
                sf,
                op,
                rd,
                imm16: bits(w, 20, 5) as u16,
                shift: (hw * 16) as u8,
            }
        }
        0b110 => {
            let n = bit(w, 22);
            let immr = bits(w, 21, 16);
            let imms = bits(w, 15, 10);
            if n != sf || (!sf && (immr >= 32 || imms >= 32)) {
                return Insn::Undefined;
            }
            let op = match bits(w, 30, 29) {
                0 => BitfieldOp::Sbfm,
                1 => BitfieldOp::Bfm,
                2 => BitfieldOp::Ubfm,
                _ => return Insn::Undefined,
            };
            Insn::Bitfield {
                sf,
                op,
                rd,
                rn,
                immr: immr as u8,
                imms: imms as u8,
            }
        }
        0b111 => {
            let imms = bits(w, 15, 10);
            if bits(w, 30, 29) != 0 || bit(w, 21) || bit(w, 22) != sf || (!sf && imms >= 32) {
                return Insn::Undefined;
            }
            Insn::Extr {
                sf,
                rd,
                rn,
                rm: reg(w, 16),
                lsb: imms as u8,
            }
        }
        _ => Insn::Undefined,
    }
}

/// All-ones in the low `n` bits (n <= 64).
#[inline(always)]
fn ones(n: u32) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Rotate the low `esize` bits of `v` right by `r`.
fn ror_e(v: u64, r: u32, esize: u32) -> u64 {
    if r == 0 {
        return v;
    }
    let m = ones(esize);
    ((v >> r) | (v << (esize - r))) & m
}

/// The Arm ARM's DecodeBitMasks: returns (wmask, tmask) replicated to
/// `datasize`, or None for a reserved encoding.
pub(crate) fn decode_bit_masks(
    n: bool,
    imms: u32,
    immr: u32,
    immediate: bool,
    datasize: u32,
) -> Option<(u64, u64)> {
    let combined = ((n as u32) << 6) | (!imms & 0x3f);
    if combined == 0 {
        return None;
    }
    let len = 31 - combined.leading_zeros();
    if len < 1 {
        return None;
    }
    let levels = (1u32 << len) - 1;
    if immediate && (imms & levels) == levels {
        return None;
    }
    let s = imms & levels;
    let r = immr & levels;
    let diff = s.wrapping_sub(r) & levels;
    let esize = 1u32 << len;
    if esize > datasize {
        return None;
    }
    let welem = ones(s + 1);
    let telem = ones(diff + 1);
    let wrot = ror_e(welem, r, esize);
    let mut wmask = 0u64;
    let mut tmask = 0u64;
    let mut i = 0;
    while i < datasize {
        wmask |= wrot << i;
        tmask |= telem << i;
        i += esize;
    }
    Some((wmask, tmask))
}
