//! Physical memory of the simulated machine.
//!
//! Models the physical address space seen by the PEs (Arm ARM B2 "The AArch64
//! Application Level Memory Model", and the external abort that an access to a
//! location with no memory behind it produces, Arm ARM D8 "Synchronous external
//! abort"). Memory is sparse: RAM regions are declared with [`PhysMem::add_ram`],
//! and storage for a 4 KiB page is only allocated on the first write to it, so a
//! machine with gigabytes of "RAM" costs only what is actually touched.
//!
//! Everything is kept in ordered maps, so iteration order (and therefore every
//! result derived from it) is deterministic.

use std::collections::BTreeMap;
use std::fmt;

/// Size of a translation granule and of a page of storage: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;

/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// Mask of the offset bits within a page.
const PAGE_MASK: u64 = PAGE_SIZE - 1;

/// An error from physical memory or from a frame allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// The access touches an address that is not in any RAM region. On the
    /// machine this is a synchronous external abort (Arm ARM D8, FSC 0b010000,
    /// or 0b0101nn when it happens on a translation table walk).
    NotRam {
        /// First address of the access that is not RAM.
        pa: u64,
    },
    /// An address that must be 4 KiB aligned is not.
    Unaligned {
        /// The offending address.
        addr: u64,
    },
    /// A size is zero, not a multiple of 4 KiB, or makes the range wrap
    /// around the end of the address space.
    BadSize {
        /// The offending size.
        size: u64,
    },
    /// A new RAM region overlaps an existing one.
    Overlap {
        /// Base of the rejected region.
        base: u64,
        /// Size of the rejected region.
        size: u64,
    },
    /// A frame allocator has no frame left.
    OutOfFrames,
    /// The address has no mapping in the address space used (for example an
    /// intermediate physical address with no valid stage-2 translation, see
    /// [`crate::mmu::GuestPhysMem`]).
    NotMapped {
        /// The unmapped address.
        addr: u64,
    },
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemError::NotRam { pa } => write!(f, "physical address {pa:#x} is not RAM"),
            MemError::Unaligned { addr } => {
                write!(f, "address {addr:#x} is not aligned to 4 KiB")
            }
            MemError::BadSize { size } => write!(
                f,
                "size {size:#x} is zero, not a multiple of 4 KiB, or wraps the address space"
            ),
            MemError::Overlap { base, size } => write!(
                f,
                "RAM region {base:#x}+{size:#x} overlaps an existing region"
            ),
            MemError::OutOfFrames => write!(f, "frame allocator is out of frames"),
            MemError::NotMapped { addr } => write!(f, "address {addr:#x} is not mapped"),
        }
    }
}

impl std::error::Error for MemError {}

/// One RAM region of the physical address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RamRegion {
    /// First physical address of the region (4 KiB aligned).
    pub base: u64,
    /// Size in bytes (a non-zero multiple of 4 KiB).
    pub size: u64,
}

/// Sparse physical memory: RAM regions plus 4 KiB pages of storage allocated
/// on first write.
///
/// Reads of RAM that was never written return zeros. Any access that touches
/// an address outside every RAM region fails with [`MemError::NotRam`] and has
/// no effect (writes are all-or-nothing). Multi-byte values are little endian,
/// as for data accesses with SCTLR_ELx.EE == 0 (Arm ARM B2.6 "Endian support").
#[derive(Clone, Default)]
pub struct PhysMem {
    /// RAM regions keyed by base address; the value is the end (exclusive).
    regions: BTreeMap<u64, u64>,
    /// Which frame of `frames` holds each page written so far, keyed by
    /// page number (PA >> 12).
    pages: BTreeMap<u64, u32>,
    /// Page storage; a [`FrameId`] indexes it.
    frames: Vec<Box<[u8; PAGE_SIZE as usize]>>,
    /// Frames released by [`PhysMem::zero_page`], for reuse.
    free: Vec<u32>,
    /// Bumped whenever a [`FrameId`] handed out may stop naming its page.
    generation: u64,
}

