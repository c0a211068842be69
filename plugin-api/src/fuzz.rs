//! The entry point for the provider ABI's fuzz target in `fuzz/`: the host's side of the
//! boundary, fed a provider that answers whatever the input says. The descriptor (versions,
//! size, strings, capabilities, which functions exist) and every answer (status codes,
//! messages, credentials of any size and kind, with or without their strings, handed out on
//! success or beside an error) come from the input; the provider follows the ABI's memory rules, as even a wrong provider does when it
//! is written in C with care. The host must answer each case with a value or an error, and
//! give back every allocation exactly once: the provider keeps the addresses it handed out and
//! panics on one it does not know. (Run without a sanitizer, this finds wrong answers, panics
//! and misuse of the provider's memory, not every stray read.)
//!
//! The test below runs every input in `fuzz/regressions/provider/`.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::ffi::{CString, c_char};
use std::path::Path;
use std::sync::Mutex;
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
    /// Whether a lookup hands out its credential even when its code is an error (which the
    /// host must give back unread).
    even_on_error: bool,
}

static ANSWER: Mutex<Option<Answer>> = Mutex::new(None);
/// The addresses of what the provider handed out and has not had back.
static OUTSTANDING: Mutex<Option<HashSet<usize>>> = Mutex::new(None);

fn handed_out(address: usize) {
    let mut outstanding = OUTSTANDING.lock().unwrap();
    outstanding.get_or_insert_with(HashSet::new).insert(address);
}

/// Takes `address` back; panics when the provider did not hand it out or had it back already.
fn given_back(address: usize, what: &str) {
    let mut outstanding = OUTSTANDING.lock().unwrap();
    let known = outstanding
        .get_or_insert_with(HashSet::new)
        .remove(&address);
    assert!(
        known,
        "the host gave back a {what} it was not handed, or gave it back twice"
    );
}

fn outstanding() -> usize {
    OUTSTANDING.lock().unwrap().as_ref().map_or(0, HashSet::len)
}

fn hand_out_message(message: Option<CString>, out: *mut *mut c_char) {
    if let Some(message) = message {
        let raw = message.into_raw();
        handed_out(raw as usize);
        // SAFETY: the host passes a valid out-pointer.
        unsafe { *out = raw };
    }
}

/// Calls that reached the provider, for the test below.
#[cfg(test)]
static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn answer() -> Answer {
    #[cfg(test)]
    CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
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
    if (answer.code == abi::status::OK || answer.even_on_error)
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
        let raw = Box::into_raw(allocated);
        handed_out(raw as usize);
        // SAFETY: the host passes a valid out-pointer. `raw` is the first field of a
        // `repr(C)` struct, so the pointer to it is the pointer to the allocation.
        unsafe { *credential = raw.cast() };
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
    given_back(credential as usize, "credential");
    // SAFETY: made by `lookup` from a box of `Allocated` (checked above), given back once.
    drop(unsafe { Box::from_raw(credential.cast::<Allocated>()) });
}

unsafe extern "C" fn free_message(message: *mut c_char) {
    given_back(message as usize, "message");
    // SAFETY: made by `hand_out_message` with `CString::into_raw` (checked above), given back
    // once.
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
        // Any size up to what was allocated: a provider never claims more than it has.
        let size = if shape & 2 == 2 {
            abi::CREDENTIAL_SIZE_1_0 as u32
        } else {
            u32::from(input.byte()) % (abi::CREDENTIAL_SIZE_1_0 as u32 + 1)
        };
        let kind = u32::from(input.byte() % 5);
        (size, kind, input.string(), input.string())
    });
    Answer {
        code,
        message,
        credential,
        even_on_error: shape & 4 == 4,
    }
}

/// A descriptor made from the input, and the strings it points to; freed when dropped.
struct Made {
    descriptor: *mut Descriptor,
    _strings: (Option<CString>, Option<CString>, Option<CString>),
}

impl Drop for Made {
    fn drop(&mut self) {
        // SAFETY: made by `Box::into_raw` below; the provider that used it is gone.
        drop(unsafe { Box::from_raw(self.descriptor) });
    }
}

/// One provider made from the input, loaded, and called once each way.
pub fn provider(data: &[u8]) {
    // The provider's answers and memory are process-wide: one input at a time (tests run in
    // parallel; libFuzzer does not).
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut input = Input(data);
    let flags = input.byte();
    let header = input.byte();
    let strings = (input.string(), input.string(), input.string());
    let capabilities = u32::from(input.byte());
    let pointer = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    let descriptor = Box::into_raw(Box::new(Descriptor {
        abi_major: if header & 1 == 0 {
            abi::ABI_MAJOR
        } else {
            u16::from(header)
        },
        abi_minor: u16::from(header >> 4),
        // Any size up to what was allocated.
        size: if header & 2 == 0 {
            abi::DESCRIPTOR_SIZE_1_0 as u32
        } else {
            u32::from(input.byte()) % (abi::DESCRIPTOR_SIZE_1_0 as u32 + 1)
        },
        name: pointer(&strings.0),
        version: pointer(&strings.1),
        description: pointer(&strings.2),
        capabilities,
        lookup: (flags & 1 == 0).then_some(lookup as abi::LookupFn),
        store: (flags & 2 == 0).then_some(store as abi::StoreFn),
        erase: (flags & 4 == 0).then_some(erase as abi::EraseFn),
        free_credential: (flags & 8 == 0).then_some(free_credential as abi::FreeCredentialFn),
        free_message: (flags & 16 == 0).then_some(free_message as abi::FreeMessageFn),
    }));
    // Dropped last, after the provider made from it.
    let _made = Made {
        descriptor,
        _strings: strings,
    };
    // SAFETY: a whole descriptor, valid until `_made` is dropped, after `loaded`; its functions
    // follow the ABI's memory rules, and every call below is answered at once.
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
        match &outcome {
            Err(host::CallError::TimedOut(_) | host::CallError::Hung) => {
                panic!("a call of a provider that answers at once timed out")
            }
            // The call's thread panicked: the host's own code, or the provider's checks.
            Err(host::CallError::Broken(why)) if why.contains("ended without an answer") => {
                panic!("a call panicked: {why}")
            }
            _ => {}
        }
        // A call the host did not make leaves its answer unused.
        ANSWER.lock().unwrap().take();
        assert_eq!(
            outstanding(),
            0,
            "the host did not give back everything the provider handed out"
        );
    }
    drop(loaded);
}

#[cfg(test)]
mod tests {
    #[test]
    fn fuzz_regressions_stay_fixed() {
        tollgate_tests::fuzz::replay_regressions("provider", super::provider);
    }

    #[test]
    fn a_credential_set_beside_an_error_is_given_back() {
        // A lookup that fails with `other` and a message, having set a whole license key
        // credential anyway: the host answers the error and frees both (`provider` checks that
        // nothing stays outstanding).
        let data = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/regressions/provider/credential-beside-an-error"
        ))
        .unwrap();
        super::provider(&data);
    }

    #[test]
    fn a_whole_provider_goes_through_every_call() {
        // Loads, then lookup gives a token, store fails with a message, erase succeeds.
        let data = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fuzz/regressions/provider/whole-path"
        ))
        .unwrap();
        let before = super::CALLS.load(std::sync::atomic::Ordering::SeqCst);
        super::provider(&data);
        let after = super::CALLS.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            after - before >= 3,
            "{} calls reached the provider",
            after - before
        );
    }
}
