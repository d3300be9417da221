//! Call stacks of sampled instructions, read by the simulator from the
//! code's frame-pointer chain. SPE records carry no stack; when real code
//! keeps frame pointers (AAPCS64 frame records: X29 points at {previous
//! X29, return address}), the machine can walk the chain at the moment it
//! picks an instruction to sample, the way a profiler walks it in an
//! interrupt handler.
//!
//! The walk is bounded and never faults: it stops at a zero or misaligned
//! frame pointer, a frame that is not above the previous one (the stack
//! grows down, so callers' frames lie higher), a frame whose memory is not
//! readable through the code's translation regime, or [`MAX_FRAMES`].

/// The most callers one walk records.
pub const MAX_FRAMES: usize = 32;
/// The most stacks a [`StackLog`] keeps; later ones are counted as dropped.
pub const MAX_STACKS: usize = 1 << 18;

/// The stack of one sampled instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SampledStack {
    /// The sampled instruction's address.
    pub pc: u64,
    /// Return addresses of its callers, innermost first.
    pub callers: Vec<u64>,
}

/// The stacks of a code context's sampled instructions, in sampling order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackLog {
    stacks: Vec<SampledStack>,
    dropped: u64,
}

impl StackLog {
    /// Keeps `s`, or counts it as dropped once [`MAX_STACKS`] are kept.
    pub fn push(&mut self, s: SampledStack) {
        if self.stacks.len() < MAX_STACKS {
            self.stacks.push(s);
        } else {
            self.dropped += 1;
        }
    }

    /// Takes the stacks kept so far (the drop count stays).
    pub fn take(&mut self) -> Vec<SampledStack> {
        std::mem::take(&mut self.stacks)
    }

    /// Stacks not kept because the log was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// Walks the frame records from `fp`, reading memory with `read` (a
/// doubleword at an address, `None` when it cannot be read); returns the
/// return addresses found, innermost first.
pub fn walk_frames(mut fp: u64, mut read: impl FnMut(u64) -> Option<u64>) -> Vec<u64> {
    let mut callers = Vec::new();
    while callers.len() < MAX_FRAMES && fp != 0 && fp % 8 == 0 {
        let (Some(next), Some(ra)) = (read(fp), fp.checked_add(8).and_then(&mut read)) else {
            break;
        };
        if ra == 0 {
            break;
        }
        callers.push(ra);
        if next <= fp {
            break;
        }
        fp = next;
    }
    callers
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn memory(words: &[(u64, u64)]) -> impl FnMut(u64) -> Option<u64> {
        let m: HashMap<u64, u64> = words.iter().copied().collect();
        move |a| m.get(&a).copied()
    }

    #[test]
    fn a_chain_is_walked_to_its_end() {
        // leaf frame at 0x1000 -> 0x1100 -> 0x1200 (outermost, fp 0).
        let read = memory(&[
            (0x1000, 0x1100),
            (0x1008, 0xa0),
            (0x1100, 0x1200),
            (0x1108, 0xb0),
            (0x1200, 0),
            (0x1208, 0xc0),
        ]);
        assert_eq!(walk_frames(0x1000, read), vec![0xa0, 0xb0, 0xc0]);
    }

    #[test]
    fn bad_frames_stop_the_walk() {
        assert!(walk_frames(0, memory(&[])).is_empty());
        assert!(walk_frames(0x1004, memory(&[(0x1004, 0), (0x100c, 1)])).is_empty());
        // Unreadable: nothing.
        assert!(walk_frames(0x1000, memory(&[])).is_empty());
        // A loop (the next frame not above this one) ends after one.
        let looped = memory(&[(0x1000, 0x1000), (0x1008, 0xa0)]);
        assert_eq!(walk_frames(0x1000, looped), vec![0xa0]);
        // A chain into unreadable memory keeps what it found.
        let cut = memory(&[(0x1000, 0x9000), (0x1008, 0xa0)]);
        assert_eq!(walk_frames(0x1000, cut), vec![0xa0]);
        // At the top of an address space.
        assert!(walk_frames(u64::MAX - 7, |_| Some(1)).is_empty());
    }

    #[test]
    fn walks_and_logs_are_bounded() {
        let deep = |a: u64| Some(if a % 16 == 0 { a + 16 } else { 0xa0 });
        assert_eq!(walk_frames(0x1000, deep).len(), MAX_FRAMES);
        let mut log = StackLog::default();
        for _ in 0..MAX_STACKS + 3 {
            log.push(SampledStack {
                pc: 4,
                callers: Vec::new(),
            });
        }
        assert_eq!(log.dropped(), 3);
        assert_eq!(log.take().len(), MAX_STACKS);
        assert!(log.take().is_empty());
    }
}
