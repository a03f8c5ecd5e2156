//! Bounds on what a peer can make the proxy spend, shared by the layers that
//! spend it: permits for blocking work (argon2 checks in `directory`, GSS
//! validations in `auth`) and per-address counts (connections in `listener`,
//! half-open NTLM handshakes in `auth`).
//!
//! A leaf module: it imports nothing from the crate, so `auth`, `directory`
//! and `conn` can all use it without importing one another.

mod blocking;
mod per_address;
pub(crate) mod place;

pub use blocking::{BlockingSlots, SlotError};
pub use per_address::{AddressSlot, Counted, PerAddress, Places};
pub use place::{place, shared, SharedAddress};
