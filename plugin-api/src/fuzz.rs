//! The entry point for the provider ABI's fuzz target in `fuzz/`: the host's side of the
//! boundary, fed a provider that answers whatever the input says. The descriptor (versions,
//! size, strings, capabilities, which functions exist) and every answer (status codes,
//! messages, credentials of any size and kind, with or without their strings) come from the
//! input; the provider follows the ABI's memory rules, as even a wrong provider does when it
//! is written in C with care. The host must answer each case with a value or an error, and
//! give back every allocation exactly once.
//!
//! The test below runs every input in `fuzz/regressions/provider/`.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use crate::abi::{self, Descriptor, RawCredential, RawRequest};
use crate::host;
use crate::{Credential, Request, Secret};

/// Reads the input a byte at a time; past its end, zeros.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }

    /// Null (length byte 0), or a string of length byte - 1 bytes, without NULs.
    fn string(&mut self) -> Option<CString> {
        let len = usize::from(self.byte()).checked_sub(1)?;
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        let bytes: Vec<u8> = taken.iter().copied().filter(|b| *b != 0).collect();
        Some(CString::new(bytes).expect("no NULs"))
    }
}

/// What the provider answers next, and what it has handed out and not had back.
struct Answer {
    code: i32,
    message: Option<CString>,
    credential: Option<(u32, u32, Option<CString>, Option<CString>)>,
}

static ANSWER: Mutex<Option<Answer>> = Mutex::new(None);
static OUTSTANDING: AtomicIsize = AtomicIsize::new(0);

fn hand_out_message(message: Option<CString>, out: *mut *mut c_char) {
    if let Some(message) = message {
        OUTSTANDING.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the host passes a valid out-pointer.
        unsafe { *out = message.into_raw() };
    }
}

fn answer() -> Answer {
    ANSWER.lock().unwrap().take().expect("one answer per call")
}

/// A credential as the provider allocates it, keeping its strings alive until it is freed.
#[repr(C)]
struct Allocated {
    raw: RawCredential,
    strings: (Option<CString>, Option<CString>),
}

unsafe extern "C" fn lookup(
    _request: *const RawRequest,
    credential: *mut *mut RawCredential,
    message: *mut *mut c_char,
) -> i32 {
    let answer = answer();
    hand_out_message(answer.message, message);
    if answer.code == abi::status::OK
        && let Some((size, kind, user, secret)) = answer.credential
    {
        let allocated = Box::new(Allocated {
            raw: RawCredential {
                size,
                kind,
                user: user.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                secret: secret.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            },
            strings: (user, secret),
        });
        OUTSTANDING.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the host passes a valid out-pointer. `raw` is the first field of a
        // `repr(C)` struct, so the pointer to it is the pointer to the allocation.
        unsafe { *credential = Box::into_raw(allocated).cast() };
    }
    answer.code
}

unsafe extern "C" fn store(
    _request: *const RawRequest,
    _credential: *const RawCredential,
    message: *mut *mut c_char,
) -> i32 {
    let answer = answer();
    hand_out_message(answer.message, message);
    answer.code
}

unsafe extern "C" fn erase(_request: *const RawRequest, message: *mut *mut c_char) -> i32 {
    let answer = answer();
    hand_out_message(answer.message, message);
    answer.code
}

unsafe extern "C" fn free_credential(credential: *mut RawCredential) {
    OUTSTANDING.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: made by `lookup` from a box of `Allocated`, given back once.
    drop(unsafe { Box::from_raw(credential.cast::<Allocated>()) });
}

unsafe extern "C" fn free_message(message: *mut c_char) {
    OUTSTANDING.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: made by `hand_out_message` with `CString::into_raw`, given back once.
    drop(unsafe { CString::from_raw(message) });
}

fn next_answer(input: &mut Input<'_>) -> Answer {
    // Mostly the ABI's own codes, sometimes anything.
    let code = match input.byte() {
        b @ 0..=5 => i32::from(b),
        b => i32::from(b as i8) * 1000,
    };
    let message = input.string();
    let shape = input.byte();
    let credential = (shape & 1 == 1).then(|| {
        let size = if shape & 2 == 2 {
            abi::CREDENTIAL_SIZE_1_0 as u32
        } else {
            u32::from(input.byte())
        };
        let kind = u32::from(input.byte() % 5);
        (size, kind, input.string(), input.string())
    });
    Answer {
        code,
        message,
        credential,
    }
}

/// One provider made from the input, loaded, and called once each way.
pub fn provider(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.byte();
    let header = input.byte();
    let strings = (input.string(), input.string(), input.string());
    let capabilities = u32::from(input.byte());
    let descriptor = Box::leak(Box::new(Descriptor {
        abi_major: if header & 1 == 0 {
            abi::ABI_MAJOR
        } else {
            u16::from(header)
        },
        abi_minor: u16::from(header >> 4),
        size: if header & 2 == 0 {
            abi::DESCRIPTOR_SIZE_1_0 as u32
        } else {
            u32::from(input.byte())
        },
        name: strings.0.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        version: strings.1.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        description: strings.2.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        capabilities,
        lookup: (flags & 1 == 0).then_some(lookup as abi::LookupFn),
        store: (flags & 2 == 0).then_some(store as abi::StoreFn),
        erase: (flags & 4 == 0).then_some(erase as abi::EraseFn),
        free_credential: (flags & 8 == 0).then_some(free_credential as abi::FreeCredentialFn),
        free_message: (flags & 16 == 0).then_some(free_message as abi::FreeMessageFn),
    }));
    // The descriptor's strings live as long as the descriptor.
    std::mem::forget(strings);
    // SAFETY: a full descriptor that lives for the rest of the process; its functions follow
    // the ABI's memory rules.
    let Ok(loaded) = (unsafe { host::from_descriptor(Path::new("fuzz"), descriptor) }) else {
        return;
    };
    assert!(loaded.name.len() <= 64, "a bad name was accepted");
    let url = input
        .string()
        .map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned())
        .unwrap_or_default();
    let request = Request {
        url,
        interactive: input.byte() & 1 == 1,
    };
    let secret = Secret::new(String::from_utf8_lossy(&[input.byte(), input.byte()]));
    let limit = Duration::from_secs(10);
    for call in 0..3 {
        *ANSWER.lock().unwrap() = Some(next_answer(&mut input));
        let outcome = match call {
            0 => loaded.lookup(&request, limit).map(|_| ()),
            1 => loaded.store(&request, &Credential::Token(secret.clone()), limit),
            _ => loaded.erase(&request, limit),
        };
        assert!(
            !matches!(
                outcome,
                Err(host::CallError::TimedOut(_) | host::CallError::Hung)
            ),
            "a call of a provider that answers at once timed out"
        );
        // A call the host did not make leaves its answer unused.
        ANSWER.lock().unwrap().take();
        assert_eq!(
            OUTSTANDING.load(Ordering::SeqCst),
            0,
            "the host did not give back exactly what the provider handed out"
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fuzz_regressions_stay_fixed() {
        tollgate_tests::fuzz::replay_regressions("provider", super::provider);
    }
}
