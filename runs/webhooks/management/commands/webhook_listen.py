"""``manage.py webhook_listen --port P --secret whsec_...``: a local receiver that verifies each
delivery's Standard Webhooks signature and prints it (for trying webhooks by hand)."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.core.management.base import BaseCommand, CommandError

from runs.webhooks.crypto import secret_key_bytes
from runs.webhooks.signing import SignatureInvalid, webhook_signature_verify

MAX_BODY_BYTES = 1024 * 1024


def listener_server(*, host: str, port: int, secrets: list[str], out=None) -> ThreadingHTTPServer:
    """A server answering 204 to verified deliveries and 401 to the rest, printing each."""
    out = out or sys.stdout

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            try:
                webhook_signature_verify(secrets=secrets, headers=dict(self.headers.items()), body=body)
            except SignatureInvalid as error:
                out.write(f"REJECTED {self.headers.get('webhook-id')}: {error}\n")
                out.flush()
                self.send_response(401)
                self.end_headers()
                return
            try:
                event = json.loads(body)
                summary = f"{event.get('type')} {event.get('id')}"
            except ValueError:
                event, summary = None, "(not JSON)"
            out.write(f"VERIFIED {summary}\n{json.dumps(event, indent=2) if event else body!r}\n")
            out.flush()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    return ThreadingHTTPServer((host, port), Handler)


class Command(BaseCommand):
    help = "Receive, verify and print webhook deliveries on a local port."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--secret", action="append", required=True,
                            help="whsec_...; repeat during a rotation")

    def handle(self, *args, port: int, host: str, secret: list[str], **options):
        for item in secret:
            try:
                secret_key_bytes(item)
            except ValueError as error:
                raise CommandError(f"--secret: {error}") from None
        server = listener_server(host=host, port=port, secrets=secret, out=self.stdout)
        self.stdout.write(f"listening on http://{host}:{server.server_address[1]}/ (Ctrl-C stops)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
