//! RGW's STS: the session name, the signed AssumeRole request, its answer, and the
//! credentials bodies the client gets.
pub mod credentials;
pub mod request;
pub mod response;
pub mod session;
