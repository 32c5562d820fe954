//! AFL's inputs to the `nats` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::nats(data));
}
