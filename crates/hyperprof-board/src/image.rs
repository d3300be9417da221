//! Guest images and where they go: the boot protocol of QEMU's `virt`
//! board as bare-metal test images (kvm-unit-tests) and Linux use it.
//!
//! - An ELF64 AArch64 image is loaded by its PT_LOAD program headers at
//!   their physical addresses (`p_paddr`, as QEMU's loader does), bytes past
//!   `p_filesz` up to `p_memsz` zeroed, and entered at `e_entry` (translated
//!   to a physical address through the segment that holds it).
//! - Anything else is a raw image (a flat binary, or an arm64 Linux `Image`)
//!   loaded at RAM + 0x80000 and entered at its first byte. An arm64 `Image`
//!   header (magic `ARM\x64` at byte 56) gives the bytes the image needs
//!   beyond the file (its `image_size`, for BSS).
//!
//! The device tree goes at the start of RAM when the image leaves room
//! there (QEMU's place for non-Linux ELF images), otherwise at the first
//! 2 MiB boundary past the image (the arm64 boot protocol wants it 8-byte
//! aligned, within 2 MiB and not overlapping the kernel).

use crate::map::{Region, RAW_IMAGE_OFFSET};
use thiserror::Error;

/// Why an image cannot be loaded. Each says what was wrong and where.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ImageError {
    /// The file is empty.
    #[error("the image is empty")]
    Empty,
    /// An ELF file that is not 64-bit little-endian AArch64.
    #[error("ELF image is not 64-bit little-endian AArch64 ({0})")]
    NotAarch64(&'static str),
    /// An ELF file that is neither an executable nor a shared object.
    #[error("ELF image type {0} is not EXEC (2) or DYN (3)")]
    ElfType(u16),
    /// A header or table extends past the end of the file.
    #[error(
        "ELF image is truncated: {what} needs bytes {start:#x}..{end:#x}, the file has {len:#x}"
    )]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// First byte needed.
        start: u64,
        /// One past the last byte needed.
        end: u64,
        /// The file's length.
        len: u64,
    },
    /// An ELF file with no PT_LOAD segment.
    #[error("ELF image has no loadable segment")]
    NoSegments,
    /// A segment whose file size exceeds its memory size.
    #[error("segment {index}: file size {filesz:#x} exceeds memory size {memsz:#x}")]
    SegmentSizes {
        /// The program header's index.
        index: usize,
        /// p_filesz.
        filesz: u64,
        /// p_memsz.
        memsz: u64,
    },
    /// A segment (or the raw image) that does not fit in RAM.
    #[error("{what} at {start:#x}..{end:#x} lies outside RAM {ram_start:#x}..{ram_end:#x}")]
    OutsideRam {
        /// Which part of the image.
        what: String,
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// First byte of RAM.
        ram_start: u64,
        /// One past the last byte of RAM.
        ram_end: u64,
    },
    /// Two segments that overlap.
    #[error("segments {0} and {1} overlap")]
    Overlap(usize, usize),
    /// An entry point outside every loaded segment.
    #[error("entry point {0:#x} is outside the loaded image")]
    EntryOutside(u64),
    /// No room for the device tree.
    #[error("no room in RAM for the {0}-byte device tree")]
    NoRoomForDtb(usize),
}

/// What kind of file the image was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    /// ELF64 AArch64.
    Elf,
    /// A flat binary (or an arm64 Linux `Image`).
    Raw,
}

/// Bytes to place in guest physical memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest physical address of the first byte.
    pub addr: u64,
    /// The bytes from the file.
    pub data: Vec<u8>,
    /// Bytes the segment occupies (≥ `data.len()`; the rest is zero).
    pub mem_size: u64,
}

impl Segment {
    /// The guest physical range the segment occupies.
    pub fn region(&self) -> Region {
        Region {
            base: self.addr,
            size: self.mem_size,
        }
    }
}

/// A loaded image: what to write into RAM and where to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// ELF or raw.
    pub kind: ImageKind,
    /// Guest physical address of the first instruction.
    pub entry: u64,
    /// The bytes to place, in ascending address order, none overlapping.
    pub segments: Vec<Segment>,
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";
const EM_AARCH64: u16 = 183;
const PT_LOAD: u32 = 1;
const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const ARM64_IMAGE_MAGIC: u32 = 0x644d_5241;
const DTB_ALIGN: u64 = 2 << 20;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn need(bytes: &[u8], what: &'static str, start: u64, len: u64) -> Result<(), ImageError> {
    let end = start.checked_add(len);
    match end {
        Some(end) if end <= bytes.len() as u64 => Ok(()),
        _ => Err(ImageError::Truncated {
            what,
            start,
            end: end.unwrap_or(u64::MAX),
            len: bytes.len() as u64,
        }),
    }
}

fn check_in_ram(what: impl Into<String>, r: Region, ram: Region) -> Result<(), ImageError> {
    let end = r.base.checked_add(r.size);
    match end {
        Some(end) if r.base >= ram.base && end <= ram.end() => Ok(()),
        _ => Err(ImageError::OutsideRam {
            what: what.into(),
            start: r.base,
            end: end.unwrap_or(u64::MAX),
            ram_start: ram.base,
            ram_end: ram.end(),
        }),
    }
}

