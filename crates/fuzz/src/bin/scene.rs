//! AFL's inputs to the `scene` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::scene(data));
}
