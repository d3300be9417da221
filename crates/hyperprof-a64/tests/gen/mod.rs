//! Random test-case generator for the differential test: each case is a
//! register/flag state, 256 bytes of scratch memory, and a short body of
//! instructions of one class, as assembly text.

mod mem;
mod program;

use mem::{atomic, cas, exclusive, ldst_imm, ldst_reg_lit, pair};

pub use program::program;

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    pub fn coin(&mut self) -> bool {
        self.next() & 1 != 0
    }
    pub fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    /// An interesting 64-bit value.
    pub fn value(&mut self) -> u64 {
        match self.below(10) {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => 0x8000_0000_0000_0000,
            4 => 0x7fff_ffff_ffff_ffff,
            5 => 0x8000_0000,
            6 => 0xffff_ffff,
            7 => self.below(256),
            8 => self.next() as u32 as u64,
            _ => self.next(),
        }
    }
}

pub const SCRATCH: usize = 256;
pub const CONDS: [&str; 16] = [
    "eq", "ne", "cs", "cc", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al", "nv",
];

/// One case.
pub struct Case {
    pub idx: usize,
    /// Initial X0..X30, SP, NZCV as `.quad` operands.
    pub init: Vec<String>,
    pub scratch: Vec<u8>,
    pub body: String,
    /// Registers the body must not pick as destinations (bases, indices).
    reserved: Vec<u8>,
    /// Registers earlier instructions of the body name (never made bases).
    touched: Vec<u8>,
    /// SP was named by an earlier instruction.
    sp_touched: bool,
}

/// The classes, for the report.
pub const CLASSES: [&str; 15] = [
    "add/sub/logical immediate, move wide",
    "logical shifted register",
    "add/sub shifted and extended register",
    "with carry, conditional compare and select",
    "1-, 2- and 3-source (div, mul-high, crc32, rev, clz)",
    "bitfield, extract, ADR/ADRP",
    "load/store immediate: unsigned, unscaled, pre/post-index, unprivileged",
    "load/store register offset, literal, prefetch",
    "load/store pair incl. LDPSW, LDNP/STNP",
    "exclusives and ordered (LDXR/STXR/LDAXP/STLXP, LDAR/STLR/LDAPR)",
    "LSE atomics (LD<op>, SWP, acquire/release forms)",
    "CAS, CASP",
    "branches: B.cond, CBZ/CBNZ, TBZ/TBNZ, BL, BR, BLR, RET",
    "system at EL0: hints, barriers, CLREX, MRS/MSR NZCV and TPIDR_EL0",
    "mixed sequences",
];

fn x(n: u8) -> String {
    if n == 31 {
        "xzr".into()
    } else {
        format!("x{n}")
    }
}
fn w(n: u8) -> String {
    if n == 31 {
        "wzr".into()
    } else {
        format!("w{n}")
    }
}
fn r(sf: bool, n: u8) -> String {
    if sf {
        x(n)
    } else {
        w(n)
    }
}

impl Case {
    pub fn new(rng: &mut Rng, idx: usize) -> Case {
        let mut init: Vec<String> = (0..31).map(|_| format!("{:#x}", rng.value())).collect();
        init.push(format!("scratch_{idx} + 128"));
        init.push(format!("{:#x}", rng.below(16) << 28));
        let scratch = (0..SCRATCH).map(|_| rng.next() as u8).collect();
        Case {
            idx,
            init,
            scratch,
            body: String::new(),
            reserved: Vec::new(),
            touched: Vec::new(),
            sp_touched: false,
        }
    }

    fn emit(&mut self, line: &str) {
        self.body.push_str("    ");
        self.body.push_str(line);
        self.body.push('\n');
    }

    /// A destination or source register that is not reserved (may be 31 = ZR).
    fn reg(&mut self, rng: &mut Rng) -> u8 {
        loop {
            let n = if rng.below(16) == 0 {
                31
            } else {
                rng.below(31) as u8
            };
            if !self.reserved.contains(&n) {
                self.touched.push(n);
                return n;
            }
        }
    }

    /// A general register 0..=30 that is not reserved.
    fn gpr(&mut self, rng: &mut Rng) -> u8 {
        loop {
            let n = rng.below(31) as u8;
            if !self.reserved.contains(&n) {
                self.touched.push(n);
                return n;
            }
        }
    }

