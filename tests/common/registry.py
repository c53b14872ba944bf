"""A small OCI distribution registry for tests/embed_registry.rs: read-only, on loopback.

Usage: registry.py ROOT AUTH [USER PASSWORD [PUBLIC]]. AUTH is `none`, `basic` (every /v2/ request
needs Basic USER:PASSWORD, as ECR does) or `token` (a Bearer challenge naming this server's /token
as realm, which hands a token to Basic USER:PASSWORD, as Docker Hub, GHCR and Harbor do, and to
anyone for the repositories of the comma-separated PUBLIC list).

ROOT/NAME/manifests/REF and ROOT/NAME/blobs/DIGEST are served as the manifests and blobs of
repository NAME; a manifest's Content-Type is its `mediaType`. Prints the port on the first line
of stdout once listening; each request is logged to stderr as `METHOD PATH AUTH-SCHEME`.
"""
import base64
import http.server
import json
import os
import secrets
import sys
import urllib.parse

root, auth = sys.argv[1], sys.argv[2]
credentials = None
if auth != "none":
    credentials = base64.b64encode(f"{sys.argv[3]}:{sys.argv[4]}".encode()).decode()
public = set(sys.argv[5].split(",")) if len(sys.argv) > 5 else set()
# One token per scope, so that a token for one repository does not open another.
tokens = {}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, code):
        body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
        self.reply(status, body, [("Content-Type", "application/json")])

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        given = self.headers.get("Authorization", "")
        print(f"GET {url.path} {given.split(' ')[0] or '-'}", file=sys.stderr, flush=True)
        if url.path == "/token":
            return self.token(urllib.parse.parse_qs(url.query), given)
        if not url.path.startswith("/v2/"):
            return self.error(404, "NOT_FOUND")
        parts = url.path[len("/v2/"):].split("/")
        if len(parts) < 3 or parts[-2] not in ("manifests", "blobs"):
            return self.reply(200, b"{}") if parts == [""] else self.error(404, "NOT_FOUND")
        name, kind, ref = "/".join(parts[:-2]), parts[-2], parts[-1]
        if not self.allowed(name, given):
            return
        path = os.path.join(root, name, kind, ref)
        if ".." in path.split("/") or not os.path.isfile(path):
            return self.error(404, "MANIFEST_UNKNOWN" if kind == "manifests" else "BLOB_UNKNOWN")
        with open(path, "rb") as f:
            body = f.read()
        if kind == "manifests":
            media_type = json.loads(body).get("mediaType", "application/json")
        else:
            media_type = "application/octet-stream"
        self.reply(200, body, [("Content-Type", media_type)])

    def allowed(self, name, given):
        if auth == "none":
            return True
        if auth == "basic":
            if given == f"Basic {credentials}":
                return True
            self.reply(401, b"", [("WWW-Authenticate", 'Basic realm="test-registry"')])
            return False
        scope = f"repository:{name}:pull"
        if given.startswith("Bearer ") and tokens.get(scope) == given[len("Bearer "):]:
            return True
        port = self.server.server_address[1]
        challenge = (
            f'Bearer realm="http://127.0.0.1:{port}/token",service="test-registry",scope="{scope}"'
        )
        self.error_with(401, challenge)
        return False

    def error_with(self, status, challenge):
        body = json.dumps({"errors": [{"code": "UNAUTHORIZED"}]}).encode()
        self.reply(status, body, [("WWW-Authenticate", challenge), ("Content-Type", "application/json")])

    def token(self, query, given):
        if query.get("service") != ["test-registry"] or len(query.get("scope", [])) != 1:
            return self.error(400, "BAD_REQUEST")
        scope = query["scope"][0]
        anonymous = given == "" and scope.split(":")[1] in public
        if given != f"Basic {credentials}" and not anonymous:
            return self.error(401, "UNAUTHORIZED")
        token = tokens.setdefault(scope, secrets.token_hex(16))
        self.reply(200, json.dumps({"token": token}).encode(), [("Content-Type", "application/json")])


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
