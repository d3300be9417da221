//! Stage-1 and stage-2 address translation with translation tables that are
//! real data in [`PhysMem`].
//!
//! Models the VMSAv8-64 translation table walk (Arm ARM D8 "The AArch64
//! Virtual Memory System Architecture", D8.3 "Translation table descriptor
//! formats" / "The VMSAv8-64 translation table format") for the 4 KiB granule
//! without FEAT_LPA2:
//!
//! - Stage 1 (EL1&0 regime, TTBR0_ELx half only): 48-bit input addresses
//!   (TCR_ELx.T0SZ = 16), walk starts at level 0, levels 0..3.
//! - Stage 2 (VTTBR_EL2/VTCR_EL2): input size ([`Stage2Params::ipa_bits`],
//!   40 by default, VTCR_EL2.T0SZ = 24) and start level (VTCR_EL2.SL0) are
//!   parameters; when the input is wider than the start level resolves, the
//!   initial lookup uses concatenated tables (D8 "Concatenated translation
//!   tables for the initial stage 2 lookup"): a 40-bit IPA starting at level 1
//!   uses two concatenated level-1 tables (8 KiB, 8 KiB aligned).
//!
//! Descriptor format (both stages): bits\[1:0\] 0b11 = table (levels 0-2) or
//! page (level 3), 0b01 = block (levels 1-2 only), 0b00/0b10 = invalid;
//! output address bits\[47:12\]; AF bit 10. Stage 1 leaf: AP\[2:1\] in bits\[7:6\]
//! (AP\[2\] = 1 read-only, AP\[1\] = 1 accessible from EL0); stage 1 table
//! descriptors: APTable\[1:0\] in bits\[62:61\] (APTable\[1\] = 1 no writes,
//! APTable\[0\] = 1 no EL0 access at later levels). Stage 2 leaf: S2AP in
//! bits\[7:6\] (bit 6 read, bit 7 write). Execute permissions, memory types,
//! shareability and PAN are not modelled (all accesses here are data
//! accesses). FEAT_HAFDBS is not implemented: a descriptor with AF = 0 gives an
//! Access flag fault and the walker never writes descriptors.
//!
//! Fault priority within a stage follows the walk order: input address range
//! (translation, level 0), table base address size (level 0), then per level
//! external abort on the descriptor read, invalid descriptor (translation),
//! output address size; at the leaf, Access flag before Permission. In a
//! two-stage translation each stage-1 descriptor read is itself translated by
//! stage 2 first, and a fault there is a stage-2 fault with `s1ptw` set.
//!
//! Walks never allocate and never write memory. There is no TLB: every walk
//! reads the tables as they are now.

use std::fmt;

use crate::memory::{FrameAllocator, MemError, PhysMem, TableMemory, PAGE_SIZE};

/// Stage-1 input address size in bits (TCR_ELx.T0SZ = 16).
pub const VA_BITS: u8 = 48;

/// Default intermediate physical address size for stage 2 (VTCR_EL2.T0SZ = 24).
pub const DEFAULT_IPA_BITS: u8 = 40;

/// Default output address size of both stages (TCR_ELx.IPS / VTCR_EL2.PS =
/// 0b101, 48 bits), also the maximum this model supports (no FEAT_LPA).
pub const DEFAULT_OA_BITS: u8 = 48;

const PAGE_MASK: u64 = PAGE_SIZE - 1;

/// Descriptor bit fields of the VMSAv8-64 format with the 4 KiB granule (Arm
/// ARM D8.3), for code and tests that write descriptors by hand.
pub mod desc {
    /// Bits\[1:0\]: the descriptor type field.
    pub const TYPE_MASK: u64 = 0b11;
    /// Bits\[1:0\] of a table descriptor (levels 0-2) or a page descriptor (level 3).
    pub const TABLE_OR_PAGE: u64 = 0b11;
    /// Bits\[1:0\] of a block descriptor (levels 1 and 2).
    pub const BLOCK: u64 = 0b01;
    /// Output address / next-level table address, bits\[47:12\].
    pub const OA_MASK: u64 = 0x0000_ffff_ffff_f000;
    /// Access flag, bit 10.
    pub const AF: u64 = 1 << 10;
    /// Shareability SH\[1:0\] = 0b11 (Inner Shareable), bits\[9:8\].
    pub const SH_INNER: u64 = 0b11 << 8;
    /// Stage 1 AP\[1\], bit 6: accessible from EL0.
    pub const S1_AP_EL0: u64 = 1 << 6;
    /// Stage 1 AP\[2\], bit 7: read-only.
    pub const S1_AP_RO: u64 = 1 << 7;
    /// Stage 1 table descriptor APTable\[0\], bit 61: no EL0 access below.
    pub const S1_APTABLE_NO_EL0: u64 = 1 << 61;
    /// Stage 1 table descriptor APTable\[1\], bit 62: no write access below.
    pub const S1_APTABLE_RO: u64 = 1 << 62;
    /// Stage 2 S2AP\[0\], bit 6: read permitted.
    pub const S2AP_READ: u64 = 1 << 6;
    /// Stage 2 S2AP\[1\], bit 7: write permitted.
    pub const S2AP_WRITE: u64 = 1 << 7;
    /// Stage 2 MemAttr\[3:0\] = 0b1111 (Normal, Write-Back), bits\[5:2\].
    pub const S2_MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
    /// The permission field of both stages, bits\[7:6\].
    pub const PERM_MASK: u64 = 0b11 << 6;
}

/// Bit position of the lowest input address bit resolved at `level` (0..=3).
fn level_shift(level: u8) -> u32 {
    12 + 9 * (3 - u32::from(level.min(3)))
}

/// Whether `addr` does not fit in `oa_bits` bits (`oa_bits` is capped at 48).
fn oa_out_of_range(addr: u64, oa_bits: u8) -> bool {
    let bits = u32::from(oa_bits.min(DEFAULT_OA_BITS));
    addr >> bits != 0
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// The kind of a translation fault (Arm ARM D8 "MMU faults").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Translation fault: invalid descriptor or input address out of range.
    Translation,
    /// Access flag fault: the leaf descriptor has AF == 0.
    AccessFlag,
    /// Permission fault.
    Permission,
    /// Address size fault: a table base or output address beyond the
    /// configured output address size.
    AddressSize,
    /// Synchronous external abort on a translation table walk: a descriptor
    /// read from an address that is not RAM.
    ExternalAbort,
}