    /// A base register into scratch (`sp` sometimes) at offset `off`
    /// from the scratch start; reserved from then on.
    fn base(&mut self, rng: &mut Rng, off: u64) -> String {
        if rng.below(5) == 0 && off % 16 == 0 && !self.reserved.contains(&31) && !self.sp_touched {
            self.reserved.push(31);
            self.sp_touched = true;
            self.init[31] = format!("scratch_{} + {off}", self.idx);
            return "sp".into();
        }
        let n = self.fresh(rng);
        self.init[n as usize] = format!("scratch_{} + {off}", self.idx);
        x(n)
    }

    /// A register no earlier instruction named, reserved from now on
    /// (its initial value is what the next instruction sees).
    fn fresh(&mut self, rng: &mut Rng) -> u8 {
        let n = loop {
            let n = rng.below(31) as u8;
            if !self.reserved.contains(&n) && !self.touched.contains(&n) {
                break n;
            }
        };
        self.reserved.push(n);
        self.touched.push(n);
        n
    }

    fn set(&mut self, n: u8, v: i64) {
        self.init[n as usize] = format!("{:#x}", v as u64);
    }

    fn scratch_u64(&self, off: usize, size: usize) -> u64 {
        let mut b = [0u8; 8];
        b[..size].copy_from_slice(&self.scratch[off..off + size]);
        u64::from_le_bytes(b)
    }
}

pub fn gen_case(rng: &mut Rng, idx: usize, class: usize) -> Case {
    let mut c = Case::new(rng, idx);
    let n = 1 + rng.below(3);
    for _ in 0..n {
        let k = if class == 13 {
            rng.below(13) as usize
        } else {
            class
        };
        match k {
            0 => dp_imm(&mut c, rng),
            1 => logic_reg(&mut c, rng),
            2 => addsub_reg(&mut c, rng),
            3 => carry_cond(&mut c, rng),
            4 => dp_src(&mut c, rng),
            5 => bitfield(&mut c, rng),
            6 => ldst_imm(&mut c, rng),
            7 => ldst_reg_lit(&mut c, rng),
            8 => pair(&mut c, rng),
            9 => exclusive(&mut c, rng),
            10 => atomic(&mut c, rng),
            11 => cas(&mut c, rng),
            12 => branch(&mut c, rng),
            _ => system(&mut c, rng),
        }
    }
    c
}

fn dp_imm(c: &mut Case, g: &mut Rng) {
    let sf = g.coin();
    match g.below(3) {
        0 => {
            let op = g.pick(&["add", "adds", "sub", "subs"]);
            let setflags = op.ends_with('s');
            let sp_ok = !c.reserved.contains(&31);
            let d = if sp_ok && !setflags && g.below(6) == 0 {
                if sf {
                    "sp".into()
                } else {
                    "wsp".into()
                }
            } else if setflags {
                r(sf, c.reg(g))
            } else {
                r(sf, c.gpr(g))
            };
            let n = if g.below(6) == 0 {
                if sf {
                    "sp".into()
                } else {
                    "wsp".into()
                }
            } else {
                r(sf, c.gpr(g))
            };
            c.sp_touched = true;
            let sh = if g.coin() { ", lsl #12" } else { "" };
            c.emit(&format!("{op} {d}, {n}, #{}{sh}", g.below(4096)));
        }
        1 => {
            let op = g.pick(&["and", "orr", "eor", "ands"]);
            let size = if sf { 64 } else { 32 };
            let imm = loop {
                let nbit = sf && g.coin();
                if let Some(v) = hyperprof_a64::decode::decode_logical_imm(
                    nbit,
                    g.below(64) as u32,
                    g.below(64) as u32,
                    size,
                ) {
                    break v;
                }
            };
            let d = if op == "ands" {
                r(sf, c.reg(g))
            } else {
                r(sf, c.gpr(g))
            };
            let n = r(sf, c.reg(g));
            c.emit(&format!("{op} {d}, {n}, #{imm:#x}"));
        }
        _ => {
            let op = g.pick(&["movz", "movn", "movk"]);
            let hw = g.below(if sf { 4 } else { 2 }) * 16;
            let d = r(sf, c.reg(g));
            c.emit(&format!("{op} {d}, #{}, lsl #{hw}", g.below(65536)));
        }
    }
}

