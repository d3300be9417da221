//! The SPE unit's path to memory: profiling buffer writes go through the
//! owning Exception level's translation regime (Arm ARM J1.1.1.125
//! `SPEWriteToBuffer()`: `CreateAccDescSPE(owning_ss, owning_el)`), which
//! the PE implements; [`VecPort`] is a flat in-memory stand-in for tests.

use core::fmt;

/// Why a write to the profiling buffer did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufferFault {
    /// A stage 1 Data Abort on the write (PMBSR_EL1.EC = FAULT_S1).
    Stage1 {
        /// The fault status code (as in ESR_ELx.DFSC; the low 6 bits are
        /// reported in PMBSR_EL1.MSS.FSC).
        fsc: u8,
    },
    /// A stage 2 Data Abort on the write (PMBSR_EL1.EC = FAULT_S2).
    Stage2 {
        /// The fault status code.
        fsc: u8,
    },
    /// A synchronous External abort: the address translated but no memory
    /// answered (for example, a guest buffer outside guest RAM).
    External,
}

impl fmt::Display for BufferFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BufferFault::Stage1 { fsc } => write!(f, "stage 1 data abort (FSC {fsc:#04x})"),
            BufferFault::Stage2 { fsc } => write!(f, "stage 2 data abort (FSC {fsc:#04x})"),
            BufferFault::External => write!(f, "external abort"),
        }
    }
}

impl std::error::Error for BufferFault {}

/// Where the unit writes records: `va` is a virtual address of the owning
/// Exception level's translation regime (stage 1, then stage 2 for an
/// EL1-owned buffer under a hypervisor). The unit never passes a range that
/// crosses a 4 KiB boundary, so one translation covers a call.
pub trait BufferPort {
    /// Writes `bytes` at `va`, or reports why it could not (nothing is
    /// written then).
    fn write(&mut self, va: u64, bytes: &[u8]) -> Result<(), BufferFault>;
}

/// A flat buffer at virtual addresses `base..base + len` with optional
/// faulting ranges: writes outside the buffer are External aborts. Meant for
/// tests and examples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VecPort {
    base: u64,
    data: Vec<u8>,
    faults: Vec<(u64, u64, BufferFault)>,
    writes: u64,
}

impl VecPort {
    /// A zero-filled buffer of `len` bytes at `base`.
    pub fn new(base: u64, len: usize) -> VecPort {
        VecPort {
            base,
            data: vec![0; len],
            faults: Vec::new(),
            writes: 0,
        }
    }

    /// Writes touching `start..end` fail with `fault` (the first matching
    /// range wins).
    pub fn add_fault(&mut self, start: u64, end: u64, fault: BufferFault) {
        self.faults.push((start, end, fault));
    }

    /// Removes every faulting range.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The first address of the buffer.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The whole buffer.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// `len` bytes at `va`, if inside the buffer.
    pub fn bytes(&self, va: u64, len: usize) -> Option<&[u8]> {
        let off = usize::try_from(va.checked_sub(self.base)?).ok()?;
        self.data.get(off..off.checked_add(len)?)
    }

    /// Successful write calls so far.
    pub fn writes(&self) -> u64 {
        self.writes
    }
}

impl BufferPort for VecPort {
    fn write(&mut self, va: u64, bytes: &[u8]) -> Result<(), BufferFault> {
        let end = va.saturating_add(bytes.len() as u64);
        if let Some(&(_, _, f)) = self
            .faults
            .iter()
            .find(|&&(s, e, _)| va < e && s < end.max(va.saturating_add(1)))
        {
            return Err(f);
        }
        let off = va
            .checked_sub(self.base)
            .and_then(|o| usize::try_from(o).ok())
            .ok_or(BufferFault::External)?;
        let dst = off
            .checked_add(bytes.len())
            .and_then(|e| self.data.get_mut(off..e))
            .ok_or(BufferFault::External)?;
        dst.copy_from_slice(bytes);
        self.writes += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_land_and_outside_is_external() {
        let mut p = VecPort::new(0x1000, 0x100);
        assert_eq!(p.write(0x1010, &[1, 2, 3]), Ok(()));
        assert_eq!(p.bytes(0x1010, 3), Some(&[1u8, 2, 3][..]));
        assert_eq!(p.write(0xFFF, &[1]), Err(BufferFault::External));
        assert_eq!(p.write(0x10FF, &[1, 2]), Err(BufferFault::External));
        assert_eq!(p.write(u64::MAX, &[1, 2]), Err(BufferFault::External));
        assert_eq!(p.writes(), 1);
        assert_eq!(p.bytes(0x10FF, 2), None);
    }

    #[test]
    fn faulting_ranges_fail_overlapping_writes() {
        let mut p = VecPort::new(0, 0x3000);
        p.add_fault(0x1000, 0x2000, BufferFault::Stage2 { fsc: 0x07 });
        assert_eq!(p.write(0xFFE, &[0; 2]), Ok(()));
        assert_eq!(
            p.write(0xFFF, &[0; 2]),
            Err(BufferFault::Stage2 { fsc: 0x07 })
        );
        assert_eq!(
            p.write(0x1FFF, &[0]),
            Err(BufferFault::Stage2 { fsc: 0x07 })
        );
        assert_eq!(p.write(0x2000, &[0]), Ok(()));
        p.clear_faults();
        assert_eq!(p.write(0x1800, &[9]), Ok(()));
        assert_eq!(
            format!("{}", BufferFault::Stage1 { fsc: 0x07 }),
            "stage 1 data abort (FSC 0x07)"
        );
    }
}