/// A translation fault, as the MMU reports it (Arm ARM D8 "MMU faults").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fault {
    /// Translation stage that faulted: 1 or 2.
    pub stage: u8,
    /// Lookup level of the fault (0..=3).
    pub level: u8,
    /// What went wrong.
    pub kind: FaultKind,
    /// The input address of the faulting stage: the VA for stage 1, the IPA
    /// for stage 2 (for a fault on a stage-1 table walk, the IPA of the
    /// stage-1 descriptor, as HPFAR_EL2 reports it).
    pub addr: u64,
    /// Stage 2 fault taken on an access made for a stage-1 translation table
    /// walk (ESR_ELx.ISS.S1PTW).
    pub s1ptw: bool,
}

impl Fault {
    /// The architected fault status code (ESR_ELx.ISS.DFSC, also
    /// PMBSR_ELx.MSS\[5:0\] for the FAULT_S1/FAULT_S2 buffer events).
    ///
    /// Encodings (Arm ARM D24 ESR_ELx, "ISS encoding for an exception from a
    /// Data Abort"): address size fault level n = 0b0000nn, translation fault
    /// 0b0001nn, access flag fault 0b0010nn, permission fault 0b0011nn,
    /// synchronous external abort on a translation table walk 0b0101nn.
    /// Checked against Linux arch/arm64/include/asm/esr.h (ESR_ELx_FSC_ADDRSZ
    /// 0x00, ESR_ELx_FSC_FAULT 0x04, ESR_ELx_FSC_ACCESS 0x08, ESR_ELx_FSC_PERM
    /// 0x0C, ESR_ELx_FSC_SEA_TTW(n) 0x14 + n), and against ARM-FACTS §1
    /// (0x04..0x07 translation, 0x0D..0x0F permission). Access flag and
    /// permission faults at level 0 cannot happen here (no level-0 leaves
    /// without FEAT_LPA2).
    pub fn fsc(&self) -> u8 {
        let level = self.level & 0b11;
        let base = match self.kind {
            FaultKind::AddressSize => 0b00_0000,
            FaultKind::Translation => 0b00_0100,
            FaultKind::AccessFlag => 0b00_1000,
            FaultKind::Permission => 0b00_1100,
            FaultKind::ExternalAbort => 0b01_0100,
        };
        base | level
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FaultKind::Translation => "translation fault",
            FaultKind::AccessFlag => "access flag fault",
            FaultKind::Permission => "permission fault",
            FaultKind::AddressSize => "address size fault",
            FaultKind::ExternalAbort => "synchronous external abort on table walk",
        };
        write!(
            f,
            "stage {} {} at level {} for address {:#x} (FSC {:#04x}{})",
            self.stage,
            kind,
            self.level,
            self.addr,
            self.fsc(),
            if self.s1ptw {
                ", on a stage-1 table walk"
            } else {
                ""
            }
        )
    }
}

impl std::error::Error for Fault {}

// ---------------------------------------------------------------------------
// Accesses and permissions
// ---------------------------------------------------------------------------

/// A data access to translate: direction and privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access {
    /// A write (otherwise a read).
    pub write: bool,
    /// An unprivileged (EL0) access (otherwise EL1/EL2).
    pub el0: bool,
}

impl Access {
    /// Privileged read.
    pub const READ: Access = Access {
        write: false,
        el0: false,
    };
    /// Privileged write.
    pub const WRITE: Access = Access {
        write: true,
        el0: false,
    };
    /// Unprivileged (EL0) read.
    pub const EL0_READ: Access = Access {
        write: false,
        el0: true,
    };
    /// Unprivileged (EL0) write.
    pub const EL0_WRITE: Access = Access {
        write: true,
        el0: true,
    };
}

/// Stage-1 permissions of a mapping, encoded in AP\[2:1\] (Arm ARM D8
/// "Data access permissions for stage 1 translations"). Privileged read is
/// always allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Perm {
    /// Writable (AP\[2\] = 0).
    pub write: bool,
    /// Accessible from EL0 (AP\[1\] = 1).
    pub el0: bool,
}

impl Perm {
    /// EL1 read/write, no EL0 access (AP = 0b00).
    pub const RW: Perm = Perm {
        write: true,
        el0: false,
    };
    /// EL1 read-only, no EL0 access (AP = 0b10).
    pub const RO: Perm = Perm {
        write: false,
        el0: false,
    };
    /// Read/write at EL1 and EL0 (AP = 0b01).
    pub const USER_RW: Perm = Perm {
        write: true,
        el0: true,
    };
    /// Read-only at EL1 and EL0 (AP = 0b11).
    pub const USER_RO: Perm = Perm {
        write: false,
        el0: true,
    };

    fn bits(self) -> u64 {
        let mut b = 0;
        if !self.write {
            b |= desc::S1_AP_RO;
        }
        if self.el0 {
            b |= desc::S1_AP_EL0;
        }
        b
    }
}

/// Stage-2 permissions of a mapping, encoded in S2AP (Arm ARM D8 "Data
/// access permissions for stage 2 translations").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct S2Perm {
    /// Reads permitted (S2AP\[0\]).
    pub read: bool,
    /// Writes permitted (S2AP\[1\]).
    pub write: bool,
}

impl S2Perm {
    /// No access (S2AP = 0b00).
    pub const NONE: S2Perm = S2Perm {
        read: false,
        write: false,
    };
    /// Read-only (S2AP = 0b01).
    pub const RO: S2Perm = S2Perm {
        read: true,
        write: false,
    };
    /// Write-only (S2AP = 0b10).
    pub const WO: S2Perm = S2Perm {
        read: false,
        write: true,
    };
    /// Read/write (S2AP = 0b11).
    pub const RW: S2Perm = S2Perm {
        read: true,
        write: true,
    };

    fn bits(self) -> u64 {
        let mut b = 0;
        if self.read {
            b |= desc::S2AP_READ;
        }
        if self.write {
            b |= desc::S2AP_WRITE;
        }
        b
    }
}

fn s1_permits(leaf: u64, ap_table: u64, access: Access) -> bool {
    let read_only = leaf & desc::S1_AP_RO != 0 || ap_table & desc::S1_APTABLE_RO != 0;
    let el0_ok = leaf & desc::S1_AP_EL0 != 0 && ap_table & desc::S1_APTABLE_NO_EL0 == 0;
    if access.el0 && !el0_ok {
        return false;
    }
    !(access.write && read_only)
}

fn s2_permits(leaf: u64, write: bool) -> bool {
    let need = if write {
        desc::S2AP_WRITE
    } else {
        desc::S2AP_READ
    };
    leaf & need != 0
}

// ---------------------------------------------------------------------------
// Walk results
// ---------------------------------------------------------------------------

/// The result of a successful single-stage walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Walk {
    /// Output address (PA, or IPA for a guest stage 1), including the offset
    /// within the page or block.
    pub oa: u64,
    /// Level of the leaf descriptor (3 for a page, 1 or 2 for a block).
    pub level: u8,
    /// The leaf descriptor.
    pub descriptor: u64,
    tables: [u64; 4],
    n_tables: u8,
}

