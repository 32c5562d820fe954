//! AFL's inputs to the `subtitles` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::subtitles(data));
}
