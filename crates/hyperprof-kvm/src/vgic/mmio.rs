//! The distributor's and the redistributors' registers (IHI 0069 chapter
//! 12.9 and 12.10, in KVM's vgic-mmio-v3 shape): a single security state
//! (GICD_CTLR.DS = 1), affinity routing always on (ARE RAO/WI), no LPIs.
//! The distributor's registers for INTIDs below 32 are RAZ/WI (those live
//! in each redistributor's SGI frame). Unknown offsets read as zero and
//! ignore writes; so does an access of a size a register does not have.

use super::{packed_affinity, Irq, VgicV3, DIST_SIZE, NR_IRQS, PRIORITY_MASK, PRIVATE_IRQS};
use super::{REDIST_STRIDE, REGION_ALIGN};

/// GICD_IIDR and GICR_IIDR: KVM's ProductID (0x4B), Revision 3, Implementer
/// Arm (0x43B).
pub const IIDR: u64 = 0x4B << 24 | 3 << 12 | 0x43B;
/// GICD_PIDR2 and GICR_PIDR2: ArchRev 3 (GICv3).
pub const PIDR2: u64 = 0x3B;
/// GICD_CTLR: EnableGrp0, EnableGrp1, ARE (RAO), DS (RAO), RWP (never set:
/// writes take effect at once).
const CTLR_ENABLE_GRP0: u64 = 1 << 0;
const CTLR_ENABLE_GRP1: u64 = 1 << 1;
const CTLR_ARE: u64 = 1 << 4;
const CTLR_DS: u64 = 1 << 6;
/// GICR_WAKER.ProcessorSleep and ChildrenAsleep.
const WAKER_PROCESSOR_SLEEP: u64 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u64 = 1 << 2;
/// GICR_TYPER.Last.
const TYPER_LAST: u64 = 1 << 4;
/// The IROUTER bits kept: Aff3 and Aff2.Aff1.Aff0 (IRM is RAZ/WI, as in KVM).
const IROUTER_MASK: u64 = 0xFF_0000_0000 | 0xFF_FFFF;

/// Which register block an address falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Block {
    Dist(u64),
    /// The RD frame of a redistributor, its vCPU index, the offset.
    Rd(usize, u64),
    /// The SGI frame.
    Sgi(usize, u64),
}

/// One bit per interrupt: which state a set/clear register reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

impl BitReg {
    /// The register at `off` within the block of bit registers
    /// (0x080..0x400), and the word index.
    fn at(off: u64) -> Option<(BitReg, u32)> {
        let reg = match off & !0x7F {
            0x080 => BitReg::Group,
            0x100 => BitReg::SetEnable,
            0x180 => BitReg::ClearEnable,
            0x200 => BitReg::SetPending,
            0x280 => BitReg::ClearPending,
            0x300 => BitReg::SetActive,
            0x380 => BitReg::ClearActive,
            _ => return None,
        };
        Some((reg, ((off & 0x7F) / 4) as u32))
    }

    fn read(self, irq: &Irq) -> bool {
        match self {
            BitReg::Group => irq.group1,
            BitReg::SetEnable | BitReg::ClearEnable => irq.enabled,
            BitReg::SetPending | BitReg::ClearPending => irq.pending(),
            BitReg::SetActive | BitReg::ClearActive => irq.active,
        }
    }

    /// Applies bit value `one` (a plain register takes 0 and 1, a set or
    /// clear register acts on ones only).
    fn write(self, irq: &mut Irq, one: bool) {
        match (self, one) {
            (BitReg::Group, g) => irq.group1 = g,
            (_, false) => {}
            (BitReg::SetEnable, true) => irq.enabled = true,
            (BitReg::ClearEnable, true) => irq.enabled = false,
            (BitReg::SetPending, true) => irq.pending_latch = true,
            // A level-sensitive line stays asserted: only the latch goes.
            (BitReg::ClearPending, true) => irq.pending_latch = false,
            (BitReg::SetActive, true) => irq.active = true,
            (BitReg::ClearActive, true) => irq.active = false,
        }
    }
}

impl VgicV3 {
    /// The block and offset of `ipa`, if it is the vGIC's.
    fn block(&self, ipa: u64) -> Option<Block> {
        if !self.initialized {
            return None;
        }
        let dist = self.dist_base?;
        if (dist..dist + DIST_SIZE).contains(&ipa) {
            return Some(Block::Dist(ipa - dist));
        }
        let redist = self.redist_base?;
        let end = redist + self.cpus.len() as u64 * REDIST_STRIDE;
        if (redist..end).contains(&ipa) {
            let i = ((ipa - redist) / REDIST_STRIDE) as usize;
            let off = (ipa - redist) % REDIST_STRIDE;
            return Some(if off < REGION_ALIGN {
                Block::Rd(i, off)
            } else {
                Block::Sgi(i, off - REGION_ALIGN)
            });
        }
        None
    }

