//! Attributing the nodes a distribution's method records to the user's call of it, so anomaly
//! reports name the user's line.

use std::panic::Location;

use crate::{Scalar, Tape};

/// While alive, the nodes recorded on a tape are attributed to one call site (see
/// [`Tape::caller_scope`]).
pub(crate) struct CallerScope<'a, F: Scalar> {
    tape: &'a Tape<'a, F>,
    outermost: bool,
}

impl<'a, F: Scalar> Tape<'a, F> {
    /// Attributes the nodes recorded from now until the guard drops to `location`, unless an
    /// enclosing scope already attributes them (a distribution method calling another keeps
    /// the user's line).
    pub(crate) fn caller_scope(
        &'a self,
        location: &'static Location<'static>,
    ) -> CallerScope<'a, F> {
        let outermost = self.caller.get().is_none();
        if outermost {
            self.caller.set(Some(location));
        }
        CallerScope {
            tape: self,
            outermost,
        }
    }
}

impl<F: Scalar> Drop for CallerScope<'_, F> {
    fn drop(&mut self) {
        if self.outermost {
            self.tape.caller.set(None);
        }
    }
}
