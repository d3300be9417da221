//! The built-in workloads: [`StreamCopy`], [`ArraySum`], [`PointerChase`],
//! [`Branchy`], [`Mix`] and [`FalseSharing`], each in user space or in a kernel range, and
//! [`by_name`] to pick one from a string.
//!
//! Every workload is a loop over a fixed template of operations (see the
//! `engine` module): the operation at any index is a pure function of the
//! seed and the index, and [`Workload::skip`] and [`Workload::ops_until`]
//! are closed forms costing `O(slots + conditions)` and
//! `O(log limit × (slots + conditions))`, independent of how many operations
//! they cover. A loop's last iteration falls through its loop-closing branch
//! (reported not taken) and the next operation is the loop's first again, as
//! if the enclosing loop, which the template does not model, re-entered it.

use super::engine::{key, Engine};
use super::templates::{self, Layout};
use super::Workload;
use crate::event::{Event, EventCounts};
use crate::op::{Op, Symbol};

/// The address space a workload's code and data are placed in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Space {
    /// User space (EL0): code at `0x0000_aaaa_xxxx_xxxx`, data at
    /// `0x0000_fffe_xxxx_xxxx`.
    #[default]
    User,
    /// A kernel range (EL1, or EL2 with VHE): code at
    /// `0xffff_8000_1xxx_xxxx`, data in the linear map at
    /// `0xffff_0000_cxxx_xxxx`.
    Kernel,
}

impl Space {
    /// Base of the code of all the built-in workloads.
    pub const fn code_base(self) -> u64 {
        match self {
            Space::User => 0x0000_aaaa_0000_0000,
            Space::Kernel => 0xffff_8000_1000_0000,
        }
    }

    /// Base of the data of all the built-in workloads (before the per-seed
    /// offset of up to 16 MiB).
    pub const fn data_base(self) -> u64 {
        match self {
            Space::User => 0x0000_fffe_0000_0000,
            Space::Kernel => 0xffff_0000_c000_0000,
        }
    }

    const fn stack_slot(self) -> u64 {
        match self {
            Space::User => 0x0000_ffff_ffff_e010,
            Space::Kernel => 0xffff_8000_0800_3f10,
        }
    }

    fn layout(self, seed: u64) -> Layout {
        Layout {
            data: self.data_base() + ((key(seed, 0xA5_1A) & 0xff) << 16),
            stack: self.stack_slot(),
        }
    }

    fn name(self, base: &str) -> String {
        match self {
            Space::User => base.to_string(),
            Space::Kernel => format!("kernel-{base}"),
        }
    }
}

const STREAM_COPY_CODE: u64 = 0x0010_0000;
const ARRAY_SUM_CODE: u64 = 0x0020_0000;
const POINTER_CHASE_CODE: u64 = 0x0030_0000;
const BRANCHY_CODE: u64 = 0x0040_0000;
const MIX_CODE: u64 = 0x0050_0000;
const FALSE_SHARING_CODE: u64 = 0x0060_0000;

/// Iterations of each component per Mix period, in order: `main`, `memcpy`,
/// `sum_array`, `hash_lookup`, `interpret`.
pub(crate) const MIX_REPS: [u64; 5] = [16, 400, 500, 800, 300];

fn build_stream_copy(seed: u64, space: Space) -> Engine {
    let code = space.code_base() + STREAM_COPY_CODE;
    let (program, symbols) = templates::stream_copy(seed, &space.layout(seed), code, true);
    Engine::single(space.name("stream-copy"), symbols, program)
}

fn build_array_sum(seed: u64, space: Space) -> Engine {
    let code = space.code_base() + ARRAY_SUM_CODE;
    let (program, symbols) = templates::array_sum(seed, &space.layout(seed), code, true);
    Engine::single(space.name("array-sum"), symbols, program)
}

fn build_pointer_chase(seed: u64, space: Space) -> Engine {
    let code = space.code_base() + POINTER_CHASE_CODE;
    let (program, symbols) = templates::pointer_chase(seed, &space.layout(seed), code, true);
    Engine::single(space.name("pointer-chase"), symbols, program)
}

fn build_branchy(seed: u64, space: Space) -> Engine {
    let code = space.code_base() + BRANCHY_CODE;
    let (program, symbols) = templates::branchy(seed, &space.layout(seed), code, true);
    Engine::single(space.name("branchy"), symbols, program)
}

