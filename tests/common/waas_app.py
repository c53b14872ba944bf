"""The application tests/waas.rs puts behind the web application firewall: a small JSON API on
Python's http.server (HTTP/1.1, keep-alive), started as the defender's child and binding its port.

Usage: waas_app.py READY_FILE ADDRESS PORT [LISTENERS]. It binds ADDRESS:PORT (LISTENERS sockets,
with SO_REUSEPORT when more than one), then writes READY_FILE: one line per listener with the
address getsockname() gives it (behind the firewall: a loopback address).

  GET  /status/CODE  answers CODE with the body "status CODE"
  GET  anything else a JSON object: method, path, X-Forwarded-For and Upgrade as received, the
                     listener, and which of the connections it accepted carries the request
                     (1, 2, ... in order: the tests see whether the firewall's are kept alive)
  POST /echo         the body exactly as received (Content-Length or chunked), same content type
  POST /form         the body parsed as a form whatever its content type (parse_qs, as lenient
                     frameworks do), its fields as a JSON object of lists (bytes as Latin-1)
  GET  /ws           with Upgrade: websocket, answers 101 and then echoes raw bytes
"""
import itertools
import json
import os
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ready, address, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
listeners = int(sys.argv[4]) if len(sys.argv) > 4 else 1
family = socket.AF_INET6 if ":" in address else socket.AF_INET


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body are two writes: with Nagle's algorithm the body would wait for the
    # client's delayed ACK of the head (about 40 ms a response), which bench/waas.py would measure.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def setup(self):
        # Once per connection; next() on a count is atomic under the interpreter's lock.
        self.connection_number = next(self.server.accepted)
        super().setup()

    def reply(self, code, body, content_type="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/status/"):
            code = int(self.path[len("/status/"):])
            return self.reply(code, f"status {code}".encode(), "text/plain")
        if self.path == "/ws" and self.headers.get("Upgrade", "").lower() == "websocket":
            self.send_response(101)
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                data = self.connection.recv(4096)
                if not data:
                    break
                self.connection.sendall(data)
            self.close_connection = True
            return
        body = {
            "method": self.command,
            "path": self.path,
            "xff": self.headers.get_all("X-Forwarded-For") or [],
            "upgrade": self.headers.get("Upgrade"),
            "listener": self.server.index,
            "connection": self.connection_number,
        }
        self.reply(200, json.dumps(body).encode())

    def do_POST(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/form":
            text = body.decode("latin-1")
            fields = urllib.parse.parse_qs(text, keep_blank_values=True, encoding="latin-1")
            return self.reply(200, json.dumps(fields).encode())
        self.reply(200, body, self.headers.get("Content-Type", "application/octet-stream"))


class Server(ThreadingHTTPServer):
    address_family = family
    allow_reuse_address = True

    def __init__(self, index):
        self.index = index
        self.accepted = accepted
        super().__init__((address, port), Handler, bind_and_activate=False)
        if listeners > 1:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.server_bind()
        self.server_activate()


accepted = itertools.count(1)
servers = [Server(i) for i in range(listeners)]
with open(ready + ".tmp", "w") as f:
    for s in servers:
        f.write(str(s.socket.getsockname()[:2]) + "\n")
os.rename(ready + ".tmp", ready)
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
servers[0].serve_forever()
