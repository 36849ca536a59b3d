//! Compile-time checks of `#[client]`. Snapshots were made on Rust 1.95; bless new ones with
//! `TRYBUILD=overwrite cargo test -p palisade-client-macros --test ui`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
