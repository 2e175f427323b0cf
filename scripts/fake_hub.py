#!/usr/bin/env python3
"""A local stand-in for the Hugging Face Hub, for tests: serves files from ROOT/<org>/<name>/<file> at the Hub's
URL layout /<org>/<name>/resolve/<revision>/<file>, with the headers huggingface_hub reads (X-Repo-Commit, ETag =
the file's SHA-256 as for LFS files, X-Linked-Etag, X-Linked-Size, Content-Length). Listens on 127.0.0.1 only.

Prints the port on its first line. Every request is appended to ROOT/requests.log as "METHOD PATH".
A file named <file>.truncate beside a file makes GETs of it send half the bytes and drop the connection;
<file>.badhash makes the server announce a wrong SHA-256 etag for it.
Usage: fake_hub.py ROOT [--port 0] [--commit HEX]"""
import argparse
import hashlib
import http.server
import os
import sys
import threading


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--commit", default="0123456789abcdef0123456789abcdef01234567")
    args = parser.parse_args()
    hashes = {}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def resolve(self):
            with lock, open(os.path.join(args.root, "requests.log"), "a") as log:
                log.write(f"{self.command} {self.path}\n")
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                return None
            path = os.path.join(args.root, parts[0], parts[1], *parts[4:])
            return path if os.path.isfile(path) and ".." not in parts else None

        def headers_for(self, path):
            if path not in hashes:
                with open(path, "rb") as f:
                    hashes[path] = hashlib.sha256(f.read()).hexdigest()
            size = os.path.getsize(path)
            if os.path.exists(path + ".badhash"):
                hashes[path] = "0" * 64
            self.send_header("X-Repo-Commit", args.commit)
            self.send_header("ETag", f'"{hashes[path]}"')
            self.send_header("X-Linked-Etag", f'"{hashes[path]}"')
            self.send_header("X-Linked-Size", str(size))
            self.send_header("Content-Length", str(size))
            self.send_header("Content-Type", "application/octet-stream")
            return size

        def not_found(self):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()

        def do_HEAD(self):
            path = self.resolve()
            if path is None:
                return self.not_found()
            self.send_response(200)
            self.headers_for(path)
            self.end_headers()

        def do_GET(self):
            path = self.resolve()
            if path is None:
                return self.not_found()
            self.send_response(200)
            size = self.headers_for(path)
            self.end_headers()
            with open(path, "rb") as f:
                data = f.read()
            if os.path.exists(path + ".truncate"):
                self.wfile.write(data[: size // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
