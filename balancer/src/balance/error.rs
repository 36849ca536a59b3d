//! The balancer's own errors.

use std::fmt;

/// The balancer cannot serve: its endpoint source ended with no endpoint left.
///
/// Errors of the endpoint services and of the `Discover` stream are passed on as they are (as
/// `BoxError`); this is the only error the balancer makes itself. It allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoEndpoints(());

impl NoEndpoints {
    pub(crate) const fn new() -> Self {
        Self(())
    }
}

impl fmt::Display for NoEndpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no endpoints: discovery ended with an empty set")
    }
}

impl std::error::Error for NoEndpoints {}
