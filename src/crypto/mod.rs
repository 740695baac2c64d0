//! Signatures and signing: RSA verification of tokens, SigV4 signing of STS requests.
mod rsa_math;
pub mod rsa_sig;
pub mod sigv4;
