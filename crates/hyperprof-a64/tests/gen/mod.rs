//! Random test-case generator for the differential test: each case is a
//! register/flag state, 256 bytes of scratch memory, and a short body of
//! instructions of one class, as assembly text.

mod program;

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

/// (mnemonic, size log2, is store, dest is W)
const SINGLE: [(&str, u32, bool, bool); 11] = [
    ("strb", 0, true, true),
    ("strh", 1, true, true),
    ("str", 2, true, true),
    ("str", 3, true, false),
    ("ldrb", 0, false, true),
    ("ldrh", 1, false, true),
    ("ldr", 2, false, true),
    ("ldr", 3, false, false),
    ("ldrsb", 0, false, false),
    ("ldrsh", 1, false, true),
    ("ldrsw", 2, false, false),
];

fn single(g: &mut Rng) -> (&'static str, u32, bool, bool) {
    let mut s = SINGLE[g.below(SINGLE.len() as u64) as usize];
    if (s.0 == "ldrsb" || s.0 == "ldrsh") && g.coin() {
        s.3 = !s.3;
    }
    s
}

fn ldst_imm(c: &mut Case, g: &mut Rng) {
    let (op, size, _store, wreg) = single(g);
    let base_off = 128;
    let b = c.base(g, base_off);
    let t = c.reg(g);
    let t = if wreg { w(t) } else { x(t) };
    let bytes = 1i64 << size;
    match g.below(4) {
        0 => c.emit(&format!(
            "{op} {t}, [{b}, #{}]",
            g.range(0, 120 / bytes) * bytes
        )),
        1 => {
            let u = op.replacen("ldr", "ldur", 1).replacen("str", "stur", 1);
            c.emit(&format!("{u} {t}, [{b}, #{}]", g.range(-128, 120)));
        }
        m => {
            let mut o = g.range(-128, 120);
            if b == "sp" {
                o &= !15;
            }
            if m == 2 {
                c.emit(&format!("{op} {t}, [{b}, #{o}]!"))
            } else {
                c.emit(&format!("{op} {t}, [{b}], #{o}"))
            }
        }
    }
}

fn ldst_reg_lit(c: &mut Case, g: &mut Rng) {
    let (op, size, _store, wreg) = single(g);
    match g.below(3) {
        0 | 1 => {
            let b = c.base(g, 128);
            let m = c.fresh(g);
            let t = c.reg(g);
            let t = if wreg { w(t) } else { x(t) };
            let bytes = 1i64 << size;
            let k = g.range(-12, 12) * bytes;
            let ext = g.pick(&["lsl", "uxtw", "sxtw", "sxtx"]);
            let sh = if g.coin() {
                format!(" #{size}")
            } else {
                String::new()
            };
            let sh = if ext == "lsl" && sh.is_empty() {
                String::new()
            } else {
                sh
            };
            let scaled = if sh.is_empty() { k } else { k / bytes };
            let val = match ext {
                "uxtw" => {
                    ((g.next() & 0xffff_ffff_0000_0000) as i64) | (scaled.abs() & 0xffff_ffff)
                }
                "sxtw" => ((g.next() & 0xffff_ffff_0000_0000) as i64) | (scaled & 0xffff_ffff),
                _ => scaled,
            };
            c.set(m, val);
            let mreg = if ext.ends_with('w') { w(m) } else { x(m) };
            if ext == "lsl" && sh.is_empty() {
                c.emit(&format!("{op} {t}, [{b}, {mreg}]"));
            } else {
                c.emit(&format!("{op} {t}, [{b}, {mreg}, {ext}{sh}]"));
            }
            if g.below(4) == 0 {
                c.emit(&format!("prfm pldl1keep, [{b}, {}]", x(m)));
            }
        }
        _ => {
            let t = c.reg(g);
            let v = g.next();
            let mnemonic = match g.below(4) {
                0 => format!("ldr {}, 2f", x(t)),
                1 => format!("ldr {}, 2f", w(t)),
                2 => format!("ldrsw {}, 2f", x(t)),
                _ => "prfm pldl1keep, 2f".to_string(),
            };
            c.emit(&mnemonic);
            c.emit("b 3f");
            c.emit(".balign 8");
            c.emit(&format!("2: .quad {v:#x}"));
            c.emit("3:");
        }
    }
}

fn pair(c: &mut Case, g: &mut Rng) {
    let kind = g.below(4);
    let (op, sf) = match kind {
        0 => (g.pick(&["ldp", "stp", "ldnp", "stnp"]), true),
        1 => (g.pick(&["ldp", "stp", "ldnp", "stnp"]), false),
        _ => ("ldpsw", true),
    };
    let b = c.base(g, 128);
    let t1 = c.reg(g);
    let t2 = loop {
        let t = c.reg(g);
        if t != t1 || op.starts_with("st") {
            break t;
        }
    };
    let t2 = if t1 == 31 && t2 == 31 && op.starts_with("ld") {
        0
    } else {
        t2
    };
    let t2 = if t2 == t1 && op.starts_with("ld") {
        (t1 + 1) % 31
    } else {
        t2
    };
    let bytes = if sf && op != "ldpsw" { 8 } else { 4 };
    let (a, bb) = if op == "ldpsw" {
        (x(t1), x(t2))
    } else {
        (r(sf, t1), r(sf, t2))
    };
    let mut off = g.range(-16, 14) * bytes;
    if b == "sp" {
        off &= !15;
    }
    let nt = op.ends_with("np");
    match if nt { 0 } else { g.below(3) } {
        0 => c.emit(&format!("{op} {a}, {bb}, [{b}, #{off}]")),
        1 => c.emit(&format!("{op} {a}, {bb}, [{b}, #{off}]!")),
        _ => c.emit(&format!("{op} {a}, {bb}, [{b}], #{off}")),
    }
}

