//! The decoded form of one A64 instruction.
//!
//! Register numbers are 0..=31; whether 31 names XZR or SP is fixed by the
//! instruction (documented per variant, as in the Arm ARM's pseudocode).
//! Every variant is `Copy` and the enum is 16 bytes, so a basic block of
//! decoded instructions stays compact.

/// Logical operation of AND/ORR/EOR/ANDS (immediate and shifted register).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogicOp {
    /// AND (BIC when inverted).
    And,
    /// ORR (ORN when inverted).
    Orr,
    /// EOR (EON when inverted).
    Eor,
    /// ANDS (BICS when inverted): sets N and Z, clears C and V.
    Ands,
}

/// Move-wide operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MovOp {
    /// MOVN: the inverted shifted immediate.
    N,
    /// MOVZ: the shifted immediate.
    Z,
    /// MOVK: insert 16 bits, keep the rest.
    K,
}

/// Bitfield operation (the aliases LSL/LSR/ASR/UBFX/SBFX/BFI/BFXIL/SXT*/UXT*
/// all decode to these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitfieldOp {
    /// SBFM.
    Sbfm,
    /// BFM.
    Bfm,
    /// UBFM.
    Ubfm,
}

/// Shift type of a shifted-register operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shift {
    /// Logical shift left.
    Lsl,
    /// Logical shift right.
    Lsr,
    /// Arithmetic shift right.
    Asr,
    /// Rotate right (logical instructions only).
    Ror,
}

/// Extend type of an extended-register operand (the `option` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extend {
    /// UXTB.
    Uxtb,
    /// UXTH.
    Uxth,
    /// UXTW.
    Uxtw,
    /// UXTX (LSL).
    Uxtx,
    /// SXTB.
    Sxtb,
    /// SXTH.
    Sxth,
    /// SXTW.
    Sxtw,
    /// SXTX.
    Sxtx,
}

impl Extend {
    /// The extend type from the 3-bit `option` field.
    pub fn from_option(option: u32) -> Extend {
        match option & 7 {
            0 => Extend::Uxtb,
            1 => Extend::Uxth,
            2 => Extend::Uxtw,
            3 => Extend::Uxtx,
            4 => Extend::Sxtb,
            5 => Extend::Sxth,
            6 => Extend::Sxtw,
            _ => Extend::Sxtx,
        }
    }
}

/// Conditional-select operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CselOp {
    /// CSEL.
    Csel,
    /// CSINC.
    Csinc,
    /// CSINV.
    Csinv,
    /// CSNEG.
    Csneg,
}

/// One-source data processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dp1Op {
    /// RBIT.
    Rbit,
    /// REV16.
    Rev16,
    /// REV32 (64-bit only).
    Rev32,
    /// REV (the whole register).
    Rev,
    /// CLZ.
    Clz,
    /// CLS.
    Cls,
}

/// Two-source data processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dp2Op {
    /// UDIV (division by zero gives zero).
    Udiv,
    /// SDIV (division by zero gives zero).
    Sdiv,
    /// LSLV.
    Lslv,
    /// LSRV.
    Lsrv,
    /// ASRV.
    Asrv,
    /// RORV.
    Rorv,
    /// CRC32B/H/W/X (the size is the instruction's `sz`).
    Crc32 {
        /// log2 of the data size in bytes.
        sz: u8,
    },
    /// CRC32CB/H/W/X.
    Crc32c {
        /// log2 of the data size in bytes.
        sz: u8,
    },
}

/// Three-source data processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dp3Op {
    /// MADD.
    Madd,
    /// MSUB.
    Msub,
    /// SMADDL.
    Smaddl,
    /// SMSUBL.
    Smsubl,
    /// UMADDL.
    Umaddl,
    /// UMSUBL.
    Umsubl,
    /// SMULH.
    Smulh,
    /// UMULH.
    Umulh,
}

/// Branch-to-register operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BranchRegOp {
    /// BR.
    Br,
    /// BLR.
    Blr,
    /// RET.
    Ret,
}

/// A hint instruction (HINT #imm; unallocated hints execute as NOP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// NOP.
    Nop,
    /// YIELD.
    Yield,
    /// WFE.
    Wfe,
    /// WFI.
    Wfi,
    /// SEV.
    Sev,
    /// SEVL.
    Sevl,
    /// PSB CSYNC (profiling synchronization barrier).
    PsbCsync,
    /// TSB CSYNC (trace synchronization barrier).
    TsbCsync,
    /// CSDB.
    Csdb,
    /// Any other hint number (executes as NOP).
    Other(u8),
}

/// A barrier instruction; the value is the CRm option field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barrier {
    /// DSB with its option (e.g. 0xF SY, 0xB ISH, 0x7 NSH).
    Dsb(u8),
    /// DMB with its option.
    Dmb(u8),
    /// ISB.
    Isb,
}

