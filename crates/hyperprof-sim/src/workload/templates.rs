//! The loop bodies of the built-in workloads, written slot by slot like the
//! AArch64 code a compiler would emit for them, with their outcome rules.
//!
//! Each builder takes the program's code address and a `standalone` flag:
//! standalone programs call a helper function (BL ... RET) so that their
//! profile shows two or more functions; the compact form (used by
//! [`Mix`](super::Mix)) inlines the helper so that each component is one
//! function.

use hyperprof_spe::packet::event as spe;

use super::engine::{key, mix, unit16, Addr, Builder, Effect, Inst, Loc, Program, Rule};
use crate::op::Symbol;

/// Data source of a refill served by the L2 cache (the value Arm Neoverse
/// cores report in the SPE data source packet).
pub const SOURCE_L2: u16 = 8;
/// Data source of a refill served by the last-level (system) cache.
pub const SOURCE_LLC: u16 = 11;
/// Data source of a refill served by DRAM.
pub const SOURCE_DRAM: u16 = 14;
/// Data source of a refill served by a peer core's cache (a line another
/// core held, typically modified): Neoverse N1's PEER-CPU.
pub const SOURCE_PEER_CORE: u16 = 9;

const L1D_REFILL: u64 = 1 << spe::L1D_REFILL;
const TLB_WALK: u64 = 1 << spe::TLB_WALK;
const LLC_ACCESS: u64 = 1 << spe::LLC_ACCESS;
const LLC_MISS: u64 = 1 << spe::LLC_MISS;
const NOT_TAKEN: u64 = 1 << spe::NOT_TAKEN;
const MISPREDICTED: u64 = 1 << spe::MISPREDICTED;

/// log2 of the iterations after which hash-based rules repeat.
const PERIOD_SHIFT: u32 = 12;

/// Cache lines per StreamCopy buffer (log2): 4 MiB each.
pub(crate) const COPY_LINES_LOG2: u32 = 16;
/// Elements of the ArraySum array (log2): 1 MiB of u64.
pub(crate) const ARRAY_LOG2: u32 = 17;
/// Nodes of the PointerChase list (log2).
pub(crate) const LIST_LOG2: u32 = 20;
/// Cache lines of the PointerChase node pool (log2): 256 MiB.
pub(crate) const POOL_LINES_LOG2: u32 = 22;
/// Bytes of Branchy bytecode (log2).
pub(crate) const BYTECODE_LOG2: u32 = 16;

const SRC_OFF: u64 = 0x0000_0000;
const DST_OFF: u64 = 0x0040_0000;
const ARRAY_OFF: u64 = 0x0100_0000;
const BYTECODE_OFF: u64 = 0x0200_0000;
const JUMP_TABLE_OFF: u64 = 0x0210_0000;
const POOL_OFF: u64 = 0x1000_0000;

/// Where a program's data lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Base of the data region (64 KiB aligned).
    pub data: u64,
    /// Address of the stack slot the Mix driver loads.
    pub stack: u64,
}

/// A symbol `[start, start + size)`.
pub(crate) fn sym(name: &str, start: u64, size: u64) -> Symbol {
    Symbol {
        name: name.to_string(),
        start,
        end: start + size,
    }
}

fn refill_l2(cycles: u32, latency: u16) -> Effect {
    Effect {
        bits: L1D_REFILL,
        cycles,
        latency,
        translation: 0,
        source: SOURCE_L2,
    }
}

fn llc_hit(cycles: u32, latency: u16) -> Effect {
    Effect {
        bits: LLC_ACCESS,
        cycles,
        latency,
        translation: 0,
        source: SOURCE_LLC,
    }
}

fn llc_miss(cycles: u32, latency: u16) -> Effect {
    Effect {
        bits: LLC_MISS,
        cycles,
        latency,
        translation: 0,
        source: SOURCE_DRAM,
    }
}

fn peer_hit(cycles: u32, latency: u16) -> Effect {
    Effect {
        bits: L1D_REFILL,
        cycles,
        latency,
        translation: 0,
        source: SOURCE_PEER_CORE,
    }
}

