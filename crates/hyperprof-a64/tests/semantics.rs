//! Targeted semantics: flags, division by zero, bit masks, the exclusive
//! monitor, atomics, the observer's view of retired instructions, and
//! the block cache's invalidation on code writes, IC and TLBI.

mod common;

use common::FlatBus;
use hyperprof_a64::bus::{OpClass, Retired};
use hyperprof_a64::decode::decode_logical_imm;
use hyperprof_a64::{Access, Bus, Cpu, Exit, Fetched, MemFault};

const CODE: u64 = 0x1000;
const DATA: u64 = 0x4000;

fn machine(code: &[u32]) -> (Cpu, FlatBus) {
    let mut bus = FlatBus::new();
    bus.map(CODE, 0x1000);
    bus.map(DATA, 0x1000);
    for (i, w) in code.iter().enumerate() {
        bus.write_u32(CODE + 4 * i as u64, *w);
    }
    let mut cpu = Cpu::new();
    cpu.set_pc(CODE);
    (cpu, bus)
}

#[test]
fn add_sub_flags() {
    // adds x0, x1, x2 ; subs w3, w4, w5
    let (mut cpu, mut bus) = machine(&[0xab02_0020, 0x6b05_0083]);
    cpu.set_x(1, 0x7fff_ffff_ffff_ffff);
    cpu.set_x(2, 1);
    cpu.step(&mut bus);
    assert_eq!(cpu.x(0), 0x8000_0000_0000_0000);
    assert_eq!(cpu.nzcv() >> 28, 0b1001, "N and V on signed overflow");
    cpu.set_x(4, 0x1_0000_0000);
    cpu.set_x(5, 1);
    cpu.step(&mut bus);
    assert_eq!(cpu.x(3), 0xffff_ffff, "32-bit result, zero-extended");
    assert_eq!(cpu.nzcv() >> 28, 0b1000, "0 - 1 borrows: N set, C clear");
}

#[test]
fn division_by_zero_and_overflow() {
    // udiv x0, x1, x2 ; sdiv x3, x4, x5
    let (mut cpu, mut bus) = machine(&[0x9ac2_0820, 0x9ac5_0c83]);
    cpu.set_x(1, 77);
    cpu.set_x(4, i64::MIN as u64);
    cpu.set_x(5, u64::MAX);
    cpu.run(&mut bus, 2);
    assert_eq!(cpu.x(0), 0);
    assert_eq!(cpu.x(3), i64::MIN as u64);
}

#[test]
fn logical_immediate_masks() {
    assert_eq!(
        decode_logical_imm(false, 0b111100, 0, 32),
        Some(0x5555_5555)
    );
    assert_eq!(
        decode_logical_imm(true, 0b000111, 4, 64),
        Some(0xf000_0000_0000_000f)
    );
    assert_eq!(
        decode_logical_imm(true, 0b111111, 0, 64),
        None,
        "all ones is reserved"
    );
}

#[test]
fn exclusive_monitor_and_clrex() {
    // ldxr x0, [x1] ; stxr w2, x3, [x1] ; stxr w4, x3, [x1]
    let (mut cpu, mut bus) = machine(&[0xc85f_7c20, 0xc802_7c23, 0xc804_7c23]);
    cpu.set_x(1, DATA);
    cpu.set_x(3, 0xabcd);
    cpu.run(&mut bus, 3);
    assert_eq!(cpu.x(2), 0, "first store exclusive succeeds");
    assert_eq!(cpu.x(4), 1, "second fails: the monitor was cleared");
    assert_eq!(
        bus.read_bytes(DATA, 8),
        Some(0xabcd_u64.to_le_bytes().to_vec())
    );
    assert!(!cpu.exclusive_monitor().armed);
}

#[test]
fn lse_atomic_and_cas() {
    // ldaddal x2, x3, [x1] ; casal x4, x5, [x1]
    let (mut cpu, mut bus) = machine(&[0xf8e2_0023, 0xc8e4_fc25]);
    bus.write_bytes(DATA, &10u64.to_le_bytes());
    cpu.set_x(1, DATA);
    cpu.set_x(2, 5);
    cpu.set_x(4, 15);
    cpu.set_x(5, 99);
    cpu.run(&mut bus, 2);
    assert_eq!(cpu.x(3), 10, "old value");
    assert_eq!(cpu.x(4), 15, "CAS returns the old value (it matched)");
    assert_eq!(bus.read_bytes(DATA, 8), Some(99u64.to_le_bytes().to_vec()));
}

/// Records every retired instruction.
struct Recorder {
    mem: FlatBus,
    seen: Vec<Retired>,
}

