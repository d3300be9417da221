//! `[[vm]]` tables whose guest is real AArch64 code: `image` names an
//! ELF64 AArch64 file (`builtin:NAME` for one built into hyperprof, or a
//! path relative to the scenario file) that the board boots with
//! `bootargs` on the VM's vCPUs, instead of a Rust guest kernel running a
//! closed-form `workload`.
//!
//! A code VM's profile is the SPE records its vCPUs hand to the VMM
//! ([`hyperprof_board::vendor`]): its image runs its own SPE and PMU
//! drivers, so the keys that configure hyperprof's guest drivers
//! (`vm.spe.interval`, `vm.spe.buffer_kib`, `[[vm.pmu.events]]`) do not
//! apply to it.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use hyperprof_board::image;
use hyperprof_board::map::Region;
use hyperprof_kvm::vm::GUEST_RAM_IPA;

use super::{check_int, check_workload, impossible, ErrorKind, Scenario, Violation, VmSpec};
use crate::builtin;

/// The largest image file a scenario may name: 64 MiB.
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;
/// The longest `bootargs`, in bytes.
pub const MAX_BOOTARGS: usize = 4096;
/// Instructions a code VM's vCPU may retire when `max_insns` is left out.
pub const DEFAULT_MAX_INSNS: u64 = 200_000_000;

/// The bytes of the image `name`: a built-in one (`builtin:NAME`) or the
/// file at path `name`, at most [`MAX_IMAGE_BYTES`] of a regular file.
/// The error says what is wrong, listing the built-in images for an
/// unknown one.
pub fn image_bytes(name: &str) -> Result<Cow<'static, [u8]>, String> {
    if let Some(b) = name.strip_prefix(builtin::PREFIX) {
        return builtin::find(b).map(Cow::Borrowed).ok_or_else(|| {
            format!(
                "no such built-in image; the built-in images are {}",
                builtin::names().join(", ")
            )
        });
    }
    let path = Path::new(name);
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".to_string());
    }
    if meta.len() > MAX_IMAGE_BYTES {
        return Err(format!(
            "{} bytes, larger than the {MAX_IMAGE_BYTES} an image may have",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_IMAGE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_IMAGE_BYTES {
        return Err(format!(
            "larger than the {MAX_IMAGE_BYTES} bytes an image may have"
        ));
    }
    Ok(Cow::Owned(bytes))
}

/// A short name for the image `name`, the process name of its profile:
/// `spe` for `builtin:spe`, the file's stem for a path (at most 15 bytes,
/// perf's limit for a command name).
pub fn image_label(name: &str) -> String {
    let base = match name.strip_prefix(builtin::PREFIX) {
        Some(b) => b.to_string(),
        None => Path::new(name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".to_string()),
    };
    let mut label = String::new();
    for c in base.chars() {
        if label.len() + c.len_utf8() > 15 {
            break;
        }
        label.push(c);
    }
    if label.is_empty() {
        "image".to_string()
    } else {
        label
    }
}

fn image_error(image: &str, why: impl Into<String>) -> ErrorKind {
    ErrorKind::Image {
        image: image.to_string(),
        why: why.into(),
    }
}

impl VmSpec {
    /// Whether the VM boots an image (a code VM) rather than running a
    /// workload in a Rust guest kernel.
    pub fn is_code(&self) -> bool {
        self.image.is_some()
    }

    /// The most instructions each vCPU of a code VM may retire.
    pub fn max_insns(&self) -> u64 {
        self.max_insns.unwrap_or(DEFAULT_MAX_INSNS)
    }
}

impl Scenario {
    /// Makes every relative image path relative to the directory of the
    /// scenario file `path` (where the file's author sees it).
    pub(super) fn resolve_image_paths(&mut self, path: &Path) {
        let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
            return;
        };
        for vm in &mut self.vms {
            if let Some(image) = vm.image.as_mut() {
                if !image.starts_with(builtin::PREFIX) && Path::new(image.as_str()).is_relative() {
                    *image = dir.join(image.as_str()).display().to_string();
                }
            }
        }
    }

    /// The guest of `[[vm]]` table `at`: a workload, or an image that
    /// loads into the VM's RAM, with only the keys that apply to it.
    pub(super) fn check_vm_guest(&self, at: &str, vm: &VmSpec) -> Result<(), Violation> {
        let Some(image) = &vm.image else {
            if vm.workload.is_empty() {
                return Err((format!("{at}.workload"), ErrorKind::MissingKey));
            }
            check_workload(format!("{at}.workload"), &vm.workload, false)?;
            for (key, set) in [
                ("bootargs", vm.bootargs.is_some()),
                ("max_insns", vm.max_insns.is_some()),
            ] {
                if set {
                    return Err(impossible(
                        format!("{at}.{key}"),
                        format!(
                            "{key} applies to a VM that boots an image; this one runs a workload"
                        ),
                    ));
                }
            }
            if let Some(spe) = &vm.spe {
                for (key, set) in [
                    ("interval", spe.interval.is_some()),
                    ("buffer_kib", spe.buffer_kib.is_some()),
                ] {
                    if !set {
                        return Err((format!("{at}.spe.{key}"), ErrorKind::MissingKey));
                    }
                }
            }
            return Ok(());
        };
        if !vm.workload.is_empty() {
            return Err(impossible(
                format!("{at}.workload"),
                "a VM runs either a workload or an image: leave out one of the two",
            ));
        }
        if vm.seed.is_some() {
            return Err(impossible(
                format!("{at}.seed"),
                "seed chooses a workload's operations; an image's code is its own",
            ));
        }
        if let Some(spe) = &vm.spe {
            if spe.interval.is_some() || spe.buffer_kib.is_some() {
                let key = if spe.interval.is_some() {
                    "interval"
                } else {
                    "buffer_kib"
                };
                return Err(impossible(
                    format!("{at}.spe.{key}"),
                    "an image runs its own SPE driver, which chooses its interval and buffer: \
                     leave out interval and buffer_kib",
                ));
            }
        }
        if let Some(pmu) = &vm.pmu {
            if !pmu.events.is_empty() {
                return Err(impossible(
                    format!("{at}.pmu.events"),
                    "an image programs its own counters: leave out [[vm.pmu.events]]",
                ));
            }
        }
        if let Some(args) = &vm.bootargs {
            if args.len() > MAX_BOOTARGS || args.contains('\0') {
                return Err(impossible(
                    format!("{at}.bootargs"),
                    format!("bootargs must be at most {MAX_BOOTARGS} bytes without NUL"),
                ));
            }
        }
        if let Some(n) = vm.max_insns {
            check_int(format!("{at}.max_insns"), n, 1, i64::MAX, 1)?;
        }
        let field = format!("{at}.image");
        let bytes = image_bytes(image).map_err(|why| (field.clone(), image_error(image, why)))?;
        if !bytes.starts_with(b"\x7fELF") {
            return Err((
                field,
                image_error(
                    image,
                    "not an ELF file: a VM's image must be ELF64 AArch64, whose symbols name \
                     the functions of its profile (`hyperprof boot` takes raw images too)",
                ),
            ));
        }
        let ram = Region {
            base: GUEST_RAM_IPA,
            size: vm.ram_bytes(),
        };
        image::load(&bytes, ram).map_err(|e| (field, image_error(image, e.to_string())))?;
        Ok(())
    }
}