impl Walk {
    /// Page-aligned addresses of the translation table pages read, in walk
    /// order (one per level; for a concatenated stage-2 root, the page of the
    /// root that holds the descriptor used).
    pub fn table_pages(&self) -> &[u64] {
        self.tables.get(..usize::from(self.n_tables)).unwrap_or(&[])
    }

    /// Size in bytes of the page or block the leaf maps.
    pub fn block_size(&self) -> u64 {
        1u64 << level_shift(self.level)
    }
}

/// A stage-1 translation table page visited by a two-stage walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct TablePage {
    /// Page-aligned IPA of the table page (equal to `pa` without stage 2).
    pub ipa: u64,
    /// Page-aligned PA of the table page.
    pub pa: u64,
}

/// The result of a successful (possibly two-stage) translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Walk2 {
    /// Final physical address.
    pub pa: u64,
    /// Intermediate physical address (stage-1 output; equal to `pa` without stage 2).
    pub ipa: u64,
    /// Level of the stage-1 leaf descriptor.
    pub s1_level: u8,
    /// The stage-1 leaf descriptor.
    pub s1_descriptor: u64,
    /// Level of the stage-2 leaf descriptor of the final access, if stage 2 is on.
    pub s2_level: Option<u8>,
    s1_tables: [TablePage; 4],
    n_tables: u8,
}

impl Walk2 {
    /// The stage-1 translation table pages visited, in walk order, with their
    /// IPA and PA (what a hypervisor must pin to keep the translation valid).
    pub fn s1_table_pages(&self) -> &[TablePage] {
        self.s1_tables
            .get(..usize::from(self.n_tables))
            .unwrap_or(&[])
    }
}

// ---------------------------------------------------------------------------
// Walk core
// ---------------------------------------------------------------------------

/// Shape of a table tree: start level and input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    start_level: u8,
    input_bits: u8,
}

impl Geometry {
    const STAGE1: Geometry = Geometry {
        start_level: 0,
        input_bits: VA_BITS,
    };

    /// A stage-2 geometry, if the (SL0, T0SZ) combination is consistent: the
    /// start level is 0..=2, the input size is wider than what the levels
    /// after the start level resolve, and at most 16 tables are concatenated.
    fn stage2(start_level: u8, ipa_bits: u8) -> Option<Geometry> {
        if start_level > 2 || ipa_bits > 48 {
            return None;
        }
        let shift = level_shift(start_level);
        let bits = u32::from(ipa_bits);
        if bits <= shift || bits > shift + 9 + 4 {
            return None;
        }
        Some(Geometry {
            start_level,
            input_bits: ipa_bits,
        })
    }

    /// Number of concatenated tables at the start level.
    fn root_frames(self) -> u64 {
        let top = level_shift(self.start_level) + 9;
        let bits = u32::from(self.input_bits);
        if bits > top {
            1u64 << (bits - top)
        } else {
            1
        }
    }

    /// Index of the descriptor for `ia` in the table at `level`.
    fn index(self, level: u8, ia: u64) -> u64 {
        let shift = level_shift(level);
        let width = if level == self.start_level {
            u32::from(self.input_bits).saturating_sub(shift)
        } else {
            9
        };
        (ia >> shift) & ((1u64 << width) - 1)
    }

    /// Base of the root table: low bits below the table size are treated as
    /// zero (an IMPLEMENTATION DEFINED choice the architecture allows for
    /// misaligned TTBR/VTTBR BADDR bits).
    fn root_base(self, root: u64) -> u64 {
        root & !(self.root_frames() * PAGE_SIZE - 1)
    }

    /// Whether `ia` is outside the input address range.
    fn input_out_of_range(self, ia: u64) -> bool {
        ia >> u32::from(self.input_bits) != 0
    }
}

/// A leaf found by [`walk_core`], before the permission check.
struct Leaf {
    oa: u64,
    level: u8,
    desc: u64,
    ap_table: u64,
}

/// The walk shared by both stages. `fetch(desc_addr, level)` reads one
/// descriptor (and records the table page). Returns the leaf after the
/// address size and access flag checks.
fn walk_core<F>(
    geom: Geometry,
    root: u64,
    ia: u64,
    oa_bits: u8,
    stage: u8,
    mut fetch: F,
) -> Result<Leaf, Fault>
where
    F: FnMut(u64, u8) -> Result<u64, Fault>,
{
    let fault = |level: u8, kind: FaultKind| Fault {
        stage,
        level,
        kind,
        addr: ia,
        s1ptw: false,
    };
    if geom.input_out_of_range(ia) {
        return Err(fault(0, FaultKind::Translation));
    }
    if oa_out_of_range(root, oa_bits) {
        return Err(fault(0, FaultKind::AddressSize));
    }
    let mut table = geom.root_base(root);
    let mut level = geom.start_level;
    let mut ap_table = 0u64;
    loop {
        let desc_addr = table + geom.index(level, ia) * 8;
        let d = fetch(desc_addr, level)?;
        let ty = d & desc::TYPE_MASK;
        let leaf_shift = if ty == desc::TABLE_OR_PAGE && level < 3 {
            let next = d & desc::OA_MASK;
            if oa_out_of_range(next, oa_bits) {
                return Err(fault(level, FaultKind::AddressSize));
            }
            ap_table |= d & (desc::S1_APTABLE_RO | desc::S1_APTABLE_NO_EL0);
            table = next;
            level += 1;
            continue;
        } else if ty == desc::TABLE_OR_PAGE {
            12
        } else if ty == desc::BLOCK && (level == 1 || level == 2) {
            level_shift(level)
        } else {
            return Err(fault(level, FaultKind::Translation));
        };
        let offset_mask = (1u64 << leaf_shift) - 1;
        let base = d & desc::OA_MASK & !offset_mask;
        if oa_out_of_range(base, oa_bits) {
            return Err(fault(level, FaultKind::AddressSize));
        }
        if d & desc::AF == 0 {
            return Err(fault(level, FaultKind::AccessFlag));
        }
        return Ok(Leaf {
            oa: base | (ia & offset_mask),
            level,
            desc: d,
            ap_table,
        });
    }
}

/// A single-stage walk that reads descriptors directly from `mem` and records
/// the table pages.
fn walk_direct<M: TableMemory + ?Sized>(
    mem: &M,
    geom: Geometry,
    root: u64,
    ia: u64,
    oa_bits: u8,
    stage: u8,
) -> Result<(Leaf, [u64; 4], u8), Fault> {
    let mut tables = [0u64; 4];
    let mut n = 0u8;
    let leaf = walk_core(geom, root, ia, oa_bits, stage, |addr, level| {
        if let Some(slot) = tables.get_mut(usize::from(n)) {
            *slot = addr & !PAGE_MASK;
            n += 1;
        }
        mem.read_u64(addr).map_err(|_| Fault {
            stage,
            level,
            kind: FaultKind::ExternalAbort,
            addr: ia,
            s1ptw: false,
        })
    })?;
    Ok((leaf, tables, n))
}

