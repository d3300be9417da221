//! Symbol files: the smallest ELF perf resolves sampled PCs with. ELF64
//! little-endian, AArch64, ET_EXEC, no program headers; sections NULL,
//! `.text` (NOBITS at the code's runtime address), `.note.gnu.build-id`,
//! `.symtab` (one STT_FUNC GLOBAL symbol with its size per function),
//! `.strtab` and `.shstrtab`.
//!
//! perf matches a symbol's `st_value - sh_addr + sh_offset` against a
//! sample's `ip - map start + pgoff`, so the mapping that names this file
//! must start at `.text`'s address with pgoff [`TEXT_OFFSET`].

use hyperprof_sim::op::Symbol;
use hyperprof_spe::perf_data::profile::BUILD_ID_LEN;

/// `.text`'s sh_offset, and the pgoff of the mapping of it.
pub const TEXT_OFFSET: u64 = 0x1000;

const EHDR_LEN: usize = 64;
const SHDR_LEN: usize = 64;
const SYM_LEN: usize = 24;
const EM_AARCH64: u16 = 183;
const ET_EXEC: u16 = 2;
const SHT_PROGBITS: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const SHT_STRTAB: u32 = 3;
const SHT_NOTE: u32 = 7;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;
const SHF_EXECINSTR: u64 = 4;
const STB_GLOBAL: u8 = 1;
const STT_NOTYPE: u8 = 0;
const STT_FUNC: u8 = 2;
const NT_GNU_BUILD_ID: u32 = 3;
/// Section index of `.text`.
const TEXT_INDEX: u16 = 1;
const _: () = assert!(SHT_PROGBITS == 1);

/// A symbol file and what the perf.data records need to name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolFile {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Its GNU build id.
    pub build_id: [u8; BUILD_ID_LEN],
    /// First address of `.text`.
    pub text_start: u64,
    /// One past the last address of `.text`.
    pub text_end: u64,
}

/// A 20-byte id of `parts`: four lanes of a SplitMix64-style mix, fed
/// every byte; equal inputs give equal ids, so equal files share one.
pub fn build_id(parts: &[&[u8]]) -> [u8; BUILD_ID_LEN] {
    let mut lanes = [
        0x6a09_e667_f3bc_c908u64,
        0xbb67_ae85_84ca_a73b,
        0x3c6e_f372_fe94_f82b,
        0xa54f_f53a_5f1d_36f1,
    ];
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for part in parts {
        for chunk in part.chunks(8).chain(std::iter::once(&[0xffu8][..])) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            let w = u64::from_le_bytes(w) ^ (chunk.len() as u64) << 56;
            for (i, lane) in lanes.iter_mut().enumerate() {
                *lane = mix(*lane ^ w.rotate_left(13 * i as u32 + 1));
            }
        }
    }
    let mut id = [0u8; BUILD_ID_LEN];
    let mut bytes = lanes.iter().flat_map(|l| l.to_le_bytes());
    for b in id.iter_mut() {
        *b = bytes.next().unwrap_or(0);
    }
    id
}

fn push16(v: &mut Vec<u8>, x: u16) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn push32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn push64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}
fn align(v: &mut Vec<u8>, to: usize) {
    while v.len() % to != 0 {
        v.push(0);
    }
}

struct Section {
    name: u32,
    ty: u32,
    flags: u64,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
    info: u32,
    align: u64,
    entsize: u64,
}

