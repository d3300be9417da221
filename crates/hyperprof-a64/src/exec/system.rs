//! System class semantics: MRS/MSR, MSR (immediate), SYS, hints,
//! barriers, exception generation, ERET and the FP/SIMD trap.

use crate::bus::{Bus, HintAction, SysRegEffect, SysRegRead, SysRegWrite};
use crate::cpu::{regs, sctlr, Cpu};
use crate::exception::{ec, Exit, Stop};
use crate::insn::{Hint, PstateField, SysOp, SysOpKind, SysReg};

/// ISS of EC 0x18 for an access to `reg` with Rt; `read` for MRS.
pub(crate) fn sys64_iss(reg: SysReg, rt: u8, read: bool) -> u32 {
    ((reg.op0() as u32) << 20)
        | ((reg.op2() as u32) << 17)
        | ((reg.op1() as u32) << 14)
        | ((reg.crn() as u32) << 10)
        | ((rt as u32) << 5)
        | ((reg.crm() as u32) << 1)
        | read as u32
}

/// ISS of EC 0x01 for an AArch64 WFI (`wfe` false) or WFE: CV = 1, COND = 0b1110.
fn wfx_iss(wfe: bool) -> u32 {
    (1 << 24) | (0xe << 20) | wfe as u32
}

impl Cpu {
    fn sys_trap(&self, to_el2: bool, reg: SysReg, rt: u8, read: bool, pc: u64) -> Stop {
        let iss = sys64_iss(reg, rt, read);
        if to_el2 {
            Self::to_el2(ec::SYS64, iss, 0, 0)
        } else {
            self.sync_el1(ec::SYS64, iss, None, pc)
        }
    }

    /// Whether the engine's own register is accessible at the current state.
    fn engine_reg_ok(&self, reg: SysReg) -> bool {
        match reg {
            regs::SP_EL1 => false,
            regs::SP_EL0 => self.pstate.sp_sel,
            _ => true,
        }
    }

    pub(crate) fn exec_mrs<B: Bus>(
        &mut self,
        bus: &mut B,
        rt: u8,
        reg: SysReg,
        pc: u64,
    ) -> Result<(), Stop> {
        let el = self.pstate.el;
        let v = match reg {
            regs::NZCV => self.nzcv(),
            regs::DAIF if el == 0 && self.sctlr_el1 & sctlr::UMA == 0 => {
                return Err(self.sys_trap(false, reg, rt, true, pc))
            }
            regs::DAIF => (self.pstate.daif as u64) << 6,
            _ => {
                if el == 0 && reg.op1() != 3 {
                    return Err(self.undef(pc));
                }
                match bus.sysreg_read(reg, el) {
                    SysRegRead::Value(v) => {
                        self.set_xr(rt, v);
                        return self.sysreg_effect(bus, pc);
                    }
                    SysRegRead::Engine => match self.read_sysreg(reg) {
                        Some(v) if self.engine_reg_ok(reg) => v,
                        _ => return Err(self.undef(pc)),
                    },
                    SysRegRead::TrapToEl1 => return Err(self.sys_trap(false, reg, rt, true, pc)),
                    SysRegRead::TrapToEl2 => return Err(self.sys_trap(true, reg, rt, true, pc)),
                    SysRegRead::Undefined => return Err(self.undef(pc)),
                }
            }
        };
        self.set_xr(rt, v);
        self.pc = pc.wrapping_add(4);
        Ok(())
    }

    pub(crate) fn exec_msr<B: Bus>(
        &mut self,
        bus: &mut B,
        rt: u8,
        reg: SysReg,
        pc: u64,
    ) -> Result<(), Stop> {
        let el = self.pstate.el;
        let v = self.xr(rt);
        match reg {
            regs::NZCV => self.set_nzcv(v),
            regs::DAIF if el == 0 && self.sctlr_el1 & sctlr::UMA == 0 => {
                return Err(self.sys_trap(false, reg, rt, false, pc))
            }
            regs::DAIF => self.pstate.daif = ((v >> 6) & 0xf) as u8,
            regs::CURRENT_EL => return Err(self.undef(pc)),
            _ => {
                if el == 0 && reg.op1() != 3 {
                    return Err(self.undef(pc));
                }
                match bus.sysreg_write(reg, v, el) {
                    SysRegWrite::Done => {
                        if self.engine_reg_ok(reg) {
                            self.write_sysreg(reg, v);
                        }
                        self.invalidate_translations();
                        return self.sysreg_effect(bus, pc);
                    }
                    SysRegWrite::Engine => {
                        if !self.engine_reg_ok(reg) || !self.write_sysreg(reg, v) {
                            return Err(self.undef(pc));
                        }
                    }
                    SysRegWrite::TrapToEl1 => return Err(self.sys_trap(false, reg, rt, false, pc)),
                    SysRegWrite::TrapToEl2 => return Err(self.sys_trap(true, reg, rt, false, pc)),
                    SysRegWrite::Undefined => return Err(self.undef(pc)),
                }
            }
        }
        self.pc = pc.wrapping_add(4);
        Ok(())
    }

    /// Finishes an MRS/MSR the embedder answered: the lines it changed,
    /// or an exit it asked for.
    fn sysreg_effect<B: Bus>(&mut self, bus: &mut B, pc: u64) -> Result<(), Stop> {
        match bus.after_sysreg() {
            SysRegEffect::Unchanged => {}
            SysRegEffect::Irq(level) => self.irq_line = level,
            SysRegEffect::Exit => return self.retire_exit(pc, Exit::Hint),
        }
        self.pc = pc.wrapping_add(4);
        Ok(())
    }

