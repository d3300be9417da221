//! Arithmetic helpers from the Arm ARM's shared pseudocode.

use crate::insn::{Extend, Shift};

/// AddWithCarry for 64-bit operands: (result, NZCV as bits 3..0).
#[inline(always)]
pub(crate) fn add_with_carry64(x: u64, y: u64, carry: bool) -> (u64, u8) {
    let (r1, c1) = x.overflowing_add(y);
    let (r, c2) = r1.overflowing_add(carry as u64);
    let c = c1 | c2;
    let v = ((x ^ r) & (y ^ r)) >> 63 != 0;
    (r, nzcv_of(r >> 63 != 0, r == 0, c, v))
}

/// AddWithCarry for 32-bit operands (the high halves are ignored).
#[inline(always)]
pub(crate) fn add_with_carry32(x: u64, y: u64, carry: bool) -> (u64, u8) {
    let (x, y) = (x as u32, y as u32);
    let (r1, c1) = x.overflowing_add(y);
    let (r, c2) = r1.overflowing_add(carry as u32);
    let c = c1 | c2;
    let v = ((x ^ r) & (y ^ r)) >> 31 != 0;
    (r as u64, nzcv_of(r >> 31 != 0, r == 0, c, v))
}

/// AddWithCarry at either width.
#[inline(always)]
pub(crate) fn add_with_carry(sf: bool, x: u64, y: u64, carry: bool) -> (u64, u8) {
    if sf {
        add_with_carry64(x, y, carry)
    } else {
        add_with_carry32(x, y, carry)
    }
}

/// Pack flags.
#[inline(always)]
pub(crate) fn nzcv_of(n: bool, z: bool, c: bool, v: bool) -> u8 {
    ((n as u8) << 3) | ((z as u8) << 2) | ((c as u8) << 1) | (v as u8)
}

/// ConditionHolds(cond) for flags packed as N=8, Z=4, C=2, V=1.
#[inline(always)]
pub(crate) fn condition_holds(cond: u8, nzcv: u8) -> bool {
    let n = nzcv & 8 != 0;
    let z = nzcv & 4 != 0;
    let c = nzcv & 2 != 0;
    let v = nzcv & 1 != 0;
    let r = match cond >> 1 {
        0 => z,
        1 => c,
        2 => n,
        3 => v,
        4 => c && !z,
        5 => n == v,
        6 => n == v && !z,
        _ => true,
    };
    if cond & 1 != 0 && cond != 0xf {
        !r
    } else {
        r
    }
}

/// Truncate to the operation width.
#[inline(always)]
pub(crate) fn trunc(sf: bool, v: u64) -> u64 {
    if sf {
        v
    } else {
        v as u32 as u64
    }
}

/// Shift a register operand by `amount` (< datasize).
#[inline(always)]
pub(crate) fn shift_reg(sf: bool, v: u64, shift: Shift, amount: u32) -> u64 {
    if sf {
        match shift {
            Shift::Lsl => v << amount,
            Shift::Lsr => v >> amount,
            Shift::Asr => ((v as i64) >> amount) as u64,
            Shift::Ror => v.rotate_right(amount),
        }
    } else {
        let w = v as u32;
        (match shift {
            Shift::Lsl => w << amount,
            Shift::Lsr => w >> amount,
            Shift::Asr => ((w as i32) >> amount) as u32,
            Shift::Ror => w.rotate_right(amount),
        }) as u64
    }
}

/// ExtendReg: extract and extend, then shift left by `shift` (0..=4).
#[inline(always)]
pub(crate) fn extend_reg(v: u64, ext: Extend, shift: u32) -> u64 {
    let e = match ext {
        Extend::Uxtb => v as u8 as u64,
        Extend::Uxth => v as u16 as u64,
        Extend::Uxtw => v as u32 as u64,
        Extend::Uxtx | Extend::Sxtx => v,
        Extend::Sxtb => v as i8 as i64 as u64,
        Extend::Sxth => v as i16 as i64 as u64,
        Extend::Sxtw => v as i32 as i64 as u64,
    };
    e << shift
}

/// Sign-extend the low `bytes`*8 bits.
#[inline(always)]
pub(crate) fn sext_bytes(v: u64, size_log2: u8) -> u64 {
    match size_log2 {
        0 => v as i8 as i64 as u64,
        1 => v as i16 as i64 as u64,
        2 => v as i32 as i64 as u64,
        _ => v,
    }
}

/// CRC-32 (`poly` reflected) of the low `bytes` bytes of `data`, continuing `acc`.
pub(crate) fn crc32(acc: u32, data: u64, bytes: u32, poly: u32) -> u32 {
    let mut crc = acc;
    for i in 0..bytes {
        crc ^= ((data >> (8 * i)) & 0xff) as u32;
        for _ in 0..8 {
            let lsb = crc & 1;
            crc >>= 1;
            if lsb != 0 {
                crc ^= poly;
            }
        }
    }
    crc
}
