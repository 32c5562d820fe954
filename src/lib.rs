//! Parvis: a real-time engine for immersive cultural venues.
//!
//! Every change to a venue is a [`model::command::VenueCommand`] that passes one pipeline:
//! inputs → checks → commands (logged) → ECS state → outputs. The crate is built in four
//! layers whose imports point one way only (docs/design.md draws them, and `tests/layers.rs`
//! fails on an import that points up):
//!
//! - [`model`] — plain data and pure logic (the `parvis-model` crate, no Bevy);
//! - [`engine`] — Bevy plugins that turn the model into a venue;
//! - [`edges`] — async I/O that reaches the engine only through its channels;
//! - [`app`] — assembling plugins and edges into apps; the `parvis` binary parses the
//!   command line around it.

pub use parvis_model as model;

pub mod app;
pub mod edges;
pub mod engine;