fn walk(cycles: u32, translation: u16) -> Effect {
    Effect {
        bits: TLB_WALK,
        cycles,
        latency: 0,
        translation,
        source: 0,
    }
}

/// A loop-closing branch falling through at the end of its loop: not taken
/// and mispredicted (the predictor expects another iteration).
fn loop_exit() -> Effect {
    Effect {
        bits: NOT_TAKEN | MISPREDICTED,
        cycles: 12,
        ..Effect::default()
    }
}

fn not_taken() -> Effect {
    Effect {
        bits: NOT_TAKEN,
        ..Effect::default()
    }
}

fn mispredict(cycles: u32) -> Effect {
    Effect {
        bits: MISPREDICTED,
        cycles,
        ..Effect::default()
    }
}

/// Probability `num / den` as a threshold out of 65536.
const fn chance(num: u32, den: u32) -> u32 {
    (num as u64 * 65536 / den as u64) as u32
}

/// StreamCopy: copies 64 bytes (one cache line of each buffer) per
/// iteration with eight LDR/STR pairs.
///
/// Standalone (functions `stream_copy`, `memcpy`): `bl memcpy`; 8 x (ldr,
/// str); add; add; ret; subs; b.ne — 22 operations. Compact (`memcpy`): the
/// copy loop alone, 20 operations.
///
/// Rules (iteration `i`, one line per stream): the first load and the first
/// store of each line refill L1D (every 8th access of each stream); every
/// 4th line's load and store access the LLC, every 16th line's load misses
/// it; every 64th line (a new 4 KiB page) walks the TLB on both streams; the
/// loop branch falls through (not taken, mispredicted) once per pass of
/// 2^16 lines.
pub(crate) fn stream_copy(
    seed: u64,
    lay: &Layout,
    code: u64,
    standalone: bool,
) -> (Program, Vec<Symbol>) {
    let lines_mask = (1u64 << COPY_LINES_LOG2) - 1;
    let src = lay.data + SRC_OFF;
    let dst = lay.data + DST_OFF;
    let mut b = Builder::new(seed, PERIOD_SHIFT);
    let driver = code;
    let memcpy = if standalone { code + 0x40 } else { code };
    if standalone {
        b.push(Inst::branch(driver, memcpy));
    }
    for k in 0..8u64 {
        let mut ld = Inst::load(
            memcpy + 8 * k,
            Addr::Linear {
                base: src + 8 * k,
                stride: 64,
                mask: lines_mask,
            },
        );
        let mut st = Inst::store(
            memcpy + 8 * k + 4,
            Addr::Linear {
                base: dst + 8 * k,
                stride: 64,
                mask: lines_mask,
            },
        );
        if k == 0 {
            ld = ld
                .when(Rule::Always, refill_l2(3, 10))
                .when(Rule::every(2, 0), llc_hit(6, 25))
                .when(Rule::every(4, 0), llc_miss(20, 120))
                .when(Rule::every(6, 0), walk(8, 24));
            st = st
                .when(Rule::Always, refill_l2(2, 4))
                .when(Rule::every(2, 0), llc_hit(3, 10))
                .when(Rule::every(6, 0), walk(8, 24));
        }
        b.push(ld);
        b.push(st);
    }
    b.push(Inst::other(memcpy + 0x40)); // add x1, x1, #64
    b.push(Inst::other(memcpy + 0x44)); // add x0, x0, #64
    let exit = Rule::every(COPY_LINES_LOG2, lines_mask);
    let symbols = if standalone {
        b.push(Inst::indirect(memcpy + 0x48, driver + 4)); // ret
        b.push(Inst::other(driver + 4)); // subs x2, x2, #1
        b.push(Inst::cond(driver + 8, driver).when(exit, loop_exit())); // b.ne
        vec![
            sym("stream_copy", driver, 0x10),
            sym("memcpy", memcpy, 0x4c),
        ]
    } else {
        b.push(Inst::other(memcpy + 0x48)); // subs x2, x2, #1
        b.push(Inst::cond(memcpy + 0x4c, memcpy).when(exit, loop_exit())); // b.ne
        vec![sym("memcpy", memcpy, 0x50)]
    };
    (b.build(), symbols)
}

