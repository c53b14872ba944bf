//! Benchmark helper for `bench/waas.py`: an HTTP/1.1 server fast enough not to be what a
//! benchmark of the web application firewall measures. Keep-alive, a thread per connection; every
//! request (its body, by `Content-Length`, read and dropped) gets `200 ok`.
//!
//! Usage: `fast_http ADDRESS:PORT`

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address] = args.as_slice() else { usage() };
    let listener = TcpListener::bind(address.as_str()).unwrap_or_else(|e| {
        eprintln!("fast_http: {address}: {e}");
        std::process::exit(1)
    });
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
}

fn usage() -> ! {
    eprintln!("usage: fast_http ADDRESS:PORT");
    std::process::exit(2)
}

/// Answers the requests of one connection until the client closes it.
fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut out = stream.try_clone().expect("clone");
    let mut input = BufReader::new(stream);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        let mut length = 0usize;
        let mut first = true;
        loop {
            line.clear();
            match input.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" && !first {
                break;
            }
            first = false;
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        body.resize(length, 0);
        if input.read_exact(&mut body).is_err() {
            return;
        }
        if out
            .write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
            )
            .is_err()
        {
            return;
        }
    }
}
