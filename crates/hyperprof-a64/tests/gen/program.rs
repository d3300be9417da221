//! The assembly text of the whole differential test program.

use super::{Case, SCRATCH};
use std::fmt::Write;

/// The whole test program: per case, load state, run the body, dump
/// X0..X30, SP and NZCV; at the end write the dump and scratch areas to
/// stdout and exit.
pub fn program(cases: &[Case]) -> String {
    let mut s = String::new();
    s.push_str("    .text\n    .global _start\n_start:\n");
    for c in cases {
        let i = c.idx;
        let _ = write!(
            s,
            "case_{i}:\n    adrp x0, init_{i}\n    add x0, x0, :lo12:init_{i}\n    ldr x1, [x0, #256]\n    msr nzcv, x1\n    ldr x1, [x0, #248]\n    mov sp, x1\n"
        );
        for k in (2..30).step_by(2) {
            let _ = writeln!(s, "    ldp x{k}, x{}, [x0, #{}]", k + 1, k * 8);
        }
        s.push_str("    ldr x30, [x0, #240]\n    ldp x0, x1, [x0]\n");
        s.push_str(&c.body);
        let _ = write!(s, "    msr tpidr_el0, x0\n    adrp x0, out_{i}\n    add x0, x0, :lo12:out_{i}\n    str x1, [x0, #8]\n");
        for k in (2..30).step_by(2) {
            let _ = writeln!(s, "    stp x{k}, x{}, [x0, #{}]", k + 1, k * 8);
        }
        s.push_str("    str x30, [x0, #240]\n    mov x1, sp\n    str x1, [x0, #248]\n    mrs x1, nzcv\n    str x1, [x0, #256]\n    mrs x1, tpidr_el0\n    str x1, [x0]\n");
    }
    let total = cases.len() * (272 + SCRATCH);
    let _ = write!(
        s,
        "    mov x0, #1\n    adrp x1, out_start\n    add x1, x1, :lo12:out_start\n    movz x2, #{}\n    movk x2, #{}, lsl #16\n    mov x8, #64\n    svc #0\n    mov x0, #0\n    mov x8, #93\n    svc #0\n",
        total & 0xffff,
        total >> 16
    );
    s.push_str("    .data\n    .balign 16\nout_start:\n");
    for c in cases {
        let _ = writeln!(s, "out_{}:\n    .skip 272", c.idx);
        let _ = write!(s, "scratch_{}:\n    .byte ", c.idx);
        let bytes: Vec<String> = c.scratch.iter().map(|b| b.to_string()).collect();
        s.push_str(&bytes.join(","));
        s.push('\n');
    }
    s.push_str("    .balign 16\n");
    for c in cases {
        let _ = writeln!(
            s,
            "init_{}:\n    .quad {}\n    .quad 0",
            c.idx,
            c.init.join(", ")
        );
    }
    s
}
