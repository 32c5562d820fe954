//! AFL's inputs to the `osc` target (see the crate's docs).

fn main() {
    afl::fuzz!(|data: &[u8]| parvis_fuzz::osc(data));
}