/// The storage of one RAM page, as [`PhysMem::frame`] hands it out: valid
/// while [`PhysMem::generation`] stays what it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameId(u32);

impl fmt::Debug for PhysMem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PhysMem")
            .field("ram_regions", &self.ram_regions().collect::<Vec<_>>())
            .field("touched_pages", &self.pages.len())
            .finish()
    }
}

impl PhysMem {
    /// An empty physical address space (no RAM at all).
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares `[base, base + size)` as RAM.
    ///
    /// `base` and `size` must be 4 KiB aligned, `size` non-zero, the range must
    /// not wrap, and it must not overlap an existing region (adjacent regions
    /// are fine).
    pub fn add_ram(&mut self, base: u64, size: u64) -> Result<(), MemError> {
        if base & PAGE_MASK != 0 {
            return Err(MemError::Unaligned { addr: base });
        }
        if size == 0 || size & PAGE_MASK != 0 {
            return Err(MemError::BadSize { size });
        }
        let end = base.checked_add(size).ok_or(MemError::BadSize { size })?;
        // The closest region starting below `end` is the only one that can overlap.
        if let Some((_, &prev_end)) = self.regions.range(..end).next_back() {
            if prev_end > base {
                return Err(MemError::Overlap { base, size });
            }
        }
        self.regions.insert(base, end);
        Ok(())
    }