fn logic_reg(c: &mut Case, g: &mut Rng) {
    let sf = g.coin();
    let op = g.pick(&["and", "orr", "eor", "ands", "bic", "orn", "eon", "bics"]);
    let sh = g.pick(&["lsl", "lsr", "asr", "ror"]);
    let amt = g.below(if sf { 64 } else { 32 });
    let (d, n, m) = (c.reg(g), c.reg(g), c.reg(g));
    c.emit(&format!(
        "{op} {}, {}, {}, {sh} #{amt}",
        r(sf, d),
        r(sf, n),
        r(sf, m)
    ));
}

fn addsub_reg(c: &mut Case, g: &mut Rng) {
    let sf = g.coin();
    let op = g.pick(&["add", "adds", "sub", "subs"]);
    let (d, n, m) = (c.reg(g), c.reg(g), c.reg(g));
    if g.coin() {
        let sh = g.pick(&["lsl", "lsr", "asr"]);
        let amt = g.below(if sf { 64 } else { 32 });
        c.emit(&format!(
            "{op} {}, {}, {}, {sh} #{amt}",
            r(sf, d),
            r(sf, n),
            r(sf, m)
        ));
    } else {
        let ext = if sf {
            g.pick(&[
                "uxtb", "uxth", "uxtw", "uxtx", "sxtb", "sxth", "sxtw", "sxtx",
            ])
        } else {
            g.pick(&["uxtb", "uxth", "uxtw", "sxtb", "sxth", "sxtw"])
        };
        let amt = g.below(5);
        let setflags = op.ends_with('s');
        let sp = if sf { "sp" } else { "wsp" };
        let sp_ok = !c.reserved.contains(&31);
        c.sp_touched = true;
        let d = if d == 31 && !setflags { 0 } else { d };
        let dn = if sp_ok && !setflags && g.below(6) == 0 {
            sp.to_string()
        } else {
            r(sf, d)
        };
        let nn = if g.below(6) == 0 {
            sp.to_string()
        } else {
            r(sf, if n == 31 { 0 } else { n })
        };
        let mreg = if sf && ext.ends_with('x') { x(m) } else { w(m) };
        c.emit(&format!("{op} {dn}, {nn}, {mreg}, {ext} #{amt}"));
    }
}

fn carry_cond(c: &mut Case, g: &mut Rng) {
    let sf = g.coin();
    let (d, n, m) = (c.reg(g), c.reg(g), c.reg(g));
    let cond = g.pick(&CONDS);
    match g.below(4) {
        0 => {
            let op = g.pick(&["adc", "adcs", "sbc", "sbcs"]);
            c.emit(&format!("{op} {}, {}, {}", r(sf, d), r(sf, n), r(sf, m)));
        }
        1 => {
            let op = g.pick(&["ccmp", "ccmn"]);
            c.emit(&format!(
                "{op} {}, {}, #{}, {cond}",
                r(sf, n),
                r(sf, m),
                g.below(16)
            ));
        }
        2 => {
            let op = g.pick(&["ccmp", "ccmn"]);
            c.emit(&format!(
                "{op} {}, #{}, #{}, {cond}",
                r(sf, n),
                g.below(32),
                g.below(16)
            ));
        }
        _ => {
            let op = g.pick(&["csel", "csinc", "csinv", "csneg"]);
            c.emit(&format!(
                "{op} {}, {}, {}, {cond}",
                r(sf, d),
                r(sf, n),
                r(sf, m)
            ));
        }
    }
}