/// ArraySum: sums an array of 2^17 u64 with an overflow-checked add.
///
/// Standalone (functions `sum_array`, `checked_add`): ldr; bl checked_add;
/// adds; b.vs; ret; add; cmp; b.lt — 8 operations. Compact (`sum_array`):
/// ldr; adds; b.vs; add; cmp; b.lt — 6 operations.
///
/// Rules (element `i`): the load refills L1D every 8th element (a new
/// line), accesses the LLC every 16th, misses it every 512th and walks the
/// TLB every 512th (a new page); the overflow branch is never taken; the
/// loop branch is taken except at the last element of each pass over the
/// array, where it falls through mispredicted.
pub(crate) fn array_sum(
    seed: u64,
    lay: &Layout,
    code: u64,
    standalone: bool,
) -> (Program, Vec<Symbol>) {
    let mask = (1u64 << ARRAY_LOG2) - 1;
    let mut b = Builder::new(seed, PERIOD_SHIFT);
    let sum = code;
    let helper = code + 0x40;
    let ld = Inst::load(
        sum,
        Addr::Linear {
            base: lay.data + ARRAY_OFF,
            stride: 8,
            mask,
        },
    )
    .when(Rule::every(3, 0), refill_l2(2, 9))
    .when(Rule::every(4, 0), llc_hit(5, 20))
    .when(Rule::every(9, 0), llc_miss(25, 130))
    .when(Rule::every(9, 0), walk(8, 20));
    b.push(ld);
    let exit = Rule::every(ARRAY_LOG2, mask);
    let symbols = if standalone {
        b.push(Inst::branch(sum + 4, helper)); // bl checked_add
        b.push(Inst::other(helper)); // adds x4, x4, x3
        b.push(Inst::cond(helper + 4, helper + 0xc).when(Rule::Always, not_taken())); // b.vs
        b.push(Inst::indirect(helper + 8, sum + 8)); // ret
        b.push(Inst::other(sum + 8)); // add x2, x2, #1
        b.push(Inst::other(sum + 0xc)); // cmp x2, x1
        b.push(Inst::cond(sum + 0x10, sum).when(exit, loop_exit())); // b.lt
        vec![
            sym("sum_array", sum, 0x14),
            sym("checked_add", helper, 0x10),
        ]
    } else {
        b.push(Inst::other(sum + 4)); // adds x4, x4, x3
        b.push(Inst::cond(sum + 8, sum + 0x18).when(Rule::Always, not_taken())); // b.vs
        b.push(Inst::other(sum + 0xc)); // add x2, x2, #1
        b.push(Inst::other(sum + 0x10)); // cmp x2, x1
        b.push(Inst::cond(sum + 0x14, sum).when(exit, loop_exit())); // b.lt
        vec![sym("sum_array", sum, 0x1c)]
    };
    (b.build(), symbols)
}