// ---------------------------------------------------------------------------
// Walk parameters (the register state that configures a walk)
// ---------------------------------------------------------------------------

/// The configuration of a stage-1 walk: TTBR0_ELx and TCR_ELx.IPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stage1Params {
    /// Address of the level-0 table (TTBR0_ELx.BADDR); an IPA for a guest.
    pub root: u64,
    /// Output address size in bits (TCR_ELx.IPS); values above 48 act as 48.
    pub oa_bits: u8,
}

impl Stage1Params {
    /// Tables at `root`, 48-bit output addresses.
    pub fn new(root: u64) -> Self {
        Self {
            root,
            oa_bits: DEFAULT_OA_BITS,
        }
    }

    /// Walks the tables in `mem` for `va` and checks `access` (Arm ARM D8
    /// "Translation table walks", stage 1).
    pub fn walk<M: TableMemory + ?Sized>(
        &self,
        mem: &M,
        va: u64,
        access: Access,
    ) -> Result<Walk, Fault> {
        let (leaf, tables, n) = walk_direct(mem, Geometry::STAGE1, self.root, va, self.oa_bits, 1)?;
        if !s1_permits(leaf.desc, leaf.ap_table, access) {
            return Err(Fault {
                stage: 1,
                level: leaf.level,
                kind: FaultKind::Permission,
                addr: va,
                s1ptw: false,
            });
        }
        Ok(Walk {
            oa: leaf.oa,
            level: leaf.level,
            descriptor: leaf.desc,
            tables,
            n_tables: n,
        })
    }
}

/// The configuration of a stage-2 walk: VTTBR_EL2 and VTCR_EL2.{SL0, T0SZ, PS}.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stage2Params {
    /// Address of the start-level table (VTTBR_EL2.BADDR), aligned to the
    /// size of the concatenated root.
    pub root: u64,
    /// Start level (0, 1 or 2; VTCR_EL2.SL0).
    pub start_level: u8,
    /// Input (IPA) size in bits (64 - VTCR_EL2.T0SZ).
    pub ipa_bits: u8,
    /// Output address size in bits (VTCR_EL2.PS); values above 48 act as 48.
    pub oa_bits: u8,
}

impl Stage2Params {
    /// Tables at `root` starting at `start_level`, 40-bit IPA, 48-bit PA.
    pub fn new(root: u64, start_level: u8) -> Self {
        Self {
            root,
            start_level,
            ipa_bits: DEFAULT_IPA_BITS,
            oa_bits: DEFAULT_OA_BITS,
        }
    }

    /// Number of concatenated 4 KiB tables at the start level, or `None` if
    /// the start level and IPA size are inconsistent.
    pub fn root_frames(&self) -> Option<u64> {
        Geometry::stage2(self.start_level, self.ipa_bits).map(Geometry::root_frames)
    }

    /// Walks the stage-2 tables in `mem` for `ipa` (Arm ARM D8 "Translation
    /// table walks", stage 2). An inconsistent start level / IPA size gives a
    /// stage-2 level-0 translation fault, as the architecture specifies for
    /// an inconsistent VTCR_EL2.{SL0, T0SZ}.
    pub fn walk<M: TableMemory + ?Sized>(
        &self,
        mem: &M,
        ipa: u64,
        write: bool,
    ) -> Result<Walk, Fault> {
        let fault = |level: u8, kind: FaultKind| Fault {
            stage: 2,
            level,
            kind,
            addr: ipa,
            s1ptw: false,
        };
        let geom = Geometry::stage2(self.start_level, self.ipa_bits)
            .ok_or_else(|| fault(0, FaultKind::Translation))?;
        let (leaf, tables, n) = walk_direct(mem, geom, self.root, ipa, self.oa_bits, 2)?;
        if !s2_permits(leaf.desc, write) {
            return Err(fault(leaf.level, FaultKind::Permission));
        }
        Ok(Walk {
            oa: leaf.oa,
            level: leaf.level,
            descriptor: leaf.desc,
            tables,
            n_tables: n,
        })
    }
}

/// A translation regime for data accesses: stage 1, optionally followed by
/// stage 2 (a guest's EL1&0 regime with HCR_EL2.VM = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Translation {
    /// Stage-1 configuration (its root is an IPA when stage 2 is on).
    pub s1: Stage1Params,
    /// Stage-2 configuration, if stage 2 is enabled.
    pub s2: Option<Stage2Params>,
}

impl Translation {
    /// Translates `va` through stage 1 and then stage 2 (Arm ARM D8
    /// "Translation table walks" with two stages). Every stage-1 descriptor
    /// read is translated by stage 2 as a read; a fault there is reported as
    /// a stage-2 fault with `s1ptw` set and `addr` = IPA of the descriptor.
    /// A stage-1 fault takes priority over the stage-2 translation of the
    /// output IPA.
    pub fn translate<M: TableMemory + ?Sized>(
        &self,
        mem: &M,
        va: u64,
        access: Access,
    ) -> Result<Walk2, Fault> {
        let mut pages = [TablePage::default(); 4];
        let mut n = 0u8;
        let s2 = self.s2;
        let leaf = walk_core(
            Geometry::STAGE1,
            self.s1.root,
            va,
            self.s1.oa_bits,
            1,
            |desc_ipa, level| {
                let desc_pa = match &s2 {
                    None => desc_ipa,
                    Some(p) => {
                        p.walk(mem, desc_ipa, false)
                            .map_err(|f| Fault { s1ptw: true, ..f })?
                            .oa
                    }
                };
                if let Some(slot) = pages.get_mut(usize::from(n)) {
                    *slot = TablePage {
                        ipa: desc_ipa & !PAGE_MASK,
                        pa: desc_pa & !PAGE_MASK,
                    };
                    n += 1;
                }
                mem.read_u64(desc_pa).map_err(|_| Fault {
                    stage: 1,
                    level,
                    kind: FaultKind::ExternalAbort,
                    addr: va,
                    s1ptw: false,
                })
            },
        )?;
        if !s1_permits(leaf.desc, leaf.ap_table, access) {
            return Err(Fault {
                stage: 1,
                level: leaf.level,
                kind: FaultKind::Permission,
                addr: va,
                s1ptw: false,
            });
        }
        let ipa = leaf.oa;
        let (pa, s2_level) = match &s2 {
            None => (ipa, None),
            Some(p) => {
                let w = p.walk(mem, ipa, access.write)?;
                (w.oa, Some(w.level))
            }
        };
        Ok(Walk2 {
            pa,
            ipa,
            s1_level: leaf.level,
            s1_descriptor: leaf.desc,
            s2_level,
            s1_tables: pages,
            n_tables: n,
        })
    }
}