/// A PSTATE field written by MSR (immediate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PstateField {
    /// DAIFSet: set the given D/A/I/F mask bits.
    DaifSet,
    /// DAIFClr: clear the given mask bits.
    DaifClr,
    /// SPSel.
    SpSel,
    /// PAN (FEAT_PAN).
    Pan,
    /// UAO (FEAT_UAO).
    Uao,
}

/// Kind of a single-register load or store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LdStKind {
    /// Store.
    Store,
    /// Load, zero-extended.
    Load,
    /// Load, sign-extended to 32 bits (W destination).
    LoadSigned32,
    /// Load, sign-extended to 64 bits.
    LoadSigned64,
    /// PRFM: a hint, no access.
    Prefetch,
}

/// Base register writeback of an immediate-offset access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writeback {
    /// Plain offset, no writeback.
    None,
    /// Pre-index: access at base+offset and write it back.
    Pre,
    /// Post-index: access at base, then write base+offset back.
    Post,
}

/// LSE atomic memory operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtomicOp {
    /// LDADD.
    Add,
    /// LDCLR (AND NOT).
    Clr,
    /// LDEOR.
    Eor,
    /// LDSET (OR).
    Set,
    /// LDSMAX.
    Smax,
    /// LDSMIN.
    Smin,
    /// LDUMAX.
    Umax,
    /// LDUMIN.
    Umin,
    /// SWP.
    Swp,
}

/// A system register named by its encoding `op0:op1:CRn:CRm:op2`
/// (packed as in the MRS/MSR instruction bits \[20:5\], op0 in bits 15:14).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SysReg(pub u16);

impl SysReg {
    /// Build from the five encoding fields.
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> SysReg {
        SysReg(
            ((op0 as u16 & 3) << 14)
                | ((op1 as u16 & 7) << 11)
                | ((crn as u16 & 15) << 7)
                | ((crm as u16 & 15) << 3)
                | (op2 as u16 & 7),
        )
    }
    /// op0.
    pub const fn op0(self) -> u8 {
        (self.0 >> 14) as u8 & 3
    }
    /// op1.
    pub const fn op1(self) -> u8 {
        (self.0 >> 11) as u8 & 7
    }
    /// CRn.
    pub const fn crn(self) -> u8 {
        (self.0 >> 7) as u8 & 15
    }
    /// CRm.
    pub const fn crm(self) -> u8 {
        (self.0 >> 3) as u8 & 15
    }
    /// op2.
    pub const fn op2(self) -> u8 {
        self.0 as u8 & 7
    }
}

/// A SYS instruction (op0 = 1): DC, IC, TLBI, AT, named by `op1:CRn:CRm:op2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SysOp(pub SysReg);

/// What a SYS instruction does, as far as the engine needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysOpKind {
    /// IC IALLU or IC IALLUIS.
    IcInvalidateAll,
    /// IC IVAU.
    IcInvalidateVa,
    /// DC ZVA.
    DcZva,
    /// DC by VA to the point of coherency/unification (CVAC, CVAU, CIVAC, CVAP), EL0-accessible with SCTLR_EL1.UCI.
    DcCleanVa,
    /// DC IVAC, ISW, CSW, CISW (EL1 only).
    DcOther,
    /// TLBI (CRn = 8).
    Tlbi,
    /// AT S1E1R/W, S1E0R/W, S1E1RP/WP.
    At,
    /// Any other SYS encoding.
    Other,
}

impl SysOp {
    /// Classify the operation.
    pub fn kind(self) -> SysOpKind {
        let r = self.0;
        match (r.op1(), r.crn(), r.crm(), r.op2()) {
            (0, 7, 1, 0) | (0, 7, 5, 0) => SysOpKind::IcInvalidateAll,
            (3, 7, 5, 1) => SysOpKind::IcInvalidateVa,
            (3, 7, 4, 1) => SysOpKind::DcZva,
            (3, 7, 10, 1) | (3, 7, 11, 1) | (3, 7, 12, 1) | (3, 7, 14, 1) => SysOpKind::DcCleanVa,
            (0, 7, 6, 1) | (0, 7, 6, 2) | (0, 7, 10, 2) | (0, 7, 14, 2) => SysOpKind::DcOther,
            (0, 7, 8, 0..=3) | (0, 7, 9, 0..=1) => SysOpKind::At,
            (_, 8, _, _) => SysOpKind::Tlbi,
            _ => SysOpKind::Other,
        }
    }
}

