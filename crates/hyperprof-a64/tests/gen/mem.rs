//! Generators for the load/store classes.

use super::{r, w, x, Case, Rng};

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

pub(super) fn ldst_imm(c: &mut Case, g: &mut Rng) {
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

pub(super) fn ldst_reg_lit(c: &mut Case, g: &mut Rng) {
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

pub(super) fn pair(c: &mut Case, g: &mut Rng) {
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

pub(super) fn exclusive(c: &mut Case, g: &mut Rng) {
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

pub(super) fn atomic(c: &mut Case, g: &mut Rng) {
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

pub(super) fn cas(c: &mut Case, g: &mut Rng) {
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
