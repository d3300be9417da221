//! The run loop: interrupts, PC alignment, fetch through the block cache,
//! execution, the observer, and exits.

use crate::bus::{Access, AccessKind, Bus};
use crate::cpu::Cpu;
use crate::decode::decode;
use crate::exception::{ec, esr, Exit, Stop, VECT_SYNC};
use crate::exec::op_class;
use crate::insn::Insn;

impl Cpu {
    #[inline(always)]
    fn fetch_access(&self) -> Access {
        Access {
            kind: AccessKind::Fetch,
            el: self.pstate.el,
            pan: false,
            unpriv: false,
            ordered: false,
            atomic: false,
        }
    }

    /// A store completed at physical address `pa`.
    #[inline(always)]
    pub(crate) fn note_write(&mut self, pa: u64) {
        #[cfg(feature = "alloc")]
        self.cache.note_write(pa);
        #[cfg(not(feature = "alloc"))]
        let _ = pa;
    }

    /// Fetch and decode the instruction at `pc` without the cache.
    fn fetch_decode<B: Bus>(&mut self, bus: &mut B, pc: u64) -> Result<Insn, Stop> {
        match bus.fetch(pc, self.fetch_access()) {
            Ok(f) => Ok(decode(f.insn)),
            Err(e) => Err(self.insn_abort(e, pc)),
        }
    }

    /// The block slot for the code at `pc`, building the block on a miss.
    #[cfg(feature = "alloc")]
    fn block_for<B: Bus>(&mut self, bus: &mut B, pc: u64) -> Result<usize, Stop> {
        let el = self.pstate.el;
        let pa = match self.cache.tlb_lookup(pc, el) {
            Some(pa) => pa,
            None => match bus.fetch(pc, self.fetch_access()) {
                Ok(f) => {
                    self.cache.tlb_fill(pc, el, f.pa);
                    f.pa
                }
                Err(e) => return Err(self.insn_abort(e, pc)),
            },
        };
        let mut slot = crate::cache::BlockCache::slot(pa);
        if self.cache.blocks[slot].pa == pa {
            return Ok(slot);
        }
        // Build from a fresh fetch, keyed by the physical address that
        // fetch reports (the cached translation may be stale).
        let acc = self.fetch_access();
        let first = match bus.fetch(pc, acc) {
            Ok(f) => f,
            Err(e) => return Err(self.insn_abort(e, pc)),
        };
        let pa = first.pa;
        if pa != self.cache.tlb_lookup(pc, el).unwrap_or(u64::MAX) {
            self.cache.tlb_fill(pc, el, pa);
            slot = crate::cache::BlockCache::slot(pa);
            if self.cache.blocks[slot].pa == pa {
                return Ok(slot);
            }
        }
        let mut len = 0usize;
        let mut va = pc;
        let mut f = first;
        loop {
            let insn = decode(f.insn);
            self.cache.blocks[slot].insns[len] = insn;
            len += 1;
            va = va.wrapping_add(4);
            if insn.ends_block() || len == crate::cache::BLOCK_MAX || va & 0xfff == 0 {
                break;
            }
            f = match bus.fetch(va, acc) {
                Ok(next) if next.pa == pa.wrapping_add(4 * len as u64) => next,
                _ => break,
            };
        }
        self.cache.mark_code(pa);
        let b = &mut self.cache.blocks[slot];
        b.pa = pa;
        b.len = len as u32;
        Ok(slot)
    }

    #[inline(always)]
    fn observe<B: Bus>(&mut self, bus: &mut B, pc: u64, el: u8, insn: &Insn) {
        self.obs.pc = pc;
        self.obs.el = el;
        self.obs.class = op_class(insn);
        bus.retired(&self.obs);
    }

    /// Checks before fetching at the current PC: pending interrupts,
    /// PSTATE.IL, PC alignment. True if an exception was taken.
    #[inline(always)]
    fn pre_fetch(&mut self) -> bool {
        if (self.irq_line || self.fiq_line) && self.take_pending_interrupt() {
            return true;
        }
        if self.pstate.il {
            self.take_el1(VECT_SYNC, Some(esr(ec::ILLEGAL, 0)), None, self.pc);
            return true;
        }
        if self.pc & 3 != 0 {
            let pc = self.pc;
            self.take_el1(VECT_SYNC, Some(esr(ec::PC_ALIGN, 0)), Some(pc), pc);
            return true;
        }
        false
    }

