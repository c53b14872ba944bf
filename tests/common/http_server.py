"""Test web server started by tests/common/networld.rs inside the test's network namespace.

Usage: http_server.py ADDRESS PORT ROOT. GET serves the files under ROOT; POST answers with the
hex sha256 of the request body it received, so a test can check data in both directions.
"""
import hashlib
import http.server
import socket
import socketserver
import sys

address, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=root, **kwargs)

    def do_POST(self):
        left = int(self.headers["Content-Length"])
        digest = hashlib.sha256()
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
        body = digest.hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

    def server_bind(self):
        # HTTPServer's own would look its address up (a PTR query): the DNS server must see only
        # the questions the tests ask.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


Server((address, port), Handler).serve_forever()
