//! The emulator, judged on its own: the wire ([`wire`]) and its resources through time
//! ([`lifecycles`]), its fidelity to OCI one divergence per test ([`fidelity`]), the fixtures it
//! prints ([`fixtures`]), one emulator shared by concurrent kilns ([`shared`]), Object Storage
//! ([`object_storage`]), request body limits ([`request_limits`]), rate and capacity limits
//! ([`limits`]), and instance certificate chains ([`federation_chains`]). Oracle's own tools judge
//! it in [`crate::judges`].

mod federation_chains;
mod fidelity;
mod fixtures;
mod lifecycles;
mod limits;
mod object_storage;
mod request_limits;
mod shared;
mod wire;
