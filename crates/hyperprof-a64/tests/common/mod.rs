//! Shared by the integration tests and the benches: a flat-memory bus
//! that loads a static AArch64 ELF, a syscall shim at EL1 built from
//! `HVC #0; ERET`, and the external-tool gate.
#![allow(dead_code)]

use hyperprof_a64::{
    cpu::regs, ec, Access, Bus, Cpu, Exit, Fetched, MemFault, SysReg, SysRegRead, SysRegWrite,
};
use std::path::Path;
use std::process::Command;

/// Where the test shim's EL1 vectors live.
pub const VBAR: u64 = 0x1_0000;
/// Top of the EL0 stack `run_user` maps.
pub const USER_STACK_TOP: u64 = 0x7f_0000_0000;
/// Its size.
pub const USER_STACK_SIZE: u64 = 0x1_0000;
/// `HVC #0`.
pub const HVC0: u32 = 0xd400_0002;
/// `ERET`.
pub const ERET: u32 = 0xd69f_03e0;

/// One mapped region, VA = PA.
pub struct Region {
    pub base: u64,
    pub data: Vec<u8>,
}

/// Flat memory with identity translation and TPIDR_EL0.
pub struct FlatBus {
    pub regions: Vec<Region>,
    pub tpidr_el0: u64,
    pub retired: u64,
    pub mem_ops: u64,
    last: usize,
}

impl FlatBus {
    pub fn new() -> FlatBus {
        FlatBus {
            regions: Vec::new(),
            tpidr_el0: 0,
            retired: 0,
            mem_ops: 0,
            last: 0,
        }
    }

    pub fn map(&mut self, base: u64, len: usize) {
        self.regions.push(Region {
            base,
            data: vec![0; len],
        });
    }

    fn find(&mut self, va: u64, size: usize) -> Option<&mut [u8]> {
        let fits = |r: &Region| va >= r.base && va - r.base + size as u64 <= r.data.len() as u64;
        let i = match self.regions.get(self.last) {
            Some(r) if fits(r) => self.last,
            _ => {
                let i = self.regions.iter().position(fits)?;
                self.last = i;
                i
            }
        };
        let r = &mut self.regions[i];
        let off = (va - r.base) as usize;
        Some(&mut r.data[off..off + size])
    }

    pub fn write_bytes(&mut self, va: u64, bytes: &[u8]) -> bool {
        match self.find(va, bytes.len()) {
            Some(s) => {
                s.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    pub fn read_bytes(&mut self, va: u64, len: usize) -> Option<Vec<u8>> {
        self.find(va, len).map(|s| s.to_vec())
    }

    pub fn write_u32(&mut self, va: u64, v: u32) -> bool {
        self.write_bytes(va, &v.to_le_bytes())
    }

    /// Load a static ELF64 little-endian AArch64 image; returns the entry point.
    pub fn load_elf(&mut self, image: &[u8]) -> Result<u64, String> {
        let u16_at = |o: usize| -> Result<u64, String> {
            image
                .get(o..o + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]) as u64)
                .ok_or("truncated".to_string())
        };
        let u64_at = |o: usize| -> Result<u64, String> {
            image
                .get(o..o + 8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                .ok_or("truncated".to_string())
        };
        if image.get(0..4) != Some(b"\x7fELF") || image.get(4) != Some(&2) || u16_at(18)? != 183 {
            return Err("not an ELF64 AArch64 image".into());
        }
        let entry = u64_at(24)?;
        let phoff = u64_at(32)? as usize;
        let phentsize = u16_at(54)? as usize;
        let phnum = u16_at(56)? as usize;
        for i in 0..phnum {
            let ph = phoff + i * phentsize;
            let ptype = image
                .get(ph..ph + 4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])));
            if ptype != Some(1) {
                continue;
            }
            let off = u64_at(ph + 8)? as usize;
            let vaddr = u64_at(ph + 16)?;
            let filesz = u64_at(ph + 32)? as usize;
            let memsz = u64_at(ph + 40)? as usize;
            let bytes = image
                .get(off..off + filesz)
                .ok_or("segment outside the file")?;
            let mut data = vec![0u8; memsz];
            data[..filesz].copy_from_slice(bytes);
            self.regions.push(Region { base: vaddr, data });
        }
        Ok(entry)
    }
}

const TRANSLATION_FAULT_L3: u8 = 0b000111;

impl Bus for FlatBus {
    fn fetch(&mut self, va: u64, _a: Access) -> Result<Fetched, MemFault> {
        match self.find(va, 4) {
            Some(s) => Ok(Fetched {
                pa: va,
                insn: u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
            }),
            None => Err(MemFault::Stage1 {
                fsc: TRANSLATION_FAULT_L3,
            }),
        }
    }

    fn read(&mut self, va: u64, size: u8, _a: Access) -> Result<u64, MemFault> {
        self.mem_ops += 1;
        match self.find(va, size as usize) {
            Some(s) => Ok(match s.len() {
                8 => u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]),
                4 => u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as u64,
                2 => u16::from_le_bytes([s[0], s[1]]) as u64,
                _ => s[0] as u64,
            }),
            None => Err(MemFault::Stage1 {
                fsc: TRANSLATION_FAULT_L3,
            }),
        }
    }

    fn write(&mut self, va: u64, size: u8, value: u64, _a: Access) -> Result<u64, MemFault> {
        self.mem_ops += 1;
        match self.find(va, size as usize) {
            Some(s) => {
                let b = value.to_le_bytes();
                for (d, v) in s.iter_mut().zip(b) {
                    *d = v;
                }
                Ok(va)
            }
            None => Err(MemFault::Stage1 {
                fsc: TRANSLATION_FAULT_L3,
            }),
        }
    }

    fn sysreg_read(&mut self, reg: SysReg, _el: u8) -> SysRegRead {
        if reg == regs::TPIDR_EL0 {
            SysRegRead::Value(self.tpidr_el0)
        } else {
            SysRegRead::Engine
        }
    }

    fn sysreg_write(&mut self, reg: SysReg, value: u64, _el: u8) -> SysRegWrite {
        if reg == regs::TPIDR_EL0 {
            self.tpidr_el0 = value;
            SysRegWrite::Done
        } else {
            SysRegWrite::Engine
        }
    }

    #[inline(always)]
    fn retired(&mut self, _info: &hyperprof_a64::Retired) {
        self.retired += 1;
    }
}