    /// Whether an access at `ipa` is the vGIC's to emulate.
    pub fn claims(&self, ipa: u64) -> bool {
        self.block(ipa).is_some()
    }

    /// An emulated read of `len` bytes at `ipa` by the vCPU at `from`.
    pub fn mmio_read(&mut self, from: usize, ipa: u64, len: u8) -> u64 {
        if let Some(c) = self.cpus.get_mut(from) {
            c.stats.mmio += 1;
        }
        match self.block(ipa) {
            Some(Block::Dist(off)) => self.dist_read(off, len),
            Some(Block::Rd(i, off)) => self.rd_read(i, off, len),
            Some(Block::Sgi(i, off)) => self.sgi_read(i, off, len),
            None => 0,
        }
    }

    /// An emulated write of `len` bytes at `ipa` by the vCPU at `from`.
    pub fn mmio_write(&mut self, from: usize, ipa: u64, len: u8, value: u64) {
        if let Some(c) = self.cpus.get_mut(from) {
            c.stats.mmio += 1;
        }
        match self.block(ipa) {
            Some(Block::Dist(off)) => self.dist_write(off, len, value),
            Some(Block::Rd(i, off)) => self.rd_write(i, off, len, value),
            Some(Block::Sgi(i, off)) => self.sgi_write(i, off, len, value),
            None => {}
        }
    }

    /// The 32 bits of a bit register for INTIDs `first..first + 32`.
    fn bits_read(&self, index: usize, reg: BitReg, first: u32) -> u64 {
        (0..32u32)
            .filter(|b| self.irq(index, first + b).is_some_and(|irq| reg.read(irq)))
            .fold(0, |acc, b| acc | 1 << b)
    }

    fn bits_write(&mut self, index: usize, reg: BitReg, first: u32, value: u64) {
        for b in 0..32u32 {
            if let Some(irq) = self.irq_mut(index, first + b) {
                reg.write(irq, value >> b & 1 == 1);
            }
        }
    }

    /// IPRIORITYR bytes `off..off + len` for INTIDs starting at `first`.
    fn priority_read(&self, index: usize, first: u32, len: u8) -> u64 {
        (0..u32::from(len)).fold(0, |acc, i| {
            let p = self.irq(index, first + i).map_or(0, |irq| irq.priority);
            acc | u64::from(p) << (8 * i)
        })
    }

    fn priority_write(&mut self, index: usize, first: u32, len: u8, value: u64) {
        for i in 0..u32::from(len) {
            if let Some(irq) = self.irq_mut(index, first + i) {
                irq.priority = (value >> (8 * i)) as u8 & PRIORITY_MASK;
            }
        }
    }

    /// ICFGR word `n`: two bits per interrupt, 0b10 edge, 0b00 level.
    fn config_read(&self, index: usize, n: u32) -> u64 {
        (0..16u32).fold(0, |acc, i| {
            let edge = self.irq(index, n * 16 + i).is_some_and(|irq| !irq.level);
            acc | u64::from(edge) << (2 * i + 1)
        })
    }

    fn config_write(&mut self, index: usize, n: u32, value: u64) {
        for i in 0..16u32 {
            let id = n * 16 + i;
            // SGIs are always edge-triggered.
            if id < hyperprof_arch::intid::SGI_END {
                continue;
            }
            if let Some(irq) = self.irq_mut(index, id) {
                irq.level = value >> (2 * i + 1) & 1 == 0;
            }
        }
    }

    fn dist_read(&self, off: u64, len: u8) -> u64 {
        // The distributor's view of SPIs is not banked: vCPU 0's index
        // serves the INTID lookups (only SPIs are reached here).
        match (off, len) {
            (0x0000, 4) => {
                CTLR_ARE
                    | CTLR_DS
                    | (u64::from(self.grp0) * CTLR_ENABLE_GRP0)
                    | (u64::from(self.grp1) * CTLR_ENABLE_GRP1)
            }
            (0x0004, 4) => u64::from(NR_IRQS / 32 - 1) | (10 - 1) << 19,
            (0x0008, 4) => IIDR,
            (0xFFE8, 4) => PIDR2,
            (0x0080..=0x03FF, 4) => match BitReg::at(off) {
                Some((reg, n)) if (1..NR_IRQS / 32).contains(&n) => self.bits_read(0, reg, n * 32),
                _ => 0,
            },
            (0x0400..=0x07FF, 1 | 2 | 4) => {
                let first = (off - 0x400) as u32;
                if first < PRIVATE_IRQS {
                    0
                } else {
                    self.priority_read(0, first, len)
                }
            }
            (0x0C00..=0x0CFF, 4) => {
                let n = ((off - 0xC00) / 4) as u32;
                if n < 2 {
                    0
                } else {
                    self.config_read(0, n)
                }
            }
            (0x6000..=0x7FFF, 8 | 4) => {
                let id = ((off - 0x6000) / 8) as u32;
                let v = if id < PRIVATE_IRQS {
                    0
                } else {
                    self.irq(0, id).map_or(0, |irq| irq.route)
                };
                if off % 8 == 4 {
                    v >> 32
                } else if len == 4 {
                    v & 0xFFFF_FFFF
                } else {
                    v
                }
            }
            _ => 0,
        }
    }

