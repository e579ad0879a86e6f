//! A faithful simulator of the VBS / Cinder backup API for tests and the demo: Keystone-style
//! password tokens with a service catalog, Huawei AK/SK signature verification, the show and
//! list-detail calls on the native, Cinder and v2 paths, Cloud Backup and Recovery's show and list
//! calls (under `/cbr`, as if on a host of their own), the documented error bodies, and a small
//! control API (`/sim/...`) to add and change backups and inject faults.

mod auth;
mod cbr;
mod server;
mod state;

pub use server::{router, serve, serve_tls};
pub use state::{
    ErrorStyle, Fault, FaultTarget, Seed, SeedKey, SeedUser, Service, Sim, cbr_with_defaults, with_defaults,
};

/// A clouds.yaml "billion laughs": eleven levels of anchors, each aliasing the one below ten
/// times (10^12 scalars if expanded), referenced from a cloud entry. For tests of the parser's
/// alias limit and of the operator under hostile Secrets.
pub fn alias_bomb_clouds_yaml() -> String {
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..12 {
        let below = format!("*a{}", level - 1);
        let row = [below.as_str(); 10].join(", ");
        bomb.push_str(&format!("a{level}: &a{level} [{row}]\n"));
    }
    bomb.push_str("clouds: {c: {auth: {auth_url: 'https://i/v3', user_id: u, password: p, project_id: x}, region_name: *a11}}\n");
    bomb
}
