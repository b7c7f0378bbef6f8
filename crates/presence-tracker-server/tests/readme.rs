//! The root README shows the server crate's wiring, rooms and several nodes as `rust,ignore`
//! blocks (the core's doc tests cannot build them); they must be the blocks this crate's README
//! compiles.

fn blocks<'a>(text: &'a str, fence: &str) -> Vec<&'a str> {
    text.split(fence)
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .collect()
}

#[test]
fn the_root_readme_shows_the_compiled_wiring() {
    let root = include_str!("../../../README.md");
    let ours = include_str!("../README.md");
    let shown = blocks(root, "```rust,ignore\n");
    let mut compiled = blocks(ours, "```rust,no_run\n");
    compiled.extend(blocks(ours, "```rust\n"));
    assert_eq!(
        shown.len(),
        4,
        "the root README shows both integrations, rooms and several nodes"
    );
    for block in shown {
        assert!(
            compiled.contains(&block),
            "a block of the root README is not compiled here:\n{block}"
        );
    }
}
