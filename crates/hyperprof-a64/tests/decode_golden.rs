//! Golden encodings (as GNU as emits them) to decoded fields, one or more
//! per class.

use hyperprof_a64::decode;
use hyperprof_a64::insn::*;

#[test]
fn data_processing_golden() {
    assert_eq!(
        decode(0x8b02_0020),
        Insn::AddSubShifted {
            sf: true,
            sub: false,
            setflags: false,
            shift: Shift::Lsl,
            amount: 0,
            rd: 0,
            rn: 1,
            rm: 2
        }
    );
    assert_eq!(
        decode(0xd280_0540),
        Insn::MovWide {
            sf: true,
            op: MovOp::Z,
            rd: 0,
            imm16: 42,
            shift: 0
        }
    );
    assert_eq!(
        decode(0x9100_0421),
        Insn::AddSubImm {
            sf: true,
            sub: false,
            setflags: false,
            rd: 1,
            rn: 1,
            imm: 1
        }
    );
    assert_eq!(
        decode(0x9ac2_0820),
        Insn::DataProc2 {
            sf: true,
            op: Dp2Op::Udiv,
            rd: 0,
            rn: 1,
            rm: 2
        }
    );
    assert_eq!(
        decode(0x9bc2_7c20),
        Insn::DataProc3 {
            sf: true,
            op: Dp3Op::Umulh,
            rd: 0,
            rn: 1,
            rm: 2,
            ra: 31
        }
    );
    // ubfx x0, x1, #4, #8 is UBFM x0, x1, #4, #11.
    assert_eq!(
        decode(0xd344_2c20),
        Insn::Bitfield {
            sf: true,
            op: BitfieldOp::Ubfm,
            rd: 0,
            rn: 1,
            immr: 4,
            imms: 11
        }
    );
    assert_eq!(
        decode(0x1a82_1420),
        Insn::CondSelect {
            sf: false,
            op: CselOp::Csinc,
            rd: 0,
            rn: 1,
            rm: 2,
            cond: 1
        }
    );
    // The 32-bit logical immediate with N = 1 is unallocated.
    assert_eq!(decode(0x1240_0000), Insn::Undefined);
}

#[test]
fn loads_and_stores_golden() {
    assert_eq!(
        decode(0xf940_0020),
        Insn::LdStImm {
            size: 3,
            kind: LdStKind::Load,
            rt: 0,
            rn: 1,
            offset: 0,
            wb: Writeback::None,
            unpriv: false
        }
    );
    assert_eq!(
        decode(0xa9bf_7bfd),
        Insn::LdStPair {
            size: 3,
            load: false,
            signed: false,
            rt: 29,
            rt2: 30,
            rn: 31,
            offset: -16,
            wb: Writeback::Pre
        }
    );
    assert_eq!(
        decode(0xf862_7820),
        Insn::LdStReg {
            size: 3,
            kind: LdStKind::Load,
            rt: 0,
            rn: 1,
            rm: 2,
            extend: Extend::Uxtx,
            shift: 3
        }
    );
    assert_eq!(
        decode(0xb900_0023),
        Insn::LdStImm {
            size: 2,
            kind: LdStKind::Store,
            rt: 3,
            rn: 1,
            offset: 0,
            wb: Writeback::None,
            unpriv: false
        }
    );
    assert_eq!(
        decode(0xc85f_7c20),
        Insn::LoadExclusive {
            size: 3,
            pair: false,
            acquire: false,
            rt: 0,
            rt2: 31,
            rn: 1
        }
    );
    assert_eq!(
        decode(0xc802_7c20),
        Insn::StoreExclusive {
            size: 3,
            pair: false,
            release: false,
            rs: 2,
            rt: 0,
            rt2: 31,
            rn: 1
        }
    );
    assert_eq!(
        decode(0xf820_0020),
        Insn::Atomic {
            size: 3,
            op: AtomicOp::Add,
            acquire: false,
            release: false,
            rs: 0,
            rt: 0,
            rn: 1
        }
    );
    assert_eq!(
        decode(0xb8bf_c083),
        Insn::LoadAcquire {
            size: 2,
            rcpc: true,
            rt: 3,
            rn: 4
        }
    );
    assert_eq!(
        decode(0xc8e0_fc41),
        Insn::Cas {
            size: 3,
            acquire: true,
            release: true,
            rs: 0,
            rt: 1,
            rn: 2
        }
    );
}

#[test]
fn branches_and_system_golden() {
    assert_eq!(
        decode(0xd65f_03c0),
        Insn::BranchReg {
            op: BranchRegOp::Ret,
            rn: 30
        }
    );
    assert_eq!(decode(0x5400_0040), Insn::BranchCond { cond: 0, offset: 8 });
    assert_eq!(
        decode(0x9400_0000),
        Insn::Branch {
            link: true,
            offset: 0
        }
    );
    assert_eq!(decode(0xd503_201f), Insn::Hint(Hint::Nop));
    assert_eq!(decode(0xd503_207f), Insn::Hint(Hint::Wfi));
    assert_eq!(decode(0xd503_223f), Insn::Hint(Hint::PsbCsync));
    assert_eq!(decode(0xd503_3fdf), Insn::Barrier(Barrier::Isb));
    assert_eq!(decode(0xd503_3b9f), Insn::Barrier(Barrier::Dsb(0xb)));
    assert_eq!(decode(0xd400_0001), Insn::Svc(0));
    assert_eq!(decode(0xd400_00e2), Insn::Hvc(7));
    assert_eq!(decode(0xd69f_03e0), Insn::Eret);
    assert_eq!(
        decode(0xd53b_4200),
        Insn::Mrs {
            rt: 0,
            reg: SysReg::new(3, 3, 4, 2, 0)
        }
    );
    assert_eq!(
        decode(0xd51b_4200),
        Insn::Msr {
            rt: 0,
            reg: SysReg::new(3, 3, 4, 2, 0)
        }
    );
    assert_eq!(
        decode(0xd53b_9c05),
        Insn::Mrs {
            rt: 5,
            reg: SysReg::new(3, 3, 9, 12, 0)
        }
    );
    assert_eq!(
        decode(0xd503_42df),
        Insn::MsrImm {
            field: PstateField::DaifSet,
            imm: 2
        }
    );
    let ic = decode(0xd508_751f);
    assert_eq!(
        ic,
        Insn::Sys {
            rt: 31,
            op: SysOp(SysReg::new(1, 0, 7, 5, 0))
        }
    );
    if let Insn::Sys { op, .. } = ic {
        assert_eq!(op.kind(), SysOpKind::IcInvalidateAll);
    }
}

#[test]
fn fp_simd_and_unallocated() {
    assert_eq!(decode(0x1e62_2820), Insn::FpSimd); // fadd d0, d1, d2
    assert_eq!(decode(0x3d80_0000), Insn::FpSimd); // str q0, [x0]
    assert_eq!(decode(0x0000_0000), Insn::Undefined); // udf #0
    assert_eq!(decode(0xd4a0_0001), Insn::Undefined); // DCPS1 (not modelled)
}

#[test]
fn decoder_never_panics_and_insn_stays_compact() {
    assert!(core::mem::size_of::<Insn>() <= 16);
    let mut x = 0x1234_5678u32;
    for _ in 0..200_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let _ = decode(x);
    }
}