/// Walks stage-1 tables rooted at `root` (a PA) for `va` (TTBR0 half only:
/// `va` must be below 2^48, otherwise a level-0 translation fault), 48-bit
/// output addresses.
pub fn walk_stage1(mem: &PhysMem, root: u64, va: u64, access: Access) -> Result<Walk, Fault> {
    Stage1Params::new(root).walk(mem, va, access)
}

/// Walks stage-2 tables rooted at `root` starting at `start_level` for a
/// 40-bit `ipa` (a larger IPA gives a level-0 translation fault), 48-bit
/// output addresses.
pub fn walk_stage2(
    mem: &PhysMem,
    root: u64,
    start_level: u8,
    ipa: u64,
    write: bool,
) -> Result<Walk, Fault> {
    Stage2Params::new(root, start_level).walk(mem, ipa, write)
}

/// Translates a guest `va` through stage 1 (root `s1_root`, an IPA when stage
/// 2 is on) and, if `s2` is `Some((root, start_level))`, stage 2 with a 40-bit
/// IPA. See [`Translation::translate`].
pub fn translate_two_stage(
    mem: &PhysMem,
    s1_root: u64,
    s2: Option<(u64, u8)>,
    va: u64,
    access: Access,
) -> Result<Walk2, Fault> {
    Translation {
        s1: Stage1Params::new(s1_root),
        s2: s2.map(|(root, sl)| Stage2Params::new(root, sl)),
    }
    .translate(mem, va, access)
}

// ---------------------------------------------------------------------------
// Building tables
// ---------------------------------------------------------------------------

/// An error while building or changing translation tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// Reading or writing the tables, or allocating a table page, failed.
    Mem(MemError),
    /// An address is not 4 KiB aligned.
    Unaligned {
        /// The offending address.
        addr: u64,
    },
    /// The size is not a multiple of 4 KiB.
    BadSize {
        /// The offending size.
        size: u64,
    },
    /// An input or output address (or a table page) is beyond the address size.
    OutOfRange {
        /// The first offending address.
        addr: u64,
    },
    /// The page is already mapped differently.
    AlreadyMapped {
        /// Input address of the page.
        addr: u64,
        /// The existing page descriptor.
        existing: u64,
    },
    /// A block descriptor covers the address; this builder only handles pages.
    BlockInTheWay {
        /// Input address.
        addr: u64,
        /// Level of the block descriptor.
        level: u8,
    },
    /// The page is not mapped (for permission changes).
    NotMapped {
        /// Input address of the page.
        addr: u64,
    },
    /// Inconsistent stage-2 start level and IPA size.
    BadConfig {
        /// The start level.
        start_level: u8,
        /// The IPA size in bits.
        ipa_bits: u8,
    },
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::Mem(e) => write!(f, "translation table memory: {e}"),
            MapError::Unaligned { addr } => write!(f, "address {addr:#x} is not 4 KiB aligned"),
            MapError::BadSize { size } => {
                write!(f, "size {size:#x} is not a multiple of 4 KiB")
            }
            MapError::OutOfRange { addr } => {
                write!(f, "address {addr:#x} is beyond the address size")
            }
            MapError::AlreadyMapped { addr, existing } => write!(
                f,
                "page {addr:#x} is already mapped differently (descriptor {existing:#x})"
            ),
            MapError::BlockInTheWay { addr, level } => write!(
                f,
                "address {addr:#x} is covered by a level {level} block descriptor"
            ),
            MapError::NotMapped { addr } => write!(f, "page {addr:#x} is not mapped"),
            MapError::BadConfig {
                start_level,
                ipa_bits,
            } => write!(
                f,
                "stage 2 start level {start_level} is inconsistent with a {ipa_bits}-bit IPA"
            ),
        }
    }
}

impl std::error::Error for MapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MapError::Mem(e) => Some(e),
            _ => None,
        }
    }
}

impl From<MemError> for MapError {
    fn from(e: MemError) -> Self {
        MapError::Mem(e)
    }
}

/// What a software lookup finds for one page.
enum Existing {
    /// No valid leaf.
    None,
    /// A page descriptor at `addr`.
    Page { addr: u64, desc: u64 },
    /// A block descriptor at `level`.
    Block { level: u8 },
}

/// A tree to edit: its shape, root and output address size.
#[derive(Clone, Copy)]
struct Tree {
    geom: Geometry,
    root: u64,
    oa_bits: u8,
}

impl Tree {
    fn lookup<M: TableMemory + ?Sized>(&self, mem: &M, ia: u64) -> Result<Existing, MapError> {
        let mut table = self.geom.root_base(self.root);
        let mut level = self.geom.start_level;
        loop {
            let addr = table + self.geom.index(level, ia) * 8;
            let d = mem.read_u64(addr)?;
            let ty = d & desc::TYPE_MASK;
            if ty == desc::TABLE_OR_PAGE && level < 3 {
                table = d & desc::OA_MASK;
                level += 1;
            } else if ty == desc::TABLE_OR_PAGE {
                return Ok(Existing::Page { addr, desc: d });
            } else if ty == desc::BLOCK && (level == 1 || level == 2) {
                return Ok(Existing::Block { level });
            } else {
                return Ok(Existing::None);
            }
        }
    }

