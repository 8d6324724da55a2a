//! Named steps inside operations, where the crash tests inject faults.
//!
//! Each mutating operation calls [`Steps::reach`] between its file operations
//! and manifest commits, with a stable name such as `snapshot.overlays-created`.
//! In production no hook is set and a step costs one branch. With the
//! `fault-injection` feature a test installs a hook (`StorageOptions::step_hook`) that records the steps, or
//! panics or kills the process at one of them, to prove that a crash between
//! any two steps leaves the old state or the new one.

use std::fmt;
use std::sync::Arc;

use crate::options::StorageOptions;

/// A function called at every named step of every operation.
pub type StepHook = Arc<dyn Fn(&'static str) + Send + Sync>;

/// The optional step hook of a driver.
#[derive(Clone, Default)]
pub(crate) struct Steps(Option<StepHook>);

impl Steps {
    /// The hook of `options` (always none without the `fault-injection` feature).
    pub(crate) fn of(#[allow(unused_variables)] options: &StorageOptions) -> Self {
        #[cfg(feature = "fault-injection")]
        return Self(options.step_hook.clone());
        #[cfg(not(feature = "fault-injection"))]
        Self(None)
    }

    /// Marks that the operation reached `step`.
    pub(crate) fn reach(&self, step: &'static str) {
        if let Some(hook) = &self.0 {
            hook(step);
        }
    }
}

impl fmt::Debug for Steps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Steps(hooked)" } else { "Steps(none)" })
    }
}