fn dp_src(c: &mut Case, g: &mut Rng) {
    let sf = g.coin();
    let (d, n, m, a) = (c.reg(g), c.reg(g), c.reg(g), c.reg(g));
    match g.below(4) {
        0 => {
            let op = if sf {
                g.pick(&["rbit", "rev16", "rev32", "rev", "clz", "cls"])
            } else {
                g.pick(&["rbit", "rev16", "rev", "clz", "cls"])
            };
            c.emit(&format!("{op} {}, {}", r(sf, d), r(sf, n)));
        }
        1 => {
            let op = g.pick(&["udiv", "sdiv", "lslv", "lsrv", "asrv", "rorv"]);
            c.emit(&format!("{op} {}, {}, {}", r(sf, d), r(sf, n), r(sf, m)));
        }
        2 => {
            let (op, wide) = match g.below(8) {
                0 => ("crc32b", false),
                1 => ("crc32h", false),
                2 => ("crc32w", false),
                3 => ("crc32x", true),
                4 => ("crc32cb", false),
                5 => ("crc32ch", false),
                6 => ("crc32cw", false),
                _ => ("crc32cx", true),
            };
            c.emit(&format!("{op} {}, {}, {}", w(d), w(n), r(wide, m)));
        }
        _ => {
            if g.coin() {
                let op = g.pick(&["madd", "msub"]);
                c.emit(&format!(
                    "{op} {}, {}, {}, {}",
                    r(sf, d),
                    r(sf, n),
                    r(sf, m),
                    r(sf, a)
                ));
            } else if g.coin() {
                let op = g.pick(&["smaddl", "smsubl", "umaddl", "umsubl"]);
                c.emit(&format!("{op} {}, {}, {}, {}", x(d), w(n), w(m), x(a)));
            } else {
                let op = g.pick(&["smulh", "umulh"]);
                c.emit(&format!("{op} {}, {}, {}", x(d), x(n), x(m)));
            }
        }
    }
}

fn bitfield(c: &mut Case, g: &mut Rng) {
    let sf = g.coin();
    let size = if sf { 64 } else { 32 };
    let (d, n, m) = (c.reg(g), c.reg(g), c.reg(g));
    match g.below(4) {
        0 | 1 => {
            let op = g.pick(&["sbfm", "bfm", "ubfm"]);
            c.emit(&format!(
                "{op} {}, {}, #{}, #{}",
                r(sf, d),
                r(sf, n),
                g.below(size),
                g.below(size)
            ));
        }
        2 => c.emit(&format!(
            "extr {}, {}, {}, #{}",
            r(sf, d),
            r(sf, n),
            r(sf, m),
            g.below(size)
        )),
        _ => {
            if g.coin() {
                c.emit(&format!("adr {}, . + {}", x(d), g.range(-4000, 4000)));
            } else {
                c.emit(&format!(
                    "adrp {}, . + {:#x}",
                    x(d),
                    g.range(-64, 64) * 4096
                ));
            }
        }
    }
}

fn branch(c: &mut Case, g: &mut Rng) {
    let d = c.gpr(g);
    let skip = format!("movz {}, #{}", x(d), g.below(65536));
    match g.below(7) {
        0 => c.emit(&format!("b.{} 1f", g.pick(&CONDS[..14]))),
        1 => {
            let op = g.pick(&["cbz", "cbnz"]);
            let sf = g.coin();
            let n = c.reg(g);
            c.emit(&format!("{op} {}, 1f", r(sf, n)));
        }
        2 => {
            let op = g.pick(&["tbz", "tbnz"]);
            let n = c.reg(g);
            let bit = g.below(64);
            let reg = if bit < 32 && g.coin() { w(n) } else { x(n) };
            c.emit(&format!("{op} {reg}, #{bit}, 1f"));
        }
        3 => c.emit("bl 1f"),
        4 => {
            let t = c.gpr(g);
            c.emit(&format!("adr {}, 1f", x(t)));
            c.emit(&format!("br {}", x(t)));
        }
        5 => {
            let t = c.gpr(g);
            c.emit(&format!("adr {}, 1f", x(t)));
            c.emit(&format!("blr {}", x(t)));
        }
        _ => {
            let t = c.gpr(g);
            c.emit(&format!("adr {}, 1f", x(t)));
            c.emit(&format!("ret {}", x(t)));
        }
    }
    c.emit(&skip);
    c.emit("1:");
}

fn system(c: &mut Case, g: &mut Rng) {
    let d = c.reg(g);
    match g.below(4) {
        0 => {
            let h = g.pick(&[
                "nop",
                "yield",
                "sevl",
                "isb",
                "dmb ish",
                "dmb ishld",
                "dsb sy",
                "dsb ish",
                "clrex",
                "csdb",
                "psb csync",
                "hint #0x25",
            ]);
            c.emit(h);
        }
        1 => c.emit(&format!("mrs {}, nzcv", x(d))),
        2 => {
            let n = c.reg(g);
            c.emit(&format!("msr nzcv, {}", x(n)));
        }
        _ => {
            let n = c.reg(g);
            c.emit(&format!("msr tpidr_el0, {}", x(n)));
            c.emit(&format!("mrs {}, tpidr_el0", x(d)));
        }
    }
}