/// PointerChase: walks a linked list of 2^20 nodes scattered by hash over a
/// 256 MiB pool, comparing each node's key.
///
/// Standalone (functions `lookup`, `list_next`): bl list_next; ldr key;
/// ldr next; ret; cmp; cinc; cbnz — 7 operations. Compact (`hash_lookup`):
/// ldr key; ldr next; cmp; cinc; cbnz — 5 operations.
///
/// Rules: node `i` is at `pool + 64 * (hash(i mod 2^20) mod 2^22)`. The key
/// load (the first touch of the node's line) draws `u = hash(i mod 4096)`:
/// it refills L1D when `u < 0.85`, accesses the LLC when `u < 0.60`, misses
/// it when `u < 0.35` (nested, with long latencies: up to ~300 cycles), and
/// walks the TLB with an independent probability 0.40. The next-pointer
/// load hits (same line). The loop branch falls through, mispredicted, at
/// the end of the list.
pub(crate) fn pointer_chase(
    seed: u64,
    lay: &Layout,
    code: u64,
    standalone: bool,
) -> (Program, Vec<Symbol>) {
    let list_mask = (1u64 << LIST_LOG2) - 1;
    let mut b = Builder::new(seed, PERIOD_SHIFT);
    let node_key = key(seed, 0x0DE5);
    let node = |offset: u64| Addr::Hashed {
        base: lay.data + POOL_OFF + offset,
        key: node_key,
        iter_mask: list_mask,
        line_mask: (1u64 << POOL_LINES_LOG2) - 1,
    };
    let miss_key = key(seed, 0x0155);
    let walk_key = key(seed, 0x3A1C);
    let depth = move |i: u64| unit16(mix(miss_key, i));
    let l1 = b.pred(move |i| depth(i) < chance(85, 100));
    let llc = b.pred(move |i| depth(i) < chance(60, 100));
    let dram = b.pred(move |i| depth(i) < chance(35, 100));
    let tlb = b.pred(move |i| unit16(mix(walk_key, i)) < chance(40, 100));
    let (outer, body) = if standalone {
        (code, code + 0x40)
    } else {
        (code, code)
    };
    let key_load = Inst::load(body, node(8))
        .issue(2, 7)
        .exec_jitter(15)
        .when(l1, refill_l2(4, 12))
        .when(llc, llc_hit(15, 40))
        .when(dram, llc_miss(120, 250))
        .when(tlb, walk(20, 40));
    let next_load = Inst::load(body + 4, node(0));
    let exit = Rule::every(LIST_LOG2, list_mask);
    let symbols = if standalone {
        b.push(Inst::branch(outer, body)); // bl list_next
        b.push(key_load); // ldr x1, [x0, #8]
        b.push(next_load); // ldr x0, [x0]
        b.push(Inst::indirect(body + 8, outer + 4)); // ret
        b.push(Inst::other(outer + 4)); // cmp x1, x2
        b.push(Inst::other(outer + 8)); // cinc x3, x3, eq
        b.push(Inst::cond(outer + 0xc, outer).when(exit, loop_exit())); // cbnz x0
        vec![sym("lookup", outer, 0x10), sym("list_next", body, 0xc)]
    } else {
        b.push(key_load);
        b.push(next_load);
        b.push(Inst::other(body + 8)); // cmp x1, x2
        b.push(Inst::other(body + 0xc)); // cinc x3, x3, eq
        b.push(Inst::cond(body + 0x10, body).when(exit, loop_exit())); // cbnz x0
        vec![sym("hash_lookup", body, 0x14)]
    };
    (b.build(), symbols)
}

/// Names of the Branchy handlers (standalone form).
const HANDLERS: [&str; 3] = ["op_add", "op_cmp", "op_call"];

