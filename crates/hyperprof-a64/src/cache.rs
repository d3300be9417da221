//! The predecoded basic-block cache, keyed by the physical address of the
//! block's first instruction, and a small fetch TLB (virtual page and EL to
//! physical page) in front of it.
//!
//! Blocks end at an instruction for which [`Insn::ends_block`] holds, at
//! [`BLOCK_MAX`] instructions, or at the end of a 4 KiB page. A store to a
//! physical page that holds cached code, IC IALLU/IALLUIS/IVAU, and
//! [`crate::Cpu::invalidate_code`] drop all blocks; TLBI, system register
//! writes the embedder handles and exception-level changes are covered by
//! the fetch TLB being flushed or keyed by EL.

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::insn::Insn;

/// Most instructions in one block.
pub const BLOCK_MAX: usize = 32;
/// Number of block slots (direct-mapped by physical address).
pub const BLOCKS: usize = 2048;
const TLB_ENTRIES: usize = 64;
const FILTER_BITS: usize = 4096;
const INVALID: u64 = u64::MAX;

pub(crate) struct Block {
    pub(crate) pa: u64,
    pub(crate) len: u32,
    pub(crate) insns: [Insn; BLOCK_MAX],
}

pub(crate) struct BlockCache {
    pub(crate) blocks: Box<[Block]>,
    tlb_tag: [u64; TLB_ENTRIES],
    tlb_pa: [u64; TLB_ENTRIES],
    code_pages: [u64; FILTER_BITS / 64],
    any_code: bool,
}

impl BlockCache {
    pub(crate) fn new_boxed() -> Box<BlockCache> {
        let mut blocks = Vec::with_capacity(BLOCKS);
        for _ in 0..BLOCKS {
            blocks.push(Block {
                pa: INVALID,
                len: 0,
                insns: [Insn::Undefined; BLOCK_MAX],
            });
        }
        Box::new(BlockCache {
            blocks: blocks.into_boxed_slice(),
            tlb_tag: [INVALID; TLB_ENTRIES],
            tlb_pa: [0; TLB_ENTRIES],
            code_pages: [0; FILTER_BITS / 64],
            any_code: false,
        })
    }

    #[inline(always)]
    pub(crate) fn slot(pa: u64) -> usize {
        (((pa >> 2) ^ (pa >> 13)) as usize) & (BLOCKS - 1)
    }

    #[inline(always)]
    fn tlb_key(va: u64, el: u8) -> (usize, u64) {
        let page = va >> 12;
        ((page as usize) & (TLB_ENTRIES - 1), (page << 1) | el as u64)
    }

    /// The cached physical address for fetching `va` at `el`.
    #[inline(always)]
    pub(crate) fn tlb_lookup(&self, va: u64, el: u8) -> Option<u64> {
        let (i, tag) = Self::tlb_key(va, el);
        if self.tlb_tag[i] == tag {
            Some(self.tlb_pa[i] | (va & 0xfff))
        } else {
            None
        }
    }

    pub(crate) fn tlb_fill(&mut self, va: u64, el: u8, pa: u64) {
        let (i, tag) = Self::tlb_key(va, el);
        self.tlb_tag[i] = tag;
        self.tlb_pa[i] = pa & !0xfff;
    }

    pub(crate) fn flush_tlb(&mut self) {
        self.tlb_tag = [INVALID; TLB_ENTRIES];
    }

    pub(crate) fn flush_blocks(&mut self) {
        if !self.any_code {
            return;
        }
        for b in self.blocks.iter_mut() {
            b.pa = INVALID;
        }
        self.code_pages = [0; FILTER_BITS / 64];
        self.any_code = false;
    }

    #[inline(always)]
    fn filter_bit(pa: u64) -> (usize, u64) {
        let p = (pa >> 12) as usize & (FILTER_BITS - 1);
        (p >> 6, 1u64 << (p & 63))
    }

    pub(crate) fn mark_code(&mut self, pa: u64) {
        let (w, b) = Self::filter_bit(pa);
        self.code_pages[w] |= b;
        self.any_code = true;
    }

    /// A store reached physical address `pa`: drop the blocks if the page
    /// may hold cached code.
    #[inline(always)]
    pub(crate) fn note_write(&mut self, pa: u64) {
        let (w, b) = Self::filter_bit(pa);
        if self.code_pages[w] & b != 0 {
            self.flush_blocks();
        }
    }
}
