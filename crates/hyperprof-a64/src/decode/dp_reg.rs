//! Data processing (register): logical and add/subtract (shifted and
//! extended register), with carry, conditional compare and select, and
//! the 1-, 2- and 3-source classes.

use super::{bit, bits, reg};
use crate::insn::{CselOp, Dp1Op, Dp2Op, Dp3Op, Extend, Insn, LogicOp, Shift};

fn shift_of(v: u32) -> Shift {
    match v & 3 {
        0 => Shift::Lsl,
        1 => Shift::Lsr,
        2 => Shift::Asr,
        _ => Shift::Ror,
    }
}

pub(super) fn decode(w: u32) -> Insn {
    let sf = bit(w, 31);
    let rd = reg(w, 0);
    let rn = reg(w, 5);
    let rm = reg(w, 16);
    if !bit(w, 28) {
        let amount = bits(w, 15, 10);
        if !bit(w, 24) {
            // Logical (shifted register).
            if !sf && amount >= 32 {
                return Insn::Undefined;
            }
            let op = match bits(w, 30, 29) {
                0 => LogicOp::And,
                1 => LogicOp::Orr,
                2 => LogicOp::Eor,
                _ => LogicOp::Ands,
            };
            return Insn::LogicalReg {
                sf,
                op,
                invert: bit(w, 21),
                shift: shift_of(bits(w, 23, 22)),
                amount: amount as u8,
                rd,
                rn,
                rm,
            };
        }
        let sub = bit(w, 30);
        let setflags = bit(w, 29);
        if !bit(w, 21) {
            let shift = bits(w, 23, 22);
            if shift == 3 || (!sf && amount >= 32) {
                return Insn::Undefined;
            }
            return Insn::AddSubShifted {
                sf,
                sub,
                setflags,
                shift: shift_of(shift),
                amount: amount as u8,
                rd,
                rn,
                rm,
            };
        }
        let imm3 = bits(w, 12, 10);
        if bits(w, 23, 22) != 0 || imm3 > 4 {
            return Insn::Undefined;
        }
        return Insn::AddSubExtended {
            sf,
            sub,
            setflags,
            extend: Extend::from_option(bits(w, 15, 13)),
            amount: imm3 as u8,
            rd,
            rn,
            rm,
        };
    }
    if bit(w, 24) {
        // Data processing (3 source).
        if bits(w, 30, 29) != 0 {
            return Insn::Undefined;
        }
        let o0 = bit(w, 15);
        let ra = reg(w, 10);
        let op = match (bits(w, 23, 21), o0) {
            (0, false) => Dp3Op::Madd,
            (0, true) => Dp3Op::Msub,
            (1, false) if sf => Dp3Op::Smaddl,
            (1, true) if sf => Dp3Op::Smsubl,
            (2, false) if sf => Dp3Op::Smulh,
            (5, false) if sf => Dp3Op::Umaddl,
            (5, true) if sf => Dp3Op::Umsubl,
            (6, false) if sf => Dp3Op::Umulh,
            _ => return Insn::Undefined,
        };
        return Insn::DataProc3 {
            sf,
            op,
            rd,
            rn,
            rm,
            ra,
        };
    }
    let op30 = bit(w, 30);
    let s = bit(w, 29);
    match bits(w, 23, 21) {
        0b000 => {
            if bits(w, 15, 10) != 0 {
                return Insn::Undefined;
            }
            Insn::AddSubCarry {
                sf,
                sub: op30,
                setflags: s,
                rd,
                rn,
                rm,
            }
        }
        0b010 => {
            if !s || bit(w, 10) || bit(w, 4) {
                return Insn::Undefined;
            }
            Insn::CondCompare {
                sf,
                sub: op30,
                imm: bit(w, 11),
                rn,
                rm,
                cond: bits(w, 15, 12) as u8,
                nzcv: bits(w, 3, 0) as u8,
            }
        }
        0b100 => {
            if s || bit(w, 11) {
                return Insn::Undefined;
            }
            let op = match (op30, bit(w, 10)) {
                (false, false) => CselOp::Csel,
                (false, true) => CselOp::Csinc,
                (true, false) => CselOp::Csinv,
                (true, true) => CselOp::Csneg,
            };
            Insn::CondSelect {
                sf,
                op,
                rd,
                rn,
                rm,
                cond: bits(w, 15, 12) as u8,
            }
        }
        0b110 => {
            if s {
                return Insn::Undefined;
            }
            let opcode = bits(w, 15, 10);
            if op30 {
                // Data processing (1 source).
                if bits(w, 20, 16) != 0 {
                    return Insn::Undefined;
                }
                let op = match (opcode, sf) {
                    (0, _) => Dp1Op::Rbit,
                    (1, _) => Dp1Op::Rev16,
                    (2, false) => Dp1Op::Rev,
                    (2, true) => Dp1Op::Rev32,
                    (3, true) => Dp1Op::Rev,
                    (4, _) => Dp1Op::Clz,
                    (5, _) => Dp1Op::Cls,
                    _ => return Insn::Undefined,
                };
                return Insn::DataProc1 { sf, op, rd, rn };
            }
            let op = match opcode {
                0b000010 => Dp2Op::Udiv,
                0b000011 => Dp2Op::Sdiv,
                0b001000 => Dp2Op::Lslv,
                0b001001 => Dp2Op::Lsrv,
                0b001010 => Dp2Op::Asrv,
                0b001011 => Dp2Op::Rorv,
                0b010000..=0b010111 => {
                    let sz = (opcode & 3) as u8;
                    if (sz == 3) != sf {
                        return Insn::Undefined;
                    }
                    if opcode & 4 != 0 {
                        Dp2Op::Crc32c { sz }
                    } else {
                        Dp2Op::Crc32 { sz }
                    }
                }
                _ => return Insn::Undefined,
            };
            Insn::DataProc2 { sf, op, rd, rn, rm }
        }
        _ => Insn::Undefined,
    }
}