fn exclusive(c: &mut Case, g: &mut Rng) {
    let size = g.below(4) as u32;
    let off = (128 + g.range(-4, 3) * 16) as u64;
    let b = c.base(g, off);
    let t = c.gpr(g);
    c.reserved.push(t);
    let t2 = c.gpr(g);
    c.reserved.push(t2);
    let s = c.gpr(g);
    c.reserved.push(s);
    let sfx = ["b", "h", "", ""][size as usize];
    let reg_of = |n: u8| if size == 3 { x(n) } else { w(n) };
    match g.below(4) {
        0 => {
            let (l, st) = if g.coin() {
                ("ldxr", "stxr")
            } else {
                ("ldaxr", "stlxr")
            };
            c.emit(&format!("{l}{sfx} {}, [{b}]", reg_of(t)));
            if g.below(4) == 0 {
                c.emit("clrex");
            }
            c.emit(&format!("{st}{sfx} {}, {}, [{b}]", w(s), reg_of(t2)));
        }
        1 => {
            let sf = g.coin();
            let (l, st) = if g.coin() {
                ("ldxp", "stxp")
            } else {
                ("ldaxp", "stlxp")
            };
            c.emit(&format!("{l} {}, {}, [{b}]", r(sf, t), r(sf, t2)));
            let u = c.gpr(g);
            c.emit(&format!("{st} {}, {}, {}, [{b}]", w(s), r(sf, u), r(sf, t)));
        }
        2 => {
            let op = g.pick(&["ldar", "ldapr"]);
            let d = c.reg(g);
            c.emit(&format!("{op}{sfx} {}, [{b}]", reg_of(d)));
        }
        _ => {
            c.emit(&format!("stlr{sfx} {}, [{b}]", reg_of(t)));
            if g.coin() {
                c.emit(&format!("stxr{sfx} {}, {}, [{b}]", w(s), reg_of(t2)));
            }
        }
    }
}

fn atomic(c: &mut Case, g: &mut Rng) {
    let size = g.below(4) as u32;
    let off = (128 + g.range(-8, 7) * 8) as u64;
    let b = c.base(g, off);
    let op = g.pick(&[
        "ldadd", "ldclr", "ldeor", "ldset", "ldsmax", "ldsmin", "ldumax", "ldumin", "swp",
    ]);
    let ord = g.pick(&["", "a", "l", "al"]);
    let sfx = ["b", "h", "", ""][size as usize];
    let reg_of = |n: u8| if size == 3 { x(n) } else { w(n) };
    let (s, t) = (c.reg(g), c.reg(g));
    c.emit(&format!(
        "{op}{ord}{sfx} {}, {}, [{b}]",
        reg_of(s),
        reg_of(t)
    ));
}

fn cas(c: &mut Case, g: &mut Rng) {
    let ord = g.pick(&["", "a", "l", "al"]);
    if g.below(3) == 0 {
        let sf = g.coin();
        let bytes = if sf { 16 } else { 8 };
        let off = (128 + g.range(-4, 3) * bytes) as u64;
        let b = c.base(g, off);
        let pick_even = |c: &mut Case, g: &mut Rng| loop {
            let n = (g.below(15) * 2) as u8;
            if !c.reserved.contains(&n)
                && !c.reserved.contains(&(n + 1))
                && !c.touched.contains(&n)
                && !c.touched.contains(&(n + 1))
            {
                c.touched.push(n);
                c.touched.push(n + 1);
                c.reserved.push(n);
                c.reserved.push(n + 1);
                return n;
            }
        };
        let s = pick_even(c, g);
        let t = pick_even(c, g);
        if g.coin() {
            let es = (bytes / 2) as usize;
            let o = off as usize;
            let (v0, v1) = (c.scratch_u64(o, es), c.scratch_u64(o + es, es));
            c.set(s, v0 as i64);
            c.set(s + 1, v1 as i64);
        }
        c.emit(&format!(
            "casp{ord} {}, {}, {}, {}, [{b}]",
            r(sf, s),
            r(sf, s + 1),
            r(sf, t),
            r(sf, t + 1)
        ));
    } else {
        let size = g.below(4) as u32;
        let off = (128 + g.range(-8, 7) * 8) as u64;
        let b = c.base(g, off);
        let s = c.fresh(g);
        let t = c.reg(g);
        if g.coin() {
            let v = c.scratch_u64(off as usize, 1 << size);
            c.set(s, v as i64);
        }
        let sfx = ["b", "h", "", ""][size as usize];
        let reg_of = |n: u8| if size == 3 { x(n) } else { w(n) };
        c.emit(&format!(
            "cas{ord}{sfx} {}, {}, [{b}]",
            reg_of(s),
            reg_of(t)
        ));
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