    /// Address of the level-3 descriptor for `ia`, creating missing tables.
    fn leaf_slot<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        alloc: &mut FrameAllocator,
        ia: u64,
    ) -> Result<u64, MapError> {
        let mut table = self.geom.root_base(self.root);
        let mut level = self.geom.start_level;
        while level < 3 {
            let addr = table + self.geom.index(level, ia) * 8;
            let d = mem.read_u64(addr)?;
            let ty = d & desc::TYPE_MASK;
            table = if ty == desc::TABLE_OR_PAGE {
                d & desc::OA_MASK
            } else if ty == desc::BLOCK && (level == 1 || level == 2) {
                return Err(MapError::BlockInTheWay { addr: ia, level });
            } else {
                let t = alloc.alloc(mem)?;
                if oa_out_of_range(t, self.oa_bits) {
                    return Err(MapError::OutOfRange { addr: t });
                }
                mem.write_u64(addr, t | desc::TABLE_OR_PAGE)?;
                t
            };
            level += 1;
        }
        Ok(table + self.geom.index(3, ia) * 8)
    }

    fn check_input(&self, ia: u64, size: u64) -> Result<u64, MapError> {
        if ia & PAGE_MASK != 0 {
            return Err(MapError::Unaligned { addr: ia });
        }
        if size & PAGE_MASK != 0 {
            return Err(MapError::BadSize { size });
        }
        match ia.checked_add(size) {
            Some(end) if size == 0 || !self.geom.input_out_of_range(end - 1) => {
                Ok(size / PAGE_SIZE)
            }
            _ => Err(MapError::OutOfRange { addr: ia }),
        }
    }

    /// Maps `size` bytes of pages at `ia` to `oa` with leaf attributes
    /// `attrs`. All-or-nothing with respect to translations: conflicts are
    /// found before anything changes; a failure while preparing leaves at
    /// most new empty tables behind.
    fn map<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        alloc: &mut FrameAllocator,
        ia: u64,
        oa: u64,
        size: u64,
        attrs: u64,
    ) -> Result<(), MapError> {
        let pages = self.check_input(ia, size)?;
        if oa & PAGE_MASK != 0 {
            return Err(MapError::Unaligned { addr: oa });
        }
        match oa.checked_add(size) {
            Some(end) if size == 0 || !oa_out_of_range(end - 1, self.oa_bits) => {}
            _ => return Err(MapError::OutOfRange { addr: oa }),
        }
        let want = |i: u64| (oa + i * PAGE_SIZE) | attrs;
        // Pass 1: conflicts.
        for i in 0..pages {
            let a = ia + i * PAGE_SIZE;
            match self.lookup(mem, a)? {
                Existing::None => {}
                Existing::Page { desc, .. } if desc == want(i) => {}
                Existing::Page { desc, .. } => {
                    return Err(MapError::AlreadyMapped {
                        addr: a,
                        existing: desc,
                    })
                }
                Existing::Block { level } => {
                    return Err(MapError::BlockInTheWay { addr: a, level })
                }
            }
        }
        // Pass 2: create tables and prove every leaf slot writable by writing
        // back its current (invalid or identical) value.
        for i in 0..pages {
            let slot = self.leaf_slot(mem, alloc, ia + i * PAGE_SIZE)?;
            let cur = mem.read_u64(slot)?;
            mem.write_u64(slot, cur)?;
        }
        // Pass 3: write the leaves.
        for i in 0..pages {
            let slot = self.leaf_slot(mem, alloc, ia + i * PAGE_SIZE)?;
            mem.write_u64(slot, want(i))?;
        }
        Ok(())
    }

    /// Replaces every mapped page descriptor in the range by `f(desc)`.
    /// `require_mapped`: an unmapped page is an error (otherwise skipped).
    /// Returns the number of pages changed.
    fn rewrite<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        ia: u64,
        size: u64,
        require_mapped: bool,
        f: impl Fn(u64) -> u64,
    ) -> Result<u64, MapError> {
        let pages = self.check_input(ia, size)?;
        for i in 0..pages {
            let a = ia + i * PAGE_SIZE;
            match self.lookup(mem, a)? {
                Existing::Page { addr, desc } => mem.write_u64(addr, desc)?,
                Existing::Block { level } => {
                    return Err(MapError::BlockInTheWay { addr: a, level })
                }
                Existing::None if require_mapped => return Err(MapError::NotMapped { addr: a }),
                Existing::None => {}
            }
        }
        let mut changed = 0;
        for i in 0..pages {
            if let Existing::Page { addr, desc } = self.lookup(mem, ia + i * PAGE_SIZE)? {
                mem.write_u64(addr, f(desc))?;
                changed += 1;
            }
        }
        Ok(changed)
    }
}

/// Stage-1 translation tables (TTBR0 half, 48-bit VA, 4 KiB granule) stored
/// in memory, built with 4 KiB page mappings (Arm ARM D8 "The VMSAv8-64
/// translation table format").
///
/// The memory may be physical memory or a guest's IPA space
/// ([`GuestPhysMem`]); `root` is then an IPA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stage1Tables {
    /// Address of the level-0 table (the value for TTBR0_ELx.BADDR).
    pub root: u64,
}

impl Stage1Tables {
    /// Allocates an empty level-0 table.
    pub fn new<M: TableMemory + ?Sized>(
        mem: &mut M,
        alloc: &mut FrameAllocator,
    ) -> Result<Self, MapError> {
        let root = alloc.alloc(mem)?;
        if oa_out_of_range(root, DEFAULT_OA_BITS) {
            return Err(MapError::OutOfRange { addr: root });
        }
        Ok(Self { root })
    }

    fn tree(&self) -> Tree {
        Tree {
            geom: Geometry::STAGE1,
            root: self.root,
            oa_bits: DEFAULT_OA_BITS,
        }
    }

    /// The walk configuration for these tables (48-bit output).
    pub fn params(&self) -> Stage1Params {
        Stage1Params::new(self.root)
    }

    /// Maps `size` bytes (a multiple of 4 KiB) of pages at `va` to `pa` with
    /// `perm`, AF = 1, Inner Shareable, AttrIndx 0. Re-mapping a page
    /// identically is allowed; a different existing mapping is an error and
    /// nothing is changed.
    pub fn map<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        alloc: &mut FrameAllocator,
        va: u64,
        pa: u64,
        size: u64,
        perm: Perm,
    ) -> Result<(), MapError> {
        let attrs = desc::TABLE_OR_PAGE | desc::AF | desc::SH_INNER | perm.bits();
        self.tree().map(mem, alloc, va, pa, size, attrs)
    }

    /// Removes the page mappings in `[va, va + size)`; unmapped pages are
    /// skipped. Table pages are not freed. Returns the number of pages unmapped.
    pub fn unmap<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        va: u64,
        size: u64,
    ) -> Result<u64, MapError> {
        self.tree().rewrite(mem, va, size, false, |_| 0)
    }

    /// Changes the permissions of every page in `[va, va + size)`; all must
    /// be mapped (otherwise nothing changes).
    pub fn set_perm<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        va: u64,
        size: u64,
        perm: Perm,
    ) -> Result<(), MapError> {
        self.tree()
            .rewrite(mem, va, size, true, |d| {
                (d & !desc::PERM_MASK) | perm.bits()
            })
            .map(|_| ())
    }

    /// Walks these tables (see [`Stage1Params::walk`]).
    pub fn walk<M: TableMemory + ?Sized>(
        &self,
        mem: &M,
        va: u64,
        access: Access,
    ) -> Result<Walk, Fault> {
        self.params().walk(mem, va, access)
    }
}

