//! AFL's inputs to the `moderation` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::moderation(data));
}