    /// The RAM regions, in increasing address order.
    pub fn ram_regions(&self) -> impl Iterator<Item = RamRegion> + '_ {
        self.regions.iter().map(|(&base, &end)| RamRegion {
            base,
            size: end - base,
        })
    }

    /// Total bytes of RAM declared.
    pub fn ram_size(&self) -> u64 {
        self.regions
            .iter()
            .fold(0u64, |acc, (&base, &end)| acc.saturating_add(end - base))
    }

    /// Whether the byte at `pa` is RAM.
    pub fn is_ram(&self, pa: u64) -> bool {
        self.region_end(pa).is_some()
    }

    /// Number of 4 KiB pages of storage allocated (pages written at least once
    /// and not zeroed since), for memory accounting.
    pub fn touched_pages(&self) -> usize {
        self.pages.len()
    }

    /// End (exclusive) of the RAM region containing `pa`, if any.
    fn region_end(&self, pa: u64) -> Option<u64> {
        match self.regions.range(..=pa).next_back() {
            Some((_, &end)) if pa < end => Some(end),
            _ => None,
        }
    }

    /// Checks that every byte of `[pa, pa + len)` is RAM.
    fn check_range(&self, pa: u64, len: usize) -> Result<(), MemError> {
        let end = u128::from(pa) + len as u128;
        let mut cur = pa;
        while u128::from(cur) < end {
            match self.region_end(cur) {
                Some(region_end) => {
                    if u128::from(region_end) >= end {
                        return Ok(());
                    }
                    cur = region_end;
                }
                None => return Err(MemError::NotRam { pa: cur }),
            }
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes starting at `pa`. The access may cross pages
    /// and regions (as long as every byte is RAM). A zero-length read always
    /// succeeds.
    pub fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.check_range(pa, buf.len())?;
        let mut addr = pa;
        let mut done = 0usize;
        while done < buf.len() {
            let off = (addr & PAGE_MASK) as usize;
            let n = (PAGE_SIZE as usize - off).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.pages.get(&(addr >> PAGE_SHIFT)) {
                Some(&f) => dst.copy_from_slice(&self.frames[f as usize][off..off + n]),
                None => dst.fill(0),
            }
            done += n;
            // Cannot wrap: check_range proved every byte up to pa+len-1 is RAM
            // and RAM never contains the last page of the address space.
            addr = addr.wrapping_add(n as u64);
        }
        Ok(())
    }

    /// Writes `data` starting at `pa`. The access may cross pages and regions.
    /// All-or-nothing: if any byte is not RAM, nothing is written.
    pub fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        self.check_range(pa, data.len())?;
        let mut addr = pa;
        let mut done = 0usize;
        while done < data.len() {
            let off = (addr & PAGE_MASK) as usize;
            let n = (PAGE_SIZE as usize - off).min(data.len() - done);
            let f = self.storage(addr >> PAGE_SHIFT);
            self.frames[f as usize][off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
            addr = addr.wrapping_add(n as u64);
        }
        Ok(())
    }

    /// Reads a little-endian 64-bit value at `pa` (any alignment).
    pub fn read_u64(&self, pa: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian 64-bit value at `pa` (any alignment).
    pub fn write_u64(&mut self, pa: u64, val: u64) -> Result<(), MemError> {
        self.write(pa, &val.to_le_bytes())
    }

    /// Sets the 4 KiB page containing `pa` to zero, releasing its storage.
    pub fn zero_page(&mut self, pa: u64) -> Result<(), MemError> {
        let base = pa & !PAGE_MASK;
        if !self.is_ram(base) {
            return Err(MemError::NotRam { pa: base });
        }
        if let Some(f) = self.pages.remove(&(base >> PAGE_SHIFT)) {
            self.frames[f as usize].fill(0);
            self.free.push(f);
            self.generation += 1;
        }
        Ok(())
    }

    /// The frame holding page number `pfn`, allocated (zeroed) if needed.
    fn storage(&mut self, pfn: u64) -> u32 {
        if let Some(&f) = self.pages.get(&pfn) {
            return f;
        }
        let f = match self.free.pop() {
            Some(f) => f,
            None => {
                self.frames.push(Box::new([0u8; PAGE_SIZE as usize]));
                (self.frames.len() - 1) as u32
            }
        };
        self.pages.insert(pfn, f);
        f
    }

    /// The storage of the RAM page containing `pa`, allocated if it was
    /// never written: a handle for code that accesses the same pages over
    /// and over (an instruction set simulator's translation cache).
    pub fn frame(&mut self, pa: u64) -> Result<FrameId, MemError> {
        if !self.is_ram(pa & !PAGE_MASK) {
            return Err(MemError::NotRam { pa });
        }
        Ok(FrameId(self.storage(pa >> PAGE_SHIFT)))
    }

    /// The bytes of a frame [`PhysMem::frame`] handed out.
    #[inline]
    pub fn frame_bytes(&self, id: FrameId) -> &[u8; PAGE_SIZE as usize] {
        &self.frames[id.0 as usize]
    }

    /// The bytes of a frame, to write.
    #[inline]
    pub fn frame_bytes_mut(&mut self, id: FrameId) -> &mut [u8; PAGE_SIZE as usize] {
        &mut self.frames[id.0 as usize]
    }

    /// Changes whenever a [`FrameId`] handed out may have stopped naming
    /// its page (a page was released).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Memory that holds translation tables: the physical address space itself
/// ([`PhysMem`]) or a view of it through another translation (a guest's
/// intermediate physical address space, [`crate::mmu::GuestPhysMem`]).
///
/// Descriptor accesses are 64-bit little endian (Arm ARM D8 "The VMSAv8-64
/// translation table format", with SCTLR_ELx.EE == 0).
pub trait TableMemory {
    /// Reads the 64-bit value at `addr`.
    fn read_u64(&self, addr: u64) -> Result<u64, MemError>;
    /// Writes the 64-bit value at `addr`.
    fn write_u64(&mut self, addr: u64, val: u64) -> Result<(), MemError>;
    /// Sets the 4 KiB page containing `addr` to zero.
    fn zero_page(&mut self, addr: u64) -> Result<(), MemError>;
}

impl TableMemory for PhysMem {
    fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        PhysMem::read_u64(self, addr)
    }
    fn write_u64(&mut self, addr: u64, val: u64) -> Result<(), MemError> {
        PhysMem::write_u64(self, addr, val)
    }
    fn zero_page(&mut self, addr: u64) -> Result<(), MemError> {
        PhysMem::zero_page(self, addr)
    }
}

/// A bump allocator of 4 KiB frames inside a fixed address range, used for
/// translation table pages. Frames are never freed.
///
/// Every frame handed out is zeroed first through the memory passed to
/// [`FrameAllocator::alloc`] (a zeroed table is a table of invalid
/// descriptors). If the range is not backed by memory, `alloc` fails with the
/// memory's error and the allocator does not advance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameAllocator {
    base: u64,
    end: u64,
    next: u64,
}

