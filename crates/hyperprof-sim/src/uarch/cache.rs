//! A set-associative cache with true LRU replacement, holding line
//! addresses and a coherence state per line. Deterministic: the same
//! accesses always give the same hits, misses and victims.

/// Geometry and hit latency of one cache level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheGeometry {
    /// Capacity in bytes (sets × ways × line size).
    pub size: u32,
    /// Associativity.
    pub ways: u16,
    /// Line size in bytes (a power of two).
    pub line: u16,
    /// Cycles from request to data on a hit.
    pub latency: u16,
}

impl CacheGeometry {
    /// Number of sets.
    pub fn sets(&self) -> u32 {
        self.size / (u32::from(self.ways) * u32::from(self.line))
    }

    /// Whether the geometry describes a cache: a power-of-two line and set
    /// count, at least one way.
    pub fn check(&self) -> Result<(), String> {
        if self.ways == 0 || !self.line.is_power_of_two() || self.line < 16 {
            return Err(format!(
                "ways must be at least 1 and the line a power of two of 16 bytes or more (ways {}, line {})",
                self.ways, self.line
            ));
        }
        let per_set = u32::from(self.ways) * u32::from(self.line);
        if self.size == 0 || self.size % per_set != 0 || !(self.size / per_set).is_power_of_two() {
            return Err(format!(
                "size {} is not a power-of-two number of sets of {} ways of {} bytes",
                self.size, self.ways, self.line
            ));
        }
        Ok(())
    }
}

/// Coherence state of a line in a private cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineState {
    /// Readable; other cores may hold it too.
    Shared,
    /// Writable without asking anyone (exclusive, possibly dirty).
    Modified,
}

/// A line evicted to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Victim {
    /// Its line address (byte address >> log2 line size).
    pub line: u64,
    /// Its state when evicted.
    pub state: LineState,
}

#[derive(Clone, Copy, Debug)]
struct Way {
    /// Line address + 1; 0 is an empty way.
    tag: u64,
    state: LineState,
    stamp: u32,
}

const EMPTY: Way = Way {
    tag: 0,
    state: LineState::Shared,
    stamp: 0,
};

/// One cache.
#[derive(Clone, Debug)]
pub struct Cache {
    geometry: CacheGeometry,
    ways: Vec<Way>,
    set_mask: u64,
    line_shift: u32,
    tick: u32,
}

impl Cache {
    /// An empty cache. The geometry must pass [`CacheGeometry::check`].
    pub fn new(geometry: CacheGeometry) -> Cache {
        let sets = geometry.sets().max(1);
        Cache {
            geometry,
            ways: vec![EMPTY; sets as usize * usize::from(geometry.ways)],
            set_mask: u64::from(sets) - 1,
            line_shift: geometry.line.trailing_zeros(),
            tick: 0,
        }
    }

    /// Its geometry.
    pub fn geometry(&self) -> CacheGeometry {
        self.geometry
    }

    /// The line address of byte address `pa`.
    #[inline]
    pub fn line_of(&self, pa: u64) -> u64 {
        pa >> self.line_shift
    }

    #[inline]
    fn set(&mut self, line: u64) -> &mut [Way] {
        let w = usize::from(self.geometry.ways);
        let s = (line & self.set_mask) as usize * w;
        &mut self.ways[s..s + w]
    }

    #[inline]
    fn next_stamp(&mut self) -> u32 {
        self.tick = self.tick.wrapping_add(1);
        if self.tick == 0 {
            // Renumber so that LRU order survives the wrap.
            for w in &mut self.ways {
                w.stamp = 0;
            }
            self.tick = 1;
        }
        self.tick
    }

    /// Looks `line` up; on a hit it becomes most recently used and its
    /// state is returned.
    #[inline]
    pub fn lookup(&mut self, line: u64) -> Option<LineState> {
        let stamp = self.next_stamp();
        let tag = line + 1;
        let set = self.set(line);
        for w in set.iter_mut() {
            if w.tag == tag {
                w.stamp = stamp;
                return Some(w.state);
            }
        }
        None
    }

    /// The state of `line` without touching the LRU order.
    pub fn probe(&self, line: u64) -> Option<LineState> {
        let w = usize::from(self.geometry.ways);
        let s = (line & self.set_mask) as usize * w;
        self.ways[s..s + w]
            .iter()
            .find(|x| x.tag == line + 1)
            .map(|x| x.state)
    }

    /// Inserts `line` (or updates its state) as most recently used, and
    /// returns the line it evicted, if any.
    pub fn fill(&mut self, line: u64, state: LineState) -> Option<Victim> {
        let stamp = self.next_stamp();
        let tag = line + 1;
        let set = self.set(line);
        if let Some(w) = set.iter_mut().find(|w| w.tag == tag) {
            w.state = state;
            w.stamp = stamp;
            return None;
        }
        let slot = set
            .iter_mut()
            .min_by_key(|w| {
                if w.tag == 0 {
                    0
                } else {
                    u64::from(w.stamp) + 1
                }
            })
            .expect("at least one way");
        let victim = (slot.tag != 0).then(|| Victim {
            line: slot.tag - 1,
            state: slot.state,
        });
        *slot = Way { tag, state, stamp };
        victim
    }

    /// Changes the state of `line` if present.
    pub fn set_state(&mut self, line: u64, state: LineState) {
        let tag = line + 1;
        if let Some(w) = self.set(line).iter_mut().find(|w| w.tag == tag) {
            w.state = state;
        }
    }

    /// Removes `line` if present; returns whether it was.
    pub fn invalidate(&mut self, line: u64) -> bool {
        let tag = line + 1;
        match self.set(line).iter_mut().find(|w| w.tag == tag) {
            Some(w) => {
                *w = EMPTY;
                true
            }
            None => false,
        }
    }

    /// Empties the cache.
    pub fn clear(&mut self) {
        self.ways.fill(EMPTY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Cache {
        // 2 sets x 2 ways x 64 bytes.
        Cache::new(CacheGeometry {
            size: 256,
            ways: 2,
            line: 64,
            latency: 1,
        })
    }

    #[test]
    fn lru_evicts_the_least_recently_used_way_of_the_set() {
        let mut c = small();
        assert_eq!(c.lookup(0), None);
        assert_eq!(c.fill(0, LineState::Shared), None);
        assert_eq!(c.fill(2, LineState::Shared), None);
        // Set 0 holds lines 0 and 2; touching 0 makes 2 the victim.
        assert_eq!(c.lookup(0), Some(LineState::Shared));
        assert_eq!(
            c.fill(4, LineState::Modified),
            Some(Victim {
                line: 2,
                state: LineState::Shared
            })
        );
        assert_eq!(c.probe(2), None);
        assert_eq!(c.probe(4), Some(LineState::Modified));
        // Set 1 is untouched by set 0's traffic.
        assert_eq!(c.fill(1, LineState::Shared), None);
        assert!(c.invalidate(1));
        assert!(!c.invalidate(1));
    }

    #[test]
    fn geometry_checks() {
        let g = |size, ways, line| CacheGeometry {
            size,
            ways,
            line,
            latency: 1,
        };
        assert!(g(64 << 10, 4, 64).check().is_ok());
        assert!(g(48 << 10, 4, 64).check().is_err());
        assert!(g(64 << 10, 0, 64).check().is_err());
        assert!(g(64 << 10, 4, 48).check().is_err());
        assert_eq!(g(64 << 10, 4, 64).sets(), 256);
    }
}