fn build_mix(seed: u64, space: Space) -> Engine {
    let code = space.code_base() + MIX_CODE;
    let lay = space.layout(seed);
    let parts = [
        templates::mix_main(seed, &lay, code),
        templates::stream_copy(seed, &lay, code + 0x100, false),
        templates::array_sum(seed, &lay, code + 0x200, false),
        templates::pointer_chase(seed, &lay, code + 0x300, false),
        templates::branchy(seed, &lay, code + 0x400, false),
    ];
    let mut symbols = Vec::new();
    let mut phases = Vec::new();
    for ((program, syms), reps) in parts.into_iter().zip(MIX_REPS) {
        symbols.extend(syms);
        phases.push((program, reps));
    }
    Engine::phased(space.name("mix"), symbols, phases)
}

fn build_false_sharing(seed: u64, space: Space) -> Engine {
    let code = space.code_base() + FALSE_SHARING_CODE;
    // One data region for every thread: the counters share a line.
    let lay = Layout {
        data: space.data_base(),
        ..space.layout(seed)
    };
    let (program, symbols) = templates::false_sharing(seed, &lay, code, seed);
    Engine::single(space.name("false-sharing"), symbols, program)
}

macro_rules! workload {
    ($(#[$doc:meta])* $ty:ident, $build:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $ty {
            engine: Engine,
        }

        impl $ty {
            /// The workload in user space ([`Space::User`]), from `seed`.
            pub fn new(seed: u64) -> Self {
                Self::with_space(seed, Space::User)
            }

            /// The workload in a kernel range ([`Space::Kernel`]), from `seed`.
            pub fn kernel(seed: u64) -> Self {
                Self::with_space(seed, Space::Kernel)
            }

            /// The workload placed in `space`, from `seed`.
            pub fn with_space(seed: u64, space: Space) -> Self {
                Self {
                    engine: $build(seed, space),
                }
            }

            /// Operation number `index` of the stream (0 is the first), without
            /// moving the position: what the `index + 1`-th call of
            /// [`Workload::step`] on a new instance returns.
            pub fn op_at(&self, index: u128) -> Op {
                self.engine.op_at(index)
            }

            /// Number of operations stepped or skipped so far.
            pub fn position(&self) -> u128 {
                self.engine.position()
            }
        }

        impl Workload for $ty {
            fn name(&self) -> &str {
                self.engine.name()
            }

            fn symbols(&self) -> &[Symbol] {
                self.engine.symbols()
            }

            fn skip(&mut self, n: u64, counts: &mut EventCounts) {
                self.engine.skip(n, counts)
            }

            fn step(&mut self) -> Op {
                self.engine.step()
            }

            fn ops_until(&self, event: Event, k: u64, limit: u64) -> u64 {
                self.engine.ops_until(event, k, limit)
            }
        }
    };
}

workload!(
    /// A memcpy-like stream: `stream_copy` calls `memcpy`, which copies one
    /// 64-byte line of a 4 MiB source buffer to a 4 MiB destination with
    /// eight LDR/STR pairs (22 operations per line).
    ///
    /// Outcomes: the first load and store of each line refill L1D (every
    /// 8th access of each stream, data source L2); every 4th line accesses
    /// the LLC (both streams), every 16th line's load misses it (DRAM);
    /// every 64th line walks the TLB on both streams; the loop branch falls
    /// through, mispredicted, once per pass over the buffers (2^16 lines).
    StreamCopy,
    build_stream_copy
);

workload!(
    /// A reduction over a 1 MiB array of u64: `sum_array` loads each
    /// element and calls `checked_add` (ADDS + B.VS + RET); 8 operations per
    /// element.
    ///
    /// Outcomes: the load refills L1D every 8th element, accesses the LLC
    /// every 16th, misses it and walks the TLB every 512th; the overflow
    /// branch is never taken; the loop-closing branch is taken except at the
    /// last element of each outer pass over the array (2^17 elements), where
    /// it falls through mispredicted.
    ArraySum,
    build_array_sum
);

workload!(
    /// A linked-list walk over 2^20 nodes scattered by hash over a 256 MiB
    /// pool: `lookup` calls `list_next`, which loads the node's key and next
    /// pointer (7 operations per node).
    ///
    /// Outcomes of the key load (the first touch of the node), from a hash
    /// `u` of the node number modulo 4096: L1D refill when `u < 0.85`, LLC
    /// access when `u < 0.60`, LLC miss (DRAM, ~300 cycles of latency) when
    /// `u < 0.35`, and an independent TLB walk with probability 0.40; the
    /// next-pointer load hits the same line; the loop branch falls through,
    /// mispredicted, at the end of the list.
    PointerChase,
    build_pointer_chase
);

