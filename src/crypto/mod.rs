//! Signatures and signing: the JWS checks every verifier shares, RSA, ECDSA and EdDSA verification
//! of tokens, SigV4 signing of STS requests.
pub mod ec_sig;
pub mod jws;
mod rsa_math;
pub mod rsa_sig;
pub mod sigv4;
