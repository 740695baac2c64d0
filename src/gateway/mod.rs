//! The request lifecycle on top of the steps: routing, one verification-and-mint pass
//! (`flow`), parking while keys are fetched, reuse of credentials, callouts and replies.
#[cfg(test)]
mod credentials_endpoint_tests;
pub mod flow;
pub mod lifecycle;
#[cfg(test)]
pub(crate) mod lifecycle_model;
#[cfg(test)]
mod lifecycle_tests;
pub mod parking;
pub mod request;
pub mod reuse;
pub mod route;
