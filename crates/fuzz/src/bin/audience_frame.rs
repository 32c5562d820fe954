//! AFL's inputs to the `audience_frame` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::audience_frame(data));
}
