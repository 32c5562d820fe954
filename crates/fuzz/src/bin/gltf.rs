//! AFL's inputs to the `gltf` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::gltf(data));
}
