#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tollgate_plugin_api::fuzz::provider(data));
