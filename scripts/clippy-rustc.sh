#!/usr/bin/env bash
# The compiler scripts/test.sh builds the workspace's own crates with (RUSTC_WORKSPACE_WRAPPER):
# clippy-driver, which is rustc with Clippy's lints, with every warning an error. So the one
# debug build of the tests is also the lint pass of `cargo clippy --workspace --all-targets --
# -D warnings`, instead of a second, check-only build of every dependency (the largest single
# cost of a cold CI run on 2 cores). Cargo calls it as `<this> <rustc> <args...>`; dependencies
# are compiled by plain rustc. CLIPPY_DRIVER is the driver's path (`rustup which clippy-driver`).
set -euo pipefail
exec "${CLIPPY_DRIVER:?CLIPPY_DRIVER: the path of clippy-driver}" "$@" -D warnings
