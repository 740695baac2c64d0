//! Who may mint, and for which tenant: the rules and tenants as configured (`rules`), the check
//! of a verified token against them (`authorize`), and the session policy of a tenant (`scope`).
pub mod authorize;
pub mod rules;
pub mod scope;
