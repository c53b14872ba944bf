//! A webhook receiver for the tests: a real HTTP/1.1 server on a local port (std sockets, one
//! request per connection) that records every request's body and answers with the status it is
//! set to, or holds the request without ever answering. Stopped and started again on the same
//! port, it plays a receiver that restarts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// With this status.
    Answer(u16),
    /// Never: the connection is kept open, unanswered, until [`Receiver::release`] or the end.
    Hold,
}

/// A request received: its body, its `Authorization` header, and the status answered (`None`:
/// held).
#[derive(Clone, Debug)]
pub struct Received {
    pub body: String,
    pub authorization: Option<String>,
    pub answered: Option<u16>,
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    held: Vec<TcpStream>,
}

pub struct Receiver {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    shared: Arc<Mutex<Shared>>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// A receiver on `port` (0: any free one) of 127.0.0.1.
    pub fn start(port: u16, mode: Mode) -> Receiver {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("the receiver's port");
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(Mutex::new(mode));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let (mode, shared, stopping) = (mode.clone(), shared.clone(), stopping.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &mode, &shared);
                    }
                }
            })
        };
        Receiver {
            port,
            mode,
            shared,
            stopping,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    /// The bodies of the requests answered with a 2xx, in order.
    pub fn accepted(&self) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
            .map(|r| serde_json::from_str(&r.body).expect("a JSON body"))
            .collect()
    }

    /// Whether the first request held is still open and unanswered: its client has neither
    /// closed it nor sent more.
    pub fn first_held_open(&self) -> bool {
        let shared = self.shared.lock().unwrap();
        let Some(s) = shared.held.first() else {
            return false;
        };
        s.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let open =
            matches!(s.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        s.set_nonblocking(false).unwrap();
        open
    }

    /// Closes every held request without an answer.
    pub fn release(&self) {
        self.shared.lock().unwrap().held.clear();
    }

    /// Stops listening (the port is free again) and closes held requests.
    pub fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stopping.store(true, Ordering::SeqCst);
            // Wakes the accept loop, which sees `stopping` and drops the listener.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            t.join().unwrap();
        }
        self.release();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads one request and answers it as `mode` says (or holds it).
fn serve(stream: TcpStream, mode: &Mutex<Mode>, shared: &Mutex<Shared>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut length = 0;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            } else if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_owned());
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let body = String::from_utf8(body).unwrap();
    let mode = *mode.lock().unwrap();
    let mut shared = shared.lock().unwrap();
    match mode {
        Mode::Answer(status) => {
            shared.received.push(Received {
                body,
                authorization,
                answered: Some(status),
            });
            let mut stream = stream;
            let _ = stream.write_all(
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
        Mode::Hold => {
            shared.received.push(Received {
                body,
                authorization,
                answered: None,
            });
            shared.held.push(stream);
        }
    }
}
