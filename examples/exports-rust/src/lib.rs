//! Functions called by export name (Wafer's "plain exports" ABI; see `docs/calls.md`).
//!
//! Numbers cross directly. A string or byte array argument arrives as `(ptr, len)` in a
//! buffer the host got from `allocate` (and frees with `deallocate` after the call); a string
//! or byte array result leaves as one `i64`, `(ptr << 32) | len`, of a buffer this module
//! allocated and the host frees with `deallocate`.

/// `sum(3, 2) -> 5`
#[no_mangle]
pub extern "C" fn sum(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}

/// 64-bit integers and floats work the same way.
#[no_mangle]
pub extern "C" fn mul64(a: i64, b: i64) -> i64 {
    a.wrapping_mul(b)
}

/// (Not named `hypot`: an export named like a libm function would replace it.)
#[no_mangle]
pub extern "C" fn norm(a: f64, b: f64) -> f64 {
    a.hypot(b)
}

/// Integer division; dividing by zero traps.
#[no_mangle]
pub extern "C" fn div(a: i32, b: i32) -> i32 {
    if b == 0 {
        core::arch::wasm32::unreachable()
    }
    a / b
}

/// Allocates `len` bytes for the host to write an argument into.
#[no_mangle]
pub extern "C" fn allocate(len: i32) -> i32 {
    let mut buffer = Vec::<u8>::with_capacity(len as usize);
    let ptr = buffer.as_mut_ptr();
    std::mem::forget(buffer);
    ptr as i32
}

/// Frees a buffer from `allocate`, or one returned by a function below.
///
/// # Safety
/// `ptr` and `len` must describe a buffer from `allocate(len)` or from `pack`.
#[no_mangle]
pub unsafe extern "C" fn deallocate(ptr: i32, len: i32) {
    drop(Vec::from_raw_parts(ptr as *mut u8, 0, len as usize));
}

/// Borrows an argument buffer.
///
/// # Safety
/// `ptr` and `len` must describe a live buffer.
unsafe fn bytes<'a>(ptr: i32, len: i32) -> &'a [u8] {
    std::slice::from_raw_parts(ptr as *const u8, len as usize)
}

/// Hands a result buffer to the host as `(ptr << 32) | len`.
fn pack(bytes: Vec<u8>) -> i64 {
    let len = bytes.len() as u32;
    // A boxed slice has capacity == len, as `deallocate` assumes.
    let ptr = Box::into_raw(bytes.into_boxed_slice()) as *mut u8 as u32;
    ((ptr as u64) << 32 | len as u64) as i64
}

/// `greet("world") -> "Hello, world!"`
///
/// # Safety
/// The host passes a live buffer.
#[no_mangle]
pub unsafe extern "C" fn greet(ptr: i32, len: i32) -> i64 {
    let name = String::from_utf8_lossy(bytes(ptr, len));
    pack(format!("Hello, {name}!").into_bytes())
}

/// Reverses bytes.
///
/// # Safety
/// The host passes a live buffer.
#[no_mangle]
pub unsafe extern "C" fn reverse(ptr: i32, len: i32) -> i64 {
    let mut out = bytes(ptr, len).to_vec();
    out.reverse();
    pack(out)
}

/// Counts the bytes of a string and adds a number: mixed arguments.
///
/// # Safety
/// The host passes a live buffer.
#[no_mangle]
pub unsafe extern "C" fn count_plus(ptr: i32, len: i32, extra: i32) -> i32 {
    bytes(ptr, len).len() as i32 + extra
}

/// Never returns: the call's time limit ends it.
#[no_mangle]
pub extern "C" fn spin() {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
