"""Fetch the official Apache Cassandra jars from Maven Central with Maven.

Since 4.0 the binary tarball is not published to Maven Central, so we resolve
``org.apache.cassandra:cassandra-all`` and its runtime dependencies instead and
keep them in a per-version cache directory outside the repository.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kv-reco.devnode</groupId>
  <artifactId>cassandra-runtime</artifactId>
  <version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


class ArtifactError(RuntimeError):
    """Maven could not resolve the requested Cassandra version."""


def ensure_cassandra_jars(*, version: str, cache_dir: Path, timeout_s: float = 900) -> Path:
    """Return the directory holding every runtime jar of ``cassandra-all:version``.

    Resolution runs once per version; a marker file written last makes an
    interrupted download retry instead of leaving a half-filled lib directory.
    A file lock serialises concurrent callers (``make run`` next to ``make test``).
    """
    root = cache_dir / f"cassandra-{version}"
    lib = root / "lib"
    marker = root / ".complete"
    if marker.exists():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return lib
        if shutil.which("mvn") is None:
            raise ArtifactError("Maven ('mvn') is required to fetch Cassandra but is not on PATH")
        shutil.rmtree(lib, ignore_errors=True)
        (root / "pom.xml").write_text(_POM.format(version=version))
        cmd = [
            "mvn", "-q", "-B", "-f", str(root / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}", "-DincludeScope=runtime",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        if done.returncode != 0 or not any(lib.glob("cassandra-all-*.jar")):
            tail = (done.stdout + done.stderr)[-3000:]
            raise ArtifactError(f"could not resolve cassandra-all {version}:\n{tail}")
        marker.write_text(version)
    return lib
