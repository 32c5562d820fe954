//! The binary's subcommands, one module each, with the arguments they share (`args`) and the
//! venue set-up `run` and `render` share (`venue`). This is the app layer's outer part: it may
//! use the whole library; nothing in the library uses it.

pub mod args;
pub mod audience;
pub mod check;
pub mod import;
pub mod loadgen;
pub mod nats;
pub mod program;
pub mod render;
pub mod replay;
pub mod run;
pub mod signals;
pub mod soak;
pub mod venue;
pub mod xr;