/// Branchy: a bytecode interpreter. Each iteration fetches an opcode,
/// bounds-checks it, dispatches through a jump table to one of three
/// handlers (chosen per iteration by hash, weights 50/30/20), and each
/// handler runs two if/else diamonds.
///
/// Standalone (functions `interpret`, `op_add`, `op_cmp`, `op_call`): the
/// dispatch is `blr` and the handlers return with `ret`. Compact
/// (`interpret`): the handlers are switch cases inside `interpret`,
/// dispatched with `br` and left with `b`. 17 operations either way, 8 of
/// them branches.
///
/// Rules (`h` = independent hashes of `i mod 4096`): the opcode load
/// streams through 64 KiB of bytecode (L1D refill every 64th byte, LLC
/// access every 512th, TLB walk every 4096th); the bounds check is never
/// taken; the dispatch is mispredicted when the handler differs from the
/// previous iteration's and a hash coin says so (about 31%); the first
/// diamond's branch is taken with probability 5/8 and mispredicted with
/// probability 3/16, the second taken with 3/4 and mispredicted with 1/16 —
/// a taken branch runs the out-of-line arm, whose PCs the next two
/// operations report; the loop branch falls through, mispredicted, at the
/// end of the bytecode.
pub(crate) fn branchy(
    seed: u64,
    lay: &Layout,
    code: u64,
    standalone: bool,
) -> (Program, Vec<Symbol>) {
    let mut b = Builder::new(seed, PERIOD_SHIFT);
    b.set_variants(key(seed, 0x7A51), &[50, 30, 20]);
    let interp = code;
    // Standalone, the handlers are functions after `interpret`; compact,
    // the same addresses are switch cases inside it.
    let handlers: Vec<u64> = (1..=3u64).map(|v| code + 0x40 * v).collect();
    let hv = |off: u64| Loc::PerVariant(handlers.iter().map(|h| h + off).collect());
    let bc_mask = (1u64 << BYTECODE_LOG2) - 1;
    let period = b.period();
    let variants: Vec<u8> = (0..period).map(|i| b.variant(i)).collect();
    let v_of = move |i: u64| variants.get(i as usize).copied().unwrap_or(0);
    let coin_key = key(seed, 0xC014);
    let dispatch_miss = b.pred(move |i| {
        let prev = (i + period - 1) % period;
        v_of(i) != v_of(prev) && unit16(mix(coin_key, i)) < chance(1, 2)
    });
    let hashed = |b: &mut Builder, salt: u64, p: u32, below: bool| {
        let k = key(seed, salt);
        b.pred(move |i| (unit16(mix(k, i)) < p) == below)
    };
    let d1_nt = hashed(&mut b, 0xD1A, chance(5, 8), false);
    let d1_mis = hashed(&mut b, 0xD1B, chance(3, 16), true);
    let d2_nt = hashed(&mut b, 0xD2A, chance(3, 4), false);
    let d2_mis = hashed(&mut b, 0xD2B, chance(1, 16), true);

    b.push(
        Inst::load(
            interp,
            Addr::Linear {
                base: lay.data + BYTECODE_OFF,
                stride: 1,
                mask: bc_mask,
            },
        )
        .when(Rule::every(6, 0), refill_l2(2, 9))
        .when(Rule::every(9, 0), llc_hit(5, 20))
        .when(Rule::every(12, 0), walk(8, 20)),
    ); // ldrb w1, [x0], #1
    b.push(Inst::other(interp + 4)); // cmp w1, #3
    b.push(Inst::cond(interp + 8, interp + 0x1c).when(Rule::Always, not_taken())); // b.hs
    b.push(Inst::load(
        interp + 0xc,
        Addr::PerVariant {
            base: lay.data + JUMP_TABLE_OFF,
            stride: 8,
        },
    )); // ldr x5, [x6, x1, lsl #3]
    b.push(Inst::indirect(interp + 0x10, hv(0)).when(dispatch_miss, mispredict(14))); // blr/br x5
    b.push(Inst::other(hv(0))); // and x3, x1, #0xf
    b.push(Inst::other(hv(4))); // tst x3, #1
    let d1 = b.push(
        Inst::cond(hv(8), hv(0x18))
            .when(d1_nt, not_taken())
            .when(d1_mis, mispredict(14)),
    ); // b.eq else1
    b.push(Inst::other(hv(0xc)).alt(d1, hv(0x18), Loc::Fixed(0))); // add / sub
    b.push(Inst::branch(hv(0x10), hv(0x20)).alt(d1, hv(0x1c), hv(0x20))); // b join1
    b.push(Inst::other(hv(0x20))); // cmp x2, x4
    let d2 = b.push(
        Inst::cond(hv(0x24), hv(0x34))
            .when(d2_nt, not_taken())
            .when(d2_mis, mispredict(14)),
    ); // b.gt else2
    b.push(Inst::other(hv(0x28)).alt(d2, hv(0x34), Loc::Fixed(0))); // eor / orr
    b.push(Inst::branch(hv(0x2c), hv(0x3c)).alt(d2, hv(0x38), hv(0x3c))); // b join2
    if standalone {
        b.push(Inst::indirect(hv(0x3c), interp + 0x14)); // ret
    } else {
        b.push(Inst::branch(hv(0x3c), interp + 0x14)); // b next
    }
    b.push(Inst::other(interp + 0x14)); // subs x9, x9, #1
    b.push(
        Inst::cond(interp + 0x18, interp).when(Rule::every(BYTECODE_LOG2, bc_mask), loop_exit()),
    ); // b.ne
    let symbols = if standalone {
        let mut s = vec![sym("interpret", interp, 0x20)];
        for (name, &h) in HANDLERS.iter().zip(&handlers) {
            s.push(sym(name, h, 0x40));
        }
        s
    } else {
        vec![sym("interpret", interp, 0x100)]
    };
    (b.build(), symbols)
}

