//! Entry points for fuzzing: each takes arbitrary bytes, drives one parser
//! the CLI exposes to user input, and must return without panicking. The
//! cargo-fuzz targets in `fuzz/` call them, and the `fuzz_corpus` test
//! replays the committed seed corpora through them with a stable toolchain.

use std::path::Path;

use hyperprof_spe::perf_data::PerfData;
use hyperprof_spe::text::{write_dump_line, DumpWalker, Sink};
use hyperprof_spe::{decode, RecordDecoder};

/// A fuzz target's entry point.
pub type Entry = fn(&[u8]);

/// The fuzz targets, by the name of their corpus directory.
pub const TARGETS: [(&str, Entry); 6] = [
    ("spe_packet", spe_packet),
    ("perf_data", perf_data),
    ("scenario", scenario),
    ("report_json", report_json),
    ("guest_image", guest_image),
    ("a64_insn", a64_insn),
];

struct Discard(usize);

impl Sink for Discard {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// The SPE packet decoder, the record decoder and perf's dump text.
pub fn spe_packet(data: &[u8]) {
    let mut pos = 0;
    while pos < data.len() {
        match decode(&data[pos..], pos) {
            Ok((_, n)) => pos += n.max(1),
            Err(_) => pos += 1,
        }
    }
    for r in RecordDecoder::new(data) {
        if r.is_err() {
            break;
        }
    }
    let mut out = Discard(0);
    for item in DumpWalker::new(data, 0) {
        write_dump_line(&mut out, data, &item);
    }
}

/// The perf.data reader, and the packets of every buffer it finds.
pub fn perf_data(data: &[u8]) {
    if let Ok(pd) = PerfData::parse(data) {
        for t in pd.aux_traces() {
            match t {
                Ok(t) => spe_packet(t.data),
                Err(_) => break,
            }
        }
    }
}

/// The scenario parser and its validation.
pub fn scenario(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(s) = crate::scenario::Scenario::parse(text, Path::new("fuzz.toml")) {
            let _ = crate::run::from_scenario::setup(&s);
        }
    }
}

/// report.json's parser and checks, and the text `hyperprof report` prints.
pub fn report_json(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = crate::run::artifacts::parse_report(text) {
            let _ = crate::run::system::render(&r);
        }
    }
}

/// Guest image loading (ELF or raw) and the device tree placed beside it.
pub fn guest_image(data: &[u8]) {
    use hyperprof_board::map::Region;
    let ram = Region {
        base: hyperprof_board::map::RAM_BASE,
        size: 64 << 20,
    };
    if let Ok(img) = hyperprof_board::image::load(data, ram) {
        for len in [0x100, 0x10_0000, 0x400_0000] {
            let _ = img.dtb_address(len, ram);
        }
    }
}

/// RAM for [`a64_insn`]: 64 KiB at address 0, no translation.
struct FlatRam(Vec<u8>);

impl FlatRam {
    fn at(&self, va: u64, size: u8) -> Option<std::ops::Range<usize>> {
        let start = usize::try_from(va).ok()?;
        let end = start.checked_add(usize::from(size))?;
        (end <= self.0.len()).then_some(start..end)
    }
}

impl hyperprof_a64::Bus for FlatRam {
    const OBSERVE: bool = false;

    fn fetch(
        &mut self,
        va: u64,
        _: hyperprof_a64::Access,
    ) -> Result<hyperprof_a64::Fetched, hyperprof_a64::MemFault> {
        let r = self
            .at(va, 4)
            .ok_or(hyperprof_a64::MemFault::Stage1 { fsc: 0b00_0100 })?;
        let b = &self.0[r];
        Ok(hyperprof_a64::Fetched {
            pa: va,
            insn: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        })
    }

    fn read(
        &mut self,
        va: u64,
        size: u8,
        _: hyperprof_a64::Access,
    ) -> Result<u64, hyperprof_a64::MemFault> {
        let r = self.at(va, size).ok_or(hyperprof_a64::MemFault::Stage2 {
            fsc: 0b00_0101,
            ipa: va,
            s1ptw: false,
        })?;
        let mut v = [0u8; 8];
        v[..usize::from(size)].copy_from_slice(&self.0[r]);
        Ok(u64::from_le_bytes(v))
    }

    fn write(
        &mut self,
        va: u64,
        size: u8,
        value: u64,
        _: hyperprof_a64::Access,
    ) -> Result<u64, hyperprof_a64::MemFault> {
        let r = self
            .at(va, size)
            .ok_or(hyperprof_a64::MemFault::Stage1 { fsc: 0b00_0101 })?;
        self.0[r].copy_from_slice(&value.to_le_bytes()[..usize::from(size)]);
        Ok(va)
    }
}

/// The A64 decoder on every word, and the engine running the bytes as code
/// at EL1 (vectors at 0, registers from the bytes) for a bounded number of
/// instructions, leaving at every exit to EL2.
pub fn a64_insn(data: &[u8]) {
    for w in data.chunks_exact(4) {
        let _ = hyperprof_a64::decode(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut ram = FlatRam(vec![0; 64 << 10]);
    let n = data.len().min(ram.0.len() - 0x1000);
    ram.0[0x1000..0x1000 + n].copy_from_slice(&data[..n]);
    let mut cpu = hyperprof_a64::Cpu::new();
    for (i, w) in data.chunks_exact(8).take(31).enumerate() {
        let v = u64::from_le_bytes(w.try_into().unwrap_or([0; 8]));
        // Keep addresses mostly inside the RAM so that memory paths run.
        cpu.set_x(i, if v & 1 == 0 { v & 0xfff8 } else { v });
    }
    cpu.set_sp(0x8000);
    cpu.set_pc(0x1000);
    let mut left = 512u64;
    while left > 0 {
        let before = cpu.retired();
        match cpu.run(&mut ram, left.min(256)) {
            hyperprof_a64::Exit::El2(_) => cpu.skip(),
            hyperprof_a64::Exit::Budget
            | hyperprof_a64::Exit::Wfi
            | hyperprof_a64::Exit::Wfe
            | hyperprof_a64::Exit::Hint => {}
        }
        left = left.saturating_sub((cpu.retired() - before).max(1));
    }
}