    fn dist_write(&mut self, off: u64, len: u8, value: u64) {
        match (off, len) {
            (0x0000, 4) => {
                self.grp0 = value & CTLR_ENABLE_GRP0 != 0;
                self.grp1 = value & CTLR_ENABLE_GRP1 != 0;
            }
            (0x0080..=0x03FF, 4) => {
                if let Some((reg, n)) = BitReg::at(off) {
                    if (1..NR_IRQS / 32).contains(&n) {
                        self.bits_write(0, reg, n * 32, value);
                    }
                }
            }
            (0x0400..=0x07FF, 1 | 2 | 4) => {
                let first = (off - 0x400) as u32;
                if first >= PRIVATE_IRQS {
                    self.priority_write(0, first, len, value);
                }
            }
            (0x0C00..=0x0CFF, 4) => {
                let n = ((off - 0xC00) / 4) as u32;
                if n >= 2 {
                    self.config_write(0, n, value);
                }
            }
            (0x6000..=0x7FFF, 8 | 4) => {
                let id = ((off - 0x6000) / 8) as u32;
                if id < PRIVATE_IRQS {
                    return;
                }
                if let Some(irq) = self.irq_mut(0, id) {
                    let new = match (off % 8, len) {
                        (0, 8) => value,
                        (0, _) => irq.route & !0xFFFF_FFFF | value & 0xFFFF_FFFF,
                        _ => irq.route & 0xFFFF_FFFF | (value & 0xFFFF_FFFF) << 32,
                    };
                    irq.route = new & IROUTER_MASK;
                }
            }
            _ => {}
        }
    }

    fn rd_typer(&self, i: usize) -> u64 {
        let last = if i + 1 == self.cpus.len() {
            TYPER_LAST
        } else {
            0
        };
        u64::from(packed_affinity(self.cpus[i].mpidr)) << 32 | (i as u64) << 8 | last
    }

    fn rd_read(&self, i: usize, off: u64, len: u8) -> u64 {
        match (off, len) {
            (0x0004, 4) => IIDR,
            (0x0008, 8) => self.rd_typer(i),
            (0x0008, 4) => self.rd_typer(i) & 0xFFFF_FFFF,
            (0x000C, 4) => self.rd_typer(i) >> 32,
            (0x0014, 4) => {
                u64::from(self.cpus[i].sleep) * (WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP)
            }
            (0xFFE8, 4) => PIDR2,
            // GICR_CTLR (no LPIs, RWP never set), STATUSR and the rest.
            _ => 0,
        }
    }

    fn rd_write(&mut self, i: usize, off: u64, len: u8, value: u64) {
        // GICR_WAKER: clearing ProcessorSleep wakes the redistributor at
        // once (ChildrenAsleep follows it).
        if (off, len) == (0x0014, 4) {
            self.cpus[i].sleep = value & WAKER_PROCESSOR_SLEEP != 0;
        }
    }

    fn sgi_read(&self, i: usize, off: u64, len: u8) -> u64 {
        match (off, len) {
            (0x0080..=0x03FF, 4) => match BitReg::at(off) {
                Some((reg, 0)) => self.bits_read(i, reg, 0),
                _ => 0,
            },
            (0x0400..=0x041F, 1 | 2 | 4) => self.priority_read(i, (off - 0x400) as u32, len),
            (0x0C00, 4) => self.config_read(i, 0),
            (0x0C04, 4) => self.config_read(i, 1),
            // IGRPMODR0, NSACR: RAZ/WI with a single security state.
            _ => 0,
        }
    }

    fn sgi_write(&mut self, i: usize, off: u64, len: u8, value: u64) {
        match (off, len) {
            (0x0080..=0x03FF, 4) => {
                if let Some((reg, 0)) = BitReg::at(off) {
                    self.bits_write(i, reg, 0, value);
                }
            }
            (0x0400..=0x041F, 1 | 2 | 4) => {
                self.priority_write(i, (off - 0x400) as u32, len, value)
            }
            (0x0C04, 4) => self.config_write(i, 1, value),
            _ => {}
        }
    }
}
