//! Pure types and rules: the 3Dolphins events, the ticket state machine, the retry
//! policy. No I/O here, so every rule is covered by plain unit tests.

pub mod dates;
pub mod payload;
pub mod retry;
pub mod tenant;
pub mod ticket;

mod kinds;
pub use kinds::*;