/// Loads `bytes` for a board whose RAM is `ram`: an ELF image by its
/// program headers, anything else as a raw image at RAM + 0x80000.
pub fn load(bytes: &[u8], ram: Region) -> Result<Image, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    if bytes.starts_with(ELF_MAGIC) {
        load_elf(bytes, ram)
    } else {
        load_raw(bytes, ram)
    }
}

fn load_raw(bytes: &[u8], ram: Region) -> Result<Image, ImageError> {
    let addr = ram.base + RAW_IMAGE_OFFSET;
    let mut mem_size = bytes.len() as u64;
    if bytes.len() >= 64 && u32_at(bytes, 56) == ARM64_IMAGE_MAGIC {
        mem_size = mem_size.max(u64_at(bytes, 16));
    }
    let seg = Segment {
        addr,
        data: bytes.to_vec(),
        mem_size,
    };
    check_in_ram("the raw image", seg.region(), ram)?;
    Ok(Image {
        kind: ImageKind::Raw,
        entry: addr,
        segments: vec![seg],
    })
}

fn load_elf(bytes: &[u8], ram: Region) -> Result<Image, ImageError> {
    need(bytes, "the ELF header", 0, EHDR_SIZE)?;
    if bytes[4] != 2 {
        return Err(ImageError::NotAarch64("not ELFCLASS64"));
    }
    if bytes[5] != 1 {
        return Err(ImageError::NotAarch64("not little-endian"));
    }
    if u16_at(bytes, 18) != EM_AARCH64 {
        return Err(ImageError::NotAarch64("e_machine is not EM_AARCH64"));
    }
    let ty = u16_at(bytes, 16);
    if ty != 2 && ty != 3 {
        return Err(ImageError::ElfType(ty));
    }
    let entry = u64_at(bytes, 24);
    let phoff = u64_at(bytes, 32);
    let phentsize = u64::from(u16_at(bytes, 54));
    let phnum = u64::from(u16_at(bytes, 56));
    if phnum > 0 && phentsize < PHDR_SIZE {
        return Err(ImageError::Truncated {
            what: "a program header",
            start: phoff,
            end: phoff.saturating_add(PHDR_SIZE),
            len: bytes.len() as u64,
        });
    }
    need(bytes, "the program headers", phoff, phentsize * phnum)?;
    let mut segments: Vec<(usize, u64, Segment)> = Vec::new();
    for i in 0..phnum {
        let ph = (phoff + i * phentsize) as usize;
        if u32_at(bytes, ph) != PT_LOAD {
            continue;
        }
        let (offset, vaddr, paddr) = (
            u64_at(bytes, ph + 8),
            u64_at(bytes, ph + 16),
            u64_at(bytes, ph + 24),
        );
        let (filesz, memsz) = (u64_at(bytes, ph + 32), u64_at(bytes, ph + 40));
        let index = i as usize;
        if filesz > memsz {
            return Err(ImageError::SegmentSizes {
                index,
                filesz,
                memsz,
            });
        }
        if memsz == 0 {
            continue;
        }
        need(bytes, "a segment's bytes", offset, filesz)?;
        let seg = Segment {
            addr: paddr,
            data: bytes[offset as usize..(offset + filesz) as usize].to_vec(),
            mem_size: memsz,
        };
        check_in_ram(format!("segment {index}"), seg.region(), ram)?;
        segments.push((index, vaddr, seg));
    }
    if segments.is_empty() {
        return Err(ImageError::NoSegments);
    }
    segments.sort_by_key(|(_, _, s)| s.addr);
    for w in segments.windows(2) {
        if w[0].2.region().overlaps(&w[1].2.region()) {
            return Err(ImageError::Overlap(w[0].0, w[1].0));
        }
    }
    let entry_pa = segments
        .iter()
        .find(|(_, vaddr, s)| entry >= *vaddr && entry - vaddr < s.mem_size)
        .map(|(_, vaddr, s)| s.addr + (entry - vaddr))
        .ok_or(ImageError::EntryOutside(entry))?;
    Ok(Image {
        kind: ImageKind::Elf,
        entry: entry_pa,
        segments: segments.into_iter().map(|(_, _, s)| s).collect(),
    })
}

impl Image {
    /// The highest address the image occupies, plus one.
    pub fn end(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.region().end())
            .max()
            .unwrap_or(0)
    }

    /// Where the `dtb_len`-byte device tree goes in `ram`: at the start of
    /// RAM when the image leaves room there, else at the first 2 MiB
    /// boundary past the image.
    pub fn dtb_address(&self, dtb_len: usize, ram: Region) -> Result<u64, ImageError> {
        let dtb = |base| Region {
            base,
            size: dtb_len as u64,
        };
        let clear = |r: Region| !self.segments.iter().any(|s| s.region().overlaps(&r));
        if clear(dtb(ram.base)) && dtb(ram.base).end() <= ram.end() {
            return Ok(ram.base);
        }
        let past = self.end().div_ceil(DTB_ALIGN) * DTB_ALIGN;
        if past >= ram.base && dtb(past).end() <= ram.end() {
            Ok(past)
        } else {
            Err(ImageError::NoRoomForDtb(dtb_len))
        }
    }
}

#[cfg(test)]
mod tests;
