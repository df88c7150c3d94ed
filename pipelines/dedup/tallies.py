"""What the dedup stage counts per snapshot and language for the corpus's diversity report
(`pipelines/shard/diversity.py`): the documents that entered it, and those it removed as
duplicates. The removed ones leave the corpus, and the rejected table has no language column, so
dedup, which sees each document's language beside its decision, counts them as it writes.

The counts are Beam counters of the dedup job, in its manifest's engine counters
(`dedup/entering:<lang>:<snapshot>`, `dedup/duplicates:<lang>:<snapshot>`): a language code
holds no `:`, so whatever the snapshot's name holds, the key splits back.
"""

from __future__ import annotations

DUPLICATE_REASONS = ("exact_duplicate", "near_duplicate", "duplicate_of")
KINDS = ("entering", "duplicates")
NAMESPACE = "dedup"
NO_LANG = "und"  # a document without a language (as the corpus's partitions name it)
NO_SNAPSHOT = "-"


def group_key(snapshot, lang) -> tuple[str, str]:
    """The (snapshot, language) a document is counted under."""
    return (snapshot or NO_SNAPSHOT, lang or NO_LANG)


def counter_name(kind: str, key: tuple[str, str]) -> str:
    snapshot, lang = key
    return f"{kind}:{lang}:{snapshot}"


def language_tallies(counters: dict) -> dict[tuple[str, str], dict[str, int]]:
    """{(snapshot, lang): {"entering": n, "duplicates": m}} from a dedup job's counters."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for key, value in counters.items():
        namespace, _, name = key.partition("/")
        kind, _, rest = name.partition(":")
        if namespace != NAMESPACE or kind not in KINDS or ":" not in rest:
            continue
        lang, _, snapshot = rest.partition(":")
        out.setdefault((snapshot, lang), dict.fromkeys(KINDS, 0))[kind] += int(value)
    return out
