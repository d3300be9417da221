//! A branch predictor: two-bit saturating counters for conditional
//! branches, a branch target buffer for indirect branches and a return
//! stack for returns. Direct unconditional branches always predict right.

/// Size and penalty of the predictor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchConfig {
    /// Counters and BTB entries (a power of two).
    pub entries: u32,
    /// Return-stack depth.
    pub return_stack: u16,
    /// Cycles a misprediction costs.
    pub mispredict_penalty: u16,
}

/// What a retired branch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BranchInfo {
    /// B.cond, CBZ/CBNZ, TBZ/TBNZ.
    pub conditional: bool,
    /// BR, BLR, RET (and ERET).
    pub indirect: bool,
    /// Whether it was taken.
    pub taken: bool,
    /// Where it went when taken.
    pub target: u64,
    /// BL or BLR: pushes the return address.
    pub link: bool,
    /// RET: pops the return stack.
    pub is_return: bool,
}

/// The predictor of one core.
#[derive(Clone, Debug)]
pub struct Predictor {
    cfg: BranchConfig,
    counters: Vec<u8>,
    btb: Vec<(u64, u64)>,
    ras: Vec<u64>,
    mask: usize,
}

impl Predictor {
    /// A cold predictor (counters weakly not-taken, BTB and stack empty).
    pub fn new(cfg: BranchConfig) -> Predictor {
        let n = cfg.entries.max(1).next_power_of_two() as usize;
        Predictor {
            cfg,
            counters: vec![1; n],
            btb: vec![(u64::MAX, 0); n],
            ras: Vec::with_capacity(usize::from(cfg.return_stack)),
            mask: n - 1,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> BranchConfig {
        self.cfg
    }

    /// Predicts and trains on one retired branch at `pc`; returns whether
    /// it was mispredicted.
    #[inline]
    pub fn retire(&mut self, pc: u64, b: &BranchInfo) -> bool {
        let i = (pc >> 2) as usize & self.mask;
        let mut wrong = false;
        if b.conditional {
            let c = &mut self.counters[i];
            wrong = (*c >= 2) != b.taken;
            *c = if b.taken {
                (*c + 1).min(3)
            } else {
                c.saturating_sub(1)
            };
        }
        if b.is_return {
            let predicted = self.ras.pop();
            wrong |= predicted != Some(b.target);
        } else if b.indirect {
            let e = &mut self.btb[i];
            wrong |= *e != (pc, b.target);
            *e = (pc, b.target);
        }
        if b.link {
            if self.ras.len() == usize::from(self.cfg.return_stack) && !self.ras.is_empty() {
                self.ras.remove(0);
            }
            if self.cfg.return_stack > 0 {
                self.ras.push(pc + 4);
            }
        }
        wrong
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Predictor {
        Predictor::new(BranchConfig {
            entries: 64,
            return_stack: 4,
            mispredict_penalty: 10,
        })
    }

    fn cond(taken: bool) -> BranchInfo {
        BranchInfo {
            conditional: true,
            indirect: false,
            taken,
            target: 0x100,
            link: false,
            is_return: false,
        }
    }

    #[test]
    fn a_loop_branch_is_learnt() {
        let mut p = p();
        // Weakly not-taken: the first taken branch mispredicts, then it is learnt.
        assert!(p.retire(0x200, &cond(true)));
        assert!(!p.retire(0x200, &cond(true)));
        assert!(!p.retire(0x200, &cond(true)));
        // The loop exit mispredicts once.
        assert!(p.retire(0x200, &cond(false)));
    }

    #[test]
    fn calls_and_returns_pair_up_and_indirect_targets_are_remembered() {
        let mut p = p();
        let call = BranchInfo {
            conditional: false,
            indirect: false,
            taken: true,
            target: 0x1000,
            link: true,
            is_return: false,
        };
        let ret = |to| BranchInfo {
            conditional: false,
            indirect: true,
            taken: true,
            target: to,
            link: false,
            is_return: true,
        };
        assert!(!p.retire(0x400, &call));
        assert!(!p.retire(0x1010, &ret(0x404)));
        // An empty stack mispredicts.
        assert!(p.retire(0x1010, &ret(0x404)));
        let br = |to| BranchInfo {
            conditional: false,
            indirect: true,
            taken: true,
            target: to,
            link: false,
            is_return: false,
        };
        assert!(p.retire(0x500, &br(0x2000)));
        assert!(!p.retire(0x500, &br(0x2000)));
        assert!(p.retire(0x500, &br(0x3000)));
    }
}