/// The symbol file of `symbols` (functions with `[start, end)` ranges),
/// identified by `name`. With `kernel`, a `_text` label marks the start of
/// `.text` as a kernel image has it.
pub fn symbol_file(name: &str, symbols: &[Symbol], kernel: bool) -> SymbolFile {
    let text_start = symbols.iter().map(|s| s.start).min().unwrap_or(0) & !0xfff;
    let text_end = symbols.iter().map(|s| s.end).max().unwrap_or(text_start);
    let text_end = text_end.max(text_start + 4);

    let mut strtab = vec![0u8];
    let mut syms: Vec<(u32, u8, u64, u64)> = Vec::new();
    let mut add = |strtab: &mut Vec<u8>, n: &str, kind: u8, value: u64, size: u64| {
        let at = strtab.len() as u32;
        strtab.extend_from_slice(n.as_bytes());
        strtab.push(0);
        syms.push((at, kind, value, size));
    };
    if kernel {
        add(&mut strtab, "_text", STT_NOTYPE, text_start, 0);
    }
    for s in symbols {
        add(&mut strtab, &s.name, STT_FUNC, s.start, s.end - s.start);
    }

    let mut id_input: Vec<u8> = Vec::new();
    for &(at, kind, value, size) in &syms {
        id_input.extend_from_slice(&at.to_le_bytes());
        id_input.push(kind);
        id_input.extend_from_slice(&value.to_le_bytes());
        id_input.extend_from_slice(&size.to_le_bytes());
    }
    let id = build_id(&[name.as_bytes(), &strtab, &id_input, &[u8::from(kernel)]]);

    let shstrtab_names = [
        "",
        ".text",
        ".note.gnu.build-id",
        ".symtab",
        ".strtab",
        ".shstrtab",
    ];
    let mut shstrtab = Vec::new();
    let mut name_at = Vec::new();
    for n in shstrtab_names {
        name_at.push(shstrtab.len() as u32);
        shstrtab.extend_from_slice(n.as_bytes());
        shstrtab.push(0);
    }

    let mut f = vec![0u8; EHDR_LEN];
    let note_at = f.len();
    push32(&mut f, 4);
    push32(&mut f, BUILD_ID_LEN as u32);
    push32(&mut f, NT_GNU_BUILD_ID);
    f.extend_from_slice(b"GNU\0");
    f.extend_from_slice(&id);
    let note_len = f.len() - note_at;
    align(&mut f, 8);
    let symtab_at = f.len();
    f.extend_from_slice(&[0u8; SYM_LEN]);
    for &(at, kind, value, size) in &syms {
        push32(&mut f, at);
        f.push(STB_GLOBAL << 4 | kind);
        f.push(0);
        push16(&mut f, TEXT_INDEX);
        push64(&mut f, value);
        push64(&mut f, size);
    }
    let symtab_len = f.len() - symtab_at;
    let strtab_at = f.len();
    f.extend_from_slice(&strtab);
    let shstrtab_at = f.len();
    f.extend_from_slice(&shstrtab);
    align(&mut f, 8);
    let shoff = f.len();

    let sections = [
        Section {
            name: name_at[0],
            ty: 0,
            flags: 0,
            addr: 0,
            offset: 0,
            size: 0,
            link: 0,
            info: 0,
            align: 0,
            entsize: 0,
        },
        Section {
            name: name_at[1],
            ty: SHT_NOBITS,
            flags: SHF_ALLOC | SHF_EXECINSTR,
            addr: text_start,
            offset: TEXT_OFFSET,
            size: text_end - text_start,
            link: 0,
            info: 0,
            align: 4,
            entsize: 0,
        },
        Section {
            name: name_at[2],
            ty: SHT_NOTE,
            flags: SHF_ALLOC,
            addr: 0,
            offset: note_at as u64,
            size: note_len as u64,
            link: 0,
            info: 0,
            align: 4,
            entsize: 0,
        },
        Section {
            name: name_at[3],
            ty: SHT_SYMTAB,
            flags: 0,
            addr: 0,
            offset: symtab_at as u64,
            size: symtab_len as u64,
            link: 4,
            info: 1, // one local symbol: the null one
            align: 8,
            entsize: SYM_LEN as u64,
        },
        Section {
            name: name_at[4],
            ty: SHT_STRTAB,
            flags: 0,
            addr: 0,
            offset: strtab_at as u64,
            size: strtab.len() as u64,
            link: 0,
            info: 0,
            align: 1,
            entsize: 0,
        },
        Section {
            name: name_at[5],
            ty: SHT_STRTAB,
            flags: 0,
            addr: 0,
            offset: shstrtab_at as u64,
            size: shstrtab.len() as u64,
            link: 0,
            info: 0,
            align: 1,
            entsize: 0,
        },
    ];
    for s in &sections {
        push32(&mut f, s.name);
        push32(&mut f, s.ty);
        push64(&mut f, s.flags);
        push64(&mut f, s.addr);
        push64(&mut f, s.offset);
        push64(&mut f, s.size);
        push32(&mut f, s.link);
        push32(&mut f, s.info);
        push64(&mut f, s.align);
        push64(&mut f, s.entsize);
    }

    let mut h = Vec::with_capacity(EHDR_LEN);
    h.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    h.extend_from_slice(&[0u8; 8]);
    push16(&mut h, ET_EXEC);
    push16(&mut h, EM_AARCH64);
    push32(&mut h, 1); // EV_CURRENT
    push64(&mut h, text_start); // e_entry
    push64(&mut h, 0); // e_phoff
    push64(&mut h, shoff as u64);
    push32(&mut h, 0); // e_flags
    push16(&mut h, EHDR_LEN as u16);
    push16(&mut h, 56); // e_phentsize
    push16(&mut h, 0); // e_phnum
    push16(&mut h, SHDR_LEN as u16);
    push16(&mut h, sections.len() as u16);
    push16(&mut h, 5); // e_shstrndx
    f[..EHDR_LEN].copy_from_slice(&h);

    SymbolFile {
        bytes: f,
        build_id: id,
        text_start,
        text_end,
    }
}