    pub(crate) fn exec_msr_imm(
        &mut self,
        field: PstateField,
        imm: u8,
        pc: u64,
    ) -> Result<(), Stop> {
        let el = self.pstate.el;
        match field {
            PstateField::DaifSet | PstateField::DaifClr => {
                if el == 0 && self.sctlr_el1 & sctlr::UMA == 0 {
                    let op2 = if field == PstateField::DaifSet { 6 } else { 7 };
                    return Err(self.sys_trap(
                        false,
                        SysReg::new(0, 3, 4, imm, op2),
                        31,
                        false,
                        pc,
                    ));
                }
                if field == PstateField::DaifSet {
                    self.pstate.daif |= imm & 0xf;
                } else {
                    self.pstate.daif &= !imm & 0xf;
                }
            }
            _ if el == 0 => return Err(self.undef(pc)),
            PstateField::SpSel => {
                self.pstate.sp_sel = imm & 1 != 0;
                self.update_sp_idx();
            }
            PstateField::Pan => self.pstate.pan = imm & 1 != 0,
            PstateField::Uao => self.pstate.uao = imm & 1 != 0,
        }
        self.pc = pc.wrapping_add(4);
        Ok(())
    }

    pub(crate) fn exec_sys<B: Bus>(
        &mut self,
        bus: &mut B,
        rt: u8,
        op: SysOp,
        pc: u64,
    ) -> Result<(), Stop> {
        let el = self.pstate.el;
        let kind = op.kind();
        if el == 0 {
            let allowed = match kind {
                SysOpKind::DcZva => self.sctlr_el1 & sctlr::DZE != 0,
                SysOpKind::DcCleanVa | SysOpKind::IcInvalidateVa => {
                    self.sctlr_el1 & sctlr::UCI != 0
                }
                _ => return Err(self.undef(pc)),
            };
            if !allowed {
                return Err(self.sys_trap(false, op.0, rt, false, pc));
            }
        }
        let v = self.xr(rt);
        match bus.sys(op, v, el) {
            SysRegWrite::Done => {}
            SysRegWrite::Engine => {
                if kind == SysOpKind::DcZva {
                    self.dc_zva(bus, v, pc)?;
                }
            }
            SysRegWrite::TrapToEl1 => return Err(self.sys_trap(false, op.0, rt, false, pc)),
            SysRegWrite::TrapToEl2 => return Err(self.sys_trap(true, op.0, rt, false, pc)),
            SysRegWrite::Undefined => return Err(self.undef(pc)),
        }
        match kind {
            SysOpKind::IcInvalidateAll | SysOpKind::IcInvalidateVa => self.invalidate_code(),
            SysOpKind::Tlbi => self.invalidate_translations(),
            _ => {}
        }
        self.pc = pc.wrapping_add(4);
        Ok(())
    }

    fn retire_exit(&mut self, pc: u64, exit: Exit) -> Result<(), Stop> {
        self.pc = pc.wrapping_add(4);
        Err(Stop::Exit {
            exit,
            retired: true,
        })
    }

    pub(crate) fn exec_hint<B: Bus>(&mut self, bus: &mut B, h: Hint, pc: u64) -> Result<(), Stop> {
        let el = self.pstate.el;
        let pending = self.irq_line || self.fiq_line;
        match h {
            Hint::Wfi | Hint::Wfe => {
                let wfe = h == Hint::Wfe;
                if wfe && self.event {
                    self.event = false;
                } else if !pending {
                    let ntw = if wfe { sctlr::NTWE } else { sctlr::NTWI };
                    if el == 0 && self.sctlr_el1 & ntw == 0 {
                        return Err(self.sync_el1(ec::WFX, wfx_iss(wfe), None, pc));
                    }
                    if (wfe && self.el2.twe) || (!wfe && self.el2.twi) {
                        return Err(Self::to_el2(ec::WFX, wfx_iss(wfe), 0, 0));
                    }
                    bus.hint(h, el);
                    return self.retire_exit(pc, if wfe { Exit::Wfe } else { Exit::Wfi });
                }
            }
            Hint::Sevl => {
                self.event = true;
                if bus.hint(h, el) == HintAction::Exit {
                    return self.retire_exit(pc, Exit::Hint);
                }
            }
            _ => {
                if bus.hint(h, el) == HintAction::Exit {
                    return self.retire_exit(pc, Exit::Hint);
                }
            }
        }
        self.pc = pc.wrapping_add(4);
        Ok(())
    }

    /// FP/SIMD: CPACR_EL1.FPEN traps to EL1, then CPTR_EL2.TFP to EL2,
    /// else UNDEFINED (the engine implements no FP/SIMD).
    pub(crate) fn fp_simd(&self, pc: u64) -> Stop {
        let fpen = (self.cpacr_el1 >> 20) & 3;
        let trapped = match fpen {
            0 | 2 => true,
            1 => self.pstate.el == 0,
            _ => false,
        };
        let iss = (1 << 24) | (0xe << 20);
        if trapped {
            self.sync_el1(ec::FP_ASIMD, iss, None, pc)
        } else if self.el2.tfp {
            Self::to_el2(ec::FP_ASIMD, iss, 0, 0)
        } else {
            self.undef(pc)
        }
    }
}
