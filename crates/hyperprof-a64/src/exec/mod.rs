//! Execution of one decoded instruction.

pub(crate) mod alu;
mod dp;
mod mem;
mod system;

use crate::bus::{Bus, OpClass};
use crate::cpu::Cpu;
use crate::exception::{ec, Exit, Stop};
use crate::insn::{BranchRegOp, Hint, Insn};
use alu::{condition_holds, extend_reg};

impl Cpu {
    #[inline(always)]
    fn branch_to<B: Bus>(&mut self, target: u64, taken: bool, pc: u64) {
        if B::OBSERVE {
            self.obs.target = target;
            self.obs.taken = taken;
        }
        self.pc = if taken { target } else { pc.wrapping_add(4) };
    }

    /// Execute `insn`, the instruction at the current PC. On success the PC
    /// is the next instruction; on a stop the caller takes the exception
    /// or leaves `run`.
    #[inline(always)]
    pub(crate) fn exec<B: Bus>(&mut self, bus: &mut B, insn: Insn) -> Result<(), Stop> {
        let pc = self.pc;
        match insn {
            Insn::AddSubImm {
                sf,
                sub,
                setflags,
                rd,
                rn,
                imm,
            } => self.exec_add_sub_imm(sf, sub, setflags, rd, rn, imm),
            Insn::LogicalImm {
                sf,
                op,
                rd,
                rn,
                imm,
            } => self.exec_logical_imm(sf, op, rd, rn, imm),
            Insn::MovWide {
                sf,
                op,
                rd,
                imm16,
                shift,
            } => self.exec_mov_wide(sf, op, rd, imm16, shift),
            Insn::Adr { rd, page, imm } => {
                let base = if page { pc & !0xfff } else { pc };
                self.set_xr(rd, base.wrapping_add(imm as u64));
            }
            Insn::Bitfield {
                sf,
                op,
                rd,
                rn,
                immr,
                imms,
            } => self.exec_bitfield(sf, op, rd, rn, immr, imms),
            Insn::Extr {
                sf,
                rd,
                rn,
                rm,
                lsb,
            } => self.exec_extr(sf, rd, rn, rm, lsb),
            Insn::LogicalReg {
                sf,
                op,
                invert,
                shift,
                amount,
                rd,
                rn,
                rm,
            } => self.exec_logical_reg(sf, op, invert, shift, amount, rd, rn, rm),
            Insn::AddSubShifted {
                sf,
                sub,
                setflags,
                shift,
                amount,
                rd,
                rn,
                rm,
            } => self.exec_add_sub_shifted(sf, sub, setflags, shift, amount, rd, rn, rm),
            Insn::AddSubExtended {
                sf,
                sub,
                setflags,
                extend,
                amount,
                rd,
                rn,
                rm,
            } => self.exec_add_sub_ext(sf, sub, setflags, extend, amount, rd, rn, rm),
            Insn::AddSubCarry {
                sf,
                sub,
                setflags,
                rd,
                rn,
                rm,
            } => self.exec_adc(sf, sub, setflags, rd, rn, rm),
            Insn::CondCompare {
                sf,
                sub,
                imm,
                rn,
                rm,
                cond,
                nzcv,
            } => self.exec_ccmp(sf, sub, imm, rn, rm, cond, nzcv),
            Insn::CondSelect {
                sf,
                op,
                rd,
                rn,
                rm,
                cond,
            } => self.exec_csel(sf, op, rd, rn, rm, cond),
            Insn::DataProc1 { sf, op, rd, rn } => self.exec_dp1(sf, op, rd, rn),
            Insn::DataProc2 { sf, op, rd, rn, rm } => self.exec_dp2(sf, op, rd, rn, rm),
            Insn::DataProc3 {
                sf,
                op,
                rd,
                rn,
                rm,
                ra,
            } => self.exec_dp3(sf, op, rd, rn, rm, ra),
            Insn::Branch { link, offset } => {
                if link {
                    self.set_xr(30, pc.wrapping_add(4));
                }
                self.branch_to::<B>(pc.wrapping_add(offset as i64 as u64), true, pc);
                return Ok(());
            }
            Insn::BranchCond { cond, offset } => {
                let taken = condition_holds(cond, self.nzcv);
                self.branch_to::<B>(pc.wrapping_add(offset as i64 as u64), taken, pc);
                return Ok(());
            }
            Insn::CompareBranch {
                sf,
                nonzero,
                rt,
                offset,
            } => {
                let v = self.xr(rt);
                let v = if sf { v } else { v as u32 as u64 };
                self.branch_to::<B>(
                    pc.wrapping_add(offset as i64 as u64),
                    (v != 0) == nonzero,
                    pc,
                );
                return Ok(());
            }
            Insn::TestBranch {
                nonzero,
                bit,
                rt,
                offset,
            } => {
                let set = (self.xr(rt) >> bit) & 1 != 0;
                self.branch_to::<B>(pc.wrapping_add(offset as i64 as u64), set == nonzero, pc);
                return Ok(());
            }
            Insn::BranchReg { op, rn } => {
                let target = self.xr(rn);
                if op == BranchRegOp::Blr {
                    self.set_xr(30, pc.wrapping_add(4));
                }
                self.branch_to::<B>(target, true, pc);
                return Ok(());
            }
            Insn::Eret => {
                if self.pstate.el == 0 {
                    return Err(self.undef(pc));
                }
                self.eret();
                if B::OBSERVE {
                    self.obs.target = self.pc;
                    self.obs.taken = true;
                }
                return Ok(());
            }
            Insn::Svc(imm) => {
                return Err(Stop::El1 {
                    esr: crate::exception::esr(ec::SVC64, imm as u32),
                    far: None,
                    pref: pc.wrapping_add(4),
                    retired: true,
                })
            }
            Insn::Hvc(imm) => {
                if self.pstate.el == 0 || self.el2.hcd {
                    return Err(self.undef(pc));
                }
                self.pc = pc.wrapping_add(4);
                let exit = crate::exception::El2Exit {
                    esr: crate::exception::esr(ec::HVC64, imm as u32),
                    far: 0,
                    hpfar: 0,
                };
                return Err(Stop::Exit {
                    exit: Exit::El2(exit),
                    retired: true,
                });
            }
            Insn::Smc(imm) => {
                if self.pstate.el == 0 || !self.el2.tsc {
                    return Err(self.undef(pc));
                }
                return Err(Self::to_el2(ec::SMC64, imm as u32, 0, 0));
            }
            Insn::Brk(imm) => return Err(self.sync_el1(ec::BRK64, imm as u32, None, pc)),
            Insn::Hint(h) => return self.exec_hint(bus, h, pc),
            Insn::Barrier(b) => {
                if bus.barrier(b, self.pstate.el) == crate::bus::HintAction::Exit {
                    self.pc = pc.wrapping_add(4);
                    return Err(Stop::Exit {
                        exit: Exit::Hint,
                        retired: true,
                    });
                }
            }
            Insn::Clrex => self.monitor.armed = false,
            Insn::MsrImm { field, imm } => return self.exec_msr_imm(field, imm, pc),
            Insn::Mrs { rt, reg } => return self.exec_mrs(bus, rt, reg, pc),
            Insn::Msr { rt, reg } => return self.exec_msr(bus, rt, reg, pc),
            Insn::Sys { rt, op } => return self.exec_sys(bus, rt, op, pc),
            Insn::LdStImm {
                size,
                kind,
                rt,
                rn,
                offset,
                wb,
                unpriv,
            } => self.exec_ldst_imm(bus, size, kind, rt, rn, offset, wb, unpriv, pc)?,
            Insn::LdStReg {
                size,
                kind,
                rt,
                rn,
                rm,
                extend,
                shift,
            } => {
                let off = extend_reg(self.xr(rm), extend, shift as u32);
                self.exec_ldst_reg(bus, size, kind, rt, rn, off, pc)?
            }
            Insn::LoadLiteral {
                size,
                kind,
                rt,
                offset,
            } => self.exec_literal(bus, size, kind, rt, offset, pc)?,
            Insn::LdStPair {
                size,
                load,
                signed,
                rt,
                rt2,
                rn,
                offset,
                wb,
            } => self.exec_pair(bus, size, load, signed, rt, rt2, rn, offset, wb, pc)?,
            Insn::LoadExclusive {
                size,
                pair,
                acquire,
                rt,
                rt2,
                rn,
            } => self.exec_load_excl(bus, size, pair, acquire, rt, rt2, rn, pc)?,
            Insn::StoreExclusive {
                size,
                pair,
                release,
                rs,
                rt,
                rt2,
                rn,
            } => self.exec_store_excl(bus, size, pair, release, rs, rt, rt2, rn, pc)?,
            Insn::LoadAcquire { size, rt, rn, .. } => {
                self.exec_load_acquire(bus, size, rt, rn, pc)?
            }
            Insn::StoreRelease { size, rt, rn } => {
                self.exec_store_release(bus, size, rt, rn, pc)?
            }
            Insn::Atomic {
                size,
                op,
                acquire,
                release,
                rs,
                rt,
                rn,
            } => self.exec_atomic(bus, size, op, acquire || release, rs, rt, rn, pc)?,
            Insn::Cas {
                size,
                acquire,
                release,
                rs,
                rt,
                rn,
            } => self.exec_cas(bus, size, acquire || release, rs, rt, rn, pc)?,
            Insn::Casp {
                sf,
                acquire,
                release,
                rs,
                rt,
                rn,
            } => self.exec_casp(bus, sf, acquire || release, rs, rt, rn, pc)?,
            Insn::FpSimd => return Err(self.fp_simd(pc)),
            Insn::Undefined => return Err(self.undef(pc)),
        }
        self.pc = pc.wrapping_add(4);
        Ok(())
    }
}

