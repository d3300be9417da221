//! Load/store semantics: addressing, alignment, the exclusive monitor,
//! LSE atomics, and the Data Abort syndromes.

use super::alu::sext_bytes;
use crate::bus::{Access, AccessKind, Bus, MemFault};
use crate::cpu::{sctlr, Cpu};
use crate::exception::{ec, Stop, FSC_ALIGNMENT};
use crate::insn::{AtomicOp, LdStKind, Writeback};

/// ISS\[24:14\] for a single-register access (ISV set).
#[inline(always)]
pub(crate) fn isv(size: u8, sse: bool, rt: u8, sf: bool, ar: bool) -> u32 {
    (1 << 24)
        | ((size as u32) << 22)
        | ((sse as u32) << 21)
        | ((rt as u32) << 16)
        | ((sf as u32) << 15)
        | ((ar as u32) << 14)
}

/// Access shape of one memory instruction, for faults and syndromes.
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub kind: AccessKind,
    pub unpriv: bool,
    pub ordered: bool,
    pub atomic: bool,
    /// Alignment required to this many bytes regardless of SCTLR_EL1.A (0: none).
    pub align: u8,
    /// ISS\[24:14\] for stage-2 aborts.
    pub isv: u32,
}

impl Shape {
    pub(crate) const fn plain(kind: AccessKind, isv: u32) -> Shape {
        Shape {
            kind,
            unpriv: false,
            ordered: false,
            atomic: false,
            align: 0,
            isv,
        }
    }
}

impl Cpu {
    #[inline(always)]
    fn access(&self, s: &Shape) -> Access {
        let el = if s.unpriv && !self.pstate.uao {
            0
        } else {
            self.pstate.el
        };
        Access {
            kind: s.kind,
            el,
            pan: self.pstate.pan,
            unpriv: s.unpriv,
            ordered: s.ordered,
            atomic: s.atomic,
        }
    }

