//! The functions of a guest image, read from its ELF symbol table: what
//! names the PCs a guest profiler sampled.
//!
//! Functions (STT_FUNC with a size) are taken as they are. Code labels
//! without a size (assembly entry points and vectors, STT_NOTYPE or a
//! size-0 STT_FUNC) extend to the next symbol or the end of their
//! section, so that every instruction of the image's text lies in a named
//! range. Mapping symbols (`$x`, `$d`) and symbols outside executable
//! sections are left out.

use hyperprof_sim::op::Symbol;
use thiserror::Error;

/// Why an image's symbols cannot be read. Each names the offending part.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SymbolsError {
    /// Not an ELF64 little-endian AArch64 file.
    #[error("not an ELF64 little-endian AArch64 image")]
    NotAarch64Elf,
    /// A header, table or string lies past the end of the file.
    #[error("{what} at {start:#x}..{end:#x} lies past the end of the {len:#x}-byte file")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Its first byte.
        start: u64,
        /// One past its last byte.
        end: u64,
        /// The file's length.
        len: u64,
    },
    /// The image has no symbol table (it was stripped).
    #[error("the image has no symbol table (.symtab): it was stripped")]
    NoSymtab,
    /// A symbol table entry size other than 24 or a bad string table link.
    #[error("malformed symbol table: {0}")]
    BadSymtab(&'static str),
}

/// What an image's symbol table says of its code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSymbols {
    /// Its functions, by start address.
    pub functions: Vec<Symbol>,
    /// Its executable sections' `[start, end)` address ranges.
    pub text: Vec<(u64, u64)>,
}

impl ImageSymbols {
    /// Whether `pc` lies in the image's executable sections.
    pub fn in_text(&self, pc: u64) -> bool {
        self.text.iter().any(|&(s, e)| s <= pc && pc < e)
    }
}

const SHT_SYMTAB: u32 = 2;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;
const STT_NOTYPE: u8 = 0;
const STT_FUNC: u8 = 2;
const SHN_LORESERVE: u16 = 0xff00;

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn slice(&self, what: &'static str, start: u64, len: u64) -> Result<&[u8], SymbolsError> {
        let end = start.checked_add(len);
        match end {
            Some(end) if end <= self.b.len() as u64 => Ok(&self.b[start as usize..end as usize]),
            _ => Err(SymbolsError::Truncated {
                what,
                start,
                end: end.unwrap_or(u64::MAX),
                len: self.b.len() as u64,
            }),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

#[derive(Clone, Copy)]
struct Section {
    ty: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
    entsize: u64,
}

/// A NUL-terminated name at `at` in `strtab` (lossy UTF-8; "" past its end).
fn name_at(strtab: &[u8], at: u32) -> String {
    let from = (at as usize).min(strtab.len());
    let rest = &strtab[from..];
    let len = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..len]).into_owned()
}

