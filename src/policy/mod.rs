//! Who may mint, and for which tenant.
pub mod authorize;
pub mod scope;
