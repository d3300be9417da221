//! Loads and stores: exclusives and ordered accesses, compare-and-swap,
//! literal, pairs, single registers in every addressing mode, and LSE
//! atomic memory operations. SIMD&FP registers (V = 1) give
//! [`Insn::FpSimd`].

use super::{bit, bits, reg, sext};
use crate::insn::{AtomicOp, Extend, Insn, LdStKind, Writeback};

pub(super) fn decode(w: u32) -> Insn {
    if bit(w, 26) {
        return Insn::FpSimd;
    }
    let rt = reg(w, 0);
    let rn = reg(w, 5);
    match bits(w, 29, 28) {
        0b00 => {
            if bits(w, 25, 24) != 0 {
                return Insn::Undefined;
            }
            exclusive(w, rt, rn)
        }
        0b01 => {
            if bit(w, 24) {
                return Insn::Undefined;
            }
            let offset = sext(bits(w, 23, 5), 19) << 2;
            let (size, kind) = match bits(w, 31, 30) {
                0 => (2, LdStKind::Load),
                1 => (3, LdStKind::Load),
                2 => (2, LdStKind::LoadSigned64),
                _ => (3, LdStKind::Prefetch),
            };
            Insn::LoadLiteral {
                size,
                kind,
                rt,
                offset,
            }
        }
        0b10 => pair(w, rt, rn),
        _ => single(w, rt, rn),
    }
}

fn exclusive(w: u32, rt: u8, rn: u8) -> Insn {
    let size = bits(w, 31, 30) as u8;
    let o2 = bit(w, 23);
    let l = bit(w, 22);
    let o1 = bit(w, 21);
    let o0 = bit(w, 15);
    let rs = reg(w, 16);
    let rt2 = reg(w, 10);
    match (o2, o1) {
        (false, false) => {
            if l {
                if rs != 31 {
                    return Insn::Undefined;
                }
                Insn::LoadExclusive {
                    size,
                    pair: false,
                    acquire: o0,
                    rt,
                    rt2: 31,
                    rn,
                }
            } else {
                Insn::StoreExclusive {
                    size,
                    pair: false,
                    release: o0,
                    rs,
                    rt,
                    rt2: 31,
                    rn,
                }
            }
        }
        (false, true) => {
            if size & 2 == 0 {
                if rt2 != 31 || rs & 1 != 0 || rt & 1 != 0 {
                    return Insn::Undefined;
                }
                return Insn::Casp {
                    sf: size == 1,
                    acquire: l,
                    release: o0,
                    rs,
                    rt,
                    rn,
                };
            }
            let size = size & 1 | 2;
            if l {
                if rs != 31 {
                    return Insn::Undefined;
                }
                Insn::LoadExclusive {
                    size,
                    pair: true,
                    acquire: o0,
                    rt,
                    rt2,
                    rn,
                }
            } else {
                Insn::StoreExclusive {
                    size,
                    pair: true,
                    release: o0,
                    rs,
                    rt,
                    rt2,
                    rn,
                }
            }
        }
        (true, false) => {
            if !o0 || rs != 31 || rt2 != 31 {
                return Insn::Undefined;
            }
            if l {
                Insn::LoadAcquire {
                    size,
                    rcpc: false,
                    rt,
                    rn,
                }
            } else {
                Insn::StoreRelease { size, rt, rn }
            }
        }
        (true, true) => {
            if rt2 != 31 {
                return Insn::Undefined;
            }
            Insn::Cas {
                size,
                acquire: l,
                release: o0,
                rs,
                rt,
                rn,
            }
        }
    }
}

