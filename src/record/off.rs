//! Diagnostics turned off (feature `diagnostics` disabled, or under a model
//! checker): the same hooks, doing nothing, with no state in the locks.

use core::panic::Location;

use super::{Kind, Mode};

/// No diagnostic state: the locks keep parking_lot's sizes.
pub(crate) struct LockDiag;

/// What a release leaves to record (nothing).
pub(crate) struct Release;

/// A wait in progress (nothing to remember).
pub(crate) struct Wait;

/// A shared acquisition prepared before its compare-exchange: nothing.
pub(crate) struct Prepared;

impl Wait {
    #[inline(always)]
    pub(crate) fn new(_timed: bool) -> Self {
        Wait
    }
}

#[allow(clippy::unused_self)]
impl LockDiag {
    pub(crate) const fn new(_label: Option<&'static str>) -> Self {
        LockDiag
    }

    #[inline(always)]
    pub(crate) fn acquired_exclusive(&self, _kind: Kind, _site: &'static Location<'static>) {}

    #[inline(always)]
    pub(crate) fn releasing_exclusive(&self) -> Release {
        Release
    }

    #[inline(always)]
    pub(crate) fn released_exclusive(&self, _release: Release) {}

    #[inline(always)]
    pub(crate) fn woke(&self, _wait: &mut Wait) {}

    #[inline(always)]
    pub(crate) fn acquired_shared(
        &self,
        _kind: Kind,
        _mode: Mode,
        _site: &'static Location<'static>,
    ) {
    }

    #[inline(always)]
    pub(crate) fn released_shared(&self, _mode: Mode) {}

    #[inline(always)]
    pub(crate) fn preparing_exclusive(
        &self,
        _kind: Kind,
        _site: &'static Location<'static>,
    ) -> Prepared {
        Prepared
    }

    #[inline(always)]
    pub(crate) fn acquired_prepared_exclusive(
        &self,
        _prepared: Prepared,
        _kind: Kind,
        _site: &'static Location<'static>,
    ) {
    }

    #[inline(always)]
    pub(crate) fn preparing_shared(
        &self,
        _kind: Kind,
        _site: &'static Location<'static>,
    ) -> Prepared {
        Prepared
    }

    #[inline(always)]
    pub(crate) fn acquired_prepared(
        &self,
        _prepared: Prepared,
        _kind: Kind,
        _mode: Mode,
        _site: &'static Location<'static>,
    ) {
    }

    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn before_park(
        &self,
        _wait: &mut Wait,
        _kind: Kind,
        _mode: Mode,
        _site: &'static Location<'static>,
        _word: usize,
        _upgrading: bool,
        _writer_ahead: bool,
        _untimed: bool,
    ) -> Option<super::Hopeless> {
        None
    }

    /// No name is recorded.
    #[inline(always)]
    pub(crate) fn name(&self, _kind: Kind) -> Option<String> {
        None
    }

    #[inline(always)]
    pub(crate) fn after_wait(
        &self,
        _wait: Wait,
        _acquired: bool,
        _kind: Kind,
        _mode: Mode,
        _site: &'static Location<'static>,
    ) {
    }

    #[inline(always)]
    pub(crate) fn cancel_wait(&self) {}

    pub(crate) fn set_label(
        &self,
        _kind: Kind,
        _site: &'static Location<'static>,
        _label: &str,
        _held_exclusively: impl Fn() -> bool,
    ) {
    }
}
