//! The JSON wire format (`Accept: application/json`), through serde.
