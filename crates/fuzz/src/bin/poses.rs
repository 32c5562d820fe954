//! AFL's inputs to the `poses` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::poses(data));
}