/// Stage-2 translation tables (40-bit IPA, 4 KiB granule, 48-bit PA) stored
/// in physical memory, built with 4 KiB page mappings (Arm ARM D8 "The
/// VMSAv8-64 translation table format", stage 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stage2Tables {
    /// Address of the (possibly concatenated) start-level table (VTTBR_EL2.BADDR).
    pub root: u64,
    /// Start level: 0 or 1 (VTCR_EL2.SL0); level 1 uses two concatenated tables.
    pub start_level: u8,
}

impl Stage2Tables {
    /// Allocates an empty root for a 40-bit IPA starting at `start_level`
    /// (0: one table, 2 entries used; 1: two concatenated tables).
    pub fn new<M: TableMemory + ?Sized>(
        mem: &mut M,
        alloc: &mut FrameAllocator,
        start_level: u8,
    ) -> Result<Self, MapError> {
        let geom = Geometry::stage2(start_level, DEFAULT_IPA_BITS).ok_or(MapError::BadConfig {
            start_level,
            ipa_bits: DEFAULT_IPA_BITS,
        })?;
        let root = alloc.alloc_contiguous(mem, geom.root_frames())?;
        if oa_out_of_range(root, DEFAULT_OA_BITS) {
            return Err(MapError::OutOfRange { addr: root });
        }
        Ok(Self { root, start_level })
    }

    fn tree(&self) -> Result<Tree, MapError> {
        let geom =
            Geometry::stage2(self.start_level, DEFAULT_IPA_BITS).ok_or(MapError::BadConfig {
                start_level: self.start_level,
                ipa_bits: DEFAULT_IPA_BITS,
            })?;
        Ok(Tree {
            geom,
            root: self.root,
            oa_bits: DEFAULT_OA_BITS,
        })
    }

    /// The walk configuration for these tables.
    pub fn params(&self) -> Stage2Params {
        Stage2Params::new(self.root, self.start_level)
    }

    /// Maps `size` bytes (a multiple of 4 KiB) of pages at `ipa` to `pa` with
    /// `perm`, AF = 1, Normal Write-Back, Inner Shareable. Same rules as
    /// [`Stage1Tables::map`].
    pub fn map<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        alloc: &mut FrameAllocator,
        ipa: u64,
        pa: u64,
        size: u64,
        perm: S2Perm,
    ) -> Result<(), MapError> {
        let attrs = desc::TABLE_OR_PAGE
            | desc::AF
            | desc::SH_INNER
            | desc::S2_MEMATTR_NORMAL_WB
            | perm.bits();
        self.tree()?.map(mem, alloc, ipa, pa, size, attrs)
    }

    /// Removes the page mappings in `[ipa, ipa + size)`; returns the number
    /// of pages unmapped.
    pub fn unmap<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        ipa: u64,
        size: u64,
    ) -> Result<u64, MapError> {
        self.tree()?.rewrite(mem, ipa, size, false, |_| 0)
    }

    /// Changes the permissions of every page in `[ipa, ipa + size)`; all must
    /// be mapped (otherwise nothing changes).
    pub fn set_perm<M: TableMemory + ?Sized>(
        &self,
        mem: &mut M,
        ipa: u64,
        size: u64,
        perm: S2Perm,
    ) -> Result<(), MapError> {
        self.tree()?
            .rewrite(mem, ipa, size, true, |d| {
                (d & !desc::PERM_MASK) | perm.bits()
            })
            .map(|_| ())
    }

    /// Walks these tables (see [`Stage2Params::walk`]).
    pub fn walk<M: TableMemory + ?Sized>(
        &self,
        mem: &M,
        ipa: u64,
        write: bool,
    ) -> Result<Walk, Fault> {
        self.params().walk(mem, ipa, write)
    }
}

/// A guest's intermediate physical address space: physical memory seen
/// through stage 2. Lets a guest build its stage-1 tables at IPAs with
/// [`Stage1Tables`] and read or write its memory. An IPA without the needed
/// stage-2 permission is [`MemError::NotMapped`].
#[derive(Debug)]
pub struct GuestPhysMem<'a> {
    /// Host physical memory.
    pub mem: &'a mut PhysMem,
    /// The guest's stage 2.
    pub s2: Stage2Params,
}

impl<'a> GuestPhysMem<'a> {
    /// A view of `mem` through `s2`.
    pub fn new(mem: &'a mut PhysMem, s2: Stage2Params) -> Self {
        Self { mem, s2 }
    }

    /// PA of `ipa`, checking read or write permission.
    pub fn translate(&self, ipa: u64, write: bool) -> Result<u64, MemError> {
        self.s2
            .walk(&*self.mem, ipa, write)
            .map(|w| w.oa)
            .map_err(|_| MemError::NotMapped { addr: ipa })
    }

