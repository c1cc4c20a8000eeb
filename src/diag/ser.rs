//! Serde helpers (feature `serde`): call sites as `"file:line"` strings,
//! durations as seconds.

use core::panic::Location;
use std::time::Duration;

use serde::Serializer;

type Site = &'static Location<'static>;

/// A call site as `"file:line"`.
pub(crate) fn site<S: Serializer>(site: &Site, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{}:{}", site.file(), site.line()))
}

/// An optional call site as `"file:line"` or `null`.
pub(crate) fn opt_site<S: Serializer>(site: &Option<Site>, s: S) -> Result<S::Ok, S::Error> {
    match site {
        Some(at) => self::site(at, s),
        None => s.serialize_none(),
    }
}

/// A duration as (fractional) seconds.
pub(crate) fn secs<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}