/// The Mix driver `main`: ldr (stack); add; cmp; b.ne — 4 operations, the
/// branch falling through (mispredicted) every 16th iteration, at the end
/// of each of its phases.
/// Offset of the line of shared counters in the data region.
const COUNTERS_OFF: u64 = 0x0300_0000;

/// FalseSharing: a thread that bumps its own u64 counter, slot `slot` of a
/// cache line whose other slots the process's other threads bump: false
/// sharing. Its data region is the same for every thread (no per-seed
/// offset), so all threads' counters share the line.
///
/// Functions `worker`, `bump_counter`: bl bump_counter; ldr; add; str;
/// ret; subs; b.ne — 7 operations.
///
/// Rules (iteration `i`, `u = hash(i mod 4096)`): the load finds the line
/// taken by another core's store when `u < 0.50` and refills L1D from the
/// peer core (data source 9, about 60 cycles); the store refills it again
/// when `u < 0.20` (stolen between load and store); the loop branch falls
/// through, mispredicted, every 2^16 iterations.
pub(crate) fn false_sharing(
    seed: u64,
    lay: &Layout,
    code: u64,
    slot: u64,
) -> (Program, Vec<Symbol>) {
    let mut b = Builder::new(seed, PERIOD_SHIFT);
    let worker = code;
    let bump = code + 0x40;
    let counter = Addr::Fixed(lay.data + COUNTERS_OFF + 8 * (slot & 7));
    let steal_key = key(seed, 0xFA15);
    let stolen = move |i: u64| unit16(mix(steal_key, i));
    let load_miss = b.pred(move |i| stolen(i) < chance(50, 100));
    let store_miss = b.pred(move |i| stolen(i) < chance(20, 100));
    b.push(Inst::branch(worker, bump)); // bl bump_counter
    b.push(Inst::load(bump, counter).when(load_miss, peer_hit(30, 60))); // ldr x1, [x0]
    b.push(Inst::other(bump + 4)); // add x1, x1, #1
    b.push(Inst::store(bump + 8, counter).when(store_miss, peer_hit(20, 40))); // str x1, [x0]
    b.push(Inst::indirect(bump + 0xc, worker + 4)); // ret
    b.push(Inst::other(worker + 4)); // subs x2, x2, #1
    let exit = Rule::every(16, (1 << 16) - 1);
    b.push(Inst::cond(worker + 8, worker).when(exit, loop_exit())); // b.ne
    (
        b.build(),
        vec![sym("worker", worker, 0x10), sym("bump_counter", bump, 0x10)],
    )
}

pub(crate) fn mix_main(seed: u64, lay: &Layout, code: u64) -> (Program, Vec<Symbol>) {
    let mut b = Builder::new(seed, PERIOD_SHIFT);
    b.push(Inst::load(code, Addr::Fixed(lay.stack))); // ldr x0, [sp, #16]
    b.push(Inst::other(code + 4)); // add x19, x19, #1
    b.push(Inst::other(code + 8)); // cmp x19, x20
    b.push(Inst::cond(code + 0xc, code).when(Rule::every(4, 15), loop_exit())); // b.ne
    (b.build(), vec![sym("main", code, 0x10)])
}
