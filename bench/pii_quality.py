"""Precision and recall of PII redaction per kind on the labelled sentences.

Runs ``clawfed.privacy.pii.find_pii`` (rules + the LAC model) on
``tests/data/pii_sentences.yaml`` and prints a Markdown table per kind, the overall
precision, and the time per sentence; ``--rules-only`` measures the rules without the
model, ``--misses`` lists every miss and false finding (they hold the made-up values).

Usage: ``python bench/pii_quality.py [--split all|tuning|holdout] [--rules-only] [--misses]``
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from clawfed.privacy.pii import PiiKind, find_pii
from clawfed.privacy.pii_ner import warm_up
from clawfed.privacy.pii_quality import load_labelled, misses, overall_precision, score

LABELLED = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii_sentences.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules-only", action="store_true", help="without the LAC model")
    parser.add_argument("--misses", action="store_true", help="list misses and false findings")
    parser.add_argument(
        "--split", choices=("all", "tuning", "holdout"), default="all", help="which sentences"
    )
    args = parser.parse_args()
    ner = not args.rules_only
    sentences = [s for s in load_labelled(LABELLED) if args.split in ("all", s.split)]
    if ner:
        warm_up()

    def detect(text: str) -> tuple:  # type: ignore[type-arg]
        return find_pii(text, ner=ner)

    started = time.perf_counter()
    scores = score(sentences, detect)
    per_sentence_ms = (time.perf_counter() - started) / len(sentences) * 1000
    print(
        f"{len(sentences)} sentences ({args.split}), {'rules + LAC' if ner else 'rules only'}, "
        f"{per_sentence_ms:.2f} ms per sentence ({platform.processor() or platform.machine()})"
    )
    print()
    print("| kind | gold | found | recall | findings | correct | precision |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for kind in PiiKind:
        s = scores[kind]
        print(
            f"| {kind} | {s.gold} | {s.found} | {s.recall:.3f} | {s.predicted} | "
            f"{s.correct} | {s.precision:.3f} |"
        )
    print()
    print(f"overall precision: {overall_precision(scores):.3f}")
    if args.misses:
        print()
        print("\n".join(misses(sentences, detect)))


if __name__ == "__main__":
    main()