    /// Execute one instruction and report how it ended: None to carry on,
    /// Some(exit) to leave `run`. `done` counts retired instructions.
    #[inline(always)]
    fn step_insn<B: Bus>(
        &mut self,
        bus: &mut B,
        insn: Insn,
        done: &mut u64,
    ) -> Result<(), Option<Exit>> {
        let pc = self.pc;
        let el = self.pstate.el;
        match self.exec(bus, insn) {
            Ok(()) => {
                *done += 1;
                if B::OBSERVE {
                    self.observe(bus, pc, el, &insn);
                }
                Ok(())
            }
            Err(Stop::El1 {
                esr,
                far,
                pref,
                retired,
            }) => {
                if retired {
                    *done += 1;
                    if B::OBSERVE {
                        self.observe(bus, pc, el, &insn);
                    }
                }
                self.take_stop_el1(esr, far, pref);
                Err(None)
            }
            Err(Stop::Exit { exit, retired }) => {
                if retired {
                    *done += 1;
                    if B::OBSERVE {
                        self.observe(bus, pc, el, &insn);
                    }
                }
                Err(Some(exit))
            }
        }
    }

    /// Run until the budget is used up or something needs the embedder: an
    /// exception to EL2, WFI/WFE, or a hint that asked to exit. Exceptions
    /// to EL1 (synchronous, IRQ, FIQ) are taken inside. The budget counts
    /// retired instructions plus exceptions taken, so a guest caught in an
    /// exception loop (e.g. unmapped vectors) still returns
    /// [`Exit::Budget`].
    #[cfg_attr(not(feature = "alloc"), allow(unused_labels))]
    pub fn run<B: Bus>(&mut self, bus: &mut B, budget: u64) -> Exit {
        let mut done = 0u64;
        let taken_before = self.exceptions;
        let exit = 'outer: loop {
            let used = done + (self.exceptions - taken_before);
            if used >= budget {
                break Exit::Budget;
            }
            if self.pre_fetch() {
                continue;
            }
            let pc = self.pc;
            #[cfg(feature = "alloc")]
            {
                let slot = match self.block_for(bus, pc) {
                    Ok(s) => s,
                    Err(stop) => match self.stop_without_insn(stop) {
                        Some(exit) => break exit,
                        None => continue,
                    },
                };
                let len = self.cache.blocks[slot].len as u64;
                let n = len.min(budget - used) as usize;
                for i in 0..n {
                    let insn = self.cache.blocks[slot].insns[i];
                    match self.step_insn(bus, insn, &mut done) {
                        Ok(()) => {}
                        Err(None) => continue 'outer,
                        Err(Some(exit)) => break 'outer exit,
                    }
                }
            }
            #[cfg(not(feature = "alloc"))]
            {
                let insn = match self.fetch_decode(bus, pc) {
                    Ok(i) => i,
                    Err(stop) => match self.stop_without_insn(stop) {
                        Some(exit) => break exit,
                        None => continue,
                    },
                };
                match self.step_insn(bus, insn, &mut done) {
                    Ok(()) | Err(None) => {}
                    Err(Some(exit)) => break exit,
                }
            }
        };
        self.retired += done;
        exit
    }

    /// Execute exactly one instruction (or take one pending exception),
    /// fetching and decoding it without the cache.
    pub fn step<B: Bus>(&mut self, bus: &mut B) -> Option<Exit> {
        if self.pre_fetch() {
            return None;
        }
        let pc = self.pc;
        let insn = match self.fetch_decode(bus, pc) {
            Ok(i) => i,
            Err(stop) => return self.stop_without_insn(stop),
        };
        let mut done = 0;
        let r = self.step_insn(bus, insn, &mut done);
        self.retired += done;
        r.err().flatten()
    }

    fn stop_without_insn(&mut self, stop: Stop) -> Option<Exit> {
        match stop {
            Stop::El1 { esr, far, pref, .. } => {
                self.take_stop_el1(esr, far, pref);
                None
            }
            Stop::Exit { exit, .. } => Some(exit),
        }
    }
}
