//! The A64 decoder: one 32-bit word to an [`Insn`], allocation-free.
//!
//! The top-level split follows the Arm ARM's "A64 instruction set encoding"
//! table on `op0` = bits\[28:25\]; each class has its own module.

mod branch_sys;
mod dp_imm;
mod dp_reg;
mod ldst;

use crate::insn::Insn;

/// Bits `[hi:lo]` of `w`.
#[inline(always)]
pub(crate) fn bits(w: u32, hi: u32, lo: u32) -> u32 {
    (w >> lo) & ((1u32 << (hi - lo + 1)) - 1)
}

/// Bit `n` of `w`.
#[inline(always)]
pub(crate) fn bit(w: u32, n: u32) -> bool {
    (w >> n) & 1 != 0
}

/// Sign-extend the low `width` bits of `v`.
#[inline(always)]
pub(crate) fn sext(v: u32, width: u32) -> i32 {
    let s = 32 - width;
    ((v << s) as i32) >> s
}

/// Register field `[hi:lo]` as a register number.
#[inline(always)]
pub(crate) fn reg(w: u32, lo: u32) -> u8 {
    bits(w, lo + 4, lo) as u8
}

/// Decode one instruction word. Encodings outside the implemented ISA
/// (Armv8.0 integer, LSE, LDAPR, CRC32 and the system class) give
/// [`Insn::Undefined`]; FP/Advanced SIMD encodings give [`Insn::FpSimd`].
pub fn decode(w: u32) -> Insn {
    match bits(w, 28, 25) {
        0b1000 | 0b1001 => dp_imm::decode(w),
        0b1010 | 0b1011 => branch_sys::decode(w),
        0b0100 | 0b0110 | 0b1100 | 0b1110 => ldst::decode(w),
        0b0101 | 0b1101 => dp_reg::decode(w),
        0b0111 | 0b1111 => Insn::FpSimd,
        _ => Insn::Undefined,
    }
}

/// DecodeBitMasks for a bitfield instruction (immediate = FALSE, N = sf).
pub(crate) fn dp_imm_masks(sf: bool, imms: u32, immr: u32, datasize: u32) -> Option<(u64, u64)> {
    dp_imm::decode_bit_masks(sf, imms, immr, false, datasize)
}

/// DecodeBitMasks for a logical immediate; the immediate value.
pub fn decode_logical_imm(n: bool, imms: u32, immr: u32, datasize: u32) -> Option<u64> {
    dp_imm::decode_bit_masks(n, imms, immr, true, datasize).map(|(w, _)| w)
}
