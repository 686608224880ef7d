#![allow(dead_code)]

//! Portservers in the test process: embedded ones, one-shot fakes, and clients that talk to them raw.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread::JoinHandle;

use portpick::server::{Level, PortServer, ServerConfig, ServerHandle};
use portpick::PortServerAddress;

use super::{unique_address, PATIENCE};

/// Connects to a portserver address (`@name` or a path).
pub fn connect(address: &str) -> std::io::Result<UnixStream> {
    let addr: PortServerAddress = address.parse().unwrap();
    let sa = addr.to_socket_addr()?;
    let stream = UnixStream::connect_addr(&sa)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    stream.set_write_timeout(Some(PATIENCE))?;
    Ok(stream)
}

/// Sends raw bytes as one request and reads the reply until EOF.
pub fn raw_request(address: &str, request: &[u8]) -> Vec<u8> {
    let mut s = connect(address).unwrap();
    s.write_all(request).unwrap();
    // Done writing: an empty or unterminated request ends here, at once.
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    match s.read_to_end(&mut reply) {
        Ok(_) => {}
        // The server may close with part of a bad request unread.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("reading the reply from {address}: {e}"),
    }
    reply
}

/// Asks for a port for `pid` the way a Python client does.
pub fn ask(address: &str, pid: u32) -> Option<u16> {
    let reply = raw_request(address, format!("{pid}\n").as_bytes());
    if reply.is_empty() {
        return None;
    }
    let text = String::from_utf8(reply).unwrap();
    Some(text.trim_end().parse().unwrap())
}

/// The stats of a server as `name -> value`.
pub fn stats(address: &str) -> std::collections::BTreeMap<String, u64> {
    portpick::get_port_server_stats(address, PATIENCE)
        .unwrap()
        .into_iter()
        .collect()
}

/// One stat of a server.
pub fn stat(address: &str, name: &str) -> u64 {
    *stats(address)
        .get(name)
        .unwrap_or_else(|| panic!("no stat {name}"))
}

/// An embedded server on a fresh abstract address with `ports`, quiet.
pub fn embedded(ports: &[u16]) -> (String, ServerHandle) {
    embedded_with(ports, |c| c)
}

/// An embedded server whose config `f` may change.
pub fn embedded_with(
    ports: &[u16],
    f: impl FnOnce(ServerConfig) -> ServerConfig,
) -> (String, ServerHandle) {
    let address = unique_address("srv");
    let config = ServerConfig::new(address.parse().unwrap())
        .ports(ports.iter().copied())
        .log_level(Level::Error);
    let server = PortServer::new(f(config)).start().unwrap();
    (address, server)
}

/// A one-connection fake portserver: reads the request line, then does
/// `answer`, then closes its sending side and reads whatever else the
/// client sends until it hangs up. Returns everything it received.
pub fn one_shot_server(
    address: &str,
    answer: impl FnOnce(&mut UnixStream) + Send + 'static,
) -> JoinHandle<Vec<u8>> {
    let listener = listen(address);
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\n") && s.read(&mut byte).unwrap_or(0) == 1 {
            got.push(byte[0]);
        }
        answer(&mut s);
        // The client must send nothing after its line: see what else comes
        // before it hangs up (bounded by the read timeout).
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        got.extend(rest);
        got
    })
}

/// A listener on a portserver address.
pub fn listen(address: &str) -> UnixListener {
    let addr: PortServerAddress = address.parse().unwrap();
    UnixListener::bind_addr(&addr.to_socket_addr().unwrap()).unwrap()
}

/// A request as the server reads it at the end of input.
pub fn whole(
    buf: &[u8],
) -> Result<portpick::__private::protocol::Request, portpick::__private::protocol::RequestError> {
    use portpick::__private::protocol::{parse_request, Status};
    match parse_request(buf, true) {
        Ok(Status::Complete(request)) => Ok(request),
        Ok(Status::Partial) => panic!("partial at the end of input"),
        Err(e) => Err(e),
    }
}