    /// Reads `buf.len()` bytes at `ipa` (may cross pages).
    pub fn read(&self, ipa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let mut done = 0usize;
        while done < buf.len() {
            let a = ipa.wrapping_add(done as u64);
            let n = (PAGE_SIZE - (a & PAGE_MASK)).min((buf.len() - done) as u64) as usize;
            let pa = self.translate(a, false)?;
            self.mem.read(pa, &mut buf[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at `ipa` (may cross pages). All-or-nothing: every page
    /// is translated and checked to be RAM before anything is written.
    pub fn write(&mut self, ipa: u64, data: &[u8]) -> Result<(), MemError> {
        for pass in 0..2 {
            let mut done = 0usize;
            while done < data.len() {
                let a = ipa.wrapping_add(done as u64);
                let n = (PAGE_SIZE - (a & PAGE_MASK)).min((data.len() - done) as u64) as usize;
                let pa = self.translate(a, true)?;
                if pass == 0 {
                    self.mem.read(pa, &mut [0u8; 1])?;
                    // The chunk stays inside one page, which is RAM as a whole.
                } else {
                    self.mem.write(pa, &data[done..done + n])?;
                }
                done += n;
            }
        }
        Ok(())
    }
}

impl TableMemory for GuestPhysMem<'_> {
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_u64(&mut self, addr: u64, val: u64) -> Result<(), MemError> {
        self.write(addr, &val.to_le_bytes())
    }

    fn zero_page(&mut self, addr: u64) -> Result<(), MemError> {
        let pa = self.translate(addr & !PAGE_MASK, true)?;
        self.mem.zero_page(pa)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: u64 = 0x4000_0000;

    fn setup() -> (PhysMem, FrameAllocator) {
        let mut mem = PhysMem::new();
        mem.add_ram(RAM, 0x100_0000).unwrap();
        let alloc = FrameAllocator::new(RAM, 0x10_0000).unwrap();
        (mem, alloc)
    }

    #[test]
    fn fsc_encodings() {
        let f = |kind, level| {
            Fault {
                stage: 1,
                level,
                kind,
                addr: 0,
                s1ptw: false,
            }
            .fsc()
        };
        for l in 0..4u8 {
            assert_eq!(f(FaultKind::AddressSize, l), l);
            assert_eq!(f(FaultKind::Translation, l), 0x04 + l);
            assert_eq!(f(FaultKind::AccessFlag, l), 0x08 + l);
            assert_eq!(f(FaultKind::Permission, l), 0x0C + l);
            assert_eq!(f(FaultKind::ExternalAbort, l), 0x14 + l);
        }
    }

    #[test]
    fn geometry_indices_and_concatenation() {
        let g = Geometry::stage2(1, 40).unwrap();
        assert_eq!(g.root_frames(), 2);
        assert_eq!(g.index(1, 0xff_c000_0000), 0x3ff);
        assert_eq!(g.index(2, 0xff_c000_0000), 0);
        let g0 = Geometry::stage2(0, 40).unwrap();
        assert_eq!(g0.root_frames(), 1);
        assert_eq!(g0.index(0, 0x80_0000_0000), 1);
        assert_eq!(Geometry::STAGE1.index(0, 0xffff_ffff_ffff), 0x1ff);
        assert_eq!(Geometry::STAGE1.index(3, 0x1000), 1);
        assert!(Geometry::stage2(2, 40).is_none());
        assert!(Geometry::stage2(1, 30).is_none());
        assert!(Geometry::stage2(3, 20).is_none());
        assert!(Geometry::stage2(0, 49).is_none());
        assert_eq!(Geometry::stage2(2, 34).map(Geometry::root_frames), Some(16));
    }

    #[test]
    fn map_walk_round_trip_and_table_pages() {
        let (mut mem, mut alloc) = setup();
        let t = Stage1Tables::new(&mut mem, &mut alloc).unwrap();
        t.map(
            &mut mem,
            &mut alloc,
            0x7f_1234_5000,
            0x4080_0000,
            0x2000,
            Perm::RW,
        )
        .unwrap();
        let w = walk_stage1(&mem, t.root, 0x7f_1234_6abc, Access::WRITE).unwrap();
        assert_eq!(w.oa, 0x4080_1abc);
        assert_eq!(w.level, 3);
        assert_eq!(w.block_size(), 4096);
        assert_eq!(w.table_pages().len(), 4);
        assert_eq!(w.table_pages()[0], t.root);
        assert!(w.table_pages().iter().all(|p| p & 0xfff == 0));
        // Four distinct table pages were allocated for the walk.
        assert_eq!(alloc.used_frames(), 4);
    }

    #[test]
    fn remap_identical_ok_different_rejected_and_nothing_changes() {
        let (mut mem, mut alloc) = setup();
        let t = Stage1Tables::new(&mut mem, &mut alloc).unwrap();
        t.map(&mut mem, &mut alloc, 0x1000, 0x4080_0000, 0x1000, Perm::RO)
            .unwrap();
        t.map(&mut mem, &mut alloc, 0x1000, 0x4080_0000, 0x1000, Perm::RO)
            .unwrap();
        // Range [0, 0x3000): page 0x1000 conflicts (different PA) -> nothing mapped.
        let err = t
            .map(&mut mem, &mut alloc, 0, 0x4090_0000, 0x3000, Perm::RO)
            .unwrap_err();
        assert!(
            matches!(err, MapError::AlreadyMapped { addr: 0x1000, .. }),
            "{err:?}"
        );
        assert_eq!(
            walk_stage1(&mem, t.root, 0, Access::READ).unwrap_err().kind,
            FaultKind::Translation
        );
        assert_eq!(
            walk_stage1(&mem, t.root, 0x1000, Access::READ).unwrap().oa,
            0x4080_0000
        );
    }

    #[test]
    fn map_argument_errors() {
        let (mut mem, mut alloc) = setup();
        let t = Stage1Tables::new(&mut mem, &mut alloc).unwrap();
        let mut m = |va, pa, size| t.map(&mut mem, &mut alloc, va, pa, size, Perm::RW);
        assert_eq!(m(0x10, 0, 0x1000), Err(MapError::Unaligned { addr: 0x10 }));
        assert_eq!(m(0, 0x10, 0x1000), Err(MapError::Unaligned { addr: 0x10 }));
        assert_eq!(m(0, 0, 0x10), Err(MapError::BadSize { size: 0x10 }));
        assert_eq!(
            m(0xffff_ffff_f000, 0, 0x2000),
            Err(MapError::OutOfRange {
                addr: 0xffff_ffff_f000
            })
        );
        assert_eq!(
            m(0, 1 << 48, 0x1000),
            Err(MapError::OutOfRange { addr: 1 << 48 })
        );
        assert_eq!(
            m(!0xfff_u64, 0, 0x1000),
            Err(MapError::OutOfRange { addr: !0xfff_u64 })
        );
        assert_eq!(m(0, 0, 0), Ok(()));
    }

    #[test]
    fn out_of_frames_leaves_no_translation() {
        let mut mem = PhysMem::new();
        mem.add_ram(RAM, 0x10_0000).unwrap();
        // Root plus two tables only: the level-3 table cannot be allocated.
        let mut alloc = FrameAllocator::new(RAM, 0x3000).unwrap();
        let t = Stage1Tables::new(&mut mem, &mut alloc).unwrap();
        let err = t
            .map(
                &mut mem,
                &mut alloc,
                0x20_0000,
                0x4010_0000,
                0x1000,
                Perm::RW,
            )
            .unwrap_err();
        assert_eq!(err, MapError::Mem(MemError::OutOfFrames));
        let f = walk_stage1(&mem, t.root, 0x20_0000, Access::READ).unwrap_err();
        assert_eq!((f.kind, f.level), (FaultKind::Translation, 2));
    }

    #[test]
    fn stage2_bad_config() {
        let (mut mem, mut alloc) = setup();
        assert_eq!(
            Stage2Tables::new(&mut mem, &mut alloc, 2),
            Err(MapError::BadConfig {
                start_level: 2,
                ipa_bits: 40
            })
        );
        let f = walk_stage2(&mem, RAM, 3, 0, false).unwrap_err();
        assert_eq!((f.stage, f.level, f.kind), (2, 0, FaultKind::Translation));
    }

    #[test]
    fn display_messages() {
        let f = Fault {
            stage: 2,
            level: 1,
            kind: FaultKind::Permission,
            addr: 0x1000,
            s1ptw: true,
        };
        let s = f.to_string();
        assert!(s.contains("stage 2 permission fault at level 1"), "{s}");
        assert!(s.contains("0x0d"), "{s}");
        assert!(s.contains("stage-1 table walk"), "{s}");
        let e = MapError::Mem(MemError::OutOfFrames).to_string();
        assert!(e.contains("out of frames"), "{e}");
    }
}