fn pair(w: u32, rt: u8, rn: u8) -> Insn {
    let opc = bits(w, 31, 30);
    let load = bit(w, 22);
    let mode = bits(w, 24, 23);
    let (size, signed) = match opc {
        0 => (2u8, false),
        1 if load && mode != 0 => (2, true),
        2 => (3, false),
        _ => return Insn::Undefined,
    };
    let wb = match mode {
        0 | 2 => Writeback::None,
        1 => Writeback::Post,
        _ => Writeback::Pre,
    };
    let offset = sext(bits(w, 21, 15), 7) << size;
    Insn::LdStPair {
        size,
        load,
        signed,
        rt,
        rt2: reg(w, 10),
        rn,
        offset,
        wb,
    }
}

/// Kind of a single-register access from size and opc; None if unallocated.
fn kind_of(size: u32, opc: u32) -> Option<LdStKind> {
    Some(match (size, opc) {
        (_, 0) => LdStKind::Store,
        (_, 1) => LdStKind::Load,
        (3, 2) => LdStKind::Prefetch,
        (3, _) => return None,
        (2, 2) => LdStKind::LoadSigned64,
        (2, _) => return None,
        (_, 2) => LdStKind::LoadSigned64,
        _ => LdStKind::LoadSigned32,
    })
}

fn single(w: u32, rt: u8, rn: u8) -> Insn {
    let size = bits(w, 31, 30);
    let opc = bits(w, 23, 22);
    if bit(w, 24) {
        let Some(kind) = kind_of(size, opc) else {
            return Insn::Undefined;
        };
        let offset = (bits(w, 21, 10) << size) as i32;
        return Insn::LdStImm {
            size: size as u8,
            kind,
            rt,
            rn,
            offset,
            wb: Writeback::None,
            unpriv: false,
        };
    }
    if !bit(w, 21) {
        let Some(kind) = kind_of(size, opc) else {
            return Insn::Undefined;
        };
        let offset = sext(bits(w, 20, 12), 9);
        let (wb, unpriv) = match bits(w, 11, 10) {
            0 => (Writeback::None, false),
            1 => (Writeback::Post, false),
            2 => (Writeback::None, true),
            _ => (Writeback::Pre, false),
        };
        if kind == LdStKind::Prefetch && (wb != Writeback::None || unpriv) {
            return Insn::Undefined;
        }
        return Insn::LdStImm {
            size: size as u8,
            kind,
            rt,
            rn,
            offset,
            wb,
            unpriv,
        };
    }
    match bits(w, 11, 10) {
        0b10 => {
            let Some(kind) = kind_of(size, opc) else {
                return Insn::Undefined;
            };
            let option = bits(w, 15, 13);
            if option & 2 == 0 {
                return Insn::Undefined;
            }
            let shift = if bit(w, 12) { size as u8 } else { 0 };
            Insn::LdStReg {
                size: size as u8,
                kind,
                rt,
                rn,
                rm: reg(w, 16),
                extend: Extend::from_option(option),
                shift,
            }
        }
        0b00 => atomic(w, size as u8, rt, rn),
        _ => Insn::Undefined,
    }
}

fn atomic(w: u32, size: u8, rt: u8, rn: u8) -> Insn {
    let acquire = bit(w, 23);
    let release = bit(w, 22);
    let rs = reg(w, 16);
    let o3 = bit(w, 15);
    let opc = bits(w, 14, 12);
    let op = match (o3, opc) {
        (false, 0) => AtomicOp::Add,
        (false, 1) => AtomicOp::Clr,
        (false, 2) => AtomicOp::Eor,
        (false, 3) => AtomicOp::Set,
        (false, 4) => AtomicOp::Smax,
        (false, 5) => AtomicOp::Smin,
        (false, 6) => AtomicOp::Umax,
        (false, 7) => AtomicOp::Umin,
        (true, 0) => AtomicOp::Swp,
        (true, 4) if acquire && !release && rs == 31 => {
            return Insn::LoadAcquire {
                size,
                rcpc: true,
                rt,
                rn,
            }
        }
        _ => return Insn::Undefined,
    };
    Insn::Atomic {
        size,
        op,
        acquire,
        release,
        rs,
        rt,
        rn,
    }
}
