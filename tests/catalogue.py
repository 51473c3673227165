"""A catalogue export in the KillrVideo format (cqlsh COPY TO, no header), made for tests.

It has what the real `../shared/data/killrvideo/video_out.csv` has, at a size
a test can afford: 384-dim unit vectors (some rows without one), tag sets,
and descriptions with unquoted commas, which split them into extra fields.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np

TOPICS = [
    "Cassandra data modeling", "Vector search with SAI", "Building a React frontend",
    "Kubernetes operators", "Streaming with Pulsar", "Python drivers in depth",
    "Tuning compaction", "Graph databases explained",
]  # fmt: skip


def write_catalogue(path: Path, *, count: int, without_vector: int, seed: int = 7) -> Path:
    """``count`` videos; the first ``without_vector`` have no embedding."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        vector = ""
        if i >= without_vector:
            v = rng.standard_normal(384)
            v /= np.linalg.norm(v)
            vector = '"[' + ", ".join(f"{x:.6f}" for x in v) + ']"'
        # Every third description has unquoted commas, as 22 real rows do.
        description = f"Part {i} of {topic}, with examples, and code" if i % 3 == 0 else f"Part {i}"
        tags = "\"{'" + "', '".join(sorted({topic.split()[0].lower(), "demo"})) + "'}\""
        lines.append(",".join([
            str(uuid.uuid4()),
            "2021-10-13 17:58:01.000+0000", "Education", vector, "G", description, "en",
            f"https://www.youtube.com/embed/v{i}", "1", f"{topic} #{i}",
            f"https://i.ytimg.com/vi/v{i}/default.jpg", tags, str(uuid.uuid4()), "", f"v{i}",
        ]))  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path