/// One decoded A64 instruction.
///
/// Register-number conventions: `rd`/`rn` of ADD/SUB (immediate and extended
/// register, non-flag-setting) and of logical immediate (non-flag-setting
/// `rd`) name SP when 31; load/store base registers `rn` name SP when 31;
/// everything else names XZR/WZR when 31.
///
/// Field names are the Arm ARM's encoding fields: `sf` 64-bit operation,
/// `rd`/`rn`/`rm`/`ra`/`rt`/`rt2`/`rs` register numbers, `setflags` the S
/// bit, `sub` the op bit of ADD/SUB, `cond` a condition code, `nzcv` the
/// flags a failed CCMP/CCMN sets, `size` log2 of the access size in bytes,
/// `offset` a byte offset from the PC or base register, `acquire`/`release`
/// the A/L and R/o0 bits.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insn {
    /// ADD/ADDS/SUB/SUBS (immediate); `imm` is already shifted by `sh`.
    AddSubImm {
        sf: bool,
        sub: bool,
        setflags: bool,
        rd: u8,
        rn: u8,
        imm: u32,
    },
    /// AND/ORR/EOR/ANDS (immediate); `imm` is the decoded bit mask.
    LogicalImm {
        sf: bool,
        op: LogicOp,
        rd: u8,
        rn: u8,
        imm: u64,
    },
    /// MOVN/MOVZ/MOVK; `shift` is hw*16.
    MovWide {
        sf: bool,
        op: MovOp,
        rd: u8,
        imm16: u16,
        shift: u8,
    },
    /// ADR (`page` false) and ADRP (`page` true); `imm` is the byte offset
    /// (for ADRP already multiplied by 4096).
    Adr { rd: u8, page: bool, imm: i64 },
    /// SBFM/BFM/UBFM.
    Bitfield {
        sf: bool,
        op: BitfieldOp,
        rd: u8,
        rn: u8,
        immr: u8,
        imms: u8,
    },
    /// EXTR.
    Extr {
        sf: bool,
        rd: u8,
        rn: u8,
        rm: u8,
        lsb: u8,
    },
    /// Logical (shifted register), `invert` for BIC/ORN/EON/BICS.
    LogicalReg {
        sf: bool,
        op: LogicOp,
        invert: bool,
        shift: Shift,
        amount: u8,
        rd: u8,
        rn: u8,
        rm: u8,
    },
    /// ADD/SUB(S) (shifted register).
    AddSubShifted {
        sf: bool,
        sub: bool,
        setflags: bool,
        shift: Shift,
        amount: u8,
        rd: u8,
        rn: u8,
        rm: u8,
    },
    /// ADD/SUB(S) (extended register), `amount` 0..=4.
    AddSubExtended {
        sf: bool,
        sub: bool,
        setflags: bool,
        extend: Extend,
        amount: u8,
        rd: u8,
        rn: u8,
        rm: u8,
    },
    /// ADC/ADCS/SBC/SBCS.
    AddSubCarry {
        sf: bool,
        sub: bool,
        setflags: bool,
        rd: u8,
        rn: u8,
        rm: u8,
    },
    /// CCMN/CCMP (register or, with `imm`, a 5-bit immediate in `rm`).
    CondCompare {
        sf: bool,
        sub: bool,
        imm: bool,
        rn: u8,
        rm: u8,
        cond: u8,
        nzcv: u8,
    },
    /// CSEL/CSINC/CSINV/CSNEG.
    CondSelect {
        sf: bool,
        op: CselOp,
        rd: u8,
        rn: u8,
        rm: u8,
        cond: u8,
    },
    /// One-source data processing.
    DataProc1 { sf: bool, op: Dp1Op, rd: u8, rn: u8 },
    /// Two-source data processing.
    DataProc2 {
        sf: bool,
        op: Dp2Op,
        rd: u8,
        rn: u8,
        rm: u8,
    },
    /// Three-source data processing.
    DataProc3 {
        sf: bool,
        op: Dp3Op,
        rd: u8,
        rn: u8,
        rm: u8,
        ra: u8,
    },
    /// B and BL; `offset` in bytes.
    Branch { link: bool, offset: i32 },
    /// B.cond; `offset` in bytes.
    BranchCond { cond: u8, offset: i32 },
    /// CBZ/CBNZ.
    CompareBranch {
        sf: bool,
        nonzero: bool,
        rt: u8,
        offset: i32,
    },
    /// TBZ/TBNZ.
    TestBranch {
        nonzero: bool,
        bit: u8,
        rt: u8,
        offset: i32,
    },
    /// BR/BLR/RET.
    BranchReg { op: BranchRegOp, rn: u8 },
    /// ERET.
    Eret,
    /// SVC #imm16.
    Svc(u16),
    /// HVC #imm16.
    Hvc(u16),
    /// SMC #imm16.
    Smc(u16),
    /// BRK #imm16.
    Brk(u16),
    /// A hint.
    Hint(Hint),
    /// A barrier.
    Barrier(Barrier),
    /// CLREX.
    Clrex,
    /// MSR (immediate) to a PSTATE field.
    MsrImm { field: PstateField, imm: u8 },
    /// MRS Xt, reg.
    Mrs { rt: u8, reg: SysReg },
    /// MSR reg, Xt.
    Msr { rt: u8, reg: SysReg },
    /// SYS (DC/IC/TLBI/AT) with Xt.
    Sys { rt: u8, op: SysOp },
    /// Single register, immediate offset (unsigned scaled, unscaled,
    /// pre/post-index, unprivileged); `size` is log2 bytes; `offset` in bytes.
    LdStImm {
        size: u8,
        kind: LdStKind,
        rt: u8,
        rn: u8,
        offset: i32,
        wb: Writeback,
        unpriv: bool,
    },
    /// Single register, register offset: address = Xn|SP + (extend(Rm) << shift).
    LdStReg {
        size: u8,
        kind: LdStKind,
        rt: u8,
        rn: u8,
        rm: u8,
        extend: Extend,
        shift: u8,
    },
    /// LDR (literal) W/X/SW and PRFM (literal); `size` log2 bytes.
    LoadLiteral {
        size: u8,
        kind: LdStKind,
        rt: u8,
        offset: i32,
    },
    /// LDP/STP/LDPSW/LDNP/STNP; `size` log2 bytes of each register.
    LdStPair {
        size: u8,
        load: bool,
        signed: bool,
        rt: u8,
        rt2: u8,
        rn: u8,
        offset: i32,
        wb: Writeback,
    },
    /// LDXR/LDAXR/LDXP/LDAXP.
    LoadExclusive {
        size: u8,
        pair: bool,
        acquire: bool,
        rt: u8,
        rt2: u8,
        rn: u8,
    },
    /// STXR/STLXR/STXP/STLXP; the status goes to `rs`.
    StoreExclusive {
        size: u8,
        pair: bool,
        release: bool,
        rs: u8,
        rt: u8,
        rt2: u8,
        rn: u8,
    },
    /// LDAR (`rcpc` false) and LDAPR (`rcpc` true).
    LoadAcquire {
        size: u8,
        rcpc: bool,
        rt: u8,
        rn: u8,
    },
    /// STLR.
    StoreRelease { size: u8, rt: u8, rn: u8 },
    /// `LD<op>`/SWP with acquire/release forms; `rs` is the operand, `rt` gets the old value.
    Atomic {
        size: u8,
        op: AtomicOp,
        acquire: bool,
        release: bool,
        rs: u8,
        rt: u8,
        rn: u8,
    },
    /// CAS/CASA/CASL/CASAL(B/H).
    Cas {
        size: u8,
        acquire: bool,
        release: bool,
        rs: u8,
        rt: u8,
        rn: u8,
    },
    /// CASP/CASPA/CASPL/CASPAL (`sf` selects X pairs).
    Casp {
        sf: bool,
        acquire: bool,
        release: bool,
        rs: u8,
        rt: u8,
        rn: u8,
    },
    /// Any FP/Advanced SIMD instruction: trapped per CPACR_EL1.FPEN, else UNDEFINED.
    FpSimd,
    /// Unallocated or not implemented: UNDEFINED.
    Undefined,
}