impl FrameAllocator {
    /// An allocator handing out the frames of `[base, base + size)`.
    /// `base` and `size` must be 4 KiB aligned and `size` non-zero.
    pub fn new(base: u64, size: u64) -> Result<Self, MemError> {
        if base & PAGE_MASK != 0 {
            return Err(MemError::Unaligned { addr: base });
        }
        if size == 0 || size & PAGE_MASK != 0 {
            return Err(MemError::BadSize { size });
        }
        let end = base.checked_add(size).ok_or(MemError::BadSize { size })?;
        Ok(Self {
            base,
            end,
            next: base,
        })
    }

    /// Allocates one zeroed 4 KiB frame and returns its address.
    pub fn alloc<M: TableMemory + ?Sized>(&mut self, mem: &mut M) -> Result<u64, MemError> {
        self.alloc_contiguous(mem, 1)
    }

    /// Allocates `count` physically contiguous zeroed frames, aligned to
    /// `count.next_power_of_two()` frames (as concatenated translation tables
    /// require, Arm ARM D8 "Concatenated translation tables for the initial
    /// stage 2 lookup"), and returns the address of the first. Frames skipped
    /// for alignment are lost.
    pub fn alloc_contiguous<M: TableMemory + ?Sized>(
        &mut self,
        mem: &mut M,
        count: u64,
    ) -> Result<u64, MemError> {
        if count == 0 {
            return Err(MemError::BadSize { size: 0 });
        }
        let align = count
            .checked_next_power_of_two()
            .and_then(|a| a.checked_mul(PAGE_SIZE))
            .ok_or(MemError::OutOfFrames)?;
        let bytes = count.checked_mul(PAGE_SIZE).ok_or(MemError::OutOfFrames)?;
        let start = self
            .next
            .checked_add(align - 1)
            .map(|v| v & !(align - 1))
            .ok_or(MemError::OutOfFrames)?;
        let stop = start.checked_add(bytes).ok_or(MemError::OutOfFrames)?;
        if stop > self.end {
            return Err(MemError::OutOfFrames);
        }
        let mut frame = start;
        while frame < stop {
            mem.zero_page(frame)?;
            frame += PAGE_SIZE;
        }
        self.next = stop;
        Ok(start)
    }

    /// Number of frames handed out or skipped so far.
    pub fn used_frames(&self) -> u64 {
        (self.next - self.base) / PAGE_SIZE
    }

    /// Number of frames still available (ignoring alignment).
    pub fn free_frames(&self) -> u64 {
        (self.end - self.next) / PAGE_SIZE
    }

