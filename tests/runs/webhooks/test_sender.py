"""The sender over real TLS: it connects to the checked address, yet TLS verifies the certificate
against the receiver's host name (SNI and Host name it too). A test CA signs a certificate for
hooks.test; a real HTTPS server on 127.0.0.1 presents it."""

from __future__ import annotations

import datetime
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from runs.webhooks import sender
from runs.webhooks.ssrf import CheckedTarget


def _certificate(subject: str, issuer_key, issuer_name, public_key, *, ca: bool, san: str | None = None):
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def tls_receiver(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "DPP test CA")])
    ca_cert = _certificate("DPP test CA", ca_key, ca_name, ca_key.public_key(), ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _certificate("hooks.test", ca_key, ca_name, server_key.public_key(), ca=False, san="hooks.test")
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    seen = {"sni": [], "host": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen["host"].append(self.headers.get("Host"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    context.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], str(directory / "ca.pem"), seen
    server.shutdown()
    server.server_close()


@pytest.fixture
def trusting_the_test_ca(monkeypatch, tls_receiver):
    _, ca_file, _ = tls_receiver
    real = sender._ssl_context

    def context():
        made = real()
        made.load_verify_locations(ca_file)
        return made

    monkeypatch.setattr(sender, "_ssl_context", context)


class TestPost:
    def test_the_tls_context_verifies_certificates_and_host_names(self):
        context = sender._ssl_context()

        assert context.check_hostname is True and context.verify_mode == ssl.CERT_REQUIRED

    def test_connects_to_the_checked_address_and_verifies_the_host_name(self, tls_receiver, trusting_the_test_ca):
        port, _, seen = tls_receiver
        target = CheckedTarget(scheme="https", host="hooks.test", port=port, path="/in", address="127.0.0.1")

        result = sender.post(target=target, body=b"{}", headers={}, timeout=5)

        assert (result.status_code, result.error_class) == (204, "")
        assert seen["sni"][-1] == "hooks.test" and seen["host"][-1] == f"hooks.test:{port}"

    def test_a_certificate_for_another_name_is_refused_even_at_the_checked_address(self, tls_receiver,
                                                                                   trusting_the_test_ca):
        port, _, _ = tls_receiver
        target = CheckedTarget(scheme="https", host="other.test", port=port, path="/in", address="127.0.0.1")

        result = sender.post(target=target, body=b"{}", headers={}, timeout=5)

        assert result.status_code is None and result.error_class == "tls"

    def test_an_untrusted_certificate_is_refused(self, tls_receiver):
        port, _, _ = tls_receiver
        target = CheckedTarget(scheme="https", host="hooks.test", port=port, path="/in", address="127.0.0.1")

        result = sender.post(target=target, body=b"{}", headers={}, timeout=5)

        assert result.error_class == "tls"
