//! Complex-number arithmetic over waPC with protobuf messages (`complex.proto`): `add` and
//! `mul` take a `complex.Pair` and answer a `complex.Complex`. Deployed with the `.proto`,
//! it is callable with JSON over HTTP and gRPC; the server transcodes.

use prost::Message;
use wapc_guest::prelude::*;

/// `complex.Complex`, written out with prost's derive (no code generation step).
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Complex {
    #[prost(double, tag = "1")]
    pub re: f64,
    #[prost(double, tag = "2")]
    pub im: f64,
}

/// `complex.Pair`
#[derive(Clone, Copy, PartialEq, Message)]
pub struct Pair {
    #[prost(message, optional, tag = "1")]
    pub a: Option<Complex>,
    #[prost(message, optional, tag = "2")]
    pub b: Option<Complex>,
}

#[no_mangle]
pub fn wapc_init() {
    register_function("add", add);
    register_function("mul", mul);
}

fn operands(payload: &[u8]) -> Result<(Complex, Complex), Box<dyn std::error::Error + Send + Sync>> {
    let pair = Pair::decode(payload)?;
    Ok((pair.a.unwrap_or_default(), pair.b.unwrap_or_default()))
}

fn add(payload: &[u8]) -> CallResult {
    let (a, b) = operands(payload)?;
    Ok(Complex { re: a.re + b.re, im: a.im + b.im }.encode_to_vec())
}

fn mul(payload: &[u8]) -> CallResult {
    let (a, b) = operands(payload)?;
    Ok(Complex {
        re: a.re * b.re - a.im * b.im,
        im: a.re * b.im + a.im * b.re,
    }
    .encode_to_vec())
}