/// The build id and functions (STT_FUNC symbols with a size) of a
/// little-endian ELF64 file, or `None` when it is not one or has neither.
/// Any bytes are accepted: a damaged file gives `None`.
pub fn read_symbols(elf: &[u8]) -> Option<(Vec<u8>, Vec<Symbol>)> {
    let (id, symbols) = read_elf(elf)?;
    Some((id?, symbols))
}

/// The functions (STT_FUNC symbols with a size) of a little-endian ELF64
/// file, with or without a build id (a guest image has none); `None` when
/// it is not one. Any bytes are accepted.
pub fn read_functions(elf: &[u8]) -> Option<Vec<Symbol>> {
    read_elf(elf).map(|(_, symbols)| symbols)
}

/// The build id (if any) and functions of an ELF64 file.
fn read_elf(elf: &[u8]) -> Option<(Option<Vec<u8>>, Vec<Symbol>)> {
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_le_bytes(
            elf.get(at..at.checked_add(2)?)?.try_into().ok()?,
        ))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            elf.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            elf.get(at..at.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    if elf.get(..6)? != [0x7f, b'E', b'L', b'F', 2, 1] {
        return None;
    }
    let shoff = usize::try_from(u64_at(40)?).ok()?;
    let shentsize = usize::from(u16_at(58)?);
    let shnum = usize::from(u16_at(60)?);
    if shentsize < SHDR_LEN {
        return None;
    }
    let section = |i: usize| -> Option<(u32, usize, usize, u32)> {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let ty = u32_at(at + 4)?;
        let offset = usize::try_from(u64_at(at + 24)?).ok()?;
        let size = usize::try_from(u64_at(at + 32)?).ok()?;
        let link = u32_at(at + 40)?;
        Some((ty, offset, size, link))
    };
    let bytes_of = |offset: usize, size: usize| elf.get(offset..offset.checked_add(size)?);
    let mut id = None;
    let mut symbols = Vec::new();
    for i in 0..shnum {
        let (ty, offset, size, link) = section(i)?;
        if ty == SHT_NOTE {
            let note = bytes_of(offset, size)?;
            let namesz = u32::from_le_bytes(note.get(..4)?.try_into().ok()?) as usize;
            let descsz = u32::from_le_bytes(note.get(4..8)?.try_into().ok()?) as usize;
            let nt = u32::from_le_bytes(note.get(8..12)?.try_into().ok()?);
            let desc_at = 12 + namesz.checked_add(3)? / 4 * 4;
            if nt == NT_GNU_BUILD_ID && note.get(12..16) == Some(b"GNU\0") {
                id = Some(note.get(desc_at..desc_at.checked_add(descsz)?)?.to_vec());
            }
        } else if ty == SHT_SYMTAB {
            let (_, str_off, str_size, _) = section(link as usize)?;
            let strtab = bytes_of(str_off, str_size)?;
            for sym in bytes_of(offset, size)?.chunks_exact(SYM_LEN) {
                let name_at = u32::from_le_bytes(sym[..4].try_into().ok()?) as usize;
                let value = u64::from_le_bytes(sym[8..16].try_into().ok()?);
                let len = u64::from_le_bytes(sym[16..24].try_into().ok()?);
                if sym[4] & 0xf != STT_FUNC || len == 0 {
                    continue;
                }
                let name = strtab.get(name_at..)?;
                let name = &name[..name.iter().position(|&b| b == 0)?];
                symbols.push(Symbol {
                    name: String::from_utf8_lossy(name).into_owned(),
                    start: value,
                    end: value.saturating_add(len),
                });
            }
        }
    }
    Some((id, symbols))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(name: &str, start: u64, end: u64) -> Symbol {
        Symbol {
            name: name.into(),
            start,
            end,
        }
    }

    #[test]
    fn layout_and_build_id_note() {
        let f = symbol_file(
            "mix",
            &[sym("main", 0xaaaa_0050_0000, 0xaaaa_0050_0040)],
            false,
        );
        let b = &f.bytes;
        assert_eq!(&b[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([b[18], b[19]]), EM_AARCH64);
        assert_eq!(&b[EHDR_LEN + 12..EHDR_LEN + 16], b"GNU\0");
        assert_eq!(&b[EHDR_LEN + 16..EHDR_LEN + 36], &f.build_id);
        assert_eq!(f.text_start, 0xaaaa_0050_0000);
        assert_eq!(f.text_end, 0xaaaa_0050_0040);
        let shoff = u64::from_le_bytes(b[40..48].try_into().unwrap()) as usize;
        assert_eq!(shoff + 6 * SHDR_LEN, b.len());
        // .symtab: the null symbol and main, sized.
        let symtab = &b[shoff + 3 * SHDR_LEN..shoff + 4 * SHDR_LEN];
        assert_eq!(u64::from_le_bytes(symtab[32..40].try_into().unwrap()), 48);
    }

    #[test]
    fn symbol_files_read_back_and_damaged_ones_do_not_panic() {
        let syms = [sym("main", 0x1000, 0x1040), sym("work", 0x1040, 0x1100)];
        let f = symbol_file("w", &syms, true);
        let (id, back) = read_symbols(&f.bytes).unwrap();
        assert_eq!(id, f.build_id);
        assert_eq!(back, syms);
        for cut in 0..f.bytes.len() {
            let _ = read_symbols(&f.bytes[..cut]);
        }
        let mut b = f.bytes.clone();
        for i in (0..b.len()).step_by(7) {
            b[i] ^= 0xa5;
            let _ = read_symbols(&b);
        }
        assert!(read_symbols(b"not an elf").is_none());
    }

    #[test]
    fn build_ids_follow_contents() {
        let a = symbol_file("mix", &[sym("main", 0x1000, 0x1040)], false);
        let b = symbol_file("mix", &[sym("main", 0x1000, 0x1040)], false);
        let c = symbol_file("mix", &[sym("main", 0x1000, 0x1044)], false);
        let k = symbol_file("mix", &[sym("main", 0x1000, 0x1040)], true);
        assert_eq!(a, b);
        assert_ne!(a.build_id, c.build_id);
        assert_ne!(a.build_id, k.build_id);
        assert_ne!(build_id(&[b"ab", b"c"]), build_id(&[b"a", b"bc"]));
    }
}