/// Why a user-mode run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum UserEnd {
    /// exit/exit_group with this status.
    Exited(u64),
    /// Anything unexpected, described.
    Failed(String),
}

/// Run a loaded image at EL0 with a Linux-like syscall shim (write to
/// fd 1/2 is collected, exit/exit_group stop). SVC goes through VBAR_EL1
/// + 0x400 where `HVC #0; ERET` hands it to this function as an EL2 exit.
pub fn run_user(
    bus: &mut FlatBus,
    cpu: &mut Cpu,
    entry: u64,
    max_insns: u64,
) -> (UserEnd, Vec<u8>) {
    bus.map(VBAR, 0x1000);
    bus.write_u32(VBAR + 0x400, HVC0);
    bus.write_u32(VBAR + 0x404, ERET);
    cpu.write_sysreg(regs::VBAR_EL1, VBAR);
    cpu.write_sysreg(regs::CPACR_EL1, 3 << 20);
    // Linux's user SCTLR_EL1: SA0, UCI, DZE, nTWI, nTWE, UCT as set by the kernel.
    let sctlr = cpu.read_sysreg(regs::SCTLR_EL1).unwrap_or(0)
        | (1 << 4)
        | (1 << 26)
        | (1 << 14)
        | (1 << 15);
    cpu.write_sysreg(regs::SCTLR_EL1, sctlr);
    cpu.set_pstate_from_spsr(0);
    bus.map(USER_STACK_TOP - USER_STACK_SIZE, USER_STACK_SIZE as usize);
    cpu.set_sp_el0(USER_STACK_TOP - 64);
    cpu.set_pc(entry);
    let mut out = Vec::new();
    let mut left = max_insns;
    loop {
        let before = cpu.retired();
        let exit = cpu.run(bus, left);
        left = left.saturating_sub(cpu.retired() - before);
        match exit {
            Exit::El2(e) if e.ec() == ec::HVC64 => {
                let esr_el1 = cpu.read_sysreg(regs::ESR_EL1).unwrap_or(0);
                if (esr_el1 >> 26) as u8 != ec::SVC64 {
                    let elr = cpu.read_sysreg(regs::ELR_EL1).unwrap_or(0);
                    let far = cpu.read_sysreg(regs::FAR_EL1).unwrap_or(0);
                    return (
                        UserEnd::Failed(format!(
                            "exception ESR_EL1={esr_el1:#x} ELR={elr:#x} FAR={far:#x}"
                        )),
                        out,
                    );
                }
                match cpu.x(8) {
                    64 => {
                        let (fd, buf, len) = (cpu.x(0), cpu.x(1), cpu.x(2) as usize);
                        match bus.read_bytes(buf, len) {
                            Some(b) if fd == 1 || fd == 2 => {
                                out.extend_from_slice(&b);
                                cpu.set_x(0, len as u64);
                            }
                            _ => cpu.set_x(0, (-14i64) as u64),
                        }
                    }
                    93 | 94 => return (UserEnd::Exited(cpu.x(0)), out),
                    n => return (UserEnd::Failed(format!("unsupported syscall {n}")), out),
                }
            }
            Exit::Budget => {
                return (
                    UserEnd::Failed(format!("budget of {max_insns} instructions used up")),
                    out,
                )
            }
            other => return (UserEnd::Failed(format!("unexpected exit {other:?}")), out),
        }
    }
}

/// Whether the external tools exist; when missing, fail under CI=true
/// and otherwise print a skip line. Returns true when the test may run.
pub fn tools_present(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {t}"))
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("{test}: required tools missing under CI: {missing:?}");
    }
    println!("skipped {test}: missing {missing:?}");
    false
}

/// Assemble and link `asm` into a static AArch64 executable in `dir`.
pub fn build_static(dir: &Path, name: &str, asm: &str) -> Result<std::path::PathBuf, String> {
    let s = dir.join(format!("{name}.s"));
    let o = dir.join(format!("{name}.o"));
    let exe = dir.join(name);
    std::fs::write(&s, asm).map_err(|e| e.to_string())?;
    let st = Command::new("aarch64-linux-gnu-as")
        .args(["-march=armv8.3-a+crc+lse+rcpc", "-o"])
        .arg(&o)
        .arg(&s)
        .output()
        .map_err(|e| e.to_string())?;
    if !st.status.success() {
        return Err(format!(
            "as failed: {}",
            String::from_utf8_lossy(&st.stderr)
        ));
    }
    let st = Command::new("aarch64-linux-gnu-ld")
        .args(["-static", "-o"])
        .arg(&exe)
        .arg(&o)
        .output()
        .map_err(|e| e.to_string())?;
    if !st.status.success() {
        return Err(format!(
            "ld failed: {}",
            String::from_utf8_lossy(&st.stderr)
        ));
    }
    Ok(exe)
}

/// A scratch directory unique to this process and test.
pub fn temp_dir(test: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("hyperprof-a64-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).ok();
    d
}
