//! Entry point. `passt` and `pasta` are the same program: the mode comes
//! from the basename of argv[0], so a `pasta -> passt` symlink works too.

#![forbid(unsafe_code)]

/// Counts allocations, for the no-allocation check (see `passt_rs::CountingAlloc`).
#[global_allocator]
static ALLOC: passt_rs::CountingAlloc = passt_rs::CountingAlloc;

fn main() {
    passt_rs::exit(passt_rs::main());
}
