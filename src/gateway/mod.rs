//! The request lifecycle on top of the steps: routing, one verification-and-mint pass
//! (`flow`), parking while keys are fetched, reuse of credentials, callouts and replies.
pub mod flow;
pub mod lifecycle;
pub mod parking;
pub mod request;
pub mod reuse;
pub mod route;
