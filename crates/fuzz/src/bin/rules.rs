//! AFL's inputs to the `rules` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::rules(data));
}
