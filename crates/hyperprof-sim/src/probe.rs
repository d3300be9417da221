//! A hook on the [`Cpu`](hyperprof_arch::Cpu) boundary of a PE, for a model
//! checker: it is called before every system-register access and barrier
//! made through [`PeCpu`], and may run other code on the same PE first (an
//! interrupt handler that the access's place in the schedule lets in) or
//! leave the access out (a mutation of the code under test). While it runs
//! it is detached, so the code it runs is not probed.

use std::sync::Arc;

use hyperprof_arch::SysReg;

use crate::pe::PeCpu;

/// The access about to happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeAccess {
    /// A system register read.
    Read(SysReg),
    /// A system register write of the value.
    Write(SysReg, u64),
    /// ISB.
    Isb,
    /// DSB NSH.
    DsbNsh,
    /// PSB CSYNC.
    PsbCsync,
}

/// What the probe decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeVerdict {
    /// The access happens.
    Proceed,
    /// A write or barrier is left out (a read always happens).
    Skip,
    /// A read returns this value instead of the register's.
    ReadAs(u64),
}

/// The hook.
pub trait Probe: Send + Sync {
    /// Called before `access` on `cpu`.
    fn before(&self, cpu: &mut PeCpu<'_>, access: ProbeAccess) -> ProbeVerdict;
}

/// A probe attached to a PE ([`crate::pe::Pe::set_probe`]).
#[derive(Clone)]
pub struct ProbeHandle(pub Arc<dyn Probe>);

impl std::fmt::Debug for ProbeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeHandle")
    }
}
