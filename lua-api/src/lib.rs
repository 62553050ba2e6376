//! lunet lua
