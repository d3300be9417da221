//! Data processing (immediate and register) semantics.

use super::alu::*;
use crate::cpu::Cpu;
use crate::decode::dp_imm_masks;
use crate::insn::{BitfieldOp, CselOp, Dp1Op, Dp2Op, Dp3Op, Extend, LogicOp, MovOp, Shift};

impl Cpu {
    /// Xn, or SP when n is 31.
    #[inline(always)]
    pub(crate) fn xsp(&self, n: u8) -> u64 {
        if n == 31 {
            self.sp()
        } else {
            self.x[n as usize]
        }
    }

    /// Write Xn, or SP when n is 31.
    #[inline(always)]
    pub(crate) fn set_xsp(&mut self, n: u8, v: u64) {
        if n == 31 {
            self.set_sp(v)
        } else {
            self.x[n as usize] = v
        }
    }

    #[inline(always)]
    pub(crate) fn xr(&self, n: u8) -> u64 {
        self.x[n as usize & 31]
    }

    #[inline(always)]
    pub(crate) fn set_xr(&mut self, n: u8, v: u64) {
        self.x[n as usize & 31] = v;
        self.x[31] = 0;
    }

    #[inline(always)]
    pub(crate) fn add_sub(&mut self, sf: bool, sub: bool, setflags: bool, a: u64, b: u64) -> u64 {
        let (b, c) = if sub { (!b, true) } else { (b, false) };
        let (r, f) = add_with_carry(sf, a, b, c);
        if setflags {
            self.nzcv = f;
        }
        r
    }

    #[inline(always)]
    pub(crate) fn exec_add_sub_imm(
        &mut self,
        sf: bool,
        sub: bool,
        setflags: bool,
        rd: u8,
        rn: u8,
        imm: u32,
    ) {
        let a = self.xsp(rn);
        let r = self.add_sub(sf, sub, setflags, a, imm as u64);
        if setflags {
            self.set_xr(rd, r)
        } else {
            self.set_xsp(rd, r)
        }
    }

    #[inline(always)]
    pub(crate) fn logic(&mut self, sf: bool, op: LogicOp, a: u64, b: u64) -> u64 {
        let r = trunc(
            sf,
            match op {
                LogicOp::And | LogicOp::Ands => a & b,
                LogicOp::Orr => a | b,
                LogicOp::Eor => a ^ b,
            },
        );
        if op == LogicOp::Ands {
            let n = if sf { r >> 63 } else { r >> 31 } != 0;
            self.nzcv = nzcv_of(n, r == 0, false, false);
        }
        r
    }

    #[inline(always)]
    pub(crate) fn exec_logical_imm(&mut self, sf: bool, op: LogicOp, rd: u8, rn: u8, imm: u64) {
        let a = self.xr(rn);
        let r = self.logic(sf, op, a, imm);
        if op == LogicOp::Ands {
            self.set_xr(rd, r)
        } else {
            self.set_xsp(rd, r)
        }
    }

    #[inline(always)]
    pub(crate) fn exec_mov_wide(&mut self, sf: bool, op: MovOp, rd: u8, imm16: u16, shift: u8) {
        let imm = (imm16 as u64) << shift;
        let r = match op {
            MovOp::Z => imm,
            MovOp::N => trunc(sf, !imm),
            MovOp::K => trunc(sf, (self.xr(rd) & !(0xffffu64 << shift)) | imm),
        };
        self.set_xr(rd, r);
    }

    #[inline(always)]
    pub(crate) fn exec_bitfield(
        &mut self,
        sf: bool,
        op: BitfieldOp,
        rd: u8,
        rn: u8,
        immr: u8,
        imms: u8,
    ) {
        let datasize = if sf { 64 } else { 32 };
        let Some((wmask, tmask)) = dp_imm_masks(sf, imms as u32, immr as u32, datasize) else {
            return;
        };
        let src = self.xr(rn);
        let dst = if op == BitfieldOp::Bfm {
            self.xr(rd)
        } else {
            0
        };
        let r = immr as u32;
        let rot = if sf {
            src.rotate_right(r)
        } else {
            (src as u32).rotate_right(r) as u64
        };
        let bot = (dst & !wmask) | (rot & wmask);
        let top = if op == BitfieldOp::Sbfm {
            if (src >> imms) & 1 != 0 {
                u64::MAX
            } else {
                0
            }
        } else {
            dst
        };
        let res = (top & !tmask) | (bot & tmask);
        self.set_xr(rd, trunc(sf, res));
    }

