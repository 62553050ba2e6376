//! lunet-connector: the load generator (being built).