impl Insn {
    /// True when the instruction ends a basic block: it may change the PC
    /// other than to the next instruction, or change state that the
    /// engine must look at before the next fetch (PSTATE, translation,
    /// pending interrupts).
    pub fn ends_block(&self) -> bool {
        !matches!(
            self,
            Insn::AddSubImm { .. }
                | Insn::LogicalImm { .. }
                | Insn::MovWide { .. }
                | Insn::Adr { .. }
                | Insn::Bitfield { .. }
                | Insn::Extr { .. }
                | Insn::LogicalReg { .. }
                | Insn::AddSubShifted { .. }
                | Insn::AddSubExtended { .. }
                | Insn::AddSubCarry { .. }
                | Insn::CondCompare { .. }
                | Insn::CondSelect { .. }
                | Insn::DataProc1 { .. }
                | Insn::DataProc2 { .. }
                | Insn::DataProc3 { .. }
                | Insn::LdStImm { .. }
                | Insn::LdStReg { .. }
                | Insn::LoadLiteral { .. }
                | Insn::LdStPair { .. }
                | Insn::LoadExclusive { .. }
                | Insn::StoreExclusive { .. }
                | Insn::LoadAcquire { .. }
                | Insn::StoreRelease { .. }
                | Insn::Atomic { .. }
                | Insn::Cas { .. }
                | Insn::Casp { .. }
                | Insn::Clrex
                | Insn::Hint(Hint::Nop)
                | Insn::Barrier(Barrier::Dmb(_))
        )
    }
}
