"""A development CA and node keystores, made with the JDK's own ``keytool``.

The CA signs one certificate per node whose subjectAltName is the node's IP,
so that a client verifying host names accepts it when it dials that address.
Clients trust ``ca.pem``; each node serves ``<address>.p12``. The material is
made once per state directory and reused; a node address it lacks is added.
"""

from __future__ import annotations

import fcntl
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

_VALIDITY_DAYS = "3650"


class TlsError(RuntimeError):
    """keytool failed; the message carries its output."""


@dataclass(frozen=True, slots=True)
class DevTls:
    directory: Path

    @property
    def ca_pem(self) -> Path:
        """The CA certificate (PEM) that clients trust: KV_CASSANDRA_TLS_CA_FILE."""
        return self.directory / "ca.pem"

    @property
    def _ca_store(self) -> Path:
        return self.directory / "ca.p12"

    @property
    def _password_file(self) -> Path:
        return self.directory / "storepass"

    def keystore(self, address: str) -> Path:
        return self.directory / f"{address}.p12"

    def password(self) -> str:
        return self._password_file.read_text().strip()

    def ensure(self, addresses: list[str], *, keytool: str = "keytool") -> None:
        """Make the CA (once) and a keystore for every address that lacks one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self._password_file.exists():
                self._password_file.write_text(secrets.token_urlsafe(18))
                self._password_file.chmod(0o600)
            if not self.ca_pem.exists():
                self._make_ca(keytool)
            for address in addresses:
                if not self.keystore(address).exists():
                    self._make_node_store(address, keytool)

    def _run(self, keytool: str, *args: str) -> None:
        done = subprocess.run(
            [keytool, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise TlsError(f"keytool {args[0]} failed: {(done.stdout + done.stderr)[-2000:]}")

    def _make_ca(self, keytool: str) -> None:
        pw = self.password()
        self._ca_store.unlink(missing_ok=True)
        self._run(
            keytool, "-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048",
            "-dname", "CN=kv-reco development CA",
            "-ext", "bc:c", "-ext", "ku:c=keyCertSign,cRLSign",
            "-validity", _VALIDITY_DAYS, "-storetype", "PKCS12",
            "-keystore", str(self._ca_store), "-storepass", pw,
        )  # fmt: skip
        tmp = self.ca_pem.with_suffix(".tmp")
        self._run(
            keytool, "-exportcert", "-rfc", "-alias", "ca",
            "-keystore", str(self._ca_store), "-storepass", pw, "-file", str(tmp),
        )  # fmt: skip
        tmp.replace(self.ca_pem)  # written last: its presence means the CA is whole

    def _make_node_store(self, address: str, keytool: str) -> None:
        pw, store = self.password(), self.keystore(address)
        tmp = store.with_suffix(".tmp")
        csr, crt = store.with_suffix(".csr"), store.with_suffix(".crt")
        tmp.unlink(missing_ok=True)
        san = f"SAN=ip:{address}"
        self._run(
            keytool, "-genkeypair", "-alias", "node", "-keyalg", "RSA", "-keysize", "2048",
            "-dname", f"CN={address}, O=kv-reco development node", "-ext", san,
            "-validity", _VALIDITY_DAYS, "-storetype", "PKCS12",
            "-keystore", str(tmp), "-storepass", pw,
        )  # fmt: skip
        self._run(
            keytool, "-certreq", "-alias", "node", "-ext", san,
            "-keystore", str(tmp), "-storepass", pw, "-file", str(csr),
        )  # fmt: skip
        self._run(
            keytool, "-gencert", "-rfc", "-alias", "ca", "-infile", str(csr), "-outfile", str(crt),
            "-ext", san, "-ext", "ku:c=digitalSignature,keyEncipherment", "-ext", "eku=serverAuth",
            "-validity", _VALIDITY_DAYS, "-keystore", str(self._ca_store), "-storepass", pw,
        )  # fmt: skip
        # The chain: the CA first (trusted), then the signed reply replaces the self-signed cert.
        self._run(
            keytool, "-importcert", "-noprompt", "-alias", "ca", "-file", str(self.ca_pem),
            "-keystore", str(tmp), "-storepass", pw,
        )  # fmt: skip
        self._run(
            keytool, "-importcert", "-alias", "node", "-file", str(crt),
            "-keystore", str(tmp), "-storepass", pw,
        )  # fmt: skip
        csr.unlink()
        crt.unlink()
        tmp.replace(store)