    #[inline(always)]
    pub(crate) fn exec_extr(&mut self, sf: bool, rd: u8, rn: u8, rm: u8, lsb: u8) {
        let n = self.xr(rn);
        let m = self.xr(rm);
        let lsb = lsb as u32;
        let r = if sf {
            if lsb == 0 {
                m
            } else {
                (m >> lsb) | (n << (64 - lsb))
            }
        } else {
            let cat = ((n as u32 as u64) << 32) | (m as u32 as u64);
            (cat >> lsb) as u32 as u64
        };
        self.set_xr(rd, r);
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_logical_reg(
        &mut self,
        sf: bool,
        op: LogicOp,
        invert: bool,
        shift: Shift,
        amount: u8,
        rd: u8,
        rn: u8,
        rm: u8,
    ) {
        let mut b = shift_reg(sf, self.xr(rm), shift, amount as u32);
        if invert {
            b = !b;
        }
        let a = self.xr(rn);
        let r = self.logic(sf, op, a, b);
        self.set_xr(rd, r);
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_add_sub_shifted(
        &mut self,
        sf: bool,
        sub: bool,
        setflags: bool,
        shift: Shift,
        amount: u8,
        rd: u8,
        rn: u8,
        rm: u8,
    ) {
        let b = shift_reg(sf, self.xr(rm), shift, amount as u32);
        let a = self.xr(rn);
        let r = self.add_sub(sf, sub, setflags, a, b);
        self.set_xr(rd, trunc(sf, r));
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_add_sub_ext(
        &mut self,
        sf: bool,
        sub: bool,
        setflags: bool,
        extend: Extend,
        amount: u8,
        rd: u8,
        rn: u8,
        rm: u8,
    ) {
        let b = extend_reg(self.xr(rm), extend, amount as u32);
        let a = self.xsp(rn);
        let r = trunc(sf, self.add_sub(sf, sub, setflags, a, b));
        if setflags {
            self.set_xr(rd, r)
        } else {
            self.set_xsp(rd, r)
        }
    }

    #[inline(always)]
    pub(crate) fn exec_adc(&mut self, sf: bool, sub: bool, setflags: bool, rd: u8, rn: u8, rm: u8) {
        let a = self.xr(rn);
        let b = if sub { !self.xr(rm) } else { self.xr(rm) };
        let (r, f) = add_with_carry(sf, a, b, self.nzcv & 2 != 0);
        if setflags {
            self.nzcv = f;
        }
        self.set_xr(rd, r);
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_ccmp(
        &mut self,
        sf: bool,
        sub: bool,
        imm: bool,
        rn: u8,
        rm: u8,
        cond: u8,
        nzcv: u8,
    ) {
        if condition_holds(cond, self.nzcv) {
            let a = self.xr(rn);
            let b = if imm { rm as u64 } else { self.xr(rm) };
            self.add_sub(sf, sub, true, a, b);
        } else {
            self.nzcv = nzcv & 0xf;
        }
    }

    #[inline(always)]
    pub(crate) fn exec_csel(&mut self, sf: bool, op: CselOp, rd: u8, rn: u8, rm: u8, cond: u8) {
        let r = if condition_holds(cond, self.nzcv) {
            self.xr(rn)
        } else {
            let m = self.xr(rm);
            match op {
                CselOp::Csel => m,
                CselOp::Csinc => m.wrapping_add(1),
                CselOp::Csinv => !m,
                CselOp::Csneg => m.wrapping_neg(),
            }
        };
        self.set_xr(rd, trunc(sf, r));
    }

    #[inline(always)]
    pub(crate) fn exec_dp1(&mut self, sf: bool, op: Dp1Op, rd: u8, rn: u8) {
        let v = self.xr(rn);
        let r = if sf {
            match op {
                Dp1Op::Rbit => v.reverse_bits(),
                Dp1Op::Rev16 => {
                    ((v & 0x00ff_00ff_00ff_00ff) << 8) | ((v >> 8) & 0x00ff_00ff_00ff_00ff)
                }
                Dp1Op::Rev32 => {
                    let lo = (v as u32).swap_bytes() as u64;
                    let hi = ((v >> 32) as u32).swap_bytes() as u64;
                    (hi << 32) | lo
                }
                Dp1Op::Rev => v.swap_bytes(),
                Dp1Op::Clz => v.leading_zeros() as u64,
                Dp1Op::Cls => (((v ^ (v >> 1)) & (u64::MAX >> 1)).leading_zeros() - 1) as u64,
            }
        } else {
            let w = v as u32;
            (match op {
                Dp1Op::Rbit => w.reverse_bits(),
                Dp1Op::Rev16 => ((w & 0x00ff_00ff) << 8) | ((w >> 8) & 0x00ff_00ff),
                Dp1Op::Rev32 | Dp1Op::Rev => w.swap_bytes(),
                Dp1Op::Clz => w.leading_zeros(),
                Dp1Op::Cls => ((w ^ (w >> 1)) & (u32::MAX >> 1)).leading_zeros() - 1,
            }) as u64
        };
        self.set_xr(rd, r);
    }

    #[inline(always)]
    pub(crate) fn exec_dp2(&mut self, sf: bool, op: Dp2Op, rd: u8, rn: u8, rm: u8) {
        let n = self.xr(rn);
        let m = self.xr(rm);
        let bitsz = if sf { 64 } else { 32 };
        let r = match op {
            Dp2Op::Udiv => {
                let (n, m) = (trunc(sf, n), trunc(sf, m));
                n.checked_div(m).unwrap_or(0)
            }
            Dp2Op::Sdiv => {
                if sf {
                    if m == 0 {
                        0
                    } else {
                        (n as i64).wrapping_div(m as i64) as u64
                    }
                } else if m as u32 == 0 {
                    0
                } else {
                    (n as i32).wrapping_div(m as i32) as u32 as u64
                }
            }
            Dp2Op::Lslv => shift_reg(sf, n, Shift::Lsl, (m % bitsz) as u32),
            Dp2Op::Lsrv => shift_reg(sf, n, Shift::Lsr, (m % bitsz) as u32),
            Dp2Op::Asrv => shift_reg(sf, n, Shift::Asr, (m % bitsz) as u32),
            Dp2Op::Rorv => shift_reg(sf, n, Shift::Ror, (m % bitsz) as u32),
            Dp2Op::Crc32 { sz } => crc32(n as u32, m, 1 << sz, 0xedb8_8320) as u64,
            Dp2Op::Crc32c { sz } => crc32(n as u32, m, 1 << sz, 0x82f6_3b78) as u64,
        };
        self.set_xr(rd, trunc(sf, r));
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_dp3(&mut self, sf: bool, op: Dp3Op, rd: u8, rn: u8, rm: u8, ra: u8) {
        let n = self.xr(rn);
        let m = self.xr(rm);
        let a = self.xr(ra);
        let r = match op {
            Dp3Op::Madd => a.wrapping_add(n.wrapping_mul(m)),
            Dp3Op::Msub => a.wrapping_sub(n.wrapping_mul(m)),
            Dp3Op::Smaddl => a.wrapping_add(((n as i32 as i64) * (m as i32 as i64)) as u64),
            Dp3Op::Smsubl => a.wrapping_sub(((n as i32 as i64) * (m as i32 as i64)) as u64),
            Dp3Op::Umaddl => a.wrapping_add((n as u32 as u64) * (m as u32 as u64)),
            Dp3Op::Umsubl => a.wrapping_sub((n as u32 as u64) * (m as u32 as u64)),
            Dp3Op::Smulh => (((n as i64 as i128) * (m as i64 as i128)) >> 64) as u64,
            Dp3Op::Umulh => (((n as u128) * (m as u128)) >> 64) as u64,
        };
        self.set_xr(rd, trunc(sf, r));
    }
}