impl Bus for Recorder {
    fn fetch(&mut self, va: u64, a: Access) -> Result<Fetched, MemFault> {
        self.mem.fetch(va, a)
    }
    fn read(&mut self, va: u64, s: u8, a: Access) -> Result<u64, MemFault> {
        self.mem.read(va, s, a)
    }
    fn write(&mut self, va: u64, s: u8, v: u64, a: Access) -> Result<u64, MemFault> {
        self.mem.write(va, s, v, a)
    }
    fn retired(&mut self, info: &Retired) {
        self.seen.push(*info);
    }
}

#[test]
fn observer_sees_class_address_and_branch_outcome() {
    // ldr w0, [x1, #4] ; cbz x0, +8 ; stlr x2, [x1] ; ldaddl x2, x3, [x1]
    let (cpu0, mem) = machine(&[0xb940_0420, 0xb400_0040, 0xc89f_fc22, 0xf862_0023]);
    let mut cpu = cpu0;
    cpu.set_x(1, DATA);
    let mut bus = Recorder {
        mem,
        seen: Vec::new(),
    };
    bus.mem.write_bytes(DATA + 4, &7u32.to_le_bytes());
    cpu.run(&mut bus, 4);
    let s = &bus.seen;
    assert_eq!(s.len(), 4);
    assert_eq!(
        (s[0].pc, s[0].class.0, s[0].va, s[0].size),
        (CODE, OpClass::LOAD, DATA + 4, 4)
    );
    assert!(s[1].class.has(OpClass::BRANCH | OpClass::CONDITIONAL));
    assert_eq!((s[1].target, s[1].taken), (CODE + 4 + 8, false));
    assert!(s[2].class.has(OpClass::STORE | OpClass::ACQ_REL));
    assert!(s[3]
        .class
        .has(OpClass::LOAD | OpClass::STORE | OpClass::ATOMIC | OpClass::ACQ_REL));
    assert_eq!(s[3].size, 8);
}

#[test]
fn code_writes_and_ic_invalidate_cached_blocks() {
    // movz x0, #1 ; str w2, [x1] ; movz x3, #5 ; hvc #0   (x1 points at the movz x3)
    let (mut cpu, mut bus) = machine(&[0xd280_0020, 0xb900_0022, 0xd280_00a3, 0xd400_0002]);
    cpu.set_x(1, CODE + 8);
    cpu.set_x(2, 0xd280_00e3); // movz x3, #7
                               // Execute once with the store writing the same word: x3 = 5 is cached in the block.
    cpu.set_x(2, 0xd280_00a3);
    assert!(matches!(cpu.run(&mut bus, 100), Exit::El2(_)));
    assert_eq!(cpu.x(3), 5);
    // Rewrite the instruction through the program itself: the next run sees it.
    cpu.set_pc(CODE);
    cpu.set_x(2, 0xd280_00e3);
    assert!(matches!(cpu.run(&mut bus, 100), Exit::El2(_)));
    cpu.set_pc(CODE);
    assert!(matches!(cpu.run(&mut bus, 100), Exit::El2(_)));
    assert_eq!(
        cpu.x(3),
        7,
        "the store to a cached code page dropped the block"
    );
    // A write behind the engine's back needs invalidate_code (or IC IALLU).
    cpu.set_x(1, DATA);
    cpu.set_pc(CODE);
    assert!(matches!(cpu.run(&mut bus, 100), Exit::El2(_)));
    bus.write_u32(CODE + 8, 0xd280_0123); // movz x3, #9
    cpu.set_pc(CODE);
    assert!(matches!(cpu.run(&mut bus, 100), Exit::El2(_)));
    assert_eq!(
        cpu.x(3),
        7,
        "stale until invalidated, as a real I-cache may be"
    );
    cpu.invalidate_code();
    cpu.set_pc(CODE);
    assert!(matches!(cpu.run(&mut bus, 100), Exit::El2(_)));
    assert_eq!(cpu.x(3), 9);
}

#[test]
fn step_and_run_agree() {
    // A small loop: x0 = 10; loop: x1 += x0; subs x0, x0, 1; b.ne loop; hvc
    let code = [
        0xd280_0140,
        0x8b00_0021,
        0xf100_0400,
        0x54ff_ffc1,
        0xd400_0002,
    ];
    let (mut a, mut bus_a) = machine(&code);
    let (mut b, mut bus_b) = machine(&code);
    assert!(matches!(a.run(&mut bus_a, 1000), Exit::El2(_)));
    let mut steps = 0;
    while b.step(&mut bus_b).is_none() {
        steps += 1;
        assert!(steps < 1000);
    }
    assert_eq!(a.x(1), 55);
    assert_eq!((a.x(1), a.retired()), (b.x(1), b.retired()));
}