workload!(
    /// A bytecode interpreter: `interpret` fetches an opcode, bounds-checks
    /// it and calls one of three handlers `op_add`, `op_cmp`, `op_call`
    /// (weights 50/30/20, by hash) through a jump table; each handler runs
    /// two if/else diamonds. 17 operations per opcode, 8 of them branches.
    ///
    /// Outcomes: the opcode load refills L1D every 64th opcode; the bounds
    /// check is never taken; the indirect call is mispredicted when the
    /// handler changes and a hash coin says so (~31%); the diamonds' branches
    /// are taken with probability 5/8 and 3/4 and mispredicted with
    /// probability 3/16 and 1/16, a taken branch running the out-of-line arm
    /// (whose PCs the following operations report); the loop branch falls
    /// through, mispredicted, every 2^16 opcodes.
    Branchy,
    build_branchy
);

workload!(
    /// A process running several functions in fixed phases: per period of
    /// 20,164 operations, `main` (16 iterations of 4 operations), `memcpy`
    /// (400 lines of a StreamCopy loop, 20 operations each), `sum_array`
    /// (500 elements of an ArraySum loop, 6 each), `hash_lookup` (800 nodes
    /// of a PointerChase loop, 5 each) and `interpret` (300 opcodes of a
    /// Branchy switch interpreter, 17 each): shares of operations of about
    /// 0.3%, 40%, 15%, 20% and 25%. Each component keeps its own iteration
    /// count and follows its standalone outcome rules.
    Mix,
    build_mix
);

workload!(
    /// A thread bumping its own u64 counter in a cache line the other
    /// threads of its process (other seeds: slot `seed mod 8`) bump too:
    /// `worker` calls `bump_counter` (LDR, ADD, STR, RET); 7 operations.
    ///
    /// Outcomes: half the loads find the line taken by a peer core and
    /// refill L1D from it (data source 9, PEER-CPU on Neoverse N1), a fifth
    /// of the stores refill it again; the loop branch falls through,
    /// mispredicted, every 2^16 iterations.
    FalseSharing,
    build_false_sharing
);

/// The names [`by_name`] accepts: each workload in user space, then in a
/// kernel range.
pub const NAMES: [&str; 12] = [
    "stream-copy",
    "array-sum",
    "pointer-chase",
    "branchy",
    "mix",
    "false-sharing",
    "kernel-stream-copy",
    "kernel-array-sum",
    "kernel-pointer-chase",
    "kernel-branchy",
    "kernel-mix",
    "kernel-false-sharing",
];

/// The workload named `name` (one of [`NAMES`]) from `seed`, or `None`.
pub fn by_name(name: &str, seed: u64) -> Option<Box<dyn Workload>> {
    let (space, base) = match name.strip_prefix("kernel-") {
        Some(base) => (Space::Kernel, base),
        None => (Space::User, name),
    };
    let w: Box<dyn Workload> = match base {
        "stream-copy" => Box::new(StreamCopy::with_space(seed, space)),
        "array-sum" => Box::new(ArraySum::with_space(seed, space)),
        "pointer-chase" => Box::new(PointerChase::with_space(seed, space)),
        "branchy" => Box::new(Branchy::with_space(seed, space)),
        "mix" => Box::new(Mix::with_space(seed, space)),
        "false-sharing" => Box::new(FalseSharing::with_space(seed, space)),
        _ => return None,
    };
    Some(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in NAMES {
            let w = by_name(name, 1).expect(name);
            assert_eq!(w.name(), name);
        }
        assert!(by_name("nope", 1).is_none());
        assert!(by_name("kernel-", 1).is_none());
        assert!(by_name("kernel-kernel-mix", 1).is_none());
    }

    #[test]
    fn false_sharing_threads_share_one_line_and_peers_serve_it() {
        use crate::op::OpKind;
        let (a, b) = (FalseSharing::new(1), FalseSharing::new(2));
        let addr = |w: &FalseSharing| {
            (0..7)
                .map(|i| w.op_at(i))
                .find(|op| op.kind == OpKind::Load)
                .map(|op| op.data_va)
                .unwrap()
        };
        let (x, y) = (addr(&a), addr(&b));
        assert_ne!(x, y, "each thread its own counter");
        assert_eq!(x >> 6, y >> 6, "in one cache line");
        let peer = (0..7 * 4096u128)
            .map(|i| a.op_at(i))
            .filter(|op| op.data_source == super::super::SOURCE_PEER_CORE)
            .count();
        assert!((1500..3500).contains(&peer), "{peer}");
    }

    #[test]
    fn mix_period_is_as_documented() {
        let m = Mix::new(0);
        let mut total = 0;
        let slots = [4u64, 20, 6, 5, 17];
        for (r, s) in MIX_REPS.iter().zip(slots) {
            total += r * s;
        }
        assert_eq!(total, 20_164);
        let a = m.op_at(5);
        let b = m.op_at(5 + 20_164);
        assert_eq!(a.pc, b.pc);
        assert_eq!(m.symbols().len(), 5);
    }
}