    /// SP alignment check for a base register that is SP.
    #[inline(always)]
    pub(crate) fn check_sp(&self, rn: u8, base: u64, pc: u64) -> Result<(), Stop> {
        if rn == 31 && base & 15 != 0 {
            let bit = if self.pstate.el == 0 {
                sctlr::SA0
            } else {
                sctlr::SA
            };
            if self.sctlr_el1 & bit != 0 {
                return Err(self.sync_el1(ec::SP_ALIGN, 0, None, pc));
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn check_align(&self, va: u64, bytes: u64, s: &Shape, pc: u64) -> Result<(), Stop> {
        let need = if s.align != 0 { s.align as u64 } else { bytes };
        if va & (need - 1) != 0 && (s.align != 0 || self.sctlr_el1 & sctlr::A != 0) {
            let wnr = s.kind == AccessKind::Write;
            return Err(self.data_abort(
                MemFault::Stage1 { fsc: FSC_ALIGNMENT },
                va,
                wnr,
                0,
                false,
                pc,
            ));
        }
        Ok(())
    }

    /// Read `1 << size` bytes at `va`.
    #[inline(always)]
    pub(crate) fn load<B: Bus>(
        &mut self,
        bus: &mut B,
        va: u64,
        size: u8,
        s: &Shape,
        pc: u64,
    ) -> Result<u64, Stop> {
        self.check_align(va, 1 << size, s, pc)?;
        let acc = self.access(s);
        match bus.read(va, 1 << size, acc) {
            Ok(v) => Ok(v),
            Err(f) => Err(self.data_abort(
                f,
                va,
                s.kind == AccessKind::ReadModifyWrite,
                s.isv,
                false,
                pc,
            )),
        }
    }

    /// Write `1 << size` bytes at `va`.
    #[inline(always)]
    pub(crate) fn store<B: Bus>(
        &mut self,
        bus: &mut B,
        va: u64,
        size: u8,
        v: u64,
        s: &Shape,
        pc: u64,
    ) -> Result<(), Stop> {
        self.check_align(va, 1 << size, s, pc)?;
        let acc = self.access(s);
        match bus.write(va, 1 << size, v, acc) {
            Ok(pa) => {
                self.note_write(pa);
                let last = pa.wrapping_add((1u64 << size) - 1);
                if last >> 12 != pa >> 12 {
                    // A page-crossing store: also the next page, assuming the
                    // physical pages are contiguous (otherwise the embedder
                    // calls Cpu::invalidate_code).
                    self.note_write(last);
                }
                Ok(())
            }
            Err(f) => Err(self.data_abort(f, va, true, s.isv, false, pc)),
        }
    }

    #[inline(always)]
    fn observe_mem<B: Bus>(&mut self, va: u64, bytes: u8) {
        if B::OBSERVE {
            self.obs.va = va;
            self.obs.size = bytes;
        }
    }

    #[inline(always)]
    fn extend_loaded(kind: LdStKind, size: u8, v: u64) -> u64 {
        match kind {
            LdStKind::LoadSigned64 => sext_bytes(v, size),
            LdStKind::LoadSigned32 => sext_bytes(v, size) as u32 as u64,
            _ => v,
        }
    }

    /// One register at `addr` per `kind`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn single<B: Bus>(
        &mut self,
        bus: &mut B,
        addr: u64,
        size: u8,
        kind: LdStKind,
        rt: u8,
        s: Shape,
        pc: u64,
    ) -> Result<(), Stop> {
        match kind {
            LdStKind::Prefetch => {
                self.observe_mem::<B>(addr, 0);
                Ok(())
            }
            LdStKind::Store => {
                self.observe_mem::<B>(addr, 1 << size);
                let v = self.xr(rt);
                self.store(
                    bus,
                    addr,
                    size,
                    v,
                    &Shape {
                        kind: AccessKind::Write,
                        ..s
                    },
                    pc,
                )
            }
            _ => {
                self.observe_mem::<B>(addr, 1 << size);
                let v = self.load(bus, addr, size, &s, pc)?;
                self.set_xr(rt, Self::extend_loaded(kind, size, v));
                Ok(())
            }
        }
    }

    #[inline(always)]
    fn isv_for(kind: LdStKind, size: u8, rt: u8, ar: bool) -> u32 {
        let sse = matches!(kind, LdStKind::LoadSigned32 | LdStKind::LoadSigned64);
        isv(
            size,
            sse,
            rt,
            kind == LdStKind::LoadSigned64 || size == 3,
            ar,
        )
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_ldst_imm<B: Bus>(
        &mut self,
        bus: &mut B,
        size: u8,
        kind: LdStKind,
        rt: u8,
        rn: u8,
        offset: i32,
        wb: Writeback,
        unpriv: bool,
        pc: u64,
    ) -> Result<(), Stop> {
        let base = self.xsp(rn);
        self.check_sp(rn, base, pc)?;
        let moved = base.wrapping_add(offset as i64 as u64);
        let addr = if wb == Writeback::Post { base } else { moved };
        let isv = if wb == Writeback::None {
            Self::isv_for(kind, size, rt, false)
        } else {
            0
        };
        let s = Shape {
            unpriv,
            ..Shape::plain(AccessKind::Read, isv)
        };
        self.single(bus, addr, size, kind, rt, s, pc)?;
        if wb != Writeback::None {
            self.set_xsp(rn, moved);
        }
        Ok(())
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_ldst_reg<B: Bus>(
        &mut self,
        bus: &mut B,
        size: u8,
        kind: LdStKind,
        rt: u8,
        rn: u8,
        off: u64,
        pc: u64,
    ) -> Result<(), Stop> {
        let base = self.xsp(rn);
        self.check_sp(rn, base, pc)?;
        let s = Shape::plain(AccessKind::Read, Self::isv_for(kind, size, rt, false));
        self.single(bus, base.wrapping_add(off), size, kind, rt, s, pc)
    }

    #[inline(always)]
    pub(crate) fn exec_literal<B: Bus>(
        &mut self,
        bus: &mut B,
        size: u8,
        kind: LdStKind,
        rt: u8,
        offset: i32,
        pc: u64,
    ) -> Result<(), Stop> {
        let addr = pc.wrapping_add(offset as i64 as u64);
        let s = Shape::plain(AccessKind::Read, Self::isv_for(kind, size, rt, false));
        self.single(bus, addr, size, kind, rt, s, pc)
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_pair<B: Bus>(
        &mut self,
        bus: &mut B,
        size: u8,
        load: bool,
        signed: bool,
        rt: u8,
        rt2: u8,
        rn: u8,
        offset: i32,
        wb: Writeback,
        pc: u64,
    ) -> Result<(), Stop> {
        let base = self.xsp(rn);
        self.check_sp(rn, base, pc)?;
        let moved = base.wrapping_add(offset as i64 as u64);
        let addr = if wb == Writeback::Post { base } else { moved };
        let bytes = 1u64 << size;
        self.observe_mem::<B>(addr, 2 << size);
        if load {
            let s = Shape::plain(AccessKind::Read, 0);
            let a = self.load(bus, addr, size, &s, pc)?;
            let b = self.load(bus, addr.wrapping_add(bytes), size, &s, pc)?;
            let (a, b) = if signed {
                (sext_bytes(a, 2), sext_bytes(b, 2))
            } else {
                (a, b)
            };
            self.set_xr(rt, a);
            self.set_xr(rt2, b);
        } else {
            let s = Shape::plain(AccessKind::Write, 0);
            let (a, b) = (self.xr(rt), self.xr(rt2));
            self.store(bus, addr, size, a, &s, pc)?;
            self.store(bus, addr.wrapping_add(bytes), size, b, &s, pc)?;
        }
        if wb != Writeback::None {
            self.set_xsp(rn, moved);
        }
        Ok(())
    }

    /// The address, total size and access shape of an exclusive access: the
    /// base register is checked for SP alignment and the whole (pair) access
    /// must be aligned to its total size.
    #[inline(always)]
    fn excl_access(
        &self,
        kind: AccessKind,
        ordered: bool,
        size: u8,
        pair: bool,
        rn: u8,
        pc: u64,
    ) -> Result<(u64, u8, Shape), Stop> {
        let addr = self.xsp(rn);
        self.check_sp(rn, addr, pc)?;
        let total = if pair { 2u8 << size } else { 1u8 << size };
        let s = Shape {
            ordered,
            atomic: true,
            align: 1 << size,
            ..Shape::plain(kind, 0)
        };
        self.check_align(addr, total as u64, &Shape { align: total, ..s }, pc)?;
        Ok((addr, total, s))
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_load_excl<B: Bus>(
        &mut self,
        bus: &mut B,
        size: u8,
        pair: bool,
        acquire: bool,
        rt: u8,
        rt2: u8,
        rn: u8,
        pc: u64,
    ) -> Result<(), Stop> {
        let (addr, total, s) = self.excl_access(AccessKind::Read, acquire, size, pair, rn, pc)?;
        self.observe_mem::<B>(addr, total);
        let a = self.load(bus, addr, size, &s, pc)?;
        if pair {
            let b = self.load(bus, addr.wrapping_add(1 << size), size, &s, pc)?;
            self.set_xr(rt2, b);
        }
        self.set_xr(rt, a);
        self.monitor = crate::cpu::ExclusiveMonitor {
            armed: true,
            va: addr,
            size: total,
        };
        Ok(())
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_store_excl<B: Bus>(
        &mut self,
        bus: &mut B,
        size: u8,
        pair: bool,
        release: bool,
        rs: u8,
        rt: u8,
        rt2: u8,
        rn: u8,
        pc: u64,
    ) -> Result<(), Stop> {
        let (addr, total, s) = self.excl_access(AccessKind::Write, release, size, pair, rn, pc)?;
        let m = self.monitor;
        self.monitor.armed = false;
        if m.armed && m.va == addr && m.size == total {
            self.observe_mem::<B>(addr, total);
            let (a, b) = (self.xr(rt), self.xr(rt2));
            self.store(bus, addr, size, a, &s, pc)?;
            if pair {
                self.store(bus, addr.wrapping_add(1 << size), size, b, &s, pc)?;
            }
            self.set_xr(rs, 0);
        } else {
            self.observe_mem::<B>(addr, 0);
            self.set_xr(rs, 1);
        }
        Ok(())
    }

    /// The address and shape of LDAR/STLR: SP alignment checked, the access
    /// ordered and aligned to its size, and observed for the profilers.
    #[inline(always)]
    fn ordered_access<B: Bus>(
        &mut self,
        kind: AccessKind,
        size: u8,
        rt: u8,
        rn: u8,
        pc: u64,
    ) -> Result<(u64, Shape), Stop> {
        let addr = self.xsp(rn);
        self.check_sp(rn, addr, pc)?;
        let s = Shape {
            ordered: true,
            align: 1 << size,
            ..Shape::plain(kind, isv(size, false, rt, size == 3, true))
        };
        self.observe_mem::<B>(addr, 1 << size);
        Ok((addr, s))
    }

    #[inline(always)]
    pub(crate) fn exec_load_acquire<B: Bus>(
        &mut self,
        bus: &mut B,
        size: u8,
        rt: u8,
        rn: u8,
        pc: u64,
    ) -> Result<(), Stop> {
        let (addr, s) = self.ordered_access::<B>(AccessKind::Read, size, rt, rn, pc)?;
        let v = self.load(bus, addr, size, &s, pc)?;
        self.set_xr(rt, v);
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn exec_store_release<B: Bus>(
        &mut self,
        bus: &mut B,
        size: u8,
        rt: u8,
        rn: u8,
        pc: u64,
    ) -> Result<(), Stop> {
        let (addr, s) = self.ordered_access::<B>(AccessKind::Write, size, rt, rn, pc)?;
        let v = self.xr(rt);
        self.store(bus, addr, size, v, &s, pc)
    }

    fn rmw_shape(size_bytes: u8, ordered: bool) -> Shape {
        Shape {
            ordered,
            atomic: true,
            align: size_bytes,
            ..Shape::plain(AccessKind::ReadModifyWrite, 0)
        }
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_atomic<B: Bus>(
        &mut self,
        bus: &mut B,
        size: u8,
        op: AtomicOp,
        ordered: bool,
        rs: u8,
        rt: u8,
        rn: u8,
        pc: u64,
    ) -> Result<(), Stop> {
        let addr = self.xsp(rn);
        self.check_sp(rn, addr, pc)?;
        let s = Self::rmw_shape(1 << size, ordered);
        self.observe_mem::<B>(addr, 1 << size);
        let old = self.load(bus, addr, size, &s, pc)?;
        let val = self.xr(rs);
        let sx = |v: u64| sext_bytes(v, size) as i64;
        let mask = if size == 3 {
            u64::MAX
        } else {
            (1u64 << (8 << size)) - 1
        };
        let (o, v) = (old & mask, val & mask);
        let new = match op {
            AtomicOp::Add => o.wrapping_add(v),
            AtomicOp::Clr => o & !v,
            AtomicOp::Eor => o ^ v,
            AtomicOp::Set => o | v,
            AtomicOp::Smax => {
                if sx(o) >= sx(v) {
                    o
                } else {
                    v
                }
            }
            AtomicOp::Smin => {
                if sx(o) <= sx(v) {
                    o
                } else {
                    v
                }
            }
            AtomicOp::Umax => o.max(v),
            AtomicOp::Umin => o.min(v),
            AtomicOp::Swp => v,
        };
        self.store(
            bus,
            addr,
            size,
            new & mask,
            &Shape {
                kind: AccessKind::Write,
                ..s
            },
            pc,
        )?;
        self.set_xr(rt, o);
        Ok(())
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_cas<B: Bus>(
        &mut self,
        bus: &mut B,
        size: u8,
        ordered: bool,
        rs: u8,
        rt: u8,
        rn: u8,
        pc: u64,
    ) -> Result<(), Stop> {
        let addr = self.xsp(rn);
        self.check_sp(rn, addr, pc)?;
        let s = Self::rmw_shape(1 << size, ordered);
        self.observe_mem::<B>(addr, 1 << size);
        let mask = if size == 3 {
            u64::MAX
        } else {
            (1u64 << (8 << size)) - 1
        };
        let old = self.load(bus, addr, size, &s, pc)? & mask;
        if old == self.xr(rs) & mask {
            let v = self.xr(rt) & mask;
            self.store(
                bus,
                addr,
                size,
                v,
                &Shape {
                    kind: AccessKind::Write,
                    ..s
                },
                pc,
            )?;
        }
        self.set_xr(rs, old);
        Ok(())
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn exec_casp<B: Bus>(
        &mut self,
        bus: &mut B,
        sf: bool,
        ordered: bool,
        rs: u8,
        rt: u8,
        rn: u8,
        pc: u64,
    ) -> Result<(), Stop> {
        let addr = self.xsp(rn);
        self.check_sp(rn, addr, pc)?;
        let size = if sf { 3 } else { 2 };
        let s = Self::rmw_shape(1 << size, ordered);
        self.check_align(addr, 2 << size, &Self::rmw_shape(2 << size, ordered), pc)?;
        self.observe_mem::<B>(addr, 2 << size);
        let mask = if sf { u64::MAX } else { u32::MAX as u64 };
        let a = self.load(bus, addr, size, &s, pc)? & mask;
        let b = self.load(bus, addr.wrapping_add(1 << size), size, &s, pc)? & mask;
        if a == self.xr(rs) & mask && b == self.xr(rs + 1) & mask {
            let (na, nb) = (self.xr(rt) & mask, self.xr(rt + 1) & mask);
            let w = Shape {
                kind: AccessKind::Write,
                ..s
            };
            self.store(bus, addr, size, na, &w, pc)?;
            self.store(bus, addr.wrapping_add(1 << size), size, nb, &w, pc)?;
        }
        self.set_xr(rs, a);
        self.set_xr(rs + 1, b);
        Ok(())
    }

    /// DC ZVA: zero the 64-byte block containing `va`.
    pub(crate) fn dc_zva<B: Bus>(&mut self, bus: &mut B, va: u64, pc: u64) -> Result<(), Stop> {
        let base = va & !63;
        let s = Shape::plain(AccessKind::Write, 0);
        for i in 0..8 {
            let a = base.wrapping_add(i * 8);
            let acc = self.access(&s);
            match bus.write(a, 8, 0, acc) {
                Ok(pa) => self.note_write(pa),
                Err(f) => return Err(self.data_abort(f, va, true, 0, false, pc)),
            }
        }
        Ok(())
    }
}
