//! The balancing service.

pub mod error;
pub mod future;
mod service;

pub use self::service::{Balance, Builder};
