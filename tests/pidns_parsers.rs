//! The pure parsers of sandboxed clients' requests: the `pidns NS PID`
//! request and its answers, the kernel-thread flag of `/proc/PID/stat`, and
//! the `NSpid` line of `/proc/PID/status`.

mod support;

use portpick::__private::pidns::{parse_nspid, NsPid};
use portpick::__private::protocol::{parse_request, Request, RequestError, Status};
use portpick::__private::server::{parse_stat, StatError};
use support::whole;

#[test]
fn namespaced_requests() {
    use portpick::__private::protocol::{format_namespaced_request, MAX_NAMESPACED_LEN};
    let ns = 4_026_532_178;
    assert_eq!(format_namespaced_request(ns, 7), b"pidns 4026532178 7\n");
    for (text, want) in [
        (
            &b"pidns 4026532178 7\n"[..],
            Ok(Request::AllocateIn {
                namespace: ns,
                pid: 7,
            }),
        ),
        (
            b"pidns 4026532178 7\r\n",
            Ok(Request::AllocateIn {
                namespace: ns,
                pid: 7,
            }),
        ),
        (
            b"pidns 4026532178 -3\n",
            Ok(Request::AllocateIn {
                namespace: ns,
                pid: -3,
            }),
        ),
        (
            b"pidns 18446744073709551615 4194303\n",
            Ok(Request::AllocateIn {
                namespace: u64::MAX,
                pid: 4_194_303,
            }),
        ),
        (
            b"pidns 18446744073709551616 7\n",
            Err(RequestError::BadNamespace),
        ),
        (b"pidns 0 7\n", Err(RequestError::BadNamespace)),
        (b"pidns 4026532178\n", Err(RequestError::BadNamespace)),
        (b"pidns 4026532178 \n", Err(RequestError::BadNamespace)),
        (b"pidns  4026532178 7\n", Err(RequestError::BadNamespace)),
        (
            b"pidns 4026532178  7\n",
            Err(RequestError::InvalidByte { byte: b' ', at: 17 }),
        ),
        (
            b"pidns 4026532178 7x\n",
            Err(RequestError::InvalidByte { byte: b'x', at: 18 }),
        ),
        (b"pidns 4026532178 7\n8", Err(RequestError::TrailingData)),
    ] {
        assert_eq!(whole(text), want, "{:?}", String::from_utf8_lossy(text));
    }
    // Only the namespaced form may pass Python's 20 bytes.
    let long = b"pidns 4026532178 4194303 and a good deal more than allowed\n";
    assert!(long.len() > MAX_NAMESPACED_LEN);
    assert_eq!(whole(long), Err(RequestError::TooLong { len: long.len() }));
    assert_eq!(
        parse_request(b"pidns 4026532178 419", false),
        Ok(Status::Partial)
    );
    assert_eq!(
        parse_request(&long[..MAX_NAMESPACED_LEN + 1], false),
        Err(RequestError::TooLong {
            len: MAX_NAMESPACED_LEN + 1
        })
    );
}

#[test]
fn namespaced_replies() {
    use portpick::__private::protocol::{format_denial, parse_namespaced_reply, NamespacedReply};
    assert_eq!(format_denial("no such\nprocess"), b"0 no such process\n");
    assert_eq!(
        parse_namespaced_reply(&format_denial("pid is a kernel thread")),
        Ok(NamespacedReply::Denied("pid is a kernel thread".into()))
    );
    assert_eq!(
        parse_namespaced_reply(b"15000\n"),
        Ok(NamespacedReply::Port(15000))
    );
    assert_eq!(
        parse_namespaced_reply(b"0\n"),
        Ok(NamespacedReply::Denied(String::new()))
    );
    assert_eq!(parse_namespaced_reply(b""), Ok(NamespacedReply::Silent));
    assert!(parse_namespaced_reply(b"no\n").is_err());
}

#[test]
fn kernel_threads_in_stat_lines() {
    assert_eq!(
        parse_stat(b"7 (x) S 1 2 3 4 5 6"),
        Err(StatError::MissingField { field: 20 })
    );
    assert_eq!(
        parse_stat(b"7 (x) S 1 7 7 0 -1 -4 0 0 0 0 0 0 0 0 20 0 1 0 42 0"),
        Err(StatError::BadFlags)
    );
    // kthreadd: PF_KTHREAD (0x200000) in field 9.
    let kthreadd = b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 2 0 0\n";
    let s = parse_stat(kthreadd).unwrap();
    assert!(s.is_kernel_thread() && s.is_running());
    let sleep = b"1234 (sleep) S 1 1234 1234 0 -1 4194304 95 0 0 0 0 0 0 0 20 0 1 0 5551212 0\n";
    assert!(!parse_stat(sleep).unwrap().is_kernel_thread());
}

#[test]
fn nspid_lines() {
    let host = b"Name:\tsleep\nPid:\t42\nNSpid:\t42\nNStgid:\t42\n";
    let want = NsPid {
        outer: 42,
        inner: 42,
        levels: 1,
    };
    assert_eq!(parse_nspid(host), Some(want));
    let nested = b"NSpid:\t4242\t17\t1\n";
    let want = NsPid {
        outer: 4242,
        inner: 1,
        levels: 3,
    };
    assert_eq!(parse_nspid(nested), Some(want));
    for bad in [
        &b"Pid:\t42\n"[..],
        b"NSpid:\n",
        b"NSpid:\t42\tx\n",
        b"NSpid:\t-1\n",
        b"NSpid:\t4294967296\n",
    ] {
        assert_eq!(parse_nspid(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}