    /// The managed range as `(base, size)`.
    pub fn range(&self) -> (u64, u64) {
        (self.base, self.end - self.base)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn frames_name_page_storage_until_the_page_is_released() {
        let mut m = PhysMem::new();
        m.add_ram(0x4000_0000, 0x4000).unwrap();
        assert!(m.frame(0x1000).is_err());
        let f = m.frame(0x4000_1234).unwrap();
        assert_eq!(m.touched_pages(), 1);
        m.frame_bytes_mut(f)[0x234] = 0xab;
        assert_eq!(m.read_u64(0x4000_1234).unwrap() & 0xff, 0xab);
        m.write_u64(0x4000_1ff8, 7).unwrap();
        assert_eq!(m.frame_bytes(f)[0xff8], 7);
        assert_eq!(m.frame(0x4000_1000).unwrap(), f);
        let g = m.generation();
        m.zero_page(0x4000_1000).unwrap();
        assert_ne!(m.generation(), g);
        assert_eq!(m.read_u64(0x4000_1ff8).unwrap(), 0);
        // The released storage is reused, zeroed, for the next page.
        let f2 = m.frame(0x4000_2000).unwrap();
        assert_eq!(f2, f);
        assert_eq!(m.frame_bytes(f2)[0x234], 0);
    }

    use super::*;

    fn mem() -> PhysMem {
        let mut m = PhysMem::new();
        m.add_ram(0x1000_0000, 0x10_0000).unwrap();
        m
    }

    #[test]
    fn unwritten_ram_reads_zero_and_allocates_nothing() {
        let m = mem();
        let mut buf = [0xAAu8; 100];
        m.read(0x1000_0ff0, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(m.touched_pages(), 0);
    }

    #[test]
    fn write_read_across_pages() {
        let mut m = mem();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        m.write(0x1000_0ffd, &data).unwrap();
        assert_eq!(m.touched_pages(), 4);
        let mut back = vec![0u8; data.len()];
        m.read(0x1000_0ffd, &mut back).unwrap();
        assert_eq!(back, data);
        m.write_u64(0x1000_1ffc, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(m.read_u64(0x1000_1ffc).unwrap(), 0x0102_0304_0506_0708);
        let mut le = [0u8; 8];
        m.read(0x1000_1ffc, &mut le).unwrap();
        assert_eq!(le, [8, 7, 6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn not_ram_reports_first_bad_address() {
        let mut m = mem();
        assert_eq!(
            m.read_u64(0x0fff_fff8),
            Err(MemError::NotRam { pa: 0x0fff_fff8 })
        );
        // Straddles the end of the region: the first non-RAM byte is reported.
        assert_eq!(
            m.write_u64(0x1010_0000 - 4, 1),
            Err(MemError::NotRam { pa: 0x1010_0000 })
        );
        assert_eq!(
            m.read(u64::MAX - 3, &mut [0u8; 8]),
            Err(MemError::NotRam { pa: u64::MAX - 3 })
        );
        assert!(!m.is_ram(0x1010_0000));
        assert!(m.is_ram(0x100f_ffff));
        assert!(!m.is_ram(0x0fff_ffff));
    }

    #[test]
    fn writes_are_all_or_nothing() {
        let mut m = mem();
        m.write(0x1010_0000 - 16, &[0x55; 16]).unwrap();
        let before = m.touched_pages();
        let err = m.write(0x1010_0000 - 8, &[0xEE; 16]).unwrap_err();
        assert_eq!(err, MemError::NotRam { pa: 0x1010_0000 });
        let mut back = [0u8; 16];
        m.read(0x1010_0000 - 16, &mut back).unwrap();
        assert_eq!(back, [0x55; 16]);
        assert_eq!(m.touched_pages(), before);
    }

    #[test]
    fn adjacent_regions_form_one_range() {
        let mut m = mem();
        m.add_ram(0x1010_0000, 0x1000).unwrap();
        m.write(0x100f_fffc, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(m.read_u64(0x100f_fffc).unwrap(), 0x0807_0605_0403_0201);
        assert_eq!(m.ram_size(), 0x10_1000);
        let regions: Vec<_> = m.ram_regions().collect();
        assert_eq!(
            regions,
            vec![
                RamRegion {
                    base: 0x1000_0000,
                    size: 0x10_0000
                },
                RamRegion {
                    base: 0x1010_0000,
                    size: 0x1000
                }
            ]
        );
    }

    #[test]
    fn add_ram_rejects_bad_regions() {
        let mut m = mem();
        assert_eq!(
            m.add_ram(0x1000_0800, 0x1000),
            Err(MemError::Unaligned { addr: 0x1000_0800 })
        );
        assert_eq!(m.add_ram(0, 0), Err(MemError::BadSize { size: 0 }));
        assert_eq!(
            m.add_ram(0, 0x1800),
            Err(MemError::BadSize { size: 0x1800 })
        );
        assert_eq!(
            m.add_ram(0xffff_ffff_ffff_f000, 0x2000),
            Err(MemError::BadSize { size: 0x2000 })
        );
        // Overlaps at the start, in the middle and covering.
        for (b, s) in [
            (0x0fff_f000, 0x2000),
            (0x1008_0000, 0x1000),
            (0x0800_0000, 0x1000_0000),
        ] {
            assert_eq!(m.add_ram(b, s), Err(MemError::Overlap { base: b, size: s }));
        }
        assert_eq!(m.ram_regions().count(), 1);
    }

    #[test]
    fn zero_page_releases_storage() {
        let mut m = mem();
        m.write_u64(0x1000_2008, 42).unwrap();
        assert_eq!(m.touched_pages(), 1);
        m.zero_page(0x1000_2fff).unwrap();
        assert_eq!(m.touched_pages(), 0);
        assert_eq!(m.read_u64(0x1000_2008).unwrap(), 0);
        assert_eq!(m.zero_page(0), Err(MemError::NotRam { pa: 0 }));
    }

    #[test]
    fn frame_allocator_bumps_zeroes_and_runs_out() {
        let mut m = mem();
        m.write_u64(0x1000_1000, 0xdead).unwrap();
        let mut a = FrameAllocator::new(0x1000_0000, 0x4000).unwrap();
        assert_eq!(a.alloc(&mut m).unwrap(), 0x1000_0000);
        let f = a.alloc(&mut m).unwrap();
        assert_eq!(f, 0x1000_1000);
        assert_eq!(m.read_u64(f).unwrap(), 0, "frame must be zeroed");
        // Two frames aligned to 8 KiB: next is 0x1000_2000, already aligned.
        assert_eq!(a.alloc_contiguous(&mut m, 2).unwrap(), 0x1000_2000);
        assert_eq!(a.alloc(&mut m), Err(MemError::OutOfFrames));
        assert_eq!(a.used_frames(), 4);
        assert_eq!(a.free_frames(), 0);
    }

    #[test]
    fn frame_allocator_alignment_and_errors() {
        let mut m = mem();
        let mut a = FrameAllocator::new(0x1000_0000, 0x8000).unwrap();
        a.alloc(&mut m).unwrap();
        // Needs 8 KiB alignment: skips 0x1000_1000.
        assert_eq!(a.alloc_contiguous(&mut m, 2).unwrap(), 0x1000_2000);
        assert_eq!(
            a.alloc_contiguous(&mut m, 0),
            Err(MemError::BadSize { size: 0 })
        );
        assert_eq!(a.alloc_contiguous(&mut m, 8), Err(MemError::OutOfFrames));
        assert_eq!(a.alloc_contiguous(&mut m, 4).unwrap(), 0x1000_4000);
        assert_eq!(
            FrameAllocator::new(0x10, 0x1000),
            Err(MemError::Unaligned { addr: 0x10 })
        );
        assert_eq!(
            FrameAllocator::new(0, 0x10),
            Err(MemError::BadSize { size: 0x10 })
        );
        // A range that is not RAM: alloc fails and does not advance.
        let mut bad = FrameAllocator::new(0x2000_0000, 0x2000).unwrap();
        assert_eq!(bad.alloc(&mut m), Err(MemError::NotRam { pa: 0x2000_0000 }));
        assert_eq!(bad.used_frames(), 0);
    }

    #[test]
    fn errors_display() {
        let s = MemError::NotRam { pa: 0x1234 }.to_string();
        assert!(s.contains("0x1234"), "{s}");
        assert!(MemError::OutOfFrames.to_string().contains("out of frames"));
    }
}
