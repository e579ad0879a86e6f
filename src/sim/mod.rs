//! A faithful simulator of the VBS / Cinder backup API for tests and the demo: Keystone-style
//! password tokens with a service catalog, Huawei AK/SK signature verification, the show and
//! list-detail calls on the native, Cinder and v2 paths, the documented error bodies, and a small
//! control API (`/sim/...`) to add and change backups and inject faults.

mod auth;
mod server;
mod state;

pub use server::{router, serve, serve_tls};
pub use state::{ErrorStyle, Fault, FaultTarget, Seed, SeedKey, SeedUser, Sim, with_defaults};