/// Reads the functions of the ELF64 AArch64 image `elf`.
pub fn image_symbols(elf: &[u8]) -> Result<ImageSymbols, SymbolsError> {
    let r = Reader { b: elf };
    let ehdr = r
        .slice("the ELF header", 0, 64)
        .map_err(|_| SymbolsError::NotAarch64Elf)?;
    if &ehdr[..4] != b"\x7fELF" || ehdr[4] != 2 || ehdr[5] != 1 || u16_at(ehdr, 18) != 183 {
        return Err(SymbolsError::NotAarch64Elf);
    }
    let shoff = u64_at(ehdr, 0x28);
    let shentsize = u64::from(u16_at(ehdr, 0x3a));
    let shnum = u64::from(u16_at(ehdr, 0x3c));
    if shnum > 0 && shentsize < 64 {
        return Err(SymbolsError::BadSymtab(
            "section header entries under 64 bytes",
        ));
    }
    let table = r.slice(
        "the section headers",
        shoff,
        shnum.saturating_mul(shentsize),
    )?;
    let sections: Vec<Section> = (0..shnum as usize)
        .map(|i| {
            let h = &table[i * shentsize as usize..];
            Section {
                ty: u32_at(h, 4),
                flags: u64_at(h, 8),
                addr: u64_at(h, 16),
                offset: u64_at(h, 24),
                size: u64_at(h, 32),
                link: u32_at(h, 40),
                entsize: u64_at(h, 56),
            }
        })
        .collect();
    let exec = |s: &Section| s.flags & (SHF_ALLOC | SHF_EXECINSTR) == SHF_ALLOC | SHF_EXECINSTR;
    let text: Vec<(u64, u64)> = sections
        .iter()
        .filter(|s| exec(s) && s.size > 0)
        .map(|s| (s.addr, s.addr.saturating_add(s.size)))
        .collect();
    let symtab = sections
        .iter()
        .find(|s| s.ty == SHT_SYMTAB)
        .ok_or(SymbolsError::NoSymtab)?;
    if symtab.entsize != 24 {
        return Err(SymbolsError::BadSymtab("entry size is not 24"));
    }
    let strsec = sections
        .get(symtab.link as usize)
        .ok_or(SymbolsError::BadSymtab(
            "its string table link names no section",
        ))?;
    let strtab = r.slice("the string table", strsec.offset, strsec.size)?;
    let syms = r.slice("the symbol table", symtab.offset, symtab.size)?;

    // (start, sized end, name, is a function)
    let mut found: Vec<(u64, Option<u64>, String, bool)> = Vec::new();
    for e in syms.chunks_exact(24) {
        let kind = e[4] & 0xf;
        let shndx = u16_at(e, 6);
        if !matches!(kind, STT_FUNC | STT_NOTYPE) || shndx == 0 || shndx >= SHN_LORESERVE {
            continue;
        }
        let Some(sec) = sections.get(usize::from(shndx)).filter(|s| exec(s)) else {
            continue;
        };
        let name = name_at(strtab, u32_at(e, 0));
        if name.is_empty() || name.starts_with('$') {
            continue;
        }
        let (value, size) = (u64_at(e, 8), u64_at(e, 16));
        let sec_end = sec.addr.saturating_add(sec.size);
        if value < sec.addr || value >= sec_end {
            continue;
        }
        let sized = (kind == STT_FUNC && size > 0).then(|| value.saturating_add(size).min(sec_end));
        found.push((value, sized, name, kind == STT_FUNC));
    }
    // By address; at one address, functions first, then by name.
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.3.cmp(&a.3)).then(a.2.cmp(&b.2)));
    let mut functions: Vec<Symbol> = Vec::new();
    for (i, (start, sized, name, _)) in found.iter().enumerate() {
        let end = match sized {
            Some(end) => *end,
            None => {
                // A label: up to the next symbol at a higher address, or the
                // end of the section that holds it.
                let sec_end = text
                    .iter()
                    .find(|&&(s, e)| s <= *start && *start < e)
                    .map_or(*start, |&(_, e)| e);
                found[i + 1..]
                    .iter()
                    .map(|f| f.0)
                    .find(|&a| a > *start)
                    .unwrap_or(sec_end)
                    .min(sec_end)
            }
        };
        // A label inside (or at the start of) a range already named adds
        // nothing.
        if end <= *start
            || functions
                .iter()
                .any(|f| f.start <= *start && *start < f.end && sized.is_none())
        {
            continue;
        }
        functions.push(Symbol {
            name: name.clone(),
            start: *start,
            end,
        });
    }
    Ok(ImageSymbols { functions, text })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF: .text at 0x1000 (0x100 bytes), .symtab, .strtab.
    fn elf(symbols: &[(&str, u8, u64, u64)]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24];
        for &(name, kind, value, size) in symbols {
            let at = strtab.len() as u32;
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
            let mut e = Vec::new();
            e.extend_from_slice(&at.to_le_bytes());
            e.push(0x10 | kind);
            e.push(0);
            e.extend_from_slice(&1u16.to_le_bytes());
            e.extend_from_slice(&value.to_le_bytes());
            e.extend_from_slice(&size.to_le_bytes());
            symtab.extend(e);
        }
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[18] = 183;
        let sym_off = f.len() as u64;
        f.extend(&symtab);
        let str_off = f.len() as u64;
        f.extend(&strtab);
        while f.len() % 8 != 0 {
            f.push(0);
        }
        let shoff = f.len() as u64;
        let sh = |ty: u32, flags: u64, addr: u64, off: u64, size: u64, link: u32, ent: u64| {
            let mut h = vec![0u8; 64];
            h[4..8].copy_from_slice(&ty.to_le_bytes());
            h[8..16].copy_from_slice(&flags.to_le_bytes());
            h[16..24].copy_from_slice(&addr.to_le_bytes());
            h[24..32].copy_from_slice(&off.to_le_bytes());
            h[32..40].copy_from_slice(&size.to_le_bytes());
            h[40..44].copy_from_slice(&link.to_le_bytes());
            h[56..64].copy_from_slice(&ent.to_le_bytes());
            h
        };
        f.extend(sh(0, 0, 0, 0, 0, 0, 0));
        f.extend(sh(8, 6, 0x1000, 0, 0x100, 0, 0));
        f.extend(sh(2, 0, 0, sym_off, symtab.len() as u64, 3, 24));
        f.extend(sh(3, 0, 0, str_off, strtab.len() as u64, 0, 0));
        f[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        f[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        f[0x3c..0x3e].copy_from_slice(&4u16.to_le_bytes());
        f
    }

    fn sym(name: &str, start: u64, end: u64) -> Symbol {
        Symbol {
            name: name.into(),
            start,
            end,
        }
    }

    #[test]
    fn functions_and_labels_cover_the_text() {
        let f = elf(&[
            ("_start", STT_NOTYPE, 0x1000, 0),
            ("$x", STT_NOTYPE, 0x1000, 0),
            ("vectors", STT_NOTYPE, 0x1040, 0),
            ("main", STT_FUNC, 0x1080, 0x20),
            ("inner", STT_NOTYPE, 0x1084, 0),
            ("tail", STT_NOTYPE, 0x10c0, 0),
            ("data", 1, 0x10c8, 8),
        ]);
        let s = image_symbols(&f).unwrap();
        assert_eq!(
            s.functions,
            vec![
                sym("_start", 0x1000, 0x1040),
                sym("vectors", 0x1040, 0x1080),
                sym("main", 0x1080, 0x10a0),
                sym("tail", 0x10c0, 0x1100),
            ]
        );
        assert_eq!(s.text, vec![(0x1000, 0x1100)]);
        assert!(s.in_text(0x10ff) && !s.in_text(0x1100));
    }

    #[test]
    fn bad_files_get_precise_errors() {
        assert_eq!(image_symbols(b"hello"), Err(SymbolsError::NotAarch64Elf));
        let mut f = elf(&[("main", STT_FUNC, 0x1000, 4)]);
        f[18] = 62;
        assert_eq!(image_symbols(&f), Err(SymbolsError::NotAarch64Elf));
        let f = elf(&[("main", STT_FUNC, 0x1000, 4)]);
        let cut = &f[..f.len() - 10];
        assert!(matches!(
            image_symbols(cut),
            Err(SymbolsError::Truncated { .. })
        ));
        let mut stripped = f.clone();
        // The symbol table's type becomes PROGBITS.
        let shoff = u64_at(&f, 0x28) as usize;
        stripped[shoff + 2 * 64 + 4] = 1;
        assert_eq!(image_symbols(&stripped), Err(SymbolsError::NoSymtab));
    }

    #[test]
    fn the_profiler_image_names_its_workloads() {
        let elf = include_bytes!("../../../../guests/images/profiler.elf");
        let s = image_symbols(elf).unwrap();
        for name in [
            "copy_words",
            "hash_lookup",
            "chase_pointers",
            "interpret",
            "bump_counter",
            "spe_irq",
            "vector_common",
        ] {
            assert!(s.functions.iter().any(|f| f.name == name), "{name} missing");
        }
        // Ranges do not overlap.
        for w in s.functions.windows(2) {
            assert!(w[0].end <= w[1].start, "{:?} overlaps {:?}", w[0], w[1]);
        }
    }
}