/// The SPE/PMU class of an instruction.
pub fn op_class(insn: &Insn) -> OpClass {
    const L: u16 = OpClass::LOAD;
    const S: u16 = OpClass::STORE;
    use crate::insn::LdStKind;
    OpClass(match *insn {
        Insn::LdStImm { kind, .. }
        | Insn::LdStReg { kind, .. }
        | Insn::LoadLiteral { kind, .. } => match kind {
            LdStKind::Store => S,
            _ => L,
        },
        Insn::LdStPair { load, .. } => {
            if load {
                L
            } else {
                S
            }
        }
        Insn::LoadExclusive { acquire, .. } => {
            L | OpClass::EXCLUSIVE | if acquire { OpClass::ACQ_REL } else { 0 }
        }
        Insn::StoreExclusive { release, .. } => {
            S | OpClass::EXCLUSIVE | if release { OpClass::ACQ_REL } else { 0 }
        }
        Insn::LoadAcquire { .. } => L | OpClass::ACQ_REL,
        Insn::StoreRelease { .. } => S | OpClass::ACQ_REL,
        Insn::Atomic {
            acquire, release, ..
        }
        | Insn::Cas {
            acquire, release, ..
        }
        | Insn::Casp {
            acquire, release, ..
        } => {
            L | S
                | OpClass::ATOMIC
                | if acquire || release {
                    OpClass::ACQ_REL
                } else {
                    0
                }
        }
        Insn::Branch { link, .. } => OpClass::BRANCH | if link { OpClass::LINK } else { 0 },
        Insn::BranchCond { .. } | Insn::CompareBranch { .. } | Insn::TestBranch { .. } => {
            OpClass::BRANCH | OpClass::CONDITIONAL
        }
        Insn::BranchReg { op, .. } => {
            OpClass::BRANCH
                | OpClass::INDIRECT
                | match op {
                    BranchRegOp::Blr => OpClass::LINK,
                    BranchRegOp::Ret => OpClass::RETURN,
                    BranchRegOp::Br => 0,
                }
        }
        Insn::Eret => OpClass::BRANCH | OpClass::INDIRECT | OpClass::EXCEPTION,
        Insn::Svc(_) | Insn::Hvc(_) | Insn::Smc(_) | Insn::Brk(_) => OpClass::EXCEPTION,
        Insn::Hint(Hint::Nop) => 0,
        Insn::Hint(_)
        | Insn::Barrier(_)
        | Insn::Clrex
        | Insn::MsrImm { .. }
        | Insn::Mrs { .. }
        | Insn::Msr { .. }
        | Insn::Sys { .. } => OpClass::SYSTEM,
        _ => 0,
    })
}
