//! Branches, exception generation and system instructions.

use super::{bit, bits, reg, sext};
use crate::insn::{Barrier, BranchRegOp, Hint, Insn, PstateField, SysOp, SysReg};

pub(super) fn decode(w: u32) -> Insn {
    let op0 = bits(w, 31, 29);
    match op0 {
        0b000 | 0b100 => Insn::Branch {
            link: op0 == 0b100,
            offset: sext(bits(w, 25, 0), 26) << 2,
        },
        0b001 | 0b101 => {
            let rt = reg(w, 0);
            let nonzero = bit(w, 24);
            if !bit(w, 25) {
                Insn::CompareBranch {
                    sf: bit(w, 31),
                    nonzero,
                    rt,
                    offset: sext(bits(w, 23, 5), 19) << 2,
                }
            } else {
                let bit_no = ((bits(w, 31, 31) << 5) | bits(w, 23, 19)) as u8;
                Insn::TestBranch {
                    nonzero,
                    bit: bit_no,
                    rt,
                    offset: sext(bits(w, 18, 5), 14) << 2,
                }
            }
        }
        0b010 => {
            if bits(w, 25, 24) != 0 || bit(w, 4) {
                return Insn::Undefined;
            }
            Insn::BranchCond {
                cond: bits(w, 3, 0) as u8,
                offset: sext(bits(w, 23, 5), 19) << 2,
            }
        }
        0b110 => {
            if bit(w, 25) {
                branch_reg(w)
            } else if bit(w, 24) {
                system(w)
            } else {
                exception(w)
            }
        }
        _ => Insn::Undefined,
    }
}

fn exception(w: u32) -> Insn {
    let imm = bits(w, 20, 5) as u16;
    match (bits(w, 23, 21), bits(w, 4, 2), bits(w, 1, 0)) {
        (0b000, 0, 1) => Insn::Svc(imm),
        (0b000, 0, 2) => Insn::Hvc(imm),
        (0b000, 0, 3) => Insn::Smc(imm),
        (0b001, 0, 0) => Insn::Brk(imm),
        _ => Insn::Undefined,
    }
}

fn branch_reg(w: u32) -> Insn {
    if bits(w, 20, 16) != 0b11111 || bits(w, 15, 10) != 0 || bits(w, 4, 0) != 0 {
        return Insn::Undefined;
    }
    let rn = reg(w, 5);
    let op = match bits(w, 24, 21) {
        0b0000 => BranchRegOp::Br,
        0b0001 => BranchRegOp::Blr,
        0b0010 => BranchRegOp::Ret,
        0b0100 if rn == 31 => return Insn::Eret,
        _ => return Insn::Undefined,
    };
    Insn::BranchReg { op, rn }
}

fn system(w: u32) -> Insn {
    if bits(w, 23, 22) != 0 {
        return Insn::Undefined;
    }
    let l = bit(w, 21);
    let op0 = bits(w, 20, 19) as u8;
    let op1 = bits(w, 18, 16) as u8;
    let crn = bits(w, 15, 12) as u8;
    let crm = bits(w, 11, 8) as u8;
    let op2 = bits(w, 7, 5) as u8;
    let rt = reg(w, 0);
    if op0 >= 2 {
        let reg = SysReg::new(op0, op1, crn, crm, op2);
        return if l {
            Insn::Mrs { rt, reg }
        } else {
            Insn::Msr { rt, reg }
        };
    }
    if l {
        // SYSL: no encodings are allocated.
        return Insn::Undefined;
    }
    if op0 == 1 {
        return Insn::Sys {
            rt,
            op: SysOp(SysReg::new(1, op1, crn, crm, op2)),
        };
    }
    if rt != 31 {
        return Insn::Undefined;
    }
    match crn {
        0b0010 if op1 == 3 => Insn::Hint(match (crm << 3) | op2 {
            0 => Hint::Nop,
            1 => Hint::Yield,
            2 => Hint::Wfe,
            3 => Hint::Wfi,
            4 => Hint::Sev,
            5 => Hint::Sevl,
            0x11 => Hint::PsbCsync,
            0x12 => Hint::TsbCsync,
            0x14 => Hint::Csdb,
            n => Hint::Other(n),
        }),
        0b0011 if op1 == 3 => match op2 {
            0b010 => Insn::Clrex,
            0b100 => Insn::Barrier(Barrier::Dsb(crm)),
            0b101 => Insn::Barrier(Barrier::Dmb(crm)),
            0b110 => Insn::Barrier(Barrier::Isb),
            _ => Insn::Undefined,
        },
        0b0100 => {
            let field = match (op1, op2) {
                (0, 3) => PstateField::Uao,
                (0, 4) => PstateField::Pan,
                (0, 5) => PstateField::SpSel,
                (3, 6) => PstateField::DaifSet,
                (3, 7) => PstateField::DaifClr,
                _ => return Insn::Undefined,
            };
            Insn::MsrImm { field, imm: crm }
        }
        _ => Insn::Undefined,
    }
}
