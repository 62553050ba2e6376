//! Shared pieces of the lunet benchmark tools (`src/bin/`): command-line
//! parsing and the histogram summary they all print.
//!
//! The tools stay small and dependency-light on purpose: they run on the same
//! two cores as the server they measure, so every cycle they spend is taken
//! from the thing under test.

pub mod cli;
pub mod report;
