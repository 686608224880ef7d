#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portpick::__private::fuzz::stat(data));