#[test]
fn ic_iallu_drops_stale_blocks() {
    let mut code = vec![0xd280_00e3u32, 0xd400_0002]; // movz x3, #7 ; hvc #0
    code.resize(0x40, 0xd503_201f);
    code.extend([0xd508_751f, 0xd400_0002]); // ic iallu ; hvc #0
    let (mut cpu, mut bus) = machine(&code);
    cpu.set_pstate_from_spsr(0b0101);
    cpu.run(&mut bus, 10);
    bus.write_u32(CODE, 0xd280_0123); // movz x3, #9
    cpu.set_pc(CODE);
    cpu.run(&mut bus, 10);
    assert_eq!(cpu.x(3), 7);
    cpu.set_pc(CODE + 0x100);
    assert!(matches!(cpu.run(&mut bus, 10), Exit::El2(_)));
    cpu.set_pc(CODE);
    cpu.run(&mut bus, 10);
    assert_eq!(cpu.x(3), 9);
}

/// Translates the code page at CODE to one of two physical pages.
struct Remap {
    mem: FlatBus,
    to_second: bool,
}

impl Bus for Remap {
    fn fetch(&mut self, va: u64, a: Access) -> Result<Fetched, MemFault> {
        let pa = if va & !0xfff == CODE && self.to_second {
            va + 0x1000
        } else {
            va
        };
        self.mem.fetch(pa, a).map(|f| Fetched { pa, insn: f.insn })
    }
    fn read(&mut self, va: u64, s: u8, a: Access) -> Result<u64, MemFault> {
        self.mem.read(va, s, a)
    }
    fn write(&mut self, va: u64, s: u8, v: u64, a: Access) -> Result<u64, MemFault> {
        self.mem.write(va, s, v, a)
    }
}

#[test]
fn tlbi_flushes_cached_instruction_translations() {
    // Page 1: movz x3, #7 ; tlbi vmalle1 ; hvc.  Page 2: movz x3, #9 ; hvc.
    let (mut cpu, mut mem) = machine(&[0xd280_00e3, 0xd508_871f, 0xd400_0002]);
    mem.map(CODE + 0x1000, 0x1000);
    mem.write_u32(CODE + 0x1000, 0xd280_0123);
    mem.write_u32(CODE + 0x1004, 0xd400_0002);
    let mut bus = Remap {
        mem,
        to_second: false,
    };
    cpu.run(&mut bus, 1);
    assert_eq!(cpu.x(3), 7);
    bus.to_second = true;
    cpu.set_pc(CODE);
    cpu.run(&mut bus, 2); // movz, then TLBI VMALLE1
    assert_eq!(cpu.x(3), 7, "the old translation was still cached");
    cpu.set_pc(CODE);
    cpu.run(&mut bus, 1);
    assert_eq!(
        cpu.x(3),
        9,
        "after TLBI the fetch goes through the new translation"
    );
}

#[test]
fn random_words_never_panic_and_always_retire_or_take_an_exception() {
    const VBAR: u64 = 0x8000;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut bus = FlatBus::new();
    bus.map(CODE, 0x1000);
    bus.map(DATA, 0x1000);
    bus.map(VBAR, 0x800);
    let mut cpu = Cpu::new();
    for _ in 0..30_000 {
        let word = next() as u32;
        bus.write_u32(CODE, word);
        cpu.invalidate_code();
        let before = cpu.retired();
        for r in 0..31 {
            let v = match next() % 4 {
                0 => DATA + (next() % 0x1000),
                1 => next(),
                _ => next() % 64,
            };
            cpu.set_x(r, v);
        }
        cpu.set_sp(DATA + 0x800);
        cpu.set_nzcv(next());
        cpu.write_sysreg(hyperprof_a64::cpu::regs::VBAR_EL1, VBAR);
        cpu.set_pstate_from_spsr(if next() & 1 == 0 { 0 } else { 0b0101 });
        cpu.set_pc(CODE);
        let exit = cpu.step(&mut bus);
        let in_vectors = (VBAR..VBAR + 0x800).contains(&cpu.pc());
        let retired = cpu.retired() == before + 1;
        assert!(
            retired || in_vectors || matches!(exit, Some(Exit::El2(_))),
            "{word:#010x}: neither retired nor took an exception (pc {:#x}, exit {exit:?})",
            cpu.pc()
        );
    }
}
